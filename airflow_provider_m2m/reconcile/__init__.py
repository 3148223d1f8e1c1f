"""Reconcile engine: decide what to write to Salesforce so that it matches the source, and account
for every record. Imports nothing from Airflow.

1. `plan_changes` diffs source rows against target records by external id and returns a `Plan`.
2. A writer upserts `Plan.iter_writes()` and reports one `RecordOutcome` per record.
3. `account` turns the plan and the outcomes into a `ReconcileResult`. Its `check_totals` raises
   when the counts do not add up.
4. `write_failures_csv` saves the failed records where an operator can open them.

A plan value is wire text or the `NULL` sentinel, which means "set this field to null": write it as
`#N/A` in a Bulk API 2.0 CSV upload (a blank cell leaves the field unchanged there) and as JSON null
in a REST body.
"""

from airflow_provider_m2m.reconcile.failures_csv import write_failures_csv
from airflow_provider_m2m.reconcile.mapping import NULL, FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.normalize import InvalidValue
from airflow_provider_m2m.reconcile.diff import plan_changes
from airflow_provider_m2m.reconcile.plan import DuplicateKeyError, Plan, Rejection, TargetRecordError
from airflow_provider_m2m.reconcile.result import (
    AccountingError,
    FailureThresholdError,
    ReconcileResult,
    RecordOutcome,
    account,
)

__all__ = [
    "NULL",
    "AccountingError",
    "DuplicateKeyError",
    "FailureThresholdError",
    "FieldMapping",
    "FieldType",
    "InvalidValue",
    "Mapping",
    "Plan",
    "ReconcileResult",
    "RecordOutcome",
    "Rejection",
    "TargetRecordError",
    "account",
    "plan_changes",
    "write_failures_csv",
]
