"""BigQueryM2MHook.get_client() against the sandbox: a real google-cloud-bigquery client whose
requests go over TLS to the connection's api_url, the token-checking gateway in front of bqemulator."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import requests
from google.cloud import bigquery

from airflow_provider_m2m.hooks._connection import ConnectionFieldError
from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.sandbox import Sandbox

TABLE = "`m2m-sandbox.crm.customer_accounts`"
COUNT_SQL = f"SELECT COUNT(*) AS row_count FROM {TABLE}"
# Seconds that job.result() waits for the job. The emulator finishes a count in well under a second.
RESULT_TIMEOUT_SECONDS = 60


def _record_request_urls(hook: BigQueryM2MHook) -> list[str]:
    """Record the URL of every response that the hook's session receives."""
    urls: list[str] = []
    hook.get_session().hooks["response"].append(lambda response, **kwargs: urls.append(response.url))
    return urls


def _count_rows(client: bigquery.Client) -> int:
    rows = list(client.query(COUNT_SQL).result(timeout=RESULT_TIMEOUT_SECONDS))
    assert len(rows) == 1
    return rows[0]["row_count"]


def test_client_counts_table_rows(sandbox: Sandbox) -> None:
    hook = BigQueryM2MHook()
    urls = _record_request_urls(hook)

    row_count = _count_rows(hook.get_client())

    assert row_count == len(sandbox.seed_data.source_rows)
    assert urls, "the client sent no request through the hook's session"


def test_client_sends_requests_to_api_url(sandbox: Sandbox) -> None:
    hook = BigQueryM2MHook()
    urls = _record_request_urls(hook)

    _count_rows(hook.get_client())

    api_root = urlsplit(sandbox.bigquery_url)
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme == "https", url
        assert parts.netloc == api_root.netloc, url
        assert parts.path.startswith(api_root.path + "/"), url


def test_client_uses_connection_project_and_location(sandbox: Sandbox) -> None:
    client = BigQueryM2MHook().get_client()

    assert client.project == "m2m-sandbox"
    assert client.location == "US"


def test_client_shares_the_token_cache(sandbox: Sandbox) -> None:
    email = sandbox.service_account_info["client_email"]
    hook = BigQueryM2MHook()
    token = hook.get_token()
    grants_before = sandbox.oauth.grants_issued(email)

    _count_rows(hook.get_client())
    _count_rows(BigQueryM2MHook().get_client())

    assert sandbox.oauth.grants_issued(email) == grants_before
    assert hook.get_token().access_token == token.access_token


def test_client_ignores_requests_ca_bundle_variable(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE replace a session's verify. The public CA bundle set here does
    # not trust the sandbox CA, so the query succeeds only if the connection's ca_bundle is used.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", requests.certs.where())

    row_count = _count_rows(BigQueryM2MHook().get_client())

    assert row_count == len(sandbox.seed_data.source_rows)


def test_client_rejects_server_outside_ca_bundle(derive_connection: Callable[..., str]) -> None:
    # The derived connection has the same key, so it finds this grant's token in the node-wide
    # cache. Its first TLS handshake is then the client's own BigQuery request.
    BigQueryM2MHook().get_token()
    conn_id = derive_connection(
        "bigquery_m2m_default", "bigquery_public_ca_only", extra={"ca_bundle": requests.certs.where()}
    )
    client = BigQueryM2MHook(conn_id).get_client()

    # By default the client retries a failed connection for up to 10 minutes (google-cloud-bigquery 3.47).
    with pytest.raises(requests.exceptions.SSLError):
        client.query(COUNT_SQL, retry=None, job_retry=None)


def test_client_keeps_api_url_path_prefix(derive_connection: Callable[..., str]) -> None:
    api_url = "https://gateway.example/google/bigquery/v2/"
    conn_id = derive_connection("bigquery_m2m_default", "bigquery_behind_gateway", extra={"api_url": api_url})

    client = BigQueryM2MHook(conn_id).get_client()

    # No server listens there, so the check reads the URL the client would request.
    url = urlsplit(client._connection.build_api_url("/projects/p/queries"))
    assert url.netloc == "gateway.example"
    assert url.path == "/google/bigquery/v2/projects/p/queries"


def test_client_rejects_api_url_without_api_path(derive_connection: Callable[..., str]) -> None:
    conn_id = derive_connection(
        "bigquery_m2m_default", "bigquery_odd_api_url", extra={"api_url": "https://gateway.example/bq"}
    )

    with pytest.raises(ConnectionFieldError) as raised:
        BigQueryM2MHook(conn_id).get_client()

    assert raised.value.connection_id == "bigquery_odd_api_url"
    assert raised.value.field == "api_url"
    assert "/bigquery/v2" in str(raised.value)
