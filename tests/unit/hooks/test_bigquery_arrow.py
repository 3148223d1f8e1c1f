"""Arrow tables from BigQuery REST result pages: the same values as convert_row, type by type."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from airflow_provider_m2m.hooks import bigquery
from airflow_provider_m2m.hooks.bigquery import ArrowTableBuilder, BigQueryError, arrow_type, convert_row
from tests.arrow_support import comparable


def _rows(*values: Any) -> list[dict[str, Any]]:
    """Build one-column REST rows, `{"f": [{"v": value}]}`, one per value."""
    return [{"f": [{"v": value}]} for value in values]


def _table(fields: list[dict[str, Any]], *pages: list[dict[str, Any]]) -> pa.Table:
    """Build the Arrow table of the REST result pages, in order."""
    builder = ArrowTableBuilder(fields)
    for page in pages:
        builder.add_page(page)
    return builder.table()


@pytest.mark.parametrize(
    ("field_type", "raw_values", "expected_type"),
    [
        ("STRING", ["Zoë", "", None, "a,\"b\"\nc"], pa.string()),
        ("INT64", ["-9223372036854775808", "9223372036854775807", None], pa.int64()),
        ("INTEGER", ["0", "-1"], pa.int64()),
        ("FLOAT64", ["NaN", "Infinity", "-Infinity", "nan", "inf", "-inf", "0.1", "-0", "1e-320", None], pa.float64()),
        ("NUMERIC", ["-99999999999999999999999999999.999999999", "0.000000001", "12.5", "1E+3", None], pa.decimal128(38, 9)),
        ("BIGNUMERIC", ["0.00000000000000000000000000000000000001", "-99999999999999999999999999999999999999.5", None], pa.decimal256(76, 38)),
        ("BOOL", ["true", "false", None], pa.bool_()),
        ("BOOLEAN", ["TRUE", "False"], pa.bool_()),
        ("DATE", ["0001-01-01", "9999-12-31", "2024-02-29", None], pa.date32()),
        ("DATETIME", ["2024-02-29T23:59:59.123456", "2024-02-29 01:02:03", "0001-01-01T00:00:00.5", None], pa.timestamp("us")),
        ("TIMESTAMP", ["1700000000123456", "-1", "-62135596800000000", "253402300799999999", None], pa.timestamp("us", tz="UTC")),
        ("TIMESTAMP", ["1.700000000123456E9", "1700000000.5", "-1000000"], pa.timestamp("us", tz="UTC")),
        ("BYTES", [base64.b64encode(b"\x00\xff").decode(), "", None], pa.binary()),
        ("TIME", ["12:30:00.5", "23:59:59.999999", None], pa.time64("us")),
        ("GEOGRAPHY", ["POINT(1 2)", None], pa.string()),
        ("INTERVAL", ["0-0 1 0:0:0", None], pa.string()),
        ("RANGE", ["[2024-01-01, 2024-02-01)", None], pa.string()),
        ("JSON", ['{"a": [1, null]}', '{"a": []}', "null", None], pa.struct([("a", pa.list_(pa.int64()))])),
        ("JSON", ['"text"', '"more"'], pa.string()),
    ],
)
def test_type_matches_convert_row(field_type: str, raw_values: list[Any], expected_type: pa.DataType) -> None:
    fields = [{"name": "c", "type": field_type, "mode": "NULLABLE"}]
    rows = _rows(*raw_values)

    table = _table(fields, rows)

    assert table.schema.types == [expected_type]
    assert comparable(table.to_pylist()) == comparable([convert_row(fields, row) for row in rows])


def test_struct_and_array_match_convert_row() -> None:
    fields = [
        {
            "name": "items",
            "type": "RECORD",
            "mode": "REPEATED",
            "fields": [
                {"name": "sku", "type": "STRING"},
                {"name": "prices", "type": "NUMERIC", "mode": "REPEATED"},
                {"name": "meta", "type": "STRUCT", "fields": [{"name": "seen", "type": "TIMESTAMP"}]},
            ],
        },
        {"name": "days", "type": "DATE", "mode": "REPEATED"},
    ]
    rows = [
        {
            "f": [
                {"v": [{"v": {"f": [{"v": "A-1"}, {"v": [{"v": "1.10"}, {"v": "2"}]}, {"v": {"f": [{"v": "-1"}]}}]}}]},
                {"v": [{"v": "2024-01-02"}]},
            ]
        },
        {"f": [{"v": []}, {"v": None}]},
    ]

    table = _table(fields, rows)

    assert table.to_pylist() == [convert_row(fields, row) for row in rows]
    assert table.schema.field("days").type == pa.list_(pa.date32())


def test_pages_share_first_schema() -> None:
    fields = [{"name": "n", "type": "NUMERIC"}, {"name": "seen", "type": "TIMESTAMP"}]
    first = [{"f": [{"v": None}, {"v": None}]}]
    second = [{"f": [{"v": "1.5"}, {"v": "0"}]}, {"f": [{"v": "-2"}, {"v": "1.5E9"}]}]

    table = _table(fields, first, [], second)

    assert table.num_rows == 3
    assert table.column("n").num_chunks == 2
    assert table.to_pylist() == [convert_row(fields, row) for row in first + second]


def test_no_rows_keeps_schema() -> None:
    fields = [{"name": "id", "type": "INT64"}, {"name": "doc", "type": "JSON"}, {"name": "tags", "type": "STRING", "mode": "REPEATED"}]

    table = _table(fields, [])

    assert table.num_rows == 0
    assert table.column_names == ["id", "doc", "tags"]
    assert table.schema.field("tags").type == pa.list_(pa.string())


@pytest.mark.parametrize(
    ("field_type", "raw"),
    [("DATE", "not-a-date"), ("INT64", "1.5"), ("BOOL", "1"), ("FLOAT64", "fast"), ("TIMESTAMP", "soon"), ("NUMERIC", "1,5")],
)
def test_unparseable_cell_names_column(field_type: str, raw: str) -> None:
    fields = [{"name": "good", "type": "STRING"}, {"name": "signup", "type": field_type}]
    rows = [{"f": [{"v": "x"}, {"v": raw}]}]

    with pytest.raises(BigQueryError) as raised:
        _table(fields, rows)

    assert "'signup'" in str(raised.value)
    assert field_type in str(raised.value)


def test_bignumeric_too_large_raises() -> None:
    fields = [{"name": "huge", "type": "BIGNUMERIC"}]
    # The largest BIGNUMERIC has 39 integer digits, and decimal256(76, 38) stores 38.
    rows = _rows("578960446186580977117854925043439539266.34992332820282019728792003956564819967")

    with pytest.raises(BigQueryError, match="'huge'"):
        _table(fields, rows)


def test_json_objects_with_other_keys_raise() -> None:
    fields = [{"name": "doc", "type": "JSON"}]

    with pytest.raises(BigQueryError) as raised:
        _table(fields, _rows('{"a": 1}'), _rows('{"b": 2}'))

    assert "'doc'" in str(raised.value)
    assert "TO_JSON_STRING(doc)" in str(raised.value)


def test_json_of_mixed_kinds_raises() -> None:
    fields = [{"name": "doc", "type": "JSON"}]

    with pytest.raises(BigQueryError, match="TO_JSON_STRING"):
        _table(fields, _rows('{"a": 1}', "[1, 2]"))


def test_json_type_inferred_over_every_page() -> None:
    fields = [{"name": "doc", "type": "JSON"}]
    first, second = _rows("null"), _rows("1.5", "2.5")

    table = _table(fields, first, second)

    assert table.schema.types == [pa.float64()]
    assert table.to_pylist() == [{"doc": None}, {"doc": 1.5}, {"doc": 2.5}]


def test_json_of_integers_and_fractions_raises() -> None:
    # Arrow would store 1 as 1.0, which iter_rows returns as the int 1.
    fields = [{"name": "doc", "type": "JSON"}]

    with pytest.raises(BigQueryError, match="TO_JSON_STRING"):
        _table(fields, _rows("1", "2.5"))


def test_json_error_quotes_no_value() -> None:
    fields = [{"name": "doc", "type": "JSON"}]

    with pytest.raises(BigQueryError) as raised:
        _table(fields, _rows('"secret-looking text"', "1"))

    assert "secret-looking" not in str(raised.value)


def test_unrequested_columns_are_never_converted() -> None:
    fields = [{"name": "id", "type": "STRING"}, {"name": "extra", "type": "JSON"}]
    builder = ArrowTableBuilder(fields, columns=["id"])
    builder.add_page([{"f": [{"v": "A"}, {"v": '"x"'}]}, {"f": [{"v": "B"}, {"v": "1"}]}])

    table = builder.table()

    assert table.column_names == ["id"]
    assert table.to_pylist() == [{"id": "A"}, {"id": "B"}]


def test_short_row_raises() -> None:
    fields = [{"name": "a", "type": "STRING"}, {"name": "b", "type": "STRING"}]

    with pytest.raises(BigQueryError, match="2 columns"):
        _table(fields, [{"f": [{"v": "1"}]}])


def test_arrow_type_of_json_and_unknown() -> None:
    field = {"name": "s", "type": "RECORD", "fields": [{"name": "j", "type": "JSON"}, {"name": "n", "type": "INT64"}]}

    assert arrow_type(field) is None
    assert arrow_type({"name": "list", "type": "JSON", "mode": "REPEATED"}) is None
    assert arrow_type({"name": "unknown", "type": "SOMETHING_NEW"}) == pa.string()


def test_numeric_gets_nine_decimals() -> None:
    fields = [{"name": "n", "type": "NUMERIC"}]

    value = _table(fields, _rows("12.5")).column("n")[0].as_py()

    assert value == Decimal("12.5")
    # Arrow gives every NUMERIC nine decimal places, so its text differs from convert_cell's Decimal.
    assert str(value) == "12.500000000"


def test_cast_types_skip_convert_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(field: Any, cell: Any) -> Any:
        raise AssertionError(f"convert_cell called for column {field['name']}")

    monkeypatch.setattr(bigquery, "convert_cell", fail)
    names_and_values = {
        "STRING": "text",
        "INT64": "-42",
        "FLOAT64": "NaN",
        "NUMERIC": "1.123456789",
        "BIGNUMERIC": "-1.5",
        "BOOL": "true",
        "DATE": "1900-01-01",
        "DATETIME": "2024-02-29T01:02:03.500000",
        "TIMESTAMP": "-2208988799999999",
    }
    fields = [{"name": name.lower(), "type": name} for name in names_and_values]
    rows = [{"f": [{"v": value} for value in names_and_values.values()]}, {"f": [{"v": None}] * len(fields)}]

    table = _table(fields, rows)

    assert table.num_rows == 2
    assert table.column("timestamp")[0].as_py().isoformat() == "1900-01-01T00:00:00.000001+00:00"
