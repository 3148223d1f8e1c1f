"""plan_changes_in_warehouse against the sandbox's BigQuery emulator: the plan equals what
plan_changes returns for the same source and target, and SQL proves most unchanged rows."""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from google.api_core.exceptions import NotFound

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.reconcile.diff import plan_changes
from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.plan import DuplicateKeyError, TargetRecordError
from airflow_provider_m2m.reconcile.warehouse import SOURCE_SNAPSHOT_SUFFIX, plan_changes_in_warehouse
from airflow_provider_m2m.sandbox import Sandbox, start_sandbox
from airflow_provider_m2m.sandbox.bigquery import load_table

PROJECT = "m2m-sandbox"
DATASET = "warehouse"
TABLE = "accounts"
SOURCE_SQL = f"SELECT * FROM `{PROJECT}.{DATASET}.{TABLE}`"
ROWS = 3000
CREATES = 30  # source rows with no target record
ORPHANS = 20  # target records with no source row
SCHEMA = [
    {"name": "account_id", "type": "STRING", "mode": "NULLABLE"},
    {"name": "name", "type": "STRING", "mode": "NULLABLE"},
    {"name": "email", "type": "STRING", "mode": "NULLABLE"},
    {"name": "revenue", "type": "NUMERIC", "mode": "NULLABLE"},
    {"name": "employees", "type": "INT64", "mode": "NULLABLE"},
    {"name": "is_active", "type": "BOOL", "mode": "NULLABLE"},
    {"name": "signup_date", "type": "DATE", "mode": "NULLABLE"},
    {"name": "last_seen_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
]
MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING, length=20),
    fields=[
        FieldMapping("name", "Name", FieldType.STRING, length=80, nullable=False),
        FieldMapping("email", "Email__c", FieldType.EMAIL),
        FieldMapping("revenue", "Revenue__c", FieldType.DECIMAL, scale=2),
        FieldMapping("employees", "Employees__c", FieldType.INTEGER),
        FieldMapping("is_active", "Active__c", FieldType.BOOLEAN),
        FieldMapping("signup_date", "Signup_Date__c", FieldType.DATE),
        FieldMapping("last_seen_at", "Last_Seen_At__c", FieldType.DATETIME),
    ],
)
# One update per field type, by row number: the target record's text that differs from the source row's.
UPDATED_FIELDS = {
    40: ("Name", "Old Name"),
    41: ("Email__c", ""),
    42: ("Revenue__c", "1.5"),
    43: ("Employees__c", "7"),
    44: ("Active__c", "true"),
    45: ("Signup_Date__c", "2001-02-03"),
    46: ("Last_Seen_At__c", "2001-02-03T04:05:06.000Z"),
}
REQUIRED_NULL_ROW = 50  # name is NULL, which the required Name field rejects
TOO_LONG_ROW = 51  # name longer than 80 characters
KEY_CASE_ROW = 52  # the target spells the key in lower case
NON_ASCII_ROW = 53  # a key outside ASCII, equal on both sides
BEFORE_1970_ROW = 54  # half a second before 1970, which Python truncates to 23:59:59
ASCII_FOLD_KEY = "SKU-1"  # the key of the last row, which "ſku-1" (long s) folds to


def _key(number: int) -> str:
    if number == NON_ASCII_ROW:
        return "ACC-Ü23"
    if number == ROWS - 1:
        return ASCII_FOLD_KEY
    return f"ACC-{number:06d}"


def _source_rows() -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows = []
    for number in range(ROWS):
        signup = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(4000))
        seen = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=rng.randrange(10**14))
        rows.append(
            {
                "account_id": _key(number),
                "name": rng.choice(["Ana Núñez", "Björk AB", "東京データ株式会社", "Zoë O'Neil"]) + f" {number}",
                "email": None if number % 9 == 0 else f"contact{number}@example.org",
                # Whole numbers, one or two decimals, and sometimes a third that rounds half up.
                "revenue": None
                if number % 11 == 0
                else Decimal(rng.randrange(10**8)).scaleb(-rng.choice([0, 1, 2, 2, 2, 2, 2, 3])),
                "employees": None if number % 13 == 0 else rng.randrange(-5, 100_000),
                "is_active": [True, False, None][number % 3],
                "signup_date": None if number % 17 == 0 else signup,
                "last_seen_at": None if number % 19 == 0 else seen,
            }
        )
    rows[REQUIRED_NULL_ROW]["name"] = None
    rows[TOO_LONG_ROW]["name"] = "x" * 81
    rows[BEFORE_1970_ROW]["last_seen_at"] = dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC)
    return rows


def _bulk_number(value: Decimal) -> str:
    """Write a number as a Bulk API 2.0 query CSV does: plain, without trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _bulk_record(row: dict[str, Any]) -> dict[str, str]:
    """Return the Bulk API 2.0 query CSV record of a target that equals the source row."""
    revenue = row["revenue"]
    seen = row["last_seen_at"]
    return {
        "External_Id__c": row["account_id"],
        "Name": row["name"] or "",
        "Email__c": row["email"] or "",
        "Revenue__c": "" if revenue is None else _bulk_number(revenue.quantize(Decimal("0.01"), "ROUND_HALF_UP")),
        "Employees__c": "" if row["employees"] is None else str(row["employees"]),
        "Active__c": "true" if row["is_active"] else "false",
        "Signup_Date__c": "" if row["signup_date"] is None else row["signup_date"].isoformat(),
        "Last_Seen_At__c": "" if seen is None else seen.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def _target_records(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    records = [_bulk_record(row) for row in rows[CREATES:]]
    by_number = {number: records[number - CREATES] for number in range(CREATES, ROWS)}
    for number, (field, text) in UPDATED_FIELDS.items():
        by_number[number][field] = text
    by_number[KEY_CASE_ROW]["External_Id__c"] = _key(KEY_CASE_ROW).lower()
    for number in range(ORPHANS):
        orphan = dict(records[0])
        orphan["External_Id__c"] = f"ORPHAN-{number:03d}"
        records.append(orphan)
    return records


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    saved = dict(os.environ)
    os.environ["M2M_TOKEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("token-cache"))
    try:
        with start_sandbox(tmp_path_factory.mktemp("sandbox"), rows=10, snowflake=False, salesforce=False) as running:
            os.environ.update(running.env())
            load_table(
                running.bigquery.emulator.url + "/bigquery/v2",
                _source_rows(),
                dataset_id=DATASET,
                table_id=TABLE,
                schema=SCHEMA,
                key_column="account_id",
            )
            yield running
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def hook(sandbox: Sandbox) -> BigQueryM2MHook:
    return BigQueryM2MHook()


def _staging_table(name: str) -> str:
    return f"{PROJECT}.{DATASET}.{name}"


def test_plan_matches_python_plan(hook: BigQueryM2MHook) -> None:
    rows = _source_rows()
    targets = _target_records(rows)
    expected = plan_changes(hook.iter_rows(SOURCE_SQL), targets, MAPPING)

    result = plan_changes_in_warehouse(hook, SOURCE_SQL, iter(targets), MAPPING, _staging_table("stage_equal"))

    plan = result.plan
    assert plan.creates == expected.creates
    assert plan.updates == expected.updates
    assert plan.unchanged == expected.unchanged
    assert plan.rejected == expected.rejected
    assert plan.orphans == expected.orphans
    assert plan.counts() == expected.counts()
    # The planted cases reached the plan, so the comparison above covers them.
    assert len(expected.creates) == CREATES
    assert sorted(set(update.keys()) - {"External_Id__c"} for update in expected.updates) == sorted(
        {field} for field, _ in UPDATED_FIELDS.values()
    )
    assert [rejection.key for rejection in expected.rejected] == [_key(REQUIRED_NULL_ROW), _key(TOO_LONG_ROW)]
    assert len(expected.orphans) == ORPHANS
    # SQL proved most unchanged rows. Python planned the rest: about one revenue in eight has a
    # third decimal, so its text differs from the target's rounded value. The key spelled in
    # another case and the non-ASCII key never match as text, and the fraction of a second
    # before 1970 renders as NULL.
    assert result.proven_unchanged <= expected.unchanged - 3
    assert result.proven_unchanged >= 0.8 * expected.unchanged


def test_staging_tables_are_dropped(hook: BigQueryM2MHook) -> None:
    rows = _source_rows()
    table = _staging_table("stage_dropped")

    plan_changes_in_warehouse(hook, SOURCE_SQL, iter(_target_records(rows)), MAPPING, table)

    client = hook.get_client()
    for name in (table, table + SOURCE_SNAPSHOT_SUFFIX):
        with pytest.raises(NotFound):
            client.get_table(name)


def test_source_duplicate_key_stops_run(hook: BigQueryM2MHook) -> None:
    rows = _source_rows()
    source_sql = f"{SOURCE_SQL} UNION ALL SELECT * FROM `{PROJECT}.{DATASET}.{TABLE}` WHERE account_id = 'ACC-000500'"

    with pytest.raises(DuplicateKeyError) as raised:
        plan_changes_in_warehouse(hook, source_sql, iter(_target_records(rows)), MAPPING, _staging_table("stage_dup"))

    assert raised.value.side == "source"
    assert raised.value.keys == ["ACC-000500"]


def test_folded_source_key_stops_run(hook: BigQueryM2MHook) -> None:
    # "ſku-1" folds to "sku-1" in Python, as "SKU-1" does, but LOWER in SQL keeps them apart. The
    # proof must leave "SKU-1" to Python, which then finds the duplicate.
    rows = _source_rows()
    source_sql = (
        f"{SOURCE_SQL} UNION ALL SELECT 'ſku-1' AS account_id, * EXCEPT (account_id) "
        f"FROM `{PROJECT}.{DATASET}.{TABLE}` WHERE account_id = '{ASCII_FOLD_KEY}'"
    )
    with pytest.raises(DuplicateKeyError) as expected:
        plan_changes(hook.iter_rows(source_sql), _target_records(rows), MAPPING)
    expected_keys = expected.value.keys

    with pytest.raises(DuplicateKeyError) as raised:
        plan_changes_in_warehouse(hook, source_sql, iter(_target_records(rows)), MAPPING, _staging_table("stage_fold"))

    assert raised.value.side == "source"
    assert raised.value.keys == expected_keys


def test_target_duplicate_key_stops_run(hook: BigQueryM2MHook) -> None:
    targets = _target_records(_source_rows())
    repeated = dict(targets[100])
    repeated["External_Id__c"] = repeated["External_Id__c"].lower()
    targets.append(repeated)

    with pytest.raises(DuplicateKeyError) as raised:
        plan_changes_in_warehouse(hook, SOURCE_SQL, iter(targets), MAPPING, _staging_table("stage_target_dup"))

    assert raised.value.side == "target"
    assert [key.casefold() for key in raised.value.keys] == [targets[100]["External_Id__c"].casefold()]


def test_field_without_rendering_proves_nothing(hook: BigQueryM2MHook) -> None:
    # No SQL rendering is argued for a DOUBLE field, so every row goes to plan_changes.
    fields = [
        FieldMapping(field.source, field.target, FieldType.DOUBLE) if field.target == "Employees__c" else field
        for field in MAPPING.fields
    ]
    mapping = Mapping(key=MAPPING.key, fields=fields)
    targets = _target_records(_source_rows())
    expected = plan_changes(hook.iter_rows(SOURCE_SQL), targets, mapping)

    result = plan_changes_in_warehouse(hook, SOURCE_SQL, iter(targets), mapping, _staging_table("stage_double"))

    assert result.proven_unchanged == 0
    assert result.plan.creates == expected.creates
    assert result.plan.updates == expected.updates
    assert result.plan.rejected == expected.rejected
    assert result.plan.orphans == expected.orphans
    assert result.plan.counts() == expected.counts()


def test_integer_key_plan_matches_python(hook: BigQueryM2MHook) -> None:
    source_sql = (
        "SELECT CAST(SUBSTR(account_id, 5) AS INT64) AS account_number, * EXCEPT (account_id) "
        f"FROM `{PROJECT}.{DATASET}.{TABLE}` WHERE REGEXP_CONTAINS(account_id, r'^ACC-[0-9]+$')"
    )
    mapping = Mapping(
        key=FieldMapping("account_number", "Account_Number__c", FieldType.INTEGER), fields=MAPPING.fields
    )
    targets = []
    for record in _target_records(_source_rows()):
        key = record.pop("External_Id__c")
        if key.upper().startswith("ACC-") and key[4:].isdigit():
            targets.append({"Account_Number__c": str(int(key[4:])), **record})
    expected = plan_changes(hook.iter_rows(source_sql), targets, mapping)

    result = plan_changes_in_warehouse(hook, source_sql, iter(targets), mapping, _staging_table("stage_integer"))

    assert result.plan.creates == expected.creates
    assert result.plan.updates == expected.updates
    assert result.plan.rejected == expected.rejected
    assert result.plan.orphans == expected.orphans
    assert result.plan.counts() == expected.counts()
    assert result.proven_unchanged >= 0.8 * expected.unchanged


def test_target_record_without_field_stops_run(hook: BigQueryM2MHook) -> None:
    targets = _target_records(_source_rows())
    del targets[5]["Revenue__c"]
    table = _staging_table("stage_missing_field")

    with pytest.raises(TargetRecordError) as raised:
        plan_changes_in_warehouse(hook, SOURCE_SQL, iter(targets), MAPPING, table)

    assert "target record 6 has no field Revenue__c" in str(raised.value)
    client = hook.get_client()
    for name in (table, table + SOURCE_SNAPSHOT_SUFFIX):
        with pytest.raises(NotFound):
            client.get_table(name)


def test_empty_target_plans_creates(hook: BigQueryM2MHook) -> None:
    # The first run into a new object reads no target records, so nothing is loaded into staging.
    expected = plan_changes(hook.iter_rows(SOURCE_SQL), [], MAPPING)

    result = plan_changes_in_warehouse(hook, SOURCE_SQL, iter([]), MAPPING, _staging_table("stage_empty_target"))

    assert result.proven_unchanged == 0
    assert result.plan.creates == expected.creates
    assert result.plan.rejected == expected.rejected
    assert result.plan.counts() == expected.counts()
    assert len(expected.creates) == ROWS - 2  # the two rejected rows


def test_integer_target_duplicate_lists_number(hook: BigQueryM2MHook) -> None:
    # "007" and "7" are the same number, and plan_changes lists it as 7, not as either spelling.
    source_sql = f"SELECT 7 AS account_number, name FROM `{PROJECT}.{DATASET}.{TABLE}` LIMIT 1"
    mapping = Mapping(
        key=FieldMapping("account_number", "Account_Number__c", FieldType.INTEGER),
        fields=[FieldMapping("name", "Name", FieldType.STRING)],
    )
    targets = [{"Account_Number__c": "007", "Name": "a"}, {"Account_Number__c": "7", "Name": "a"}]
    with pytest.raises(DuplicateKeyError) as expected:
        plan_changes(hook.iter_rows(source_sql), targets, mapping)

    with pytest.raises(DuplicateKeyError) as raised:
        plan_changes_in_warehouse(hook, source_sql, iter(targets), mapping, _staging_table("stage_integer_dup"))

    assert raised.value.side == "target"
    assert raised.value.keys == expected.value.keys == ["7"]
