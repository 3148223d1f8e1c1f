"""SnowflakeM2MHook against fakesnow's server mode: key-pair JWT and OAuth client credentials.

fakesnow accepts any credentials, so these tests check what the hook sends and that the
connector works end to end through it. The OAuth grant itself runs against the sandbox OAuth server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_m2m.hooks.snowflake import PLATFORM_DETECTION_VARIABLE, SnowflakeM2MHook
from airflow_provider_m2m.sandbox import Sandbox

TABLE = "M2M_SANDBOX.CRM.CUSTOMER_ACCOUNTS"


@pytest.fixture
def oauth_connection(sandbox: Sandbox, derive_connection: Callable[..., str]) -> str:
    oauth = json.loads(sandbox.connections["oauth_m2m_default"])
    return derive_connection(
        "snowflake_m2m_default",
        "snowflake_oauth",
        extra={
            "auth": "oauth_client_credentials",
            "private_key": None,
            "token_url": sandbox.oauth.token_url,
            "client_id": oauth["login"],
            "client_secret": oauth["password"],
            "scope": "sandbox.read",
            "ca_bundle": str(sandbox.tls.ca_cert),
        },
    )


def test_key_pair_reads_the_table(sandbox: Sandbox) -> None:
    hook = SnowflakeM2MHook()

    count = hook.get_first(f"SELECT COUNT(*) FROM {TABLE}")

    assert count[0] > 0
    assert os.environ[PLATFORM_DETECTION_VARIABLE].lower() == "true"


def test_key_pair_sends_the_key_object(sandbox: Sandbox) -> None:
    params = SnowflakeM2MHook().get_connection_parameters()

    assert isinstance(params["private_key"], rsa.RSAPrivateKey)
    assert params["authenticator"] == "SNOWFLAKE_JWT"
    assert params["host"] == sandbox.snowflake.host
    assert params["port"] == sandbox.snowflake.port
    assert "password" not in params


def test_connection_key_pair(sandbox: Sandbox) -> None:
    ok, message = SnowflakeM2MHook().test_connection()

    assert ok, message
    assert "key_pair" in message


def test_oauth_client_credentials_gets_token(sandbox: Sandbox, oauth_connection: str) -> None:
    before = sandbox.oauth.grants_issued("m2m-sandbox-client")
    hook = SnowflakeM2MHook(snowflake_m2m_conn_id=oauth_connection)

    params = hook.get_connection_parameters()
    ok, message = hook.test_connection()

    assert params["authenticator"] == "oauth"
    assert sandbox.oauth.introspect(params["token"]) is not None
    assert ok, message
    assert "granted scope: sandbox.read" in message
    assert params["token"] not in message
    # test_connection forces a new grant; the parameters used the first one.
    assert sandbox.oauth.grants_issued("m2m-sandbox-client") == before + 2


def test_sql_operator_uses_the_hook(sandbox: Sandbox) -> None:
    operator = SQLExecuteQueryOperator(
        task_id="count_accounts", conn_id="snowflake_m2m_default", sql=f"SELECT COUNT(*) FROM {TABLE}"
    )

    hook = operator.get_db_hook()
    records = hook.get_records(f"SELECT COUNT(*) FROM {TABLE}")

    assert isinstance(hook, SnowflakeM2MHook)
    assert records[0][0] > 0


def test_run_with_autocommit(sandbox: Sandbox) -> None:
    hook = SnowflakeM2MHook()

    hook.run("CREATE TABLE IF NOT EXISTS M2M_SANDBOX.CRM.HOOK_TEST (ID INT)", autocommit=True)
    hook.run("INSERT INTO M2M_SANDBOX.CRM.HOOK_TEST VALUES (1), (2)", autocommit=True)

    assert hook.get_first("SELECT COUNT(*) FROM M2M_SANDBOX.CRM.HOOK_TEST")[0] >= 2
