"""plan_changes_in_warehouse on the sandbox's demo data: the target records come from the
Salesforce emulator through a real Bulk API 2.0 query, so the staged text is the text that the CSV contains."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.reconcile.diff import plan_changes
from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.warehouse import plan_changes_in_warehouse
from airflow_provider_m2m.sandbox import Sandbox, seed, start_sandbox

ROWS = 2000
SOURCE_SQL = f"SELECT * FROM `{seed.PROJECT_ID}.{seed.DATASET_ID}.{seed.TABLE_ID}`"
MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING, length=20),
    fields=[
        FieldMapping("name", "Name", FieldType.STRING, length=80),
        FieldMapping("email", "Email__c", FieldType.EMAIL),
        FieldMapping("country", "Country__c", FieldType.PICKLIST),
        FieldMapping("tier", "Tier__c", FieldType.PICKLIST),
        FieldMapping("annual_revenue", "Annual_Revenue__c", FieldType.DECIMAL, scale=2),
        FieldMapping("employees", "Employees__c", FieldType.INTEGER),
        FieldMapping("is_active", "Is_Active__c", FieldType.BOOLEAN),
        FieldMapping("signup_date", "Signup_Date__c", FieldType.DATE),
        FieldMapping("last_activity_at", "Last_Activity__c", FieldType.DATETIME),
        FieldMapping("notes", "Notes__c", FieldType.TEXTAREA, length=255),
    ],
)
TARGET_SOQL = f"SELECT {', '.join(MAPPING.target_fields())} FROM {seed.TARGET_OBJECT}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    saved = dict(os.environ)
    os.environ["M2M_TOKEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("token-cache"))
    try:
        with start_sandbox(tmp_path_factory.mktemp("sandbox"), rows=ROWS, snowflake=False) as running:
            os.environ.update(running.env())
            yield running
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_bulk_query_plan_matches_python(sandbox: Sandbox) -> None:
    bigquery = BigQueryM2MHook()
    salesforce = SalesforceM2MHook()
    expected = plan_changes(bigquery.iter_rows(SOURCE_SQL), salesforce.bulk_query(TARGET_SOQL), MAPPING)

    result = plan_changes_in_warehouse(
        bigquery,
        SOURCE_SQL,
        salesforce.bulk_query(TARGET_SOQL),
        MAPPING,
        f"{seed.PROJECT_ID}.{seed.DATASET_ID}.stage_bulk_query",
    )

    plan = result.plan
    assert plan.creates == expected.creates
    assert plan.updates == expected.updates
    assert plan.rejected == expected.rejected
    assert plan.orphans == expected.orphans
    assert plan.counts() == expected.counts()
    # The demo data drifts 5% of the records and leaves 3% out, so most rows are unchanged. Its
    # decimals fit the field's scale, so the emulator's CSV text renders equal for nearly all.
    assert expected.unchanged > 0.8 * ROWS
    assert result.proven_unchanged >= 0.95 * expected.unchanged
