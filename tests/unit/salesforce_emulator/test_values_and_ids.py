"""Field value conversion, validation and formatting, and Salesforce id checksums."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from airflow_provider_m2m.sandbox.salesforce import values
from airflow_provider_m2m.sandbox.salesforce.ids import IdFactory, checksum_suffix, is_valid_id, to_18
from airflow_provider_m2m.sandbox.salesforce.objects import CUSTOMER_ACCOUNT

FIELD = CUSTOMER_ACCOUNT.field


def test_checksum_of_known_id() -> None:
    # Each suffix character encodes which of five id characters are upper case.
    assert checksum_suffix("001000000000000") == "AAA"
    assert checksum_suffix("A0000B0000C0000") == "BBB"
    assert checksum_suffix("ABCDE00000zzzzz") == "5AA"


def test_new_ids_are_valid_and_unique() -> None:
    factory = IdFactory()

    ids = [factory.new_id("a01") for _ in range(1000)]

    assert len(set(ids)) == 1000
    assert all(len(record_id) == 18 and is_valid_id(record_id) for record_id in ids)
    assert to_18(ids[0][:15]) == ids[0]
    assert not is_valid_id(ids[0][:15] + "XXX")


@pytest.mark.parametrize(
    ("field_name", "raw", "expected"),
    [
        ("Annual_Revenue__c", "1234.567", Decimal("1234.57")),
        ("Annual_Revenue__c", Decimal("0.005"), Decimal("0.01")),
        ("Employees__c", 12.5, Decimal("13")),
        ("Is_Active__c", "TRUE", True),
        ("Is_Active__c", "0", False),
        ("Is_Active__c", None, False),
        ("Signup_Date__c", "2024-02-29", dt.date(2024, 2, 29)),
        ("Last_Activity__c", "2024-03-01T12:00:00.1234+02:00", dt.datetime(2024, 3, 1, 10, 0, 0, 123000, tzinfo=dt.timezone.utc)),
        ("Last_Activity__c", "2024-03-01T12:00:00Z", dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc)),
        ("Name", "", None),
        ("Name", "  spaced  ", "  spaced  "),
    ],
)
def test_read_and_validate(field_name: str, raw: object, expected: object) -> None:
    field_def = FIELD(field_name)
    assert field_def is not None

    stored, error = values.validate_value(field_def, values.read_value(field_def, raw))

    assert error is None
    assert stored == expected


@pytest.mark.parametrize(
    ("field_name", "raw"),
    [
        ("Annual_Revenue__c", "abc"),
        ("Annual_Revenue__c", True),
        ("Annual_Revenue__c", "NaN"),
        ("Is_Active__c", "maybe"),
        ("Signup_Date__c", "2024-13-01"),
        ("Signup_Date__c", "01/02/2024"),
        ("Last_Activity__c", "2024-03-01 12:00:00"),
    ],
)
def test_read_rejects_bad_types(field_name: str, raw: object) -> None:
    field_def = FIELD(field_name)
    assert field_def is not None

    with pytest.raises(values.ValueTypeError):
        values.read_value(field_def, raw)


def test_csv_cells_blank_and_null() -> None:
    notes = FIELD("Notes__c")
    assert notes is not None

    assert values.read_csv_cell(notes, "") is values.UNCHANGED
    assert values.read_csv_cell(notes, "#N/A") is None
    assert values.read_csv_cell(notes, "text") == "text"


def test_number_range_uses_integer_digits() -> None:
    revenue = FIELD("Annual_Revenue__c")
    assert revenue is not None

    _, fits = values.validate_value(revenue, Decimal("99999999999999.99"))
    _, too_big = values.validate_value(revenue, Decimal("100000000000000"))

    assert fits is None
    assert too_big is not None
    assert too_big.status_code == "NUMBER_OUTSIDE_VALID_RANGE"


def test_text_length_counts_characters() -> None:
    name = FIELD("Name")
    assert name is not None

    _, fits = values.validate_value(name, "株" * 80)
    _, too_long = values.validate_value(name, "株" * 81)

    assert fits is None
    assert too_long is not None
    assert too_long.to_bulk().startswith("STRING_TOO_LONG:Name: data value too large: ")
    assert too_long.to_bulk().endswith("(max length=80):Name --")


def test_bulk_error_without_fields() -> None:
    error = values.RecordError("ENTITY_IS_DELETED", "entity is deleted")

    assert error.to_bulk() == "ENTITY_IS_DELETED:entity is deleted:--"


def test_dumps_writes_decimals_as_numbers() -> None:
    text = values.dumps({"a": Decimal("1234.50"), "b": Decimal("42"), "c": "Zoë", "d": None, "e": [True]})

    assert text == '{"a":1234.5,"b":42.0,"c":"Zoë","d":null,"e":[true]}'


def test_formats_for_rest_and_csv() -> None:
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=dt.timezone.utc)

    assert values.to_json_value(moment) == "2024-01-02T03:04:05.006+0000"
    assert values.to_csv_value(moment) == "2024-01-02T03:04:05.006Z"
    assert values.to_csv_value(Decimal("10.50")) == "10.5"
    assert values.to_csv_value(Decimal("100")) == "100"
    assert values.to_csv_value(False) == "false"
    assert values.to_csv_value(None) == ""
