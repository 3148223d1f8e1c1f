"""BigQueryToSalesforceReconcileOperator with `warehouse_staging_dataset`: BigQuery proves the
unchanged rows and the worker plans the rest. The plan, the writes and the rerun must be those of
the in-memory diff.

Tests take the emulator and the seed data rather than the sandbox, so that a failing test's printed
arguments stay short.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_m2m.operators.reconcile import BigQueryToSalesforceReconcileOperator
from airflow_provider_m2m.sandbox import seed as seed_module
from airflow_provider_m2m.sandbox.salesforce import SalesforceEmulator

from .test_reconcile_orphans import MAPPING, OBJECT, SOURCE_SQL, _targets

STAGING_DATASET = f"{seed_module.PROJECT_ID}.{seed_module.DATASET_ID}"
COUNT_KEYS = ("read_source", "read_target", "create", "update", "unchanged", "rejected")


def _operator(tmp_path: Path, **kwargs: Any) -> BigQueryToSalesforceReconcileOperator:
    return BigQueryToSalesforceReconcileOperator(
        task_id="reconcile",
        source_sql=SOURCE_SQL,
        target_object=OBJECT,
        mapping=MAPPING,
        failures_dir=str(tmp_path / "failures"),
        **kwargs,
    )


def test_warehouse_dry_run_matches_worker(emulator: SalesforceEmulator, tmp_path: Path, context, caplog) -> None:
    in_worker = _operator(tmp_path, dry_run=True).execute(context)
    with caplog.at_level(logging.INFO, logger="airflow_provider_m2m.reconcile.warehouse"):
        in_warehouse = _operator(tmp_path, dry_run=True, warehouse_staging_dataset=STAGING_DATASET).execute(context)

    for name in COUNT_KEYS:
        assert in_warehouse[name] == in_worker[name], name
    proven = [record.getMessage() for record in caplog.records if "BigQuery proved" in record.getMessage()]
    assert len(proven) == 1
    assert int(proven[0].split()[2]) > 0.8 * in_worker["unchanged"]


def test_warehouse_run_writes_then_converges(emulator: SalesforceEmulator, tmp_path: Path, context) -> None:
    expected = _operator(tmp_path, dry_run=True).execute(context)

    first = _operator(tmp_path, warehouse_staging_dataset=STAGING_DATASET).execute(context)
    after_first = _targets(emulator)
    rerun = _operator(tmp_path, warehouse_staging_dataset=STAGING_DATASET).execute(context)

    assert first["created"] == expected["create"]
    assert first["updated"] == expected["update"]
    assert first["failed"] == 0
    assert rerun["created"] == 0
    assert rerun["updated"] == 0
    assert _targets(emulator) == after_first


def test_warehouse_staging_tables_dropped(emulator: SalesforceEmulator, tmp_path: Path, context) -> None:
    from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook

    client = BigQueryM2MHook().get_client()
    before = {table.table_id for table in client.list_tables(STAGING_DATASET)}

    _operator(tmp_path, dry_run=True, warehouse_staging_dataset=STAGING_DATASET).execute(context)

    after = {table.table_id for table in client.list_tables(STAGING_DATASET)}
    assert after == before
    assert not any(name.startswith("_m2m_stage_") for name in after)


@pytest.mark.parametrize(
    ("run_id", "expected_start"),
    [
        ("manual__2026-12-04T00:00:00+00:00", "_m2m_stage_Customer_Account__c_manual__2026_12_04T00_00_00_00_00_"),
        ("scheduled__x/y z", "_m2m_stage_Customer_Account__c_scheduled__x_y_z_"),
    ],
)
def test_staging_table_name_is_valid(run_id: str, expected_start: str) -> None:
    from airflow_provider_m2m.operators.reconcile import _staging_table_name

    name = _staging_table_name(OBJECT, run_id)

    assert name.startswith(expected_start)
    assert len(name) == len(expected_start) + 8


def test_missing_staging_dataset_names_parameter(emulator: SalesforceEmulator, tmp_path: Path, context) -> None:
    dataset = f"{seed_module.PROJECT_ID}.no_such_dataset"

    with pytest.raises(ValueError, match=r"warehouse_staging_dataset='m2m-[a-z-]+\.no_such_dataset' was not found"):
        _operator(tmp_path, dry_run=True, warehouse_staging_dataset=dataset).execute(context)
