"""SOQL parsing and evaluation against the emulator's store."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from airflow_provider_m2m.sandbox.salesforce import soql
from airflow_provider_m2m.sandbox.salesforce.objects import CUSTOMER_ACCOUNT, DEFAULT_OBJECTS
from airflow_provider_m2m.sandbox.salesforce.store import Store


@pytest.fixture
def store() -> Store:
    store = Store(DEFAULT_OBJECTS, threading.RLock())
    rows = [
        {"External_Id__c": "ACC-1", "Name": "O'Brien", "Employees__c": Decimal(5), "Tier__c": "Gold"},
        {"External_Id__c": "ACC-2", "Name": "alpha", "Employees__c": None, "Tier__c": "Silver"},
        {"External_Id__c": "ACC-3", "Name": "Beta", "Employees__c": Decimal(7), "Tier__c": None},
    ]
    for row in rows:
        changes = {CUSTOMER_ACCOUNT.field(name): value for name, value in row.items()}
        assert store.create(CUSTOMER_ACCOUNT, changes, user_id="005000000000001AAA").success  # type: ignore[arg-type]
    return store


def _keys(store: Store, text: str) -> list[str]:
    rows, _ = soql.run(soql.parse(text, store), store)
    return [fields["External_Id__c"] for _, fields in rows]


def test_keywords_and_names_are_case_insensitive(store: Store) -> None:
    assert _keys(store, "select external_id__c from customer_account__c where tier__c = 'GOLD'") == ["ACC-1"]


def test_escaped_quote_in_string(store: Store) -> None:
    assert _keys(store, r"SELECT External_Id__c FROM Customer_Account__c WHERE Name = 'O\'Brien'") == ["ACC-1"]


def test_order_by_text_ignores_case(store: Store) -> None:
    assert _keys(store, "SELECT External_Id__c FROM Customer_Account__c ORDER BY Name") == ["ACC-2", "ACC-3", "ACC-1"]


def test_nulls_first_by_default_ascending(store: Store) -> None:
    assert _keys(store, "SELECT External_Id__c FROM Customer_Account__c ORDER BY Employees__c") == ["ACC-2", "ACC-1", "ACC-3"]
    assert _keys(store, "SELECT External_Id__c FROM Customer_Account__c ORDER BY Employees__c DESC") == ["ACC-3", "ACC-1", "ACC-2"]
    assert _keys(store, "SELECT External_Id__c FROM Customer_Account__c ORDER BY Employees__c ASC NULLS LAST") == ["ACC-1", "ACC-3", "ACC-2"]


def test_comparison_with_null_value_is_false(store: Store) -> None:
    assert _keys(store, "SELECT External_Id__c FROM Customer_Account__c WHERE Employees__c < 10") == ["ACC-1", "ACC-3"]


def test_limit_and_offset(store: Store) -> None:
    assert _keys(store, "SELECT External_Id__c FROM Customer_Account__c ORDER BY External_Id__c LIMIT 1 OFFSET 1") == ["ACC-2"]


def test_count(store: Store) -> None:
    rows, total = soql.run(soql.parse("SELECT COUNT() FROM Customer_Account__c WHERE Tier__c != null", store), store)

    assert rows == []
    assert total == 2


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SELECT FROM Customer_Account__c", "MALFORMED_QUERY"),
        ("SELECT Id FROM Customer_Account__c WHERE Employees__c = 'five'", "INVALID_FIELD"),
        ("SELECT Id FROM Customer_Account__c WHERE Employees__c > null", "MALFORMED_QUERY"),
        ("SELECT Id FROM Customer_Account__c LIMIT x", "MALFORMED_QUERY"),
        ("SELECT Id, Owner.Name FROM Customer_Account__c", "INVALID_FIELD"),
        ("SELECT Id FROM Customer_Account__c WHERE CreatedDate = TODAY", "INVALID_FIELD"),
        ("SELECT Failures__c FROM Reconciliation_Run__c WHERE Failures__c = 'x'", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
    ],
)
def test_rejected_queries(store: Store, text: str, code: str) -> None:
    with pytest.raises(soql.SoqlError) as raised:
        soql.parse(text, store)

    assert raised.value.error_code == code
