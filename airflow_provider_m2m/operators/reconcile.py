"""Operator that reconciles a BigQuery query result into a Salesforce object."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.salesforce import SalesforceApiError, SalesforceM2MHook, SalesforceWriteError
from airflow_provider_m2m.reconcile import Mapping, account, write_failures_csv
from airflow_provider_m2m.reconcile.flag_fields import describe_orphan_flag
from airflow_provider_m2m.reconcile.orphans import (
    DEFAULT_MAX_ORPHAN_FRACTION,
    FlagValue,
    OrphanFlag,
    OrphanResult,
    OrphanWork,
    account_orphans,
    check_orphan_limit,
    flag_records,
    ids_to_recheck,
    parse_orphan_action,
    plan_orphan_work,
    validate_orphan_flag,
    validate_orphan_limits,
)
from airflow_provider_m2m.reconcile.plan import Plan
from airflow_provider_m2m.reconcile.result import DEFAULT_FAILURE_SAMPLES, ReconcileResult, RecordOutcome
from airflow_provider_m2m.reconcile.arrow import plan_changes_arrow
from airflow_provider_m2m.reconcile.warehouse import plan_changes_in_warehouse

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class BigQueryToSalesforceReconcileOperator(BaseOperator):
    """
    Make a Salesforce object match a BigQuery query result, writing only the difference.

    Reads the source rows with `BigQueryM2MHook` and the target records with a Salesforce Bulk API 2.0
    query, plans creates and field-level updates by external id, upserts them, and accounts for
    every planned record (created, updated, failed, unprocessed).

    Records in the target that the source does not have (orphans) are reported by default. With
    `orphans="flag"` the operator sets the `orphan_flag` fields on them by an update of their record
    Id, so an orphan deleted meanwhile is counted as gone and never re-created. With
    `orphans="delete"` it deletes them by record Id, and deleted records go to the Recycle Bin.
    Either one first checks `max_orphans` and `max_orphan_fraction` and fails before writing
    anything when there are more orphans than they allow. A flagged record that returns to the
    source keeps its flag unless the mapping writes the flag field from the source, for example
    `SELECT ..., FALSE AS missing_from_source`. See docs/reconcile.md.

    Returns the counts as XCom, with at most a sample of failures. The full list of failed records
    and Salesforce's errors is written to a CSV file under `failures_dir`.

    :param source_sql: GoogleSQL query whose columns are the mapping's source names.
    :param target_object: API name of the Salesforce object, for example `Customer_Account__c`.
    :param mapping: source columns to target fields; its key is the external id field.
    :param dry_run: plan and log the counts, write nothing.
    :param bulk_threshold: plans with more records than this go through Bulk API 2.0, smaller
        ones through sObject Collections.
    :param failures_dir: folder for the failed-records CSV; one file per DAG run.
    :param orphans: what to do with orphans: "report" (the default), "flag" or "delete". Templated.
    :param orphan_flag: with "flag", the target fields and values to set on orphans, for example
        `{"Active__c": False}`. A None value sets the field to null. Each value is checked against
        the object's describe before anything is written, and compared in the form Salesforce
        stores, so that a rerun writes nothing.
    :param max_orphans: with "flag" or "delete", the run fails before any write when there are
        more orphans than this count. None (the default) sets no count limit.
    :param max_orphan_fraction: with "flag" or "delete", the run fails before any write when the
        orphans are more than this share of the target records read (default 0.1, that is 10%).
        None sets no share limit. When both limits are set, each one applies.
    :param warehouse_staging_dataset: `project.dataset` in the source tables' location. When set,
        BigQuery proves the unchanged rows it can (`plan_changes_in_warehouse`) and this worker
        plans only the rest, for targets larger than one worker's memory. The staging tables are
        created there for the run and dropped after it. Templated.
    """

    template_fields: Sequence[str] = ("source_sql", "failures_dir", "dry_run", "orphans", "warehouse_staging_dataset")

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
        orphans: str = "report",
        orphan_flag: dict[str, FlagValue] | None = None,
        max_orphans: int | None = None,
        max_orphan_fraction: float | None = DEFAULT_MAX_ORPHAN_FRACTION,
        warehouse_staging_dataset: str | None = None,
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
        self.orphans = orphans
        self.orphan_flag = orphan_flag
        self.max_orphans = max_orphans
        self.max_orphan_fraction = max_orphan_fraction
        self.warehouse_staging_dataset = warehouse_staging_dataset
        validate_orphan_limits(max_orphans, max_orphan_fraction)
        if orphan_flag is not None:
            validate_orphan_flag(orphan_flag, mapping.key.target)
        # A template is checked once it is rendered, in execute.
        if not _is_template(orphans):
            self._orphan_action()
        if not _is_template(warehouse_staging_dataset):
            self._staging_dataset()

    def _is_dry_run(self) -> bool:
        # A templated value arrives as text unless the DAG renders templates as native objects.
        if isinstance(self.dry_run, str):
            return self.dry_run.strip().lower() in {"true", "1", "yes"}
        return bool(self.dry_run)

    def _orphan_action(self) -> str:
        """Return the validated orphan action; raise ValueError naming `orphans` or `orphan_flag`."""
        action = parse_orphan_action(self.orphans)
        if action == "flag":
            validate_orphan_flag(self.orphan_flag, self.mapping.key.target)
        return action

    def _target_soql(self) -> str:
        fields = ", ".join(self.mapping.target_fields())
        return f"SELECT {fields} FROM {self.target_object}"

    def execute(self, context: Context) -> dict[str, Any]:
        action = self._orphan_action()
        bigquery = BigQueryM2MHook(bigquery_m2m_conn_id=self.bigquery_m2m_conn_id)
        salesforce = SalesforceM2MHook(salesforce_m2m_conn_id=self.salesforce_m2m_conn_id)

        # Checked against the object's describe before the target is read, so that a flag value
        # the field cannot store stops the run before anything is written.
        flag = self._describe_orphan_flag(salesforce) if action == "flag" else None
        plan = self._plan(bigquery, salesforce, context)
        self._log_plan(plan, action)
        # Checked before anything is written, in a dry run too, so that it shows a run that would
        # stop. A delete checks every orphan before looking them up. A flag checks after the
        # lookup, which it needs anyway, and counts only the orphans not flagged yet.
        if action == "delete":
            self._check_orphan_limit(action, len(plan.orphans), plan)
        work = self._plan_orphan_work(salesforce, plan, action, flag)
        if action == "flag" and work is not None:
            self._check_orphan_limit(action, len(work.targets), plan)

        if self._is_dry_run():
            log.info("Dry run: nothing written to %s", self.target_object)
            orphan_counts = work.counts() if work else OrphanResult.reported(plan.orphans).as_dict()
            return {**plan.counts(), **orphan_counts, "dry_run": True, "failures_csv": None}

        result = account(plan, self._upsert(salesforce, plan))
        result.check_totals()
        log.info(
            "Wrote %s: %d created, %d updated, %d failed, %d unprocessed",
            self.target_object,
            result.created,
            result.updated,
            result.failed,
            result.unprocessed,
        )
        orphan_result = self._act_on_orphans(salesforce, plan, work)

        failures = result.failures + orphan_result.failures
        failures_csv = None
        if failures:
            failures_csv = self._write_failures(context, failures, plan)
            log.warning(
                "%d records were not written; each one and Salesforce's error are in %s",
                len(failures),
                failures_csv,
            )
        return _summary(result, orphan_result, failures_csv)

    def _staging_dataset(self) -> str | None:
        """Return `warehouse_staging_dataset`, or None when unset; raise ValueError naming it when invalid."""
        dataset = self.warehouse_staging_dataset
        if not dataset:
            return None
        if not isinstance(dataset, str) or not _STAGING_DATASET.fullmatch(dataset):
            raise ValueError(
                f"warehouse_staging_dataset={dataset!r} is invalid; expected project.dataset, "
                "for example my-project.m2m_staging"
            )
        return dataset

    def _check_staging_dataset_exists(self, bigquery: BigQueryM2MHook, dataset: str) -> None:
        """Raise ValueError naming `warehouse_staging_dataset` when BigQuery has no such dataset."""
        from google.api_core.exceptions import NotFound  # optional extra: airflow-provider-m2m[bigquery-client]

        try:
            bigquery.get_client().get_dataset(dataset)
        except NotFound as err:
            raise ValueError(
                f"warehouse_staging_dataset={dataset!r} was not found on connection "
                f"{self.bigquery_m2m_conn_id!r}; create it in the location of the source tables"
            ) from err

    def _plan(self, bigquery: BigQueryM2MHook, salesforce: SalesforceM2MHook, context: Context) -> Plan:
        dataset = self._staging_dataset()  # checked before the Bulk API query starts
        if dataset is not None:
            self._check_staging_dataset_exists(bigquery, dataset)
        if dataset is None:
            # Both sides are read as Arrow tables, the target first as plan_changes reads it, so the
            # rows equal to the target are proven with no Python object per value.
            target = salesforce.bulk_query_arrow(self._target_soql())
            # Only the mapped columns are converted, so an unmapped column of any type costs nothing.
            source = bigquery.query_arrow(self.source_sql, columns=self.mapping.source_columns())
            return plan_changes_arrow(source, target, self.mapping)

        target_records = salesforce.bulk_query(self._target_soql())

        staging_table = f"{dataset}.{_staging_table_name(self.target_object, context['run_id'])}"
        # plan_changes_in_warehouse logs how many rows BigQuery proved unchanged.
        return plan_changes_in_warehouse(bigquery, self.source_sql, target_records, self.mapping, staging_table).plan

    def _log_plan(self, plan: Plan, action: str) -> None:
        log.info(
            "Plan for %s: %d source rows, %d target records; %d to create, %d to update, "
            "%d unchanged, %d only in the target (orphans=%s)",
            self.target_object,
            plan.read_source,
            plan.read_target,
            len(plan.creates),
            len(plan.updates),
            plan.unchanged,
            len(plan.orphans),
            action,
        )

    def _check_orphan_limit(self, action: str, orphans: int, plan: Plan) -> None:
        check_orphan_limit(
            action,
            orphans,
            plan.read_target,
            max_orphans=self.max_orphans,
            max_orphan_fraction=self.max_orphan_fraction,
        )

    def _describe_orphan_flag(self, salesforce: SalesforceM2MHook) -> OrphanFlag:
        """Check `orphan_flag` against the object's describe (one API request) and return its per-field checks."""
        try:
            describe = salesforce.describe(self.target_object)
        except SalesforceApiError as err:
            raise SalesforceApiError(
                f"{str(err).rstrip('.')}. The describe of {self.target_object} checks the orphan_flag fields "
                f"{', '.join(self.orphan_flag or {})} before anything is written",
                status_code=err.status_code,
                error_codes=err.error_codes,
            ) from err
        return describe_orphan_flag(self.orphan_flag or {}, describe)

    def _plan_orphan_work(
        self, salesforce: SalesforceM2MHook, plan: Plan, action: str, flag: OrphanFlag | None
    ) -> OrphanWork | None:
        """Look the orphans up by key and decide which to write; None when the action is "report"."""
        if action == "report" or not plan.orphans:
            return None if action == "report" else OrphanWork(action=action, keys=[])
        key_field = self.mapping.key.target
        flag_fields = list(flag.values) if flag is not None else []
        try:
            rows = salesforce.lookup_records(
                self.target_object, key_field, plan.orphans, flag_fields, bulk_threshold=self.bulk_threshold
            )
        except SalesforceApiError as err:
            if not flag_fields:
                raise
            raise SalesforceApiError(
                f"{str(err).rstrip('.')}. The orphan lookup reads the orphan_flag fields {', '.join(flag_fields)}: "
                f"check that each one exists on {self.target_object} and that the integration user can read it",
                status_code=err.status_code,
                error_codes=err.error_codes,
            ) from err
        work = plan_orphan_work(action, plan.orphans, rows, key_field, flag)
        log.info(
            "Orphans of %s to %s: %d, already flagged %d, gone since the target was read %d, ambiguous %d",
            self.target_object,
            action,
            len(work.targets),
            len(work.already_flagged),
            len(work.gone),
            len(work.failed),
        )
        return work

    def _act_on_orphans(self, salesforce: SalesforceM2MHook, plan: Plan, work: OrphanWork | None) -> OrphanResult:
        """Flag or delete the orphans of `work` and account for every orphan of the plan."""
        if work is None:
            return OrphanResult.reported(plan.orphans)
        purged_ids: set[str] = set()
        if work.action == "flag" and work.targets:
            outcomes = self._flag_orphans(salesforce, work)
            purged_ids = self._purged_ids(salesforce, ids_to_recheck(outcomes))
        elif work.action == "delete" and work.targets:
            outcomes = self._delete_orphans(salesforce, work)
        else:
            outcomes = []
        result = account_orphans(work, outcomes, purged_ids=purged_ids)
        result.check_totals()
        log.info(
            "Orphans of %s (%s): %s",
            self.target_object,
            work.action,
            ", ".join(f"{count} {status}" for status, count in result.counts.items() if count) or "none",
        )
        return result

    def _upsert(self, salesforce: SalesforceM2MHook, plan: Plan) -> list[RecordOutcome]:
        """Upsert the plan's writes by external id and return one outcome per write.

        When a request fails, the hook stops and reports what each record came to, as for the
        orphans below. The run goes on to account for every record and write the failures CSV, so
        the failure threshold decides whether the task fails, and a rerun writes what is left.
        """
        try:
            return salesforce.upsert_records(
                self.target_object,
                self.mapping.key.target,
                list(plan.iter_writes()),
                bulk_threshold=self.bulk_threshold,
            )
        except SalesforceWriteError as err:
            log.error(
                "Upserting %s stopped at a failed request. Its records count as failed, and the ones "
                "not sent as unprocessed: %s",
                self.target_object,
                err,
            )
            return err.outcomes

    def _flag_orphans(self, salesforce: SalesforceM2MHook, work: OrphanWork) -> list[RecordOutcome]:
        """Write the flag on the work's orphans by record Id and return one outcome per orphan, keyed by the Id.

        When a request fails, the hook stops and reports what each record came to: the records of
        earlier requests keep their outcomes, those of the failed request are failed with its
        error and the rest unprocessed. The upserts of this run are already written, so the run
        goes on to account for every orphan and write the failures CSV instead of raising.
        """
        records = flag_records(work, self.orphan_flag or {})
        try:
            return salesforce.update_records(self.target_object, records, bulk_threshold=self.bulk_threshold)
        except SalesforceWriteError as err:
            log.error(
                "Flagging orphans of %s stopped at a failed request; its orphans count as failed and "
                "the ones not sent as unprocessed: %s",
                self.target_object,
                err,
            )
            return err.outcomes

    def _delete_orphans(self, salesforce: SalesforceM2MHook, work: OrphanWork) -> list[RecordOutcome]:
        """Delete the work's orphans by record Id and return one outcome per orphan, keyed by the Id.

        A failed request stops the deletes as in `_flag_orphans`, and the run goes on to account
        for every orphan.
        """
        try:
            return salesforce.delete_records(
                self.target_object, list(work.targets.values()), bulk_threshold=self.bulk_threshold
            )
        except SalesforceWriteError as err:
            log.error(
                "Deleting orphans of %s stopped at a failed request; its orphans count as failed and "
                "the ones not sent as unprocessed: %s",
                self.target_object,
                err,
            )
            return err.outcomes

    def _purged_ids(self, salesforce: SalesforceM2MHook, record_ids: list[str]) -> set[str]:
        """Return the Ids among `record_ids` that a lookup by Id no longer finds.

        Their flag update failed with ENTITY_IS_DELETED or INVALID_CROSS_REFERENCE_KEY. Both codes
        also name a flag value that refers to a deleted or missing record, so only the Ids this
        lookup no longer finds were deleted or purged after the orphan lookup. When this lookup
        fails, the orphans stay counted as failed.
        """
        if not record_ids:
            return set()
        try:
            rows = salesforce.lookup_records(self.target_object, "Id", record_ids, bulk_threshold=self.bulk_threshold)
        except SalesforceApiError as err:
            log.warning(
                "Checking whether %d orphans of %s still exist failed, so they count as failed: %s",
                len(record_ids),
                self.target_object,
                err,
            )
            return set()
        purged = set(record_ids) - {row["Id"] for row in rows}
        log.info(
            "%d of %d orphans of %s whose flag update failed with ENTITY_IS_DELETED or "
            "INVALID_CROSS_REFERENCE_KEY no longer exist",
            len(purged),
            len(record_ids),
            self.target_object,
        )
        return purged

    def _write_failures(self, context: Context, failures: list[Any], plan: Plan) -> str:
        base = Path(self.failures_dir) if self.failures_dir else Path.cwd() / "reconcile_failures"
        run_id = context["run_id"].replace(":", "_").replace("/", "_")
        path = base / context["dag"].dag_id / run_id / f"{self.task_id}-failures.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(write_failures_csv(path, failures, plan))


def _summary(result: ReconcileResult, orphan_result: OrphanResult, failures_csv: str | None) -> dict[str, Any]:
    """Return the XCom result: upsert and orphan counts, and a sample of failures of both kinds."""
    summary = result.as_dict()
    failures = [*summary["failure_samples"], *orphan_result.failure_samples()]
    omitted = summary["failure_samples_omitted"] + max(0, len(failures) - DEFAULT_FAILURE_SAMPLES)
    summary["failure_samples"] = failures[:DEFAULT_FAILURE_SAMPLES]
    summary["failure_samples_omitted"] = omitted
    return {**summary, **orphan_result.as_dict(), "dry_run": False, "failures_csv": failures_csv}


# A project id (lower-case letters, digits and hyphens), a dot, and a dataset name (letters, digits
# and underscores), as BigQuery names them.
_STAGING_DATASET = re.compile(r"[a-z][a-z0-9-]*\.[A-Za-z0-9_]+")


def _staging_table_name(target_object: str, run_id: str) -> str:
    """Return a BigQuery table name for one run's staging tables.

    Table names allow letters, digits and underscores. The random suffix keeps a retried task
    from meeting a table that an earlier, killed attempt left behind (it expires after a day).
    """
    run = re.sub(r"[^A-Za-z0-9_]", "_", run_id)[:200]
    return f"_m2m_stage_{target_object}_{run}_{uuid.uuid4().hex[:8]}"


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)
