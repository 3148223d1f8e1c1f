"""Fixture OAuth server for the auth flow tests: HTTPS on 127.0.0.1 with a throwaway CA.

The server issues tokens for registered clients (client_secret_basic, client_secret_post,
private_key_jwt and the JWT bearer grant), serves authorization server metadata and a
protected ``/api/resource``, plays scripted token responses (429 with Retry-After, 503,
invalid_client, slow responses) and counts grants.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import ipaddress
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_provider_m2m.auth import clear_discovery_cache, clear_memory_cache

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class ScriptedResponse:
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class TokenRecord:
    expires_at: float
    client_id: str
    scope: str | None


class FixtureOAuthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.base_url = f"https://127.0.0.1:{self.server_address[1]}"
        self.issuer = self.base_url
        self.token_url = f"{self.base_url}/token"
        self.api_url = f"{self.base_url}/api/resource"
        self.ca_bundle = ""
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # Requests still in flight from an earlier test see a new generation and count nothing.
            self.generation = getattr(self, "generation", 0) + 1
            self.client_secrets: dict[str, set[str]] = {}
            self.client_keys: dict[str, Any] = {}
            self.token_lifetime: int | str | None = 3600
            self.grant_delay = 0.0
            self.script: collections.deque[ScriptedResponse] = collections.deque()
            self.grants = 0
            self.token_requests: list[dict[str, Any]] = []
            self.tokens: dict[str, TokenRecord] = {}
            self.api_requests = 0
            self.api_rejections = 0
            self.rejected_expired = 0
            self.reject_all_tokens = False
            self.metadata_paths = {"/.well-known/oauth-authorization-server"}

    def add_client(self, client_id: str, *client_secrets: str) -> None:
        with self.lock:
            self.client_secrets.setdefault(client_id, set()).update(client_secrets)

    def set_client_secrets(self, client_id: str, *client_secrets: str) -> None:
        with self.lock:
            self.client_secrets[client_id] = set(client_secrets)

    def add_client_key(self, client_id: str, public_key: Any) -> None:
        with self.lock:
            self.client_keys[client_id] = public_key

    def push(self, *responses: ScriptedResponse) -> None:
        with self.lock:
            self.script.extend(responses)

    def revoke_all(self) -> None:
        with self.lock:
            self.tokens.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes; without this, each keep-alive response waits for a delayed ACK.
    disable_nagle_algorithm = True
    server: FixtureOAuthServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in self.server.metadata_paths:
            self._send_json(200, {"issuer": self.server.issuer, "token_endpoint": self.server.token_url})
        elif path == "/api/resource":
            self._serve_api()
        else:
            self._send_json(404, {"error": "not_found"})

    def _serve_api(self) -> None:
        server = self.server
        header = self.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with server.lock:
            server.api_requests += 1
            record = server.tokens.get(token)
            expired = record is not None and time.time() >= record.expires_at
            if expired:
                server.rejected_expired += 1
            valid = record is not None and not expired and not server.reject_all_tokens
            if not valid:
                server.api_rejections += 1
        if valid:
            self._send_json(200, {"ok": True})
        else:
            challenge = 'Bearer error="invalid_token", error_description="The access token is invalid or expired"'
            self._send_json(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        path = urlsplit(self.path).path
        if path != "/token":
            self._send_json(404, {"error": "not_found"})
            return
        form = {key: values if len(values) > 1 else values[0] for key, values in parse_qs(raw).items()}
        server = self.server
        with server.lock:
            generation = server.generation
            server.token_requests.append({"form": form, "headers": dict(self.headers)})
            scripted = server.script.popleft() if server.script else None
            delay = server.grant_delay
        if scripted is not None:
            time.sleep(scripted.delay)
            if scripted.status != 200 or scripted.body is not None:
                self._send_json(scripted.status, scripted.body or {}, scripted.headers)
                return
        time.sleep(delay)
        error = self._authenticate(form)
        if error is not None:
            self._send_json(error[0], {"error": error[1], "error_description": error[2]})
            return
        self._issue(form, generation)

    def _authenticate(self, form: dict[str, Any]) -> tuple[int, str, str] | None:
        server = self.server
        grant_type = form.get("grant_type")
        if grant_type == JWT_BEARER:
            return self._check_jwt_bearer(form)
        if grant_type != "client_credentials":
            return (400, "unsupported_grant_type", f"grant_type {grant_type} is not supported")
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            encoded_id, _, encoded_secret = decoded.partition(":")
            client_id, secret = unquote_plus(encoded_id), unquote_plus(encoded_secret)
        elif form.get("client_assertion_type") == CLIENT_ASSERTION_TYPE:
            client_id = form.get("client_id", "")
            key = server.client_keys.get(client_id)
            try:
                jwt.decode(
                    form["client_assertion"],
                    key,
                    algorithms=["RS256", "ES256"],
                    audience=server.token_url,
                    issuer=client_id,
                    options={"require": ["exp", "jti", "sub"]},
                )
            except (jwt.PyJWTError, TypeError, ValueError):
                return (401, "invalid_client", "Client assertion is invalid")
            return None
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        with server.lock:
            valid = secret in server.client_secrets.get(client_id, set())
        if not valid:
            return (401, "invalid_client", "Client authentication failed")
        return None

    def _check_jwt_bearer(self, form: dict[str, Any]) -> tuple[int, str, str] | None:
        assertion = form.get("assertion", "")
        issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
        key = self.server.client_keys.get(issuer)
        try:
            jwt.decode(assertion, key, algorithms=["RS256", "ES256"], audience=self.server.issuer)
        except (jwt.PyJWTError, TypeError, ValueError):
            return (400, "invalid_grant", "JWT assertion is invalid")
        return None

    def _issue(self, form: dict[str, Any], generation: int) -> None:
        server = self.server
        token = secrets.token_urlsafe(24)
        with server.lock:
            stale = generation != server.generation
        if stale:
            self._send_json(503, {"error": "temporarily_unavailable"})
            return
        with server.lock:
            lifetime = server.token_lifetime
            seconds = int(lifetime) if lifetime is not None else 3600
            server.tokens[token] = TokenRecord(time.time() + seconds, form.get("client_id", ""), form.get("scope"))
            server.grants += 1
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if lifetime is not None:
            body["expires_in"] = lifetime
        if form.get("scope"):
            body["scope"] = form["scope"]
        self._send_json(200, body)


def _make_tls(directory: Path) -> tuple[ssl.SSLContext, str]:
    """Create a throwaway CA and a server certificate for 127.0.0.1; return the server context and CA path."""
    now = dt.datetime.now(dt.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth flow test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path = directory / "server.pem"
    cert_path.write_bytes(
        server_cert.public_bytes(serialization.Encoding.PEM)
        + server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path)
    return context, str(ca_path)


@pytest.fixture(scope="session")
def _tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    return _make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def _running_server(_tls: tuple[ssl.SSLContext, str]) -> Iterator[FixtureOAuthServer]:
    context, ca_path = _tls
    server = FixtureOAuthServer()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.ca_bundle = ca_path
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def oauth_server(_running_server: FixtureOAuthServer) -> Iterator[FixtureOAuthServer]:
    """The fixture OAuth server, reset, with in-process token and discovery caches cleared."""
    _running_server.reset()
    clear_memory_cache()
    clear_discovery_cache()
    yield _running_server
    clear_memory_cache()
