"""Fixtures for operator flow tests: a sandbox (BigQuery and Salesforce over real HTTPS) whose
target object each test seeds afresh, so a test that deletes or flags records leaves no trace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_m2m.auth import clear_discovery_cache, clear_memory_cache
from airflow_provider_m2m.sandbox import Sandbox, start_sandbox
from airflow_provider_m2m.sandbox.salesforce import SalesforceEmulator
from airflow_provider_m2m.sandbox.seed import TARGET_OBJECT, SeedData

# 300 source rows give a target of 291 matched records and 50 orphans, about 15% of 341, so the
# default orphan limit of 10% trips unless a test raises it.
SANDBOX_ROWS = 300


@pytest.fixture(scope="session")
def orphan_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
    with start_sandbox(tmp_path_factory.mktemp("orphan-sandbox"), rows=SANDBOX_ROWS, snowflake=False) as running:
        yield running


@pytest.fixture
def sandbox(orphan_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The sandbox with the seeded target records restored, no locked records or scripted failures, and empty token caches.

    Its connections are set for this test only, so that another directory's sandbox, which uses
    the same connection ids, is reachable again after it.
    """
    for name, value in orphan_sandbox.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("M2M_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    clear_memory_cache()
    clear_discovery_cache()
    emulator = orphan_sandbox.salesforce
    emulator.wait_for_jobs()
    emulator.lock_records([])
    emulator.delete_all_records(TARGET_OBJECT)
    emulator.insert_records(TARGET_OBJECT, orphan_sandbox.seed_data.target_records)
    yield orphan_sandbox
    emulator.wait_for_jobs()
    emulator.lock_records([])
    emulator.cancel_collections_failure()
    clear_memory_cache()


@pytest.fixture
def emulator(sandbox: Sandbox) -> SalesforceEmulator:
    """The Salesforce emulator of the restored sandbox.

    Tests take this and `seed` rather than the sandbox, so that a failing test's printed arguments
    stay short.
    """
    return sandbox.salesforce


@pytest.fixture
def seed(orphan_sandbox: Sandbox) -> SeedData:
    return orphan_sandbox.seed_data


@pytest.fixture
def context(tmp_path: Path) -> dict[str, Any]:
    """The part of an Airflow task context the operator reads."""
    return {"run_id": "manual__2026-12-04T00:00:00+00:00", "dag": SimpleNamespace(dag_id="orphans_flow")}
