"""Fixtures for the browser tests: a real `airflow api-server` and a headless Debian Chromium.

The server runs in a temporary AIRFLOW_HOME with a SQLite metadata database and the simple auth
manager in all-admins mode, so the browser reaches every page without logging in. Chromium is
Debian's package, driven by Playwright over the DevTools protocol; Playwright's own browser
download is never used.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_m2m.sandbox._process import ChildProcess, free_loopback_port
from airflow_provider_m2m.sandbox.airflow_run import airflow_environment, migrate_metadata_db

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_INSTALL_HINT = "apt-get install -y chromium chromium-driver"

# The background-networking flags keep Chromium from calling Google services at start-up, calls
# that fail on a machine without internet access.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The starting window; the screenshot code makes it taller when the dialog does not fit.
VIEWPORT = {"width": 1280, "height": 1000}

# The api-server was ready after about 13 seconds on a 2-core machine; the limit leaves room for a loaded one.
SERVER_START_TIMEOUT_SECONDS = 120
HEALTH_REQUEST_TIMEOUT_SECONDS = 2
# Playwright's timeout for each page action and wait, in milliseconds.
PAGE_TIMEOUT_MS = 30_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def chromium_context() -> Iterator[BrowserContext]:
    """Start headless Chromium with a fresh profile; skip when Debian's chromium is missing, except in CI."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found; install Debian's Chromium with `{CHROMIUM_INSTALL_HINT}`"
        if _in_ci():
            pytest.fail(f"{message} (CI=true, so this test does not skip)")
        pytest.skip(message)

    # Imported here so that a missing playwright package fails these tests only, not the whole run.
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise RuntimeError(
            "the playwright package is missing; install the test extra with `pip install -e '.[test]'`"
        ) from err

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile_dir, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile_dir,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            device_scale_factor=1,
            locale="en-US",
            timezone_id="UTC",
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


def _server_is_healthy(base_url: str) -> bool:
    try:
        response = requests.get(f"{base_url}/api/v2/monitor/health", timeout=HEALTH_REQUEST_TIMEOUT_SECONDS)
    except requests.RequestException:
        return False
    return response.status_code == 200


@pytest.fixture(scope="session")
def airflow_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `airflow api-server` on a free 127.0.0.1 port with this provider installed; return its URL."""
    state_dir = tmp_path_factory.mktemp("api-server")
    env = airflow_environment(state_dir / "airflow", connections={})
    # Checked in Airflow 3.3.2: `[core] simple_auth_manager_all_admins` makes every request an admin's.
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    migrate_metadata_db(env)

    port = free_loopback_port()
    base_url = f"http://127.0.0.1:{port}"
    server = ChildProcess(
        "airflow api-server",
        [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
        state_dir / "api-server.log",
        env=env,
    )
    try:
        server.wait_until_ready(lambda: _server_is_healthy(base_url), timeout_seconds=SERVER_START_TIMEOUT_SECONDS)
        yield base_url
    finally:
        server.stop()
