"""A failed upsert request is accounted record by record, and the next run writes what is left.

The reconcile operator runs against the sandbox's BigQuery and Salesforce emulators over HTTPS. The
emulator fails one sObject Collections request with HTTP 503, as an org does during an outage.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from airflow_provider_m2m.sandbox.salesforce import SalesforceEmulator
from airflow_provider_m2m.sandbox.seed import SeedData
from tests.flow.operators.test_reconcile_orphans import KEY, OBJECT, _operator, _targets


def _failures(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_failed_collections_request_then_rerun(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict[str, Any]
) -> None:
    """Upserts go 200 records per request, so a 503 on the first request fails 200 and leaves 100 unsent."""
    # Every target record's Name differs from the source, so the plan needs two requests.
    emulator.delete_all_records(OBJECT)
    emulator.insert_records(OBJECT, [{**record, "Name": "Renamed in Salesforce"} for record in seed.target_records])
    records_before = len(_targets(emulator))
    planned = _operator(tmp_path, dry_run=True, bulk_threshold=1000).execute(context)
    writes = planned["create"] + planned["update"]
    assert writes > 200, "the seed must need two Collections requests"
    emulator.fail_collections_request(after=0, status=503)

    result = _operator(tmp_path, bulk_threshold=1000).execute(context)

    assert result["failed"] == 200
    assert result["unprocessed"] == writes - 200
    assert result["created"] == result["updated"] == 0
    rows = _failures(result["failures_csv"])
    assert len(rows) == writes
    assert {row["status"] for row in rows} == {"failed", "unprocessed"}
    assert all("HTTP 503" in row["error"] for row in rows if row["status"] == "failed")

    rerun = _operator(tmp_path, bulk_threshold=1000).execute(context)

    assert rerun["created"] + rerun["updated"] == writes
    assert rerun["failed"] == rerun["unprocessed"] == 0
    assert rerun["failures_csv"] is None
    third = _operator(tmp_path, bulk_threshold=1000).execute(context)
    assert third["created"] + third["updated"] + third["failed"] == 0
    emulator.wait_for_jobs()
    records = emulator.records(OBJECT)
    assert len(records) == records_before + planned["create"]
    assert len({record[KEY] for record in records}) == len(records)


def test_bulk_upload_timeout_is_accounted(
    emulator: SalesforceEmulator, seed: SeedData, tmp_path: Path, context: dict[str, Any], monkeypatch: Any
) -> None:
    """A Bulk API 2.0 upload that outlasts the connection's 1 s read timeout fails its job's records, with counts and a CSV."""
    name = "AIRFLOW_CONN_SALESFORCE_M2M_DEFAULT"
    connection = json.loads(os.environ[name])
    monkeypatch.setenv(name, json.dumps({**connection, "extra": {**connection.get("extra", {}), "timeout": 1}}))
    emulator.delete_all_records(OBJECT)
    emulator.insert_records(OBJECT, [{**record, "Name": "Renamed in Salesforce"} for record in seed.target_records])
    planned = _operator(tmp_path, dry_run=True, bulk_threshold=10).execute(context)
    writes = planned["create"] + planned["update"]
    emulator.hold_uploads(4)
    try:
        result = _operator(tmp_path, bulk_threshold=10).execute(context)
    finally:
        emulator.release_uploads()
        emulator.wait_for_jobs()

    assert result["failed"] == writes
    rows = _failures(result["failures_csv"])
    assert len(rows) == writes
    assert all("got no response: ReadTimeout" in row["error"] for row in rows)
