"""Snowflake in the sandbox: fakesnow's server mode in a child process.

fakesnow implements the Snowflake connector's REST protocol (login, query, session) from an
in-memory DuckDB database that all sessions of the server share.

NOTE: the server speaks plain HTTP on 127.0.0.1 and accepts any user, password or key-pair JWT.
TLS in front of it and checking the key-pair JWT against a registered public key are not built yet,
so a Snowflake test here proves the connector's wiring, not its authentication.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from airflow_provider_m2m.sandbox._process import ChildProcess, free_loopback_port
from airflow_provider_m2m.sandbox.http import LOOPBACK

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
ACCOUNT = "fakesnow"
USER = "M2M_SANDBOX_USER"
DATABASE = "M2M_SANDBOX"
SCHEMA = "CRM"
WAREHOUSE = "M2M_WH"
DEMO_TABLE = "CUSTOMER_ACCOUNTS"
DEMO_TABLE_ROWS = 100

# The connector probes cloud metadata addresses at login unless this is set.
PLATFORM_DETECTION_ENV = {"SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true"}


def disable_platform_detection() -> None:
    """Set the connector's opt-out in this process's environment; call before any connector login."""
    os.environ.update(PLATFORM_DETECTION_ENV)


@dataclass
class SnowflakeSandbox:
    """The running fakesnow server."""

    process: ChildProcess
    host: str
    port: int
    protocol: str = "http"

    def __iter__(self) -> Iterator[Any]:
        """Unpack as `host, port = sandbox.snowflake`."""
        return iter((self.host, self.port))

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for `snowflake.connector.connect` that reach this server."""
        kwargs: dict[str, Any] = {
            "account": ACCOUNT,
            "user": USER,
            "password": "unused-by-fakesnow",
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "database": DATABASE,
            "schema": SCHEMA,
            "warehouse": WAREHOUSE,
            "login_timeout": 30,
            "network_timeout": 30,
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        }
        kwargs.update(overrides)
        return kwargs

    def stop(self) -> None:
        self.process.stop()


def start_snowflake(state_dir: Path, *, timeout_seconds: float = START_TIMEOUT_SECONDS) -> SnowflakeSandbox:
    """Start fakesnow on a free loopback port and wait until it responds to HTTP."""
    port = free_loopback_port()
    command = [sys.executable, "-m", "fakesnow", "-s", "--host", LOOPBACK, "-p", str(port)]
    process = ChildProcess("fakesnow", command, state_dir / "fakesnow.log", {**os.environ, **PLATFORM_DETECTION_ENV})
    url = f"http://{LOOPBACK}:{port}"

    def serving() -> bool:
        try:
            # Any HTTP status means the server is up; `/` itself is not a fakesnow route.
            requests.get(url, timeout=2)
        except requests.RequestException:
            return False
        return True

    try:
        process.wait_until_ready(serving, timeout_seconds=timeout_seconds)
    except BaseException:
        process.stop()
        raise
    log.info("fakesnow ready on %s", url)
    return SnowflakeSandbox(process=process, host=LOOPBACK, port=port)


def create_demo_table(server: SnowflakeSandbox, rows: Sequence[dict[str, Any]]) -> None:
    """Create M2M_SANDBOX.CRM.CUSTOMER_ACCOUNTS with the first `DEMO_TABLE_ROWS` source rows."""
    disable_platform_detection()
    import snowflake.connector  # imported late: the connector is a sandbox extra, not needed to build a Sandbox

    kwargs = server.connect_kwargs(database=None, schema=None)
    sample = [
        (
            row["account_id"],
            row["name"],
            row["country"],
            row["tier"],
            None if row["annual_revenue"] is None else str(row["annual_revenue"]),
            row["is_active"],
            row["signup_date"].isoformat(),
        )
        for row in rows[:DEMO_TABLE_ROWS]
    ]
    with snowflake.connector.connect(**kwargs) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {DATABASE}.{SCHEMA}")
        cursor.execute(
            f"CREATE OR REPLACE TABLE {DATABASE}.{SCHEMA}.{DEMO_TABLE} ("
            "ACCOUNT_ID VARCHAR(20) NOT NULL, NAME VARCHAR(80) NOT NULL, COUNTRY VARCHAR(2), "
            "TIER VARCHAR(10), ANNUAL_REVENUE NUMBER(16, 2), IS_ACTIVE BOOLEAN, SIGNUP_DATE DATE)"
        )
        cursor.executemany(
            f"INSERT INTO {DATABASE}.{SCHEMA}.{DEMO_TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)", sample
        )
    log.info("Created %s.%s.%s with %d rows in fakesnow", DATABASE, SCHEMA, DEMO_TABLE, len(sample))

