"""SOQL string literals and the split of a long key list into statements that fit a length limit."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from airflow_provider_m2m.hooks.salesforce import soql_in_statements, soql_quote

PREFIX = "SELECT Id, External_Id__c FROM Customer_Account__c WHERE External_Id__c IN ("


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("O'Brien", "'O\\'Brien'"),
        ("back\\slash", "'back\\\\slash'"),
        ('say "hi"', "'say \\\"hi\\\"'"),
        ("line\nbreak\ttab", "'line\\nbreak\\ttab'"),
    ],
)
def test_soql_quote(value: str, literal: str) -> None:
    assert soql_quote(value) == literal


def test_statements_fit_and_keep_every_key() -> None:
    keys = [f"ACC-{number:07d}" for number in range(1000)]

    statements = list(soql_in_statements(PREFIX, keys, max_length=2000))

    assert len(statements) > 1
    assert all(len(statement) <= 2000 for statement in statements)
    listed = [literal.strip("'") for statement in statements for literal in statement[len(PREFIX) : -1].split(", ")]
    assert listed == keys


def test_statement_exactly_at_limit() -> None:
    only_a = PREFIX + "'A')"
    both = PREFIX + "'A', 'B')"

    assert list(soql_in_statements(PREFIX, ["A", "B"], max_length=len(both))) == [both]
    assert list(soql_in_statements(PREFIX, ["A", "B"], max_length=len(both) - 1)) == [only_a, PREFIX + "'B')"]


def test_encoded_measure_limits_url_length() -> None:
    keys = [f"K&{number}" for number in range(300)]

    statements = list(soql_in_statements(PREFIX, keys, max_length=3000, measure=lambda text: len(quote_plus(text))))

    assert all(len(quote_plus(statement)) <= 3000 for statement in statements)
    assert sum(statement.count("'K&") for statement in statements) == 300


def test_value_too_long_alone() -> None:
    with pytest.raises(ValueError, match="longer than 100 characters"):
        list(soql_in_statements(PREFIX, ["x" * 200], max_length=100))


def test_no_keys_no_statement() -> None:
    assert list(soql_in_statements(PREFIX, [], max_length=1000)) == []
