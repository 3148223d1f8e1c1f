"""SalesforceM2MHook's lookup by key and deletes, and orphan accounting, against the sandbox over HTTPS.

Each test inserts its own records under a key prefix of its own, so the shared sandbox's seeded
records stay as other tests expect them.
"""

from __future__ import annotations

from collections import Counter

import pytest

from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.reconcile.orphans import account_orphans, flag_records, plan_orphan_work
from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox.salesforce import SalesforceEmulator

OBJECT = "Customer_Account__c"
KEY = "External_Id__c"
FLAG = "Missing_From_Source__c"


@pytest.fixture
def emulator(sandbox: Sandbox) -> SalesforceEmulator:
    """The sandbox's Salesforce emulator.

    Tests take this rather than the sandbox, so that a failing test's printed arguments stay short.
    """
    return sandbox.salesforce


def _insert(emulator: SalesforceEmulator, prefix: str, count: int) -> dict[str, str]:
    """Insert `count` records keyed `<prefix>-000000` and up; return key -> record Id."""
    keys = [f"{prefix}-{number:06d}" for number in range(count)]
    ids = emulator.insert_records(OBJECT, [{KEY: key, "Name": f"Orphan {key}"} for key in keys])
    return dict(zip(keys, ids, strict=True))


def _stored_keys(emulator: SalesforceEmulator, prefix: str) -> set[str]:
    emulator.wait_for_jobs()
    return {record[KEY] for record in emulator.records(OBJECT) if record[KEY].startswith(prefix)}


def test_delete_records_collections_outcomes(emulator: SalesforceEmulator) -> None:
    ids = _insert(emulator, "DCO", 5)
    gone_id = ids.pop("DCO-000004")
    SalesforceM2MHook().delete_records(OBJECT, [gone_id])
    calls_before = emulator.api_calls["collection_delete"]

    outcomes = SalesforceM2MHook().delete_records(OBJECT, [*ids.values(), gone_id])

    assert [outcome.status for outcome in outcomes] == ["deleted"] * 4 + ["failed"]
    assert [outcome.key for outcome in outcomes] == [*ids.values(), gone_id]
    assert {outcome.operation for outcome in outcomes} == {"delete"}
    assert outcomes[4].error_code == "ENTITY_IS_DELETED"
    assert emulator.api_calls["collection_delete"] - calls_before == 1
    assert _stored_keys(emulator, "DCO") == set()


def test_delete_records_bulk_reports_locked_record(emulator: SalesforceEmulator) -> None:
    ids = _insert(emulator, "DBU", 30)
    locked = ids["DBU-000011"]
    emulator.lock_records([locked])
    jobs_before = emulator.api_calls["bulk_ingest_create"]
    try:
        outcomes = SalesforceM2MHook().delete_records(OBJECT, list(ids.values()), bulk_threshold=10)
    finally:
        emulator.lock_records([])

    assert Counter(outcome.status for outcome in outcomes) == Counter({"deleted": 29, "failed": 1})
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    assert failed[0].key == locked
    assert failed[0].error_code == "ENTITY_IS_LOCKED"
    assert "locked" in (failed[0].error or "")
    assert emulator.api_calls["bulk_ingest_create"] - jobs_before == 1
    assert _stored_keys(emulator, "DBU") == {"DBU-000011"}


def test_delete_survives_session_timeout(emulator: SalesforceEmulator) -> None:
    ids = _insert(emulator, "DEX", 3)
    hook = SalesforceM2MHook()
    hook.get_token()
    grants_before = emulator.api_calls["token"]
    emulator.expire_all_sessions()

    outcomes = hook.delete_records(OBJECT, list(ids.values()))

    assert [outcome.status for outcome in outcomes] == ["deleted"] * 3
    assert emulator.api_calls["token"] == grants_before + 1


@pytest.mark.parametrize(
    ("bulk_threshold", "call_kind"), [(200, "query"), (10, "bulk_query_create")], ids=["rest", "bulk"]
)
def test_lookup_splits_long_statements(emulator: SalesforceEmulator, bulk_threshold: int, call_kind: str) -> None:
    ids = _insert(emulator, f"LK{bulk_threshold}", 60)
    requested = [*ids, "LKX-NOT-THERE"]
    calls_before = emulator.api_calls[call_kind]

    # About 16 characters per quoted key: 400 characters hold about 20 keys after the SELECT.
    rows = SalesforceM2MHook().lookup_records(
        OBJECT, KEY, requested, [FLAG], bulk_threshold=bulk_threshold, max_soql_length=400
    )

    assert emulator.api_calls[call_kind] - calls_before >= 3
    assert {row[KEY]: row["Id"] for row in rows} == ids
    assert {row[FLAG] for row in rows} == {"false"}


def test_lookup_quotes_special_keys(emulator: SalesforceEmulator) -> None:
    keys = ["O'Brien\\1", 'Say "hi"', "tab\there"]
    ids = emulator.insert_records(OBJECT, [{KEY: key, "Name": "Quoted"} for key in keys])

    rows = SalesforceM2MHook().lookup_records(OBJECT, KEY, keys)

    assert {row[KEY]: row["Id"] for row in rows} == dict(zip(keys, ids, strict=True))


def test_orphan_deleted_meanwhile_counts_as_gone(emulator: SalesforceEmulator) -> None:
    ids = _insert(emulator, "GON", 4)
    keys = [*ids, "GON-999999"]
    hook = SalesforceM2MHook()
    rows = hook.lookup_records(OBJECT, KEY, keys)
    work = plan_orphan_work("delete", keys, rows, KEY)
    # Someone deletes one record between the lookup and the orphan delete.
    hook.delete_records(OBJECT, [ids["GON-000002"]])

    result = account_orphans(work, hook.delete_records(OBJECT, list(work.targets.values())))

    result.check_totals()
    assert result.counts["deleted"] == 3
    assert result.counts["gone"] == 2
    assert result.failures == []
    assert _stored_keys(emulator, "GON") == set()


def test_flag_lookup_skips_flagged_records(emulator: SalesforceEmulator) -> None:
    keys = [f"FLG-{number:06d}" for number in range(6)]
    emulator.insert_records(
        OBJECT, [{KEY: key, "Name": "Flag", FLAG: number % 2 == 0} for number, key in enumerate(keys)]
    )
    hook = SalesforceM2MHook()
    rows = hook.lookup_records(OBJECT, KEY, keys, [FLAG])
    work = plan_orphan_work("flag", keys, rows, KEY, {FLAG: True})

    outcomes = hook.upsert_records(OBJECT, KEY, flag_records(work, KEY, {FLAG: True}))
    result = account_orphans(work, outcomes)

    result.check_totals()
    assert sorted(work.already_flagged) == keys[0::2]
    assert result.counts["flagged"] == 3
    assert all(record[FLAG] for record in emulator.records(OBJECT) if record[KEY] in keys)


def test_delete_failed_bulk_job_is_unprocessed(emulator: SalesforceEmulator) -> None:
    ids = _insert(emulator, "DFJ", 30)
    emulator.fail_ingest_job_after(10)

    outcomes = SalesforceM2MHook().delete_records(OBJECT, list(ids.values()), bulk_threshold=10)

    assert Counter(outcome.status for outcome in outcomes) == Counter({"deleted": 10, "unprocessed": 20})
    assert len(_stored_keys(emulator, "DFJ")) == 20


def test_flag_after_delete_counts_failed(emulator: SalesforceEmulator) -> None:
    ids = _insert(emulator, "FAD", 3)
    keys = list(ids)
    hook = SalesforceM2MHook()
    work = plan_orphan_work("flag", keys, hook.lookup_records(OBJECT, KEY, keys, [FLAG]), KEY, {FLAG: True})
    # Someone deletes one record between the lookup and the flag upsert.
    hook.delete_records(OBJECT, [ids["FAD-000001"]])

    outcomes = hook.upsert_records(OBJECT, KEY, flag_records(work, KEY, {FLAG: True}))
    result = account_orphans(work, outcomes)

    result.check_totals()
    assert result.counts["flagged"] == 2
    assert result.counts["failed"] == 1
    assert [(failure.key, failure.operation) for failure in result.failures] == [("FAD-000001", "flag")]
