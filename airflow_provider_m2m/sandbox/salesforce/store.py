"""The emulated org's records: an in-memory store behind the emulator's single lock.

Writes take values already converted to stored types (see `values.read_value`) and apply the
record-level rules a real org enforces: read-only fields, field limits, required fields, unique
and external id fields (matched case-insensitively, as Salesforce does for text by default), and
reference fields that must name a live record.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_m2m.sandbox.salesforce import values
from airflow_provider_m2m.sandbox.salesforce.ids import IdFactory, is_valid_id, to_18
from airflow_provider_m2m.sandbox.salesforce.objects import FieldDef, ObjectDef
from airflow_provider_m2m.sandbox.salesforce.values import RecordError

Record = dict[str, Any]
Clock = Callable[[], dt.datetime]

# Undo log of one all-or-none operation: (object name, record id, the record before the change or
# None when the change created it).
UndoLog = list[tuple[str, str, Record | None]]

# The error the API returns for an update or a delete of a record that an approval process has locked.
ENTITY_IS_LOCKED = RecordError("ENTITY_IS_LOCKED", "the entity is locked for editing")

# The error the API returns for a write to a record that is in the Recycle Bin.
ENTITY_IS_DELETED = RecordError("ENTITY_IS_DELETED", "entity is deleted")

ROLLED_BACK = RecordError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


@dataclass
class SaveResult:
    """Outcome of one record write, as save results report it."""

    id: str | None
    success: bool
    created: bool = False
    errors: list[RecordError] = field(default_factory=list)
    # Ids of every record an upsert's external id matched, when it matched more than one.
    matched_ids: list[str] = field(default_factory=list)

    @classmethod
    def failed(cls, *errors: RecordError, record_id: str | None = None) -> SaveResult:
        return cls(id=record_id, success=False, errors=list(errors))

    def to_result(self, *, with_created: bool) -> dict[str, Any]:
        """REST save result: `id` (absent on failure), `success`, `errors`, and `created` for upserts."""
        result: dict[str, Any] = {}
        if self.success or self.id:
            result["id"] = self.id
        result["success"] = self.success
        result["errors"] = [error.to_result() for error in self.errors]
        if with_created:
            result["created"] = self.created
        return result


def _utc_now() -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def match_key(value: Any) -> str:
    """Key under which unique and external id values are compared (case-insensitive text)."""
    return str(value).lower()


class Store:
    """Records of every object, keyed by id, with an index on unique and external id fields."""

    def __init__(self, object_defs: Iterable[ObjectDef], lock: threading.RLock, *, clock: Clock = _utc_now) -> None:
        self.lock = lock
        self.clock = clock
        self.ids = IdFactory()
        # Ids (18 characters) of records locked for editing, as an approval process locks them.
        self.locked_ids: set[str] = set()
        # Ids (18 characters) of deleted records that are in the Recycle Bin. An update of one of
        # them fails with ENTITY_IS_DELETED, and of any other missing Id with INVALID_CROSS_REFERENCE_KEY.
        self.recycle_bin: set[str] = set()
        self._objects: dict[str, ObjectDef] = {}
        self._records: dict[str, dict[str, Record]] = {}
        self._index: dict[str, dict[str, dict[str, set[str]]]] = {}
        for object_def in object_defs:
            self.add_object(object_def)

    # -- schema -----------------------------------------------------------------------------------

    def add_object(self, object_def: ObjectDef) -> None:
        with self.lock:
            self._objects[object_def.name.lower()] = object_def
            self._records[object_def.name] = {}
            self._index[object_def.name] = {
                field_def.name: {} for field_def in object_def.fields if field_def.unique or field_def.external_id
            }

    def object_def(self, name: str) -> ObjectDef | None:
        """Look an object up by API name, case-insensitively."""
        return self._objects.get(name.lower())

    @property
    def object_defs(self) -> list[ObjectDef]:
        return list(self._objects.values())

    # -- reads ------------------------------------------------------------------------------------

    def rows(self, object_def: ObjectDef) -> list[Record]:
        """Return the live records of an object in insertion order; call with the lock held and do not change them."""
        return list(self._records[object_def.name].values())

    def get(self, object_def: ObjectDef, record_id: str) -> Record | None:
        """Return the live record with this 15- or 18-character id, or None."""
        if not is_valid_id(record_id):
            return None
        return self._records[object_def.name].get(to_18(record_id))

    def copies(self, object_def: ObjectDef) -> list[Record]:
        with self.lock:
            return [copy.deepcopy(record) for record in self._records[object_def.name].values()]

    def find(self, object_def: ObjectDef, field_name: str, value: Any) -> list[str]:
        """Ids of records whose indexed field matches `value` case-insensitively, oldest first."""
        matches = self._index[object_def.name].get(field_name, {}).get(match_key(value), set())
        order = self._records[object_def.name]
        return sorted(matches, key=list(order).index) if len(matches) > 1 else list(matches)

    # -- index maintenance ------------------------------------------------------------------------

    def _unindex(self, object_def: ObjectDef, record: Record) -> None:
        for field_name, entries in self._index[object_def.name].items():
            value = record.get(field_name)
            if value is not None:
                entries.get(match_key(value), set()).discard(record["Id"])

    def _reindex(self, object_def: ObjectDef, record: Record) -> None:
        for field_name, entries in self._index[object_def.name].items():
            value = record.get(field_name)
            if value is not None:
                entries.setdefault(match_key(value), set()).add(record["Id"])

    def _put(self, object_def: ObjectDef, record: Record, undo: UndoLog | None) -> None:
        table = self._records[object_def.name]
        previous = table.get(record["Id"])
        if undo is not None:
            undo.append((object_def.name, record["Id"], copy.deepcopy(previous)))
        if previous is not None:
            self._unindex(object_def, previous)
        table[record["Id"]] = record
        self._reindex(object_def, record)

    def rollback(self, undo: UndoLog) -> None:
        """Undo the changes in `undo`, newest first."""
        with self.lock:
            for object_name, record_id, previous in reversed(undo):
                object_def = self._objects[object_name.lower()]
                current = self._records[object_name].pop(record_id, None)
                if current is not None:
                    self._unindex(object_def, current)
                if previous is not None:
                    self._records[object_name][record_id] = previous
                    self._reindex(object_def, previous)
                    self.recycle_bin.discard(record_id)
            undo.clear()

    # -- validation -------------------------------------------------------------------------------

    def _check_changes(
        self, object_def: ObjectDef, changes: dict[FieldDef, Any], existing: Record | None
    ) -> tuple[dict[str, Any], list[RecordError]]:
        """Validate field values, writability, required and unique fields; return the values to store."""
        errors: list[RecordError] = []
        accepted: dict[str, Any] = {}
        read_only = [
            field_def.name
            for field_def in changes
            if not (field_def.createable if existing is None else field_def.updateable)
        ]
        if read_only:
            operation = "create" if existing is None else "update"
            message = (
                f"Unable to {operation} fields: {', '.join(read_only)}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or permission set."
            )
            errors.append(RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", message, tuple(read_only)))
        for field_def, value in changes.items():
            stored, error = values.validate_value(field_def, value)
            if error is None and field_def.reference_to:
                error = self._check_reference(field_def, stored)
                if error is None and stored is not None:
                    stored = to_18(stored)  # an org stores and returns every Id in its 18-character form
            if error:
                errors.append(error)
            accepted[field_def.name] = stored

        merged = {**(existing or {}), **accepted}
        missing = [
            field_def.name
            for field_def in object_def.fields
            if field_def.required and field_def.createable and merged.get(field_def.name) is None
        ]
        if missing:
            message = f"Required fields are missing: [{', '.join(missing)}]"
            errors.insert(0, RecordError("REQUIRED_FIELD_MISSING", message, tuple(missing)))

        own_id = existing["Id"] if existing else None
        for field_def in object_def.unique_fields:
            value = accepted.get(field_def.name)
            if value is None:
                continue
            others = [record_id for record_id in self.find(object_def, field_def.name, value) if record_id != own_id]
            if others:
                message = f"duplicate value found: {field_def.name} duplicates value on record with id: {others[0]}"
                errors.append(RecordError("DUPLICATE_VALUE", message))
        return accepted, errors

    def _check_reference(self, field_def: FieldDef, value: Any) -> RecordError | None:
        """Return the error a real org gives for a reference to a record that is deleted or does not exist."""
        target = self.object_def(field_def.reference_to)
        if value is None or target is None:
            return None
        if not isinstance(value, str) or not is_valid_id(value):
            message = f"{field_def.label}: id value of incorrect type: {value}"
            return RecordError("MALFORMED_ID", message, (field_def.name,))
        if self.get(target, value) is not None:
            return None
        if to_18(value) in self.recycle_bin:
            return ENTITY_IS_DELETED
        return RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")

    # -- writes -----------------------------------------------------------------------------------

    def _blank_record(self, object_def: ObjectDef) -> Record:
        record: Record = {field_def.name: None for field_def in object_def.fields}
        for field_def in object_def.fields:
            if field_def.type == "boolean":
                record[field_def.name] = False
        return record

    def create(
        self, object_def: ObjectDef, changes: dict[FieldDef, Any], *, user_id: str, undo: UndoLog | None = None
    ) -> SaveResult:
        with self.lock:
            accepted, errors = self._check_changes(object_def, changes, None)
            if errors:
                return SaveResult.failed(*errors)
            now = self.clock()
            record = self._blank_record(object_def)
            record.update(accepted)
            record.update(
                {
                    "Id": self.ids.new_id(object_def.key_prefix),
                    "IsDeleted": False,
                    "CreatedDate": now,
                    "CreatedById": user_id,
                    "LastModifiedDate": now,
                    "LastModifiedById": user_id,
                    "SystemModstamp": now,
                }
            )
            self._put(object_def, record, undo)
            return SaveResult(id=record["Id"], success=True, created=True)

    def update(
        self,
        object_def: ObjectDef,
        record_id: str,
        changes: dict[FieldDef, Any],
        *,
        user_id: str,
        undo: UndoLog | None = None,
    ) -> SaveResult:
        with self.lock:
            existing = self.get(object_def, record_id)
            if existing is None:
                if not is_valid_id(record_id):
                    return SaveResult.failed(RecordError("MALFORMED_ID", f"Id: invalid id: {record_id}", ("Id",)))
                if to_18(record_id) in self.recycle_bin:
                    return SaveResult.failed(ENTITY_IS_DELETED)
                return SaveResult.failed(RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
            if existing["Id"] in self.locked_ids:
                return SaveResult.failed(ENTITY_IS_LOCKED, record_id=existing["Id"])
            accepted, errors = self._check_changes(object_def, changes, existing)
            if errors:
                return SaveResult.failed(*errors, record_id=existing["Id"])
            now = self.clock()
            record = {**existing, **accepted, "LastModifiedDate": now, "LastModifiedById": user_id, "SystemModstamp": now}
            self._put(object_def, record, undo)
            return SaveResult(id=record["Id"], success=True, created=False)

    def upsert(
        self,
        object_def: ObjectDef,
        external_field: FieldDef,
        external_value: Any,
        changes: dict[FieldDef, Any],
        *,
        user_id: str,
        undo: UndoLog | None = None,
    ) -> SaveResult:
        """Update the record whose external id matches, or create one with that external id."""
        with self.lock:
            if external_value is None or external_value == "":
                message = f"{external_field.name} not specified"
                return SaveResult.failed(RecordError("MISSING_ARGUMENT", message, (external_field.name,)))
            matches = self.find(object_def, external_field.name, external_value)
            if len(matches) > 1:
                message = f"More than 1 record found for External Id field: [{', '.join(matches)}]"
                result = SaveResult.failed(RecordError("DUPLICATE_EXTERNAL_ID", message, (external_field.name,)))
                result.matched_ids = matches
                return result
            if matches:
                # The external id in the key wins over one in the body, as the URL names the record.
                changes = {key: value for key, value in changes.items() if key.name != external_field.name}
                return self.update(object_def, matches[0], changes, user_id=user_id, undo=undo)
            return self.create(object_def, {**changes, external_field: external_value}, user_id=user_id, undo=undo)

    def delete(
        self, object_def: ObjectDef, record_id: str, *, undo: UndoLog | None = None, hard: bool = False
    ) -> SaveResult:
        """Delete a record into the Recycle Bin, or with `hard` for good, as a Bulk API 2.0 hardDelete does."""
        with self.lock:
            existing = self.get(object_def, record_id)
            if existing is None:
                if not is_valid_id(record_id):
                    return SaveResult.failed(RecordError("MALFORMED_ID", f"Id: invalid id: {record_id}", ("Id",)))
                return SaveResult.failed(ENTITY_IS_DELETED)
            if existing["Id"] in self.locked_ids:
                return SaveResult.failed(ENTITY_IS_LOCKED, record_id=existing["Id"])
            if undo is not None:
                undo.append((object_def.name, existing["Id"], copy.deepcopy(existing)))
            self._unindex(object_def, existing)
            del self._records[object_def.name][existing["Id"]]
            if not hard:
                self.recycle_bin.add(existing["Id"])
            return SaveResult(id=existing["Id"], success=True)
