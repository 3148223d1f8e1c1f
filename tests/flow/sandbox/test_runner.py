"""start_sandbox and the CLI: every server comes up, the connections reach them, and all of it stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import jwt
import psutil
import pytest
import requests

from airflow_provider_m2m.sandbox import runner, seed, start_sandbox
from airflow_provider_m2m.sandbox._process import EmulatorStartError
from tests.flow.sandbox.conftest import HTTP_TIMEOUT, https_session

ROWS = 200
CLI_START_TIMEOUT_SECONDS = 120
EXPECTED_CONN_IDS = {
    "oauth_m2m_default",
    "oauth_m2m_private_key_jwt",
    "bigquery_m2m_default",
    "snowflake_m2m_default",
    "snowflake_m2m_oauth",
    "salesforce_m2m_default",
    "salesforce_m2m_jwt",
}


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _listening_ports(sandbox: runner.Sandbox) -> list[int]:
    urls = [sandbox.oauth_url, sandbox.bigquery.url, sandbox.bigquery.emulator.url, sandbox.salesforce_url]
    return [urlsplit(url).port for url in urls] + [sandbox.snowflake.port]


def _child_popens(sandbox: runner.Sandbox) -> list[subprocess.Popen]:
    return [sandbox.bigquery.emulator.process.popen, sandbox.snowflake.process.popen]


def test_sandbox_serves_and_stops_everything(tmp_path):
    with start_sandbox(tmp_path / "state", rows=ROWS) as sandbox:
        ports = _listening_ports(sandbox)
        children = _child_popens(sandbox)
        assert all(_port_open(port) for port in ports)
        assert all(child.poll() is None for child in children)
        assert set(sandbox.connections) == EXPECTED_CONN_IDS
    for child in children:
        assert child.poll() is not None, child.args
    for port in ports:
        assert not _port_open(port), port


def test_error_in_block_stops_everything(tmp_path):
    with pytest.raises(RuntimeError, match="test failure"):
        with start_sandbox(tmp_path / "state", rows=ROWS, salesforce=False) as sandbox:
            children = _child_popens(sandbox)
            oauth_port = urlsplit(sandbox.oauth_url).port
            raise RuntimeError("test failure")

    assert all(child.poll() is not None for child in children)
    assert not _port_open(oauth_port)


def test_failed_start_stops_started_servers(tmp_path, monkeypatch):
    started = {}
    real_start_bigquery = runner.start_bigquery

    def start_bigquery_and_remember(*args, **kwargs):
        started["bigquery"] = real_start_bigquery(*args, **kwargs)
        return started["bigquery"]

    def fail_snowflake(*args, **kwargs):
        raise EmulatorStartError("fakesnow was not ready (test)")

    monkeypatch.setattr(runner, "start_bigquery", start_bigquery_and_remember)
    monkeypatch.setattr(runner, "start_snowflake", fail_snowflake)

    with pytest.raises(EmulatorStartError):
        with start_sandbox(tmp_path / "state", rows=ROWS, salesforce=False):
            pytest.fail("the sandbox must not start")

    assert started["bigquery"].emulator.process.popen.poll() is not None
    assert not _port_open(urlsplit(started["bigquery"].url).port)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with start_sandbox(tmp_path_factory.mktemp("state"), rows=ROWS, session_timeout_seconds=900) as running:
        yield running


def _connection(sandbox: runner.Sandbox, conn_id: str) -> dict:
    return json.loads(sandbox.connections[conn_id])


def test_env_has_airflow_conn_variables(sandbox):
    env = sandbox.env()

    assert set(env) == {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in EXPECTED_CONN_IDS}
    assert json.loads(env["AIRFLOW_CONN_BIGQUERY_M2M_DEFAULT"])["conn_type"] == "bigquery_m2m"


def test_oauth_connection_gets_token(sandbox):
    conn = _connection(sandbox, "oauth_m2m_default")
    with https_session(sandbox.tls) as http:
        http.verify = conn["extra"]["ca_bundle"]
        for secret in (conn["password"], conn["extra"]["secondary_client_secret"]):
            response = http.post(
                conn["extra"]["token_url"],
                data={"grant_type": "client_credentials", "scope": conn["extra"]["scope"]},
                auth=(conn["login"], secret),
                timeout=HTTP_TIMEOUT,
            )
            assert response.status_code == 200, response.text


def test_oauth_connection_base_url_accepts_token(sandbox):
    conn = _connection(sandbox, "oauth_m2m_default")
    with https_session(sandbox.tls) as http:
        token = http.post(
            conn["extra"]["token_url"],
            data={"grant_type": "client_credentials"},
            auth=(conn["login"], conn["password"]),
            timeout=HTTP_TIMEOUT,
        ).json()["access_token"]
        response = http.get(conn["extra"]["base_url"] + "/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)

    assert response.status_code == 200, response.text
    assert response.json()["client_id"] == conn["login"]


def test_snowflake_oauth_connection_gets_token(sandbox):
    extra = _connection(sandbox, "snowflake_m2m_oauth")["extra"]
    with https_session(sandbox.tls) as http:
        http.verify = extra["ca_bundle"]
        response = http.post(
            extra["token_url"],
            data={"grant_type": "client_credentials", "scope": extra["scope"]},
            auth=(extra["client_id"], extra["client_secret"]),
            timeout=HTTP_TIMEOUT,
        )

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == extra["scope"]


def test_private_key_jwt_connection_gets_token(sandbox):
    conn = _connection(sandbox, "oauth_m2m_private_key_jwt")
    with https_session(sandbox.tls) as http:
        metadata = http.get(conn["extra"]["issuer"] + "/.well-known/openid-configuration", timeout=HTTP_TIMEOUT).json()
        now = int(time.time())
        claims = {"iss": conn["login"], "sub": conn["login"], "aud": metadata["token_endpoint"], "iat": now, "exp": now + 60, "jti": os.urandom(8).hex()}
        assertion = jwt.encode(claims, conn["extra"]["private_key"], algorithm="RS256")
        response = http.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=HTTP_TIMEOUT,
        )

    assert response.status_code == 200, response.text


def test_bigquery_connection_key_reaches_gateway(sandbox):
    from google.auth.transport.requests import AuthorizedSession, Request
    from google.oauth2 import service_account

    extra = _connection(sandbox, "bigquery_m2m_default")["extra"]
    info = json.loads(extra["key_json"])
    credentials = service_account.Credentials.from_service_account_info(info, scopes=[extra["scopes"]])
    session = AuthorizedSession(credentials, auth_request=Request(https_session(sandbox.tls)))
    session.verify = extra["ca_bundle"]
    session.trust_env = False

    response = session.post(
        f"{extra['api_url']}/projects/{extra['project_id']}/queries",
        json={"query": f"SELECT COUNT(*) FROM {seed.DATASET_ID}.{seed.TABLE_ID}", "useLegacySql": False},
        timeout=HTTP_TIMEOUT,
    )

    assert info["token_uri"] == sandbox.oauth.token_url
    assert response.status_code == 200, response.text
    assert response.json()["rows"][0]["f"][0]["v"] == str(ROWS)


def test_salesforce_connections_get_sessions(sandbox):
    default = _connection(sandbox, "salesforce_m2m_default")
    jwt_conn = _connection(sandbox, "salesforce_m2m_jwt")
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": jwt_conn["login"], "sub": jwt_conn["extra"]["username"], "aud": "https://login.salesforce.com", "exp": now + 180},
        jwt_conn["extra"]["private_key"],
        algorithm="RS256",
    )
    with https_session(sandbox.tls) as http:
        client_credentials = http.post(
            default["host"] + "/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": default["login"], "client_secret": default["password"]},
            timeout=HTTP_TIMEOUT,
        )
        jwt_bearer = http.post(
            jwt_conn["host"] + "/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
            timeout=HTTP_TIMEOUT,
        )

    assert client_credentials.status_code == 200, client_credentials.text
    assert jwt_bearer.status_code == 200, jwt_bearer.text
    assert client_credentials.json()["instance_url"] == sandbox.salesforce_url


def test_salesforce_seeded_with_drifted_target(sandbox):
    records = sandbox.salesforce.records(seed.TARGET_OBJECT)

    assert len(records) == len(sandbox.seed_data.target_records)


def test_secrets_cover_issued_tokens(sandbox):
    conn = _connection(sandbox, "oauth_m2m_default")
    with https_session(sandbox.tls) as http:
        token = http.post(
            conn["extra"]["token_url"],
            data={"grant_type": "client_credentials"},
            auth=(conn["login"], conn["password"]),
            timeout=HTTP_TIMEOUT,
        ).json()["access_token"]

    values = sandbox.secrets()

    assert token in values
    assert conn["password"] in values
    assert _connection(sandbox, "salesforce_m2m_default")["password"] in values
    assert sandbox.private_key_pem in values


def test_key_files_private(sandbox):
    for name in ("rsa-key.pem", "service-account.json"):
        assert (sandbox.state_dir / name).stat().st_mode & 0o077 == 0, name


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_cli_runs_until_signal(tmp_path, stop_signal):
    state_dir = tmp_path / "cli"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_m2m.sandbox", "run", "--state-dir", str(state_dir), "--rows", str(ROWS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + CLI_START_TIMEOUT_SECONDS
        while not (state_dir / "ready").exists():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the sandbox CLI did not write its ready file"
            time.sleep(0.2)
        children = psutil.Process(process.pid).children(recursive=True)
        connections = json.loads((state_dir / "connections.json").read_text())
        env_lines = (state_dir / "airflow-connections.env").read_text().splitlines()

        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert set(connections) == EXPECTED_CONN_IDS
    assert len(env_lines) == len(EXPECTED_CONN_IDS)
    assert all(line.startswith("AIRFLOW_CONN_") and "='" in line for line in env_lines)
    assert len(children) >= 2
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    assert not (state_dir / "ready").exists()


def test_env_file_sources_in_shell(tmp_path, sandbox):
    runner.write_connection_files(sandbox, tmp_path)
    script = f"set -a; . {tmp_path / 'airflow-connections.env'}; printf %s \"$AIRFLOW_CONN_OAUTH_M2M_DEFAULT\""

    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, timeout=30).stdout

    assert json.loads(output) == _connection(sandbox, "oauth_m2m_default")
