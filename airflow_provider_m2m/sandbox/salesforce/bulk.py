"""Bulk API 2.0: ingest jobs (`/jobs/ingest`) and query jobs (`/jobs/query`).

A job is processed by a worker thread once its data is complete, so a client polls it through
`UploadComplete` and `InProgress` to `JobComplete` or `Failed`. Failed requests return
`[{"errorCode", "message"}]`, as the Bulk API 2.0 does.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from airflow_provider_m2m.sandbox.http import Request, Response
from airflow_provider_m2m.sandbox.salesforce import soql, values
from airflow_provider_m2m.sandbox.salesforce.ids import JOB_PREFIX
from airflow_provider_m2m.sandbox.salesforce.objects import FieldDef, ObjectDef
from airflow_provider_m2m.sandbox.salesforce.oauth import Session
from airflow_provider_m2m.sandbox.salesforce.rest import ApiError, json_response, parse_json_body
from airflow_provider_m2m.sandbox.salesforce.store import SaveResult, Store, match_key
from airflow_provider_m2m.sandbox.salesforce.values import RecordError

log = logging.getLogger(__name__)

INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = ("LF", "CRLF")
FINAL_STATES = ("JobComplete", "Failed", "Aborted")

# Records are written in chunks of this size, each under the store lock, so REST calls can run
# between chunks as they would against a real org.
CHUNK_SIZE = 200
# How long a job stays UploadComplete before the worker takes it, so clients see the state.
QUEUE_DELAY_SECONDS = 0.05


class BulkError(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def response(self) -> Response:
        return json_response(self.status, [{"errorCode": self.error_code, "message": self.message}])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _timestamp(moment: dt.datetime) -> str:
    return values.format_datetime_rest(moment)


def _write_csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class Job:
    """State shared by ingest and query jobs."""

    id: str
    operation: str
    object_def: ObjectDef
    created_by: str
    api_version: str
    line_ending: str
    column_delimiter: str
    state: str
    created: dt.datetime = field(default_factory=_now)
    modstamp: dt.datetime = field(default_factory=_now)
    error_message: str | None = None
    processed: int = 0
    started: float | None = None
    finished: float | None = None

    def set_state(self, state: str) -> None:
        self.state = state
        self.modstamp = _now()

    @property
    def processing_ms(self) -> int:
        if self.started is None:
            return 0
        return int(((self.finished or time.monotonic()) - self.started) * 1000)

    def base_info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.object_def.name,
            "createdById": self.created_by,
            "createdDate": _timestamp(self.created),
            "systemModstamp": _timestamp(self.modstamp),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": Decimal(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }


@dataclass
class IngestJob(Job):
    external_field: FieldDef | None = None
    uploads: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)

    def info(self, *, full: bool) -> dict[str, Any]:
        body = self.base_info()
        if self.external_field is not None:
            body["externalIdFieldName"] = self.external_field.name
        body["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        if full:
            body.update(
                {
                    "jobType": "V2Ingest",
                    "retries": 0,
                    "numberRecordsProcessed": self.processed,
                    "numberRecordsFailed": len(self.failed),
                    "totalProcessingTime": self.processing_ms,
                    "apiActiveProcessingTime": self.processing_ms,
                    "apexProcessingTime": 0,
                }
            )
            if self.error_message:
                body["errorMessage"] = self.error_message
        return body


@dataclass
class QueryJob(Job):
    query_text: str = ""
    query: soql.Query | None = None
    result_rows: list[list[str]] = field(default_factory=list)

    def info(self, *, full: bool) -> dict[str, Any]:
        body = self.base_info()
        body["query"] = self.query_text
        if full:
            body.update(
                {
                    "jobType": "V2Query",
                    "retries": 0,
                    "numberRecordsProcessed": self.processed,
                    "totalProcessingTime": self.processing_ms,
                    "isPkChunkingSupported": True,
                }
            )
            if self.error_message:
                body["errorMessage"] = self.error_message
        return body


@dataclass
class IngestFaults:
    """Fault plan for ingest jobs, set by tests through the emulator."""

    # Each entry is taken by the next job processed: None fails it before any record, N after N records.
    fail_plans: list[tuple[int, str]] = field(default_factory=list)
    # Seconds each job waits InProgress before its records are written.
    processing_delay_seconds: float = 0.0
    # External id (as `match_key` folds it) -> validation message for rows that upsert jobs reject.
    rejected_keys: dict[str, str] = field(default_factory=dict)
    # While set, each CSV upload waits for this event (at most `upload_hold_seconds`) before the
    # emulator stores it and responds, so a test can kill the client in the middle of the request.
    upload_release: threading.Event | None = None
    upload_hold_seconds: float = 0.0
    # Ids of the jobs whose upload was held, in arrival order. `upload_held` is set at the first one.
    held_upload_jobs: list[str] = field(default_factory=list)
    upload_held: threading.Event = field(default_factory=threading.Event)


class BulkApi:
    """Handlers for `/jobs/ingest` and `/jobs/query`; the emulator wraps each with session checks."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ingest_jobs: dict[str, IngestJob] = {}
        self.query_jobs: dict[str, QueryJob] = {}
        self.faults = IngestFaults()
        self._workers: list[threading.Thread] = []

    # -- shared -----------------------------------------------------------------------------------

    def _job_options(self, body: dict[str, Any]) -> tuple[str, str]:
        line_ending = body.get("lineEnding", "LF")
        if line_ending not in LINE_ENDINGS:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid lineEnding: {line_ending}")
        delimiter = body.get("columnDelimiter", "COMMA")
        if delimiter not in DELIMITERS:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid columnDelimiter: {delimiter}")
        content_type = body.get("contentType", "CSV")
        if content_type != "CSV":
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid contentType: {content_type}")
        return line_ending, delimiter

    def _start_worker(self, target: Any, job: Job) -> None:
        worker = threading.Thread(target=target, args=(job,), name=f"salesforce-bulk-{job.id}", daemon=True)
        self._workers = [thread for thread in self._workers if thread.is_alive()]
        self._workers.append(worker)
        worker.start()

    def join_workers(self, timeout: float = 10.0) -> None:
        """Wait for running jobs to finish (used when the emulator stops)."""
        for worker in list(self._workers):
            worker.join(timeout)

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        try:
            body = parse_json_body(request)
        except ApiError as err:
            raise BulkError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from err
        if not isinstance(body, dict):
            raise BulkError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        return body

    # -- ingest -----------------------------------------------------------------------------------

    def create_ingest(self, request: Request, session: Session) -> Response:
        body = self._json_body(request)
        operation = body.get("operation")
        if operation not in INGEST_OPERATIONS:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        object_def = self.store.object_def(str(body.get("object", "")))
        if object_def is None:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid object: {body.get('object')}")
        line_ending, delimiter = self._job_options(body)

        external_field = None
        if operation == "upsert":
            name = body.get("externalIdFieldName")
            if not name:
                message = f"InvalidJob : External ID was blank for {object_def.name}. An External ID must be specified for upsert."
                raise BulkError(400, "INVALIDJOB", message)
            external_field = object_def.field(str(name))
            if external_field is None or not (external_field.external_id or external_field.name == "Id"):
                message = f"InvalidJob : Field name provided, {name} is not an External ID or indexed field for {object_def.name}"
                raise BulkError(400, "INVALIDJOB", message)

        job = IngestJob(
            id=self.store.ids.new_id(JOB_PREFIX),
            operation=operation,
            object_def=object_def,
            created_by=session.user_id,
            api_version=request.params["version"],
            line_ending=line_ending,
            column_delimiter=delimiter,
            state="Open",
            external_field=external_field,
        )
        with self.store.lock:
            self.ingest_jobs[job.id] = job
        log.info("Salesforce emulator: ingest job %s created (%s %s)", job.id, operation, object_def.name)
        return json_response(200, job.info(full=False))

    def _ingest_job(self, request: Request) -> IngestJob:
        job = self.ingest_jobs.get(request.params["job_id"])
        if job is None:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def _hold_upload(self, job: IngestJob) -> None:
        """Keep an upload request open while a test has armed the upload hold (`IngestFaults.upload_release`)."""
        with self.store.lock:
            release = self.faults.upload_release
            seconds = self.faults.upload_hold_seconds
            if release is None:
                return
            self.faults.held_upload_jobs.append(job.id)
            self.faults.upload_held.set()
        log.info("Salesforce emulator: upload to ingest job %s held for up to %.0f s, as a test requested", job.id, seconds)
        release.wait(seconds)

    def upload(self, request: Request, session: Session) -> Response:
        job = self._ingest_job(request)
        self._hold_upload(job)
        with self.store.lock:
            if job.state != "Open":
                raise BulkError(409, "INVALIDJOBSTATE", f"Job with id {job.id} is not in Open state; data can only be uploaded to an Open job")
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BulkError(400, "INVALIDJOB", "InvalidBatch : The CSV data is not valid UTF-8") from err
            if not text.strip():
                raise BulkError(400, "INVALIDJOB", "InvalidBatch : The CSV data is empty")
            job.uploads.append(text)
        return Response(201)

    def get_ingest(self, request: Request, session: Session) -> Response:
        job = self._ingest_job(request)
        with self.store.lock:
            return json_response(200, job.info(full=True))

    def list_ingest(self, request: Request, session: Session) -> Response:
        with self.store.lock:
            records = [{**job.info(full=False), "jobType": "V2Ingest"} for job in self.ingest_jobs.values()]
        return json_response(200, {"done": True, "records": records, "nextRecordsUrl": None})

    def patch_ingest(self, request: Request, session: Session) -> Response:
        job = self._ingest_job(request)
        state = self._json_body(request).get("state")
        with self.store.lock:
            if state == "UploadComplete":
                if job.state != "Open":
                    raise BulkError(400, "INVALIDJOBSTATE", f"Job with id {job.id} is not in Open state")
                job.set_state("UploadComplete")
                self._start_worker(self._process_ingest, job)
            elif state == "Aborted":
                if job.state in FINAL_STATES:
                    raise BulkError(400, "INVALIDJOBSTATE", f"Job with id {job.id} is already {job.state}")
                job.set_state("Aborted")
            else:
                raise BulkError(400, "INVALIDJOBSTATE", f"Invalid state: {state}")
            return json_response(200, job.info(full=False))

    def delete_ingest(self, request: Request, session: Session) -> Response:
        job = self._ingest_job(request)
        with self.store.lock:
            if job.state in ("Open", "InProgress"):
                raise BulkError(400, "INVALIDJOBSTATE", f"Job with id {job.id} is {job.state} and cannot be deleted")
            del self.ingest_jobs[job.id]
        return Response(204)

    def ingest_results(self, request: Request, session: Session) -> Response:
        job = self._ingest_job(request)
        kind = request.params["kind"].lower()
        with self.store.lock:
            if kind == "successfulresults":
                text = _write_csv(["sf__Id", "sf__Created", *job.header], job.successful)
            elif kind == "failedresults":
                text = _write_csv(["sf__Id", "sf__Error", *job.header], job.failed)
            elif kind == "unprocessedrecords":
                text = _write_csv(job.header, job.unprocessed) if job.header else ""
            else:
                raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return Response.text(200, text, content_type="text/csv")

    # -- ingest processing ------------------------------------------------------------------------

    def _parse_uploads(self, job: IngestJob) -> list[list[str]]:
        """Read every uploaded CSV into rows under one header; raise ValueError for a job-level fault."""
        rows: list[list[str]] = []
        delimiter = DELIMITERS[job.column_delimiter]
        for text in job.uploads:
            _check_line_ending(job.line_ending, text)
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            parsed = [row for row in reader if row]
            if not parsed:
                continue
            header, *data = parsed
            if job.header and header != job.header:
                raise ValueError("InvalidBatch : All uploads of a job must have the same header row")
            job.header = header
            for number, row in enumerate(data, start=2):
                if len(row) != len(header):
                    raise ValueError(f"InvalidBatch : Wrong number of columns in line {number}: expected {len(header)}, found {len(row)}")
            rows.extend(data)
        if not job.header:
            raise ValueError("InvalidBatch : No data was uploaded for this job")
        return rows

    def _header_fields(self, job: IngestJob) -> list[FieldDef]:
        fields = []
        for name in job.header:
            field_def = job.object_def.field(name.strip())
            if field_def is None:
                raise ValueError(f"InvalidBatch : Field name not found : {name}")
            fields.append(field_def)
        if job.operation in ("update", "delete", "hardDelete") and "Id" not in [f.name for f in fields]:
            raise ValueError("InvalidBatch : Field name not found : Id")
        if job.external_field is not None and job.external_field not in fields:
            raise ValueError(f"InvalidBatch : Field name not found : {job.external_field.name}")
        return fields

    def _process_ingest(self, job: IngestJob) -> None:
        time.sleep(QUEUE_DELAY_SECONDS)
        with self.store.lock:
            if job.state != "UploadComplete":
                # Aborted before processing: every uploaded row stays unprocessed.
                try:
                    job.unprocessed = self._parse_uploads(job)
                except ValueError:
                    job.unprocessed = []
                return
            job.set_state("InProgress")
            job.started = time.monotonic()
            fail_plan = self.faults.fail_plans.pop(0) if self.faults.fail_plans else None
            delay = self.faults.processing_delay_seconds
        if delay:
            time.sleep(delay)
        try:
            rows = self._parse_uploads(job)
            fields = self._header_fields(job)
        except ValueError as err:
            self._finish(job, "Failed", str(err), unprocessed=[])
            return
        duplicates = self._duplicate_keys(job, fields, rows)
        fail_after = fail_plan[0] if fail_plan else None
        for start in range(0, len(rows), CHUNK_SIZE):
            chunk = rows[start : start + CHUNK_SIZE]
            if fail_after is not None and start + len(chunk) > fail_after:
                chunk = chunk[: max(0, fail_after - start)]
            with self.store.lock:
                if job.state == "Aborted":
                    break
                for row in chunk:
                    self._process_row(job, fields, row, duplicates)
                    job.processed += 1
            if fail_after is not None and job.processed >= fail_after:
                break
        if job.state == "Aborted":
            self._finish(job, "Aborted", None, unprocessed=rows[job.processed :])
        elif fail_plan is not None:
            self._finish(job, "Failed", fail_plan[1], unprocessed=rows[job.processed :])
        else:
            self._finish(job, "JobComplete", None, unprocessed=[])

    def _finish(self, job: IngestJob, state: str, error_message: str | None, *, unprocessed: list[list[str]]) -> None:
        with self.store.lock:
            job.unprocessed = unprocessed
            job.error_message = error_message
            job.finished = time.monotonic()
            job.set_state(state)
        log.info(
            "Salesforce emulator: ingest job %s %s: %d processed, %d failed, %d unprocessed%s",
            job.id, state, job.processed, len(job.failed), len(unprocessed), f" ({error_message})" if error_message else "",
        )

    def _duplicate_keys(self, job: IngestJob, fields: list[FieldDef], rows: list[list[str]]) -> set[str]:
        """External id values that appear in more than one row of an upsert job."""
        if job.external_field is None or job.external_field.name == "Id":
            return set()
        column = fields.index(job.external_field)
        seen: set[str] = set()
        duplicates: set[str] = set()
        for row in rows:
            cell = row[column]
            if cell in ("", values.CSV_NULL):
                continue
            key = match_key(cell)
            (duplicates if key in seen else seen).add(key)
        return duplicates

    def _process_row(self, job: IngestJob, fields: list[FieldDef], row: list[str], duplicates: set[str]) -> None:
        result = self._apply_row(job, fields, row, duplicates)
        if result.success:
            job.successful.append([result.id or "", "true" if result.created else "false", *row])
        else:
            job.failed.append([result.id or "", result.errors[0].to_bulk(), *row])

    def _apply_row(self, job: IngestJob, fields: list[FieldDef], row: list[str], duplicates: set[str]) -> SaveResult:
        cells = dict(zip(fields, row))
        id_field = job.object_def.field("Id")
        record_id = cells.get(id_field, "") if id_field else ""
        if job.operation in ("delete", "hardDelete"):
            return self.store.delete(job.object_def, record_id, hard=job.operation == "hardDelete")

        changes: dict[FieldDef, Any] = {}
        for column, (field_def, cell) in enumerate(zip(fields, row), start=1):
            if field_def.name == "Id" and job.operation != "insert":
                continue
            try:
                value = values.read_csv_cell(field_def, cell)
            except values.ValueTypeError as err:
                return SaveResult.failed(err.bulk_error(column))
            if value is not values.UNCHANGED:
                changes[field_def] = value

        if job.operation == "insert":
            return self.store.create(job.object_def, changes, user_id=job.created_by)
        if job.operation == "update":
            return self.store.update(job.object_def, record_id, changes, user_id=job.created_by)
        external_field = job.external_field
        assert external_field is not None
        if external_field.name == "Id":
            if not record_id:
                return self.store.create(job.object_def, changes, user_id=job.created_by)
            return self.store.update(job.object_def, record_id, changes, user_id=job.created_by)
        key = cells[external_field]
        if key and match_key(key) in duplicates:
            message = f"Duplicate external id specified: {key}"
            return SaveResult.failed(RecordError("DUPLICATE_EXTERNAL_ID", message, (external_field.name,)))
        rejection = self.faults.rejected_keys.get(match_key(key)) if key else None
        if rejection is not None:
            # What a failing validation rule reports; the record is left as it was.
            return SaveResult.failed(RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", rejection))
        return self.store.upsert(job.object_def, external_field, changes.get(external_field), changes, user_id=job.created_by)

    # -- query ------------------------------------------------------------------------------------

    def create_query(self, request: Request, session: Session) -> Response:
        body = self._json_body(request)
        operation = body.get("operation", "query")
        if operation not in QUERY_OPERATIONS:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        line_ending, delimiter = self._job_options(body)
        text = str(body.get("query") or "")
        try:
            query = soql.parse(text, self.store)
        except soql.SoqlError as err:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : {err.message}") from err
        if query.is_count:
            raise BulkError(400, "INVALIDJOB", "InvalidJob : Aggregate queries are not supported by Bulk API 2.0")
        job = QueryJob(
            id=self.store.ids.new_id(JOB_PREFIX),
            operation=operation,
            object_def=query.object_def,
            created_by=session.user_id,
            api_version=request.params["version"],
            line_ending=line_ending,
            column_delimiter=delimiter,
            state="UploadComplete",
            query_text=text,
            query=query,
        )
        with self.store.lock:
            self.query_jobs[job.id] = job
        self._start_worker(self._process_query, job)
        return json_response(200, job.info(full=False))

    def _query_job(self, request: Request) -> QueryJob:
        job = self.query_jobs.get(request.params["job_id"])
        if job is None:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def _process_query(self, job: QueryJob) -> None:
        time.sleep(QUEUE_DELAY_SECONDS)
        with self.store.lock:
            if job.state != "UploadComplete":
                return
            job.set_state("InProgress")
            job.started = time.monotonic()
        assert job.query is not None
        rows, _ = soql.run(job.query, self.store)
        field_names = [field_def.name for field_def in job.query.fields]
        # Writing a million rows as CSV text takes seconds, so it runs outside the lock: status
        # requests meanwhile return InProgress at once, as a real org does, instead of waiting.
        result_rows = [[values.to_csv_value(selected[name]) for name in field_names] for _, selected in rows]
        with self.store.lock:
            if job.state == "Aborted":
                return
            job.result_rows = result_rows
            job.processed = len(rows)
            job.finished = time.monotonic()
            job.set_state("JobComplete")

    def get_query(self, request: Request, session: Session) -> Response:
        job = self._query_job(request)
        with self.store.lock:
            return json_response(200, job.info(full=True))

    def list_query(self, request: Request, session: Session) -> Response:
        with self.store.lock:
            records = [{**job.info(full=False), "jobType": "V2Query"} for job in self.query_jobs.values()]
        return json_response(200, {"done": True, "records": records, "nextRecordsUrl": None})

    def patch_query(self, request: Request, session: Session) -> Response:
        job = self._query_job(request)
        state = self._json_body(request).get("state")
        with self.store.lock:
            if state != "Aborted":
                raise BulkError(400, "INVALIDJOBSTATE", f"Invalid state: {state}")
            if job.state in FINAL_STATES:
                raise BulkError(400, "INVALIDJOBSTATE", f"Job with id {job.id} is already {job.state}")
            job.set_state("Aborted")
            return json_response(200, job.info(full=False))

    def delete_query(self, request: Request, session: Session) -> Response:
        job = self._query_job(request)
        with self.store.lock:
            if job.state in ("UploadComplete", "InProgress"):
                raise BulkError(400, "INVALIDJOBSTATE", f"Job with id {job.id} is {job.state} and cannot be deleted")
            del self.query_jobs[job.id]
        return Response(204)

    def query_results(self, request: Request, session: Session) -> Response:
        job = self._query_job(request)
        with self.store.lock:
            if job.state != "JobComplete":
                raise BulkError(400, "INVALIDJOBSTATE", f"Job with id {job.id} is {job.state}; results are available once it is JobComplete")
            start = _decode_locator(request.query_value("locator"))
            max_records_text = request.query_value("maxRecords")
            max_records = int(max_records_text) if max_records_text and max_records_text.isdigit() else len(job.result_rows)
            page = job.result_rows[start : start + max(1, max_records)]
            next_start = start + len(page)
            assert job.query is not None
            header = [field_def.name for field_def in job.query.fields]
        line_terminator = "\r\n" if job.line_ending == "CRLF" else "\n"
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=DELIMITERS[job.column_delimiter], quoting=csv.QUOTE_ALL, lineterminator=line_terminator)
        writer.writerow(header)
        writer.writerows(page)
        locator = _encode_locator(next_start) if next_start < len(job.result_rows) else "null"
        response = Response.text(200, buffer.getvalue(), content_type="text/csv")
        response.headers["Sforce-Locator"] = locator
        response.headers["Sforce-NumberOfRecords"] = str(len(page))
        return response


def _check_line_ending(line_ending: str, text: str) -> None:
    """Reject data whose header row ends differently from the job's lineEnding, as Salesforce does.

    Only the header row is checked, so a quoted value may still hold either kind of line break.
    """
    first_line, newline, _ = text.partition("\n")
    if not newline:
        return
    ends_with_crlf = first_line.endswith("\r")
    if ends_with_crlf != (line_ending == "CRLF"):
        raise ValueError(f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {line_ending}")


def _encode_locator(offset: int) -> str:
    # Locators are opaque to clients; Salesforce's look like base64 of a row offset.
    return base64.b64encode(str(offset).encode("ascii")).decode("ascii").rstrip("=")


def _decode_locator(locator: str | None) -> int:
    if not locator or locator == "null":
        return 0
    try:
        padded = locator + "=" * (-len(locator) % 4)
        return int(base64.b64decode(padded).decode("ascii"))
    except (ValueError, UnicodeDecodeError) as err:
        raise BulkError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}") from err
