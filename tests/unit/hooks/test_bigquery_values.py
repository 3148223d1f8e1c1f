"""BigQuery REST row and parameter conversion, one type per case."""

from __future__ import annotations

import base64
import math
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from airflow_provider_m2m.hooks.bigquery import BigQueryError, convert_cell, convert_row, query_parameters


def _cell(field_type: str, value: object, mode: str = "NULLABLE") -> object:
    return convert_cell({"name": "c", "type": field_type, "mode": mode}, {"v": value})


@pytest.mark.parametrize(
    ("field_type", "raw", "expected"),
    [
        ("STRING", "Zoë", "Zoë"),
        ("INTEGER", "-42", -42),
        ("INT64", "9007199254740993", 9007199254740993),
        ("FLOAT", "1.5", 1.5),
        ("NUMERIC", "12345678901234567890.123456789", Decimal("12345678901234567890.123456789")),
        ("BIGNUMERIC", "0.00000000000000000000000000000000000001", Decimal("1E-38")),
        ("BOOLEAN", "true", True),
        ("BOOL", "false", False),
        ("DATE", "2024-02-29", date(2024, 2, 29)),
        ("DATETIME", "2024-02-29T23:59:59.123456", datetime(2024, 2, 29, 23, 59, 59, 123456)),
        ("DATETIME", "2024-02-29 01:02:03", datetime(2024, 2, 29, 1, 2, 3)),
        ("TIME", "12:30:00.5", time(12, 30, 0, 500000)),
        ("BYTES", base64.b64encode(b"\x00\xffbytes").decode(), b"\x00\xffbytes"),
        ("JSON", '{"a": [1, null]}', {"a": [1, None]}),
        ("GEOGRAPHY", "POINT(1 2)", "POINT(1 2)"),
    ],
)
def test_scalar_types(field_type: str, raw: str, expected: object) -> None:
    value = _cell(field_type, raw)

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1700000000123456", datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)),
        ("1.700000000123456E9", datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)),
        ("1700000000.5", datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
        ("-1000000", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
    ids=["int64-micros", "float-seconds-exponent", "float-seconds", "before-epoch"],
)
def test_timestamp_forms_are_aware_utc(raw: str, expected: datetime) -> None:
    value = _cell("TIMESTAMP", raw)

    assert value == expected
    assert value.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity"])
def test_float_non_finite(raw: str) -> None:
    value = _cell("FLOAT64", raw)

    assert isinstance(value, float)
    assert math.isnan(value) if raw == "NaN" else value == float(raw)


def test_null_and_empty_array() -> None:
    assert _cell("INT64", None) is None
    assert _cell("INT64", None, mode="REPEATED") == []


def test_array_of_struct_recursively() -> None:
    field = {
        "name": "items",
        "type": "RECORD",
        "mode": "REPEATED",
        "fields": [
            {"name": "sku", "type": "STRING"},
            {"name": "prices", "type": "NUMERIC", "mode": "REPEATED"},
            {"name": "meta", "type": "STRUCT", "fields": [{"name": "seen", "type": "TIMESTAMP"}]},
        ],
    }
    cell = {
        "v": [
            {"v": {"f": [{"v": "A-1"}, {"v": [{"v": "1.10"}, {"v": "2"}]}, {"v": {"f": [{"v": "0"}]}}]}},
            {"v": {"f": [{"v": "B-2"}, {"v": []}, {"v": None}]}},
        ]
    }

    value = convert_cell(field, cell)

    assert value == [
        {
            "sku": "A-1",
            "prices": [Decimal("1.10"), Decimal("2")],
            "meta": {"seen": datetime(1970, 1, 1, tzinfo=UTC)},
        },
        {"sku": "B-2", "prices": [], "meta": None},
    ]


def test_row_keys_follow_schema() -> None:
    fields = [{"name": "id", "type": "INT64"}, {"name": "name", "type": "STRING"}]

    assert convert_row(fields, {"f": [{"v": "7"}, {"v": "Łukasz"}]}) == {"id": 7, "name": "Łukasz"}


def test_unparsable_value_names_column() -> None:
    with pytest.raises(BigQueryError) as raised:
        convert_cell({"name": "signup_date", "type": "DATE"}, {"v": "not-a-date"})

    assert "signup_date" in str(raised.value)


def test_query_parameter_types() -> None:
    parameters = query_parameters(
        {
            "flag": True,
            "count": 3,
            "ratio": 0.5,
            "amount": Decimal("12.34"),
            "huge": Decimal("1" * 40),
            "name": "株式会社",
            "raw": b"\x01",
            "day": date(2024, 1, 2),
            "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            "local": datetime(2024, 1, 2, 3, 4, 5),
            "keys": ["a", "b"],
            "missing": None,
        }
    )

    by_name = {parameter["name"]: parameter for parameter in parameters}
    assert by_name["flag"]["parameterType"] == {"type": "BOOL"}
    assert by_name["flag"]["parameterValue"] == {"value": "true"}
    assert by_name["count"]["parameterType"]["type"] == "INT64"
    assert by_name["ratio"]["parameterType"]["type"] == "FLOAT64"
    assert by_name["amount"]["parameterType"]["type"] == "NUMERIC"
    assert by_name["huge"]["parameterType"]["type"] == "BIGNUMERIC"
    assert by_name["name"]["parameterValue"] == {"value": "株式会社"}
    assert by_name["raw"]["parameterValue"] == {"value": "AQ=="}
    assert by_name["day"]["parameterType"]["type"] == "DATE"
    assert by_name["at"]["parameterType"]["type"] == "TIMESTAMP"
    assert by_name["at"]["parameterValue"] == {"value": "2024-01-02T03:04:05+00:00"}
    assert by_name["local"]["parameterType"]["type"] == "DATETIME"
    assert by_name["keys"]["parameterType"] == {"type": "ARRAY", "arrayType": {"type": "STRING"}}
    assert by_name["keys"]["parameterValue"] == {"arrayValues": [{"value": "a"}, {"value": "b"}]}
    assert by_name["missing"]["parameterValue"] == {"value": None}


def test_empty_list_parameter_rejected() -> None:
    with pytest.raises(ValueError, match="'ids'"):
        query_parameters({"ids": []})
