"""Helpers of the fault suite: the ledger, DAG runs in a shared Airflow home and target snapshots.

The secret forms the leak scan looks for are in `tests.faults.secret_scan`."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from cryptography.hazmat.primitives import serialization

from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox._process import free_loopback_port
from airflow_provider_m2m.sandbox.airflow_run import airflow_environment
from airflow_provider_m2m.sandbox.seed import TARGET_OBJECT, to_target_record

if TYPE_CHECKING:
    import pytest

# Large enough that a plan of half the keys goes through Bulk API 2.0 (more than 200 writes),
# small enough that a DAG run spends its time in Airflow, not in the data.
SOURCE_ROWS = 1000
DAG_ID = "bigquery_to_salesforce_reconciliation"
KEY = "External_Id__c"
ENCRYPTED_JWT_CONN_ID = "salesforce_m2m_jwt_encrypted"
# A DAG run takes 20 to 30 s on a 2-core machine; the margin covers a loaded CI machine.
DAG_RUN_TIMEOUT_SECONDS = 300
# The API server returns 200 on its health check about 5 s after start on a 2-core machine (measured once).
API_SERVER_START_TIMEOUT_SECONDS = 120


# -- the ledger -----------------------------------------------------------------------------------


@dataclass
class FaultRecord:
    """One injected fault: what was expected, which test, whether the run survived, records lost."""

    fault: str
    expected: str
    test: str
    injected: int
    survived: bool
    records_lost: int


@dataclass
class Ledger:
    faults: list[FaultRecord] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    extra_secrets: list[str] = field(default_factory=list)
    airflow_homes: list[AirflowHome] = field(default_factory=list)
    sandbox: Sandbox | None = None
    secrets_leaked: int | None = None

    def add_text(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_exception(self, where: str, error: BaseException) -> None:
        """Keep the text of an exception and of every exception in its chain."""
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.add_text(f"exception {where}", f"{type(current).__name__}: {current} {current!r}")
            current = current.__cause__ or current.__context__

    def record(
        self, fault: str, expected: str, test: str, *, injected: int = 1, survived: bool, records_lost: int = 0
    ) -> None:
        self.faults.append(FaultRecord(fault, expected, test, injected, survived, records_lost))

    def figures(self) -> dict[str, int | None]:
        return {
            "faults injected": sum(record.injected for record in self.faults),
            "runs survived": sum(1 for record in self.faults if record.survived),
            "runs": len(self.faults),
            "records lost": sum(record.records_lost for record in self.faults),
            "secrets leaked": self.secrets_leaked,
        }

    def report_lines(self) -> list[str]:
        lines = ["| fault | expected outcome | test | survived |", "| --- | --- | --- | --- |"]
        for record in self.faults:
            survived = "yes" if record.survived else "NO"
            lines.append(f"| {record.fault} | {record.expected} | `{record.test}` | {survived} |")
        figures = self.figures()
        leaked = "not scanned" if figures["secrets leaked"] is None else figures["secrets leaked"]
        lines += [
            "",
            f"faults injected: {figures['faults injected']}",
            f"runs survived: {figures['runs survived']} of {figures['runs']}",
            f"records lost: {figures['records lost']}",
            f"secrets leaked: {leaked}",
        ]
        return lines


LEDGER = Ledger()


@contextmanager
def fault_run(
    fault: str, expected: str, request: pytest.FixtureRequest, *, injected: int = 1
) -> Iterator[FaultRecord]:
    """Record one fault in the ledger; it counts as survived only if the block ends without an error.

    The block sets `records_lost` on the record it receives when the run can lose records.
    """
    record = FaultRecord(fault, expected, request.node.name, injected, survived=False, records_lost=0)
    LEDGER.faults.append(record)
    yield record
    record.survived = True


# -- connections ----------------------------------------------------------------------------------


def encrypted_key_connection(sandbox: Sandbox) -> tuple[dict[str, str], str]:
    """Build a Salesforce JWT bearer connection whose private key is encrypted; return it and the passphrase.

    The key is the sandbox's own, whose public key the connected app has, so the login works.
    """
    passphrase = "fault-suite-" + base64.b32encode(os.urandom(15)).decode().lower()
    key = serialization.load_pem_private_key(sandbox.private_key_pem.encode(), password=None)
    encrypted_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    connection = json.loads(sandbox.connections["salesforce_m2m_jwt"])
    connection["extra"]["private_key"] = encrypted_pem
    connection["extra"]["private_key_passphrase"] = passphrase
    return {ENCRYPTED_JWT_CONN_ID: json.dumps(connection)}, passphrase


# -- Salesforce target state ----------------------------------------------------------------------


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


def targets_by_key(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {record[KEY]: record for record in sandbox.salesforce.records(TARGET_OBJECT)}


def keys_differing_from_source(sandbox: Sandbox) -> set[str]:
    """Return the source keys whose target record is missing or has a field unequal to the source."""
    targets = targets_by_key(sandbox)
    differing = set()
    for row in sandbox.seed_data.source_rows:
        expected = to_target_record(row)
        actual = targets.get(expected[KEY])
        if actual is None or any(_comparable(value) != _comparable(actual.get(name)) for name, value in expected.items()):
            differing.add(expected[KEY])
    return differing


def written_keys(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    """Return the keys of records created or changed between two snapshots (by SystemModstamp)."""
    return {
        key for key, record in after.items() if key not in before or before[key]["SystemModstamp"] != record["SystemModstamp"]
    }


def duplicate_keys(sandbox: Sandbox) -> list[str]:
    keys = [record[KEY] for record in sandbox.salesforce.records(TARGET_OBJECT)]
    return sorted({key for key in keys if keys.count(key) > 1})


def reset_target(sandbox: Sandbox, *, drop_every: int = 0) -> int:
    """Put the seed's drifted target back, leaving out every `drop_every`-th record; return the writes needed.

    Leaving out records makes the next run create them, so a plan can be made large enough for
    Bulk API 2.0.
    """
    emulator = sandbox.salesforce
    emulator.wait_for_jobs()
    emulator.delete_all_records(TARGET_OBJECT)
    records = [
        record
        for position, record in enumerate(sandbox.seed_data.target_records)
        if not drop_every or position % drop_every
    ]
    emulator.insert_records(TARGET_OBJECT, records)
    return len(keys_differing_from_source(sandbox))


def reset_faults(sandbox: Sandbox) -> None:
    """Disarm every fault hook of the sandbox and let running Bulk jobs finish."""
    emulator = sandbox.salesforce
    emulator.set_processing_delay(0)
    emulator.release_uploads()
    emulator.reject_records(())
    with emulator.lock:
        emulator.bulk.faults.fail_plans.clear()
    emulator.expire_sessions_after_calls(None)  # type: ignore[arg-type]
    sandbox.oauth.clear_script()
    if sandbox.bigquery is not None:
        sandbox.bigquery.gateway.clear_faults()
    emulator.wait_for_jobs(timeout=30)


def failure_keys(failures_csv: str | None) -> dict[str, str]:
    """Return key -> status of every row of a failures CSV the operator wrote."""
    if not failures_csv:
        return {}
    with open(failures_csv, encoding="utf-8", newline="") as stream:
        return {row["key"]: row["status"] for row in csv.DictReader(stream)}


# -- DAG runs -------------------------------------------------------------------------------------


@dataclass
class DagRun:
    label: str
    returncode: int
    output: str
    before: dict[str, dict[str, Any]]
    after: dict[str, dict[str, Any]]

    @property
    def written(self) -> set[str]:
        return written_keys(self.before, self.after)


class AirflowHome:
    """An Airflow home with a migrated SQLite database; each DAG run is one `airflow dags test` child.

    By default tasks run in the `dags test` process, whose console output Airflow does not mask.
    With `api_port` (from `api_server`) the run uses `--use-executor`: tasks run under the
    supervisor, which writes masked task log files under `logs/`, as a deployment does.
    """

    def __init__(self, path: Path, sandbox: Sandbox) -> None:
        self.path = path
        self.sandbox = sandbox
        # The operator writes its failures CSV under the working directory.
        self.work_dir = path / "work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Signs the task tokens of the execution API; the API server and the executor must share it.
        self._jwt_secret = secrets.token_urlsafe(32)

    def environment(
        self, connections: dict[str, str] | None = None, token_cache: Path | None = None, api_port: int | None = None
    ) -> dict[str, str]:
        merged = {**self.sandbox.connections, **(connections or {})}
        env = airflow_environment(self.path, merged)
        env["M2M_TOKEN_CACHE_DIR"] = str(token_cache or self.path / "token-cache")
        if api_port is not None:
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{api_port}/execution/"
            env["AIRFLOW__API_AUTH__JWT_SECRET"] = self._jwt_secret
            env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        return env

    @contextmanager
    def api_server(self) -> Iterator[int]:
        """Run `airflow api-server` on a free loopback port for supervised DAG runs; yield the port."""
        port = free_loopback_port()
        log_path = self.path / "runs" / "api-server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w", encoding="utf-8") as log_stream:
            process = subprocess.Popen(
                [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
                env=self.environment(api_port=port),
                cwd=self.work_dir,
                stdout=log_stream,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self._wait_for_api_server(port, process)
                yield port
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    @staticmethod
    def _wait_for_api_server(port: int, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + API_SERVER_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"airflow api-server exited with code {process.returncode} before it was ready")
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"airflow api-server was not ready within {API_SERVER_START_TIMEOUT_SECONDS} s")

    def start(
        self,
        label: str,
        connections: dict[str, str] | None = None,
        token_cache: Path | None = None,
        api_port: int | None = None,
    ) -> subprocess.Popen[str]:
        """Start `airflow dags test` in its own process group, so a test can kill it as a whole."""
        command = [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, dt.datetime.now(dt.timezone.utc).isoformat()]
        if api_port is not None:
            command.append("--use-executor")
        log_path = self.path / "runs" / f"{label}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            command,
            env=self.environment(connections, token_cache, api_port),
            cwd=self.work_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(
        self,
        label: str,
        connections: dict[str, str] | None = None,
        token_cache: Path | None = None,
        api_port: int | None = None,
    ) -> DagRun:
        before = targets_by_key(self.sandbox)
        process = self.start(label, connections, token_cache, api_port)
        try:
            output, _ = process.communicate(timeout=DAG_RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        self.record_output(label, output)
        self.sandbox.salesforce.wait_for_jobs(timeout=30)
        return DagRun(label, process.returncode, output, before, targets_by_key(self.sandbox))

    def record_output(self, label: str, output: str) -> None:
        (self.path / "runs" / f"{label}.log").write_text(output, encoding="utf-8")
        LEDGER.add_text(f"DAG run {label} output", output)

    def last_result(self) -> dict[str, Any]:
        """Return the XCom of the reconcile task of the latest DAG run."""
        with sqlite3.connect(self.path / "airflow.db") as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE task_id = 'reconcile_customer_accounts' AND key = 'return_value' "
                "ORDER BY timestamp DESC LIMIT 1"
            ).fetchone()
        assert row is not None, "the reconcile task pushed no XCom"
        value = json.loads(row[0]) if isinstance(row[0], (str, bytes)) else row[0]
        return json.loads(value) if isinstance(value, str) else value

    def task_log_files(self) -> list[Path]:
        return sorted(path for path in (self.path / "logs").rglob("*.log") if path.is_file())

    def stored_texts(self) -> list[tuple[str, str]]:
        """Return every XCom value, rendered template, task log file and failures CSV of this home, for the leak scan."""
        texts = []
        with sqlite3.connect(self.path / "airflow.db") as db:
            for task_id, key, value in db.execute("SELECT task_id, key, value FROM xcom"):
                texts.append((f"XCom {task_id}.{key}", str(value)))
            for task_id, rendered in db.execute("SELECT task_id, rendered_fields FROM rendered_task_instance_fields"):
                texts.append((f"rendered template {task_id}", str(rendered)))
        for log_file in (self.path / "logs").rglob("*"):
            if log_file.is_file():
                texts.append((f"task log {log_file.name}", log_file.read_text(encoding="utf-8", errors="replace")))
        for csv_file in self.work_dir.rglob("*.csv"):
            texts.append((f"failures CSV {csv_file.name}", csv_file.read_text(encoding="utf-8", errors="replace")))
        return texts
