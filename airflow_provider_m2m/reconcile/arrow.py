"""Diff Arrow tables: prove the unchanged rows in Arrow kernels, and plan the rest with `plan_changes`.

`plan_changes_arrow(source, target, mapping)` returns the plan that
`plan_changes(source.to_pylist(), target.to_pylist(), mapping)` returns, or raises the same error,
without a Python object per value for the rows that did not change.

1. For each source value whose type it can follow exactly, Arrow compute kernels write the text a
   Bulk API 2.0 query CSV holds for that value. A value it cannot follow gets a null text: a null
   in a required field, text that `normalize` would reject, a number with more digits than Python's
   decimal context holds, a datetime without a zone.
2. The two sides are joined by external id, and each source row's texts are compared with the
   target record's. A row whose texts all equal the target's is unchanged, as it is for
   `plan_changes`, whose first comparison is the same comparison of the same texts.
3. Every other source row, and every target record that no unchanged row matched, goes to
   `plan_changes` as Python dicts. It plans creates, updates, rejections and orphans as always.

When a precondition of this split fails, both whole tables go to `plan_changes`, which raises the
error or plans the rows one by one. Every mapped column must exist and have a type listed below. No
key may be null, empty or repeated on its side. When keys fold case, every key must be ASCII.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_m2m.reconcile.diff import SEPARATOR, plan_rows
from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.plan import Plan

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# normalize.py rounds in Python's default decimal context, whose precision is 28 digits.
_DECIMAL_DIGITS = 28
# Above this scale normalize.py writes Decimals with format(), and Arrow may write an exponent.
_PLAIN_SCALE = 6
_TIMESTAMP_UNITS = frozenset({"s", "ms", "us"})


def plan_changes_arrow(
    source: pa.Table, target: pa.Table, mapping: Mapping, *, include_orphans: bool = False
) -> Plan:
    """Compare a source table with a target table by external id and return the plan.

    `source` has typed columns, as BigQuery returns them. `target` has string columns, the text
    of a Bulk API 2.0 query CSV, with an empty string for null. Needs pyarrow.
    """
    import pyarrow as pa

    reason = _unsupported(source, target, mapping)
    if reason is None:
        try:
            plan = _plan_split(source, target, mapping, include_orphans)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            # A kernel rejected a value, such as a decimal that rounding would carry past its
            # precision. plan_changes applies normalize.py's rules to it instead.
            plan, reason = None, f"an Arrow kernel rejected a value: {err}"
        else:
            reason = (
                "a key is null, empty, repeated, longer than the key field, contains NUL, is not in NFC, "
                "or is not ASCII while keys fold case"
            )
        if plan is not None:
            return plan
    log.warning("Comparing all %d source rows one by one, which is slower: %s", source.num_rows, reason)
    return plan_rows(_rows(source), _rows(target), mapping, include_orphans=include_orphans)


# Rows converted to dicts in one step. plan_rows keeps no row dict, so only one batch is in memory.
_ROWS_PER_BATCH = 10_000


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Yield the rows of a table as dicts, in order, a batch at a time."""
    for batch in table.to_batches(max_chunksize=_ROWS_PER_BATCH):
        yield from batch.to_pylist()


def _unsupported(source: pa.Table, target: pa.Table, mapping: Mapping) -> str | None:
    """Return why the tables cannot be split by the Arrow kernels, or None when they can."""
    import pyarrow as pa

    for table, side in ((source, "source"), (target, "target")):
        if len(set(table.column_names)) != table.num_columns:
            return f"the {side} has two columns of one name"
    for column in mapping.source_columns():
        if column not in source.column_names:
            return f"the source has no column {column}"
    for name in mapping.target_fields():
        if name not in target.column_names:
            return f"the target has no field {name}"
        if target.schema.field(name).type not in (pa.string(), pa.large_string()):
            return f"the target field {name} is not text"
    if not mapping.key.type.is_text or not _is_text(source.schema.field(mapping.key.source).type):
        return "the external id is not text"
    for mapped in mapping.fields:
        if not _SOURCE_TYPES[mapped.type](source.schema.field(mapped.source).type):
            return f"the source column {mapped.source} has type {source.schema.field(mapped.source).type}"
    return None


def _plan_split(source: pa.Table, target: pa.Table, mapping: Mapping, include_orphans: bool) -> Plan | None:
    """Count the rows equal to the target's text and plan the others row by row.

    Returns None when a key needs plan_changes' rules.
    """
    import pyarrow.compute as pc

    found = _equal_rows(source, target, mapping)
    if found is None:
        return None
    same, claimed = found
    unchanged = len(claimed)
    changed = source.filter(pc.invert(same)) if unchanged else source
    others = _unclaimed(target, claimed)
    del same, claimed  # freed before plan_rows builds its index
    rest = plan_rows(_rows(changed), _rows(others), mapping, include_orphans=include_orphans, log_counts=False)
    rest.unchanged += unchanged
    rest.read_source = source.num_rows
    rest.read_target = target.num_rows
    log.info(
        "Compared %d source rows with %d target records: %d equal as text, %d compared one by one",
        source.num_rows,
        target.num_rows,
        unchanged,
        source.num_rows - unchanged,
    )
    return rest


def _equal_rows(source: pa.Table, target: pa.Table, mapping: Mapping) -> tuple[pa.Array, pa.Array] | None:
    """Return which source rows equal their target record as text, and those records' positions.

    Returns None when a key needs plan_changes' rules.
    """
    import pyarrow.compute as pc

    fold = not mapping.key_case_sensitive
    source_spellings = _combined(source.column(mapping.key.source))
    target_spellings = _combined(target.column(mapping.key.target))
    source_keys = _keys(source_spellings, mapping.key, fold, source=True)
    target_keys = _keys(target_spellings, mapping.key, fold, source=False)
    if source_keys is None or target_keys is None:
        return None

    positions = pc.index_in(source_keys, value_set=target_keys)  # null where the key is new
    same = pc.is_valid(positions)
    # Field by field, one column of texts at a time: taking one target column costs less than
    # joining each side's texts into one string per row, and only one column is held at once.
    for mapped in mapping.fields:
        texts = _query_texts(source.column(mapped.source), mapped)
        same = pc.and_(same, pc.equal(texts, pc.take(target.column(mapped.target), positions)))
    if fold:
        # A row spelling its key in another case is compared field by field in plan_changes.
        same = pc.and_(same, pc.equal(source_spellings, pc.take(target_spellings, positions)))
    same = pc.fill_null(same, False)
    return same, pc.filter(positions, same)


def _unclaimed(target: pa.Table, claimed: pa.Array) -> pa.Table:
    """Return the target records at no position in `claimed`, a list of distinct positions."""
    import pyarrow.compute as pc

    if not len(claimed):
        return target
    # inverse_permutation puts a value at each claimed position and a null everywhere else.
    return target.filter(pc.is_null(pc.inverse_permutation(claimed, max_index=target.num_rows - 1)))


def _combined(column: pa.ChunkedArray) -> pa.Array:
    import pyarrow as pa

    return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)


def _keys(spellings: pa.Array, key: FieldMapping, fold: bool, *, source: bool) -> pa.Array | None:
    """Return the keys as plan_changes compares them, or None when a key needs plan_changes' rules.

    Every source key must be present and valid. A target key may be empty: plan_changes counts
    that record as one without a key, and no source key equals it. No key may repeat on its side.
    """
    import pyarrow.compute as pc

    if spellings.null_count:
        return None
    present = pc.greater(pc.utf8_length(spellings), 0)
    if source:
        if not pc.all(present).as_py() or pc.any(_doubtful_text(spellings, key)).as_py():
            return None
    elif pc.any(pc.match_substring(spellings, SEPARATOR)).as_py():
        return None
    if pc.all(pc.string_is_ascii(spellings)).as_py() is False:
        # str.casefold and utf8_lower differ outside ASCII, and plan_changes matches a key that is
        # not in NFC with its NFC spelling.
        if fold or not pc.all(pc.equal(pc.utf8_normalize(spellings, "NFC"), spellings)).as_py():
            return None
    keys = pc.utf8_lower(spellings) if fold else spellings
    counted = keys if source else pc.filter(keys, present)
    if len(pc.unique(counted)) != len(counted):
        return None
    return keys


def _is_text(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return arrow_type in (pa.string(), pa.large_string())


# Query texts of source columns --------------------------------------------------------------------
#
# Each function returns the text a Bulk API 2.0 query CSV contains for each value, or null where
# the value must go through normalize.py's rules. A null never equals a target text.


def _query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    return _QUERY_TEXTS[field.type](column, field)


def _null_texts(column: pa.ChunkedArray, texts: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Write a null value as the empty text when the field allows null, and leave it null otherwise."""
    import pyarrow.compute as pc

    if not field.nullable or not column.null_count:
        return texts
    return pc.if_else(pc.is_null(column), "", texts)


def _doubtful_text(column: pa.ChunkedArray | pa.Array, field: FieldMapping) -> pa.ChunkedArray | pa.Array:
    """Mark the text values normalize.py might reject: NUL, or longer than the field in NFC.

    The length is counted in code points after NFC. NFC makes a text at most three times longer
    (Unicode Standard Annex #15, "Stabilized Strings"), so only text outside ASCII whose three-fold
    length exceeds the field's is normalised here to count. A text longer than the field before
    NFC is doubtful, because NFC may shorten it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        # Chunk by chunk, because replace_with_mask takes arrays, and joining the chunks would copy the text.
        return pa.chunked_array([_doubtful_text(chunk, field) for chunk in column.chunks], pa.bool_())
    doubtful = pc.fill_null(pc.match_substring(column, SEPARATOR), False)
    if field.length is None:
        return doubtful
    lengths = pc.utf8_length(column)
    too_long = pc.fill_null(pc.greater(lengths, field.length), False)
    may_grow = pc.and_(pc.invert(pc.string_is_ascii(column)), pc.greater(pc.multiply(lengths, 3), field.length))
    may_grow = pc.and_(pc.fill_null(may_grow, False), pc.invert(too_long))
    if pc.any(may_grow).as_py():
        grows = pc.greater(pc.utf8_length(pc.utf8_normalize(pc.filter(column, may_grow), "NFC")), field.length)
        may_grow = pc.replace_with_mask(may_grow, may_grow, grows)
    return pc.or_(doubtful, pc.or_(too_long, may_grow))


def _text_query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Return each text as it is.

    Text outside NFC equals the target's only when the target has the same form. normalize.py
    converts both sides to NFC, so it finds them equal too.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = column.cast(pa.string())
    doubtful = _doubtful_text(texts, field)
    if not field.nullable:
        doubtful = pc.or_(doubtful, pc.equal(texts, ""))  # normalize.py rejects an empty required value
    if pc.any(doubtful).as_py():
        texts = pc.if_else(doubtful, pa.scalar(None, pa.string()), texts)
    return _null_texts(column, texts, field)


def _decimal_query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Write each number rounded half away from zero to the field's scale, without trailing zeros.

    That is how the query writes numbers. A value that normalize.py rejects for too many digits is null.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(column.type):
        column = column.cast(pa.decimal128(38, 0))  # every 64-bit integer fits; the text is the same
    arrow_type = column.type
    # normalize.py rounds in 28 digits: at the field's scale a longer value fails, and without a
    # scale it is rounded. Larger values are set aside before rounding, which could overflow them.
    digits_scale = arrow_type.scale if field.scale is None else field.scale
    small = _below(column, _DECIMAL_DIGITS - digits_scale)
    if field.scale is None:
        scale = arrow_type.scale
        rounded = column
    else:
        scale = min(field.scale, arrow_type.scale)
        rounded = pc.round(_or_zero(column, small), field.scale, round_mode="half_towards_infinity")
        rounded = rounded.cast(_decimal_type(arrow_type, scale))
    texts = rounded.cast(pa.string())
    if scale > 0:
        texts = pc.utf8_rtrim(pc.utf8_rtrim(texts, characters="0"), characters=".")
    # Rounding may carry a value below the limit up to it.
    doubtful = pc.or_(pc.invert(small), pc.invert(_below(rounded, _DECIMAL_DIGITS - digits_scale)))
    if field.scale is None or scale > _PLAIN_SCALE:
        doubtful = pc.or_(doubtful, pc.match_substring(texts, "E"))
    texts = pc.if_else(pc.fill_null(doubtful, False), pa.scalar(None, pa.string()), texts)
    return _null_texts(column, texts, field)


def _decimal_type(arrow_type: pa.DataType, scale: int) -> pa.DataType:
    import pyarrow as pa

    make = pa.decimal256 if isinstance(arrow_type, pa.Decimal256Type) else pa.decimal128
    return make(arrow_type.precision, scale)


def _below(column: pa.ChunkedArray, power: int) -> pa.ChunkedArray:
    """Mark the decimals whose absolute value is below 10**power. A null is not marked."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # decimal256 can store the limit at any scale a column has.
    limit = pa.scalar(Decimal(10) ** power, pa.decimal256(76, column.type.scale))
    return pc.fill_null(pc.less(pc.abs(column), limit), False)


def _or_zero(column: pa.ChunkedArray, keep: pa.ChunkedArray) -> pa.ChunkedArray:
    """Replace the values not kept with zero, so that no kernel reads them. Nulls stay null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.if_else(pc.or_(keep, pc.is_null(column)), column, pa.scalar(Decimal(0), column.type))


def _integer_query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Write each integer's digits.

    A decimal keeps its digits when it is whole and has at most 28 of them, as normalize.py checks.
    Any other decimal is null.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(column.type):
        return _null_texts(column, column.cast(pa.string()), field)
    small = _below(column, _DECIMAL_DIGITS)
    candidates = _or_zero(column, small)
    keep = pc.and_(small, pc.fill_null(pc.equal(pc.round(candidates, 0), candidates), False))
    digits = _or_zero(column, keep).cast(_decimal_type(column.type, 0))
    texts = pc.if_else(keep, digits.cast(pa.string()), pa.scalar(None, pa.string()))
    return _null_texts(column, texts, field)


def _double_query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Write the shortest text that reads back as the same float, as Python's repr does.

    Arrow and Python both write the shortest round-trip digits. Arrow writes -0.0 as "-0", and
    large or small values with an exponent, so those values are null. With a scale, only values
    with at most `scale` decimals keep their text, because rounding them changes nothing.

    NOTE: that Arrow and Python pick the same digits was checked on about 300,000 random floats,
    not proven; a value where they differ would be planned as an update on every run.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = column.cast(pa.string())
    decimals = "+" if field.scale is None else f"{{0,{field.scale}}}"
    plain = pc.match_substring_regex(texts, rf"^-?[0-9]+(\.[0-9]{decimals})?$")
    keep = pc.and_(pc.fill_null(plain, False), pc.not_equal(texts, "-0"))
    texts = pc.if_else(pc.fill_null(keep, False), texts, pa.scalar(None, pa.string()))
    return _null_texts(column, texts, field)


def _boolean_query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Write "true" or "false". A checkbox has no null, so normalize.py writes null as "false"."""
    import pyarrow.compute as pc

    return pc.if_else(pc.fill_null(column, False), "true", "false")


def _date_query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Write each date as ISO 8601 "YYYY-MM-DD", for the years Python's date can store."""
    import pyarrow as pa

    days = column.cast(pa.date32())
    texts = _within_python_years(days, days.cast(pa.string()))
    return _null_texts(column, texts, field)


def _datetime_query_texts(column: pa.ChunkedArray, field: FieldMapping) -> pa.ChunkedArray:
    """Write each timestamp in UTC, floored to the second, as "YYYY-MM-DDTHH:MM:SS.000Z".

    A timestamp without a zone is null, because normalize.py rejects a naive datetime.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.type.tz is None:
        return pa.chunked_array([pa.nulls(len(column), pa.string())])
    seconds = pc.floor_temporal(column.cast(pa.timestamp(column.type.unit, tz="UTC")), 1, "second")
    seconds = seconds.cast(pa.timestamp("s", tz="UTC"))
    days = seconds.cast(pa.date32())
    times = seconds.cast(pa.time32("s"), safe=False)
    texts = pc.binary_join_element_wise(days.cast(pa.string()), "T", times.cast(pa.string()), ".000Z", "")
    texts = _within_python_years(days, texts)
    if column.type.tz != "UTC":
        # plan_changes receives the datetime in its own zone, which Python cannot store when the
        # local day falls outside years 1 to 9999, even if the UTC day does not.
        local_days = pc.floor_temporal(pc.local_timestamp(column), 1, "day").cast(pa.date32())
        texts = _within_python_years(local_days, texts)
    return _null_texts(column, texts, field)


def _within_python_years(days: pa.ChunkedArray, texts: pa.ChunkedArray) -> pa.ChunkedArray:
    """Replace with null the texts of days outside years 1 to 9999, which Python's date cannot store."""
    import datetime

    import pyarrow as pa
    import pyarrow.compute as pc

    inside = pc.and_(
        pc.greater_equal(days, pa.scalar(datetime.date.min, pa.date32())),
        pc.less_equal(days, pa.scalar(datetime.date.max, pa.date32())),
    )
    return pc.if_else(pc.fill_null(inside, True), texts, pa.scalar(None, pa.string()))


def _decimal_column(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return isinstance(arrow_type, (pa.Decimal128Type, pa.Decimal256Type)) and arrow_type.scale >= 0


def _number_column(arrow_type: pa.DataType) -> bool:
    """Accept an integer or a decimal column, whose digits a DECIMAL or INTEGER field stores as they are."""
    import pyarrow.types as types

    return types.is_integer(arrow_type) or _decimal_column(arrow_type)


def _any_boolean(arrow_type: pa.DataType) -> bool:
    import pyarrow.types as types

    return types.is_boolean(arrow_type)


def _any_date(arrow_type: pa.DataType) -> bool:
    import pyarrow.types as types

    return types.is_date32(arrow_type) or types.is_date64(arrow_type)


def _any_timestamp(arrow_type: pa.DataType) -> bool:
    import pyarrow.types as types

    return types.is_timestamp(arrow_type) and arrow_type.unit in _TIMESTAMP_UNITS


def _any_double(arrow_type: pa.DataType) -> bool:
    """Accept float64 only, because a float32 widened to a Python float has a longer text than Arrow's."""
    import pyarrow.types as types

    return types.is_float64(arrow_type)


_SOURCE_TYPES: dict[FieldType, Any] = {
    FieldType.DECIMAL: _number_column,
    FieldType.INTEGER: _number_column,
    FieldType.DOUBLE: _any_double,
    FieldType.BOOLEAN: _any_boolean,
    FieldType.DATE: _any_date,
    FieldType.DATETIME: _any_timestamp,
}
_QUERY_TEXTS: dict[FieldType, Any] = {
    FieldType.DECIMAL: _decimal_query_texts,
    FieldType.INTEGER: _integer_query_texts,
    FieldType.DOUBLE: _double_query_texts,
    FieldType.BOOLEAN: _boolean_query_texts,
    FieldType.DATE: _date_query_texts,
    FieldType.DATETIME: _datetime_query_texts,
}
for _text_type in FieldType:
    if _text_type.is_text:
        _SOURCE_TYPES[_text_type] = _is_text
        _QUERY_TEXTS[_text_type] = _text_query_texts
