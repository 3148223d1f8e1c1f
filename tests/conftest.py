"""Session-wide leak scan: no test report may contain a secret that a sandbox or fixture server used.

Every sandbox that `start_sandbox` starts, and every fixture value that is an OAuth server or a
Salesforce emulator, becomes a source of secrets: client secrets, private key lines, and every
access token and session issued. After each setup, call and teardown, the scan searches the
report's captured sections (stdout, stderr, log) and its failure text for every secret in raw,
URL-encoded and base64 form (`tests.faults.secret_scan.secret_forms`). The terminal summary
prints the figures, and any hit makes the session fail with the ids of the tests.

A test that puts a secret in its output on purpose, for example to prove that it is masked,
carries the `leak_scan_exempt` marker. Its reports are counted but not scanned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_m2m.sandbox import runner
from airflow_provider_m2m.sandbox.oauth_server import OAuthServer
from airflow_provider_m2m.sandbox.salesforce.emulator import SalesforceEmulator
from tests.faults.secret_scan import SecretRegistry

EXEMPT_MARKER = "leak_scan_exempt"


@dataclass
class LeakScan:
    """The secrets registry and what the scan found in this session."""

    registry: SecretRegistry = field(default_factory=SecretRegistry)
    reports_scanned: int = 0
    reports_exempt: int = 0
    # Test id -> report sections that contained a secret form.
    hits: dict[str, set[str]] = field(default_factory=dict)
    exempt_tests: set[str] = field(default_factory=set)
    registered_ids: set[int] = field(default_factory=set)

    def register_sandbox(self, sandbox: runner.Sandbox) -> None:
        if self._first_time(sandbox):
            self.registry.add_source(sandbox.secrets)

    def register_fixture_value(self, value: Any) -> None:
        """Add a fixture value's secrets when it is a server that issues or checks them."""
        if isinstance(value, runner.Sandbox):
            self.register_sandbox(value)
        elif isinstance(value, OAuthServer) and self._first_time(value):
            self.registry.add_source(lambda: list(value.issued_tokens))
        elif isinstance(value, SalesforceEmulator) and self._first_time(value):
            self.registry.add_source(value.issued_tokens)
        elif isinstance(getattr(value, "emulator", None), SalesforceEmulator):
            self.register_fixture_value(value.emulator)
        elif _is_fixture_oauth_server(value) and self._first_time(value):
            self.registry.add_source(lambda: _fixture_oauth_server_secrets(value))

    def _first_time(self, value: Any) -> bool:
        if id(value) in self.registered_ids:
            return False
        self.registered_ids.add(id(value))
        return True

    def scan(self, report: pytest.TestReport) -> None:
        if EXEMPT_MARKER in report.keywords:
            self.reports_exempt += 1
            self.exempt_tests.add(report.nodeid)
            return
        self.registry.refresh()
        self.reports_scanned += 1
        texts = [*report.sections, (f"failure text {report.when}", report.longreprtext)]
        for title, text in texts:
            if self.registry.find(text):
                self.hits.setdefault(report.nodeid, set()).add(title)


def _is_fixture_oauth_server(value: Any) -> bool:
    """Tell whether a value is the fixture OAuth server of `tests/flow/auth`, by its fields."""
    return (
        isinstance(getattr(value, "client_secrets", None), dict)
        and isinstance(getattr(value, "tokens", None), dict)
        and hasattr(value, "lock")
    )


def _fixture_oauth_server_secrets(server: Any) -> list[str]:
    """Return the client secrets and access tokens that the fixture OAuth server stores right now."""
    with server.lock:
        values = [secret for secrets in server.client_secrets.values() for secret in secrets]
        values += list(server.tokens)
    return values


LEAK_SCAN = LeakScan()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{EXEMPT_MARKER}(reason): the test puts a secret in its output on purpose, so the session leak scan skips its reports",
    )
    runner.add_start_listener(LEAK_SCAN.register_sandbox)


def pytest_unconfigure(config: pytest.Config) -> None:
    runner.remove_start_listener(LEAK_SCAN.register_sandbox)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    outcome = yield
    if outcome.excinfo is None:
        LEAK_SCAN.register_fixture_value(outcome.get_result())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    LEAK_SCAN.scan(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if LEAK_SCAN.hits and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_sep("=", "session leak scan")
    terminalreporter.write_line(
        f"reports scanned: {LEAK_SCAN.reports_scanned}, exempt: {LEAK_SCAN.reports_exempt}, "
        f"secrets known: {LEAK_SCAN.registry.secret_count}, sections with a secret: "
        f"{sum(len(sections) for sections in LEAK_SCAN.hits.values())}, tests with a secret: {len(LEAK_SCAN.hits)}"
    )
    for test_id in sorted(LEAK_SCAN.exempt_tests):
        terminalreporter.write_line(f"exempt: {test_id}")
    for test_id, sections in sorted(LEAK_SCAN.hits.items()):
        terminalreporter.write_line(f"SECRET FOUND: {test_id} in {', '.join(sorted(sections))}")
    if LEAK_SCAN.hits:
        terminalreporter.write_line(
            f"leak scan failed: {len(LEAK_SCAN.hits)} tests put a secret in their output, so the session exits with code 1"
        )
