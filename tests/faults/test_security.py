"""Security checks: TLS verification by default, plain http only on loopback, a custom CA bundle,
connection test messages free of secrets, and short-lived JWT assertions with a jti used once."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

from airflow_provider_m2m.auth import JwtBearerGrant, TokenEndpoint, load_private_key
from airflow_provider_m2m.hooks._connection import ConnectionFieldError
from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook
from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.hooks.snowflake import SnowflakeM2MHook
from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox.oauth_server import OAuthServer, ScriptedResponse
from airflow_provider_m2m.sandbox.runner import OAUTH_JWT_CLIENT_ID, OAUTH_SCOPES
from airflow_provider_m2m.sandbox.tls import create_tls_files
from tests.faults.secret_scan import secret_forms
from tests.faults.support import ENCRYPTED_JWT_CONN_ID, LEDGER, fault_run

# RFC 7523 section 3 requires an exp that limits the time window in which an assertion can be used.
# Five minutes is the most this suite accepts as short, and the provider signs for three minutes.
MAX_ASSERTION_LIFETIME_SECONDS = 300

HOOKS: dict[str, Callable[[str], Any]] = {
    "oauth_m2m_default": lambda conn_id: OAuthM2MHook(oauth_m2m_conn_id=conn_id),
    "oauth_m2m_private_key_jwt": lambda conn_id: OAuthM2MHook(oauth_m2m_conn_id=conn_id),
    "bigquery_m2m_default": lambda conn_id: BigQueryM2MHook(bigquery_m2m_conn_id=conn_id),
    "salesforce_m2m_default": lambda conn_id: SalesforceM2MHook(salesforce_m2m_conn_id=conn_id),
    ENCRYPTED_JWT_CONN_ID: lambda conn_id: SalesforceM2MHook(salesforce_m2m_conn_id=conn_id),
    "snowflake_m2m_default": lambda conn_id: SnowflakeM2MHook(snowflake_m2m_conn_id=conn_id),
    "snowflake_m2m_oauth": lambda conn_id: SnowflakeM2MHook(snowflake_m2m_conn_id=conn_id),
}
# Connections whose hooks send HTTPS with the connection's CA bundle; Snowflake's is plain http to fakesnow.
HTTPS_CONNECTIONS = ["oauth_m2m_default", "bigquery_m2m_default", "salesforce_m2m_default"]
# How each connection's test fails: a field changed to a wrong secret or key.
WRONG_CREDENTIALS: dict[str, dict[str, Any]] = {
    "oauth_m2m_default": {"password": "wrong-secret-Qx7vT2pLm9", "extra": {"secondary_client_secret": None}},
    "salesforce_m2m_default": {"password": "WRONG0SECRET1Fz8Kd3Np5Wq"},
    "snowflake_m2m_oauth": {"extra": {"client_secret": "wrong-snowflake-secret-Hy4Rb"}},
}


def _leaked_forms(text: str, sandbox: Sandbox, *more: str) -> list[str]:
    forms: set[str] = set()
    for secret in [*sandbox.secrets(), *LEDGER.extra_secrets, *more]:
        forms |= secret_forms(secret)
    return sorted(form[:6] + "..." for form in forms if form in text)


@pytest.mark.parametrize("conn_id", HTTPS_CONNECTIONS)
def test_tls_verified_by_default(
    conn_id: str, sandbox: Sandbox, derive_connection: Callable[..., str], request: pytest.FixtureRequest
) -> None:
    """Without ca_bundle the system CA store is used, so the sandbox's private CA is not trusted."""
    new_id = derive_connection(conn_id, f"{conn_id}_no_ca", extra={"ca_bundle": None})
    with fault_run(f"TLS server with an untrusted CA ({conn_id})", "rejected: certificate not verified", request):
        with pytest.raises(Exception) as caught:
            HOOKS[conn_id](new_id).get_token()
        LEDGER.add_exception(request.node.name, caught.value)
        text = f"{caught.value} {caught.value.__cause__}"
        assert "certificate" in text.lower() or "tls" in text.lower()


def test_custom_ca_bundle_trusted(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection's CA bundle wins over REQUESTS_CA_BUNDLE, which requests prefers to a session's `verify`."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    connection = json.loads(sandbox.connections["oauth_m2m_default"])
    assert connection["extra"]["ca_bundle"] == str(sandbox.tls.ca_cert)
    token = OAuthM2MHook(oauth_m2m_conn_id="oauth_m2m_default").get_token(force=True)
    assert token.access_token in sandbox.oauth.issued_tokens


def test_other_ca_bundle_rejected(
    sandbox: Sandbox, derive_connection: Callable[..., str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    other = create_tls_files(tmp_path / "other-ca")
    conn_id = derive_connection("oauth_m2m_default", "oauth_other_ca", extra={"ca_bundle": str(other.ca_cert)})
    with fault_run("TLS server signed by another CA than the connection's", "rejected: certificate not verified", request):
        with pytest.raises(Exception) as caught:
            OAuthM2MHook(oauth_m2m_conn_id=conn_id).get_token()
        LEDGER.add_exception(request.node.name, caught.value)
        assert "TLS verification" in str(caught.value)


@pytest.mark.parametrize(
    ("base_id", "fields", "field_name"),
    [
        ("oauth_m2m_default", {"extra": {"token_url": "http://auth.example.com/oauth2/token"}}, "token_url"),
        ("salesforce_m2m_default", {"host": "http://m2m.my.salesforce.com"}, "host"),
        ("bigquery_m2m_default", {"extra": {"api_url": "http://bigquery.example.com/bigquery/v2"}}, "api_url"),
    ],
)
def test_plain_http_rejected(
    base_id: str, fields: dict[str, Any], field_name: str, derive_connection: Callable[..., str]
) -> None:
    extra = fields.pop("extra", {})
    conn_id = derive_connection(base_id, f"{base_id}_http", extra=extra, **fields)
    with pytest.raises(ConnectionFieldError) as caught:
        HOOKS[base_id](conn_id).get_token()
    message = str(caught.value)
    assert conn_id in message
    assert field_name in message
    assert "https" in message
    # The message gives the reason: credentials and tokens would cross the network unencrypted.
    assert "unencrypted" in message


@pytest.fixture
def plain_http_oauth(sandbox: Sandbox) -> Iterator[OAuthServer]:
    server_app = OAuthServer()
    server = server_app.serve(None)
    server_app.register_client("loopback-client", secret="loopback-secret-Vb83kQ", scopes=["sandbox.read"])
    try:
        yield server_app
    finally:
        server.stop()


def test_plain_http_loopback_allowed(plain_http_oauth: OAuthServer, derive_connection: Callable[..., str]) -> None:
    assert plain_http_oauth.token_url.startswith("http://127.0.0.1:")
    conn_id = derive_connection(
        "oauth_m2m_default",
        "oauth_loopback_http",
        login="loopback-client",
        password="loopback-secret-Vb83kQ",
        extra={"token_url": plain_http_oauth.token_url, "secondary_client_secret": None, "scope": "sandbox.read", "ca_bundle": None},
    )
    token = OAuthM2MHook(oauth_m2m_conn_id=conn_id).get_token()
    assert token.access_token in plain_http_oauth.issued_tokens


@pytest.mark.parametrize("conn_id", list(HOOKS))
def test_connection_test_hides_secrets(conn_id: str, sandbox: Sandbox) -> None:
    ok, message = HOOKS[conn_id](conn_id).test_connection()
    LEDGER.add_text(f"test_connection {conn_id}", message)
    assert ok, message
    assert _leaked_forms(message, sandbox) == []


@pytest.mark.parametrize("conn_id", list(WRONG_CREDENTIALS))
def test_failed_connection_test_hides_secrets(conn_id: str, sandbox: Sandbox, derive_connection: Callable[..., str]) -> None:
    change = dict(WRONG_CREDENTIALS[conn_id])
    extra = change.pop("extra", {})
    new_id = derive_connection(conn_id, f"{conn_id}_wrong", extra=extra, **change)
    ok, message = HOOKS[conn_id](new_id).test_connection()
    LEDGER.add_text(f"failed test_connection {conn_id}", message)
    assert not ok
    assert new_id in message
    wrong = [value for value in [*change.values(), *extra.values()] if isinstance(value, str)]
    assert _leaked_forms(message, sandbox, *wrong) == []


def _assertions_of(sandbox: Sandbox, client_id: str, since: int) -> list[dict[str, Any]]:
    return [claims for owner, claims in sandbox.oauth.assertions[since:] if owner == client_id]


def test_client_assertions_short_and_unique(sandbox: Sandbox) -> None:
    since = len(sandbox.oauth.assertions)
    hook = OAuthM2MHook(oauth_m2m_conn_id="oauth_m2m_private_key_jwt")
    for _ in range(3):
        hook.get_token(force=True)
    claims = _assertions_of(sandbox, OAUTH_JWT_CLIENT_ID, since)
    assert len(claims) == 3
    assert len({item["jti"] for item in claims}) == 3
    for item in claims:
        assert item["exp"] - item["iat"] <= MAX_ASSERTION_LIFETIME_SECONDS


def test_bearer_assertions_short_and_unique(sandbox: Sandbox) -> None:
    since = len(sandbox.oauth.assertions)
    key = load_private_key(sandbox.private_key_pem, None, connection_id="fault-suite", field="private_key")
    grant = JwtBearerGrant(
        token_url=sandbox.oauth.token_url,
        issuer=OAUTH_JWT_CLIENT_ID,
        subject=OAUTH_JWT_CLIENT_ID,
        audience=sandbox.oauth.token_url,
        private_key=key,
        scope=" ".join(OAUTH_SCOPES),
    )
    endpoint = TokenEndpoint(verify=str(sandbox.tls.ca_cert))
    for _ in range(3):
        grant.obtain(endpoint)
    claims = _assertions_of(sandbox, OAUTH_JWT_CLIENT_ID, since)
    assert len(claims) == 3
    assert len({item["jti"] for item in claims}) == 3
    for item in claims:
        assert item["exp"] - item["iat"] <= MAX_ASSERTION_LIFETIME_SECONDS


def test_assertion_not_resent_on_retry(
    sandbox: Sandbox, derive_connection: Callable[..., str], request: pytest.FixtureRequest
) -> None:
    """A token request that timed out is sent again with a new assertion, never the one the server may have used."""
    conn_id = derive_connection("oauth_m2m_private_key_jwt", "oauth_jwt_slow", extra={"timeout": 1})
    since = len(sandbox.oauth.assertions)
    sandbox.oauth.script(ScriptedResponse.delay(2.5), client_id=OAUTH_JWT_CLIENT_ID)

    with fault_run("token endpoint slower than the timeout (private_key_jwt)", "retry with a new assertion", request):
        OAuthM2MHook(oauth_m2m_conn_id=conn_id).get_token()
        # Let the delayed first request reach the server's assertion check.
        time.sleep(2.5)
        jtis = Counter(item["jti"] for item in _assertions_of(sandbox, OAUTH_JWT_CLIENT_ID, since))
        assert len(jtis) >= 2
        assert max(jtis.values()) == 1
