"""SalesforceM2MHook's lookup by key, updates by Id and deletes, and orphan accounting, against the sandbox over HTTPS.

Each test inserts its own records under a key prefix of its own, so the shared sandbox's seeded
records stay as other tests expect them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests

from airflow_provider_m2m.hooks.salesforce import SalesforceApiError, SalesforceM2MHook, SalesforceWriteError
from airflow_provider_m2m.reconcile import NULL
from airflow_provider_m2m.reconcile.orphans import account_orphans, flag_records, ids_to_recheck, plan_orphan_work
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

    outcomes = hook.update_records(OBJECT, flag_records(work, {FLAG: True}))
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


@pytest.mark.parametrize("bulk_threshold", [200, 1], ids=["collections", "bulk"])
def test_flag_after_delete_counts_gone(emulator: SalesforceEmulator, bulk_threshold: int) -> None:
    ids = _insert(emulator, f"FAD{bulk_threshold}", 4)
    keys = list(ids)
    hook = SalesforceM2MHook()
    work = plan_orphan_work("flag", keys, hook.lookup_records(OBJECT, KEY, keys, [FLAG]), KEY, {FLAG: True})
    # Between the lookup and the flag update, someone deletes one record and purges another.
    hook.delete_records(OBJECT, [ids[keys[1]]])
    emulator.purge_records(OBJECT, [ids[keys[2]]])
    records_before = len(emulator.records(OBJECT))

    outcomes = hook.update_records(OBJECT, flag_records(work, {FLAG: True}), bulk_threshold=bulk_threshold)
    recheck = ids_to_recheck(outcomes)
    found = {row["Id"] for row in hook.lookup_records(OBJECT, "Id", recheck)}
    result = account_orphans(work, outcomes, purged_ids=set(recheck) - found)

    result.check_totals()
    assert result.counts["flagged"] == 2
    assert result.counts["gone"] == 2
    assert result.failures == []
    assert _stored_keys(emulator, f"FAD{bulk_threshold}") == {keys[0], keys[3]}
    assert len(emulator.records(OBJECT)) == records_before


def test_update_records_collections_outcomes(emulator: SalesforceEmulator) -> None:
    ids = list(_insert(emulator, "UCO", 5).values())
    SalesforceM2MHook().delete_records(OBJECT, [ids[1]])
    emulator.purge_records(OBJECT, [ids[2]])
    emulator.lock_records([ids[3]])
    calls_before = emulator.api_calls["collection_update"]
    records = [{"Id": record_id, FLAG: True, "Notes__c": NULL} for record_id in ids] + [{FLAG: True}]
    try:
        outcomes = SalesforceM2MHook().update_records(OBJECT, records)
    finally:
        emulator.lock_records([])

    assert [outcome.status for outcome in outcomes] == ["updated", "failed", "failed", "failed", "updated", "failed"]
    assert [outcome.key for outcome in outcomes] == [*ids, ""]
    assert [outcome.error_code for outcome in outcomes[1:4]] == [
        "ENTITY_IS_DELETED",
        "INVALID_CROSS_REFERENCE_KEY",
        "ENTITY_IS_LOCKED",
    ]
    assert [outcome.salesforce_id for outcome in outcomes[:5]] == ids
    assert "no Id" in (outcomes[5].error or "")
    assert {outcome.operation for outcome in outcomes} == {"update"}
    assert emulator.api_calls["collection_update"] - calls_before == 1
    stored = {record["Id"]: record for record in emulator.records(OBJECT) if record[KEY].startswith("UCO")}
    assert set(stored) == {ids[0], ids[3], ids[4]}
    assert [stored[record_id][FLAG] for record_id in (ids[0], ids[3], ids[4])] == [True, False, True]


def test_update_records_bulk_outcomes(emulator: SalesforceEmulator) -> None:
    ids = list(_insert(emulator, "UBU", 30).values())
    SalesforceM2MHook().delete_records(OBJECT, [ids[7]])
    emulator.lock_records([ids[11]])
    jobs_before = emulator.api_calls["bulk_ingest_create"]
    collections_before = emulator.api_calls["collection_update"]
    try:
        outcomes = SalesforceM2MHook().update_records(
            OBJECT, [{"Id": record_id, FLAG: True} for record_id in ids], bulk_threshold=10
        )
    finally:
        emulator.lock_records([])

    assert Counter(outcome.status for outcome in outcomes) == Counter({"updated": 28, "failed": 2})
    assert {outcome.operation for outcome in outcomes} == {"update"}
    failed = {outcome.key: outcome for outcome in outcomes if outcome.status == "failed"}
    assert failed[ids[7]].error_code == "ENTITY_IS_DELETED"
    assert failed[ids[7]].salesforce_id == ids[7]
    assert failed[ids[11]].error_code == "ENTITY_IS_LOCKED"
    assert emulator.api_calls["bulk_ingest_create"] - jobs_before == 1
    assert emulator.api_calls["collection_update"] == collections_before
    flagged = {record["Id"] for record in emulator.records(OBJECT) if record[KEY].startswith("UBU") and record[FLAG]}
    assert flagged == set(ids) - {ids[7], ids[11]}


def test_update_records_sends_literal_na_by_collections(emulator: SalesforceEmulator) -> None:
    ids = list(_insert(emulator, "UNA", 12).values())
    records = [{"Id": record_id, "Notes__c": "#N/A" if number == 0 else "checked"} for number, record_id in enumerate(ids)]
    calls_before = emulator.api_calls["collection_update"]

    outcomes = SalesforceM2MHook().update_records(OBJECT, records, bulk_threshold=5)

    assert [outcome.status for outcome in outcomes] == ["updated"] * 12
    assert emulator.api_calls["collection_update"] - calls_before == 1
    notes = {record["Id"]: record["Notes__c"] for record in emulator.records(OBJECT) if record["Id"] in ids}
    assert notes[ids[0]] == "#N/A"
    assert {notes[record_id] for record_id in ids[1:]} == {"checked"}


def test_update_survives_session_timeout(emulator: SalesforceEmulator) -> None:
    ids = list(_insert(emulator, "UEX", 3).values())
    hook = SalesforceM2MHook()
    hook.get_token()
    grants_before = emulator.api_calls["token"]
    emulator.expire_all_sessions()

    outcomes = hook.update_records(OBJECT, [{"Id": record_id, FLAG: True} for record_id in ids])

    assert [outcome.status for outcome in outcomes] == ["updated"] * 3
    assert emulator.api_calls["token"] == grants_before + 1


@pytest.mark.parametrize("operation", ["update", "upsert"])
def test_failed_request_keeps_earlier_outcomes(emulator: SalesforceEmulator, operation: str) -> None:
    """A 503 on the second of three requests: the first 200 stay written, the next 200 fail, the rest are unprocessed."""
    prefix = f"FCR-{operation}"
    by_key = _insert(emulator, prefix, 450)
    hook = SalesforceM2MHook()
    if operation == "update":
        records = [{"Id": record_id, FLAG: True} for record_id in by_key.values()]
    else:
        records = [{KEY: key, FLAG: True} for key in by_key]
    emulator.fail_collections_request(after=1, status=503)
    kind = "collection_update" if operation == "update" else "collection_upsert"
    calls_before = emulator.api_calls[kind]

    try:
        with pytest.raises(SalesforceWriteError) as raised:
            if operation == "update":
                hook.update_records(OBJECT, records, bulk_threshold=1000)
            else:
                hook.upsert_records(OBJECT, KEY, records, bulk_threshold=1000)
    finally:
        emulator.cancel_collections_failure()

    error = raised.value
    assert isinstance(error, SalesforceApiError)
    assert error.status_code == 503
    assert error.error_codes == ("SERVER_UNAVAILABLE",)
    outcomes = error.outcomes
    assert len(outcomes) == 450
    assert [outcome.status for outcome in outcomes[:200]] == ["updated"] * 200
    assert [outcome.status for outcome in outcomes[200:400]] == ["failed"] * 200
    assert [outcome.status for outcome in outcomes[400:]] == ["unprocessed"] * 50
    assert all(outcome.error_code == "SERVER_UNAVAILABLE" for outcome in outcomes[200:400])
    assert all("HTTP 503" in (outcome.error or "") for outcome in outcomes[200:])
    assert {outcome.operation for outcome in outcomes} == {operation}
    expected_keys = list(by_key.values()) if operation == "update" else list(by_key)
    assert [outcome.key for outcome in outcomes] == expected_keys
    # The hook stops at the failed request: it sends no third one.
    assert emulator.api_calls[kind] - calls_before == 2
    stored = {record[KEY]: record[FLAG] for record in emulator.records(OBJECT) if record[KEY].startswith(prefix)}
    keys = list(by_key)
    assert all(stored[key] is True for key in keys[:200])
    assert not any(stored[key] for key in keys[200:])


def test_timed_out_bulk_job_records_fail(emulator: SalesforceEmulator) -> None:
    """A job still running when the wait times out was sent, so its records count as failed, not unprocessed."""
    ids = list(_insert(emulator, "BTO", 30).values())
    emulator.set_processing_delay(2.0)
    try:
        with pytest.raises(SalesforceWriteError) as raised:
            SalesforceM2MHook(bulk_job_timeout_seconds=0.5).update_records(
                OBJECT, [{"Id": record_id, FLAG: True} for record_id in ids], bulk_threshold=10
            )
    finally:
        emulator.set_processing_delay(0.0)
        emulator.wait_for_jobs()

    outcomes = raised.value.outcomes
    assert [outcome.status for outcome in outcomes] == ["failed"] * 30
    assert all("still InProgress" in (outcome.error or "") for outcome in outcomes)
    # The job goes on after the hook gives up and writes the flags.
    flagged = {record["Id"] for record in emulator.records(OBJECT) if record[KEY].startswith("BTO") and record[FLAG]}
    assert flagged == set(ids)


def test_timed_out_request_keeps_earlier_outcomes(emulator: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read timeout on the second of two update requests stops the write as an HTTP error does."""
    ids = list(_insert(emulator, "RTO", 300).values())
    hook = SalesforceM2MHook()
    send = hook._request
    patches: list[str] = []

    def time_out_second_patch(method: str, path: str, **kwargs: Any) -> requests.Response:
        if method == "PATCH" and path == "composite/sobjects":
            patches.append(path)
            if len(patches) == 2:
                raise requests.ReadTimeout("read timed out, as the test requested")
        return send(method, path, **kwargs)

    monkeypatch.setattr(hook, "_request", time_out_second_patch)

    with pytest.raises(SalesforceWriteError) as raised:
        hook.update_records(OBJECT, [{"Id": record_id, FLAG: True} for record_id in ids], bulk_threshold=1000)

    outcomes = raised.value.outcomes
    assert [outcome.status for outcome in outcomes] == ["updated"] * 200 + ["failed"] * 100
    assert all("ReadTimeout" in (outcome.error or "") for outcome in outcomes[200:])
    assert [outcome.key for outcome in outcomes] == ids
