"""plan_changes_in_warehouse against plan_changes on inputs where the two once differed: rows
without a key, the spelling of repeated keys, which of two errors wins, source SQL that ends in a
semicolon or a comment, and ARRAY or STRUCT source columns.

The source table contains several variants of the same rows, loaded in `seq` order, which the
emulator keeps when it scans a table, so both paths read the source in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from google.api_core.exceptions import NotFound

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.reconcile.diff import plan_changes
from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.plan import DuplicateKeyError, Plan, TargetRecordError
from airflow_provider_m2m.reconcile.warehouse import (
    SOURCE_SNAPSHOT_SUFFIX,
    WarehousePlan,
    plan_changes_in_warehouse,
    query_body,
)
from airflow_provider_m2m.sandbox import Sandbox, start_sandbox
from airflow_provider_m2m.sandbox.bigquery import load_table

PROJECT = "m2m-sandbox"
DATASET = "parity"
ROWS = 200
TABLE = "rows"
SCHEMA = [
    {"name": "row_id", "type": "STRING", "mode": "NULLABLE"},
    {"name": "variant", "type": "STRING", "mode": "NULLABLE"},
    {"name": "seq", "type": "INT64", "mode": "NULLABLE"},
    {"name": "account_id", "type": "STRING", "mode": "NULLABLE"},
    {"name": "name", "type": "STRING", "mode": "NULLABLE"},
    {"name": "revenue", "type": "NUMERIC", "mode": "NULLABLE"},
]
MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING, length=20),
    fields=[
        FieldMapping("name", "Name", FieldType.STRING, length=80),
        FieldMapping("revenue", "Revenue__c", FieldType.DECIMAL, scale=2),
    ],
)
# Rows 6, 121 and 181 of the source have no key: null, empty text, and null again.
MISSING_KEYS = {5: None, 120: "", 180: None}
# Repeated source keys, as (seq of the later row, its key). Keys fold case, so "acc-0010" repeats
# "ACC-0010". "ÜX-1" repeats itself outside ASCII, and "ÜX-2" is written decomposed (NFD) in its
# later row, which NFC makes equal to the earlier row's "ÜX-2".
LATER_DUPLICATES = {50: "acc-0010", 70: "ÜX-1", 90: "U\u0308X-2"}
EARLIER_NON_ASCII = {60: "ÜX-1", 80: "ÜX-2"}
BAD_REVENUE = "not a number"


def _key(seq: int) -> str:
    return f"ACC-{seq:04d}"


def _rows(overrides: dict[int, Any] | None = None) -> list[dict[str, Any]]:
    rows = []
    for seq in range(ROWS):
        rows.append(
            {
                "seq": seq,
                "account_id": _key(seq),
                "name": f"Name {seq}",
                "revenue": Decimal(seq * 37 % 1000).scaleb(-2),
            }
        )
    for seq, key in (overrides or {}).items():
        rows[seq]["account_id"] = key
    return rows


def _record(row: dict[str, Any]) -> dict[str, str]:
    """Return the Bulk API 2.0 query record of a target that equals the source row."""
    revenue = format(row["revenue"], "f")
    revenue = revenue.rstrip("0").rstrip(".") if "." in revenue else revenue
    return {"External_Id__c": row["account_id"], "Name": row["name"], "Revenue__c": revenue}


def _records(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [_record(row) for row in rows if row["account_id"]]


VARIANTS = {
    "missing_keys": _rows(MISSING_KEYS),
    "source_duplicates": _rows({**LATER_DUPLICATES, **EARLIER_NON_ASCII}),
    "plain": _rows(),
    "one_duplicate": _rows({30: _key(31)}),
}


def _sql(variant: str) -> str:
    return f"SELECT account_id, name, revenue FROM `{PROJECT}.{DATASET}.{TABLE}` WHERE variant = '{variant}'"


def _table_rows() -> list[dict[str, Any]]:
    rows = []
    for variant, variant_rows in VARIANTS.items():
        for row in variant_rows:
            rows.append({"row_id": f"{variant}-{row['seq']}", "variant": variant, **row})
    return rows


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    saved = dict(os.environ)
    os.environ["M2M_TOKEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("token-cache"))
    try:
        with start_sandbox(tmp_path_factory.mktemp("sandbox"), rows=10, snowflake=False, salesforce=False) as running:
            os.environ.update(running.env())
            load_table(
                running.bigquery.emulator.url + "/bigquery/v2",
                _table_rows(),
                dataset_id=DATASET,
                table_id=TABLE,
                schema=SCHEMA,
                key_column="row_id",
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


def _assert_same_plan(result: WarehousePlan, expected: Plan) -> None:
    plan = result.plan
    assert plan.creates == expected.creates
    assert plan.updates == expected.updates
    assert plan.unchanged == expected.unchanged
    assert plan.rejected == expected.rejected
    assert plan.orphans == expected.orphans
    assert plan.counts() == expected.counts()


def _expected_error(
    hook: BigQueryM2MHook, source_sql: str, targets: list[dict[str, str]], mapping: Mapping
) -> Exception:
    with pytest.raises((DuplicateKeyError, TargetRecordError)) as raised:
        plan_changes(hook.iter_rows(source_sql), targets, mapping)
    return raised.value


def _warehouse_error(
    hook: BigQueryM2MHook, source_sql: str, targets: list[dict[str, str]], mapping: Mapping, staging: str
) -> Exception:
    with pytest.raises((DuplicateKeyError, TargetRecordError)) as raised:
        plan_changes_in_warehouse(hook, source_sql, iter(targets), mapping, _staging_table(staging))
    return raised.value


# Rows without a key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "numbers"),
    [("", [121, 181, 6]), (" ORDER BY seq DESC", [195, 20, 80])],
)
def test_missing_keys_numbered_as_python(hook: BigQueryM2MHook, order: str, numbers: list[int]) -> None:
    source_sql = _sql("missing_keys") + order
    targets = _records(VARIANTS["missing_keys"])
    expected = plan_changes(hook.iter_rows(source_sql), targets, MAPPING)

    result = plan_changes_in_warehouse(hook, source_sql, iter(targets), MAPPING, _staging_table("stage_missing"))

    assert [rejection.key for rejection in expected.rejected] == [
        f"(source row {number}, no external id)" for number in numbers
    ]
    _assert_same_plan(result, expected)
    assert result.proven_unchanged == ROWS - len(MISSING_KEYS)


def test_missing_integer_keys_numbered_as_python(hook: BigQueryM2MHook) -> None:
    mapping = Mapping(
        key=FieldMapping("number", "Number__c", FieldType.INTEGER),
        fields=[FieldMapping("name", "Name", FieldType.STRING)],
    )
    source_sql = (
        f"SELECT IF(seq IN (7, 150), NULL, seq) AS number, name FROM `{PROJECT}.{DATASET}.{TABLE}` "
        "WHERE variant = 'plain'"
    )
    targets = [{"Number__c": str(seq), "Name": f"Name {seq}"} for seq in range(ROWS)]
    expected = plan_changes(hook.iter_rows(source_sql), targets, mapping)

    result = plan_changes_in_warehouse(hook, source_sql, iter(targets), mapping, _staging_table("stage_missing_int"))

    assert [rejection.key for rejection in expected.rejected] == [
        "(source row 151, no external id)",
        "(source row 8, no external id)",
    ]
    _assert_same_plan(result, expected)
    assert result.proven_unchanged == ROWS - 2


# Repeated keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "keys"),
    # plan_changes lists the spelling of each later row, so the order decides between "ACC-0010"
    # and "acc-0010".
    [("", ["acc-0010", "ÜX-1", "ÜX-2"]), (" ORDER BY seq DESC", ["ACC-0010", "ÜX-1", "ÜX-2"])],
)
def test_source_duplicates_listed_as_python(hook: BigQueryM2MHook, order: str, keys: list[str]) -> None:
    source_sql = _sql("source_duplicates") + order
    targets = _records(VARIANTS["plain"])
    expected = _expected_error(hook, source_sql, targets, MAPPING)

    raised = _warehouse_error(hook, source_sql, targets, MAPPING, "stage_source_dups")

    assert isinstance(expected, DuplicateKeyError)
    assert expected.keys == keys
    assert isinstance(raised, DuplicateKeyError)
    assert raised.side == "source"
    assert raised.keys == expected.keys
    assert str(raised) == str(expected)


def test_case_sensitive_duplicates_listed_as_python(hook: BigQueryM2MHook) -> None:
    mapping = Mapping(key=MAPPING.key, fields=MAPPING.fields, key_case_sensitive=True)
    source_sql = _sql("source_duplicates")
    targets = _records(VARIANTS["plain"])
    expected = _expected_error(hook, source_sql, targets, mapping)

    raised = _warehouse_error(hook, source_sql, targets, mapping, "stage_source_dups_cs")

    assert isinstance(expected, DuplicateKeyError)
    assert expected.keys == ["ÜX-1", "ÜX-2"]
    assert isinstance(raised, DuplicateKeyError)
    assert raised.keys == expected.keys


def test_target_duplicates_listed_as_python(hook: BigQueryM2MHook) -> None:
    # plan_changes lists the spelling of the last record with a repeated key, in NFC.
    targets = _records(VARIANTS["plain"])
    targets[20]["External_Id__c"] = "ÜY-1"
    targets.append({**targets[21], "External_Id__c": "acc-0021"})
    targets.append({**targets[22], "External_Id__c": "U\u0308Y-1"})
    expected = _expected_error(hook, _sql("plain"), targets, MAPPING)

    raised = _warehouse_error(hook, _sql("plain"), targets, MAPPING, "stage_target_dups")

    assert isinstance(expected, DuplicateKeyError)
    assert expected.keys == ["acc-0021", "ÜY-1"]
    assert isinstance(raised, DuplicateKeyError)
    assert raised.side == "target"
    assert raised.keys == expected.keys


# Two errors at once -----------------------------------------------------------------------------------


def test_bad_target_value_wins_over_duplicate(hook: BigQueryM2MHook) -> None:
    # plan_changes converts a target value only where a source row differs from it, while it reads
    # the source, so a record whose value does not parse stops the run before the source's
    # duplicates are reported at its end.
    source_sql = _sql("one_duplicate")
    targets = _records(VARIANTS["plain"])
    targets[100]["Revenue__c"] = BAD_REVENUE
    expected = _expected_error(hook, source_sql, targets, MAPPING)

    raised = _warehouse_error(hook, source_sql, targets, MAPPING, "stage_bad_and_dup")

    assert isinstance(expected, TargetRecordError)
    assert isinstance(raised, TargetRecordError)
    assert str(raised) == str(expected)


def test_first_bad_target_in_source_order(hook: BigQueryM2MHook) -> None:
    source_sql = _sql("plain")
    targets = _records(VARIANTS["plain"])
    for seq in (190, 40, 120):
        targets[seq]["Revenue__c"] = BAD_REVENUE
    expected = _expected_error(hook, source_sql, targets, MAPPING)

    raised = _warehouse_error(hook, source_sql, targets, MAPPING, "stage_bad_order")

    assert isinstance(expected, TargetRecordError)
    assert _key(40) in str(expected)
    assert isinstance(raised, TargetRecordError)
    assert str(raised) == str(expected)


def test_duplicates_on_both_sides_report_target(hook: BigQueryM2MHook) -> None:
    source_sql = _sql("one_duplicate")
    targets = _records(VARIANTS["plain"])
    targets.append(dict(targets[7]))
    expected = _expected_error(hook, source_sql, targets, MAPPING)

    raised = _warehouse_error(hook, source_sql, targets, MAPPING, "stage_both_dups")

    assert isinstance(expected, DuplicateKeyError)
    assert expected.side == "target"
    assert isinstance(raised, DuplicateKeyError)
    assert raised.side == "target"
    assert raised.keys == expected.keys


def test_bad_target_key_wins_over_duplicate(hook: BigQueryM2MHook) -> None:
    # An integer key that does not parse stops plan_changes while it reads the target.
    mapping = Mapping(
        key=FieldMapping("number", "Number__c", FieldType.INTEGER),
        fields=[FieldMapping("name", "Name", FieldType.STRING)],
    )
    source_sql = (
        f"SELECT seq AS number, name FROM `{PROJECT}.{DATASET}.{TABLE}` WHERE variant = 'plain' "
        "UNION ALL SELECT 3, 'x'"
    )
    targets = [{"Number__c": str(seq), "Name": f"Name {seq}"} for seq in range(ROWS)]
    targets[9]["Number__c"] = "nine"
    expected = _expected_error(hook, source_sql, targets, mapping)

    raised = _warehouse_error(hook, source_sql, targets, mapping, "stage_bad_key")

    assert isinstance(expected, TargetRecordError)
    assert isinstance(raised, TargetRecordError)
    assert str(raised) == str(expected)


# Source SQL as copied from the console ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ending",
    [
        ";",
        ";\n",
        " ; -- copied from the console",
        "\n-- a closing comment",
        "; /* a block comment */",
        " /* a block comment; with a semicolon */ ;",
        ";\n# a hash comment\n",
        " AND name != '--x;' ;",
        " AND name != \"/* not a comment */\"; -- but this is",
    ],
)
def test_source_sql_endings_accepted(hook: BigQueryM2MHook, ending: str) -> None:
    base = f"{_sql('plain')} AND revenue IS NOT NULL"
    targets = _records(VARIANTS["plain"])
    expected = plan_changes(hook.iter_rows(base), targets, MAPPING)

    result = plan_changes_in_warehouse(hook, base + ending, iter(targets), MAPPING, _staging_table("stage_ending"))

    _assert_same_plan(result, expected)
    assert result.proven_unchanged == ROWS


@pytest.mark.parametrize(
    ("source_sql", "message"),
    [
        ("SELECT 1 AS account_id; SELECT 2", "another statement after the semicolon at line 1, column 23"),
        ("SELECT 'ACC-1 AS account_id", "unterminated string literal at line 1, column 8"),
        ("SELECT 1 AS account_id /* unfinished", "unterminated /* comment at line 1, column 24"),
        ("-- nothing but a comment\n;", "contains no query"),
    ],
)
def test_source_sql_rejected_up_front(hook: BigQueryM2MHook, source_sql: str, message: str) -> None:
    table = _staging_table("stage_rejected_sql")

    with pytest.raises(ValueError, match="source_sql") as raised:
        plan_changes_in_warehouse(hook, source_sql, iter([]), MAPPING, table)

    assert message in str(raised.value)
    client = hook.get_client()
    for name in (table, table + SOURCE_SNAPSHOT_SUFFIX):
        with pytest.raises(NotFound):
            client.get_table(name)


@pytest.mark.parametrize(
    ("source_sql", "body"),
    [
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1 ;; \n", "SELECT 1"),
        ("SELECT 1 -- one\nFROM t -- two", "SELECT 1 -- one\nFROM t"),
        ("SELECT 1 # one\n; # two", "SELECT 1"),
        ("SELECT 1 /* ; */ ;/* three */", "SELECT 1"),
        ("SELECT '--;' ;", "SELECT '--;'"),
        ('SELECT "#;" ;', 'SELECT "#;"'),
        ("SELECT '''a;\n-- b''' ;", "SELECT '''a;\n-- b'''"),
        (r"SELECT r'\' -- c' ;", r"SELECT r'\' -- c'"),
        (r"SELECT 'it\'s;' ;", r"SELECT 'it\'s;'"),
        ("SELECT `a;--b` FROM t;", "SELECT `a;--b` FROM t"),
        ("SELECT 1\r\nFROM t -- one\r\n;\r\n", "SELECT 1\r\nFROM t"),
        # GoogleSQL ends a comment at a lone CR too, so the WHERE clause is part of the query.
        ("SELECT 1 FROM t -- one\rWHERE x # two\r;", "SELECT 1 FROM t -- one\rWHERE x"),
    ],
)
def test_query_body_cuts_after_last_token(source_sql: str, body: str) -> None:
    assert query_body(source_sql) == body


# ARRAY and STRUCT source columns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name_column",
    ["[name]", "ARRAY(SELECT name)", "STRUCT(name AS first)", "[STRUCT(name AS first)]"],
)
def test_nested_column_planned_in_python(hook: BigQueryM2MHook, name_column: str) -> None:
    source_sql = (
        f"SELECT account_id, {name_column} AS name, revenue FROM `{PROJECT}.{DATASET}.{TABLE}` "
        "WHERE variant = 'plain'"
    )
    targets = _records(VARIANTS["plain"])
    expected = plan_changes(hook.iter_rows(source_sql), targets, MAPPING)

    result = plan_changes_in_warehouse(hook, source_sql, iter(targets), MAPPING, _staging_table("stage_nested"))

    assert result.proven_unchanged == 0
    assert len(expected.rejected) == ROWS  # plan_changes rejects a list or a dict for a text field
    _assert_same_plan(result, expected)


def test_array_key_planned_in_python(hook: BigQueryM2MHook) -> None:
    source_sql = (
        f"SELECT [account_id] AS account_id, name, revenue FROM `{PROJECT}.{DATASET}.{TABLE}` "
        "WHERE variant = 'plain'"
    )
    targets = _records(VARIANTS["plain"])
    expected = plan_changes(hook.iter_rows(source_sql), targets, MAPPING)

    result = plan_changes_in_warehouse(hook, source_sql, iter(targets), MAPPING, _staging_table("stage_array_key"))

    assert result.proven_unchanged == 0
    assert len(expected.rejected) == ROWS  # plan_changes rejects a list as a text key
    _assert_same_plan(result, expected)
