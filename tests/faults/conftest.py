"""Fixtures of the fault suite: one sandbox, one Airflow home, and a ledger of faults and texts.

Every test injects faults into the shared sandbox and resets them afterwards. The ledger records
each fault with its outcome and the records lost, and keeps every text the suite saw (log lines,
exception messages, DAG run output, XCom, rendered templates) for the leak scan, which runs last.
The terminal summary prints the figures.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_m2m.auth import clear_discovery_cache, clear_memory_cache
from airflow_provider_m2m.sandbox import Sandbox, start_sandbox
from airflow_provider_m2m.sandbox.airflow_run import migrate_metadata_db
from tests.conftest import LEAK_SCAN
from tests.faults.support import (
    LEDGER,
    SOURCE_ROWS,
    AirflowHome,
    encrypted_key_connection,
    reset_faults,
)

# The sandbox's servers stand in for the third-party services and log what those would keep to
# themselves, so their lines are not part of the leak scan.
_SANDBOX_LOGGER = "airflow_provider_m2m.sandbox"


class _LedgerHandler(logging.Handler):
    """Keep every log line, with its traceback, that the product and its libraries emit in process."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_SANDBOX_LOGGER):
            return
        try:
            LEDGER.add_text(f"log {record.name}", self.format(record))
        except Exception:  # a broken format string must not break the test; logging reports it
            self.handleError(record)


@pytest.fixture(scope="session", autouse=True)
def capture_logs() -> Iterator[None]:
    root = logging.getLogger()
    handler = _LedgerHandler()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
    with start_sandbox(tmp_path_factory.mktemp("fault-sandbox"), rows=SOURCE_ROWS) as running:
        connections = dict(running.connections)
        jwt_connection, passphrase = encrypted_key_connection(running)
        connections.update(jwt_connection)
        LEDGER.extra_secrets.append(passphrase)
        LEAK_SCAN.registry.add([passphrase])
        LEDGER.sandbox = running
        saved = {name: os.environ.get(name) for name in running.env()}
        os.environ.update({f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in connections.items()})
        running.connections = connections
        try:
            yield running
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="session")
def airflow_home(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """One migrated Airflow home shared by every DAG run of the suite."""
    home = AirflowHome(tmp_path_factory.mktemp("fault-airflow"), sandbox)
    migrate_metadata_db(home.environment())
    LEDGER.airflow_homes.append(home)
    return home


@pytest.fixture(autouse=True)
def fresh_faults(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start each test with empty in-process token caches, its own node cache and no armed fault."""
    monkeypatch.setenv("M2M_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    clear_memory_cache()
    clear_discovery_cache()
    yield
    clear_memory_cache()
    if "sandbox" in request.fixturenames:
        reset_faults(request.getfixturevalue("sandbox"))


@pytest.fixture
def derive_connection(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a connection from a sandbox connection with some fields changed; return its id.

    Extra keys set to None are removed.
    """

    def derive(base_id: str, new_id: str, extra: dict[str, Any] | None = None, **fields: Any) -> str:
        value = json.loads(sandbox.connections[base_id])
        value.update(fields)
        merged = {**value.get("extra", {}), **(extra or {})}
        value["extra"] = {key: item for key, item in merged.items() if item is not None}
        monkeypatch.setenv(f"AIRFLOW_CONN_{new_id.upper()}", json.dumps(value))
        return new_id

    return derive


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the leak scan and the figures last: they read what every other test left in the ledger."""
    last = [item for item in items if item.get_closest_marker("after_all_faults")]
    items[:] = [item for item in items if item not in last] + last


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_all_faults: runs after every other test of the fault suite")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LEDGER.faults:
        return
    terminalreporter.write_sep("=", "faults injected and survived")
    for line in LEDGER.report_lines():
        terminalreporter.write_line(line)
