"""Tokens revoked mid-run: the OAuth server invalidates an access token or a client secret, and
Salesforce kills the session between two Bulk API 2.0 calls. Each hook must grant again and finish."""

from __future__ import annotations

import json
import pytest

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook
from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox.runner import OAUTH_CLIENT_ID, SERVICE_ACCOUNT_EMAIL
from airflow_provider_m2m.sandbox.seed import TARGET_OBJECT
from tests.faults.support import ENCRYPTED_JWT_CONN_ID, KEY, LEDGER, fault_run

BULK_RECORDS = 300


def test_oauth_token_revoked_between_calls(sandbox: Sandbox, request: pytest.FixtureRequest) -> None:
    hook = OAuthM2MHook(oauth_m2m_conn_id="oauth_m2m_default")
    hook.run("GET", "whoami")
    revoked = hook.get_token().access_token
    grants_before = sandbox.oauth.grants_issued(OAUTH_CLIENT_ID)

    with fault_run("OAuth access token revoked between two API calls", "new grant, call sent again", request):
        sandbox.oauth.revoke(revoked)
        claims = hook.run("GET", "whoami").json()

    assert claims["client_id"] == OAUTH_CLIENT_ID
    assert hook.get_token().access_token != revoked
    assert sandbox.oauth.grants_issued(OAUTH_CLIENT_ID) == grants_before + 1


def test_client_secret_revoked_with_token(sandbox: Sandbox, request: pytest.FixtureRequest) -> None:
    connection = json.loads(sandbox.connections["oauth_m2m_default"])
    primary = connection["password"]
    hook = OAuthM2MHook(oauth_m2m_conn_id="oauth_m2m_default")
    hook.run("GET", "whoami")

    with fault_run("client secret and access token revoked mid-run", "new grant with the secondary secret", request):
        sandbox.oauth.revoke_secret(OAUTH_CLIENT_ID, primary)
        sandbox.oauth.revoke(hook.get_token().access_token)
        try:
            claims = hook.run("GET", "whoami").json()
        finally:
            sandbox.oauth.add_secret(OAUTH_CLIENT_ID, primary)

    assert claims["client_id"] == OAUTH_CLIENT_ID


def test_bigquery_token_revoked_between_queries(sandbox: Sandbox, request: pytest.FixtureRequest) -> None:
    hook = BigQueryM2MHook(bigquery_m2m_conn_id="bigquery_m2m_default")
    assert hook.get_records("SELECT 1 AS ok") == [{"ok": 1}]
    grants_before = sandbox.oauth.grants_issued(SERVICE_ACCOUNT_EMAIL)

    with fault_run("BigQuery access token revoked between two queries", "new grant, query sent again", request):
        sandbox.oauth.revoke(hook.get_token().access_token)
        try:
            rows = hook.get_records("SELECT 2 AS ok")
        except Exception as err:
            LEDGER.add_exception(request.node.name, err)
            raise

    assert rows == [{"ok": 2}]
    assert sandbox.oauth.grants_issued(SERVICE_ACCOUNT_EMAIL) == grants_before + 1


@pytest.mark.parametrize("conn_id", ["salesforce_m2m_default", ENCRYPTED_JWT_CONN_ID])
@pytest.mark.parametrize("calls_before_expiry", [1, 2, 3])
def test_salesforce_session_killed_between_bulk_calls(
    conn_id: str, calls_before_expiry: int, sandbox: Sandbox, request: pytest.FixtureRequest
) -> None:
    """The session dies after the ingest job is created (1), after the upload (2) or after UploadComplete (3)."""
    # External_Id__c is Text(20), so the prefix stays short: S, the flow's letter and the call number.
    prefix = f"S{conn_id[-1]}{calls_before_expiry}-"
    records = [{KEY: f"{prefix}{number:04d}", "Name": f"Session test {number}"} for number in range(BULK_RECORDS)]
    hook = SalesforceM2MHook(salesforce_m2m_conn_id=conn_id)
    hook.get_token()
    logins_before = sandbox.salesforce.api_calls["token"]

    with fault_run(
        f"Salesforce session killed after Bulk API call {calls_before_expiry} ({conn_id})",
        "new login, every record written once",
        request,
    ) as fault:
        sandbox.salesforce.expire_sessions_after_calls(calls_before_expiry)
        outcomes = hook.upsert_records(TARGET_OBJECT, KEY, records, bulk_threshold=0)
        sandbox.salesforce.wait_for_jobs()
        stored = [record[KEY] for record in sandbox.salesforce.records(TARGET_OBJECT) if record[KEY].startswith(prefix)]
        fault.records_lost = BULK_RECORDS - len(set(stored))
        assert fault.records_lost == 0

    assert sorted(stored) == sorted(record[KEY] for record in records)
    assert [outcome.status for outcome in outcomes] == ["created"] * BULK_RECORDS
    assert sandbox.salesforce.api_calls["token"] == logins_before + 1


def test_salesforce_session_killed_twice_fails_clearly(sandbox: Sandbox, request: pytest.FixtureRequest) -> None:
    """A session that dies again right after the new login is not renewed in a loop."""
    hook = SalesforceM2MHook(salesforce_m2m_conn_id="salesforce_m2m_default")
    hook.get_token()

    with fault_run("Salesforce session killed before every call", "fails naming the connection and the rejection", request):
        sandbox.salesforce.expire_sessions_after_calls(0)
        sandbox.salesforce.session_timeout_seconds = 0
        try:
            with pytest.raises(Exception) as caught:
                hook.describe(TARGET_OBJECT)
        finally:
            sandbox.salesforce.session_timeout_seconds = 7200
        LEDGER.add_exception(request.node.name, caught.value)
        assert "salesforce_m2m_default" in str(caught.value)
        assert "rejected" in str(caught.value)
