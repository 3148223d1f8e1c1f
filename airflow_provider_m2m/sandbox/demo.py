"""Run the nightly reconciliation against a fresh sandbox, print its summary, then rerun it.

    python -m airflow_provider_m2m.sandbox.demo [--rows 10000] [--dry-run] [--once] [--state-dir .sandbox]

Starts the sandbox, prepares an Airflow home with a SQLite metadata database, runs the example DAG
with `airflow dags test`, then prints the run summary record as Salesforce stores it. A second run,
as the next night's would be, then shows that a rerun writes nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from pathlib import Path

from airflow_provider_m2m.sandbox import Sandbox, start_sandbox
from airflow_provider_m2m.sandbox.airflow_run import airflow_environment, migrate_metadata_db, run_dags_test

DAG_ID = "bigquery_to_salesforce_reconciliation"
SUMMARY_OBJECT = "Reconciliation_Run__c"
SUMMARY_FIELDS = [
    ("Status__c", "status"),
    ("Source_Read__c", "source rows read"),
    ("Target_Read__c", "target records read"),
    ("Unchanged__c", "unchanged"),
    ("Created__c", "created"),
    ("Updated__c", "updated"),
    ("Failed__c", "failed"),
    ("Unprocessed__c", "unprocessed"),
    ("Orphans__c", "only in Salesforce (reported, not deleted)"),
]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="source rows to seed in BigQuery (default 10000)")
    parser.add_argument("--dry-run", action="store_true", help="plan and print the counts, write nothing")
    parser.add_argument("--once", action="store_true", help="run the DAG once, without the rerun")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".sandbox"),
        help="folder for the sandbox's certificates, the Airflow home and logs (default .sandbox, emptied first)",
    )
    return parser.parse_args(argv)


def _dry_run_summary(airflow_home: Path) -> dict | None:
    """Read the summary a dry run returned as XCom, since a dry run writes no summary record."""
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'write_run_summary' AND key = 'return_value' "
            "ORDER BY timestamp DESC LIMIT 1",
            (DAG_ID,),
        ).fetchone()
    return json.loads(row[0]) if row else None


def _print_summary(record: dict, *, dry_run: bool = False) -> None:
    width = max(len(label) for _, label in SUMMARY_FIELDS)
    if dry_run:
        print("\nDry run: nothing was written. The plan, with created and updated meaning planned:")
    else:
        print(f"\nReconciliation summary ({SUMMARY_OBJECT} {record.get('Run_Id__c')}):")
    for field, label in SUMMARY_FIELDS:
        value = record.get(field)
        if isinstance(value, float) or (hasattr(value, "to_integral_value") and value is not None):
            value = int(value)
        print(f"  {label:<{width}}  {value}")
    written = 0 if dry_run else sum(int(record.get(name) or 0) for name in ("Created__c", "Updated__c"))
    accounted = sum(
        int(record.get(name) or 0) for name in ("Unchanged__c", "Created__c", "Updated__c", "Failed__c", "Unprocessed__c")
    )
    print(f"  {'records written':<{width}}  {written}")
    print(f"  {'accounted for':<{width}}  {accounted} of {int(record.get('Source_Read__c') or 0)} source rows")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    state_dir = args.state_dir.resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    airflow_home = state_dir / "airflow"

    print(f"Starting the sandbox with {args.rows} source rows ...", flush=True)
    with start_sandbox(state_dir / "sandbox", rows=args.rows) as sandbox:
        env = airflow_environment(airflow_home, sandbox.connections)
        print("Preparing the Airflow metadata database (SQLite) ...", flush=True)
        migrate_metadata_db(env)
        print(f"Running `airflow dags test {DAG_ID}` ...", flush=True)
        run = run_dags_test(
            DAG_ID,
            env,
            log_file=state_dir / "dag-run.log",
            conf={"dry_run": args.dry_run},
        )
        if args.dry_run:
            summary = _dry_run_summary(airflow_home)
        else:
            records = sandbox.salesforce.records(SUMMARY_OBJECT)
            summary = records[-1] if records else None
        if run.returncode != 0 or summary is None:
            tail = "\n".join(run.output.splitlines()[-40:])
            print(f"\nThe DAG run failed (exit code {run.returncode}). Last lines of {run.log_file}:\n{tail}")
            return 1
        _print_summary(summary, dry_run=args.dry_run)
        print(f"\nFull Airflow output: {run.log_file}")
        if args.dry_run or args.once:
            return 0
        return _rerun(sandbox, env, state_dir)
    return 0


def _rerun(sandbox: Sandbox, env: dict[str, str], state_dir: Path) -> int:
    """Run the DAG again on the same sandbox and print what it wrote, which should be nothing."""
    print("\nRunning the DAG again, as the next night would; it should write nothing ...", flush=True)
    run = run_dags_test(DAG_ID, env, log_file=state_dir / "dag-rerun.log")
    records = sandbox.salesforce.records(SUMMARY_OBJECT)
    if run.returncode != 0 or len(records) < 2:
        tail = "\n".join(run.output.splitlines()[-40:])
        print(f"\nThe rerun failed (exit code {run.returncode}). Last lines of {run.log_file}:\n{tail}")
        return 1
    summary = records[-1]
    written = sum(int(summary.get(name) or 0) for name in ("Created__c", "Updated__c"))
    print(
        f"Rerun ({SUMMARY_OBJECT} {summary.get('Run_Id__c')}): {written} records written, "
        f"{int(summary.get('Unchanged__c') or 0)} unchanged. Full Airflow output: {run.log_file}"
    )
    return 0 if written == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
