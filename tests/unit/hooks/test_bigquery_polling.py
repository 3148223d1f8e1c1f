"""BigQuery job polling and error handling against a scripted BigQuery REST server over HTTPS.

The server plays a job that is not complete when jobs.query returns and stays RUNNING for one
jobs.get, then serves its rows in two pages. A test can also make jobs.get show status.errorResult.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_m2m.hooks import bigquery as bigquery_module
from airflow_provider_m2m.hooks.bigquery import BigQueryError, BigQueryM2MHook
from airflow_provider_m2m.sandbox.http import Request, Response, Router, SandboxServer
from airflow_provider_m2m.sandbox.tls import TLSFiles, create_tls_files

SCHEMA = {"fields": [{"name": "n", "type": "INT64"}, {"name": "at", "type": "TIMESTAMP"}]}


class ScriptedBigQuery:
    def __init__(self) -> None:
        self.job_state = ["RUNNING", "DONE"]
        self.error_result: dict[str, Any] | None = None
        self.requests: list[str] = []
        self.router = Router()
        self.router.add("POST", "/token", self.token)
        self.router.add("POST", "/bigquery/v2/projects/{project}/queries", self.query)
        self.router.add("GET", "/bigquery/v2/projects/{project}/jobs/{job}", self.get_job)
        self.router.add("GET", "/bigquery/v2/projects/{project}/queries/{job}", self.results)

    def handle(self, request: Request) -> Response:
        self.requests.append(f"{request.method} {request.path}")
        if request.path != "/token" and request.headers.get("Authorization") != "Bearer scripted-token":
            return Response.json(401, {"error": {"code": 401, "message": "no token"}})
        return self.router.handle(request)

    def token(self, request: Request) -> Response:
        return Response.json(
            200, {"access_token": "scripted-token", "expires_in": 3600, "token_type": "Bearer"}
        )

    def query(self, request: Request) -> Response:
        body = request.json()
        if body["query"] == "BAD":
            return Response.json(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "Syntax error at [1:1]",
                        "errors": [{"reason": "invalidQuery"}],
                    }
                },
            )
        return Response.json(
            200,
            {"jobReference": {"projectId": "p", "jobId": "job-1", "location": "EU"}, "jobComplete": False},
        )

    def get_job(self, request: Request) -> Response:
        state = self.job_state.pop(0) if len(self.job_state) > 1 else self.job_state[0]
        status: dict[str, Any] = {"state": state}
        if self.error_result and state == "DONE":
            status["errorResult"] = self.error_result
        return Response.json(200, {"jobReference": {"jobId": "job-1"}, "status": status})

    def results(self, request: Request) -> Response:
        assert request.query_value("location") == "EU"
        assert request.query_value("formatOptions.useInt64Timestamp") == "true"
        if request.query_value("pageToken") == "page-2":
            rows = [{"f": [{"v": "3"}, {"v": None}]}]
            return Response.json(200, {"jobComplete": True, "schema": SCHEMA, "rows": rows})
        rows = [{"f": [{"v": "1"}, {"v": "0"}]}, {"f": [{"v": "2"}, {"v": "1000000"}]}]
        return Response.json(
            200, {"jobComplete": True, "schema": SCHEMA, "rows": rows, "pageToken": "page-2"}
        )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return create_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def scripted(
    tls: TLSFiles, set_connection, rsa_pem: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ScriptedBigQuery]:
    app = ScriptedBigQuery()
    server = SandboxServer(app, tls, name="scripted-bigquery").start()
    monkeypatch.setattr(bigquery_module, "POLL_FIRST_INTERVAL_SECONDS", 0.01)
    key = {
        "type": "service_account",
        "project_id": "p",
        "private_key": rsa_pem,
        "client_email": "etl@p.iam.gserviceaccount.com",
        "token_uri": f"{server.url}/token",
    }
    set_connection(
        "scripted_bigquery",
        "bigquery_m2m",
        extra={
            "key_json": json.dumps(key),
            "api_url": f"{server.url}/bigquery/v2",
            "ca_bundle": str(tls.ca_cert),
        },
    )
    try:
        yield app
    finally:
        server.stop()


def test_unfinished_job_is_polled_then_paged(scripted: ScriptedBigQuery) -> None:
    rows = list(BigQueryM2MHook("scripted_bigquery").iter_rows("SELECT n, at FROM t"))

    assert [row["n"] for row in rows] == [1, 2, 3]
    assert rows[1]["at"].timestamp() == 1.0
    assert scripted.requests.count("GET /bigquery/v2/projects/p/jobs/job-1") == 2
    assert scripted.requests.count("GET /bigquery/v2/projects/p/queries/job-1") == 2


def test_failed_job_in_200_body_raises(scripted: ScriptedBigQuery) -> None:
    scripted.error_result = {
        "reason": "resourcesExceeded",
        "message": "Resources exceeded during query execution",
    }

    with pytest.raises(BigQueryError) as raised:
        list(BigQueryM2MHook("scripted_bigquery").iter_rows("SELECT n FROM t"))

    assert "Resources exceeded" in str(raised.value)
    assert raised.value.reasons == ("resourcesExceeded",)


def test_http_error_raises_with_reason(scripted: ScriptedBigQuery) -> None:
    with pytest.raises(BigQueryError) as raised:
        list(BigQueryM2MHook("scripted_bigquery").iter_rows("BAD"))

    assert raised.value.status_code == 400
    assert raised.value.reasons == ("invalidQuery",)
    assert "'scripted_bigquery'" in str(raised.value)


def test_query_timeout_names_the_setting(scripted: ScriptedBigQuery) -> None:
    scripted.job_state = ["RUNNING"]

    with pytest.raises(BigQueryError, match="query_timeout_seconds"):
        list(BigQueryM2MHook("scripted_bigquery", query_timeout_seconds=0.05).iter_rows("SELECT n FROM t"))
