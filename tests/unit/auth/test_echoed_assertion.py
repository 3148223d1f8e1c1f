"""Signed assertions that a token endpoint quotes back in error_description are redacted and masked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airflow_provider_m2m.auth import (
    ClientCredentialsGrant,
    JwtBearerGrant,
    OAuthError,
    PrivateKeyJwt,
    TokenEndpoint,
    TokenProvider,
    clear_memory_cache,
)
from airflow_provider_m2m.auth.masking import register_secret_masker, unregister_secret_masker


class EchoServer(ThreadingHTTPServer):
    """Token endpoint on 127.0.0.1 that rejects every request and quotes part of its assertion.

    ``echo`` picks what ``error_description`` quotes: the whole assertion or its signature.
    ``unavailable_first`` returns HTTP 503 to the first request, so the client retries with a
    newly signed assertion.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.field = "client_assertion"
        self.echo = "whole"
        self.unavailable_first = False
        self.assertions: list[str] = []

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"


class EchoHandler(BaseHTTPRequestHandler):
    server: EchoServer

    def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
        length = int(self.headers["Content-Length"])
        form = parse_qs(self.rfile.read(length).decode())
        assertion = form[self.server.field][0]
        self.server.assertions.append(assertion)
        if self.server.unavailable_first and len(self.server.assertions) == 1:
            self._send(503, {"error": "temporarily_unavailable"})
            return
        quoted = assertion if self.server.echo == "whole" else assertion.rpartition(".")[2]
        self._send(401, {"error": "invalid_client", "error_description": f"bad assertion {quoted}"})

    def _send(self, status: int, body: dict[str, str]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    clear_memory_cache()
    yield server
    clear_memory_cache()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def masked() -> Iterator[list[str]]:
    values: list[str] = []
    register_secret_masker(values.append)
    yield values
    unregister_secret_masker(values.append)


def _provider(grant) -> TokenProvider:
    endpoint = TokenEndpoint(timeout=(2.0, 5.0), max_retries=1, sleep=lambda seconds: None)
    return TokenProvider(grant, connection_id="echo_conn", endpoint=endpoint, cache=None)


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
@pytest.mark.parametrize("echo", ["whole", "signature"])
def test_client_assertion_redacted(echo_server, masked, algorithm, echo):
    if algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    echo_server.echo = echo
    client_auth = PrivateKeyJwt("svc", key, algorithm=algorithm)
    provider = _provider(ClientCredentialsGrant(echo_server.token_url, client_auth))

    with pytest.raises(OAuthError) as caught:
        provider.get_token()

    message = str(caught.value)
    assertion = echo_server.assertions[-1]
    assert "echo_conn" in message
    assert "bad assertion ***" in message
    assert assertion not in message
    assert assertion.rpartition(".")[2] not in message
    assert assertion in masked


def test_retried_client_assertion_redacted(echo_server):
    echo_server.unavailable_first = True
    client_auth = PrivateKeyJwt("svc", ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    provider = _provider(ClientCredentialsGrant(echo_server.token_url, client_auth))

    with pytest.raises(OAuthError) as caught:
        provider.get_token()

    assert len(echo_server.assertions) == 2
    assert echo_server.assertions[0] != echo_server.assertions[1]
    assert echo_server.assertions[1] not in str(caught.value)


@pytest.mark.parametrize("echo", ["whole", "signature"])
def test_jwt_bearer_assertion_redacted(echo_server, masked, echo):
    echo_server.field = "assertion"
    echo_server.echo = echo
    key = ec.generate_private_key(ec.SECP256R1())
    grant = JwtBearerGrant(
        echo_server.token_url, "consumer-key", "etl@example.com", "https://login.example.test", key, algorithm="ES256"
    )

    with pytest.raises(OAuthError) as caught:
        _provider(grant).get_token()

    message = str(caught.value)
    assertion = echo_server.assertions[-1]
    assert "bad assertion ***" in message
    assert assertion not in message
    assert assertion.rpartition(".")[2] not in message
    assert assertion in masked
