"""The provider as the Airflow CLI lists it, from its `apache_airflow_provider` entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_m2m.sandbox.airflow_run import airflow_environment

pytestmark = pytest.mark.e2e

CONNECTION_TYPES = {
    "oauth_m2m": "airflow_provider_m2m.hooks.oauth.OAuthM2MHook",
    "bigquery_m2m": "airflow_provider_m2m.hooks.bigquery.BigQueryM2MHook",
    "snowflake_m2m": "airflow_provider_m2m.hooks.snowflake.SnowflakeM2MHook",
    "salesforce_m2m": "airflow_provider_m2m.hooks.salesforce.SalesforceM2MHook",
}


def _airflow(tmp_path: Path, *args: str) -> str:
    env = airflow_environment(tmp_path / "airflow", connections={})
    completed = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "--output", "plain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def test_providers_list_shows_provider(tmp_path: Path) -> None:
    listed = _airflow(tmp_path, "providers", "list")
    assert "airflow-provider-m2m" in listed


def test_providers_hooks_shows_four_types(tmp_path: Path) -> None:
    rows = [line.split() for line in _airflow(tmp_path, "providers", "hooks").splitlines()]
    hooks = {row[0]: row[1] for row in rows if len(row) >= 2}
    for conn_type, hook_class in CONNECTION_TYPES.items():
        assert hooks.get(conn_type) == hook_class, f"{conn_type} missing from `airflow providers hooks`"
