"""The nightly reconciliation with `orphans=delete`, run with `airflow dags test` against the sandbox.

A dry run counts the 50 seeded orphans and writes nothing, the first run deletes them, and the
rerun finds none, so it deletes nothing. The fixture keeps what each run printed and what
Salesforce stored after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_m2m.sandbox import Sandbox, start_sandbox
from airflow_provider_m2m.sandbox.airflow_run import DagRunOutput, airflow_environment, migrate_metadata_db, run_dags_test

pytestmark = pytest.mark.e2e

DAG_ID = "bigquery_to_salesforce_reconciliation"
TARGET = "Customer_Account__c"
SUMMARY = "Reconciliation_Run__c"
KEY = "External_Id__c"
# 1,000 source rows keep the run short; the 50 orphans are then about 5% of the target, under the
# DAG's 10% limit.
SOURCE_ROWS = 1_000


@dataclass
class DeleteRun:
    output: DagRunOutput
    targets: dict[str, dict[str, Any]]
    summary: dict[str, Any] | None


@dataclass
class OrphanRuns:
    sandbox: Sandbox
    initial_targets: dict[str, dict[str, Any]]
    dry_run: DeleteRun
    first: DeleteRun
    rerun: DeleteRun


def _run(sandbox: Sandbox, env: dict[str, str], log_file: Path, *, dry_run: bool = False) -> DeleteRun:
    output = run_dags_test(DAG_ID, env, log_file=log_file, conf={"orphans": "delete", "dry_run": dry_run})
    assert output.returncode == 0, f"`airflow dags test` failed; last lines:\n{output.output[-4000:]}"
    sandbox.salesforce.wait_for_jobs()
    targets = {record[KEY]: record for record in sandbox.salesforce.records(TARGET)}
    summaries = sandbox.salesforce.records(SUMMARY)
    summary = max(summaries, key=lambda record: record["CreatedDate"]) if summaries else None
    return DeleteRun(output, targets, summary)


@pytest.fixture(scope="module")
def orphan_runs(tmp_path_factory: pytest.TempPathFactory) -> OrphanRuns:
    state_dir = tmp_path_factory.mktemp("orphans")
    with start_sandbox(state_dir / "sandbox", rows=SOURCE_ROWS, snowflake=False) as sandbox:
        env = airflow_environment(state_dir / "airflow", sandbox.connections)
        migrate_metadata_db(env)
        initial = {record[KEY]: record for record in sandbox.salesforce.records(TARGET)}
        dry_run = _run(sandbox, env, state_dir / "dry-run.log", dry_run=True)
        first = _run(sandbox, env, state_dir / "first-run.log")
        rerun = _run(sandbox, env, state_dir / "rerun.log")
        yield OrphanRuns(sandbox, initial, dry_run, first, rerun)


def test_dry_run_counts_orphans_and_writes_nothing(orphan_runs: OrphanRuns) -> None:
    assert orphan_runs.dry_run.targets == orphan_runs.initial_targets
    assert orphan_runs.dry_run.summary is None
    assert "50 orphans, 50 to delete, 0 already flagged" in orphan_runs.dry_run.output.output


def test_delete_run_removes_only_orphans(orphan_runs: OrphanRuns) -> None:
    seed = orphan_runs.sandbox.seed_data
    source_keys = {row["account_id"] for row in seed.source_rows}
    assert set(orphan_runs.first.targets) == source_keys
    assert not set(seed.orphan_keys) & set(orphan_runs.first.targets)


def test_delete_run_summary_counts_orphans(orphan_runs: OrphanRuns) -> None:
    summary = orphan_runs.first.summary
    assert summary["Status__c"] == "Succeeded"
    assert summary["Orphan_Action__c"] == "delete"
    assert summary["Orphans__c"] == 50
    assert summary["Orphans_Deleted__c"] == 50
    assert summary["Orphans_Failed__c"] == 0
    assert "50 orphans (delete): 50 deleted" in orphan_runs.first.output.output


def test_delete_rerun_converges(orphan_runs: OrphanRuns) -> None:
    summary = orphan_runs.rerun.summary
    assert summary["Orphans__c"] == 0
    assert summary["Orphans_Deleted__c"] == 0
    assert summary["Created__c"] == 0
    assert summary["Updated__c"] == 0
    assert orphan_runs.rerun.targets == orphan_runs.first.targets
    assert "0 orphans (delete): none" in orphan_runs.rerun.output.output
