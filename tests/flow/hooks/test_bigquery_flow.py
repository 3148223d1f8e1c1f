"""BigQueryM2MHook against the sandbox: google-auth service-account grants at the sandbox OAuth
server, queries through the token-checking gateway in front of bqemulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_provider_m2m.hooks.bigquery import BigQueryError, BigQueryM2MHook
from airflow_provider_m2m.sandbox import Sandbox

TABLE = "`m2m-sandbox.crm.customer_accounts`"


def _service_account_grants(sandbox: Sandbox) -> int:
    return sandbox.oauth.grants_issued(sandbox.service_account_info["client_email"])


def test_connection_reports_scopes_and_lifetime(sandbox: Sandbox) -> None:
    ok, message = BigQueryM2MHook().test_connection()

    assert ok, message
    assert "https://www.googleapis.com/auth/bigquery" in message
    assert "token lifetime: 3600 s" in message
    for secret in sandbox.secrets():
        assert secret not in message


def test_iter_rows_reads_the_table_typed(sandbox: Sandbox) -> None:
    hook = BigQueryM2MHook()
    page_requests = []
    hook.get_session().hooks["response"].append(
        lambda response, **kwargs: page_requests.append(response.url) if "/queries/" in response.url else None
    )

    rows = list(hook.iter_rows(f"SELECT * FROM {TABLE} ORDER BY account_id", page_size=70))

    assert len(rows) == len(sandbox.seed_data.source_rows)
    # jobs.query returns the first 70 rows; getQueryResults returns the others, 70 per page.
    assert len(page_requests) == -(-len(rows) // 70) - 1
    assert rows[0]["account_id"] == "ACC-000001"
    for row in rows:
        assert isinstance(row["is_active"], bool)
        assert isinstance(row["signup_date"], date)
        assert row["annual_revenue"] is None or isinstance(row["annual_revenue"], Decimal)
        assert row["employees"] is None or isinstance(row["employees"], int)
        stamp = row["last_activity_at"]
        assert stamp is None or (isinstance(stamp, datetime) and stamp.utcoffset().total_seconds() == 0)


def test_iter_rows_matches_seed_values(sandbox: Sandbox) -> None:
    seeded = {row["account_id"]: row for row in sandbox.seed_data.source_rows}

    rows = BigQueryM2MHook().iter_rows(
        f"SELECT account_id, name, annual_revenue, last_activity_at FROM {TABLE}"
    )

    for row in rows:
        source = seeded[row["account_id"]]
        assert row["name"] == source["name"]
        if source["annual_revenue"] is None:
            assert row["annual_revenue"] is None
        else:
            assert row["annual_revenue"] == Decimal(str(source["annual_revenue"]))
        if source["last_activity_at"] is None:
            assert row["last_activity_at"] is None
        else:
            assert row["last_activity_at"] == _as_utc(source["last_activity_at"])


def _as_utc(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def test_query_parameters_are_typed(sandbox: Sandbox) -> None:
    rows = list(
        BigQueryM2MHook().iter_rows(
            f"SELECT account_id FROM {TABLE} WHERE tier = @tier AND is_active = @active ORDER BY account_id",
            parameters={"tier": "Gold", "active": True},
        )
    )

    expected = sorted(
        row["account_id"]
        for row in sandbox.seed_data.source_rows
        if row["tier"] == "Gold" and row["is_active"]
    )
    assert [row["account_id"] for row in rows] == expected


@pytest.mark.parametrize(
    "sql",
    ["SELECT no_such_column FROM `m2m-sandbox.crm.customer_accounts`", "SELEC 1"],
    ids=["unknown-column", "syntax-error"],
)
def test_failed_query_raises_with_reason(sandbox: Sandbox, sql: str) -> None:
    with pytest.raises(BigQueryError) as raised:
        list(BigQueryM2MHook().iter_rows(sql))

    assert "'bigquery_m2m_default'" in str(raised.value)
    assert "invalidQuery" in raised.value.reasons


def test_one_grant_for_two_hooks(sandbox: Sandbox) -> None:
    before = _service_account_grants(sandbox)

    list(BigQueryM2MHook().iter_rows("SELECT 1 AS one"))
    list(BigQueryM2MHook().iter_rows("SELECT 2 AS two"))

    assert _service_account_grants(sandbox) == before + 1


def test_revoked_token_is_granted_again_once(sandbox: Sandbox) -> None:
    hook = BigQueryM2MHook()
    token = hook.get_token()
    before = _service_account_grants(sandbox)
    sandbox.oauth.revoke(token.access_token)

    rows = list(hook.iter_rows("SELECT 1 AS one"))

    assert rows == [{"one": 1}]
    assert _service_account_grants(sandbox) == before + 1


@pytest.mark.parametrize("form", ["key_path", "double_escaped_key_json"])
def test_other_key_forms_load(sandbox: Sandbox, derive_connection: Callable[..., str], form: str) -> None:
    if form == "key_path":
        extra = {"key_json": None, "key_path": str(sandbox.state_dir / "service-account.json")}
    else:
        info = dict(sandbox.service_account_info)
        info["private_key"] = info["private_key"].replace("\n", "\\n")
        extra = {"key_json": json.dumps(info)}
    conn_id = derive_connection("bigquery_m2m_default", f"bigquery_{form}", extra=extra)

    rows = list(BigQueryM2MHook(conn_id).iter_rows("SELECT 1 AS one"))

    assert rows == [{"one": 1}]


def test_get_client_needs_the_extra(sandbox: Sandbox) -> None:
    pytest.importorskip("google.auth")
    try:
        import google.cloud.bigquery  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError) as raised:
            BigQueryM2MHook().get_client()
        assert "airflow-provider-m2m[bigquery-client]" in str(raised.value)
    else:
        client = BigQueryM2MHook().get_client()
        assert client.project == "m2m-sandbox"


@pytest.mark.parametrize("fault", ["connection_reset", "slow_response"])
def test_grant_retried_after_network_failure(
    sandbox: Sandbox, derive_connection: Callable[..., str], fault: str
) -> None:
    from airflow_provider_m2m.sandbox.oauth_server import ScriptedResponse

    conn_id = derive_connection("bigquery_m2m_default", "bigquery_flaky_grant", extra={"timeout": 1})
    scripted = (
        ScriptedResponse.connection_reset() if fault == "connection_reset" else ScriptedResponse.delay(2.5)
    )
    sandbox.oauth.script(scripted, client_id=sandbox.service_account_info["client_email"])
    before = _service_account_grants(sandbox)

    rows = list(BigQueryM2MHook(conn_id).iter_rows("SELECT 1 AS one"))

    assert rows == [{"one": 1}]
    assert _service_account_grants(sandbox) >= before + 1
