"""The fault hooks this suite added to the sandbox, checked over real HTTPS with plain requests."""

from __future__ import annotations

import secrets
import time
import uuid

import jwt
import pytest
import requests

from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox.oauth_server import CLIENT_ASSERTION_TYPE, ScriptedResponse
from airflow_provider_m2m.sandbox.runner import OAUTH_JWT_CLIENT_ID, OAUTH_SCOPES
from airflow_provider_m2m.sandbox.seed import TARGET_OBJECT

HTTP_TIMEOUT = 10
BIGQUERY_CLIENT_ID = "fault-suite-bigquery-reader"
BIGQUERY_SCOPE = "https://www.googleapis.com/auth/bigquery"


def _client_credentials(sandbox: Sandbox, client_id: str, secret: str, scope: str) -> requests.Response:
    return requests.post(
        sandbox.oauth.token_url,
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
        verify=str(sandbox.tls.ca_cert),
        timeout=HTTP_TIMEOUT,
    )


@pytest.fixture(scope="module")
def bigquery_session(sandbox: Sandbox) -> requests.Session:
    """A session with a BigQuery-scoped token from a client registered for these tests."""
    secret = secrets.token_urlsafe(24)
    sandbox.oauth.register_client(BIGQUERY_CLIENT_ID, secret=secret, scopes=[BIGQUERY_SCOPE])
    response = _client_credentials(sandbox, BIGQUERY_CLIENT_ID, secret, BIGQUERY_SCOPE)
    response.raise_for_status()
    session = requests.Session()
    session.ca_bundle = str(sandbox.tls.ca_cert)  # type: ignore[attr-defined]
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return session


def _start_query(sandbox: Sandbox, session: requests.Session) -> dict:
    url = f"{sandbox.bigquery_url}/projects/m2m-sandbox/queries"
    body = {"query": "SELECT 1 AS ok", "useLegacySql": False}
    response = session.post(url, json=body, verify=str(sandbox.tls.ca_cert), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def _get(session: requests.Session, url: str) -> dict:
    # requests prefers REQUESTS_CA_BUNDLE over a session's `verify`, so the CA goes with each request.
    response = session.get(url, verify=session.ca_bundle, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def test_token_endpoint_resets_connection(sandbox: Sandbox) -> None:
    sandbox.oauth.script(ScriptedResponse.connection_reset())
    with pytest.raises(requests.ConnectionError):
        _client_credentials(sandbox, "nobody", "wrong", "sandbox.read")
    assert sandbox.oauth.token_requests[-1].error == "connection_reset"


def test_token_endpoint_serves_after_reset(sandbox: Sandbox) -> None:
    sandbox.oauth.script(ScriptedResponse.connection_reset())
    with pytest.raises(requests.ConnectionError):
        _client_credentials(sandbox, "nobody", "wrong", "sandbox.read")
    response = _client_credentials(sandbox, "nobody", "wrong", "sandbox.read")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_oauth_server_keeps_assertion_claims(sandbox: Sandbox) -> None:
    jti = uuid.uuid4().hex
    now = int(time.time())
    claims = {"iss": OAUTH_JWT_CLIENT_ID, "sub": OAUTH_JWT_CLIENT_ID, "aud": sandbox.oauth.token_url,
              "jti": jti, "iat": now, "exp": now + 60}  # fmt: skip
    assertion = jwt.encode(claims, sandbox.private_key_pem, algorithm="RS256")
    form = {
        "grant_type": "client_credentials",
        "scope": " ".join(OAUTH_SCOPES),
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    response = requests.post(sandbox.oauth.token_url, data=form, verify=str(sandbox.tls.ca_cert), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    assert (OAUTH_JWT_CLIENT_ID, claims) in sandbox.oauth.assertions


def test_gateway_answers_query_incomplete(sandbox: Sandbox, bigquery_session: requests.Session) -> None:
    sandbox.bigquery.gateway.answer_incomplete(2)
    started = _start_query(sandbox, bigquery_session)
    assert started["jobComplete"] is False
    assert "rows" not in started
    job_id = started["jobReference"]["jobId"]
    results_url = f"{sandbox.bigquery_url}/projects/m2m-sandbox/queries/{job_id}"
    assert _get(bigquery_session, results_url)["jobComplete"] is False
    final = _get(bigquery_session, results_url)
    assert final["jobComplete"] is True
    assert final["rows"] == [{"f": [{"v": "1"}]}]


def test_gateway_reports_job_running(sandbox: Sandbox, bigquery_session: requests.Session) -> None:
    job_id = _start_query(sandbox, bigquery_session)["jobReference"]["jobId"]
    sandbox.bigquery.gateway.answer_incomplete(1)
    job_url = f"{sandbox.bigquery_url}/projects/m2m-sandbox/jobs/{job_id}"
    assert _get(bigquery_session, job_url)["status"] == {"state": "RUNNING"}
    assert _get(bigquery_session, job_url)["status"]["state"] == "DONE"


def test_gateway_fails_query_in_200_bodies(sandbox: Sandbox, bigquery_session: requests.Session) -> None:
    sandbox.bigquery.gateway.fail_next_query("Division by zero: 1 / 0", reason="invalidQuery")
    started = _start_query(sandbox, bigquery_session)
    assert started["jobComplete"] is False
    job_id = started["jobReference"]["jobId"]

    job = _get(bigquery_session, f"{sandbox.bigquery_url}/projects/m2m-sandbox/jobs/{job_id}")
    assert job["status"]["state"] == "DONE"
    assert job["status"]["errorResult"]["reason"] == "invalidQuery"
    assert job["status"]["errorResult"]["message"] == "Division by zero: 1 / 0"

    results = _get(bigquery_session, f"{sandbox.bigquery_url}/projects/m2m-sandbox/queries/{job_id}")
    assert results["jobComplete"] is True
    assert results["errors"][0]["reason"] == "invalidQuery"
    assert "rows" not in results


def test_gateway_fails_only_next_query(sandbox: Sandbox, bigquery_session: requests.Session) -> None:
    sandbox.bigquery.gateway.fail_next_query()
    assert _start_query(sandbox, bigquery_session)["jobComplete"] is False
    second = _start_query(sandbox, bigquery_session)
    assert second["jobComplete"] is True
    assert second["rows"] == [{"f": [{"v": "1"}]}]


def test_bulk_upsert_rejects_chosen_records(sandbox: Sandbox) -> None:
    rejected = {"FAULT-REJECT-1", "FAULT-REJECT-3"}
    sandbox.salesforce.reject_records(rejected, "Revenue must be positive")
    records = [{"External_Id__c": f"FAULT-REJECT-{number}", "Name": f"Reject test {number}"} for number in range(5)]
    hook = SalesforceM2MHook(salesforce_m2m_conn_id="salesforce_m2m_default")
    outcomes = hook.upsert_records(TARGET_OBJECT, "External_Id__c", records, bulk_threshold=0)
    failed = {outcome.key: outcome.error for outcome in outcomes if outcome.status == "failed"}
    assert set(failed) == rejected
    assert all("FIELD_CUSTOM_VALIDATION_EXCEPTION" in error for error in failed.values())
    stored = {record["External_Id__c"] for record in sandbox.salesforce.records(TARGET_OBJECT)}
    assert {"FAULT-REJECT-0", "FAULT-REJECT-2", "FAULT-REJECT-4"} <= stored
    assert not rejected & stored


def test_emulator_deletes_all_records(sandbox: Sandbox) -> None:
    before = len(sandbox.salesforce.records(TARGET_OBJECT))
    deleted = sandbox.salesforce.delete_all_records(TARGET_OBJECT)
    assert deleted == before
    assert sandbox.salesforce.records(TARGET_OBJECT) == []
    sandbox.salesforce.insert_records(TARGET_OBJECT, sandbox.seed_data.target_records)
