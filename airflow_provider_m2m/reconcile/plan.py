"""Diff source rows against target records by external id, and plan the writes.

Memory: the target side is read first into one dict from external id to a single string, the
comparable forms of its fields joined by NUL, so a record costs its key, its field text and about a
hundred bytes of overhead, never a row dict. The source side is then streamed row by row. What the
plan keeps is the writes themselves (creates and the changed fields of updates), the keys of
rejected rows and the orphan keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from operator import call, itemgetter
from typing import Any

from airflow_provider_m2m.reconcile.mapping import NULL, FieldMapping, Mapping, Null
from airflow_provider_m2m.reconcile.normalize import (
    NULL_TEXT,
    Converter,
    InvalidValue,
    source_converter,
    target_converter,
)

log = logging.getLogger(__name__)

SEPARATOR = "\x00"  # no comparable form contains NUL: source text with NUL is rejected

# How many keys an error message lists before it says how many more there are.
MAX_KEYS_IN_MESSAGE = 20

WireValue = str | Null
Record = dict[str, WireValue]


class DuplicateKeyError(ValueError):
    """The source or the target has an external id more than once, so no write is planned.

    `side` is "source" or "target"; `keys` lists every repeated key, sorted.
    """

    def __init__(self, side: str, field_name: str, keys: list[str]) -> None:
        self.side = side
        self.field_name = field_name
        self.keys = keys
        shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
        more = f" and {len(keys) - MAX_KEYS_IN_MESSAGE} more" if len(keys) > MAX_KEYS_IN_MESSAGE else ""
        super().__init__(
            f"the {side} has {len(keys)} {field_name} value(s) more than once: {shown}{more}; "
            "nothing was written. Remove the duplicates and run again."
        )


class TargetRecordError(ValueError):
    """A target record lacks a mapped field or has a value that does not parse as its type."""


@dataclass(frozen=True)
class Rejection:
    """A source row that is never sent, because one of its values cannot be written as it is."""

    key: str
    error: str


@dataclass
class Plan:
    """The writes that make the target match the source, and the counts that account for every row.

    `creates` holds whole records; `updates` holds the key and only the fields that differ. Both map
    target field names to wire text or NULL, and both are sorted by key, so the same source and
    target give the same plan whatever order the rows arrived in. Every source row read ends in
    exactly one of creates, updates, `unchanged` or `rejected`.
    """

    mapping: Mapping
    creates: list[Record] = field(default_factory=list)
    updates: list[Record] = field(default_factory=list)
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    read_source: int = 0
    read_target: int = 0
    target_without_key: int = 0

    def counts(self) -> dict[str, int]:
        """Return the counts of the plan, with no record payloads."""
        return {
            "read_source": self.read_source,
            "read_target": self.read_target,
            "create": len(self.creates),
            "update": len(self.updates),
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
            "orphans": len(self.orphans),
            "target_without_key": self.target_without_key,
        }

    def iter_writes(self) -> Iterator[Record]:
        """Yield the records to upsert: the creates, then the updates."""
        yield from self.creates
        yield from self.updates

    @property
    def write_count(self) -> int:
        return len(self.creates) + len(self.updates)


def plan_changes(
    source_rows: Iterable[MappingABC[str, Any]],
    target_records: Iterable[MappingABC[str, Any]],
    mapping: Mapping,
    *,
    include_orphans: bool = False,
) -> Plan:
    """Compare source rows with target records by external id and return the plan.

    Reads all target records first, then streams the source rows. Raises DuplicateKeyError when
    either side has a key more than once, after reading that whole side so the error lists every
    repeated key, and before any write is possible. Raises TargetRecordError when a target record
    lacks a mapped field or holds a value that does not parse.

    A source row that lacks a mapped column (an absent value, not a null) neither compares nor
    writes that field, so the target keeps what it has there.

    Target records whose key is not in the source are always listed in `Plan.orphans`, sorted, and
    nothing is planned for them. `include_orphans=True` also logs each orphan key at INFO, for a
    run whose operator wants them in the task log.
    """
    plan = Plan(mapping=mapping)
    index = _read_target(target_records, mapping, plan)
    _stream_source(source_rows, mapping, index, plan)

    plan.orphans = sorted(key for key, packed in index.items() if packed is not None)
    if include_orphans:
        for key in plan.orphans:
            log.info("Only in the target: %s=%s", mapping.key.target, key)

    key_field = mapping.key.target
    plan.creates.sort(key=itemgetter(key_field))
    plan.updates.sort(key=itemgetter(key_field))
    plan.rejected.sort(key=lambda rejection: rejection.key)

    accounted = len(plan.creates) + len(plan.updates) + plan.unchanged + len(plan.rejected)
    if accounted != plan.read_source:
        # Unreachable unless this module has a bug; kept because a silent loss is worse than a stop.
        raise AssertionError(f"plan accounts for {accounted} of {plan.read_source} source rows")
    return plan


def _values_getter(names: list[str]) -> Callable[[MappingABC[str, Any]], tuple[Any, ...]]:
    """Return a function that reads the named values of a row as a tuple, in one C call."""
    if not names:
        return lambda row: ()
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    return itemgetter(*names)


def _read_target(
    target_records: Iterable[MappingABC[str, Any]], mapping: Mapping, plan: Plan
) -> dict[str, str | None]:
    """Index the target by key: key -> field values joined by SEPARATOR.

    Bulk API 2.0 query text is stored as it arrives, unconverted: Salesforce already writes most
    values in their comparable form, so a source row that matches it exactly is unchanged, and only
    a record that differs gets converted (in `_compare`). Records with values that are not text, as
    REST returns them, are converted here.
    """
    key_name = mapping.key.target
    convert_key = target_converter(mapping.key)
    fields = mapping.fields
    converters = [target_converter(f) for f in fields]
    read_values = _values_getter([f.target for f in fields])

    index: dict[str, str | None] = {}
    repeated: set[str] = set()
    count = 0
    for record in target_records:
        count += 1
        try:
            key = convert_key(record[key_name])
            values = read_values(record)
        except KeyError as err:
            raise TargetRecordError(
                f"target record {count} has no field {err.args[0]}; "
                "the target query must select every mapped field"
            ) from err
        except (ValueError, TypeError, ArithmeticError) as err:
            raise TargetRecordError(f"target record {count}: invalid external id {key_name}: {err}") from err
        if key == NULL_TEXT:
            plan.target_without_key += 1
            continue
        try:
            packed = SEPARATOR.join(values)
        except TypeError:
            packed = SEPARATOR.join(_convert_target_values(key_name, key, fields, converters, values))
        if key in index:
            repeated.add(key)
        index[key] = packed

    plan.read_target = count
    if repeated:
        raise DuplicateKeyError("target", key_name, sorted(repeated))
    log.info("Indexed %d target records (%d without %s)", count, plan.target_without_key, key_name)
    return index


def _convert_target_values(
    key_name: str, key: str, fields: tuple[FieldMapping, ...], converters: list[Converter], values: Sequence[Any]
) -> list[str]:
    """Convert the values of one target record; the error names the first field that does not parse."""
    parts = []
    for mapped, convert, value in zip(fields, converters, values):
        try:
            parts.append(convert(value))
        except (ValueError, TypeError, ArithmeticError) as err:
            raise TargetRecordError(
                f"target record {key_name}={key}: {mapped.target} has {value!r}, which is not a valid "
                f"{mapped.type.name} value"
            ) from err
    return parts


_ABSENT = object()


def _stream_source(
    source_rows: Iterable[MappingABC[str, Any]],
    mapping: Mapping,
    index: dict[str, str | None],
    plan: Plan,
) -> None:
    """Compare each source row with the index and add it to the plan.

    A matched key's index entry is set to None, which frees its text and marks it as seen, so a
    second source row with that key is a duplicate and the entries left at the end are orphans.
    """
    key_column = mapping.key.source
    key_name = mapping.key.target
    convert_key = source_converter(mapping.key)
    fields = mapping.fields
    targets = [f.target for f in fields]
    converters = [source_converter(f) for f in fields]
    target_converters = [target_converter(f) for f in fields]
    read_values = _values_getter([f.source for f in fields])

    new_keys: set[str] = set()
    repeated: set[str] = set()
    count = 0
    for row in source_rows:
        count += 1
        raw_key = row.get(key_column)
        try:
            key = convert_key(raw_key)
        except InvalidValue as err:
            plan.rejected.append(Rejection(_raw_key_text(raw_key, count), str(err)))
            continue

        current = index.get(key, _ABSENT)
        if current is None or (current is _ABSENT and key in new_keys):
            repeated.add(key)
            continue
        if current is _ABSENT:
            new_keys.add(key)
        else:
            index[key] = None

        try:
            try:
                values = read_values(row)
            except KeyError:
                parts = _convert_partial_row(row, fields, converters)
            else:
                if current is not _ABSENT:
                    # The common case, an unchanged row, costs one join and one comparison.
                    packed = SEPARATOR.join(map(call, converters, values))
                    if packed == current:
                        plan.unchanged += 1
                        continue
                    parts = packed.split(SEPARATOR) if fields else []
                else:
                    parts = list(map(call, converters, values))
        except InvalidValue as err:
            plan.rejected.append(Rejection(key, str(err)))
            continue

        if current is _ABSENT:
            plan.creates.append(_create_record(key_name, key, targets, parts))
            continue
        current_parts = current.split(SEPARATOR) if fields else []
        if len(current_parts) != len(parts):
            # Checked here rather than for every target record: a NUL inside a target value adds a
            # separator, so that record never equals a source row and always reaches this point.
            raise TargetRecordError(
                f"target record {key_name}={key}: a value contains a NUL character, "
                "which Salesforce text cannot hold"
            )
        try:
            update = _update_record(key_name, key, targets, parts, current_parts, target_converters)
        except (ValueError, TypeError, ArithmeticError) as err:
            raise TargetRecordError(_describe_target_error(key_name, key, fields, current_parts)) from err
        if len(update) > 1:
            plan.updates.append(update)
        else:
            plan.unchanged += 1  # the target text differed only in form, or only absent fields differ

    plan.read_source = count
    if repeated:
        raise DuplicateKeyError("source", key_name, sorted(repeated))
    log.info("Compared %d source rows", count)


def _describe_target_error(
    key_name: str, key: str, fields: tuple[FieldMapping, ...], values: Sequence[Any]
) -> str:
    """Name the first field of a target record whose value does not parse."""
    try:
        _convert_target_values(key_name, key, fields, [target_converter(f) for f in fields], values)
    except TargetRecordError as err:
        return str(err)
    return f"target record {key_name}={key}: a value does not parse"


def _raw_key_text(raw_key: Any, row_number: int) -> str:
    if raw_key is None or raw_key == "":
        return f"(source row {row_number}, no external id)"
    return str(raw_key)


def _convert_partial_row(
    row: MappingABC[str, Any], fields: tuple[FieldMapping, ...], converters: list[Converter]
) -> list[str | None]:
    """Convert a row that lacks some mapped columns; None marks an absent value."""
    parts: list[str | None] = []
    for mapped, convert in zip(fields, converters):
        if mapped.source in row:
            parts.append(convert(row[mapped.source]))
        else:
            parts.append(None)
    return parts


def _wire(text: str) -> WireValue:
    return NULL if text == NULL_TEXT else text


def _create_record(key_name: str, key: str, targets: list[str], parts: list[str | None]) -> Record:
    # Null fields are written as NULL rather than left out: if the record appeared in the target
    # after it was read, the upsert updates it, and the nulls still make it match the source.
    record: Record = {key_name: key}
    for target, text in zip(targets, parts):
        if text is not None:
            record[target] = _wire(text)
    return record


def _update_record(
    key_name: str,
    key: str,
    targets: list[str],
    parts: list[str | None],
    current: list[str],
    target_converters: list[Converter],
) -> Record:
    """Return the key and the fields whose source value differs from the target's.

    A target value that equals the source text is equal without conversion, because converting a
    comparable form gives it back unchanged; only the other target values are converted.
    """
    record: Record = {key_name: key}
    for target, text, existing, convert in zip(targets, parts, current, target_converters):
        if text is None or text == existing:
            continue
        if text != convert(existing):
            record[target] = _wire(text)
    return record
