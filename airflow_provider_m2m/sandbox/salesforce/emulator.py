"""The Salesforce API emulator: one App serving OAuth, REST and Bulk API 2.0 on one base URL.

Every API request must carry `Authorization: Bearer <access token>` from `/services/oauth2/token`.
An unknown, expired or idle token gets 401 with `INVALID_SESSION_ID`.

`api_calls` counts requests per endpoint kind, including rejected ones. The kinds are `token`,
`query`, `query_more`, `describe_global`, `describe`, `create`, `retrieve`, `update`, `delete`,
`upsert`, `collection_create`, `collection_update`, `collection_upsert`, `collection_delete`, and for Bulk API 2.0 `bulk_ingest_create`,
`bulk_ingest_list`, `bulk_ingest_upload`, `bulk_ingest_status`, `bulk_ingest_state`,
`bulk_ingest_delete`, `bulk_ingest_results` and the same six with `bulk_query_` (`create`, `list`,
`status`, `state`, `delete`, `results`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from airflow_provider_m2m.sandbox.http import Request, Response, Router
from airflow_provider_m2m.sandbox.salesforce import values
from airflow_provider_m2m.sandbox.salesforce.bulk import BulkApi, BulkError
from airflow_provider_m2m.sandbox.salesforce.ids import ORG_PREFIX, USER_PREFIX, to_18
from airflow_provider_m2m.sandbox.salesforce.oauth import ConnectedApp, Session, Sessions, TokenEndpoint
from airflow_provider_m2m.sandbox.salesforce.objects import DEFAULT_OBJECTS, ObjectDef
from airflow_provider_m2m.sandbox.salesforce.rest import NOT_FOUND, ApiError, RestApi
from airflow_provider_m2m.sandbox.salesforce.store import Record, Store, match_key

log = logging.getLogger(__name__)

INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
DEFAULT_SESSION_TIMEOUT_SECONDS = 7200

# REST API versions listed by `/services/data`. Requests to any version from 31.0 to 62.0
# (Winter '25) get the same resources; other versions get 404.
API_VERSIONS = {"62.0": "Winter '25", "61.0": "Summer '24", "60.0": "Spring '24", "59.0": "Winter '24"}
MIN_API_VERSION = 31.0
MAX_API_VERSION = 62.0
# Daily API request allocation reported in the Sforce-Limit-Info header.
DAILY_API_REQUESTS = 15000

ApiHandler = Callable[[Request, Session], Response]


def _is_router_error(response: Response) -> bool:
    """Tell whether a response is the router's unknown-path or wrong-method error, a JSON object with `error`."""
    try:
        body = json.loads(response.body or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") in ("not_found", "method_not_allowed")


class SalesforceEmulator:
    """An in-process Salesforce org for tests and the demo, served by `SandboxServer`.

    Set `base_url` to the server's URL once it is listening (or pass `base_url_provider`): the token
    response's `instance_url` and the identity URL are built from it.
    """

    def __init__(
        self,
        tls: Any = None,
        *,
        session_timeout_seconds: float = DEFAULT_SESSION_TIMEOUT_SECONDS,
        clients: Sequence[ConnectedApp] = (),
        base_url_provider: Callable[[], str] | None = None,
        object_defs: Iterable[ObjectDef] = DEFAULT_OBJECTS,
    ) -> None:
        # `tls` is accepted for callers that pass their TLS files; the server, not the app, uses them.
        del tls
        self.lock = threading.RLock()
        self.base_url: str | None = None
        self._base_url_provider = base_url_provider
        self.store = Store(object_defs, self.lock)
        self.org_id = self.store.ids.new_id(ORG_PREFIX)
        self.sessions = Sessions(session_timeout_seconds, self.lock)
        self.token_endpoint = TokenEndpoint(
            clients,
            self.sessions,
            org_id=self.org_id,
            new_user_id=lambda: self.store.ids.new_id(USER_PREFIX),
            base_url=self._own_url,
        )
        self.rest = RestApi(self.store)
        self.bulk = BulkApi(self.store)
        self.api_calls: Counter[str] = Counter()
        self._expire_after_calls: int | None = None
        # Set by fail_collections_request: how many sObject Collections requests to serve before the
        # failing one, its HTTP status and its error code.
        self._collections_failure: tuple[int, int, str] | None = None
        self._router = Router()
        self._routes()

    # -- wiring -----------------------------------------------------------------------------------

    def _own_url(self) -> str:
        if self.base_url:
            return self.base_url
        if self._base_url_provider is not None:
            return self._base_url_provider()
        raise RuntimeError("SalesforceEmulator.base_url is not set: assign the server's URL after it starts")

    def _routes(self) -> None:
        data = "/services/data/v{version}"
        rest, bulk = self.rest, self.bulk
        self._router.add("POST", "/services/oauth2/token", self._token)
        self._router.add("GET", "/services/data", self._versions)
        api_routes: list[tuple[str, str, str, ApiHandler]] = [
            ("GET", "/query", "query", rest.query),
            ("GET", "/query/{locator}", "query_more", rest.query_more),
            ("GET", "/queryAll", "query", rest.query),
            ("GET", "/queryAll/{locator}", "query_more", rest.query_more),
            ("GET", "/sobjects", "describe_global", rest.describe_global),
            ("GET", "/sobjects/{object}/describe", "describe", rest.describe),
            ("POST", "/sobjects/{object}", "create", rest.create),
            ("GET", "/sobjects/{object}/{id}", "retrieve", rest.get),
            ("PATCH", "/sobjects/{object}/{id}", "update", rest.update),
            ("DELETE", "/sobjects/{object}/{id}", "delete", rest.delete),
            ("GET", "/sobjects/{object}/{field}/{value}", "retrieve", rest.get_by_external_id),
            ("PATCH", "/sobjects/{object}/{field}/{value}", "upsert", rest.upsert),
            ("POST", "/composite/sobjects", "collection_create", rest.collection_create),
            ("PATCH", "/composite/sobjects", "collection_update", rest.collection_update),
            ("PATCH", "/composite/sobjects/{object}/{field}", "collection_upsert", rest.collection_upsert),
            ("DELETE", "/composite/sobjects", "collection_delete", rest.collection_delete),
            ("POST", "/jobs/ingest", "bulk_ingest_create", bulk.create_ingest),
            ("GET", "/jobs/ingest", "bulk_ingest_list", bulk.list_ingest),
            ("PUT", "/jobs/ingest/{job_id}/batches", "bulk_ingest_upload", bulk.upload),
            ("GET", "/jobs/ingest/{job_id}", "bulk_ingest_status", bulk.get_ingest),
            ("PATCH", "/jobs/ingest/{job_id}", "bulk_ingest_state", bulk.patch_ingest),
            ("DELETE", "/jobs/ingest/{job_id}", "bulk_ingest_delete", bulk.delete_ingest),
            ("GET", "/jobs/ingest/{job_id}/{kind}", "bulk_ingest_results", bulk.ingest_results),
            ("POST", "/jobs/query", "bulk_query_create", bulk.create_query),
            ("GET", "/jobs/query", "bulk_query_list", bulk.list_query),
            ("GET", "/jobs/query/{job_id}", "bulk_query_status", bulk.get_query),
            ("PATCH", "/jobs/query/{job_id}", "bulk_query_state", bulk.patch_query),
            ("DELETE", "/jobs/query/{job_id}", "bulk_query_delete", bulk.delete_query),
            ("GET", "/jobs/query/{job_id}/results", "bulk_query_results", bulk.query_results),
        ]
        for method, path, kind, handler in api_routes:
            self._router.add(method, data + path, self._authenticated(kind, handler))

    def handle(self, request: Request) -> Response:
        response = self._router.handle(request)
        if response.status in (404, 405) and _is_router_error(response):
            # The router's own body for an unknown path or method is not Salesforce's.
            return Response.json(404, [NOT_FOUND.to_api_error()])
        return response

    def _versions(self, request: Request) -> Response:
        versions = [
            {"label": label, "url": f"/services/data/v{version}", "version": version}
            for version, label in sorted(API_VERSIONS.items(), key=lambda item: float(item[0]))
        ]
        return Response.json(200, versions)

    @staticmethod
    def _supported_version(version: str) -> bool:
        try:
            number = float(version)
        except ValueError:
            return False
        return version.endswith(".0") and MIN_API_VERSION <= number <= MAX_API_VERSION

    def _token(self, request: Request) -> Response:
        with self.lock:
            self.api_calls["token"] += 1
        return self.token_endpoint.handle(request)

    def _authenticated(self, kind: str, handler: ApiHandler) -> Callable[[Request], Response]:
        def dispatch(request: Request) -> Response:
            session = self._session_for(request, kind)
            if session is None:
                log.info("Salesforce emulator: %s request rejected: session expired or invalid", kind)
                headers = {"Content-Type": "application/json;charset=UTF-8", "WWW-Authenticate": "Token"}
                return Response(401, values.dumps(INVALID_SESSION).encode(), headers)
            if not self._supported_version(request.params["version"]):
                log.info("Salesforce emulator: %s request for unsupported API version %s", kind, request.params["version"])
                response = ApiError(404, NOT_FOUND).response()
            elif (failure := self._take_collections_failure(kind)) is not None:
                status, error_code = failure
                log.info("Salesforce emulator: %s request failed with HTTP %d, as a test requested", kind, status)
                message = "The server failed this request as the test requested, and wrote none of its records"
                body = values.dumps([{"message": message, "errorCode": error_code}])
                response = Response(status, body.encode(), {"Content-Type": "application/json;charset=UTF-8"})
            else:
                try:
                    response = handler(request, session)
                except (ApiError, BulkError) as err:
                    log.info("Salesforce emulator: %s request failed with HTTP %d: %s", kind, err.status, err)
                    response = err.response()
            with self.lock:
                used = sum(count for name, count in self.api_calls.items() if name != "token")
            response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{DAILY_API_REQUESTS}"
            return response

        return dispatch

    def _take_collections_failure(self, kind: str) -> tuple[int, str] | None:
        """Return the status and error code of a scripted Collections failure when this request is the one."""
        if not kind.startswith("collection_"):
            return None
        with self.lock:
            if self._collections_failure is None:
                return None
            remaining, status, error_code = self._collections_failure
            if remaining > 0:
                self._collections_failure = (remaining - 1, status, error_code)
                return None
            self._collections_failure = None
            return status, error_code

    def _session_for(self, request: Request, kind: str) -> Session | None:
        with self.lock:
            self.api_calls[kind] += 1
            if self._expire_after_calls is not None:
                if self._expire_after_calls <= 0:
                    self._expire_after_calls = None
                    self.sessions.expire_all()
                    log.info("Salesforce emulator: expired every session before a %s call, as a test requested", kind)
                else:
                    self._expire_after_calls -= 1
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() not in ("bearer", "oauth") or not token:
                return None
            return self.sessions.touch(token.strip())

    # -- records, for the sandbox runner and tests ------------------------------------------------

    def _object(self, object_name: str) -> ObjectDef:
        object_def = self.store.object_def(object_name)
        if object_def is None:
            raise KeyError(f"unknown Salesforce object {object_name!r}")
        return object_def

    def insert_records(self, object_name: str, records: Iterable[dict[str, Any]], *, enforce_unique: bool = True) -> list[str]:
        """Insert records given as field name -> Python or JSON value; return their ids in order.

        Raises ValueError naming the record's position and errors when a record is invalid. With
        `enforce_unique=False` duplicate unique values are allowed, so a test can set up an external
        id that matches more than one record.
        """
        object_def = self._object(object_name)
        user_id = self.sessions.user_id("sandbox-seed") or self.store.ids.new_id(USER_PREFIX)
        ids = []
        with self.lock:
            for position, record in enumerate(records):
                changes = {}
                for name, raw in record.items():
                    field_def = object_def.field(name)
                    if field_def is None:
                        raise ValueError(f"record {position}: {object_def.name} has no field {name!r}")
                    changes[field_def] = values.read_value(field_def, raw)
                if not enforce_unique:
                    unique_names = {field_def.name for field_def in object_def.unique_fields}
                    unique_values = {field_def: value for field_def, value in changes.items() if field_def.name in unique_names}
                    changes = {field_def: value for field_def, value in changes.items() if field_def.name not in unique_names}
                result = self.store.create(object_def, changes, user_id=user_id)
                if not result.success:
                    raise ValueError(f"record {position}: " + "; ".join(error.to_bulk() for error in result.errors))
                if not enforce_unique and unique_values:
                    self._force_values(object_def, result.id or "", unique_values)
                ids.append(result.id or "")
        return ids

    def _force_values(self, object_def: ObjectDef, record_id: str, changes: dict[Any, Any]) -> None:
        record = dict(self.store.get(object_def, record_id) or {})
        record.update({field_def.name: value for field_def, value in changes.items()})
        self.store._put(object_def, record, None)  # noqa: SLF001 - the store's own index upkeep

    def records(self, object_name: str) -> list[Record]:
        """Copies of every record of an object, field name -> stored Python value."""
        return self.store.copies(self._object(object_name))

    def delete_all_records(self, object_name: str) -> int:
        """Delete every record of an object, so a test can seed it again; return how many were deleted."""
        object_def = self._object(object_name)
        with self.lock:
            record_ids = [record["Id"] for record in self.store.copies(object_def)]
            for record_id in record_ids:
                self.store.delete(object_def, record_id)
        return len(record_ids)

    def purge_records(self, object_name: str, record_ids: Iterable[str]) -> None:
        """Delete records for good, as emptying the Recycle Bin does. Raise KeyError for an Id that is not live.

        A later update of a purged Id fails with INVALID_CROSS_REFERENCE_KEY, not ENTITY_IS_DELETED.
        """
        object_def = self._object(object_name)
        with self.lock:
            for record_id in record_ids:
                if not self.store.delete(object_def, record_id, hard=True).success:
                    raise KeyError(f"{object_def.name} has no live record {record_id}")

    def issued_tokens(self) -> list[str]:
        """Return every access token issued so far, live or expired, for secret leak scans."""
        return self.sessions.tokens()

    # -- fault hooks for tests --------------------------------------------------------------------

    @property
    def session_timeout_seconds(self) -> float:
        return self.sessions.timeout_seconds

    @session_timeout_seconds.setter
    def session_timeout_seconds(self, seconds: float) -> None:
        self.sessions.timeout_seconds = seconds

    def expire_session(self, token: str) -> None:
        self.sessions.expire(token)

    def expire_all_sessions(self) -> None:
        self.sessions.expire_all()

    def expire_sessions_after_calls(self, calls: int) -> None:
        """Expire every session once `calls` more API requests have been served (0: before the next)."""
        with self.lock:
            self._expire_after_calls = calls

    def fail_next_ingest_job(self, error_message: str = "InternalServerError : Job failed, as requested by the test") -> None:
        """Make the next ingest job that starts processing end Failed before writing any record."""
        self.fail_ingest_job_after(0, error_message)

    def fail_ingest_job_after(self, records: int, error_message: str = "InternalServerError : Job failed after partial processing") -> None:
        """Make the next ingest job end Failed after `records` records; the rest stay unprocessed."""
        with self.lock:
            self.bulk.faults.fail_plans.append((records, error_message))

    def fail_collections_request(
        self, after: int = 0, status: int = 503, error_code: str = "SERVER_UNAVAILABLE"
    ) -> None:
        """Make one sObject Collections request fail whole with HTTP `status`, writing none of its records.

        The first `after` Collections requests are served as usual and the next one fails; later
        ones are served again. The body is Salesforce's error list with `error_code`.
        """
        with self.lock:
            self._collections_failure = (after, status, error_code)

    def cancel_collections_failure(self) -> None:
        """Drop a scripted Collections failure that no request has met yet."""
        with self.lock:
            self._collections_failure = None

    def reject_records(
        self, external_ids: Iterable[str], message: str = "Rejected by a validation rule, as requested by the test"
    ) -> None:
        """Make Bulk API 2.0 upsert jobs fail the rows with these external ids, as a validation rule would.

        The rows end in the job's failed results with FIELD_CUSTOM_VALIDATION_EXCEPTION; other rows
        are written. Each call replaces the previous list, so an empty one ends the fault.
        """
        with self.lock:
            self.bulk.faults.rejected_keys = {match_key(key): message for key in external_ids}

    def lock_records(self, record_ids: Iterable[str]) -> None:
        """Lock records for editing, as an approval process does: updates and deletes of them fail.

        Every write path (REST, sObject Collections, Bulk API 2.0) then reports ENTITY_IS_LOCKED for
        them. Each call replaces the previous set, so an empty one unlocks every record.
        """
        with self.lock:
            self.store.locked_ids = {to_18(record_id) for record_id in record_ids}

    def set_processing_delay(self, seconds: float) -> None:
        """Hold every ingest job InProgress for `seconds` before it writes records."""
        with self.lock:
            self.bulk.faults.processing_delay_seconds = seconds

    def hold_uploads(self, seconds: float) -> None:
        """Hold every Bulk API 2.0 CSV upload (`PUT /jobs/ingest/{id}/batches`) open.

        The emulator has read the request body but neither stores it nor responds until
        `release_uploads()` is called or `seconds` pass, so a test can kill the client while its
        upload is in flight. `wait_for_held_upload` tells when the first upload arrived.
        """
        with self.lock:
            faults = self.bulk.faults
            if faults.upload_release is not None:
                faults.upload_release.set()
            faults.upload_release = threading.Event()
            faults.upload_hold_seconds = seconds
            faults.held_upload_jobs.clear()
            faults.upload_held.clear()

    def wait_for_held_upload(self, timeout: float) -> str | None:
        """Wait up to `timeout` seconds for an upload to be held, and return its job id (None if none was)."""
        if not self.bulk.faults.upload_held.wait(timeout):
            return None
        with self.lock:
            return self.bulk.faults.held_upload_jobs[0]

    def release_uploads(self) -> None:
        """Let held uploads continue (each is stored and gets its response) and stop holding new ones."""
        with self.lock:
            faults = self.bulk.faults
            if faults.upload_release is not None:
                faults.upload_release.set()
            faults.upload_release = None
            faults.upload_hold_seconds = 0.0

    def reset_api_calls(self) -> None:
        with self.lock:
            self.api_calls.clear()

    def wait_for_jobs(self, timeout: float = 10.0) -> None:
        """Wait for Bulk API worker threads to finish."""
        self.bulk.join_workers(timeout)
