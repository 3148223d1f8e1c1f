"""BigQueryM2MHook.query_arrow against the sandbox's BigQuery emulator: the Arrow table of a query
contains the same values as iter_rows, for every column type the emulator stores, over several pages."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.sandbox import Sandbox, seed
from airflow_provider_m2m.sandbox.bigquery import load_table
from tests.arrow_support import comparable

DATASET = "arrow_reads"
TABLE = f"`{seed.PROJECT_ID}.{DATASET}.every_type`"
# bqemulator 1.1 stores neither BIGNUMERIC (DuckDB decimals stop at 38 digits) nor GEOGRAPHY
# (its spatial extension is not loaded), and has no RANGE columns. The unit tests cover those.
SCHEMA = [
    {"name": "id", "type": "INT64", "mode": "REQUIRED"},
    {"name": "text", "type": "STRING"},
    {"name": "count", "type": "INT64"},
    {"name": "ratio", "type": "FLOAT64"},
    {"name": "amount", "type": "NUMERIC"},
    {"name": "active", "type": "BOOL"},
    {"name": "day", "type": "DATE"},
    {"name": "seen_at", "type": "TIMESTAMP"},
    {"name": "local_at", "type": "DATETIME"},
    {"name": "raw", "type": "BYTES"},
    {"name": "clock", "type": "TIME"},
    {"name": "doc", "type": "JSON"},
    {"name": "span", "type": "INTERVAL"},
    {"name": "detail", "type": "RECORD", "fields": [{"name": "a", "type": "INT64"}, {"name": "p", "type": "NUMERIC", "mode": "REPEATED"}]},
    {"name": "tags", "type": "INT64", "mode": "REPEATED"},
]
COLUMNS = ", ".join(column["name"] for column in SCHEMA)
EDGE_ROWS = [
    "(1, 'Zoë, \"quoted\"\\nnext line', 9223372036854775807, CAST('NaN' AS FLOAT64), "
    "NUMERIC '-12345678901234567890.123456789', TRUE, DATE '0001-01-01', "
    "TIMESTAMP '1900-01-01 00:00:00.000001 UTC', DATETIME '2024-02-29 01:02:03.5', b'\\x00\\xffraw', "
    "TIME '12:30:00.5', JSON '{\"a\": [1, null]}', INTERVAL 1 DAY, STRUCT(1 AS a, [NUMERIC '1.5'] AS p), [1, 2])",
    "(2, '', -9223372036854775808, CAST('inf' AS FLOAT64), NUMERIC '0.000000001', FALSE, DATE '9999-12-31', "
    "TIMESTAMP '1969-12-31 23:59:59.999999 UTC', DATETIME '9999-12-31 23:59:59.999999', b'', "
    "TIME '00:00:00', JSON '{\"a\": []}', INTERVAL 0 DAY, STRUCT(NULL AS a, [] AS p), [])",
    "(3, NULL, NULL, CAST('-inf' AS FLOAT64), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, [])",
    "(4, '株式会社', 0, -0.0, NUMERIC '99999999999999999999999999999.999999999', TRUE, DATE '1970-01-01', "
    "TIMESTAMP '1970-01-01 00:00:00 UTC', DATETIME '1970-01-01 00:00:00', b'abc', TIME '23:59:59.999999', "
    "NULL, NULL, STRUCT(-7 AS a, [NUMERIC '-0.5', NUMERIC '2'] AS p), [3])",
]
PLAIN_ROWS = [
    f"({number}, 'row {number}', {number * 1000}, {number}.25, NUMERIC '{number}.123456789', {str(number % 2 == 0).upper()}, "
    f"DATE '2024-01-{number % 28 + 1:02d}', TIMESTAMP '2024-01-01 00:00:{number % 60:02d}.{number:06d} UTC', "
    f"DATETIME '2024-01-01 00:00:{number % 60:02d}', b'{number}', TIME '01:02:03', JSON '{{\"a\": [{number}]}}', "
    f"INTERVAL {number} DAY, STRUCT({number} AS a, [NUMERIC '{number}'] AS p), [{number}, {number}])"
    for number in range(5, 41)
]
ROW_COUNT = len(EDGE_ROWS) + len(PLAIN_ROWS)


@pytest.fixture(scope="module")
def every_type_table(sandbox: Sandbox) -> str:
    """Create a table with every type the emulator stores and fill it with edge values and plain rows."""
    assert sandbox.bigquery is not None
    load_table(sandbox.bigquery.emulator.url + "/bigquery/v2", [], dataset_id=DATASET, table_id="every_type", schema=SCHEMA)
    # bqemulator 1.1 fails insertAll for a table with a RECORD column, so the rows go in by DML.
    values = ", ".join(EDGE_ROWS + PLAIN_ROWS)
    list(BigQueryM2MHook().iter_rows(f"INSERT INTO {TABLE} ({COLUMNS}) VALUES {values}"))
    return TABLE


def test_query_arrow_equals_iter_rows(every_type_table: str) -> None:
    hook = BigQueryM2MHook()
    page_requests = []
    hook.get_session().hooks["response"].append(
        lambda response, **kwargs: page_requests.append(response.url) if "/queries/" in response.url else None
    )
    sql = f"SELECT * FROM {every_type_table} ORDER BY id"

    table = hook.query_arrow(sql, page_size=7)

    # jobs.query returns the first 7 rows and getQueryResults the others, 7 per page.
    assert len(page_requests) == math.ceil(ROW_COUNT / 7) - 1
    assert table.num_rows == ROW_COUNT
    assert comparable(table.to_pylist()) == comparable(list(hook.iter_rows(sql, page_size=7)))


def test_query_arrow_edge_values(every_type_table: str) -> None:
    rows = BigQueryM2MHook().query_arrow(f"SELECT * FROM {every_type_table} WHERE id <= 4 ORDER BY id").to_pylist()

    assert math.isnan(rows[0]["ratio"])
    assert rows[1]["ratio"] == math.inf
    assert rows[2]["ratio"] == -math.inf
    assert str(rows[0]["amount"]) == "-12345678901234567890.123456789"
    assert rows[0]["seen_at"].isoformat() == "1900-01-01T00:00:00.000001+00:00"
    assert rows[1]["seen_at"].isoformat() == "1969-12-31T23:59:59.999999+00:00"
    assert rows[0]["text"] == 'Zoë, "quoted"\nnext line'
    assert rows[1]["text"] == ""
    assert rows[2]["text"] is None
    assert rows[2]["tags"] == []
    assert rows[0]["raw"] == b"\x00\xffraw"


def test_query_arrow_column_types(every_type_table: str) -> None:
    table = BigQueryM2MHook().query_arrow(f"SELECT * FROM {every_type_table}")

    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["text"] == pa.string()
    assert types["count"] == pa.int64()
    assert types["ratio"] == pa.float64()
    assert types["amount"] == pa.decimal128(38, 9)
    assert types["active"] == pa.bool_()
    assert types["day"] == pa.date32()
    assert types["seen_at"] == pa.timestamp("us", tz="UTC")
    assert types["local_at"] == pa.timestamp("us")
    assert types["raw"] == pa.binary()
    assert types["clock"] == pa.time64("us")
    assert types["span"] == pa.string()
    assert types["detail"] == pa.struct([("a", pa.int64()), ("p", pa.list_(pa.decimal128(38, 9)))])
    assert types["tags"] == pa.list_(pa.int64())


def test_query_arrow_no_rows_keeps_schema(every_type_table: str) -> None:
    sql = f"SELECT id, amount, seen_at, tags FROM {every_type_table} WHERE id < 0"

    table = BigQueryM2MHook().query_arrow(sql, page_size=3)

    assert table.num_rows == 0
    assert table.column_names == ["id", "amount", "seen_at", "tags"]
    assert table.schema.types == [pa.int64(), pa.decimal128(38, 9), pa.timestamp("us", tz="UTC"), pa.list_(pa.int64())]
    assert table.to_pylist() == list(BigQueryM2MHook().iter_rows(sql))


def test_query_arrow_with_parameters(every_type_table: str) -> None:
    sql = f"SELECT id, text FROM {every_type_table} WHERE id BETWEEN @low AND @high ORDER BY id"

    table = BigQueryM2MHook().query_arrow(sql, parameters={"low": 5, "high": 8})

    assert table.column("id").to_pylist() == [5, 6, 7, 8]
    assert table.column("text").to_pylist() == ["row 5", "row 6", "row 7", "row 8"]
