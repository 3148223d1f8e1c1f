"""BigQueryToSalesforceReconcileOperator's orphan actions against the sandbox over HTTPS.

The source is the sandbox's BigQuery table of 300 rows. The target starts as the seeded 291
matching records plus 50 orphans, whose keys are numbered from 900001.

Tests take the emulator and the seed data rather than the sandbox, so that a failing test's printed
arguments stay short.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_m2m.hooks.salesforce import SalesforceApiError, SalesforceM2MHook
from airflow_provider_m2m.operators.reconcile import BigQueryToSalesforceReconcileOperator
from airflow_provider_m2m.reconcile import FieldMapping, FieldType, Mapping, OrphanLimitError
from airflow_provider_m2m.reconcile.orphans import ORPHAN_STATUSES
from airflow_provider_m2m.sandbox.salesforce import SalesforceEmulator
from airflow_provider_m2m.sandbox.seed import SeedData

OBJECT = "Customer_Account__c"
KEY = "External_Id__c"
FLAG = "Missing_From_Source__c"
WRITE_CALLS = ("collection_upsert", "collection_update", "collection_delete", "upsert", "update", "delete", "bulk_ingest_create")

COLUMNS = (
    "account_id, name, email, country, tier, annual_revenue, employees, is_active, signup_date, "
    "last_activity_at, notes"
)
SOURCE_SQL = f"SELECT {COLUMNS} FROM `crm.customer_accounts`"

FIELDS = [
    FieldMapping("name", "Name", FieldType.STRING, length=80),
    FieldMapping("email", "Email__c", FieldType.EMAIL),
    FieldMapping("country", "Country__c", FieldType.PICKLIST),
    FieldMapping("tier", "Tier__c", FieldType.PICKLIST),
    FieldMapping("annual_revenue", "Annual_Revenue__c", FieldType.DECIMAL, scale=2),
    FieldMapping("employees", "Employees__c", FieldType.INTEGER),
    FieldMapping("is_active", "Is_Active__c", FieldType.BOOLEAN),
    FieldMapping("signup_date", "Signup_Date__c", FieldType.DATE),
    FieldMapping("last_activity_at", "Last_Activity__c", FieldType.DATETIME),
    FieldMapping("notes", "Notes__c", FieldType.TEXTAREA, length=255),
]
KEY_MAPPING = FieldMapping("account_id", KEY, FieldType.STRING, length=20)
MAPPING = Mapping(key=KEY_MAPPING, fields=FIELDS)
# The flag field written from the source too, so a record that returns to the source is cleared.
MAPPING_WITH_FLAG = Mapping(
    key=KEY_MAPPING, fields=[*FIELDS, FieldMapping("missing_from_source", FLAG, FieldType.BOOLEAN)]
)


def _operator(tmp_path: Path, **kwargs: Any) -> BigQueryToSalesforceReconcileOperator:
    arguments: dict[str, Any] = {
        "task_id": "reconcile",
        "source_sql": SOURCE_SQL,
        "target_object": OBJECT,
        "mapping": MAPPING,
        "failures_dir": str(tmp_path / "failures"),
        **kwargs,
    }
    return BigQueryToSalesforceReconcileOperator(**arguments)


def _targets(emulator: SalesforceEmulator) -> dict[str, dict[str, Any]]:
    emulator.wait_for_jobs()
    return {record[KEY]: record for record in emulator.records(OBJECT)}


def _write_calls(emulator: SalesforceEmulator) -> dict[str, int]:
    return {kind: emulator.api_calls[kind] for kind in WRITE_CALLS}


def _orphan_keys(seed: SeedData) -> list[str]:
    return sorted(seed.orphan_keys)


def _status_total(result: dict[str, Any]) -> int:
    return sum(result[f"orphans_{status}"] for status in ORPHAN_STATUSES)


def _flag_orphans(emulator: SalesforceEmulator, seed: SeedData, keys: list[str]) -> None:
    """Set the flag on some records directly in the emulator, as an earlier run would have."""
    records = [record for record in seed.target_records if record[KEY] in set(keys)]
    others = [record for record in seed.target_records if record[KEY] not in set(keys)]
    emulator.delete_all_records(OBJECT)
    emulator.insert_records(OBJECT, others + [{**record, FLAG: True} for record in records])


# flag


def test_flag_writes_only_unflagged_orphans(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    orphans = _orphan_keys(seed)
    _flag_orphans(emulator, seed, orphans[:10])
    before = _targets(emulator)
    operator = _operator(tmp_path, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=0.2)

    result = operator.execute(context)

    after = _targets(emulator)
    assert result["orphans"] == 50
    assert result["orphans_flagged"] == 40
    assert result["orphans_already_flagged"] == 10
    assert _status_total(result) == 50
    assert all(after[key][FLAG] is True for key in orphans)
    assert all(after[key]["SystemModstamp"] == before[key]["SystemModstamp"] for key in orphans[:10])
    assert not any(record[FLAG] for key, record in after.items() if key not in orphans)


def test_flag_rerun_writes_nothing(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    operator = _operator(tmp_path, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=0.2)
    operator.execute(context)
    converged = _targets(emulator)
    calls = _write_calls(emulator)

    result = operator.execute(context)

    assert result["orphans_flagged"] == 0
    assert result["orphans_already_flagged"] == 50
    assert result["created"] + result["updated"] == 0
    assert _write_calls(emulator) == calls
    assert _targets(emulator) == converged


def test_flag_bulk_path(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    operator = _operator(
        tmp_path, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=0.2, bulk_threshold=20
    )
    jobs_before = emulator.api_calls["bulk_query_create"]

    result = operator.execute(context)

    assert result["orphans_flagged"] == 50
    # The target read and the orphan lookup are both Bulk API 2.0 query jobs above the threshold.
    assert emulator.api_calls["bulk_query_create"] - jobs_before == 2
    orphans = _orphan_keys(seed)
    after = _targets(emulator)
    assert all(after[key][FLAG] is True for key in orphans)


def test_returning_record_keeps_flag_unless_mapped(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    returning = sorted(seed.unchanged_keys)[:3]
    shrunk_sql = f"{SOURCE_SQL} WHERE account_id NOT IN ({', '.join(repr(key) for key in returning)})"
    flag_run = _operator(
        tmp_path, source_sql=shrunk_sql, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=0.2
    )
    unmapped_run = _operator(tmp_path, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=0.2)
    mapped_run = _operator(
        tmp_path,
        source_sql=f"SELECT {COLUMNS}, FALSE AS missing_from_source FROM `crm.customer_accounts`",
        mapping=MAPPING_WITH_FLAG,
        orphans="flag",
        orphan_flag={FLAG: True},
        max_orphan_fraction=0.2,
    )

    flagged = flag_run.execute(context)
    unmapped = unmapped_run.execute(context)
    after_unmapped_run = _targets(emulator)
    mapped = mapped_run.execute(context)
    cleared = _targets(emulator)

    orphans = _orphan_keys(seed)
    assert all(key in cleared for key in returning)
    assert flagged["orphans_flagged"] == 53
    assert unmapped["orphans"] == 50
    assert unmapped["updated"] == 0
    assert all(after_unmapped_run[key][FLAG] is True for key in returning)
    assert mapped["updated"] == 3
    assert mapped["orphans_already_flagged"] == 50
    assert all(cleared[key][FLAG] is False for key in returning)
    assert all(cleared[key][FLAG] is True for key in orphans)


def _delete_after_lookup(
    monkeypatch: pytest.MonkeyPatch, emulator: SalesforceEmulator, deleted_id: str, purged_id: str
) -> None:
    """Make someone delete one record and purge another right after the orphan lookup by key."""
    lookup = SalesforceM2MHook.lookup_records

    def lookup_then_delete(self: SalesforceM2MHook, object_name: str, key_field: str, *args: Any, **kwargs: Any) -> Any:
        rows = lookup(self, object_name, key_field, *args, **kwargs)
        if key_field == KEY:
            self.delete_records(object_name, [deleted_id])
            emulator.purge_records(object_name, [purged_id])
        return rows

    monkeypatch.setattr(SalesforceM2MHook, "lookup_records", lookup_then_delete)


@pytest.mark.parametrize("bulk_threshold", [200, 20], ids=["collections", "bulk"])
def test_flag_never_recreates_deleted_orphan(
    emulator: SalesforceEmulator,
    seed: SeedData,
    tmp_path: Path,
    context: dict,
    monkeypatch: pytest.MonkeyPatch,
    bulk_threshold: int,
) -> None:
    orphans = _orphan_keys(seed)
    deleted_key, purged_key = orphans[4], orphans[9]
    before = _targets(emulator)
    _delete_after_lookup(monkeypatch, emulator, before[deleted_key]["Id"], before[purged_key]["Id"])
    collection_updates = emulator.api_calls["collection_update"]
    operator = _operator(
        tmp_path, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=0.2, bulk_threshold=bulk_threshold
    )

    result = operator.execute(context)

    after = _targets(emulator)
    assert result["orphans_flagged"] == 48
    assert result["orphans_gone"] == 2
    assert result["orphans_failed"] == 0
    assert _status_total(result) == 50
    assert deleted_key not in after
    assert purged_key not in after
    # Only the plan's creates add records: the flag write created none.
    assert len(after) == len(before) + result["created"] - 2
    assert all(after[key][FLAG] is True for key in orphans if key not in (deleted_key, purged_key))
    assert not [sample for sample in result["failure_samples"] if sample["operation"] == "flag"]
    # 50 orphans to flag: one Collections request under a threshold of 200, a Bulk API 2.0 job over 20.
    assert emulator.api_calls["collection_update"] - collection_updates == (1 if bulk_threshold == 200 else 0)


@pytest.mark.parametrize("bulk_threshold", [200, 20], ids=["collections", "bulk"])
@pytest.mark.parametrize("referenced", ["deleted", "purged"])
def test_flag_of_dead_reference_fails_not_gone(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict, bulk_threshold: int, referenced: str
) -> None:
    """A flag value naming a deleted or purged record fails every orphan, which all still exist: none is gone."""
    # A record the source also has, so that its deletion is planned back in as a create, not an orphan.
    matched = sorted(set(_targets(emulator)) - set(seed.orphan_keys))[0]
    referenced_id = _targets(emulator)[matched]["Id"]
    if referenced == "purged":
        emulator.purge_records(OBJECT, [referenced_id])
    else:
        SalesforceM2MHook().delete_records(OBJECT, [referenced_id])
    operator = _operator(
        tmp_path,
        orphans="flag",
        orphan_flag={"Merged_Into__c": referenced_id},
        max_orphan_fraction=0.2,
        bulk_threshold=bulk_threshold,
    )

    result = operator.execute(context)

    after = _targets(emulator)
    assert result["orphans_gone"] == 0
    assert result["orphans_failed"] == len(seed.orphan_keys)
    assert _status_total(result) == len(seed.orphan_keys)
    assert all(after[key]["Merged_Into__c"] is None for key in seed.orphan_keys)
    with open(result["failures_csv"], newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["operation"] == "flag"]
    assert sorted(row["key"] for row in rows) == _orphan_keys(seed)
    expected_code = "ENTITY_IS_DELETED" if referenced == "deleted" else "INVALID_CROSS_REFERENCE_KEY"
    assert all(expected_code in row["error"] for row in rows)


# delete


@pytest.mark.parametrize("bulk_threshold", [200, 20], ids=["collections", "bulk"])
def test_delete_removes_exactly_the_orphans(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict, bulk_threshold: int
) -> None:
    _operator(tmp_path, bulk_threshold=bulk_threshold).execute(context)
    converged = _targets(emulator)
    orphans = set(_orphan_keys(seed))
    operator = _operator(tmp_path, orphans="delete", max_orphan_fraction=0.2, bulk_threshold=bulk_threshold)

    result = operator.execute(context)

    after = _targets(emulator)
    assert result["orphans_deleted"] == 50
    assert _status_total(result) == 50
    assert set(after) == set(converged) - orphans
    assert len(after) == 300
    assert {key: converged[key] for key in after} == after


@pytest.mark.parametrize("bulk_threshold", [200, 20], ids=["collections", "bulk"])
def test_delete_rerun_deletes_nothing(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict, bulk_threshold: int
) -> None:
    operator = _operator(tmp_path, orphans="delete", max_orphan_fraction=0.2, bulk_threshold=bulk_threshold)
    operator.execute(context)
    converged = _targets(emulator)
    calls = _write_calls(emulator)

    result = operator.execute(context)

    assert result["orphans"] == 0
    assert result["orphans_deleted"] == 0
    assert _write_calls(emulator) == calls
    assert _targets(emulator) == converged


@pytest.mark.parametrize("bulk_threshold", [200, 20], ids=["collections", "bulk"])
def test_delete_rejection_is_reported_per_record(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict, bulk_threshold: int
) -> None:
    locked_key = _orphan_keys(seed)[7]
    locked_id = _targets(emulator)[locked_key]["Id"]
    emulator.lock_records([locked_id])
    operator = _operator(tmp_path, orphans="delete", max_orphan_fraction=0.2, bulk_threshold=bulk_threshold)

    result = operator.execute(context)

    assert result["orphans_deleted"] == 49
    assert result["orphans_failed"] == 1
    assert _status_total(result) == 50
    assert locked_key in _targets(emulator)
    samples = [sample for sample in result["failure_samples"] if sample["operation"] == "delete"]
    assert [sample["key"] for sample in samples] == [locked_key]
    assert "ENTITY_IS_LOCKED" in samples[0]["error"]
    with open(result["failures_csv"], newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["key"], row["operation"], row["status"]) for row in rows] == [(locked_key, "delete", "failed")]
    assert rows[0]["salesforce_id"] == locked_id


def test_flag_rejection_is_reported_per_record(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    locked_key = _orphan_keys(seed)[3]
    emulator.lock_records([_targets(emulator)[locked_key]["Id"]])
    operator = _operator(tmp_path, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=0.2)

    result = operator.execute(context)

    assert result["orphans_flagged"] == 49
    assert result["orphans_failed"] == 1
    assert _status_total(result) == 50
    assert _targets(emulator)[locked_key][FLAG] is False
    assert result["failure_samples"][0]["operation"] == "flag"


def test_unknown_flag_field_names_parameter(emulator: SalesforceEmulator, tmp_path: Path, context: dict) -> None:
    before = _targets(emulator)
    calls = _write_calls(emulator)
    target_reads = emulator.api_calls["bulk_query_create"]
    operator = _operator(tmp_path, orphans="flag", orphan_flag={"No_Such_Field__c": True}, max_orphan_fraction=0.2)

    with pytest.raises(ValueError) as raised:
        operator.execute(context)

    message = str(raised.value)
    assert "orphan_flag field 'No_Such_Field__c' is not a field of Customer_Account__c" in message
    # The describe stops the run before the target is read.
    assert emulator.api_calls["bulk_query_create"] == target_reads
    assert _write_calls(emulator) == calls
    assert _targets(emulator) == before


# limit and dry run


@pytest.mark.parametrize(
    ("action", "limits", "parameter"),
    [
        pytest.param("delete", {}, "max_orphan_fraction", id="delete-default-fraction"),
        pytest.param("flag", {}, "max_orphan_fraction", id="flag-default-fraction"),
        pytest.param("delete", {"max_orphans": 10, "max_orphan_fraction": None}, "max_orphans", id="delete-count"),
    ],
)
def test_limit_stops_run_before_any_write(
    emulator: SalesforceEmulator, tmp_path: Path, context: dict, action: str, limits: dict, parameter: str
) -> None:
    before = _targets(emulator)
    calls = _write_calls(emulator)
    flag = {"orphan_flag": {FLAG: True}} if action == "flag" else {}
    operator = _operator(tmp_path, orphans=action, **flag, **limits)

    with pytest.raises(OrphanLimitError) as raised:
        operator.execute(context)

    message = str(raised.value)
    assert "50 of the 341 target records" in message
    assert f"raise {parameter}" in message
    assert "nothing was written" in message
    assert _write_calls(emulator) == calls
    assert _targets(emulator) == before


def test_report_never_trips_the_limit(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    result = _operator(tmp_path, max_orphans=0).execute(context)

    assert result["orphan_action"] == "report"
    assert result["orphans_reported"] == 50
    assert _status_total(result) == 50
    orphans = set(_orphan_keys(seed))
    assert orphans <= set(_targets(emulator))


def test_empty_source_cannot_delete_the_object(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    before = _targets(emulator)
    operator = _operator(tmp_path, source_sql=f"{SOURCE_SQL} WHERE FALSE", orphans="delete")

    with pytest.raises(OrphanLimitError, match="341 of the 341 target records"):
        operator.execute(context)

    assert _targets(emulator) == before


@pytest.mark.parametrize("action", ["flag", "delete"])
def test_dry_run_counts_orphan_action(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict, action: str
) -> None:
    _flag_orphans(emulator, seed, _orphan_keys(seed)[:5])
    before = _targets(emulator)
    calls = _write_calls(emulator)
    flag = {"orphan_flag": {FLAG: True}} if action == "flag" else {}
    operator = _operator(tmp_path, orphans=action, dry_run=True, max_orphan_fraction=0.2, **flag)

    result = operator.execute(context)

    assert result["dry_run"] is True
    assert result["orphan_action"] == action
    assert result["orphans_to_write"] == (45 if action == "flag" else 50)
    assert result["orphans_already_flagged"] == (5 if action == "flag" else 0)
    assert _write_calls(emulator) == calls
    assert _targets(emulator) == before


def test_flagged_orphans_beyond_limit_run(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    """Orphans flagged by earlier runs (15% of the object) do not count toward the limit of 10%."""
    _flag_orphans(emulator, seed, _orphan_keys(seed))
    calls = _write_calls(emulator)
    operator = _operator(tmp_path, orphans="flag", orphan_flag={FLAG: True})

    result = operator.execute(context)

    assert result["orphans_already_flagged"] == len(seed.orphan_keys)
    assert result["orphans_flagged"] == 0
    assert _write_calls(emulator)["bulk_ingest_create"] == calls["bulk_ingest_create"]


def test_unflagged_orphans_beyond_limit_stop(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    before = _targets(emulator)
    calls = _write_calls(emulator)
    operator = _operator(tmp_path, orphans="flag", orphan_flag={FLAG: True})

    with pytest.raises(OrphanLimitError, match="not in the source and not flagged yet"):
        operator.execute(context)

    assert _write_calls(emulator) == calls
    assert _targets(emulator) == before


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        pytest.param({"Employees__c": "lots"}, "'lots' is not a number", id="text-in-number"),
        pytest.param({"Employees__c": 1e12}, "allows 9 digits before the decimal point", id="out-of-range"),
        pytest.param({"Missing_From_Source__c": 1}, "expected a boolean", id="number-in-checkbox"),
        pytest.param({"Notes__c": "x" * 256}, "the field allows 255", id="too-long"),
        pytest.param({"Tier__c": "Diamond"}, "restricted to Bronze, Silver, Gold, Platinum", id="restricted-picklist"),
        pytest.param({"Name": None}, "the field is required", id="null-in-required"),
        pytest.param({"Merged_Into__c": "not-an-id"}, "expected a 15- or 18-character record Id", id="malformed-id"),
        pytest.param({"CreatedDate": "2026-01-01T00:00:00Z"}, "cannot be edited", id="read-only"),
    ],
)
def test_unstorable_flag_fails_before_writing(
    emulator: SalesforceEmulator, tmp_path: Path, context: dict, flag: dict, reason: str
) -> None:
    before = _targets(emulator)
    calls = _write_calls(emulator)
    operator = _operator(tmp_path, orphans="flag", orphan_flag=flag, max_orphan_fraction=0.2)

    with pytest.raises(ValueError) as raised:
        operator.execute(context)

    message = str(raised.value)
    assert "orphan_flag" in message
    assert next(iter(flag)) in message
    assert reason in message
    assert _write_calls(emulator) == calls
    assert _targets(emulator) == before


def test_flag_rerun_converges_on_stored_form(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    """Values that Salesforce stores in another form still count as already flagged on the rerun.

    The dateTime reads back as 2026-01-01T00:00:00.000+0000, the sandbox stores 1.5 in a Number field of scale 0
    as 2, and the lookup field returns the 18-character form of the 15-character Id written.
    """
    survivor = sorted(set(_targets(emulator)) - set(seed.orphan_keys))[0]
    survivor_id = _targets(emulator)[survivor]["Id"]
    flag = {
        "Last_Activity__c": "2026-01-01T00:00:00Z",
        "Employees__c": 1.5,
        "Merged_Into__c": survivor_id[:15],
        FLAG: True,
    }
    operator = _operator(tmp_path, orphans="flag", orphan_flag=flag, max_orphan_fraction=0.2)
    first = operator.execute(context)
    stored = _targets(emulator)
    calls = _write_calls(emulator)
    describes = emulator.api_calls["describe"]

    rerun = operator.execute(context)

    assert first["orphans_flagged"] == len(seed.orphan_keys)
    orphan = stored[_orphan_keys(seed)[0]]
    assert orphan["Employees__c"] == 2
    assert orphan["Merged_Into__c"] == survivor_id
    assert rerun["orphans_flagged"] == 0
    assert rerun["orphans_already_flagged"] == len(seed.orphan_keys)
    assert _write_calls(emulator) == calls
    assert emulator.api_calls["describe"] - describes == 1
    assert _targets(emulator) == stored


@pytest.mark.parametrize("bulk_threshold", [200, 20], ids=["rest-lookup", "bulk-lookup"])
@pytest.mark.parametrize(
    "flag",
    [
        pytest.param({"Last_Activity__c": "2026-01-01T00:00:00Z"}, id="datetime"),
        pytest.param({"Employees__c": 1.5}, id="number-scale-0"),
    ],
)
def test_flag_rerun_flags_none(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict, flag: dict, bulk_threshold: int
) -> None:
    operator = _operator(
        tmp_path, orphans="flag", orphan_flag=flag, max_orphan_fraction=0.2, bulk_threshold=bulk_threshold
    )
    operator.execute(context)
    calls = _write_calls(emulator)

    rerun = operator.execute(context)

    assert rerun["orphans_flagged"] == 0
    assert rerun["orphans_already_flagged"] == len(seed.orphan_keys)
    assert _write_calls(emulator) == calls


def test_flag_request_failure_keeps_written_orphans(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    """450 orphans take three update requests; a 503 on the second leaves the first 200 flagged, not failed."""
    _operator(tmp_path).execute(context)  # converge the upserts, so that the flag run sends only updates
    extra = [{KEY: f"ACC-8{number:05d}", "Name": f"Extra orphan {number}"} for number in range(400)]
    emulator.insert_records(OBJECT, extra)
    emulator.fail_collections_request(after=1, status=503)
    operator = _operator(
        tmp_path, orphans="flag", orphan_flag={FLAG: True}, max_orphan_fraction=None, bulk_threshold=1000
    )

    result = operator.execute(context)

    assert result["orphans"] == 450
    assert result["orphans_flagged"] == 200
    assert result["orphans_failed"] == 200
    assert result["orphans_unprocessed"] == 50
    assert _status_total(result) == 450
    flagged = [key for key, record in _targets(emulator).items() if record[FLAG]]
    assert len(flagged) == 200
    with open(result["failures_csv"], newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["operation"] == "flag"]
    assert len(rows) == 250
    assert not set(flagged) & {row["key"] for row in rows}
    assert all("HTTP 503" in row["error"] for row in rows)


def test_delete_request_failure_keeps_deleted_orphans(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict
) -> None:
    """450 orphans take three delete requests; a 503 on the second leaves the first 200 deleted and the run accounted."""
    _operator(tmp_path).execute(context)
    extra = [{KEY: f"ACC-8{number:05d}", "Name": f"Extra orphan {number}"} for number in range(400)]
    emulator.insert_records(OBJECT, extra)
    emulator.fail_collections_request(after=1, status=503)
    operator = _operator(tmp_path, orphans="delete", max_orphan_fraction=None, bulk_threshold=1000)

    result = operator.execute(context)

    assert result["orphans"] == 450
    assert result["orphans_deleted"] == 200
    assert result["orphans_failed"] == 200
    assert result["orphans_unprocessed"] == 50
    assert _status_total(result) == 450
    assert len(_targets(emulator)) == 300 + 250
