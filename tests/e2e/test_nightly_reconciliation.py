"""The nightly BigQuery -> Salesforce reconciliation, run with `airflow dags test` against the sandbox.

One sandbox serves three DAG runs in order: a dry run, the first real run and a rerun. The fixture
keeps what each run printed and what Salesforce stored after it; each test checks one property.
"""

from __future__ import annotations

import base64
import datetime as dt
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_m2m.sandbox import Sandbox, start_sandbox
from airflow_provider_m2m.sandbox.airflow_run import (
    DagRunOutput,
    airflow_environment,
    migrate_metadata_db,
    run_dags_test,
)
from airflow_provider_m2m.sandbox.seed import to_target_record

pytestmark = pytest.mark.e2e

DAG_ID = "bigquery_to_salesforce_reconciliation"
TARGET = "Customer_Account__c"
SUMMARY = "Reconciliation_Run__c"
KEY = "External_Id__c"
SOURCE_ROWS = 10_000


@dataclass
class RunRecord:
    output: DagRunOutput
    targets: dict[str, dict[str, Any]]
    summary: dict[str, Any] | None
    summary_count: int


@dataclass
class NightlyRuns:
    sandbox: Sandbox
    airflow_home: Path
    initial_targets: dict[str, dict[str, Any]]
    dry_run: RunRecord
    first: RunRecord
    rerun: RunRecord


def _targets_by_key(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {record[KEY]: record for record in sandbox.salesforce.records(TARGET)}


def _summary_of(sandbox: Sandbox, output: DagRunOutput) -> dict[str, Any]:
    summaries = sandbox.salesforce.records(SUMMARY)
    assert summaries, f"no {SUMMARY} record after the run; its output is in {output.log_file}"
    return max(summaries, key=lambda record: record["CreatedDate"])


def _run(sandbox: Sandbox, env: dict[str, str], log_file: Path, **conf: Any) -> RunRecord:
    output = run_dags_test(DAG_ID, env, log_file=log_file, conf=conf)
    assert output.returncode == 0, f"`airflow dags test` failed; last lines:\n{output.output[-4000:]}"
    sandbox.salesforce.wait_for_jobs()
    summary_count = len(sandbox.salesforce.records(SUMMARY))
    summary = _summary_of(sandbox, output) if summary_count else None
    return RunRecord(output, _targets_by_key(sandbox), summary, summary_count)


@pytest.fixture(scope="module")
def nightly_runs(tmp_path_factory: pytest.TempPathFactory) -> NightlyRuns:
    state_dir = tmp_path_factory.mktemp("nightly")
    with start_sandbox(state_dir / "sandbox", rows=SOURCE_ROWS, snowflake=False) as sandbox:
        airflow_home = state_dir / "airflow"
        env = airflow_environment(airflow_home, sandbox.connections)
        migrate_metadata_db(env)
        initial = _targets_by_key(sandbox)
        dry_run = _run(sandbox, env, state_dir / "dry-run.log", dry_run=True)
        first = _run(sandbox, env, state_dir / "first-run.log")
        rerun = _run(sandbox, env, state_dir / "rerun.log")
        yield NightlyRuns(sandbox, airflow_home, initial, dry_run, first, rerun)


def _comparable(value: Any) -> Any:
    """Reduce a value to what Salesforce keeps: numbers by value, datetimes to the millisecond in UTC."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, Decimal)):
        return Decimal(value).normalize()
    if isinstance(value, dt.datetime):
        moment = value.astimezone(dt.timezone.utc)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return value


def _differences(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        field: (expected[field], actual.get(field))
        for field in expected
        if _comparable(expected[field]) != _comparable(actual.get(field))
    }


def test_dry_run_writes_nothing(nightly_runs: NightlyRuns) -> None:
    assert nightly_runs.dry_run.targets == nightly_runs.initial_targets
    assert nightly_runs.dry_run.summary_count == 0


def test_dry_run_logs_plan(nightly_runs: NightlyRuns) -> None:
    seed = nightly_runs.sandbox.seed_data
    expected = f"{len(seed.missing_keys)} to create, {len(seed.changed_fields)} to update"
    assert expected in nightly_runs.dry_run.output.output


def test_first_run_makes_target_equal_source(nightly_runs: NightlyRuns) -> None:
    seed = nightly_runs.sandbox.seed_data
    targets = nightly_runs.first.targets
    mismatched = {}
    for row in seed.source_rows:
        expected = to_target_record(row)
        actual = targets.get(expected[KEY])
        if actual is None:
            mismatched[expected[KEY]] = "missing"
            continue
        differences = _differences(expected, actual)
        if differences:
            mismatched[expected[KEY]] = differences
    assert not mismatched, f"{len(mismatched)} keys differ, for example {list(mismatched.items())[:3]}"


def test_first_run_keeps_orphans(nightly_runs: NightlyRuns) -> None:
    orphans = set(nightly_runs.sandbox.seed_data.orphan_keys)
    assert orphans <= set(nightly_runs.first.targets)


def test_first_run_summary_matches_drift(nightly_runs: NightlyRuns) -> None:
    seed = nightly_runs.sandbox.seed_data
    summary = nightly_runs.first.summary
    assert summary["Status__c"] == "Succeeded"
    assert summary["Source_Read__c"] == SOURCE_ROWS
    assert summary["Target_Read__c"] == len(nightly_runs.initial_targets)
    assert summary["Created__c"] == len(seed.missing_keys)
    assert summary["Updated__c"] == len(seed.changed_fields)
    assert summary["Unchanged__c"] == SOURCE_ROWS - len(seed.missing_keys) - len(seed.changed_fields)
    assert summary["Failed__c"] == 0
    assert summary["Unprocessed__c"] == 0
    assert summary["Orphans__c"] == len(seed.orphan_keys)


def test_summary_records_run_times(nightly_runs: NightlyRuns) -> None:
    summary = nightly_runs.first.summary
    assert summary["Started_At__c"] is not None
    assert summary["Finished_At__c"] is not None
    assert summary["Started_At__c"] <= summary["Finished_At__c"]


def test_first_run_counts_add_up(nightly_runs: NightlyRuns) -> None:
    summary = nightly_runs.first.summary
    accounted = sum(
        summary[field] for field in ("Unchanged__c", "Created__c", "Updated__c", "Failed__c", "Unprocessed__c")
    )
    assert accounted == summary["Source_Read__c"]
    assert len(nightly_runs.first.targets) == len(nightly_runs.initial_targets) + summary["Created__c"]


def test_first_run_updates_only_drifted_records(nightly_runs: NightlyRuns) -> None:
    seed = nightly_runs.sandbox.seed_data
    before = nightly_runs.initial_targets
    after = nightly_runs.first.targets
    touched = {key for key, record in before.items() if after[key]["SystemModstamp"] != record["SystemModstamp"]}
    assert touched == set(seed.changed_fields)


def test_rerun_writes_nothing(nightly_runs: NightlyRuns) -> None:
    summary = nightly_runs.rerun.summary
    assert summary["Created__c"] == 0
    assert summary["Updated__c"] == 0
    assert summary["Unchanged__c"] == SOURCE_ROWS
    assert nightly_runs.rerun.targets == nightly_runs.first.targets


def test_each_run_has_own_summary(nightly_runs: NightlyRuns) -> None:
    run_ids = {record["Run_Id__c"] for record in nightly_runs.sandbox.salesforce.records(SUMMARY)}
    assert len(run_ids) == 2


def _secret_forms(secret: str) -> set[str]:
    """A secret as it may appear in output: raw, URL-encoded, and base64 as in a Basic header."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    forms.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    return {form for form in forms if len(form) >= 8}


def _basic_header_forms(connections: dict[str, str]) -> set[str]:
    """base64 of `client_id:secret` for every connection that has both, as client_secret_basic sends it."""
    import json

    forms = set()
    for conn_json in connections.values():
        conn = json.loads(conn_json)
        if conn.get("login") and conn.get("password"):
            pair = f"{quote_plus(conn['login'])}:{quote_plus(conn['password'])}"
            forms.add(base64.b64encode(pair.encode()).decode())
    return forms


def _xcom_values(airflow_home: Path) -> str:
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        return "\n".join(str(value) for (value,) in db.execute("SELECT value FROM xcom"))


def test_runs_leak_no_secret(nightly_runs: NightlyRuns) -> None:
    sandbox = nightly_runs.sandbox
    forms = set()
    for secret in sandbox.secrets():
        forms |= _secret_forms(secret)
    forms |= _basic_header_forms(sandbox.connections)
    assert len(sandbox.salesforce.issued_tokens()) >= 1

    texts = {
        "dry run output": nightly_runs.dry_run.output.output,
        "first run output": nightly_runs.first.output.output,
        "rerun output": nightly_runs.rerun.output.output,
        "XCom": _xcom_values(nightly_runs.airflow_home),
    }
    for log_file in (nightly_runs.airflow_home / "logs").rglob("*"):
        if log_file.is_file():
            texts[str(log_file)] = log_file.read_text(encoding="utf-8", errors="replace")

    leaks = [(where, form[:6] + "...") for where, text in texts.items() for form in forms if form in text]
    assert not leaks, f"secrets found in: {leaks}"
