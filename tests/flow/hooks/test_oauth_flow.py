"""OAuthM2MHook against the sandbox OAuth server: each client authentication method, issuer
discovery, secret rotation, key forms, certificate thumbprints and assertion audience, and a
protected API that checks the bearer token."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from airflow_provider_m2m.auth import InvalidClient, TokenRejectedError
from airflow_provider_m2m.hooks._connection import ConnectionFieldError
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook
from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox.http import Request, Response, Router, SandboxServer

CLIENT_ID = "m2m-sandbox-client"


class ProtectedApi:
    """An API that accepts only active tokens of the sandbox OAuth server (RFC 6750 section 3.1)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.rejected = 0
        self.always_reject = False
        self.router = Router()
        self.router.add("GET", "/v1/whoami", self.whoami)

    def handle(self, request: Request) -> Response:
        return self.router.handle(request)

    def whoami(self, request: Request) -> Response:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        claims = self.sandbox.oauth.introspect(token) if scheme == "Bearer" else None
        if claims is None or self.always_reject:
            self.rejected += 1
            return Response.json(
                401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return Response.json(200, {"client_id": claims["client_id"], "scope": claims["scope"]})


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[tuple[ProtectedApi, str]]:
    app = ProtectedApi(sandbox)
    server = SandboxServer(app, sandbox.tls, name="protected-api").start()
    try:
        yield app, server.url
    finally:
        server.stop()


def _connection(sandbox: Sandbox, conn_id: str) -> dict:
    return json.loads(sandbox.connections[conn_id])


@pytest.mark.parametrize(
    ("base_id", "extra"),
    [
        pytest.param("oauth_m2m_default", {}, id="client_secret_basic"),
        pytest.param(
            "oauth_m2m_default", {"client_auth_method": "client_secret_post"}, id="client_secret_post"
        ),
        pytest.param("oauth_m2m_private_key_jwt", {}, id="private_key_jwt-issuer-discovery"),
        pytest.param(
            "oauth_m2m_default",
            {"token_url": None, "issuer": "{issuer}", "client_auth_method": "client_secret_post"},
            id="client_secret_post-issuer-discovery",
        ),
    ],
)
def test_each_client_auth_method_gets_a_token(
    sandbox: Sandbox, derive_connection: Callable[..., str], base_id: str, extra: dict
) -> None:
    extra = {name: sandbox.oauth.issuer if value == "{issuer}" else value for name, value in extra.items()}
    conn_id = derive_connection(base_id, "oauth_method_under_test", extra=extra)
    client_id = _connection(sandbox, base_id)["login"]
    before = sandbox.oauth.grants_issued(client_id)

    token = OAuthM2MHook(conn_id).get_token()

    assert token.scope == "sandbox.read sandbox.write"
    assert 3500 < token.lifetime.total_seconds() <= 3600
    assert sandbox.oauth.grants_issued(client_id) == before + 1
    assert sandbox.oauth.introspect(token.access_token)["client_id"] == client_id


def test_connection_reports_scope_and_lifetime(
    sandbox: Sandbox, derive_connection: Callable[..., str], api
) -> None:
    _, url = api
    conn_id = derive_connection("oauth_m2m_default", "oauth_with_api", extra={"base_url": f"{url}/v1/whoami"})

    ok, message = OAuthM2MHook(conn_id).test_connection()

    assert ok, message
    assert "granted scope: sandbox.read sandbox.write" in message
    assert "token lifetime: 3600 s" in message
    assert "HTTP 200" in message
    for secret in sandbox.secrets():
        assert secret not in message


def test_session_calls_api_under_base_url(
    sandbox: Sandbox, derive_connection: Callable[..., str], api
) -> None:
    _, url = api
    conn_id = derive_connection("oauth_m2m_default", "oauth_with_api", extra={"base_url": f"{url}/v1"})
    hook = OAuthM2MHook(conn_id)

    response = hook.run("GET", "whoami")
    body = hook.get_session().get("/whoami").json()

    assert response.json()["client_id"] == CLIENT_ID
    assert body["scope"] == "sandbox.read sandbox.write"


def test_revoked_token_is_granted_again_once(
    sandbox: Sandbox, derive_connection: Callable[..., str], api
) -> None:
    app, url = api
    conn_id = derive_connection("oauth_m2m_default", "oauth_with_api", extra={"base_url": f"{url}/v1"})
    hook = OAuthM2MHook(conn_id)
    sandbox.oauth.revoke(hook.get_token().access_token)
    before = sandbox.oauth.grants_issued(CLIENT_ID)

    response = hook.run("GET", "whoami")

    assert response.status_code == 200
    assert app.rejected == 1
    assert sandbox.oauth.grants_issued(CLIENT_ID) == before + 1


def test_second_rejection_raises(sandbox: Sandbox, derive_connection: Callable[..., str], api) -> None:
    app, url = api
    app.always_reject = True
    conn_id = derive_connection("oauth_m2m_default", "oauth_with_api", extra={"base_url": f"{url}/v1"})

    with pytest.raises(TokenRejectedError) as raised:
        OAuthM2MHook(conn_id).run("GET", "whoami")

    assert app.rejected == 2
    assert repr(conn_id) in str(raised.value)


def test_rotated_secret_falls_back_to_secondary(
    sandbox: Sandbox, derive_connection: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    current_secret = _connection(sandbox, "oauth_m2m_default")["password"]
    conn_id = derive_connection(
        "oauth_m2m_default",
        "oauth_rotated",
        password="primary-secret-already-revoked",
        extra={"secondary_client_secret": current_secret},
    )

    with caplog.at_level(logging.WARNING):
        token = OAuthM2MHook(conn_id).get_token()

    assert sandbox.oauth.introspect(token.access_token) is not None
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(repr(conn_id) in message and "secondary" in message for message in warnings)
    for message in warnings:
        assert current_secret not in message


def _key_forms(sandbox: Sandbox) -> dict[str, dict]:
    pem = sandbox.private_key_pem
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key passphrase ~-_"),
    ).decode()
    return {
        "real-newlines": {"private_key": pem},
        "escaped-newlines": {"private_key": pem.replace("\n", "\\n")},
        "newlines-as-spaces": {"private_key": pem.replace("\n", " ")},
        "base64-of-pem": {"private_key": base64.b64encode(pem.encode()).decode()},
        "file-path": {"private_key": str(sandbox.state_dir / "rsa-key.pem")},
        "encrypted-pkcs8": {"private_key": encrypted, "private_key_passphrase": "key passphrase ~-_"},
    }


@pytest.mark.parametrize(
    "form",
    [
        "real-newlines",
        "escaped-newlines",
        "newlines-as-spaces",
        "base64-of-pem",
        "file-path",
        "encrypted-pkcs8",
    ],
)
def test_private_key_forms_sign_assertions(
    sandbox: Sandbox, derive_connection: Callable[..., str], form: str
) -> None:
    conn_id = derive_connection(
        "oauth_m2m_private_key_jwt", "oauth_key_form", extra=_key_forms(sandbox)[form]
    )

    token = OAuthM2MHook(conn_id).get_token()

    assert sandbox.oauth.introspect(token.access_token)["client_id"] == "m2m-sandbox-jwt-client"


def test_wrong_secret_is_reported_without_it(sandbox: Sandbox, derive_connection: Callable[..., str]) -> None:
    conn_id = derive_connection(
        "oauth_m2m_default",
        "oauth_wrong_secret",
        password="wrong~secret-value_1",
        extra={"secondary_client_secret": None},
    )

    ok, message = OAuthM2MHook(conn_id).test_connection()

    assert not ok
    assert "invalid_client" in message
    assert repr(conn_id) in message
    assert "wrong~secret-value_1" not in message


def test_untrusted_ca_fails_tls(sandbox: Sandbox, derive_connection: Callable[..., str]) -> None:
    conn_id = derive_connection("oauth_m2m_default", "oauth_system_ca", extra={"ca_bundle": None})

    ok, message = OAuthM2MHook(conn_id).test_connection()

    assert not ok
    assert "TLS verification" in message


def test_requests_session_type(sandbox: Sandbox) -> None:
    assert isinstance(OAuthM2MHook().get_session(), requests.Session)


# --- private_key_jwt for Microsoft Entra ID (certificate thumbprint) and Auth0 (assertion aud) ------


def _self_signed_certificate(private_key_pem: str) -> str:
    """Return a PEM certificate for the key, as a user would upload to the authorization server."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m2m-sandbox-client")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture
def certificate_client(sandbox: Sandbox) -> tuple[str, str, str]:
    """Register a client that, like Entra ID and Auth0 together, requires the certificate's
    x5t#S256 header and the issuer URL with a trailing slash as aud; return (client id, certificate
    PEM, expected aud)."""
    client_id = "m2m-sandbox-certificate-client"
    certificate_pem = _self_signed_certificate(sandbox.private_key_pem)
    audience = f"{sandbox.oauth.issuer}/"
    sandbox.oauth.register_client(
        client_id,
        certificate_pem=certificate_pem,
        assertion_audience=audience,
        scopes=["sandbox.read", "sandbox.write"],
    )
    return client_id, certificate_pem, audience


def test_certificate_and_audience_grant_token(
    sandbox: Sandbox, derive_connection: Callable[..., str], certificate_client: tuple[str, str, str]
) -> None:
    client_id, certificate_pem, audience = certificate_client
    conn_id = derive_connection(
        "oauth_m2m_private_key_jwt",
        "oauth_certificate",
        login=client_id,
        # Escaped line breaks, as in an AIRFLOW_CONN_* variable written on one line.
        extra={"certificate": certificate_pem.replace("\n", "\\n"), "assertion_audience": audience},
    )

    token = OAuthM2MHook(conn_id).get_token()

    assert sandbox.oauth.introspect(token.access_token)["client_id"] == client_id
    assertion_client, claims = sandbox.oauth.assertions[-1]
    assert assertion_client == client_id
    assert claims["aud"] == audience


def test_missing_certificate_is_rejected(
    sandbox: Sandbox, derive_connection: Callable[..., str], certificate_client: tuple[str, str, str]
) -> None:
    client_id, _, audience = certificate_client
    conn_id = derive_connection(
        "oauth_m2m_private_key_jwt",
        "oauth_no_certificate",
        login=client_id,
        extra={"assertion_audience": audience},
    )

    with pytest.raises(InvalidClient) as raised:
        OAuthM2MHook(conn_id).get_token()

    assert "x5t#S256" in str(raised.value)
    assert repr(conn_id) in str(raised.value)


def test_token_url_audience_is_rejected(
    sandbox: Sandbox, derive_connection: Callable[..., str], certificate_client: tuple[str, str, str]
) -> None:
    client_id, certificate_pem, _ = certificate_client
    conn_id = derive_connection(
        "oauth_m2m_private_key_jwt",
        "oauth_default_audience",
        login=client_id,
        extra={"certificate": certificate_pem},
    )

    with pytest.raises(InvalidClient) as raised:
        OAuthM2MHook(conn_id).get_token()

    assert "audience" in str(raised.value).lower()


def test_certificate_of_other_key_fails_early(
    sandbox: Sandbox,
    derive_connection: Callable[..., str],
    certificate_client: tuple[str, str, str],
    rsa_pem: str,
) -> None:
    client_id, _, audience = certificate_client
    conn_id = derive_connection(
        "oauth_m2m_private_key_jwt",
        "oauth_wrong_certificate",
        login=client_id,
        extra={"certificate": _self_signed_certificate(rsa_pem), "assertion_audience": audience},
    )
    requests_before = len(sandbox.oauth.token_requests)

    with pytest.raises(ConnectionFieldError) as raised:
        OAuthM2MHook(conn_id).get_token()

    assert raised.value.connection_id == conn_id
    assert raised.value.field == "certificate"
    assert "does not match private_key" in str(raised.value)
    assert sandbox.private_key_pem not in str(raised.value)
    assert len(sandbox.oauth.token_requests) == requests_before
