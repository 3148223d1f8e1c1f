"""
Nightly reconciliation of a BigQuery table into a Salesforce custom object.

Every night the DAG reads `crm.customer_accounts` from BigQuery and the `Customer_Account__c` records
from Salesforce, and upserts only the difference by the external id `External_Id__c`. It records the
run's counts in a `Reconciliation_Run__c` record and fails when more records failed than the
`max_failures` param allows. A rerun writes nothing that is already in place.

Records that Salesforce has and the source does not (orphans) are only reported unless the
`orphans` param says "flag" (set `Missing_From_Source__c`) or "delete" (to the Recycle Bin). Either
one stops before writing anything when orphans are more than 10% of the records read. The source
query selects `FALSE AS missing_from_source`, so a flagged record that returns to the source is
cleared by the normal update.

Connections are named by id only; the credentials live in the Airflow connections
`bigquery_m2m_default` (service account) and `salesforce_m2m_default` (client credentials flow).
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.operators.reconcile import BigQueryToSalesforceReconcileOperator
from airflow_provider_m2m.reconcile import FieldMapping, FieldType, Mapping

log = logging.getLogger(__name__)

BIGQUERY_CONN_ID = "bigquery_m2m_default"
SALESFORCE_CONN_ID = "salesforce_m2m_default"
TARGET_OBJECT = "Customer_Account__c"
SUMMARY_OBJECT = "Reconciliation_Run__c"
# Long Text Area(131072) is the summary field's size in Salesforce.
FAILURES_FIELD_MAX_LENGTH = 131_072

SOURCE_SQL = """
SELECT account_id, name, email, country, tier, annual_revenue, employees,
       is_active, signup_date, last_activity_at, notes,
       FALSE AS missing_from_source
FROM `crm.customer_accounts`
"""
ORPHAN_FLAG_FIELD = "Missing_From_Source__c"

CUSTOMER_ACCOUNT_MAPPING = Mapping(
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
        # Written from the source so that a record flagged as an orphan is cleared when it returns.
        FieldMapping("missing_from_source", ORPHAN_FLAG_FIELD, FieldType.BOOLEAN),
    ],
)


def _failures_text(result: dict[str, Any]) -> str:
    """Render the failure sample as CSV for the summary record, cut to the field's size."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["external_id", "operation", "status", "error"])
    for failure in result.get("failure_samples", []):
        writer.writerow([failure["key"], failure.get("operation", "upsert"), failure["status"], failure.get("error") or ""])
    text = buffer.getvalue()
    if len(text) <= FAILURES_FIELD_MAX_LENGTH:
        return text
    note = f"\n(cut to {FAILURES_FIELD_MAX_LENGTH} characters; the full list is in {result['failures_csv']})"
    return text[: FAILURES_FIELD_MAX_LENGTH - len(note)] + note


def _salesforce_datetime(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _failed_count(result: dict[str, Any]) -> int:
    # `failed` already counts the source rows the plan rejected before sending. Orphans that a
    # flag or delete did not reach count too.
    return sum(int(result.get(name, 0)) for name in ("failed", "unprocessed", "orphans_failed", "orphans_unprocessed"))


def _orphan_summary(result: dict[str, Any]) -> str:
    """Describe what happened to the orphans, or what a dry run would do, in one phrase."""
    action = result.get("orphan_action", "report")
    if result["dry_run"] and action != "report":
        return (
            f"{result['orphans']} orphans, {result.get('orphans_to_write', 0)} to {action}, "
            f"{result.get('orphans_already_flagged', 0)} already flagged"
        )
    counts = [
        f"{result.get(f'orphans_{status}', 0)} {status.replace('_', ' ')}"
        for status in ("reported", "flagged", "already_flagged", "deleted", "gone", "failed", "unprocessed")
        if result.get(f"orphans_{status}", 0)
    ]
    return f"{result['orphans']} orphans ({action}): {', '.join(counts) or 'none'}"


@dag(
    dag_id="bigquery_to_salesforce_reconciliation",
    description="Upsert the difference between BigQuery crm.customer_accounts and Salesforce Customer_Account__c",
    schedule=CronTriggerTimetable("30 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    params={
        "dry_run": Param(False, type="boolean", description="Plan and log the counts, write nothing."),
        "max_failures": Param(
            0,
            type="integer",
            minimum=0,
            description="The run fails when more records than this fail or stay unprocessed.",
        ),
        "orphans": Param(
            "report",
            type="string",
            enum=["report", "flag", "delete"],
            description=(
                "What to do with Salesforce records that the source no longer has: report them, "
                f"flag them ({ORPHAN_FLAG_FIELD} = true) or delete them (to the Recycle Bin)."
            ),
        ),
    },
    tags=["m2m", "bigquery", "salesforce", "reconciliation"],
)
def bigquery_to_salesforce_reconciliation() -> None:
    reconcile = BigQueryToSalesforceReconcileOperator(
        task_id="reconcile_customer_accounts",
        source_sql=SOURCE_SQL,
        target_object=TARGET_OBJECT,
        mapping=CUSTOMER_ACCOUNT_MAPPING,
        bigquery_m2m_conn_id=BIGQUERY_CONN_ID,
        salesforce_m2m_conn_id=SALESFORCE_CONN_ID,
        dry_run="{{ params.dry_run }}",
        orphans="{{ params.orphans }}",
        orphan_flag={ORPHAN_FLAG_FIELD: True},
    )

    @task(multiple_outputs=False)
    def write_run_summary(result: dict[str, Any], params: dict[str, Any], run_id: str, dag_run: Any) -> dict[str, Any]:
        """Upsert one Reconciliation_Run__c record by run id, so a retried task updates it in place.

        A dry run writes nothing: it logs the planned counts and returns them.
        """
        if result["dry_run"]:
            status = "Dry Run"
        elif _failed_count(result) > params["max_failures"]:
            status = "Failed"
        else:
            status = "Succeeded"
        fields = {
            "Name": run_id[:80],
            "Status__c": status,
            "Source_Read__c": result["read_source"],
            "Target_Read__c": result["read_target"],
            "Unchanged__c": result["unchanged"],
            # A dry run's result contains the planned counts under "create" and "update".
            "Created__c": result.get("created", result.get("create", 0)),
            "Updated__c": result.get("updated", result.get("update", 0)),
            "Failed__c": result.get("failed", result.get("rejected", 0)),
            "Unprocessed__c": result.get("unprocessed", 0),
            "Orphans__c": result["orphans"],
            "Orphan_Action__c": result.get("orphan_action", "report"),
            "Orphans_Flagged__c": result.get("orphans_flagged", 0),
            "Orphans_Deleted__c": result.get("orphans_deleted", 0),
            "Orphans_Failed__c": result.get("orphans_failed", 0) + result.get("orphans_unprocessed", 0),
            "Started_At__c": _salesforce_datetime(dag_run.start_date),
            "Finished_At__c": _salesforce_datetime(datetime.now(timezone.utc)),
            "Failures__c": _failures_text(result) if _failed_count(result) else None,
        }
        summary = {name: value for name, value in fields.items() if name != "Failures__c"}
        if result["dry_run"]:
            log.info(
                "Dry run, nothing written: %d to create, %d to update, %d unchanged, %d rejected before sending; %s",
                fields["Created__c"],
                fields["Updated__c"],
                fields["Unchanged__c"],
                fields["Failed__c"],
                _orphan_summary(result),
            )
            return summary
        log.info(
            "Run %s: %d created, %d updated, %d unchanged, %d failed, %d unprocessed; %s",
            status,
            fields["Created__c"],
            fields["Updated__c"],
            fields["Unchanged__c"],
            fields["Failed__c"],
            fields["Unprocessed__c"],
            _orphan_summary(result),
        )
        hook = SalesforceM2MHook(salesforce_m2m_conn_id=SALESFORCE_CONN_ID)
        outcome = hook.upsert_record(SUMMARY_OBJECT, "Run_Id__c", run_id, fields)
        if outcome.status == "failed":
            raise AirflowFailException(f"Writing the {SUMMARY_OBJECT} record for run {run_id} failed: {outcome.error}")
        return summary

    @task
    def enforce_failure_threshold(result: dict[str, Any], params: dict[str, Any]) -> None:
        failed = _failed_count(result)
        if failed > params["max_failures"]:
            raise AirflowFailException(
                f"{failed} records failed or stayed unprocessed, more than max_failures={params['max_failures']}"
                f" ({result.get('orphans_failed', 0) + result.get('orphans_unprocessed', 0)} of them orphans). "
                f"Each record and Salesforce's error are in {result['failures_csv']}; fix the source rows "
                "and rerun: records already written are not written again."
            )

    summary = write_run_summary(reconcile.output)
    summary >> enforce_failure_threshold(reconcile.output)


bigquery_to_salesforce_reconciliation()
