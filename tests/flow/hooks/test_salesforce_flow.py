"""SalesforceM2MHook against the sandbox's Salesforce emulator, over HTTPS, for both flows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from simple_salesforce import Salesforce

from airflow_provider_m2m.hooks.salesforce import SalesforceApiError, SalesforceLoginError, SalesforceM2MHook
from airflow_provider_m2m.reconcile.mapping import NULL
from airflow_provider_m2m.sandbox import Sandbox

OBJECT = "Customer_Account__c"
KEY = "External_Id__c"
FLOWS = ["salesforce_m2m_default", "salesforce_m2m_jwt"]


def _record(sandbox: Sandbox, key: str) -> dict | None:
    matches = [record for record in sandbox.salesforce.records(OBJECT) if record.get(KEY) == key]
    return matches[0] if matches else None


def _statuses(outcomes: list) -> Counter:
    return Counter(outcome.status for outcome in outcomes)


@pytest.mark.parametrize("conn_id", FLOWS)
def test_connection_reports_scope_and_lifetime(sandbox: Sandbox, conn_id: str) -> None:
    hook = SalesforceM2MHook(conn_id)

    ok, message = hook.test_connection()

    assert ok, message
    assert "granted scope" in message
    assert "token lifetime: 7200 s" in message
    for secret in sandbox.secrets():
        assert secret not in message


@pytest.mark.parametrize("conn_id", FLOWS)
def test_get_conn_is_simple_salesforce(sandbox: Sandbox, conn_id: str) -> None:
    client = SalesforceM2MHook(conn_id).get_conn()

    assert isinstance(client, Salesforce)
    assert client.sf_version == "62.0"
    result = client.query(f"SELECT {KEY} FROM {OBJECT} LIMIT 1")
    assert result["totalSize"] == 1


def test_query_all_returns_every_page(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook()
    expected = len(sandbox.salesforce.records(OBJECT))

    pages_before = sandbox.salesforce.api_calls["query_more"]

    records = hook.query_all(f"SELECT Id, {KEY}, Name FROM {OBJECT}", batch_size=200)

    assert expected > 200
    assert sandbox.salesforce.api_calls["query_more"] - pages_before == (expected - 1) // 200
    assert len(records) == expected
    assert "attributes" not in records[0]
    assert len({record[KEY] for record in records}) == expected


def test_bulk_query_returns_every_row(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook("salesforce_m2m_jwt")
    stored = {record[KEY]: record["Name"] for record in sandbox.salesforce.records(OBJECT)}

    pages_before = sandbox.salesforce.api_calls["bulk_query_results"]

    rows = list(hook.bulk_query(f"SELECT {KEY}, Name FROM {OBJECT}", page_size=100))

    assert sandbox.salesforce.api_calls["bulk_query_results"] - pages_before == -(-len(stored) // 100)
    assert len(rows) == len(stored)
    assert {row[KEY]: row["Name"] for row in rows} == stored


def test_describe_lists_fields(sandbox: Sandbox) -> None:
    describe = SalesforceM2MHook().describe(OBJECT)

    names = {field["name"] for field in describe["fields"]}
    assert {KEY, "Name", "Country__c", "Tier__c"} <= names


def test_collections_upsert_outcomes(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook()
    existing = sorted(record[KEY] for record in sandbox.salesforce.records(OBJECT))[0]
    records = [
        {KEY: "COL-000001", "Name": "Collections created", "Tier__c": "Gold"},
        {KEY: existing, "Name": "Collections updated", "Email__c": NULL},
        {KEY: "COL-000002", "Name": "Collections failed", "Tier__c": "Unobtainium"},
        {"Name": "No external id"},
    ]

    outcomes = hook.upsert_records(OBJECT, KEY, records)

    assert [outcome.status for outcome in outcomes] == ["created", "updated", "failed", "failed"]
    assert outcomes[0].salesforce_id
    assert "Tier__c" in (outcomes[2].error or "")
    assert "external id" in (outcomes[3].error or "")
    updated = _record(sandbox, existing)
    assert updated is not None
    assert updated["Name"] == "Collections updated"
    assert updated["Email__c"] is None


def test_bulk_upsert_accounts_for_every_record(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook()
    existing = sorted(record[KEY] for record in sandbox.salesforce.records(OBJECT))[:5]
    records = [
        {KEY: f"BLK-{number:06d}", "Name": f"Bulk {number}", "Tier__c": "Silver"} for number in range(250)
    ]
    records[7]["Tier__c"] = "Unobtainium"
    records += [{KEY: key, "Name": "Bulk updated", "Notes__c": NULL} for key in existing]

    outcomes = hook.upsert_records(OBJECT, KEY, records, bulk_threshold=200)

    assert len(outcomes) == len(records)
    assert [outcome.key for outcome in outcomes] == [record[KEY] for record in records]
    assert _statuses(outcomes) == Counter({"created": 249, "updated": 5, "failed": 1})
    assert outcomes[7].status == "failed"
    assert "Tier" in (outcomes[7].error or "")
    assert sandbox.salesforce.api_calls["bulk_ingest_create"] >= 1
    assert _record(sandbox, existing[0])["Notes__c"] is None


def test_bulk_upsert_keeps_literal_na_text(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook()
    existing = sorted(record[KEY] for record in sandbox.salesforce.records(OBJECT))[5]
    records = [{KEY: f"LNA-{number:06d}", "Name": f"Literal NA {number}"} for number in range(30)]
    records[12]["Notes__c"] = "#N/A"
    records[20]["Tier__c"] = "Unobtainium"
    records.append({KEY: existing, "Name": "Literal NA cleared", "Notes__c": NULL})
    jobs_before = sandbox.salesforce.api_calls["bulk_ingest_create"]

    outcomes = hook.upsert_records(OBJECT, KEY, records, bulk_threshold=10)

    assert [outcome.key for outcome in outcomes] == [record[KEY] for record in records]
    assert _statuses(outcomes) == Counter({"created": 29, "updated": 1, "failed": 1})
    assert outcomes[12].status == "created"
    assert outcomes[20].status == "failed"
    assert sandbox.salesforce.api_calls["bulk_ingest_create"] > jobs_before
    assert _record(sandbox, "LNA-000012")["Notes__c"] == "#N/A"
    assert _record(sandbox, existing)["Notes__c"] is None


def test_bulk_upsert_failed_job_is_unprocessed(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook()
    records = [{KEY: f"FJB-{number:06d}", "Name": f"Failed job {number}"} for number in range(220)]
    sandbox.salesforce.fail_ingest_job_after(100)

    outcomes = hook.upsert_records(OBJECT, KEY, records, bulk_threshold=200)

    counts = _statuses(outcomes)
    assert sum(counts.values()) == len(records)
    assert counts["created"] == 100
    assert counts["unprocessed"] == 120


def test_single_record_upsert(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook("salesforce_m2m_jwt")

    created = hook.upsert_record(OBJECT, KEY, "ONE-000001", {"Name": "Single", "Tier__c": "Bronze"})
    updated = hook.upsert_record(OBJECT, KEY, "ONE-000001", {"Name": "Single again"})
    failed = hook.upsert_record(OBJECT, KEY, "ONE-000001", {"Tier__c": "Unobtainium"})

    assert (created.status, updated.status, failed.status) == ("created", "updated", "failed")
    assert created.salesforce_id == updated.salesforce_id
    assert "Tier__c" in (failed.error or "")
    assert _record(sandbox, "ONE-000001")["Name"] == "Single again"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda hook: hook.query_all(f"SELECT Id FROM {OBJECT}"), id="query_all"),
        pytest.param(lambda hook: list(hook.bulk_query(f"SELECT Id FROM {OBJECT}")), id="bulk_query"),
        pytest.param(lambda hook: hook.describe(OBJECT), id="describe"),
        pytest.param(
            lambda hook: hook.upsert_records(OBJECT, KEY, [{KEY: "EXP-000001", "Name": "After expiry"}]),
            id="collections",
        ),
        pytest.param(
            lambda hook: hook.upsert_records(
                OBJECT,
                KEY,
                [{KEY: f"EXP-{n:06d}", "Name": "Bulk after expiry"} for n in range(10, 20)],
                bulk_threshold=5,
            ),
            id="bulk_ingest",
        ),
        pytest.param(
            lambda hook: hook.get_conn().query(f"SELECT Id FROM {OBJECT} LIMIT 1"), id="simple_salesforce"
        ),
    ],
)
def test_call_survives_session_timeout(sandbox: Sandbox, call: Callable) -> None:
    hook = SalesforceM2MHook()
    hook.get_token()
    grants_before = sandbox.salesforce.api_calls["token"]
    sandbox.salesforce.expire_all_sessions()

    call(hook)

    assert sandbox.salesforce.api_calls["token"] == grants_before + 1


def test_session_timeout_mid_bulk_job(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook()
    hook.get_token()
    grants_before = sandbox.salesforce.api_calls["token"]
    # Expire the session after the job is created and its data uploaded, before it is closed.
    sandbox.salesforce.expire_sessions_after_calls(2)

    outcomes = hook.upsert_records(
        OBJECT, KEY, [{KEY: f"MID-{n:06d}", "Name": "Mid job"} for n in range(30)], bulk_threshold=10
    )

    assert _statuses(outcomes) == Counter({"created": 30})
    assert sandbox.salesforce.api_calls["token"] == grants_before + 1


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({"audience": "https://login.example.com"}, "set is_sandbox", id="audience-invalid"),
        pytest.param(
            {"username": "someone-else@m2m-sandbox.example"}, "Pre-authorize the user", id="not-approved"
        ),
        pytest.param({"private_key": "{other key}"}, "upload the certificate", id="invalid-assertion"),
    ],
)
def test_jwt_login_error_says_what_to_change(
    sandbox: Sandbox, derive_connection: Callable[..., str], rsa_pem: str, extra: dict, expected: str
) -> None:
    extra = {name: rsa_pem if value == "{other key}" else value for name, value in extra.items()}
    conn_id = derive_connection("salesforce_m2m_jwt", "salesforce_bad_login", extra=extra)

    with pytest.raises(SalesforceLoginError) as raised:
        SalesforceM2MHook(conn_id).get_token()

    message = str(raised.value)
    assert expected in message
    assert repr(conn_id) in message
    assert raised.value.error == "invalid_grant"


def test_wrong_consumer_secret_says_what_to_change(
    sandbox: Sandbox, derive_connection: Callable[..., str]
) -> None:
    conn_id = derive_connection(
        "salesforce_m2m_default", "salesforce_wrong_secret", password="not-the-consumer-secret"
    )

    ok, message = SalesforceM2MHook(conn_id).test_connection()

    assert not ok
    assert repr(conn_id) in message
    assert "consumer secret (password)" in message
    assert "not-the-consumer-secret" not in message


def test_bulk_upsert_polls_a_slow_job(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook()
    sandbox.salesforce.set_processing_delay(1.5)
    status_calls = sandbox.salesforce.api_calls["bulk_ingest_status"]
    try:
        outcomes = hook.upsert_records(
            OBJECT, KEY, [{KEY: f"SLW-{n:06d}", "Name": "Slow job"} for n in range(12)], bulk_threshold=10
        )
    finally:
        sandbox.salesforce.set_processing_delay(0)

    assert _statuses(outcomes) == Counter({"created": 12})
    # Polls after 1 s, then 2 s later: at least two status reads before the job completes.
    assert sandbox.salesforce.api_calls["bulk_ingest_status"] - status_calls >= 2


def test_bulk_job_timeout_names_the_job(sandbox: Sandbox) -> None:
    hook = SalesforceM2MHook(bulk_job_timeout_seconds=1)
    sandbox.salesforce.set_processing_delay(5)
    try:
        with pytest.raises(SalesforceApiError) as raised:
            hook.upsert_records(
                OBJECT, KEY, [{KEY: f"TMO-{n:06d}", "Name": "Timeout"} for n in range(12)], bulk_threshold=10
            )
    finally:
        sandbox.salesforce.set_processing_delay(0)
        sandbox.salesforce.wait_for_jobs()

    assert "bulk_job_timeout_seconds" in str(raised.value)
