"""orphan_flag values checked against a describe result and compared in the form Salesforce stores."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_m2m.reconcile.flag_fields import describe_orphan_flag
from airflow_provider_m2m.reconcile.orphans import plan_orphan_work

OBJECT = "Customer_Account__c"
KEY = "External_Id__c"
ACCOUNT_ID = "a015g000000AbCdEFG"

FIELDS: list[dict[str, Any]] = [
    {"name": "Last_Activity__c", "type": "datetime"},
    {"name": "Signup_Date__c", "type": "date"},
    {"name": "Employees__c", "type": "double", "precision": 9, "scale": 0},
    {"name": "Annual_Revenue__c", "type": "currency", "precision": 16, "scale": 2},
    {"name": "Discount__c", "type": "percent", "precision": 5, "scale": 2},
    {"name": "Seats__c", "type": "int", "precision": 9, "scale": 0},
    {"name": "Missing_From_Source__c", "type": "boolean", "nillable": False},
    {"name": "Notes__c", "type": "textarea", "length": 10},
    {"name": "Status__c", "type": "string", "length": 20},
    {"name": "Name", "type": "string", "length": 80, "nillable": False},
    {
        "name": "Tier__c",
        "type": "picklist",
        "length": 255,
        "restrictedPicklist": True,
        "picklistValues": [
            {"value": "Gold", "active": True},
            {"value": "Legacy", "active": False},
        ],
    },
    {"name": "Merged_Into__c", "type": "reference", "length": 18},
    {"name": "Regions__c", "type": "multipicklist", "length": 4099},
    {"name": "CreatedDate", "type": "datetime", "updateable": False},
]
DESCRIBE = {
    "name": OBJECT,
    "fields": [{"nillable": True, "updateable": True, **field} for field in FIELDS],
}


def _matches(name: str, flag_value: Any, current: Any) -> bool:
    return describe_orphan_flag({name: flag_value}, DESCRIBE).matches({name: current})


# values read back in another form


@pytest.mark.parametrize(
    ("name", "flag_value", "current"),
    [
        pytest.param("Last_Activity__c", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000+0000", id="datetime-rest"),
        pytest.param("Last_Activity__c", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z", id="datetime-bulk"),
        pytest.param("Last_Activity__c", "2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00.000Z", id="datetime-offset"),
        pytest.param("Last_Activity__c", "2026-01-01T00:00:00.900Z", "2026-01-01T00:00:00.000Z", id="datetime-fraction"),
        pytest.param("Signup_Date__c", "2026-01-01", "2026-01-01", id="date"),
        pytest.param("Employees__c", 1.5, "2.0", id="scale-0-rounds-half-up"),
        pytest.param("Employees__c", 2, "2", id="scale-0-whole"),
        pytest.param("Annual_Revenue__c", Decimal("10.005"), "10.01", id="currency-rounded"),
        pytest.param("Annual_Revenue__c", 10, 10.0, id="currency-json-number"),
        pytest.param("Discount__c", "12.5", "12.50", id="percent-text"),
        pytest.param("Seats__c", 3, "3", id="int"),
        pytest.param("Missing_From_Source__c", True, "true", id="checkbox-csv"),
        pytest.param("Missing_From_Source__c", True, True, id="checkbox-json"),
        pytest.param("Missing_From_Source__c", None, "false", id="checkbox-null-is-false"),
        pytest.param("Status__c", "", "", id="empty-text-is-null"),
        pytest.param("Status__c", True, "true", id="boolean-in-text"),
        pytest.param("Merged_Into__c", ACCOUNT_ID[:15], ACCOUNT_ID, id="id-15-reads-18"),
        pytest.param("Merged_Into__c", ACCOUNT_ID, ACCOUNT_ID, id="id-18"),
        pytest.param("Merged_Into__c", None, "", id="id-null"),
        pytest.param("Regions__c", "EU;US", "EU;US", id="unmapped-type-as-text"),
    ],
)
def test_flag_matches_stored_form(name: str, flag_value: Any, current: Any) -> None:
    assert _matches(name, flag_value, current) is True


@pytest.mark.parametrize(
    ("name", "flag_value", "current"),
    [
        pytest.param("Last_Activity__c", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01.000Z", id="datetime-other-second"),
        pytest.param("Last_Activity__c", "2026-01-01T00:00:00Z", "", id="datetime-null"),
        pytest.param("Employees__c", 1.5, "1", id="scale-0-other-number"),
        pytest.param("Employees__c", 0, "", id="zero-is-not-null"),
        pytest.param("Missing_From_Source__c", True, "false", id="checkbox"),
        pytest.param("Status__c", "Missing", "missing", id="text-case"),
        pytest.param("Merged_Into__c", ACCOUNT_ID[:15], ACCOUNT_ID[:14] + "D" + "EFG", id="id-differs-in-case"),
        pytest.param("Merged_Into__c", ACCOUNT_ID, "", id="id-null"),
        pytest.param("Employees__c", 2, "not a number", id="unparsable-current"),
    ],
)
def test_flag_differs_from_stored_form(name: str, flag_value: Any, current: Any) -> None:
    assert _matches(name, flag_value, current) is False


def test_flag_field_name_ignores_case() -> None:
    flag = describe_orphan_flag({"missing_from_source__c": True}, DESCRIBE)

    assert flag.matches({"Missing_From_Source__c": "true"}) is True


def test_plan_skips_orphans_in_stored_form() -> None:
    flag = describe_orphan_flag({"Last_Activity__c": "2026-01-01T00:00:00Z", "Employees__c": 1.5}, DESCRIBE)
    rows = [
        {"Id": "ID1", KEY: "A", "Last_Activity__c": "2026-01-01T00:00:00.000+0000", "Employees__c": "2"},
        {"Id": "ID2", KEY: "B", "Last_Activity__c": "2026-01-01T00:00:00.000+0000", "Employees__c": "1"},
    ]

    work = plan_orphan_work("flag", ["A", "B"], rows, KEY, flag)

    assert work.already_flagged == ["A"]
    assert work.targets == {"B": "ID2"}


# values the field cannot store


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        pytest.param({"No_Such__c": True}, "is not a field of Customer_Account__c", id="unknown-field"),
        pytest.param({"CreatedDate": "2026-01-01T00:00:00Z"}, "cannot be edited", id="read-only"),
        pytest.param({"Employees__c": "lots"}, "'lots' is not a number", id="text-in-number"),
        pytest.param({"Employees__c": True}, "expected a number, got bool", id="boolean-in-number"),
        pytest.param({"Employees__c": 1_000_000_000}, "allows 9 digits before the decimal point", id="out-of-range"),
        pytest.param({"Annual_Revenue__c": Decimal("1e14")}, "allows 14 digits", id="currency-out-of-range"),
        pytest.param({"Seats__c": 1.5}, "is not a whole number", id="fraction-in-int"),
        pytest.param({"Missing_From_Source__c": 1}, "expected a boolean, got int", id="number-in-checkbox"),
        pytest.param({"Missing_From_Source__c": "maybe"}, "is not a boolean", id="text-in-checkbox"),
        pytest.param({"Notes__c": "x" * 11}, "text has 11 characters, the field allows 10", id="too-long"),
        pytest.param({"Name": None}, "the field is required", id="null-in-required"),
        pytest.param({"Tier__c": "Legacy"}, "restricted to Gold", id="inactive-picklist-value"),
        pytest.param({"Signup_Date__c": "01/02/2026"}, "is not an ISO 8601 date", id="malformed-date"),
        pytest.param({"Last_Activity__c": "yesterday"}, "is not an ISO 8601 datetime", id="malformed-datetime"),
        pytest.param({"Last_Activity__c": "2026-01-01T00:00:00"}, "has no time zone", id="naive-datetime"),
        pytest.param({"Merged_Into__c": "a01"}, "expected a 15- or 18-character record Id", id="short-id"),
        pytest.param({"Merged_Into__c": 5}, "expected a 15- or 18-character record Id", id="number-id"),
    ],
)
def test_unstorable_flag_rejected(flag: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        describe_orphan_flag(flag, DESCRIBE)

    message = str(raised.value)
    assert message.startswith("orphan_flag")
    assert next(iter(flag)) in message
    assert reason in message


@pytest.mark.parametrize(
    ("name", "flag_value"),
    [
        pytest.param("Employees__c", Decimal("999999999.4"), id="scale-0-rounds-down-to-precision"),
        pytest.param("Annual_Revenue__c", Decimal("99999999999999.99"), id="currency-largest"),
        pytest.param("Discount__c", Decimal("999.99"), id="percent-fraction-not-counted"),
    ],
)
def test_largest_storable_number_accepted(name: str, flag_value: Decimal) -> None:
    assert describe_orphan_flag({name: flag_value}, DESCRIBE).values == {name: flag_value}


def test_rejection_names_object_and_type() -> None:
    with pytest.raises(ValueError) as raised:
        describe_orphan_flag({"Employees__c": "lots"}, DESCRIBE)

    assert "the double field Customer_Account__c.Employees__c" in str(raised.value)
