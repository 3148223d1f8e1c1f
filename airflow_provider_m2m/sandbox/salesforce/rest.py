"""REST API resources under `/services/data/vXX.X/`: query, describe, sObject rows, upsert by
external id and sObject Collections (create, update, upsert and delete).

Failed requests return Salesforce's error list, `[{"message", "errorCode", "fields"}]`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from airflow_provider_m2m.sandbox.http import Request, Response
from airflow_provider_m2m.sandbox.salesforce import objects, soql, values
from airflow_provider_m2m.sandbox.salesforce.ids import QUERY_LOCATOR_PREFIX, is_valid_id
from airflow_provider_m2m.sandbox.salesforce.objects import FieldDef, ObjectDef
from airflow_provider_m2m.sandbox.salesforce.oauth import Session
from airflow_provider_m2m.sandbox.salesforce.store import ROLLED_BACK, Record, SaveResult, Store, UndoLog, match_key
from airflow_provider_m2m.sandbox.salesforce.values import RecordError

# A query returns at most this many records per page, the REST API's default batch size.
QUERY_PAGE_SIZE = 2000
MIN_QUERY_PAGE_SIZE = 200
# sObject Collections accept at most this many records per request.
MAX_COLLECTION_RECORDS = 200

NOT_FOUND = RecordError("NOT_FOUND", "The requested resource does not exist")
MISSING_ID = RecordError("MISSING_ARGUMENT", "Id not specified in an update call")


class ApiError(Exception):
    """A whole request that fails; `errors` become the response's error list."""

    def __init__(self, status: int, *errors: RecordError) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.status = status
        self.errors = errors

    def response(self) -> Response:
        return json_response(self.status, [error.to_api_error() for error in self.errors])


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = values.dumps(payload).encode("utf-8")
    return Response(status, body, {"Content-Type": "application/json;charset=UTF-8", **(headers or {})})


def parse_json_body(request: Request) -> Any:
    """Decode a JSON body, keeping numbers exact; a malformed body is a JSON_PARSER_ERROR."""
    try:
        return json.loads(request.body or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, RecordError("JSON_PARSER_ERROR", f"Unexpected character in JSON body: {err}")) from err


@dataclass
class _Cursor:
    """The remaining pages of a query, kept for `nextRecordsUrl`."""

    object_def: ObjectDef
    rows: list[tuple[str, Record]]
    page_size: int
    total_size: int
    version: str = ""
    key: str = field(default="")


class RestApi:
    """Handlers for the REST resources; every handler takes the request and the caller's session."""

    def __init__(self, store: Store, new_locator: Callable[[], str] | None = None) -> None:
        self.store = store
        self._cursors: dict[str, _Cursor] = {}
        self._new_locator = new_locator or (lambda: QUERY_LOCATOR_PREFIX + secrets.token_hex(6)[:12].upper())

    # -- helpers ----------------------------------------------------------------------------------

    def object_or_404(self, name: str) -> ObjectDef:
        object_def = self.store.object_def(name)
        if object_def is None:
            raise ApiError(404, NOT_FOUND)
        return object_def

    @staticmethod
    def record_url(version: str, object_def: ObjectDef, record_id: str) -> str:
        return f"/services/data/v{version}/sobjects/{object_def.name}/{record_id}"

    def record_json(self, version: str, object_def: ObjectDef, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"attributes": {"type": object_def.name, "url": self.record_url(version, object_def, record_id)}}
        for name, value in fields.items():
            body[name] = values.to_json_value(value)
        return body

    def read_changes(self, object_def: ObjectDef, body: Any) -> dict[FieldDef, Any]:
        """Convert a JSON record body to stored values; unknown fields and bad types fail the request."""
        if not isinstance(body, dict):
            raise ApiError(400, RecordError("JSON_PARSER_ERROR", "The request body must be a JSON object"))
        changes: dict[FieldDef, Any] = {}
        for name, raw in body.items():
            if name == "attributes":
                continue
            field_def = object_def.field(name)
            if field_def is None:
                message = f"No such column '{name}' on sobject of type {object_def.name}"
                raise ApiError(400, RecordError("INVALID_FIELD", message))
            try:
                changes[field_def] = values.read_value(field_def, raw)
            except values.ValueTypeError as err:
                raise ApiError(400, err.rest_error()) from err
        return changes

    @staticmethod
    def save_errors(result: SaveResult) -> ApiError:
        return ApiError(400, *result.errors)

    # -- query ------------------------------------------------------------------------------------

    def query(self, request: Request, session: Session) -> Response:
        text = request.query_value("q")
        if not text:
            raise ApiError(400, RecordError("MALFORMED_QUERY", "A query string has to be specified"))
        try:
            query = soql.parse(text, self.store)
            rows, total = soql.run(query, self.store)
        except soql.SoqlError as err:
            raise ApiError(400, RecordError(err.error_code, err.message)) from err
        if query.is_count:
            return json_response(200, {"totalSize": total, "done": True, "records": []})
        cursor = _Cursor(query.object_def, rows, self._page_size(request), total, request.params["version"])
        with self.store.lock:
            page = self._page(cursor, 0)
        return json_response(200, page)

    def query_more(self, request: Request, session: Session) -> Response:
        key, _, offset_text = request.params["locator"].rpartition("-")
        with self.store.lock:
            cursor = self._cursors.get(key)
            if cursor is None or not offset_text.isdigit():
                raise ApiError(400, RecordError("INVALID_QUERY_LOCATOR", "invalid query locator"))
            page = self._page(cursor, int(offset_text))
        return json_response(200, page)

    @staticmethod
    def _page_size(request: Request) -> int:
        # The header `Sforce-Query-Options: batchSize=N` sets the page size, within 200..2000.
        options = request.headers.get("Sforce-Query-Options", "")
        for option in options.split(","):
            name, _, value = option.strip().partition("=")
            if name == "batchSize" and value.isdigit():
                return max(MIN_QUERY_PAGE_SIZE, min(QUERY_PAGE_SIZE, int(value)))
        return QUERY_PAGE_SIZE

    def _page(self, cursor: _Cursor, offset: int) -> dict[str, Any]:
        """Build one page of query results; call with the store lock held."""
        page = cursor.rows[offset : offset + cursor.page_size]
        next_offset = offset + len(page)
        body: dict[str, Any] = {"totalSize": cursor.total_size, "done": next_offset >= len(cursor.rows)}
        if body["done"]:
            self._cursors.pop(cursor.key, None)
        else:
            if not cursor.key:
                cursor.key = self._new_locator()
                self._cursors[cursor.key] = cursor
            body["nextRecordsUrl"] = f"/services/data/v{cursor.version}/query/{cursor.key}-{next_offset}"
        body["records"] = [self.record_json(cursor.version, cursor.object_def, record_id, fields) for record_id, fields in page]
        return body

    # -- describe ---------------------------------------------------------------------------------

    def describe_global(self, request: Request, session: Session) -> Response:
        version = request.params["version"]
        sobjects = [
            {
                "name": object_def.name,
                "label": object_def.label,
                "labelPlural": object_def.label_plural,
                "keyPrefix": object_def.key_prefix,
                "custom": object_def.custom,
                "createable": True,
                "updateable": True,
                "deletable": True,
                "queryable": True,
                "urls": self._object_urls(version, object_def),
            }
            for object_def in self.store.object_defs
        ]
        return json_response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})

    @staticmethod
    def _object_urls(version: str, object_def: ObjectDef) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{object_def.name}"
        return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}

    def describe(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        body = {
            "name": object_def.name,
            "label": object_def.label,
            "labelPlural": object_def.label_plural,
            "keyPrefix": object_def.key_prefix,
            "custom": object_def.custom,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "fields": [describe_field(field_def) for field_def in object_def.fields],
            "urls": self._object_urls(request.params["version"], object_def),
        }
        return json_response(200, body)

    # -- single records ---------------------------------------------------------------------------

    def create(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        changes = self.read_changes(object_def, parse_json_body(request))
        result = self.store.create(object_def, changes, user_id=session.user_id)
        if not result.success:
            raise self.save_errors(result)
        return json_response(201, {"id": result.id, "success": True, "errors": []})

    def _fields_param(self, request: Request, object_def: ObjectDef) -> list[FieldDef]:
        names = request.query_value("fields")
        if not names:
            return list(object_def.fields)
        selected = []
        for name in names.split(","):
            field_def = object_def.field(name.strip())
            if field_def is None:
                message = f"No such column '{name.strip()}' on sobject of type {object_def.name}"
                raise ApiError(400, RecordError("INVALID_FIELD", message))
            selected.append(field_def)
        return selected

    def _record_response(self, request: Request, object_def: ObjectDef, record: Record) -> Response:
        fields = self._fields_param(request, object_def)
        selected = {field_def.name: record.get(field_def.name) for field_def in fields}
        return json_response(200, self.record_json(request.params["version"], object_def, record["Id"], selected))

    def get(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        with self.store.lock:
            record = self.store.get(object_def, request.params["id"])
            if record is None:
                raise ApiError(404, NOT_FOUND)
            return self._record_response(request, object_def, record)

    def update(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        changes = self.read_changes(object_def, parse_json_body(request))
        with self.store.lock:
            if self.store.get(object_def, request.params["id"]) is None:
                raise ApiError(404, NOT_FOUND)
            result = self.store.update(object_def, request.params["id"], changes, user_id=session.user_id)
        if not result.success:
            raise self.save_errors(result)
        return Response(204)

    def delete(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        result = self.store.delete(object_def, request.params["id"])
        if not result.success:
            raise ApiError(404, NOT_FOUND)
        return Response(204)

    def _external_field(self, object_def: ObjectDef, name: str) -> FieldDef:
        field_def = object_def.field(name)
        if field_def is None or not (field_def.external_id or field_def.name == "Id"):
            message = f"Provided external ID field does not exist or is not accessible: {name}"
            raise ApiError(404, RecordError("NOT_FOUND", message))
        return field_def

    def get_by_external_id(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        field_def = self._external_field(object_def, request.params["field"])
        value = unquote(request.params["value"])
        with self.store.lock:
            if field_def.name == "Id":
                record = self.store.get(object_def, value)
                matches = [record["Id"]] if record else []
            else:
                matches = self.store.find(object_def, field_def.name, value)
            if len(matches) > 1:
                return self._multiple_matches(request, object_def, matches)
            if not matches:
                raise ApiError(404, NOT_FOUND)
            return self._record_response(request, object_def, self.store.get(object_def, matches[0]) or {})

    def _multiple_matches(self, request: Request, object_def: ObjectDef, matches: list[str]) -> Response:
        # HTTP 300 Multiple Choices lists the URL of every matching record.
        return json_response(300, [self.record_url(request.params["version"], object_def, record_id) for record_id in matches])

    def upsert(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        field_def = self._external_field(object_def, request.params["field"])
        value = unquote(request.params["value"])
        changes = self.read_changes(object_def, parse_json_body(request))
        if field_def.name == "Id":
            result = self._upsert_by_id(object_def, value, changes, session)
        else:
            result = self.store.upsert(object_def, field_def, values.read_value(field_def, value), changes, user_id=session.user_id)
        if result.matched_ids:
            return self._multiple_matches(request, object_def, result.matched_ids)
        if not result.success:
            raise self.save_errors(result)
        # API v46.0 and later return a save result for an upsert, with 201 when it created the record.
        return json_response(201 if result.created else 200, result.to_result(with_created=True))

    def _upsert_by_id(self, object_def: ObjectDef, record_id: str, changes: dict[FieldDef, Any], session: Session) -> SaveResult:
        if not is_valid_id(record_id) or self.store.get(object_def, record_id) is None:
            raise ApiError(404, NOT_FOUND)
        return self.store.update(object_def, record_id, changes, user_id=session.user_id)

    # -- sObject Collections ----------------------------------------------------------------------

    def _collection_body(self, request: Request) -> tuple[bool, list[Any]]:
        body = parse_json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, RecordError("JSON_PARSER_ERROR", "The request body must have a records array"))
        records = body["records"]
        if len(records) > MAX_COLLECTION_RECORDS:
            message = f"record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"
            raise ApiError(400, RecordError("EXCEEDED_ID_LIMIT", message))
        return bool(body.get("allOrNone", False)), records

    def _record_type(self, record: Any) -> ObjectDef:
        attributes = record.get("attributes") if isinstance(record, dict) else None
        type_name = attributes.get("type") if isinstance(attributes, dict) else None
        if not type_name:
            raise ApiError(400, RecordError("INVALID_TYPE", "Must send a concrete entity type."))
        object_def = self.store.object_def(str(type_name))
        if object_def is None:
            raise ApiError(400, RecordError("INVALID_TYPE", f"sObject type '{type_name}' is not supported."))
        return object_def

    def collection_create(self, request: Request, session: Session) -> Response:
        all_or_none, records = self._collection_body(request)
        planned = []
        for record in records:
            object_def = self._record_type(record)
            if isinstance(record, dict) and "Id" in record:
                raise ApiError(400, RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ("Id",)))
            planned.append((object_def, self.read_changes(object_def, record)))
        undo: UndoLog = []
        with self.store.lock:
            results = [
                self.store.create(object_def, changes, user_id=session.user_id, undo=undo) for object_def, changes in planned
            ]
            results = self._apply_all_or_none(all_or_none, results, undo)
        return json_response(200, [result.to_result(with_created=False) for result in results])

    def collection_upsert(self, request: Request, session: Session) -> Response:
        object_def = self.object_or_404(request.params["object"])
        field_def = self._external_field(object_def, request.params["field"])
        all_or_none, records = self._collection_body(request)
        planned = []
        for record in records:
            self._record_type(record)
            changes = self.read_changes(object_def, record)
            planned.append((changes.get(field_def), changes))
        counts: dict[str, int] = {}
        for key_value, _ in planned:
            if key_value is not None:
                counts[match_key(key_value)] = counts.get(match_key(key_value), 0) + 1
        undo: UndoLog = []
        results = []
        with self.store.lock:
            for key_value, changes in planned:
                if key_value is not None and counts[match_key(key_value)] > 1:
                    message = f"Duplicate external id specified: {key_value}"
                    results.append(SaveResult.failed(RecordError("DUPLICATE_EXTERNAL_ID", message, (field_def.name,))))
                    continue
                results.append(self.store.upsert(object_def, field_def, key_value, changes, user_id=session.user_id, undo=undo))
            results = self._apply_all_or_none(all_or_none, results, undo)
        return json_response(200, [result.to_result(with_created=True) for result in results])

    def collection_update(self, request: Request, session: Session) -> Response:
        """Update up to 200 records, each named by its `id`, and return one save result per record, in order.

        An update never creates a record. A record in the Recycle Bin fails with ENTITY_IS_DELETED,
        another missing Id with INVALID_CROSS_REFERENCE_KEY and a record without an Id with
        MISSING_ARGUMENT. `allOrNone` (default false) rolls every update back when one fails.
        """
        all_or_none, records = self._collection_body(request)
        planned = []
        for record in records:
            object_def = self._record_type(record)
            # Field names in a JSON record are case-insensitive. The REST API Developer Guide's examples send `id`.
            record_id = next((str(value) for name, value in record.items() if name.lower() == "id" and value), None)
            fields = {name: value for name, value in record.items() if name.lower() != "id"}
            planned.append((object_def, record_id, self.read_changes(object_def, fields)))
        undo: UndoLog = []
        results = []
        with self.store.lock:
            for object_def, record_id, changes in planned:
                if record_id is None:
                    results.append(SaveResult.failed(MISSING_ID))
                    continue
                results.append(self.store.update(object_def, record_id, changes, user_id=session.user_id, undo=undo))
            results = self._apply_all_or_none(all_or_none, results, undo)
        return json_response(200, [result.to_result(with_created=False) for result in results])

    def collection_delete(self, request: Request, session: Session) -> Response:
        """Delete up to 200 records named by `ids` (comma-separated); one save result per id, in order.

        `allOrNone` (default false) rolls every deletion back when one fails.
        """
        ids = [item.strip() for item in (request.query_value("ids") or "").split(",") if item.strip()]
        if not ids:
            raise ApiError(400, RecordError("MISSING_ARGUMENT", "ids parameter is required"))
        if len(ids) > MAX_COLLECTION_RECORDS:
            message = f"record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"
            raise ApiError(400, RecordError("EXCEEDED_ID_LIMIT", message))
        all_or_none = (request.query_value("allOrNone") or "false").lower() == "true"
        undo: UndoLog = []
        with self.store.lock:
            results = [self._delete_any(record_id, undo) for record_id in ids]
            results = self._apply_all_or_none(all_or_none, results, undo)
        return json_response(200, [result.to_result(with_created=False) for result in results])

    def _delete_any(self, record_id: str, undo: UndoLog) -> SaveResult:
        """Delete a record of whichever object its key prefix names."""
        object_def = next(
            (object_def for object_def in self.store.object_defs if record_id.startswith(object_def.key_prefix)), None
        )
        if object_def is None or not is_valid_id(record_id):
            return SaveResult.failed(RecordError("MALFORMED_ID", f"malformed id {record_id}", ()))
        return self.store.delete(object_def, record_id, undo=undo)

    def _apply_all_or_none(self, all_or_none: bool, results: list[SaveResult], undo: UndoLog) -> list[SaveResult]:
        """With allOrNone, one failure rolls back every record and marks the others rolled back."""
        if not all_or_none or all(result.success for result in results):
            return results
        self.store.rollback(undo)
        return [result if not result.success else SaveResult.failed(ROLLED_BACK) for result in results]


def describe_field(field_def: FieldDef) -> dict[str, Any]:
    """Describe one field with the attributes the REST describe result carries."""
    is_text = field_def.type in objects.TEXT_TYPES
    return {
        "name": field_def.name,
        "label": field_def.label,
        "type": field_def.type,
        "soapType": objects.SOAP_TYPES[field_def.type],
        "length": field_def.length if is_text else 0,
        "byteLength": field_def.length * 3 if is_text else 0,
        "precision": field_def.precision,
        "scale": field_def.scale,
        "digits": 0,
        "nillable": field_def.nillable,
        "externalId": field_def.external_id,
        "unique": field_def.unique,
        "idLookup": field_def.name == "Id" or field_def.external_id,
        "caseSensitive": False,
        "custom": field_def.custom,
        "calculated": False,
        "defaultedOnCreate": field_def.type == objects.BOOLEAN or not field_def.createable,
        "createable": field_def.createable,
        "updateable": field_def.updateable,
        "filterable": field_def.filterable,
        "sortable": field_def.filterable,
        "nameField": field_def.name == "Name",
        "restrictedPicklist": field_def.restricted_picklist,
        "picklistValues": [
            {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}
            for value in field_def.picklist_values
        ],
        "referenceTo": [field_def.reference_to or "User"] if field_def.type == objects.REFERENCE else [],
    }
