"""Normalisation of source and target values to one comparable form per field type."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from airflow_provider_m2m.reconcile import FieldMapping, FieldType, InvalidValue
from airflow_provider_m2m.reconcile.normalize import (
    source_column_converter,
    source_converter,
    target_converter,
    target_key_column_converter,
)


def field(kind: FieldType, **options) -> FieldMapping:
    return FieldMapping("column", "Field__c", kind, **options)


def source(kind: FieldType, value, **options) -> str:
    return source_converter(field(kind, **options))(value)


def target(kind: FieldType, value, **options) -> str:
    return target_converter(field(kind, **options))(value)


# Text ---------------------------------------------------------------------------------------------


def test_text_nfc_on_both_sides():
    decomposed = "Zoe\u0308"  # e + combining diaeresis
    assert source(FieldType.STRING, decomposed) == "Zoë"
    assert target(FieldType.STRING, decomposed) == "Zoë"


def test_text_empty_string_is_null():
    assert source(FieldType.STRING, "") == ""
    assert source(FieldType.STRING, None) == ""
    assert target(FieldType.TEXTAREA, "") == ""
    assert target(FieldType.TEXTAREA, None) == ""


def test_text_keeps_whitespace():
    assert source(FieldType.STRING, "  padded ") == "  padded "


def test_text_longer_than_field_rejected():
    assert source(FieldType.STRING, "a" * 80, length=80) == "a" * 80
    with pytest.raises(InvalidValue, match="81 characters, the field allows 80"):
        source(FieldType.STRING, "a" * 81, length=80)


def test_text_length_counts_characters_after_nfc():
    # 80 characters in NFC, 81 code points before normalisation
    assert source(FieldType.STRING, "e\u0301" + "a" * 79, length=80) == "é" + "a" * 79


def test_text_with_nul_rejected():
    with pytest.raises(InvalidValue, match="NUL"):
        source(FieldType.STRING, "a\x00b")


def test_text_from_number_and_wrong_type():
    assert source(FieldType.PHONE, 5550100) == "5550100"
    with pytest.raises(InvalidValue, match="expected text, got list"):
        source(FieldType.STRING, ["a"])


def test_required_text_rejects_null_and_empty():
    with pytest.raises(InvalidValue, match="required"):
        source(FieldType.STRING, None, nullable=False)
    with pytest.raises(InvalidValue, match="required"):
        source(FieldType.STRING, "", nullable=False)


# Numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1200.5"), "1200.50"),
        (Decimal("1200.505"), "1200.51"),  # half up
        (Decimal("-1200.505"), "-1200.51"),  # half up rounds away from zero
        (Decimal("1200.504"), "1200.50"),
        (Decimal("-0.001"), "0.00"),
        (Decimal("1E+3"), "1000.00"),
        (7, "7.00"),
        (0.1, "0.10"),
        ("12.5", "12.50"),
    ],
)
def test_decimal_source_rounds_to_scale(value, expected):
    assert source(FieldType.DECIMAL, value, scale=2) == expected


@pytest.mark.parametrize(("value", "expected"), [("1200.5", "1200.50"), ("1200", "1200.00"), (1200.5, "1200.50")])
def test_decimal_target_matches_source_form(value, expected):
    assert target(FieldType.DECIMAL, value, scale=2) == expected


def test_decimal_without_scale_drops_trailing_zeros():
    assert source(FieldType.DECIMAL, Decimal("1200.500")) == "1200.5"
    assert target(FieldType.DECIMAL, "1200.5") == "1200.5"
    assert source(FieldType.DECIMAL, Decimal("1200")) == "1200"


def test_decimal_large_scale_stays_plain():
    assert source(FieldType.DECIMAL, Decimal("1E-8"), scale=8) == "0.00000001"


def test_number_null_in_source_equals_empty_in_target():
    assert source(FieldType.DECIMAL, None, scale=2) == target(FieldType.DECIMAL, "", scale=2) == ""
    assert source(FieldType.INTEGER, None) == target(FieldType.INTEGER, "") == ""
    assert source(FieldType.DOUBLE, None) == target(FieldType.DOUBLE, "") == ""


@pytest.mark.parametrize("kind", [FieldType.DECIMAL, FieldType.INTEGER, FieldType.DOUBLE])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("Infinity")])
def test_number_nan_and_infinity_rejected(kind, value):
    with pytest.raises(InvalidValue, match="never sent"):
        source(kind, value)


def test_number_rejects_bool_and_text():
    with pytest.raises(InvalidValue, match="expected a number, got bool"):
        source(FieldType.DECIMAL, True, scale=2)
    with pytest.raises(InvalidValue, match="is not a number"):
        source(FieldType.DECIMAL, "twelve", scale=2)
    with pytest.raises(InvalidValue, match="is not a number"):
        source(FieldType.DECIMAL, "", scale=2)


def test_integer_forms():
    assert source(FieldType.INTEGER, 42) == "42"
    assert source(FieldType.INTEGER, Decimal("42.00")) == "42"
    assert source(FieldType.INTEGER, 42.0) == "42"
    assert target(FieldType.INTEGER, "42") == "42"
    assert target(FieldType.INTEGER, "42.0") == "42"
    assert target(FieldType.INTEGER, 42) == "42"
    with pytest.raises(InvalidValue, match="not a whole number"):
        source(FieldType.INTEGER, Decimal("42.5"))


def test_double_forms():
    assert source(FieldType.DOUBLE, 1200.5) == target(FieldType.DOUBLE, "1200.5") == "1200.5"
    assert source(FieldType.DOUBLE, 3.0) == target(FieldType.DOUBLE, "3") == "3"
    assert source(FieldType.DOUBLE, 1e20) == "100000000000000000000"
    assert source(FieldType.DOUBLE, -0.0) == "0"
    assert source(FieldType.DOUBLE, 0.125, scale=2) == target(FieldType.DOUBLE, "0.12", scale=2)


# Booleans, dates, datetimes -----------------------------------------------------------------------


def test_boolean_null_is_false():
    assert source(FieldType.BOOLEAN, None) == "false"
    assert target(FieldType.BOOLEAN, "") == "false"
    assert source(FieldType.BOOLEAN, True) == target(FieldType.BOOLEAN, "true") == "true"
    assert target(FieldType.BOOLEAN, False) == "false"


def test_boolean_rejects_other_values():
    with pytest.raises(InvalidValue, match="not a boolean"):
        source(FieldType.BOOLEAN, "yes")
    with pytest.raises(InvalidValue, match="expected a boolean, got int"):
        source(FieldType.BOOLEAN, 1)


def test_date_forms():
    assert source(FieldType.DATE, date(2024, 1, 2)) == target(FieldType.DATE, "2024-01-02") == "2024-01-02"
    assert source(FieldType.DATE, "2024-01-02") == "2024-01-02"
    with pytest.raises(InvalidValue, match="got a datetime"):
        source(FieldType.DATE, datetime(2024, 1, 2, tzinfo=UTC))
    with pytest.raises(InvalidValue, match="not an ISO 8601 date"):
        source(FieldType.DATE, "02/01/2024")


def test_datetime_in_utc_to_the_second():
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2024, 1, 2, 5, 4, 5, 999_999, tzinfo=plus_two)
    assert source(FieldType.DATETIME, moment) == "2024-01-02T03:04:05.000Z"
    assert source(FieldType.DATETIME, moment.astimezone(UTC)) == "2024-01-02T03:04:05.000Z"


@pytest.mark.parametrize(
    "text", ["2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05.000+0000", "2024-01-02T05:04:05.250+02:00"]
)
def test_datetime_target_forms(text):
    assert target(FieldType.DATETIME, text) == "2024-01-02T03:04:05.000Z"


def test_datetime_naive_rejected():
    with pytest.raises(InvalidValue, match="no time zone"):
        source(FieldType.DATETIME, datetime(2024, 1, 2, 3, 4, 5))
    with pytest.raises(InvalidValue, match="expected a datetime, got date"):
        source(FieldType.DATETIME, date(2024, 1, 2))


def test_datetime_year_before_1000_padded():
    assert source(FieldType.DATETIME, datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000Z"


# Every comparable form converts to itself on the target side, which the plan relies on when it
# compares raw Bulk API text with source text.
@pytest.mark.parametrize(
    ("kind", "value", "options"),
    [
        (FieldType.STRING, "Zoe\u0308", {}),
        (FieldType.DECIMAL, Decimal("1200.5"), {"scale": 2}),
        (FieldType.DECIMAL, Decimal("-3.10"), {}),
        (FieldType.INTEGER, 7, {}),
        (FieldType.DOUBLE, 1e-7, {}),
        (FieldType.BOOLEAN, True, {}),
        (FieldType.DATE, date(2024, 2, 29), {}),
        (FieldType.DATETIME, datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC), {}),
    ],
)
def test_comparable_form_is_stable(kind, value, options):
    text = source(kind, value, **options)
    assert target(kind, text, **options) == text


def test_number_subclasses_accepted():
    class Amount(Decimal):
        pass

    class Count(int):
        pass

    assert source(FieldType.DECIMAL, Amount("1.005"), scale=2) == "1.01"
    assert source(FieldType.DECIMAL, Count(3), scale=2) == "3.00"
    assert source(FieldType.INTEGER, Count(3)) == "3"


# Column converters must give the same texts and the same errors as converting value by value.
TEXT_COLUMNS = [
    ["Gold", "Silver", "Bronze"],
    ["Zoë", "株式会社", "Ñandú"],
    ["Zoe\u0308", "plain"],  # one value not in NFC
    ["\u0301accent first", "x"],  # a combining mark at the start of a value
    ["a", None, ""],
    ["a", 5550100],
    ["a\x00b", "c"],
    ["x" * 10, "y"],
    [],
]


@pytest.mark.parametrize("values", TEXT_COLUMNS)
@pytest.mark.parametrize(("length", "nullable"), [(None, True), (5, True), (None, False)])
def test_text_column_matches_each_value(values, length, nullable):
    mapped = field(FieldType.STRING, length=length, nullable=nullable)
    convert = source_converter(mapped)
    convert_column = source_column_converter(mapped)

    try:
        expected = [convert(value) for value in values]
    except InvalidValue as err:
        with pytest.raises(InvalidValue, match=re.escape(str(err))):
            convert_column(list(values))
    else:
        assert convert_column(list(values)) == expected


@pytest.mark.parametrize("values", [["A1", "Zoe\u0308"], ["A1", None], ["A1", ""], ["A1", 7]])
def test_target_key_column_matches_each_value(values):
    mapped = field(FieldType.STRING)

    expected = [target_converter(mapped)(value) for value in values]

    assert target_key_column_converter(mapped)(list(values)) == expected


def test_number_column_converts_each_value():
    convert_column = source_column_converter(field(FieldType.DECIMAL, scale=1))

    assert convert_column([Decimal("1.25"), None, 3]) == ["1.3", "", "3.0"]
