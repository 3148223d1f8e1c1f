"""Operator that reconciles a BigQuery query result into a Salesforce object."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.reconcile import Mapping, account, plan_changes, write_failures_csv

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class BigQueryToSalesforceReconcileOperator(BaseOperator):
    """
    Make a Salesforce object match a BigQuery query result, writing only the difference.

    Reads the source rows with `BigQueryM2MHook` and the target records with a Salesforce Bulk API 2.0
    query, plans creates and field-level updates by external id, upserts them, and accounts for
    every planned record (created, updated, failed, unprocessed). Records in the target that the
    source does not have are only reported.

    Returns the counts as XCom, with at most a sample of failures. The full list of failed records
    and Salesforce's errors is written to a CSV file under `failures_dir`.

    :param source_sql: GoogleSQL query whose columns are the mapping's source names.
    :param target_object: API name of the Salesforce object, for example `Customer_Account__c`.
    :param mapping: source columns to target fields; its key is the external id field.
    :param dry_run: plan and log the counts, write nothing.
    :param bulk_threshold: plans with more records than this go through Bulk API 2.0, smaller
        ones through sObject Collections.
    :param failures_dir: folder for the failed-records CSV; one file per DAG run.
    """

    template_fields: Sequence[str] = ("source_sql", "failures_dir", "dry_run")

    def __init__(
        self,
        *,
        source_sql: str,
        target_object: str,
        mapping: Mapping,
        bigquery_m2m_conn_id: str = "bigquery_m2m_default",
        salesforce_m2m_conn_id: str = "salesforce_m2m_default",
        dry_run: bool | str = False,
        bulk_threshold: int = 200,
        failures_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_sql = source_sql
        self.target_object = target_object
        self.mapping = mapping
        self.bigquery_m2m_conn_id = bigquery_m2m_conn_id
        self.salesforce_m2m_conn_id = salesforce_m2m_conn_id
        self.dry_run = dry_run
        self.bulk_threshold = bulk_threshold
        self.failures_dir = failures_dir

    def _is_dry_run(self) -> bool:
        # A templated value arrives as text unless the DAG renders templates as native objects.
        if isinstance(self.dry_run, str):
            return self.dry_run.strip().lower() in {"true", "1", "yes"}
        return bool(self.dry_run)

    def _target_soql(self) -> str:
        fields = ", ".join(self.mapping.target_fields())
        return f"SELECT {fields} FROM {self.target_object}"

    def execute(self, context: Context) -> dict[str, Any]:
        bigquery = BigQueryM2MHook(bigquery_m2m_conn_id=self.bigquery_m2m_conn_id)
        salesforce = SalesforceM2MHook(salesforce_m2m_conn_id=self.salesforce_m2m_conn_id)

        source_rows = bigquery.iter_rows(self.source_sql)
        target_records = salesforce.bulk_query(self._target_soql())
        plan = plan_changes(source_rows, target_records, self.mapping)
        log.info(
            "Plan for %s: %d source rows, %d target records; %d to create, %d to update, "
            "%d unchanged, %d only in the target",
            self.target_object,
            plan.read_source,
            plan.read_target,
            len(plan.creates),
            len(plan.updates),
            plan.unchanged,
            len(plan.orphans),
        )

        if self._is_dry_run():
            log.info("Dry run: nothing written to %s", self.target_object)
            return {**plan.counts(), "dry_run": True, "failures_csv": None}

        outcomes = salesforce.upsert_records(
            self.target_object,
            self.mapping.key.target,
            list(plan.iter_writes()),
            bulk_threshold=self.bulk_threshold,
        )
        result = account(plan, outcomes)
        result.check_totals()
        log.info(
            "Wrote %s: %d created, %d updated, %d failed, %d unprocessed",
            self.target_object,
            result.created,
            result.updated,
            result.failed,
            result.unprocessed,
        )

        failures_csv = None
        if result.failures:
            failures_csv = self._write_failures(context, result.failures, plan)
            log.warning(
                "%d records were not written; each one and Salesforce's error are in %s",
                len(result.failures),
                failures_csv,
            )
        return {**result.as_dict(), "dry_run": False, "failures_csv": failures_csv}

    def _write_failures(self, context: Context, failures: list[Any], plan: Any) -> str:
        base = Path(self.failures_dir) if self.failures_dir else Path.cwd() / "reconcile_failures"
        run_id = context["run_id"].replace(":", "_").replace("/", "_")
        path = base / context["dag"].dag_id / run_id / f"{self.task_id}-failures.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(write_failures_csv(path, failures, plan))
