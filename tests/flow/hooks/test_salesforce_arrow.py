"""SalesforceM2MHook.bulk_query_arrow against the sandbox's Salesforce emulator: the Arrow table of
a Bulk API 2.0 query contains the same rows as bulk_query, over several result pages."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pyarrow as pa
import pytest

from airflow_provider_m2m.hooks.salesforce import SalesforceApiError, SalesforceM2MHook
from airflow_provider_m2m.sandbox import Sandbox

# Reconciliation_Run__c has a long text area, and no other hook test reads it by a key prefix.
OBJECT = "Reconciliation_Run__c"
PREFIX = "ARROW-"
FIELDS = "Run_Id__c, Name, Status__c, Source_Read__c, Started_At__c, Failures__c"
SOQL = f"SELECT {FIELDS} FROM {OBJECT} WHERE Run_Id__c LIKE '{PREFIX}%' ORDER BY Run_Id__c"
AWKWARD_TEXTS = [
    "comma, inside",
    'double "quotes" and a lone "',
    "line one\nline two",
    "crlf\r\nbreak and a lone\rreturn",
    "Zoë Łukasz 株式会社 🚀",
    " leading and trailing spaces ",
    ",",
    '""',
    "#N/A",
    "ends with a newline\n",
]


@pytest.fixture(scope="module")
def awkward_runs(sandbox: Sandbox) -> Iterator[int]:
    """Insert run records with awkward text values and some empty fields, and yield how many."""
    records = []
    for number, text in enumerate(AWKWARD_TEXTS):
        records.append({"Run_Id__c": f"{PREFIX}{number:03d}", "Name": text[:80], "Failures__c": text, "Status__c": "Failed"})
    for number in range(len(AWKWARD_TEXTS), 25):
        records.append(
            {
                "Run_Id__c": f"{PREFIX}{number:03d}",
                "Name": f"plain run {number}",
                "Source_Read__c": number * 1000,
                "Started_At__c": "2024-02-29T23:59:59.123Z",
            }
        )
    ids = sandbox.salesforce.insert_records(OBJECT, records)
    yield len(ids)
    sandbox.salesforce.purge_records(OBJECT, ids)


def test_bulk_query_arrow_equals_bulk_query(sandbox: Sandbox, awkward_runs: int) -> None:
    hook = SalesforceM2MHook()
    pages_before = sandbox.salesforce.api_calls["bulk_query_results"]

    table = hook.bulk_query_arrow(SOQL, page_size=4)

    assert sandbox.salesforce.api_calls["bulk_query_results"] - pages_before == math.ceil(awkward_runs / 4)
    assert table.num_rows == awkward_runs
    assert table.to_pylist() == list(hook.bulk_query(SOQL, page_size=4))


def test_bulk_query_arrow_keeps_awkward_text(sandbox: Sandbox, awkward_runs: int) -> None:
    table = SalesforceM2MHook("salesforce_m2m_jwt").bulk_query_arrow(SOQL)

    assert table.column("Failures__c").to_pylist()[: len(AWKWARD_TEXTS)] == AWKWARD_TEXTS
    assert set(table.schema.types) == {pa.string()}
    # An empty field is an empty string, never null.
    assert [column.null_count for column in table.columns] == [0] * table.num_columns
    assert table.column("Failures__c").to_pylist()[-1] == ""


def test_bulk_query_arrow_no_rows_has_columns(sandbox: Sandbox, awkward_runs: int) -> None:
    soql = f"SELECT {FIELDS} FROM {OBJECT} WHERE Run_Id__c = 'NO-SUCH-RUN'"

    table = SalesforceM2MHook().bulk_query_arrow(soql)

    assert table.num_rows == 0
    assert table.column_names == [name.strip() for name in FIELDS.split(",")]
    assert table.to_pylist() == list(SalesforceM2MHook().bulk_query(soql))


def test_bulk_query_arrow_rejected_query_raises(sandbox: Sandbox) -> None:
    with pytest.raises(SalesforceApiError) as raised:
        SalesforceM2MHook().bulk_query_arrow(f"SELECT No_Such_Field__c FROM {OBJECT}")

    assert "'salesforce_m2m_default'" in str(raised.value)
