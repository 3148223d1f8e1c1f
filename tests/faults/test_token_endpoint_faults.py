"""Token endpoint faults: 429 with Retry-After, 503, a connection reset and a response slower than
the timeout, against the OAuth hook (the provider's own token client) and the BigQuery hook
(google-auth's service-account grant), both granting from the sandbox OAuth server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from airflow_provider_m2m.auth.errors import TokenEndpointError
from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook
from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox.oauth_server import ScriptedResponse
from airflow_provider_m2m.sandbox.runner import OAUTH_CLIENT_ID, SERVICE_ACCOUNT_EMAIL
from tests.faults.support import LEDGER, fault_run

# The connection's timeout in these tests, and how long the slow token response takes: longer
# than the timeout, so the first attempt times out and only a retry can get the token.
TIMEOUT_SECONDS = 1
SLOW_RESPONSE_SECONDS = 2.5
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class TokenFault:
    name: str
    responses: tuple[ScriptedResponse, ...]


TOKEN_FAULTS = [
    TokenFault("429 with Retry-After", (ScriptedResponse.too_many_requests(RETRY_AFTER_SECONDS),)),
    TokenFault("503", (ScriptedResponse.unavailable(),)),
    TokenFault("connection reset", (ScriptedResponse.connection_reset(),)),
    TokenFault("response slower than the timeout", (ScriptedResponse.delay(SLOW_RESPONSE_SECONDS),)),
]


def _oauth_token(conn_id: str) -> Callable[[], object]:
    return lambda: OAuthM2MHook(oauth_m2m_conn_id=conn_id).get_token()


def _bigquery_rows(conn_id: str) -> Callable[[], object]:
    return lambda: BigQueryM2MHook(bigquery_m2m_conn_id=conn_id).get_records("SELECT 1 AS ok")


@pytest.mark.parametrize("fault", TOKEN_FAULTS, ids=lambda fault: fault.name)
def test_oauth_hook_survives_token_fault(
    fault: TokenFault, sandbox: Sandbox, derive_connection: Callable[..., str], request: pytest.FixtureRequest
) -> None:
    conn_id = derive_connection("oauth_m2m_default", "oauth_fault", extra={"timeout": TIMEOUT_SECONDS})
    grants_before = sandbox.oauth.grants_issued(OAUTH_CLIENT_ID)
    sandbox.oauth.script(*fault.responses, client_id=OAUTH_CLIENT_ID)

    with fault_run(f"token endpoint: {fault.name} (OAuth hook)", "token granted by a retry", request):
        started = time.monotonic()
        token = _oauth_token(conn_id)()
        elapsed = time.monotonic() - started

    assert token.access_token in sandbox.oauth.issued_tokens
    assert sandbox.oauth.grants_issued(OAUTH_CLIENT_ID) >= grants_before + 1
    if fault.name.startswith("429"):
        assert elapsed >= RETRY_AFTER_SECONDS


@pytest.mark.parametrize("fault", TOKEN_FAULTS, ids=lambda fault: fault.name)
def test_bigquery_hook_survives_token_fault(
    fault: TokenFault, sandbox: Sandbox, derive_connection: Callable[..., str], request: pytest.FixtureRequest
) -> None:
    conn_id = derive_connection("bigquery_m2m_default", "bigquery_fault", extra={"timeout": TIMEOUT_SECONDS})
    grants_before = sandbox.oauth.grants_issued(SERVICE_ACCOUNT_EMAIL)
    sandbox.oauth.script(*fault.responses, client_id=SERVICE_ACCOUNT_EMAIL)

    with fault_run(f"token endpoint: {fault.name} (BigQuery hook)", "query runs after a retried grant", request):
        try:
            rows = _bigquery_rows(conn_id)()
        except Exception as err:
            LEDGER.add_exception(request.node.name, err)
            raise

    assert rows == [{"ok": 1}]
    assert sandbox.oauth.grants_issued(SERVICE_ACCOUNT_EMAIL) >= grants_before + 1


def test_token_endpoint_down_fails_clearly(
    sandbox: Sandbox, derive_connection: Callable[..., str], request: pytest.FixtureRequest
) -> None:
    conn_id = derive_connection("oauth_m2m_default", "oauth_down")
    # Retry-After 0 keeps the four attempts fast; the hook's own backoff is not under test here.
    sandbox.oauth.script(*[ScriptedResponse.unavailable(retry_after_seconds=0)] * 4, client_id=OAUTH_CLIENT_ID)

    with fault_run("token endpoint: 503 on every attempt", "fails naming the connection, the status and the attempts", request):
        with pytest.raises(TokenEndpointError) as caught:
            _oauth_token(conn_id)()
        LEDGER.add_exception(request.node.name, caught.value)
        message = str(caught.value)
        assert "oauth_down" in message
        assert "HTTP 503" in message
        assert "4 attempts" in message
