"""BigQuery in the sandbox: bqemulator in a child process behind a TLS gateway that checks tokens.

bqemulator serves BigQuery's REST API (`/bigquery/v2/...`, `/upload/bigquery/v2/...`) over plain
HTTP and accepts any caller. The gateway serves the same paths over HTTPS and forwards a request
only when it carries a Bearer access token that the sandbox's OAuth server issued and that has not
expired or been revoked, as Google's front end does. Clients therefore authenticate the real way:
google-auth signs a service-account assertion, trades it for a token at the OAuth server, and
sends that token here.

Tests inject query faults through the gateway: `answer_incomplete` makes the next responses report
a job as still running, and `fail_next_query` makes the next query job fail with its error in
HTTP 200 bodies, as BigQuery reports a job that fails after it started.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


# jobs.query (POST .../queries), jobs.getQueryResults (GET .../queries/{job}) and jobs.get (GET .../jobs/{job}).
_QUERY_CALL_PATH = re.compile(r"^/bigquery/v2/projects/(?P<project>[^/]+)/(?P<collection>queries|jobs)(?:/(?P<job>[^/]+))?/?$")


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


@dataclass
class QueryFaults:
    """Query faults the gateway injects, set by tests through `BigQueryGateway`."""

    # How many more responses of jobs.query, getQueryResults and jobs.get report the job as running.
    incomplete_answers: int = 0
    # errorResult for the next query job, as BigQuery's ErrorProto: reason, message, location.
    next_query_error: dict[str, str] | None = None
    # Job id -> errorResult of query jobs that this gateway reports as failed.
    failed_jobs: dict[str, dict[str, str]] = field(default_factory=dict)


class BigQueryGateway:
    """An App that checks the Bearer token of each request and forwards it to bqemulator."""

    def __init__(self, upstream_url: str, oauth: OAuthServer) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.oauth = oauth
        self._local = threading.local()
        self._lock = threading.Lock()
        self.faults = QueryFaults()
        self.rejected = 0  # count of requests rejected with 401 or 403, for tests

    # -- fault hooks for tests --------------------------------------------------------------------

    def answer_incomplete(self, answers: int) -> None:
        """Report the job as still running in the next `answers` responses to jobs.query,
        getQueryResults and jobs.get, as BigQuery does while a query outlasts the request's `timeoutMs`."""
        with self._lock:
            self.faults.incomplete_answers = answers

    def fail_next_query(self, message: str = "Query failed, as requested by the test", reason: str = "invalidQuery") -> None:
        """Make the next query job fail after it started, with the error only in HTTP 200 bodies.

        jobs.query returns jobComplete false. Then jobs.get returns state DONE with
        `status.errorResult`, and getQueryResults returns jobComplete true with the error in
        `errors` and no rows.
        """
        with self._lock:
            self.faults.next_query_error = {"reason": reason, "message": message, "location": "query"}

    def clear_faults(self) -> None:
        with self._lock:
            self.faults = QueryFaults()

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
        match = _QUERY_CALL_PATH.match(request.path)
        if match is None or not self._faults_armed():
            return self._forward(request)
        return self._faulty_query_call(request, match)

    def _faults_armed(self) -> bool:
        with self._lock:
            faults = self.faults
            return bool(faults.incomplete_answers or faults.next_query_error or faults.failed_jobs)

    def _faulty_query_call(self, request: Request, match: re.Match[str]) -> Response:
        """Respond to jobs.query, getQueryResults or jobs.get with the armed fault applied."""
        collection, job_id = match["collection"], match["job"]
        is_query = collection == "queries" and job_id is None and request.method == "POST"
        is_results = collection == "queries" and job_id is not None and request.method == "GET"
        is_job = collection == "jobs" and job_id is not None and request.method == "GET"
        if not (is_query or is_results or is_job):
            return self._forward(request)

        with self._lock:
            error = self.faults.failed_jobs.get(job_id or "")
            incomplete = error is None and self.faults.incomplete_answers > 0
            if incomplete:
                self.faults.incomplete_answers -= 1
            new_error = self.faults.next_query_error if is_query else None
            self.faults.next_query_error = None if is_query else self.faults.next_query_error

        reference = {"projectId": match["project"], "jobId": job_id}
        if request.query_value("location"):
            reference["location"] = request.query_value("location")
        if is_results and error is not None:
            log.info("BigQuery gateway: getQueryResults of job %s returns its injected error", job_id)
            return Response.json(
                200,
                {"kind": "bigquery#getQueryResultsResponse", "jobReference": reference, "jobComplete": True, "errors": [error]},
            )
        if is_results and incomplete:
            log.info("BigQuery gateway: getQueryResults of job %s returns jobComplete false, as a test requested", job_id)
            return Response.json(
                200, {"kind": "bigquery#getQueryResultsResponse", "jobReference": reference, "jobComplete": False}
            )
        if is_results:
            return self._forward(request)

        upstream = self._forward(request, identity_encoding=True)
        if upstream.status != 200:
            return upstream
        body = json.loads(upstream.body)
        if is_query and (new_error is not None or incomplete):
            # The job ran in bqemulator, and only the response claims it has not finished.
            reference = body.get("jobReference") or reference
            if new_error is not None:
                with self._lock:
                    self.faults.failed_jobs[str(reference.get("jobId"))] = new_error
            log.info("BigQuery gateway: jobs.query of job %s returns jobComplete false, as a test requested", reference.get("jobId"))
            return Response.json(200, {"kind": "bigquery#queryResponse", "jobReference": reference, "jobComplete": False})
        if is_job and error is not None:
            log.info("BigQuery gateway: jobs.get of job %s returns DONE with its injected error", job_id)
            body["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
        elif is_job and incomplete:
            log.info("BigQuery gateway: jobs.get of job %s returns RUNNING, as a test requested", job_id)
            body["status"] = {"state": "RUNNING"}
        return Response.json(200, body)

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

    def _forward(self, request: Request, *, identity_encoding: bool = False) -> Response:
        """Send the request to bqemulator; `identity_encoding` asks for an uncompressed body to edit."""
        url = self.upstream_url + request.path
        if request.query:
            url += "?" + urlencode(request.query, doseq=True)
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP}
        if identity_encoding:
            headers = {name: value for name, value in headers.items() if name.lower() != "accept-encoding"}
            headers["Accept-Encoding"] = "identity"
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
