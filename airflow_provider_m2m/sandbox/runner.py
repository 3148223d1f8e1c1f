"""Start the whole sandbox, seed it, and describe it as Airflow connections.

`start_sandbox` makes a CA and server certificate, random client secrets and an RSA key. It starts
the OAuth server, BigQuery (bqemulator behind a token-checking gateway), fakesnow and the
Salesforce emulator, seeds the demo data, and builds the `AIRFLOW_CONN_*` JSON for each
connection id. Leaving the `with` block stops every server and child process, also on an error
or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_m2m.sandbox import seed as demo_data
from airflow_provider_m2m.sandbox.bigquery import BIGQUERY_SCOPES, BigQuerySandbox, load_table, start_bigquery
from airflow_provider_m2m.sandbox.http import SandboxServer
from airflow_provider_m2m.sandbox.oauth_server import OAuthServer, generate_rsa_key
from airflow_provider_m2m.sandbox.snowflake import SnowflakeSandbox, create_demo_table, start_snowflake
from airflow_provider_m2m.sandbox.tls import TLSFiles, create_tls_files

log = logging.getLogger(__name__)

OAUTH_CLIENT_ID = "m2m-sandbox-client"
OAUTH_JWT_CLIENT_ID = "m2m-sandbox-jwt-client"
OAUTH_SCOPES = ("sandbox.read", "sandbox.write")
SERVICE_ACCOUNT_EMAIL = f"airflow-m2m@{demo_data.PROJECT_ID}.iam.gserviceaccount.com"
BIGQUERY_SCOPE = "https://www.googleapis.com/auth/bigquery"
SALESFORCE_USERNAME = "integration@m2m-sandbox.example"
SALESFORCE_API_VERSION = "62.0"

OAUTH_CONN_ID = "oauth_m2m_default"
OAUTH_PRIVATE_KEY_JWT_CONN_ID = "oauth_m2m_private_key_jwt"
BIGQUERY_CONN_ID = "bigquery_m2m_default"
SNOWFLAKE_CONN_ID = "snowflake_m2m_default"
SNOWFLAKE_OAUTH_CONN_ID = "snowflake_m2m_oauth"
SNOWFLAKE_OAUTH_CLIENT_ID = "m2m-sandbox-snowflake"
SNOWFLAKE_OAUTH_SCOPE = "session:role:ANALYST"
SALESFORCE_CONN_ID = "salesforce_m2m_default"
SALESFORCE_JWT_CONN_ID = "salesforce_m2m_jwt"

# Callbacks that `start_sandbox` calls with each sandbox once it is ready. A test suite adds one to
# collect every sandbox's `secrets()` for its leak scan.
_start_listeners: list[Callable[[Sandbox], None]] = []


def add_start_listener(callback: Callable[[Sandbox], None]) -> None:
    """Register `callback` to be called with every sandbox that `start_sandbox` starts from now on."""
    if callback not in _start_listeners:
        _start_listeners.append(callback)


def remove_start_listener(callback: Callable[[Sandbox], None]) -> None:
    """Unregister a callback added with `add_start_listener`; an unknown callback is ignored."""
    if callback in _start_listeners:
        _start_listeners.remove(callback)


@dataclass
class Sandbox:
    """A running sandbox: its servers, the seed data and the Airflow connections that reach them."""

    state_dir: Path
    tls: TLSFiles
    oauth: OAuthServer
    seed_data: demo_data.SeedData | None = None
    bigquery: BigQuerySandbox | None = None
    snowflake: SnowflakeSandbox | None = None
    salesforce: Any = None  # the Salesforce emulator app; tests read and change its records in process
    salesforce_url: str | None = None
    # Left out of the repr, which pytest prints for a failing test's arguments.
    connections: dict[str, str] = field(default_factory=dict, repr=False)
    private_key_pem: str = field(default="", repr=False)
    service_account_info: dict[str, Any] = field(default_factory=dict, repr=False)
    _secrets: list[str] = field(default_factory=list, repr=False)

    @property
    def oauth_url(self) -> str:
        return self.oauth.issuer

    @property
    def bigquery_url(self) -> str:
        """BigQuery REST API root of the gateway, ending in /bigquery/v2."""
        if self.bigquery is None:
            raise RuntimeError("This sandbox was started without BigQuery.")
        return self.bigquery.api_url

    def env(self) -> dict[str, str]:
        """Return `AIRFLOW_CONN_<ID>` variables for every connection."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in self.connections.items()}

    def secrets(self) -> list[str]:
        """Return every secret the sandbox configured or has issued so far, to scan output for leaks.

        That is the client secrets, the private key (whole, and each base64 line of its PEM body,
        so an escaped or partial copy is found too) and every access token issued until now.
        """
        values = list(self._secrets)
        values += [line for line in self.private_key_pem.splitlines() if line and not line.startswith("-----")]
        values += self.oauth.issued_tokens
        if self.salesforce is not None:
            values += self.salesforce.issued_tokens()
        return values


def _connection_json(conn_type: str, *, extra: dict[str, Any], **fields: Any) -> str:
    return json.dumps({"conn_type": conn_type, **{k: v for k, v in fields.items() if v is not None}, "extra": extra})


def service_account_key_info(private_key_pem: str, token_url: str) -> dict[str, Any]:
    """Build the fields of a Google service-account key file whose token_uri is the sandbox OAuth server."""
    return {
        "type": "service_account",
        "project_id": demo_data.PROJECT_ID,
        "private_key_id": secrets.token_hex(20),
        "private_key": private_key_pem,
        "client_email": SERVICE_ACCOUNT_EMAIL,
        "client_id": str(10**20 + secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_url,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + SERVICE_ACCOUNT_EMAIL.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }


def _start_salesforce(
    sandbox: Sandbox, stack: contextlib.ExitStack, *, session_timeout_seconds: float, public_key_pem: str
) -> tuple[str, str]:
    """Start the Salesforce emulator, seed the target object; return (consumer key, consumer secret)."""
    from airflow_provider_m2m.sandbox.salesforce import ConnectedApp, SalesforceEmulator

    consumer_key = "3MVG9" + secrets.token_urlsafe(60)
    consumer_secret = secrets.token_hex(32).upper()
    app = ConnectedApp(
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        run_as_username=SALESFORCE_USERNAME,
        certificate_public_key_pem=public_key_pem,
        allowed_usernames=[SALESFORCE_USERNAME],
    )
    emulator = SalesforceEmulator(None, session_timeout_seconds=session_timeout_seconds, clients=[app])
    server = SandboxServer(emulator, sandbox.tls, name="salesforce")
    # The token response's instance_url is built from base_url, so set it before serving.
    emulator.base_url = server.url
    server.start()
    stack.callback(server.stop)
    sandbox.salesforce = emulator
    sandbox.salesforce_url = server.url
    if sandbox.seed_data is not None:
        emulator.insert_records(demo_data.TARGET_OBJECT, sandbox.seed_data.target_records)
    return consumer_key, consumer_secret


def _build_connections(
    sandbox: Sandbox,
    *,
    oauth_secret: str,
    oauth_secondary_secret: str,
    snowflake_oauth: tuple[str, str],
    salesforce_app: tuple[str, str] | None,
) -> None:
    ca_bundle = str(sandbox.tls.ca_cert)
    token_url = sandbox.oauth.token_url
    api_url = f"{sandbox.oauth.issuer}/api"
    connections: dict[str, str] = {
        OAUTH_CONN_ID: _connection_json(
            "oauth_m2m",
            login=OAUTH_CLIENT_ID,
            password=oauth_secret,
            extra={
                "token_url": token_url,
                "client_auth_method": "client_secret_basic",
                "secondary_client_secret": oauth_secondary_secret,
                "scope": " ".join(OAUTH_SCOPES),
                "base_url": api_url,
                "ca_bundle": ca_bundle,
            },
        ),
        OAUTH_PRIVATE_KEY_JWT_CONN_ID: _connection_json(
            "oauth_m2m",
            login=OAUTH_JWT_CLIENT_ID,
            extra={
                "issuer": sandbox.oauth.issuer,
                "client_auth_method": "private_key_jwt",
                "private_key": sandbox.private_key_pem,
                "signing_algorithm": "RS256",
                "scope": " ".join(OAUTH_SCOPES),
                "base_url": api_url,
                "ca_bundle": ca_bundle,
            },
        ),
    }
    if sandbox.bigquery is not None:
        connections[BIGQUERY_CONN_ID] = _connection_json(
            "bigquery_m2m",
            extra={
                "key_json": json.dumps(sandbox.service_account_info),
                "project_id": demo_data.PROJECT_ID,
                "location": "US",
                "api_url": sandbox.bigquery.api_url,
                "scopes": BIGQUERY_SCOPE,
                "ca_bundle": ca_bundle,
            },
        )
    if sandbox.snowflake is not None:
        from airflow_provider_m2m.sandbox import snowflake as snowflake_sandbox

        connections[SNOWFLAKE_CONN_ID] = _connection_json(
            "snowflake_m2m",
            login=snowflake_sandbox.USER,
            extra={
                "account": snowflake_sandbox.ACCOUNT,
                "auth": "key_pair",
                "private_key": sandbox.private_key_pem,
                "warehouse": snowflake_sandbox.WAREHOUSE,
                "database": snowflake_sandbox.DATABASE,
                "schema": snowflake_sandbox.SCHEMA,
                "host": sandbox.snowflake.host,
                "port": sandbox.snowflake.port,
                "protocol": sandbox.snowflake.protocol,
            },
        )
        snowflake_client_id, snowflake_client_secret = snowflake_oauth
        connections[SNOWFLAKE_OAUTH_CONN_ID] = _connection_json(
            "snowflake_m2m",
            login=snowflake_sandbox.USER,
            extra={
                "account": snowflake_sandbox.ACCOUNT,
                "auth": "oauth_client_credentials",
                "token_url": token_url,
                "client_id": snowflake_client_id,
                "client_secret": snowflake_client_secret,
                "scope": SNOWFLAKE_OAUTH_SCOPE,
                "warehouse": snowflake_sandbox.WAREHOUSE,
                "database": snowflake_sandbox.DATABASE,
                "schema": snowflake_sandbox.SCHEMA,
                "host": sandbox.snowflake.host,
                "port": sandbox.snowflake.port,
                "protocol": sandbox.snowflake.protocol,
                # The token comes from the sandbox OAuth server over HTTPS; fakesnow itself is plain HTTP.
                "ca_bundle": ca_bundle,
            },
        )
    if salesforce_app is not None and sandbox.salesforce_url is not None:
        consumer_key, consumer_secret = salesforce_app
        connections[SALESFORCE_CONN_ID] = _connection_json(
            "salesforce_m2m",
            host=sandbox.salesforce_url,
            login=consumer_key,
            password=consumer_secret,
            extra={"flow": "client_credentials", "api_version": SALESFORCE_API_VERSION, "ca_bundle": ca_bundle},
        )
        connections[SALESFORCE_JWT_CONN_ID] = _connection_json(
            "salesforce_m2m",
            host=sandbox.salesforce_url,
            login=consumer_key,
            extra={
                "flow": "jwt_bearer",
                "username": SALESFORCE_USERNAME,
                "private_key": sandbox.private_key_pem,
                "api_version": SALESFORCE_API_VERSION,
                "ca_bundle": ca_bundle,
            },
        )
    sandbox.connections = connections


@contextlib.contextmanager
def start_sandbox(
    state_dir: Path | str,
    *,
    rows: int = 10_000,
    seed: int = 42,
    session_timeout_seconds: float = 7200,
    oauth_token_lifetime_seconds: int = 3600,
    bigquery: bool = True,
    snowflake: bool = True,
    salesforce: bool = True,
) -> Iterator[Sandbox]:
    """Start the sandbox's servers under `state_dir`, seed them, and stop them all on exit.

    `seed` is the demo data's seed number (see `seed.generate`). `session_timeout_seconds` is the
    Salesforce session timeout and `oauth_token_lifetime_seconds` the lifetime of the OAuth server's
    access tokens. Short values exercise renewal. Turning a server off skips its start and its
    connections.
    """
    started = time.monotonic()
    state_path = Path(state_dir).resolve()
    state_path.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        tls = create_tls_files(state_path / "tls")
        private_key_pem, public_key_pem = generate_rsa_key()
        key_path = state_path / "rsa-key.pem"
        key_path.write_text(private_key_pem, encoding="ascii")
        key_path.chmod(0o600)

        oauth = OAuthServer(default_token_lifetime_seconds=oauth_token_lifetime_seconds)
        oauth_server = oauth.serve(tls)
        stack.callback(oauth_server.stop)
        sandbox = Sandbox(state_dir=state_path, tls=tls, oauth=oauth, private_key_pem=private_key_pem)
        sandbox.seed_data = demo_data.generate(seed, rows)

        oauth_secret = secrets.token_urlsafe(32)
        oauth_secondary_secret = secrets.token_urlsafe(32)
        oauth.register_client(
            OAUTH_CLIENT_ID, secret=oauth_secret, secondary_secret=oauth_secondary_secret, scopes=OAUTH_SCOPES
        )
        oauth.register_client(OAUTH_JWT_CLIENT_ID, public_key_pem=public_key_pem, scopes=OAUTH_SCOPES)
        snowflake_oauth_secret = secrets.token_urlsafe(32)
        oauth.register_client(SNOWFLAKE_OAUTH_CLIENT_ID, secret=snowflake_oauth_secret, scopes=[SNOWFLAKE_OAUTH_SCOPE])
        sandbox._secrets += [oauth_secret, oauth_secondary_secret, snowflake_oauth_secret, private_key_pem]

        if bigquery:
            sandbox.service_account_info = service_account_key_info(private_key_pem, oauth.token_url)
            service_account_path = state_path / "service-account.json"
            service_account_path.write_text(json.dumps(sandbox.service_account_info, indent=2), encoding="utf-8")
            service_account_path.chmod(0o600)
            oauth.register_client(
                SERVICE_ACCOUNT_EMAIL, public_key_pem=public_key_pem, scopes=sorted(BIGQUERY_SCOPES), service_account=True
            )
            sandbox.bigquery = start_bigquery(state_path, tls, oauth)
            stack.callback(sandbox.bigquery.stop)
            load_table(sandbox.bigquery.emulator.url + "/bigquery/v2", sandbox.seed_data.source_rows)

        if snowflake:
            sandbox.snowflake = start_snowflake(state_path)
            stack.callback(sandbox.snowflake.stop)
            create_demo_table(sandbox.snowflake, sandbox.seed_data.source_rows)

        salesforce_app = None
        if salesforce:
            salesforce_app = _start_salesforce(
                sandbox, stack, session_timeout_seconds=session_timeout_seconds, public_key_pem=public_key_pem
            )
            sandbox._secrets.append(salesforce_app[1])

        _build_connections(
            sandbox,
            oauth_secret=oauth_secret,
            oauth_secondary_secret=oauth_secondary_secret,
            snowflake_oauth=(SNOWFLAKE_OAUTH_CLIENT_ID, snowflake_oauth_secret),
            salesforce_app=salesforce_app,
        )
        log.info("Sandbox ready in %.1f s under %s", time.monotonic() - started, state_path)
        for listener in list(_start_listeners):
            listener(sandbox)
        yield sandbox
    log.info("Sandbox stopped")


def write_connection_files(sandbox: Sandbox, directory: Path) -> None:
    """Write connections.json (conn id -> connection) and airflow-connections.env (shell lines)."""
    connections = {conn_id: json.loads(value) for conn_id, value in sandbox.connections.items()}
    connections_path = directory / "connections.json"
    connections_path.write_text(json.dumps(connections, indent=2), encoding="utf-8")
    connections_path.chmod(0o600)
    env_path = directory / "airflow-connections.env"
    lines = [f"{name}={_shell_quote(value)}" for name, value in sandbox.env().items()]
    env_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env_path.chmod(0o600)


def _shell_quote(value: str) -> str:
    # Single quotes keep everything literal in sh; a single quote inside is closed, escaped and reopened.
    return "'" + value.replace("'", "'\\''") + "'"

