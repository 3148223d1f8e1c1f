"""BigQuery in the sandbox: bqemulator in a child process behind a TLS gateway that checks tokens.

bqemulator serves BigQuery's REST API (`/bigquery/v2/...`, `/upload/bigquery/v2/...`) over plain
HTTP and accepts any caller. The gateway serves the same paths over HTTPS and forwards a request
only when it carries a Bearer access token that the sandbox's OAuth server issued and that has not
expired or been revoked, as Google's front end does. Clients therefore authenticate the real way:
google-auth signs a service-account assertion, trades it for a token at the OAuth server, and
sends that token here.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from airflow_provider_m2m.sandbox import seed
from airflow_provider_m2m.sandbox._process import ChildProcess, free_loopback_port
from airflow_provider_m2m.sandbox.http import LOOPBACK, Request, Response, SandboxServer
from airflow_provider_m2m.sandbox.oauth_server import OAuthServer
from airflow_provider_m2m.sandbox.tls import TLSFiles

log = logging.getLogger(__name__)

# Any of these lets a token call the BigQuery API, as on Google's side.
BIGQUERY_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/bigquery",
        "https://www.googleapis.com/auth/bigquery.readonly",
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/cloud-platform.read-only",
    }
)
# bqemulator 1.1 returns 200 on /readyz about 1 s after start on an idle 2-core machine (measured once).
# The margin covers a loaded CI machine.
START_TIMEOUT_SECONDS = 60.0
INSERT_ALL_CHUNK_ROWS = 500
REQUEST_TIMEOUT_SECONDS = (5.0, 120.0)  # (connect, read)

# RFC 9110 section 7.6.1: hop-by-hop headers apply to one connection and are not forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip
_MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)
_INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)


def _google_error(status: int, message: str, reason: str, status_name: str, headers: Mapping[str, str] | None = None) -> Response:
    # The JSON error shape Google APIs return: {"error": {"code", "message", "errors", "status"}}.
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status_name,
        }
    }
    return Response.json(status, body, headers)


class BigQueryEmulator:
    """bqemulator in a child process, serving REST on a free loopback port."""

    def __init__(self, state_dir: Path, *, project_id: str = seed.PROJECT_ID, timeout_seconds: float = START_TIMEOUT_SECONDS):
        self.port = free_loopback_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        command = [
            sys.executable, "-m", "airflow_provider_m2m.sandbox._bqemulator_main", "start",
            "--rest-host", LOOPBACK, "--rest-port", str(self.port),
            "--grpc-host", LOOPBACK, "--grpc-port", "0",
            "--project", project_id, "--log-format", "json",
        ]  # fmt: skip
        env = {
            **os.environ,
            # bqemulator also tries to download DuckDB's avro extension at start. Offline that fails without
            # stopping the start, so skipping it only saves the attempt.
            "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
        }
        self.process = ChildProcess("bqemulator", command, state_dir / "bqemulator.log", env)
        try:
            self.process.wait_until_ready(self._ready, timeout_seconds=timeout_seconds)
        except BaseException:
            self.process.stop()
            raise
        log.info("bqemulator ready on %s", self.url)

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.process.stop()


class BigQueryGateway:
    """An App that checks the Bearer token of each request and forwards it to bqemulator."""

    def __init__(self, upstream_url: str, oauth: OAuthServer) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.oauth = oauth
        self._local = threading.local()
        self.rejected = 0  # count of requests rejected with 401 or 403, for tests

    def _session(self) -> requests.Session:
        # requests.Session is not documented as thread-safe, and the server runs one thread per connection.
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def handle(self, request: Request) -> Response:
        rejection = self._check_token(request)
        if rejection is not None:
            self.rejected += 1
            return rejection
        return self._forward(request)

    def _check_token(self, request: Request) -> Response | None:
        authorization = request.headers.get("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _google_error(
                401, _MISSING_CREDENTIALS, "required", "UNAUTHENTICATED",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )  # fmt: skip
        claims = self.oauth.introspect(token.strip())
        if claims is None:
            # RFC 6750 section 3.1: an expired, revoked or unknown token is invalid_token.
            return _google_error(
                401, _INVALID_CREDENTIALS, "authError", "UNAUTHENTICATED",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
            )  # fmt: skip
        if not BIGQUERY_SCOPES.intersection(str(claims.get("scope", "")).split()):
            return _google_error(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions",
                "PERMISSION_DENIED",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="insufficient_scope"'},
            )  # fmt: skip
        return None

    def _forward(self, request: Request) -> Response:
        url = self.upstream_url + request.path
        if request.query:
            url += "?" + urlencode(request.query, doseq=True)
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP}
        try:
            upstream = self._session().request(
                request.method,
                url,
                data=request.body or None,
                headers=headers,
                stream=True,
                timeout=REQUEST_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
        except requests.RequestException as err:
            log.error("BigQuery gateway could not reach bqemulator at %s: %s", self.upstream_url, err)
            return _google_error(502, "The BigQuery emulator is unreachable.", "backendError", "UNAVAILABLE")
        with upstream:
            # Read the raw bytes so a compressed body keeps its Content-Encoding unchanged.
            body = upstream.raw.read(decode_content=False)
        response_headers = {
            name: value for name, value in upstream.headers.items() if name.lower() not in _HOP_BY_HOP
        }
        return Response(upstream.status_code, body, response_headers)


@dataclass
class BigQuerySandbox:
    """The running emulator and its gateway; `api_url` is what a client uses as its BigQuery endpoint."""

    emulator: BigQueryEmulator
    gateway: BigQueryGateway
    server: SandboxServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/bigquery/v2"

    def stop(self) -> None:
        self.server.stop()
        self.emulator.stop()


def start_bigquery(state_dir: Path, tls: TLSFiles, oauth: OAuthServer) -> BigQuerySandbox:
    """Start bqemulator and the gateway in front of it."""
    emulator = BigQueryEmulator(state_dir)
    try:
        gateway = BigQueryGateway(emulator.url, oauth)
        server = SandboxServer(gateway, tls, name="bigquery").start()
    except BaseException:
        emulator.stop()
        raise
    return BigQuerySandbox(emulator, gateway, server)


# -- seeding ------------------------------------------------------------------------------------


def to_json_value(value: Any) -> Any:
    """Convert a typed source value to its BigQuery REST JSON form (NUMERIC as a string keeps every digit)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def load_table(
    rest_url: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    project_id: str = seed.PROJECT_ID,
    dataset_id: str = seed.DATASET_ID,
    table_id: str = seed.TABLE_ID,
    schema: Iterable[Mapping[str, str]] = seed.BIGQUERY_SCHEMA,
    key_column: str = seed.KEY_COLUMN,
    headers: Mapping[str, str] | None = None,
    verify: str | bool = True,
) -> None:
    """Create the dataset and table and load `rows` with `tabledata.insertAll`.

    `rest_url` is the API root ending in `/bigquery/v2`. insertAll in chunks of 500 rows loaded
    10,000 seed rows in about 1 s against bqemulator 1.1, while query `INSERT` statements of 2,000
    rows took about 60 s (2-core machine, one run each).
    """
    project_url = f"{rest_url.rstrip('/')}/projects/{project_id}"
    with requests.Session() as session:
        session.headers.update(headers or {})
        session.verify = verify
        _post(session, f"{project_url}/datasets", {"datasetReference": {"projectId": project_id, "datasetId": dataset_id}})
        table = {
            "tableReference": {"projectId": project_id, "datasetId": dataset_id, "tableId": table_id},
            "schema": {"fields": [dict(column) for column in schema]},
        }
        _post(session, f"{project_url}/datasets/{dataset_id}/tables", table)
        insert_url = f"{project_url}/datasets/{dataset_id}/tables/{table_id}/insertAll"
        for start in range(0, len(rows), INSERT_ALL_CHUNK_ROWS):
            chunk = rows[start : start + INSERT_ALL_CHUNK_ROWS]
            payload = {
                "rows": [
                    {"insertId": str(row[key_column]), "json": {name: to_json_value(value) for name, value in row.items()}}
                    for row in chunk
                ]
            }
            result = _post(session, insert_url, payload)
            if result.get("insertErrors"):
                first = result["insertErrors"][0]
                raise RuntimeError(
                    f"insertAll into {dataset_id}.{table_id} rejected {len(result['insertErrors'])} rows; first: {first}"
                )
    log.info("Loaded %d rows into %s.%s.%s", len(rows), project_id, dataset_id, table_id)


def _post(session: requests.Session, url: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    response = session.post(url, json=payload, timeout=REQUEST_TIMEOUT_SECONDS)
    if not response.ok:
        raise RuntimeError(f"POST {url} failed with HTTP {response.status_code}: {response.text[:500]}")
    return response.json()
