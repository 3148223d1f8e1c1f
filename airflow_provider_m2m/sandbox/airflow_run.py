"""Run a DAG of this project with `airflow dags test` against the sandbox.

The demo command and the end-to-end tests both use it. Each prepares an Airflow home with a SQLite
metadata database and passes the sandbox's connections to Airflow as `AIRFLOW_CONN_*` variables.
Then it runs one DAG run in a child process, as a user would from a shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO_ROOT / "dags_examples"

# `airflow db migrate` takes several seconds on SQLite; a timeout guards against a hung child.
MIGRATE_TIMEOUT_SECONDS = 300
DAG_RUN_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class DagRunOutput:
    """Output and exit code of one `airflow dags test` child process."""

    returncode: int
    output: str
    log_file: Path


def airflow_environment(airflow_home: Path, connections: Mapping[str, str]) -> dict[str, str]:
    """Build the environment of an Airflow child process with `connections` (conn id -> JSON) defined."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE_DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # The Snowflake connector probes cloud metadata addresses at login unless this is set.
            "SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for conn_id, conn_json in connections.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn_json
    return env


def _airflow_command() -> list[str]:
    return [sys.executable, "-m", "airflow"]


def migrate_metadata_db(env: Mapping[str, str]) -> None:
    """Create or upgrade the SQLite metadata database in the environment's AIRFLOW_HOME."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [*_airflow_command(), "db", "migrate"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
        raise RuntimeError(f"`airflow db migrate` failed with exit code {completed.returncode}:\n{tail}")


def run_dags_test(
    dag_id: str,
    env: Mapping[str, str],
    *,
    log_file: Path,
    conf: Mapping[str, object] | None = None,
    logical_date: datetime | None = None,
) -> DagRunOutput:
    """Run one DAG run with `airflow dags test`, writing everything it prints to `log_file`."""
    logical_date = logical_date or datetime.now(timezone.utc)
    command = [*_airflow_command(), "dags", "test", dag_id, logical_date.isoformat()]
    if conf:
        command += ["--conf", json.dumps(conf)]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        command,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=DAG_RUN_TIMEOUT_SECONDS,
        check=False,
    )
    log_file.write_text(completed.stdout, encoding="utf-8")
    return DagRunOutput(completed.returncode, completed.stdout, log_file)
