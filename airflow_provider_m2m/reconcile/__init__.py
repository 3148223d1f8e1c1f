"""Reconcile engine: decide what to write to Salesforce so that it matches the source, and account
for every record. Imports nothing from Airflow.

1. `plan_changes` diffs source rows against target records by external id and returns a `Plan`.
2. A writer upserts `Plan.iter_writes()` and reports one `RecordOutcome` per record.
3. `account` turns the plan and the outcomes into a `ReconcileResult`. Its `check_totals` raises
   when the counts do not add up.
4. Orphans, the target records the source does not have, are reported, or flagged or deleted on
   request, with a limit checked before any write (see `orphans`): `check_orphan_limit`,
   `plan_orphan_work` and `account_orphans`, whose `OrphanResult.check_totals` raises when the
   orphans do not each end in exactly one status.
5. `write_failures_csv` saves the failed records where an operator can open them.

A plan value is wire text or the `NULL` sentinel, which means "set this field to null": write it as
`#N/A` in a Bulk API 2.0 CSV upload (a blank cell leaves the field unchanged there) and as JSON null
in a REST body.
"""

from airflow_provider_m2m.reconcile.failures_csv import write_failures_csv
from airflow_provider_m2m.reconcile.mapping import NULL, FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.normalize import InvalidValue
from airflow_provider_m2m.reconcile.diff import plan_changes
from airflow_provider_m2m.reconcile.plan import DuplicateKeyError, Plan, Rejection, TargetRecordError
from airflow_provider_m2m.reconcile.orphans import (
    ORPHAN_ACTIONS,
    OrphanLimitError,
    OrphanResult,
    OrphanWork,
    account_orphans,
    check_orphan_limit,
    plan_orphan_work,
)
from airflow_provider_m2m.reconcile.result import (
    AccountingError,
    FailureThresholdError,
    ReconcileResult,
    RecordOutcome,
    account,
)

__all__ = [
    "NULL",
    "ORPHAN_ACTIONS",
    "AccountingError",
    "DuplicateKeyError",
    "FailureThresholdError",
    "FieldMapping",
    "FieldType",
    "InvalidValue",
    "Mapping",
    "OrphanLimitError",
    "OrphanResult",
    "OrphanWork",
    "Plan",
    "ReconcileResult",
    "RecordOutcome",
    "Rejection",
    "TargetRecordError",
    "account",
    "account_orphans",
    "check_orphan_limit",
    "plan_changes",
    "plan_orphan_work",
    "write_failures_csv",
]
