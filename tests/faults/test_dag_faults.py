"""The nightly reconciliation DAG under faults, each run one `airflow dags test` child process.

Every run either succeeds or fails with a message that states what happened. Afterwards the
Salesforce object either matches the BigQuery source, or the keys that differ are exactly the
ones the run reported in its failures CSV. A rerun writes only what is still missing, so no
record is written twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from airflow_provider_m2m.sandbox import Sandbox
from airflow_provider_m2m.sandbox.oauth_server import ScriptedResponse
from airflow_provider_m2m.sandbox.runner import SERVICE_ACCOUNT_EMAIL
from tests.faults.support import (
    ENCRYPTED_JWT_CONN_ID,
    AirflowHome,
    duplicate_keys,
    failure_keys,
    fault_run,
    keys_differing_from_source,
    reset_target,
    targets_by_key,
    written_keys,
)

pytestmark = pytest.mark.e2e

# Leaving out every second seed record makes about 500 writes, more than the 200 that go through
# sObject Collections, so the run upserts with Bulk API 2.0.
DROP_EVERY = 2
BULK_MIN_WRITES = 200
# Records one run rejects, and after how many records another run's job stops.
REJECTED_COUNT = 5
FAIL_AFTER_RECORDS = 150
# How long the emulator keeps the ingest job InProgress while the worker is killed.
HELD_JOB_SECONDS = 15
JOB_APPEAR_TIMEOUT_SECONDS = 180
# Maximum time the emulator keeps a CSV upload open. The test releases it as soon as the worker is killed.
HELD_UPLOAD_SECONDS = 240
HELD_UPLOAD_POLL_SECONDS = 0.5


def _threshold_message(count: int) -> str:
    return f"{count} records failed or stayed unprocessed, more than max_failures=0"


def test_bulk_job_failed(sandbox: Sandbox, airflow_home: AirflowHome, request: pytest.FixtureRequest) -> None:
    planned = reset_target(sandbox, drop_every=DROP_EVERY)
    assert planned > BULK_MIN_WRITES

    with fault_run(
        "Bulk API 2.0 job ends Failed", "run fails with the count; target differs by exactly the reported records", request
    ) as fault:
        sandbox.salesforce.fail_next_ingest_job("InternalServerError : Job failed, injected by the fault suite")
        run = airflow_home.run("bulk-job-failed")
        reported = failure_keys(airflow_home.last_result()["failures_csv"])
        differing = keys_differing_from_source(sandbox)
        fault.records_lost = len(differing - set(reported))
        assert run.returncode != 0
        assert _threshold_message(planned) in run.output
        assert differing == set(reported)

    assert set(reported.values()) == {"unprocessed"}
    assert run.written == set()


def test_bulk_records_failed(sandbox: Sandbox, airflow_home: AirflowHome, request: pytest.FixtureRequest) -> None:
    reset_target(sandbox, drop_every=DROP_EVERY)
    planned = keys_differing_from_source(sandbox)
    rejected = set(sorted(planned)[:REJECTED_COUNT])

    with fault_run(
        "Bulk API 2.0 job completes with some failed records",
        "run fails with the count; target differs by exactly the reported records",
        request,
    ) as fault:
        sandbox.salesforce.reject_records(rejected, "Annual revenue is out of range (injected by the fault suite)")
        run = airflow_home.run("bulk-records-failed")
        reported = failure_keys(airflow_home.last_result()["failures_csv"])
        differing = keys_differing_from_source(sandbox)
        fault.records_lost = len(differing - set(reported))
        assert run.returncode != 0
        assert _threshold_message(REJECTED_COUNT) in run.output
        assert differing == set(reported)

    assert reported == dict.fromkeys(rejected, "failed")
    assert run.written == planned - rejected


def test_unprocessed_records_then_rerun(
    sandbox: Sandbox, airflow_home: AirflowHome, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    reset_target(sandbox, drop_every=DROP_EVERY)
    planned = keys_differing_from_source(sandbox)
    token_cache = tmp_path / "token-cache"

    with fault_run(
        "Bulk API 2.0 job ends Failed after some records, the rest unprocessed",
        "run fails with the count; target differs by exactly the reported records",
        request,
    ) as fault:
        sandbox.salesforce.fail_ingest_job_after(FAIL_AFTER_RECORDS)
        first = airflow_home.run("records-unprocessed", token_cache=token_cache)
        reported = failure_keys(airflow_home.last_result()["failures_csv"])
        differing = keys_differing_from_source(sandbox)
        fault.records_lost = len(differing - set(reported))
        assert first.returncode != 0
        assert _threshold_message(len(planned) - FAIL_AFTER_RECORDS) in first.output
        assert differing == set(reported)

    assert set(reported.values()) == {"unprocessed"}
    assert first.written == planned - set(reported)

    with fault_run(
        "rerun with its cached BigQuery token revoked, 429 and 503 at the token endpoint, BigQuery "
        "job not complete on first answer, Salesforce session killed mid-run (JWT bearer, encrypted key)",
        "run succeeds, writes only the reported records, target equals source",
        request,
        injected=5,
    ) as fault:
        for token in list(sandbox.oauth.issued_tokens):
            sandbox.oauth.revoke(token)
        sandbox.oauth.script(
            ScriptedResponse.too_many_requests(1), ScriptedResponse.unavailable(), client_id=SERVICE_ACCOUNT_EMAIL
        )
        sandbox.bigquery.gateway.answer_incomplete(2)
        sandbox.salesforce.expire_sessions_after_calls(3)
        connections = {"salesforce_m2m_default": sandbox.connections[ENCRYPTED_JWT_CONN_ID]}
        rerun = airflow_home.run("rerun-under-token-faults", connections=connections, token_cache=token_cache)
        differing = keys_differing_from_source(sandbox)
        fault.records_lost = len(differing)
        assert rerun.returncode == 0, rerun.output[-3000:]
        assert differing == set()

    assert rerun.written == set(reported)
    assert rerun.written.isdisjoint(first.written)
    assert duplicate_keys(sandbox) == []


def _wait_for_held_job(sandbox: Sandbox, known_jobs: set[str], process: subprocess.Popen[str]) -> str | None:
    """Return the id of the run's ingest job once it is uploaded, or None when the run ended first."""
    deadline = time.monotonic() + JOB_APPEAR_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        with sandbox.salesforce.lock:
            held = [
                job_id
                for job_id, job in sandbox.salesforce.bulk.ingest_jobs.items()
                if job_id not in known_jobs and job.state in ("UploadComplete", "InProgress")
            ]
        if held:
            return held[0]
        time.sleep(0.2)
    return None


def test_worker_killed_during_upsert(sandbox: Sandbox, airflow_home: AirflowHome, request: pytest.FixtureRequest) -> None:
    reset_target(sandbox, drop_every=DROP_EVERY)
    planned = keys_differing_from_source(sandbox)
    before = targets_by_key(sandbox)
    known_jobs = set(sandbox.salesforce.bulk.ingest_jobs)

    with fault_run(
        "worker killed (SIGKILL) while its Bulk API upsert job is processing, then the DAG rerun",
        "rerun succeeds and writes nothing the killed run's job wrote",
        request,
    ) as fault:
        sandbox.salesforce.set_processing_delay(HELD_JOB_SECONDS)
        process = airflow_home.start("worker-killed")
        try:
            job_id = _wait_for_held_job(sandbox, known_jobs, process)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            airflow_home.record_output("worker-killed", output)
        assert job_id is not None, f"no ingest job was uploaded before the run ended; last lines:\n{output[-3000:]}"
        sandbox.salesforce.set_processing_delay(0)
        sandbox.salesforce.wait_for_jobs(timeout=HELD_JOB_SECONDS + 30)
        killed_job = sandbox.salesforce.bulk.ingest_jobs[job_id]
        after_kill = targets_by_key(sandbox)

        rerun = airflow_home.run("after-worker-killed")
        differing = keys_differing_from_source(sandbox)
        fault.records_lost = len(differing)
        assert rerun.returncode == 0, rerun.output[-3000:]
        assert differing == set()

    assert process.returncode == -signal.SIGKILL
    assert killed_job.state == "JobComplete"
    assert written_keys(before, after_kill) == planned
    assert rerun.written == set()
    assert duplicate_keys(sandbox) == []


def _wait_for_held_upload(sandbox: Sandbox, process: subprocess.Popen[str]) -> str | None:
    """Return the id of the job whose CSV upload the emulator keeps open, or None when the run ended first."""
    deadline = time.monotonic() + JOB_APPEAR_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        job_id = sandbox.salesforce.wait_for_held_upload(HELD_UPLOAD_POLL_SECONDS)
        if job_id is not None:
            return job_id
    return None


def test_worker_killed_mid_upload(sandbox: Sandbox, airflow_home: AirflowHome, request: pytest.FixtureRequest) -> None:
    """A worker killed while its CSV upload is in flight leaves an Open job, from which Salesforce writes nothing."""
    reset_target(sandbox, drop_every=DROP_EVERY)
    planned = keys_differing_from_source(sandbox)
    before = targets_by_key(sandbox)
    known_jobs = set(sandbox.salesforce.bulk.ingest_jobs)

    with fault_run(
        "worker killed (SIGKILL) while it uploads the CSV of its Bulk API upsert job, then the DAG rerun",
        "killed job stays Open and writes nothing; rerun writes every record once with a new job",
        request,
    ) as fault:
        sandbox.salesforce.hold_uploads(HELD_UPLOAD_SECONDS)
        process = airflow_home.start("worker-killed-mid-upload")
        try:
            job_id = _wait_for_held_upload(sandbox, process)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            airflow_home.record_output("worker-killed-mid-upload", output)
            sandbox.salesforce.release_uploads()
        assert job_id is not None, f"no upload reached the emulator before the run ended; last lines:\n{output[-3000:]}"
        sandbox.salesforce.wait_for_jobs(timeout=30)
        after_kill = targets_by_key(sandbox)

        rerun = airflow_home.run("after-worker-killed-mid-upload")
        differing = keys_differing_from_source(sandbox)
        fault.records_lost = len(differing)
        assert rerun.returncode == 0, rerun.output[-3000:]
        assert differing == set()

    assert process.returncode == -signal.SIGKILL
    assert sandbox.salesforce.bulk.ingest_jobs[job_id].state == "Open"
    rerun_jobs = set(sandbox.salesforce.bulk.ingest_jobs) - known_jobs - {job_id}
    assert rerun_jobs
    assert all(sandbox.salesforce.bulk.ingest_jobs[rerun_job].state == "JobComplete" for rerun_job in rerun_jobs)
    assert written_keys(before, after_kill) == set()
    assert rerun.written == planned
    assert duplicate_keys(sandbox) == []


def test_bigquery_error_in_200_body(sandbox: Sandbox, airflow_home: AirflowHome, request: pytest.FixtureRequest) -> None:
    reset_target(sandbox)
    message = "Resources exceeded during query execution (injected by the fault suite)"

    with fault_run("BigQuery query error in a 200 body", "run fails naming the job and the error; nothing written", request):
        sandbox.bigquery.gateway.fail_next_query(message, reason="resourcesExceeded")
        run = airflow_home.run("bigquery-error")
        assert run.returncode != 0
        assert message in run.output
        assert "bigquery_m2m_default" in run.output

    assert run.written == set()


def test_supervised_run_under_token_faults(
    sandbox: Sandbox, airflow_home: AirflowHome, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Tasks run under Airflow's supervisor, which writes task log files through its secret masker.

    The leak scan reads those files, as a user reads them in the UI.
    """
    reset_target(sandbox)
    token_cache = tmp_path / "token-cache"
    logs_before = set(airflow_home.task_log_files())

    with airflow_home.api_server() as port:
        with fault_run(
            "supervised run (API server, LocalExecutor) with the BigQuery job not complete on first "
            "answer and the Salesforce session killed mid-run (JWT bearer, encrypted key)",
            "run succeeds; target equals source; task logs hold no secret",
            request,
            injected=2,
        ) as fault:
            connections = {"salesforce_m2m_default": sandbox.connections[ENCRYPTED_JWT_CONN_ID]}
            sandbox.salesforce.expire_sessions_after_calls(3)
            sandbox.bigquery.gateway.answer_incomplete(1)
            run = airflow_home.run("supervised", connections=connections, token_cache=token_cache, api_port=port)
            differing = keys_differing_from_source(sandbox)
            fault.records_lost = len(differing)
            assert run.returncode == 0, run.output[-3000:]
            assert differing == set()

    new_logs = set(airflow_home.task_log_files()) - logs_before
    assert {path.parent.name for path in new_logs} >= {
        "task_id=reconcile_customer_accounts",
        "task_id=write_run_summary",
        "task_id=enforce_failure_threshold",
    }
