"""Diff source rows against target records by external id, and plan the writes.

Memory: the target is read first into one dict from external id to a single string, its field
values joined by NUL. When keys fold case, the dict key is the folded key and the string ends with
the target's spelling of it. A record costs its key, its field text and roughly a hundred bytes of
overhead, never a row dict. The source is then streamed. Besides the index, the plan keeps only the
writes (creates, and the changed fields of updates), the rejected rows and the orphan keys.

Speed: rows are handled in chunks of CHUNK_ROWS. Within a chunk each field, the key included, is
converted as one column, with no Python call per value for the types a BigQuery client returns.
The rows whose text equals the target's are then found and marked in a few C-level passes, and
only the others (creates, updates, and values that differ from the target only in form) are
handled one by one. A chunk that needs special handling, such as a rejected value, an absent
column or a null key, goes row by row through the same rules.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Mapping as MappingABC
from itertools import compress, islice, repeat
from operator import add, eq, is_not, itemgetter, not_
from typing import Any

from airflow_provider_m2m.reconcile.mapping import NULL, Mapping
from airflow_provider_m2m.reconcile.normalize import (
    NULL_TEXT,
    Converter,
    InvalidValue,
    decimal_probe_column_converter,
    query_text_column_converter,
    source_column_converter,
    source_converter,
    target_converter,
    target_key_column_converter,
)
from airflow_provider_m2m.reconcile.plan import (
    DuplicateKeyError,
    Plan,
    Record,
    Rejection,
    TargetRecordError,
    WireValue,
)

log = logging.getLogger(__name__)

SEPARATOR = "\x00"  # no comparable form contains NUL, because source text with NUL is rejected

# Rows converted together. On the benchmark in benchmarks/, 256 was faster than both 64 and 4096:
# a small chunk's row dicts are still in the CPU cache when their columns are read.
CHUNK_ROWS = 256

_ABSENT = object()
_TARGET_ERRORS = (ValueError, TypeError, ArithmeticError)


def plan_changes(
    source_rows: Iterable[MappingABC[str, Any]],
    target_records: Iterable[MappingABC[str, Any]],
    mapping: Mapping,
    *,
    include_orphans: bool = False,
) -> Plan:
    """Compare source rows with target records by external id and return the plan.

    Reads all target records first, then streams the source rows. Raises DuplicateKeyError when
    either side has a key more than once. It reads that whole side first, so the error lists every
    repeated key, and it raises before any write is possible. Raises TargetRecordError when a
    target record lacks a mapped field or has a value that does not parse.

    A source row that lacks a mapped column (an absent value, not a null) neither compares nor
    writes that field, so the target keeps its value there.

    Target records whose key is not in the source are listed in `Plan.orphans`, sorted, and nothing
    is planned for them. `include_orphans=True` also logs each orphan key at INFO.

    Unless `mapping.key_case_sensitive` is set, text keys are compared after `str.casefold()`.
    A write then carries the source's spelling of its key, and an orphan the target's.
    """
    return plan_rows(source_rows, target_records, mapping, include_orphans=include_orphans)


def plan_rows(
    source_rows: Iterable[MappingABC[str, Any]],
    target_records: Iterable[MappingABC[str, Any]],
    mapping: Mapping,
    *,
    include_orphans: bool = False,
    log_counts: bool = True,
) -> Plan:
    """Plan as `plan_changes` does, for an engine that plans part of the rows itself.

    With `log_counts=False` it does not log how many rows it read, because they are not all of the
    run's rows.
    """
    plan = Plan(mapping=mapping)
    differ = _Differ(mapping, plan, log_counts=log_counts)
    differ.read_target(target_records)
    differ.read_source(source_rows)

    index = differ.index
    if differ.fold_keys:
        # An entry is never empty there, because it ends with a key, so filter drops only None.
        plan.orphans = sorted(map(_spelling_of, filter(None, index.values())))
    else:
        plan.orphans = sorted(compress(index.keys(), map(is_not, index.values(), repeat(None))))
    if include_orphans:
        for key in plan.orphans:
            log.info("Only in the target: %s=%s", mapping.key.target, key)

    key_name = mapping.key.target
    plan.creates.sort(key=itemgetter(key_name))
    plan.updates.sort(key=itemgetter(key_name))
    plan.rejected.sort(key=lambda rejection: rejection.key)

    accounted = len(plan.creates) + len(plan.updates) + plan.unchanged + len(plan.rejected)
    if accounted != plan.read_source:
        # Unreachable unless this module has a bug. A silent loss is worse than a stop.
        raise AssertionError(f"plan accounts for {accounted} of {plan.read_source} source rows")
    return plan


def _chunks(rows: Iterable[Any]) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, CHUNK_ROWS)):
        yield chunk


def _fold_key_column(keys: list[str]) -> list[str]:
    """Return the keys after `str.casefold()`, or the same list when folding changes none of them.

    Case folding maps each character on its own and keeps NUL, so folding the keys joined by NUL
    and splitting the result gives each folded key without a call per key.

    NOTE: Salesforce does not document which case mapping it uses. Full case folding also matches
    "STRASSE" with "straße", which the sandbox emulator's str.lower() keeps apart.
    """
    joined = SEPARATOR.join(keys)
    folded = joined.casefold()
    if folded == joined:
        return keys
    folded_keys = folded.split(SEPARATOR)
    if len(folded_keys) != len(keys):  # a key contains NUL
        return list(map(str.casefold, keys))
    return folded_keys


def _values_getter(names: list[str]) -> Callable[[MappingABC[str, Any]], tuple[Any, ...]]:
    """Return a function that reads the named values of a row as a tuple, in one C call."""
    if not names:
        return lambda row: ()
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    return itemgetter(*names)


class _Differ:
    """Build the target index, then compare source rows with it and fill in the plan.

    The index maps each target key to its field values joined by SEPARATOR. Bulk API 2.0 query text
    is stored as it arrives: Salesforce writes most values in their comparable form already, so a
    source row whose text equals it is unchanged, and only the fields that differ as text are
    converted (`_update_record`). Records whose values are not all text, as REST returns them, are
    converted when indexed. A matched key's entry is set to None, which frees its text and marks
    it as seen. A second source row with that key is then a duplicate, and the entries left at the
    end are the orphans.

    When keys fold case, the index and `new_keys` contain folded keys, and each index entry ends
    with the target's spelling of its key, for orphans and errors. A source row is then unchanged
    only if it also spells the key the same. A row that spells it differently is compared field by
    field in `_add`. A source key's spelling travels with its row into the plan.
    """

    def __init__(self, mapping: Mapping, plan: Plan, *, log_counts: bool = True) -> None:
        self.plan = plan
        self.log_counts = log_counts
        self.fields = mapping.fields
        self.key_name = mapping.key.target
        self.key_column = mapping.key.source
        self.fold_keys = mapping.key.type.is_text and not mapping.key_case_sensitive
        self.targets = [f.target for f in self.fields]
        self.sources = [f.source for f in self.fields]
        self.source_key = source_converter(mapping.key)
        self.target_key = target_converter(mapping.key)
        self.source_converters = [source_converter(f) for f in self.fields]
        self.source_key_column = source_column_converter(mapping.key)
        self.source_columns = [source_column_converter(f) for f in self.fields]
        self.query_text_columns = [query_text_column_converter(f) for f in self.fields]
        self.probe_columns = [decimal_probe_column_converter(f) for f in self.fields]
        self.target_key_column = target_key_column_converter(mapping.key)
        self.target_converters = [target_converter(f) for f in self.fields]
        self.read_source_values = _values_getter(self.sources)
        self.read_key_and_source_values = _values_getter([self.key_column, *self.sources])
        self.read_target_values = _values_getter(self.targets)
        self.read_target_values_and_key = _values_getter([*self.targets, self.key_name])

        self.index: dict[str, str | None] = {}
        self.new_keys: set[str] = set()
        self.repeated: set[str] = set()

    # Target -------------------------------------------------------------------------------------

    def read_target(self, records: Iterable[MappingABC[str, Any]]) -> None:
        plan = self.plan
        for chunk in _chunks(records):
            first_number = plan.read_target + 1
            plan.read_target += len(chunk)
            if not self._index_chunk(chunk):
                for number, record in enumerate(chunk, start=first_number):
                    self._index_record(record, number)

        if self.repeated:
            if self.fold_keys:
                repeated = sorted({_spelling_of(self.index[key]) for key in self.repeated})
            else:
                repeated = sorted(self.repeated)
            raise DuplicateKeyError("target", self.key_name, repeated, case_sensitive=not self.fold_keys)
        if self.log_counts:
            log.info(
                "Indexed %d target records (%d without %s)",
                plan.read_target,
                plan.target_without_key,
                self.key_name,
            )

    def _index_chunk(self, chunk: list[MappingABC[str, Any]]) -> bool:
        """Index a chunk of all-text records with keys; return False to have it indexed row by row."""
        try:
            raw_keys = list(map(itemgetter(self.key_name), chunk))
            keys = self.target_key_column(raw_keys)
            if not self.fold_keys:
                values = map(self.read_target_values, chunk)
            elif keys is raw_keys:
                # Each entry ends with the key as spelled, read in the same call as the values.
                values = map(self.read_target_values_and_key, chunk)
            else:
                values = map(add, map(self.read_target_values, chunk), zip(keys))
            packed = list(map(SEPARATOR.join, values))
        except (KeyError, *_TARGET_ERRORS):
            return False
        if NULL_TEXT in keys:
            return False
        if self.fold_keys:
            keys = _fold_key_column(keys)

        index = self.index
        size = len(index)
        index.update(zip(keys, packed))
        added = len(index) - size
        if added != len(keys):
            self._find_repeated(keys, added)
        return True

    def _find_repeated(self, keys: list[str], added: int) -> None:
        """Record the keys of a chunk that repeat within it or were indexed by an earlier chunk.

        An update keeps an existing key in its place, so the keys that the chunk added are the last
        `added` ones in insertion order. The chunk's other keys were indexed before it.
        """
        self.repeated.update(key for key, seen in Counter(keys).items() if seen > 1)
        self.repeated.update(set(keys) - set(islice(reversed(self.index), added)))

    def _index_record(self, record: MappingABC[str, Any], number: int) -> None:
        try:
            key = self.target_key(record[self.key_name])
            values = self.read_target_values(record)
        except KeyError as err:
            raise TargetRecordError(
                f"target record {number} has no field {err.args[0]}; "
                "the target query must select every mapped field"
            ) from err
        except _TARGET_ERRORS as err:
            raise TargetRecordError(f"target record {number}: invalid external id {self.key_name}: {err}") from err
        if key == NULL_TEXT:
            self.plan.target_without_key += 1
            return
        try:
            packed = SEPARATOR.join(values)
        except TypeError:
            packed = SEPARATOR.join(self._convert_target_values(key, values))
        if self.fold_keys:
            packed = f"{packed}{SEPARATOR}{key}" if self.fields else key
            key = key.casefold()
        if key in self.index:
            self.repeated.add(key)
        self.index[key] = packed

    def _convert_target_values(self, key: str, values: Sequence[Any]) -> list[str]:
        """Convert the values of one target record; the error names the first field that does not parse."""
        parts = []
        for mapped, convert, value in zip(self.fields, self.target_converters, values):
            try:
                parts.append(convert(value))
            except _TARGET_ERRORS as err:
                raise TargetRecordError(
                    f"target record {self.key_name}={key}: {mapped.target} has {value!r}, which is not "
                    f"a valid {mapped.type.name} value"
                ) from err
        return parts

    # Source -------------------------------------------------------------------------------------

    def read_source(self, rows: Iterable[MappingABC[str, Any]]) -> None:
        self.repeated = set()
        plan = self.plan
        for chunk in _chunks(rows):
            first_number = plan.read_source + 1
            plan.read_source += len(chunk)
            if not self._plan_chunk(chunk):
                for number, row in enumerate(chunk, start=first_number):
                    self._plan_row(row, number)

        if self.repeated:
            repeated = sorted(self.repeated)
            raise DuplicateKeyError("source", self.key_name, repeated, case_sensitive=not self.fold_keys)
        if self.log_counts:
            log.info("Compared %d source rows", plan.read_source)

    def _plan_chunk(self, chunk: list[MappingABC[str, Any]]) -> bool:
        """Plan a chunk whose rows all convert; return False to have it planned row by row."""
        try:
            # One call per row reads the key and every mapped column; zip turns the rows into columns.
            key_values, *values = zip(*map(self.read_key_and_source_values, chunk))
            spellings = self.source_key_column(key_values)
            columns, query_texts = self._convert_columns(values)
        except (KeyError, InvalidValue):
            return False
        if self.fold_keys:
            packed_rows = list(map(SEPARATOR.join, zip(*query_texts, spellings)))
            keys = _fold_key_column(spellings)
        elif columns:
            packed_rows = list(map(SEPARATOR.join, zip(*query_texts)))
            keys = spellings
        else:
            packed_rows = [""] * len(chunk)
            keys = spellings
        index = self.index
        positions: Iterable[int] = range(len(keys))
        if len(set(keys)) == len(keys):
            # Each key is in one row of the chunk, so the rows can be compared in any order: the
            # unchanged ones in a few C-level passes, and only the others one by one below.
            # index.get returns None for a key that is absent or already seen, and None never
            # equals text.
            same = list(map(eq, map(index.get, keys), packed_rows))
            unchanged = same.count(True)
            index.update(dict.fromkeys(compress(keys, same)))  # None marks each key as seen
            self.plan.unchanged += unchanged
            if unchanged == len(keys):
                return True
            positions = compress(positions, map(not_, same))

        for position in positions:
            key = keys[position]
            current = index.get(key, _ABSENT)
            if current == packed_rows[position]:  # None and _ABSENT never equal text
                index[key] = None
                self.plan.unchanged += 1
            elif self._claim(key, current, spellings[position]):
                try:
                    parts = self._parts_at(position, columns, values)
                except InvalidValue as err:
                    self.plan.rejected.append(Rejection(spellings[position], str(err)))
                    continue
                self._add(spellings[position], parts, current)
        return True

    def _convert_columns(
        self, values: list[Sequence[Any]]
    ) -> tuple[list[Sequence[str] | None], list[Sequence[str]]]:
        """Return the comparable texts and the query texts of a chunk's columns.

        Rows are compared with the target text in the form a Bulk API 2.0 query writes it, so that
        an unchanged row equals it as text. Equal texts there mean equal comparable forms. Where a
        probe replaces the query text, the comparable texts are left out (None) and
        `_parts_at` converts only the rows that need them.
        """
        columns: list[Sequence[str] | None] = []
        query_texts: list[Sequence[str]] = []
        for raw, probe, convert, rewrite in zip(
            values, self.probe_columns, self.source_columns, self.query_text_columns
        ):
            texts = None if probe is None else probe(raw)
            if texts is not None:
                columns.append(None)
                query_texts.append(texts)
                continue
            column = convert(raw)
            columns.append(column)
            query_texts.append(column if rewrite is None else rewrite(column))
        return columns, query_texts

    def _parts_at(
        self, position: int, columns: list[Sequence[str] | None], values: list[Sequence[Any]]
    ) -> list[str | None]:
        """Return the comparable texts of one row of a chunk; raises InvalidValue for a value it rejects."""
        return [
            convert(raw[position]) if column is None else column[position]
            for column, raw, convert in zip(columns, values, self.source_converters)
        ]

    def _plan_row(self, row: MappingABC[str, Any], number: int) -> None:
        raw_key = row.get(self.key_column)
        try:
            spelling = self.source_key(raw_key)
        except InvalidValue as err:
            self.plan.rejected.append(Rejection(_raw_key_text(raw_key, number), str(err)))
            return
        key = spelling.casefold() if self.fold_keys else spelling
        current = self.index.get(key, _ABSENT)
        if not self._claim(key, current, spelling):
            return
        try:
            try:
                values = self.read_source_values(row)
            except KeyError:
                parts = self._convert_partial_row(row)
            else:
                parts = [convert(value) for convert, value in zip(self.source_converters, values)]
        except InvalidValue as err:
            self.plan.rejected.append(Rejection(spelling, str(err)))
            return
        self._add(spelling, parts, current)

    def _claim(self, key: str, current: object, spelling: str) -> bool:
        """Mark a source key as seen; return False when an earlier source row had it.

        `spelling` is the key as the row wrote it, which the DuplicateKeyError lists.
        """
        if current is None or (current is _ABSENT and key in self.new_keys):
            self.repeated.add(spelling)
            return False
        if current is _ABSENT:
            self.new_keys.add(key)
        else:
            self.index[key] = None
        return True

    def _convert_partial_row(self, row: MappingABC[str, Any]) -> list[str | None]:
        """Convert a row that lacks some mapped columns; None marks an absent value."""
        parts: list[str | None] = []
        for column, convert in zip(self.sources, self.source_converters):
            parts.append(convert(row[column]) if column in row else None)
        return parts

    def _add(self, key: str, parts: list[str | None], current: Any) -> None:
        """Add a claimed source row to the plan as a create, an update or unchanged."""
        plan = self.plan
        if current is _ABSENT:
            plan.creates.append(_create_record(self.key_name, key, self.targets, parts))
            return

        if self.fold_keys:
            current = current.rpartition(SEPARATOR)[0]  # drops the target's spelling of the key
        current_parts = current.split(SEPARATOR) if self.fields else []
        if len(current_parts) != len(parts):
            # A NUL inside a target value adds a separator, so that record never equals a source
            # row and always reaches this check.
            raise TargetRecordError(
                f"target record {self.key_name}={key}: a value contains a NUL character, "
                "which Salesforce text cannot contain"
            )
        try:
            update = _update_record(self.key_name, key, self.targets, parts, current_parts, self.target_converters)
        except _TARGET_ERRORS as err:
            self._convert_target_values(key, current_parts)  # raises TargetRecordError naming the field
            raise TargetRecordError(f"target record {self.key_name}={key}: a value does not parse") from err
        if len(update) > 1:
            plan.updates.append(update)
        else:
            plan.unchanged += 1  # the target text differed only in form, or only in absent fields


def _spelling_of(entry: str) -> str:
    """Return the target's spelling of the key at the end of an index entry whose keys fold case."""
    return entry.rpartition(SEPARATOR)[2]


def missing_key_label(row_number: int) -> str:
    """Return how a plan names source row `row_number` (counted from 1) when it has no external id."""
    return f"(source row {row_number}, no external id)"


def _raw_key_text(raw_key: Any, row_number: int) -> str:
    if raw_key is None or raw_key == "":
        return missing_key_label(row_number)
    return str(raw_key)


def _wire(text: str) -> WireValue:
    return NULL if text == NULL_TEXT else text


def _create_record(key_name: str, key: str, targets: list[str], parts: list[str | None]) -> Record:
    # Null fields are written as NULL rather than left out. If the record appeared in the target
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

    A target value that equals the source text needs no conversion, because converting a
    comparable form returns it unchanged. Only the other target values are converted.
    """
    record: Record = {key_name: key}
    for target, text, existing, convert in zip(targets, parts, current, target_converters):
        if text is None or text == existing:
            continue
        if text != convert(existing):
            record[target] = _wire(text)
    return record

