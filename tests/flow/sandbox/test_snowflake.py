"""fakesnow in server mode, reached by snowflake-connector-python over the loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from airflow_provider_m2m.sandbox import seed
from airflow_provider_m2m.sandbox.snowflake import (
    DEMO_TABLE_ROWS,
    SnowflakeSandbox,
    create_demo_table,
    disable_platform_detection,
    start_snowflake,
)


@pytest.fixture(scope="module")
def snowflake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnowflakeSandbox]:
    server = start_snowflake(tmp_path_factory.mktemp("snowflake"))
    try:
        create_demo_table(server, seed.generate(3, 250).source_rows)
        yield server
    finally:
        server.stop()


def test_connector_queries_demo_table(snowflake_server):
    disable_platform_detection()
    import snowflake.connector

    with snowflake.connector.connect(**snowflake_server.connect_kwargs()) as connection:
        count, first_key = connection.cursor().execute(
            "SELECT COUNT(*), MIN(account_id) FROM customer_accounts"
        ).fetchone()

    assert count == DEMO_TABLE_ROWS
    assert first_key == "ACC-000001"


def test_demo_table_keeps_unicode(snowflake_server):
    disable_platform_detection()
    import snowflake.connector

    expected = seed.generate(3, 250).source_rows[0]
    with snowflake.connector.connect(**snowflake_server.connect_kwargs()) as connection:
        (name,) = connection.cursor().execute(
            "SELECT name FROM customer_accounts WHERE account_id = %s", (expected["account_id"],)
        ).fetchone()

    assert name == expected["name"]


def test_platform_detection_disabled_in_child(snowflake_server):
    environ = open(f"/proc/{snowflake_server.process.pid}/environ", "rb").read().split(b"\0")

    assert b"SNOWFLAKE_DISABLE_PLATFORM_DETECTION=true" in environ
    assert os.environ["SNOWFLAKE_DISABLE_PLATFORM_DETECTION"] == "true"


def test_unpacks_as_host_and_port(snowflake_server):
    host, port = snowflake_server

    assert host == "127.0.0.1"
    assert port == snowflake_server.port
