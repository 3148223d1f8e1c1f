"""The columnar engine must plan exactly what the row engine plans.

`plan_changes_arrow` compares source and target tables in Arrow compute kernels where it can prove
the result, and hands the other rows to `plan_changes`. Every test here runs both engines on the
same data and requires equal plans, or the same exception type with the same message.

Source tables have the column types that BigQuery returns (string, int64, float64,
decimal128(38, 9) for NUMERIC, bool, date32, timestamp("us", "UTC") for TIMESTAMP, timestamp("us")
for DATETIME), and now and then another type. Target tables contain Bulk API 2.0 query CSV text, with
an empty string for null.

The random tests build a few hundred rows per seed. Most target records equal their source row as
text, so the columnar comparison decides most rows, and the rest carry the values where the two
engines could part. When a seed fails, the failure message shows the smallest tables that still
differ, found by removing rows and fields.
"""

from __future__ import annotations

import math
import random
import struct
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from unittest import mock

import pyarrow as pa
import pytest

from airflow_provider_m2m.reconcile import FieldMapping, FieldType, InvalidValue, Mapping, Plan, plan_changes
from airflow_provider_m2m.reconcile import arrow as arrow_module
from airflow_provider_m2m.reconcile.arrow import plan_changes_arrow
from airflow_provider_m2m.reconcile.normalize import source_converter

NUMERIC = pa.decimal128(38, 9)  # BigQuery NUMERIC
BIGNUMERIC = pa.decimal256(76, 38)
TIMESTAMP = pa.timestamp("us", tz="UTC")  # BigQuery TIMESTAMP
NAIVE_TIMESTAMP = pa.timestamp("us")  # BigQuery DATETIME
TEXT_TYPES = [kind for kind in FieldType if kind.is_text]  # in declaration order, for stable test ids
SEEDS = range(30)


# Comparing the engines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Raised:
    """An exception an engine raised, compared by type and message."""

    type: type
    message: str


def outcome_of(call: Callable[[], Plan]) -> Plan | Raised:
    try:
        return call()
    except Exception as err:  # noqa: BLE001 - the engines must raise alike, whatever they raise
        return Raised(type(err), str(err))


def row_engine_outcome(source: pa.Table, target: pa.Table, mapping: Mapping, include_orphans: bool) -> Plan | Raised:
    return outcome_of(
        lambda: plan_changes(source.to_pylist(), target.to_pylist(), mapping, include_orphans=include_orphans)
    )


def describe_difference(expected: Plan | Raised, actual: Plan | Raised) -> str:
    """Return the first part in which two outcomes differ, shortened for a failure message."""
    if isinstance(expected, Raised) or isinstance(actual, Raised):
        return f"plan_changes gave {_short(expected)}, plan_changes_arrow gave {_short(actual)}"
    lines = []
    if expected.counts() != actual.counts():
        lines.append(f"counts: expected {expected.counts()}, got {actual.counts()}")
    for name in ("creates", "updates", "rejected", "orphans"):
        expected_items, actual_items = getattr(expected, name), getattr(actual, name)
        if expected_items != actual_items:
            for position, (one, other) in enumerate(zip(expected_items, actual_items)):
                if one != other:
                    lines.append(f"{name}[{position}]: expected {one!r}, got {other!r}")
                    break
            else:
                lines.append(f"{name}: expected {len(expected_items)} items, got {len(actual_items)}")
    return "; ".join(lines) or "plans differ in a field outside counts, writes, rejections and orphans"


def _short(outcome: Plan | Raised) -> str:
    if isinstance(outcome, Raised):
        return f"{outcome.type.__name__}: {outcome.message[:300]}"
    return f"a plan with counts {outcome.counts()}"


def assert_same_plan(
    source: pa.Table, target: pa.Table, mapping: Mapping, *, include_orphans: bool = False
) -> Plan | Raised:
    """Assert that both engines return equal plans or raise alike, and return the row engine's outcome."""
    expected = row_engine_outcome(source, target, mapping, include_orphans)
    actual = outcome_of(lambda: plan_changes_arrow(source, target, mapping, include_orphans=include_orphans))
    assert actual == expected, describe_difference(expected, actual)
    return expected


@dataclass
class RowEngineCall:
    """The rows that the columnar engine handed to the row engine in one call."""

    source_rows: list[dict[str, Any]]
    target_records: list[dict[str, Any]]


@contextmanager
def calls_to_row_engine() -> Iterator[list[RowEngineCall]]:
    """Record each call of the columnar engine to `plan_rows`, the row engine it delegates to."""
    calls: list[RowEngineCall] = []
    real_plan_rows = arrow_module.plan_rows

    def record(source_rows: Any, target_records: Any, *args: Any, **kwargs: Any) -> Plan:
        call = RowEngineCall(list(source_rows), list(target_records))
        calls.append(call)
        return real_plan_rows(call.source_rows, call.target_records, *args, **kwargs)

    with mock.patch.object(arrow_module, "plan_rows", side_effect=record):
        yield calls


# Query text of a source value --------------------------------------------------------------------


def query_text(mapped: FieldMapping, value: Any) -> str | None:
    """Return the text a Bulk API 2.0 query writes for the stored value, or None if it is rejected."""
    try:
        text = source_converter(mapped)(value)
    except InvalidValue:
        return None
    if mapped.type is FieldType.DECIMAL and mapped.scale and "." in text:
        text = text.rstrip("0").rstrip(".")  # a query writes 1200.5 for 1200.50
    return text


def other_forms(mapped: FieldMapping, text: str) -> list[str]:
    """Return texts of the same Salesforce value in forms that a query does not write."""
    kind = mapped.type
    if kind is FieldType.BOOLEAN:
        return [text.upper(), {"true": "1", "false": "0"}[text], *([""] if text == "false" else [])]
    if text == "":
        return []
    if kind is FieldType.DECIMAL:
        padded = text + ("0" if "." in text else ".0")
        return [padded, format(Decimal(text), "E"), *([] if text.startswith("-") else ["+" + text, "0" + text])]
    if kind is FieldType.INTEGER:
        return [text + ".0", f"{text}E0", *([] if text.startswith("-") else ["0" + text])]
    if kind is FieldType.DOUBLE:
        return [format(float(text), "E"), *([text + ".0"] if "." not in text else [])]
    if kind is FieldType.DATE:
        return [text.replace("-", "")]  # ISO 8601 basic format
    if kind is FieldType.DATETIME:
        return [text[:-1] + "+0000", text[:19] + "Z", text[:19] + "+00:00"]  # REST and other ISO forms
    decomposed = unicodedata.normalize("NFD", text)
    return [decomposed] if decomposed != text else []


def near_misses(mapped: FieldMapping, value: Any) -> list[str]:
    """Return texts that a converter could produce for the value by a plausible mistake.

    Those are another rounding, the digits as they are, the second rounded up, the wall-clock time
    of another zone, the next day, and text kept although the field rejects it. No text contains
    NUL, which would make the row engine raise.
    """
    kind = mapped.type
    texts: list[str] = []
    if value is None:
        texts = {FieldType.BOOLEAN: ["false"], FieldType.DECIMAL: ["0"], FieldType.INTEGER: ["0"]}.get(kind, [])
    elif kind is FieldType.DECIMAL and isinstance(value, Decimal) and value.is_finite():
        texts = [_trimmed(format(value, "f"))]
        if mapped.scale is not None:
            quantum = Decimal(1).scaleb(-mapped.scale)
            for rounding in (ROUND_HALF_EVEN, ROUND_HALF_DOWN, ROUND_DOWN, ROUND_CEILING, ROUND_FLOOR):
                try:
                    texts.append(_trimmed(format(value.quantize(quantum, rounding), "f")))
                except InvalidOperation:
                    pass
    elif kind is FieldType.DOUBLE and isinstance(value, float):
        texts = [repr(value), format(value, ".15g"), format(value, ".17g")]
    elif kind is FieldType.DATETIME and isinstance(value, datetime):
        texts = [_utc_text(value.replace(tzinfo=None))]  # the wall-clock time, not UTC
        if value.tzinfo is not None and value.utcoffset() is not None:
            try:
                texts.append(_utc_text((value + timedelta(microseconds=999_999)).astimezone(UTC)))  # rounded up
            except OverflowError:
                pass
    elif kind is FieldType.DATE and isinstance(value, datetime):
        texts = [value.date().isoformat()]
    elif kind is FieldType.DATE and isinstance(value, date) and value < date.max:
        texts = [(value + timedelta(days=1)).isoformat()]
    elif kind.is_text and isinstance(value, str):
        texts = [value, value.strip()]
        if mapped.length:
            texts.append(unicodedata.normalize("NFC", value)[: mapped.length])
    return [text for text in dict.fromkeys(texts) if "\x00" not in text]


def _utc_text(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + ".000Z"


def _trimmed(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


UNPARSEABLE = {
    FieldType.DECIMAL: ["1,5", "abc", "1.2.3"],
    FieldType.INTEGER: ["forty", "4 2"],
    FieldType.DOUBLE: ["n/a", "1,5"],
    FieldType.BOOLEAN: ["yes", "maybe"],
    FieldType.DATE: ["02/01/2024", "2024-1-2x"],
    FieldType.DATETIME: ["yesterday", "2024-01-02T25:00:00Z"],
}
# The row engine raises TargetRecordError for a target record with NUL when it compares that record.
TEXT_WITH_NUL = "a\x00b"


# Source values -----------------------------------------------------------------------------------


def random_text(rng: random.Random, length: int | None = None) -> str:
    text = f"{rng.choice(['Acme', 'Zoë', 'Ωmega', 'Smith & Co', 'Łódź'])} {rng.randint(0, 999)}"
    return text[-length:] if length else text


def random_decimal(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(-(10**9), 10**9)).scaleb(-rng.randint(0, 6))


def random_double(rng: random.Random) -> float:
    return round(rng.uniform(-1e5, 1e5), rng.randint(0, 5))


def random_date(rng: random.Random) -> date:
    return date(1950, 1, 1) + timedelta(days=rng.randint(0, 40_000))


def random_moment(rng: random.Random) -> datetime:
    moment = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 40 * 365 * 86_400))
    return moment.replace(microsecond=rng.choice([0, 0, 1, 500_000, 999_999, rng.randint(0, 999_999)]))


def awkward_texts(mapped: FieldMapping) -> list[Any]:
    values: list[Any] = [None, "", "e\u0301", "é", "Zoe\u0308", "\u212b", "\u1100\u1161", " padded ", "ß", "😀"]
    values.append(TEXT_WITH_NUL)
    if mapped.length is not None:
        values += ["x" * mapped.length, "x" * (mapped.length + 1), "e\u0301" * mapped.length]
    else:
        values.append("y" * 300)
    return values


def decimal_ties(scale: int | None) -> list[Decimal]:
    """Return values halfway between two steps of `scale`, both signs, within NUMERIC's 9 decimals."""
    if scale is None or scale >= 9:
        return [Decimal("1.000000005"), Decimal("-1.000000005")]
    half = Decimal(5).scaleb(-(scale + 1))
    return [Decimal("1") + half, -(Decimal("1") + half), Decimal("2.67") + half, -(Decimal("0") + half)]


def awkward_decimals(mapped: FieldMapping) -> list[Any]:
    return [
        None,
        Decimal("0"),
        Decimal("1200.5"),
        Decimal("-0.001"),  # rounds to a negative zero at scale 2
        Decimal("-0.000000001"),
        Decimal("0.000000001"),
        Decimal("1.005"),
        Decimal("-1.005"),
        Decimal("-2.675"),
        Decimal("99999999999999999999999999999.999999999"),  # 38 digits, more than a context's 28
        Decimal("-12345678901234567890.123456789"),  # 29 digits
        Decimal("1234567890123456789.123456789"),  # 28 digits
        Decimal("12345678901234567890123456789"),
        *decimal_ties(mapped.scale),
    ]


AWKWARD_INTEGERS = [None, 0, -1, 2**63 - 1, -(2**63), 10**15, 7]
AWKWARD_DOUBLES = [
    None,
    0.0,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    1e16,
    1.5e-7,
    1e300,
    5e-324,
    0.1 + 0.2,
    2.675,
    1.005,
    0.125,
    0.5,
    1.5,
    2.5,
    -2.5,
    123456789012345678.0,
    1.0000000000000002,
]
AWKWARD_DATES = [None, date(1, 1, 1), date(9999, 12, 31), date(1970, 1, 1), date(1969, 12, 31), date(2000, 2, 29)]
AWKWARD_MOMENTS = [
    None,
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1960, 6, 15, 12, 0, 0, 500_000, tzinfo=UTC),
    datetime(2000, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
]


@dataclass(frozen=True)
class ColumnSpec:
    """A mapped field, the Arrow type of its source column, and how to draw its values."""

    mapped: FieldMapping
    arrow_type: pa.DataType
    usual: Callable[[random.Random], Any]
    awkward: Sequence[Any]


def canonical_spec(mapped: FieldMapping) -> ColumnSpec:
    """Return the spec with the column type that BigQuery returns for the field's usual source type."""
    kind = mapped.type
    if kind.is_text:
        return ColumnSpec(mapped, pa.string(), lambda rng: random_text(rng, mapped.length), awkward_texts(mapped))
    if kind is FieldType.DECIMAL:
        return ColumnSpec(mapped, NUMERIC, random_decimal, awkward_decimals(mapped))
    if kind is FieldType.INTEGER:
        return ColumnSpec(mapped, pa.int64(), lambda rng: rng.randint(-(10**6), 10**6), AWKWARD_INTEGERS)
    if kind is FieldType.DOUBLE:
        return ColumnSpec(mapped, pa.float64(), random_double, AWKWARD_DOUBLES)
    if kind is FieldType.BOOLEAN:
        return ColumnSpec(mapped, pa.bool_(), lambda rng: rng.random() < 0.5, [None, True, False])
    if kind is FieldType.DATE:
        return ColumnSpec(mapped, pa.date32(), random_date, AWKWARD_DATES)
    return ColumnSpec(mapped, TIMESTAMP, random_moment, AWKWARD_MOMENTS)


def other_type_specs(mapped: FieldMapping) -> list[ColumnSpec]:
    """Return specs whose source column has a type other than the usual one for the field."""
    kind = mapped.type
    integers = lambda rng: rng.randint(-1000, 1000)  # noqa: E731
    if kind.is_text:
        return [
            ColumnSpec(mapped, pa.int64(), integers, [None, 0, -5]),
            ColumnSpec(mapped, pa.large_string(), lambda rng: random_text(rng, mapped.length), awkward_texts(mapped)),
        ]
    if kind is FieldType.DECIMAL:
        return [
            ColumnSpec(mapped, pa.int64(), integers, [None, 0, 2**63 - 1]),
            ColumnSpec(mapped, pa.float64(), random_double, AWKWARD_DOUBLES),
            ColumnSpec(mapped, pa.string(), lambda rng: str(random_decimal(rng)), [None, "", " 1.5 ", "abc", "1E+3"]),
            ColumnSpec(mapped, pa.decimal128(18, 2), lambda rng: Decimal(rng.randint(-9999, 9999)).scaleb(-2), [None]),
            ColumnSpec(mapped, BIGNUMERIC, random_decimal, [None, Decimal("0.5")]),
        ]
    if kind is FieldType.INTEGER:
        return [
            ColumnSpec(mapped, NUMERIC, lambda rng: Decimal(integers(rng)), [None, Decimal("42.5"), Decimal("-0")]),
            ColumnSpec(mapped, pa.float64(), lambda rng: float(integers(rng)), [None, 42.5, float("nan"), -0.0]),
            ColumnSpec(mapped, pa.string(), lambda rng: str(integers(rng)), [None, "", "042", "x", "4.0"]),
            ColumnSpec(mapped, pa.int32(), integers, [None, 2**31 - 1]),
        ]
    if kind is FieldType.DOUBLE:
        return [
            ColumnSpec(mapped, pa.int64(), integers, [None, 2**63 - 1, 2**53 + 1]),
            ColumnSpec(mapped, NUMERIC, random_decimal, awkward_decimals(mapped)),
            ColumnSpec(mapped, pa.float32(), lambda rng: float(integers(rng)) / 4, [None, 0.1, float("nan")]),
        ]
    if kind is FieldType.BOOLEAN:
        texts = lambda rng: rng.choice(["true", "FALSE", " 1 ", "0"])  # noqa: E731
        return [ColumnSpec(mapped, pa.string(), texts, [None, "", "yes"])]
    if kind is FieldType.DATE:
        return [
            ColumnSpec(
                mapped, pa.string(), lambda rng: random_date(rng).isoformat(), [None, "", "2024-1-2", " 2024-01-02 "]
            ),
            ColumnSpec(mapped, TIMESTAMP, random_moment, [None]),
        ]
    return [
        ColumnSpec(mapped, NAIVE_TIMESTAMP, lambda rng: random_moment(rng).replace(tzinfo=None), [None]),
        ColumnSpec(mapped, pa.timestamp("us", tz="+05:30"), random_moment, [None]),
        ColumnSpec(mapped, pa.timestamp("us", tz="Europe/Paris"), random_moment, [None]),
        ColumnSpec(mapped, pa.timestamp("ms", tz="UTC"), random_moment, [None, AWKWARD_MOMENTS[4]]),
        ColumnSpec(mapped, pa.timestamp("s", tz="UTC"), random_moment, [None]),
        ColumnSpec(
            mapped,
            pa.string(),
            lambda rng: random_moment(rng).isoformat(),
            [None, "", "2024-01-02T03:04:05", "2024-01-02T03:04:05Z", "garbage"],
        ),
        ColumnSpec(mapped, pa.date32(), random_date, [None]),
    ]


# Random cases ------------------------------------------------------------------------------------


@dataclass
class Case:
    """Source and target rows with their Arrow schemas, and the mapping that compares them."""

    mapping: Mapping
    source_schema: pa.Schema
    source_rows: list[dict[str, Any]]
    target_schema: pa.Schema
    target_rows: list[dict[str, Any]]
    include_orphans: bool = False
    notes: list[str] = field(default_factory=list)
    # Rows per record batch, or None to build each table as one batch.
    batch_rows: int | None = None

    def source(self) -> pa.Table:
        return build_table(self.source_rows, self.source_schema, self.batch_rows)

    def target(self) -> pa.Table:
        return build_table(self.target_rows, self.target_schema, self.batch_rows)


def build_table(rows: list[dict[str, Any]], schema: pa.Schema, batch_rows: int | None = None) -> pa.Table:
    """Build a table of the rows, in record batches of `batch_rows` rows, as a paged read returns it."""
    if batch_rows is None or not rows:
        return pa.Table.from_pylist(rows, schema=schema)
    batches = [
        pa.RecordBatch.from_pylist(rows[start : start + batch_rows], schema=schema)
        for start in range(0, len(rows), batch_rows)
    ]
    return pa.Table.from_batches(batches, schema=schema)


def random_mapping(rng: random.Random, whole: bool) -> tuple[Mapping, list[ColumnSpec], pa.DataType]:
    """Return a mapping, the specs of its fields and the key column's type.

    The mapping has a field of every type but DOUBLE, and in half the seeds a DOUBLE field too. The
    columnar engine hands a table with an integer key or a source column of another kind to
    plan_changes whole, so only the seeds with `whole` set map them.
    """
    key_types = [FieldType.STRING] * 4 + [FieldType.EMAIL, FieldType.PHONE, FieldType.URL]
    key_type = rng.choice((key_types + [FieldType.INTEGER] * 2) if whole else key_types)
    key_length = rng.choice([None, 12, 40]) if key_type.is_text else None
    key = FieldMapping("ext_id", "External_Id__c", key_type, length=key_length)

    # Only half the seeds map a DOUBLE field, because many random doubles have no plain text and go
    # to plan_changes.
    types = [kind for kind in FieldType if kind is not FieldType.DOUBLE or rng.random() < 0.5]
    types.append(rng.choice([FieldType.DECIMAL, FieldType.STRING, FieldType.DATETIME]))
    rng.shuffle(types)
    specs = []
    for number, kind in enumerate(types):
        options: dict[str, Any] = {"nullable": rng.random() < 0.8}
        if kind is FieldType.DECIMAL:
            options["scale"] = rng.choice([None, 0, 2, 2, 5, 9, 12, 18])
        elif kind is FieldType.DOUBLE:
            options["scale"] = rng.choice([None, None, 0, 2, 4])
        elif kind.is_text:
            options["length"] = rng.choice([None, 5, 20, 255])
        mapped = FieldMapping(f"c{number}_{kind.value}", f"F{number}_{kind.value}__c", kind, **options)
        spec = canonical_spec(mapped)
        others = [other for other in other_type_specs(mapped) if whole or same_kind(other)]
        if others and rng.random() < 0.08:
            spec = rng.choice(others)
        specs.append(spec)
    mapping = Mapping(key=key, fields=[spec.mapped for spec in specs], key_case_sensitive=rng.random() < 0.5)
    return mapping, specs, pa.int64() if key_type is FieldType.INTEGER else pa.string()


def same_kind(spec: ColumnSpec) -> bool:
    """Return whether the spec's column has another type of the usual kind, such as int32 for int64."""
    kind, arrow_type = spec.mapped.type, spec.arrow_type
    if kind.is_text:
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if kind is FieldType.DECIMAL:
        return pa.types.is_decimal(arrow_type)
    if kind is FieldType.INTEGER:
        return pa.types.is_integer(arrow_type)
    if kind is FieldType.DATETIME:
        return pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None
    return False


@dataclass
class Rates:
    """Per-seed rates and switches for the awkward parts of a random case."""

    awkward: float
    near_miss: float
    changed: float
    other_form: float
    absent: float
    orphans: int
    without_key: int
    features: set[str]


# Chance of each awkward feature in a seed. Those in WHOLE_TABLE_FEATURES make the columnar engine
# hand both whole tables to plan_changes, or make plan_changes raise before it plans a row.
FEATURES = {
    "case_keys": 0.4,
    "unparseable_target": 0.25,
    "nul_in_target": 0.12,
    "source_repeat": 0.3,
    "target_repeat": 0.25,
    "null_key": 0.15,
    "empty_key": 0.15,
    "long_key": 0.15,
    "nul_key": 0.1,
    "case_twins": 0.3,
    "non_ascii_keys": 0.35,
    "missing_source_column": 0.1,
    "missing_target_column": 0.08,
    "other_key_forms": 0.5,
}
WHOLE_TABLE_FEATURES = set(FEATURES) - {"case_keys", "unparseable_target", "nul_in_target"}


def random_rates(rng: random.Random, whole: bool) -> Rates:
    chosen = {name for name, chance in FEATURES.items() if rng.random() < chance}
    return Rates(
        awkward=rng.choice([0.0, 0.02, 0.05, 0.12]),
        near_miss=rng.choice([0.0, 0.03, 0.1]),
        changed=rng.choice([0.0, 0.02, 0.08]),
        other_form=rng.choice([0.0, 0.02, 0.06]),
        absent=rng.choice([0.0, 0.03, 0.1]),
        orphans=rng.choice([0, 0, 3, 15]),
        without_key=rng.choice([0, 0, 0, 2]),
        features=chosen if whole else chosen - WHOLE_TABLE_FEATURES,
    )


def text_key(number: int, features: set[str], rng: random.Random) -> tuple[str, str]:
    """Return a source spelling of a text key and the target's spelling of the same key."""
    spelling = f"K-{number:05d}"
    if "non_ascii_keys" in features and rng.random() < 0.1:
        spelling = rng.choice([f"Ключ-{number}", f"Straße-{number}", f"e\u0301-{number}", f"Ǆ-{number}"])
    stored = unicodedata.normalize("NFC", spelling)
    if "case_keys" in features and rng.random() < 0.15:
        stored = rng.choice([stored.lower(), stored.upper(), stored.swapcase()])
    return spelling, stored


def random_case(seed: int) -> Case:
    """Build the source and target tables of one seed."""
    rng = random.Random(seed)
    # Only a seed with `whole` set gets the keys, features and column types that make the columnar
    # engine hand both whole tables to plan_changes.
    whole = rng.random() < 0.35
    mapping, specs, key_arrow_type = random_mapping(rng, whole)
    rates = random_rates(rng, whole)
    features = rates.features
    key = mapping.key
    integer_key = key.type is FieldType.INTEGER
    row_count = rng.randint(200, 420)

    source_rows, target_rows = [], []
    for number in range(row_count):
        if integer_key:
            source_key: Any = number * 7 - 300
            stored_key = str(source_key)
            if "other_key_forms" in features and rng.random() < 0.1:
                forms = [stored_key + ".0", f"{stored_key}E0"] + ([] if source_key < 0 else ["0" + stored_key])
                stored_key = rng.choice(forms)
        else:
            source_key, stored_key = text_key(number, features, rng)
        row = {key.source: source_key}
        for spec in specs:
            if spec.awkward and rng.random() < rates.awkward:
                row[spec.mapped.source] = rng.choice(spec.awkward)
            else:
                row[spec.mapped.source] = spec.usual(rng)
        source_rows.append(row)
        if rng.random() < rates.absent:
            continue
        target_rows.append(target_record(row, stored_key, specs, mapping, rates, rng))

    add_key_features(source_rows, target_rows, specs, mapping, rates, rng)
    for number in range(rates.orphans):
        orphan_key = str(10**7 + number) if integer_key else f"O-{number:04d}"
        row = {key.source: None, **{spec.mapped.source: spec.usual(rng) for spec in specs}}
        target_rows.append(target_record(row, orphan_key, specs, mapping, rates, rng, orphan=True))
    for _ in range(rates.without_key):
        row = {spec.mapped.source: spec.usual(rng) for spec in specs}
        target_rows.append(target_record(row, "", specs, mapping, rates, rng, orphan=True))
    rng.shuffle(source_rows)
    rng.shuffle(target_rows)

    source_schema = pa.schema([(key.source, key_arrow_type), *((s.mapped.source, s.arrow_type) for s in specs)])
    target_schema = pa.schema([(name, pa.string()) for name in mapping.target_fields()])
    if "missing_source_column" in features:
        source_schema = source_schema.remove(rng.randint(1, len(specs)))
    if "missing_target_column" in features:
        target_schema = target_schema.remove(rng.randint(1, len(specs)))
    return Case(
        mapping,
        source_schema,
        source_rows,
        target_schema,
        target_rows,
        include_orphans=rng.random() < 0.3,
        notes=sorted(features),
        batch_rows=rng.choice([None, None, 1, 37, 100]),
    )


def target_record(
    row: dict[str, Any],
    stored_key: str,
    specs: list[ColumnSpec],
    mapping: Mapping,
    rates: Rates,
    rng: random.Random,
    *,
    orphan: bool = False,
) -> dict[str, str]:
    """Return the query CSV record for a source row: its stored texts, with the seed's variations.

    Only an orphan or a record without a key gets text that does not parse, because the row engine
    raises when it compares such text. `spoil_one_record` puts it in a compared record.
    """
    record = {mapping.key.target: stored_key}
    for spec in specs:
        mapped = spec.mapped
        value = row[mapped.source]
        text = query_text(mapped, value)
        if text is None:
            # The field rejects the source value, so any stored text will do. A near miss, such as
            # the rejected text itself, checks that the columnar engine does not count it as equal.
            misses = near_misses(mapped, value)
            text = rng.choice(misses) if misses and rng.random() < 0.5 else stored_text(spec, rng)
        roll = rng.random()
        # Converters err on awkward values, so the target of one is often a near miss.
        awkward = any(value is candidate for candidate in spec.awkward)
        if roll < rates.near_miss / len(specs) or (awkward and roll < 0.5):
            text = rng.choice(near_misses(mapped, value) or [text])
        elif roll < (rates.near_miss + rates.changed) / len(specs):
            text = rng.choice(["", stored_text(spec, rng)])
            if mapped.type is FieldType.BOOLEAN:
                text = "false" if text == "" else text
        elif roll < (rates.near_miss + rates.changed + rates.other_form) / len(specs):
            text = rng.choice(other_forms(mapped, text) or [text])
        elif roll < 0.5 and orphan and "unparseable_target" in rates.features and mapped.type in UNPARSEABLE:
            text = rng.choice(UNPARSEABLE[mapped.type])
        elif roll < 0.5 and orphan and "nul_in_target" in rates.features and mapped.type.is_text:
            text = TEXT_WITH_NUL
        record[mapped.target] = text
    return record


def stored_text(spec: ColumnSpec, rng: random.Random) -> str:
    """Return the query text of a valid value of the spec's field."""
    mapped = replace(spec.mapped, nullable=True)
    for _ in range(5):
        text = query_text(mapped, spec.usual(rng))
        if text is not None:
            return text
    # Every value of some column types is rejected, such as a naive datetime for DATETIME.
    return query_text(mapped, canonical_spec(mapped).usual(rng)) or ""


def add_key_features(
    source_rows: list[dict[str, Any]],
    target_rows: list[dict[str, str]],
    specs: list[ColumnSpec],
    mapping: Mapping,
    rates: Rates,
    rng: random.Random,
) -> None:
    """Add the rows with the seed's awkward keys: missing, too long, repeated, twins in case."""
    key = mapping.key
    features = rates.features

    def new_row(key_value: Any) -> dict[str, Any]:
        return {key.source: key_value, **{spec.mapped.source: spec.usual(rng) for spec in specs}}

    if "null_key" in features:
        source_rows.append(new_row(None))
    if key.type.is_text:
        if "empty_key" in features:
            source_rows.append(new_row(""))
        if "long_key" in features and key.length is not None:
            source_rows.append(new_row("L" * (key.length + 1)))
        if "nul_key" in features:
            source_rows.append(new_row("N\x00K"))
        if "case_twins" in features:
            twin = dict(rng.choice(source_rows))
            if isinstance(twin[key.source], str) and twin[key.source].swapcase() != twin[key.source]:
                twin[key.source] = twin[key.source].swapcase()
                source_rows.append(twin)
    if {"unparseable_target", "nul_in_target"} & features and target_rows and rng.random() < 0.3:
        spoil_one_record(rng.choice(target_rows), specs, rng)
    if "source_repeat" in features:
        source_rows.append(dict(rng.choice(source_rows), **{specs[0].mapped.source: specs[0].usual(rng)}))
    if "target_repeat" in features and target_rows:
        target_rows.append(dict(rng.choice(target_rows)))


def spoil_one_record(record: dict[str, str], specs: list[ColumnSpec], rng: random.Random) -> None:
    """Replace one value of the record with text that does not parse, or with text that contains NUL."""
    mapped = rng.choice(specs).mapped
    record[mapped.target] = rng.choice(UNPARSEABLE.get(mapped.type, [TEXT_WITH_NUL]))


# Shrinking a failing case ------------------------------------------------------------------------


def shrink(case: Case, differs: Callable[[Case], bool], seconds: float = 25.0) -> Case:
    """Remove rows and fields while the engines still differ, and return the smallest case found."""
    deadline = time.monotonic() + seconds
    for _ in range(2):
        for side in ("source_rows", "target_rows"):
            case = _shrink_rows(case, side, differs, deadline)
        case = _shrink_fields(case, differs, deadline)
    return case


def _shrink_rows(case: Case, side: str, differs: Callable[[Case], bool], deadline: float) -> Case:
    rows = getattr(case, side)
    step = max(len(rows) // 2, 1)
    while step >= 1 and time.monotonic() < deadline:
        start = 0
        while start < len(rows) and time.monotonic() < deadline:
            candidate = replace(case, **{side: rows[:start] + rows[start + step :]})
            if differs(candidate):
                case, rows = candidate, getattr(candidate, side)
            else:
                start += step
        step //= 2
    return case


def _shrink_fields(case: Case, differs: Callable[[Case], bool], deadline: float) -> Case:
    for mapped in list(case.mapping.fields):
        if time.monotonic() > deadline:
            break
        fields = [f for f in case.mapping.fields if f is not mapped]
        mapping = Mapping(key=case.mapping.key, fields=fields, key_case_sensitive=case.mapping.key_case_sensitive)
        candidate = replace(
            case,
            mapping=mapping,
            source_schema=_without(case.source_schema, mapped.source),
            source_rows=[{k: v for k, v in row.items() if k != mapped.source} for row in case.source_rows],
            target_schema=_without(case.target_schema, mapped.target),
            target_rows=[{k: v for k, v in row.items() if k != mapped.target} for row in case.target_rows],
        )
        if differs(candidate):
            case = candidate
    return case


def _without(schema: pa.Schema, name: str) -> pa.Schema:
    index = schema.get_field_index(name)
    return schema if index < 0 else schema.remove(index)


def format_case(case: Case) -> str:
    lines = [f"mapping: {case.mapping!r}", f"include_orphans={case.include_orphans}"]
    lines.append(f"source schema: {case.source_schema}")
    lines += [f"  {row!r}" for row in case.source_rows]
    lines.append(f"target schema: {case.target_schema}")
    lines += [f"  {row!r}" for row in case.target_rows]
    return "\n".join(lines)


def engines_differ(case: Case) -> bool:
    source, target = case.source(), case.target()
    expected = row_engine_outcome(source, target, case.mapping, case.include_orphans)
    actual = outcome_of(lambda: plan_changes_arrow(source, target, case.mapping, include_orphans=case.include_orphans))
    return actual != expected


# Random tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_random_tables_plan_alike(seed):
    case = random_case(seed)
    source, target = case.source(), case.target()
    expected = row_engine_outcome(source, target, case.mapping, case.include_orphans)
    actual = outcome_of(lambda: plan_changes_arrow(source, target, case.mapping, include_orphans=case.include_orphans))
    if actual != expected:
        smallest = shrink(case, engines_differ)
        pytest.fail(
            f"seed {seed} ({', '.join(case.notes) or 'no key features'}): "
            f"{describe_difference(expected, actual)}\nsmallest case that differs:\n{format_case(smallest)}"
        )


def test_random_cases_reach_both_engines():
    """Most seeds must be split between the engines, and some must raise, or the tests above prove little."""
    split, planned, raised = 0, 0, set()
    for case in map(random_case, SEEDS):
        source = case.source()
        with calls_to_row_engine() as calls:
            outcome = outcome_of(lambda: plan_changes_arrow(source, case.target(), case.mapping))
        if isinstance(outcome, Raised):
            raised.add(outcome.type.__name__)
        else:
            planned += 1
        # A DOUBLE field with a scale sends every value with more decimals to plan_changes, so a
        # seed counts as split when Arrow decided more than a tenth of its rows.
        if len(calls) == 1 and len(calls[0].source_rows) < source.num_rows * 0.9:
            split += 1

    assert split >= len(SEEDS) // 2
    assert planned >= len(SEEDS) // 3
    assert {"DuplicateKeyError", "TargetRecordError"} <= raised


# Named cases -------------------------------------------------------------------------------------
#
# Each one-field test pairs every source value with every target text under a key of its own, and
# with no target record at all. The target texts are the query texts of the valid values, the same
# values in other forms, their near misses, the empty text and any extra texts a test names.

KEY = FieldMapping("id", "Id__c", FieldType.STRING)


def one_field_tables(
    mapped: FieldMapping,
    arrow_type: pa.DataType,
    values: Sequence[Any],
    extra_targets: Sequence[str] = (),
) -> tuple[pa.Table, pa.Table, Mapping]:
    texts = [""]
    for value in values:
        text = query_text(replace(mapped, nullable=True), value)
        if text is not None:
            texts += [text, *other_forms(mapped, text)]
        texts += near_misses(mapped, value)
    texts += extra_targets
    texts = list(dict.fromkeys(texts))

    rows, records = [], []
    for value_number, value in enumerate(values):
        for text_number, text in enumerate([*texts, None]):
            key = f"K-{value_number:03d}-{text_number:03d}"
            rows.append({KEY.source: key, mapped.source: value})
            if text is not None:
                records.append({KEY.target: key, mapped.target: text})
    source = build_table(rows, pa.schema([(KEY.source, pa.string()), (mapped.source, arrow_type)]))
    target = build_table(records, pa.schema([(KEY.target, pa.string()), (mapped.target, pa.string())]))
    return source, target, Mapping(key=KEY, fields=[mapped], key_case_sensitive=True)


def assert_one_field_alike(
    mapped: FieldMapping,
    arrow_type: pa.DataType,
    values: Sequence[Any],
    extra_targets: Sequence[str] = (),
    *,
    columnar: bool = True,
) -> Plan | Raised:
    """Assert that both engines plan alike for the values, and return the row engine's outcome.

    With `columnar` set, the columnar engine must also have decided some rows itself, so that the
    comparison in Arrow kernels took part and the test does not pass through plan_changes alone.
    """
    source, target, mapping = one_field_tables(mapped, arrow_type, values, extra_targets)
    with calls_to_row_engine() as calls:
        outcome = assert_same_plan(source, target, mapping)
    if columnar:
        assert len(calls) == 1
        assert len(calls[0].source_rows) < source.num_rows
    return outcome


def assert_raises_alike(outcome: Plan | Raised, error: str) -> None:
    assert isinstance(outcome, Raised)
    assert outcome.type.__name__ == error


# Text


def test_text_null_and_empty():
    assert_one_field_alike(FieldMapping("name", "Name", FieldType.STRING), pa.string(), [None, "", "a", " "])


def test_text_required_null_and_empty():
    mapped = FieldMapping("name", "Name", FieldType.STRING, nullable=False)
    assert_one_field_alike(mapped, pa.string(), [None, "", "a", " "])


def test_text_not_in_nfc():
    values = ["e\u0301", "é", "\u212b", "Å", "\u1100\u1161", "가", "Zoe\u0308", "Zoë", "plain"]
    assert_one_field_alike(FieldMapping("name", "Name", FieldType.STRING), pa.string(), values)


@pytest.mark.parametrize("length", [1, 5, 12])
def test_text_at_and_over_length(length):
    values = ["a" * length, "a" * (length + 1), "é" * length, "é" * (length + 1)]
    values += ["e\u0301" * length, "e\u0301" * (length + 1), "😀" * length, "😀" * (length + 1), "\u212b" * length]
    # NFC writes U+0958 as two code points and U+FB2C as three.
    values += ["\u0958" * length, "\u0958" * (length // 2 or 1), "\ufb2c" * (length // 3 or 1)]
    mapped = FieldMapping("name", "Name", FieldType.STRING, length=length)
    assert_one_field_alike(mapped, pa.string(), values)


def test_text_with_nul_in_source():
    values = ["a\x00b", "\x00", "\x00é", "ok"]
    plan = assert_one_field_alike(FieldMapping("name", "Name", FieldType.STRING), pa.string(), values)
    assert isinstance(plan, Plan)
    assert plan.rejected


def test_text_with_nul_in_target():
    mapped = FieldMapping("name", "Name", FieldType.STRING)
    outcome = assert_one_field_alike(mapped, pa.string(), ["ok", "a"], [TEXT_WITH_NUL])
    assert_raises_alike(outcome, "TargetRecordError")


def test_text_whitespace_kept():
    values = [" a", "a ", "\ta", "a\n", "a"]
    assert_one_field_alike(FieldMapping("name", "Name", FieldType.TEXTAREA), pa.string(), values)


@pytest.mark.parametrize("kind", TEXT_TYPES, ids=lambda kind: kind.name)
def test_text_types_alike(kind):
    values = ["x@example.com", "+1 555 0100", "https://example.com/ä", "Gold", None, "e\u0301"]
    assert_one_field_alike(FieldMapping("value", "Value__c", kind, length=40), pa.string(), values)


def test_text_from_large_string_column():
    values = ["a", "é", "e\u0301", None, ""]
    assert_one_field_alike(FieldMapping("name", "Name", FieldType.STRING, length=3), pa.large_string(), values)


def test_text_from_integer_column():
    mapped = FieldMapping("name", "Name", FieldType.STRING, length=3)
    assert_one_field_alike(mapped, pa.int64(), [None, 0, -5, 123, 1234], columnar=False)


# Decimal

SCALES = [None, 0, 2, 5, 6, 7, 9, 12, 18]


@pytest.mark.parametrize("scale", SCALES)
def test_decimal_at_above_and_below_scale(scale):
    values = ["1200", "1200.5", "1200.50", "1200.505", "1200.504999999", "0.000000001", "123.456789", "-7.1", "0"]
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=scale)
    assert_one_field_alike(mapped, NUMERIC, [None, *map(Decimal, values)])


@pytest.mark.parametrize("scale", [0, 2, 5, 8])
def test_decimal_ties_round_half_up(scale):
    values = [*decimal_ties(scale), Decimal("0.5"), Decimal("-0.5"), Decimal("2.5"), Decimal("-2.5"), Decimal("1")]
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=scale)
    assert_one_field_alike(mapped, NUMERIC, values)


@pytest.mark.parametrize("scale", [None, 0, 2, 9])
def test_decimal_negative_zero(scale):
    values = [Decimal(text) for text in ["-0.001", "-0.004999999", "-0.4", "-0.000000001", "-0", "0", "1"]]
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=scale)
    assert_one_field_alike(mapped, NUMERIC, values)


@pytest.mark.parametrize("scale", [None, 0, 2, 9, 18])
def test_decimal_more_digits_than_context(scale):
    texts = [
        "99999999999999999999999999999.999999999",
        "-99999999999999999999999999999.999999999",
        "12345678901234567890123456789",
        "-12345678901234567890.123456789",
        "1234567890123456789.123456789",
        "9999999999999999999.995",
        "99999999999999999999999999.995",
        "1",
    ]
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=scale)
    assert_one_field_alike(mapped, NUMERIC, list(map(Decimal, texts)))


def test_decimal_required_null():
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=2, nullable=False)
    assert_one_field_alike(mapped, NUMERIC, [None, Decimal("1.5"), Decimal("0")])


def test_decimal_target_in_other_forms():
    extra = ["1200.50", "1.2005E+3", "+1200.5", "01200.5", "1200.500000000", " 1200.5", "1200.5 "]
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=2)
    assert_one_field_alike(mapped, NUMERIC, [Decimal("1200.5"), Decimal("1200.49")], extra)


def test_decimal_unparseable_target():
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=2)
    outcome = assert_one_field_alike(mapped, NUMERIC, [Decimal("1.5")], ["1,5"])
    assert_raises_alike(outcome, "TargetRecordError")


@pytest.mark.parametrize(
    "arrow_type", [pa.decimal128(18, 2), pa.decimal128(10, 0), pa.decimal128(38, 0), BIGNUMERIC], ids=str
)
@pytest.mark.parametrize("scale", [None, 0, 2, 9])
def test_decimal_from_other_decimal_types(arrow_type, scale):
    values = [Decimal("1.25"), Decimal("-1.25"), Decimal("-0.01"), Decimal("100"), Decimal("0"), None]
    if arrow_type.scale == 0:
        values = [Decimal(int(value)) if value is not None else None for value in values]
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=scale)
    assert_one_field_alike(mapped, arrow_type, values, columnar=False)


@pytest.mark.parametrize("arrow_type", [NUMERIC, pa.decimal128(38, 12), BIGNUMERIC], ids=str)
@pytest.mark.parametrize("scale", [None, 7, 9, 10, 12, 18])
def test_decimal_texts_arrow_writes_with_exponent(arrow_type, scale):
    # Arrow casts a decimal below 1E-6 to text with an exponent ("1.000E-10"). Without its trailing
    # zeros that text is another number ("1.000E-1"), which must never count as equal.
    texts = ["1E-7", "1E-9", "1.5E-8", "0", "12.5"] + (["1E-10", "1E-12", "5E-11"] if arrow_type.scale >= 12 else [])
    values = [Decimal(text) for text in texts]
    written = pa.array(values, arrow_type).cast(pa.string()).to_pylist()
    extra = [text.rstrip("0").rstrip(".") for text in written] + written
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=scale)
    assert_one_field_alike(mapped, arrow_type, values, extra, columnar=False)


@pytest.mark.parametrize("arrow_type", [pa.float64(), pa.int64(), pa.string()], ids=str)
def test_decimal_from_other_column_types(arrow_type):
    pools = {
        pa.float64(): [1.25, -0.001, float("nan"), None],
        pa.int64(): [1, -1, 0, None],
        pa.string(): ["1.25", " 2 ", "abc", "", None],
    }
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=1)
    assert_one_field_alike(mapped, arrow_type, pools[arrow_type], columnar=arrow_type == pa.int64())


@pytest.mark.parametrize("scale", [None, 0, 2, 12])
def test_decimal_from_integer_column(scale):
    values = [0, 1, -1, 100, 2**63 - 1, -(2**63), 10**15, None]
    extra = ["100.00", "1E+2", "1.0", "9223372036854775807.00"]
    mapped = FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=scale)
    assert_one_field_alike(mapped, pa.int64(), values, extra)


# Integer


@pytest.mark.parametrize("arrow_type", [pa.decimal128(38, 9), pa.decimal128(10, 0), pa.decimal256(76, 38)], ids=str)
def test_integer_from_decimal_column(arrow_type):
    values = [Decimal(0), Decimal(42), Decimal(-7), Decimal("42.5"), Decimal("-0.000000001"), Decimal(10) ** 9, None]
    if arrow_type.scale == 0:
        values = [value for value in values if value is None or value == value.to_integral_value()]
    if arrow_type.precision - arrow_type.scale > 29:
        values += [Decimal(10) ** 28, Decimal(10) ** 28 - 1, -(Decimal(10) ** 29)]
    extra = ["7.0", "07", "1e3", "-0"]
    mapped = FieldMapping("count", "Count__c", FieldType.INTEGER)
    assert_one_field_alike(mapped, arrow_type, values, extra)


def test_integer_values():
    values = [0, -1, 7, 2**63 - 1, -(2**63), 10**15, None]
    extra = ["42.0", "042", "4.2E1", "-0", "1e3", "7.5"]
    assert_one_field_alike(FieldMapping("count", "Count__c", FieldType.INTEGER), pa.int64(), values, extra)


def test_integer_required_null():
    mapped = FieldMapping("count", "Count__c", FieldType.INTEGER, nullable=False)
    assert_one_field_alike(mapped, pa.int64(), [None, 0, 1])


@pytest.mark.parametrize("arrow_type", [pa.int8(), pa.int32(), pa.uint64()], ids=str)
def test_integer_from_other_integer_types(arrow_type):
    values = [0, 1, 100, None] + ([2**64 - 1] if arrow_type == pa.uint64() else [-100])
    assert_one_field_alike(FieldMapping("count", "Count__c", FieldType.INTEGER), arrow_type, values)


def test_integer_unparseable_target():
    mapped = FieldMapping("count", "Count__c", FieldType.INTEGER)
    outcome = assert_one_field_alike(mapped, pa.int64(), [1], ["forty"])
    assert_raises_alike(outcome, "TargetRecordError")


# Double


@pytest.mark.parametrize("scale", [None, 0, 2, 4])
def test_double_values(scale):
    mapped = FieldMapping("ratio", "Ratio__c", FieldType.DOUBLE, scale=scale)
    extra = ["42.0", "4.2E1", "1.0E16", "-0", "-0.0"]
    assert_one_field_alike(mapped, pa.float64(), AWKWARD_DOUBLES, extra)


@pytest.mark.parametrize("scale", [None, 0, 3])
def test_double_shortest_texts_of_random_floats(scale):
    # Each target contains Python's text of its value, so a row is unchanged exactly when Arrow writes
    # the float as Python does. Random bit patterns reach every exponent, and the other values are
    # the kind a Number field stores.
    rng = random.Random(scale or 0)
    values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(1500)]
    values += [rng.uniform(-1e6, 1e6) for _ in range(1500)]
    values += [round(rng.uniform(-1e4, 1e4), rng.randint(0, 6)) for _ in range(1500)]
    values = [value for value in values if math.isfinite(value)]
    mapped = FieldMapping("ratio", "Ratio__c", FieldType.DOUBLE, scale=scale)
    keys = [f"K-{number}" for number in range(len(values))]
    source = pa.table({KEY.source: keys, mapped.source: pa.array(values, pa.float64())})
    texts = [query_text(mapped, value) for value in values]
    target = pa.table({KEY.target: keys, mapped.target: [text or "" for text in texts]})

    with calls_to_row_engine() as calls:
        assert_same_plan(source, target, Mapping(key=KEY, fields=[mapped]))

    # Only values with at most `scale` decimals are decided in Arrow when the field has a scale. With
    # no call to the row engine, plan_changes_arrow raised before it planned a row, so none counts.
    decided_in_python = len(calls[0].source_rows) if calls else len(values)
    assert decided_in_python < (len(values) / 2 if scale is None else len(values))


def test_double_unparseable_target():
    mapped = FieldMapping("ratio", "Ratio__c", FieldType.DOUBLE)
    outcome = assert_one_field_alike(mapped, pa.float64(), [1.5], ["n/a"], columnar=False)
    assert_raises_alike(outcome, "TargetRecordError")


# Boolean


@pytest.mark.parametrize("nullable", [True, False])
def test_boolean_values(nullable):
    mapped = FieldMapping("active", "Active__c", FieldType.BOOLEAN, nullable=nullable)
    assert_one_field_alike(mapped, pa.bool_(), [True, False, None], ["TRUE", "True", "1", "0", "FALSE"])


def test_boolean_unparseable_target():
    mapped = FieldMapping("active", "Active__c", FieldType.BOOLEAN)
    outcome = assert_one_field_alike(mapped, pa.bool_(), [True], ["yes"])
    assert_raises_alike(outcome, "TargetRecordError")


def test_boolean_from_string_column():
    mapped = FieldMapping("active", "Active__c", FieldType.BOOLEAN)
    assert_one_field_alike(mapped, pa.string(), ["true", "FALSE", " 1 ", "yes", "", None], columnar=False)


# Date


def test_date_range():
    assert_one_field_alike(FieldMapping("day", "Day__c", FieldType.DATE), pa.date32(), AWKWARD_DATES)


def test_date_required_null():
    mapped = FieldMapping("day", "Day__c", FieldType.DATE, nullable=False)
    assert_one_field_alike(mapped, pa.date32(), [None, date(2024, 1, 2)])


def test_date_from_date64_column():
    assert_one_field_alike(FieldMapping("day", "Day__c", FieldType.DATE), pa.date64(), AWKWARD_DATES)


def test_date_unparseable_target():
    mapped = FieldMapping("day", "Day__c", FieldType.DATE)
    outcome = assert_one_field_alike(mapped, pa.date32(), [date(2024, 2, 28)], ["02/28/2024"])
    assert_raises_alike(outcome, "TargetRecordError")


def test_date_from_timestamp_column():
    mapped = FieldMapping("day", "Day__c", FieldType.DATE)
    assert_one_field_alike(mapped, TIMESTAMP, AWKWARD_MOMENTS[:4], columnar=False)


# Datetime


def test_datetime_microseconds_and_range():
    extra = ["2000-02-29T23:59:59.999Z", "1969-12-31T23:59:59.000+0000"]
    mapped = FieldMapping("seen", "Seen__c", FieldType.DATETIME)
    assert_one_field_alike(mapped, TIMESTAMP, AWKWARD_MOMENTS, extra)


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_datetime_units(unit):
    values = [datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 1000, tzinfo=UTC)]
    if unit == "s":
        values = [value.replace(microsecond=0) for value in values]
    mapped = FieldMapping("seen", "Seen__c", FieldType.DATETIME)
    assert_one_field_alike(mapped, pa.timestamp(unit, tz="UTC"), [*values, None])


@pytest.mark.parametrize("zone", ["+05:30", "-08:00", "Europe/Paris", "America/New_York"])
def test_datetime_other_zones(zone):
    values = [
        datetime(2024, 3, 31, 0, 59, 59, 999_999, tzinfo=UTC),  # Paris changes to summer time at 01:00 UTC
        datetime(2024, 11, 3, 6, 30, tzinfo=UTC),  # New York repeats 01:00 to 02:00 local time
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        None,
    ]
    mapped = FieldMapping("seen", "Seen__c", FieldType.DATETIME)
    assert_one_field_alike(mapped, pa.timestamp("us", tz=zone), values)


def test_datetime_naive():
    values = [datetime(2024, 1, 2, 3, 4, 5), None]
    extra = ["2024-01-02T03:04:05.000Z"]
    mapped = FieldMapping("seen", "Seen__c", FieldType.DATETIME)
    assert_one_field_alike(mapped, NAIVE_TIMESTAMP, values, extra, columnar=False)


def test_datetime_required_null():
    mapped = FieldMapping("seen", "Seen__c", FieldType.DATETIME, nullable=False)
    assert_one_field_alike(mapped, TIMESTAMP, [None, datetime(2024, 1, 2, tzinfo=UTC)])


def test_datetime_unparseable_target():
    mapped = FieldMapping("seen", "Seen__c", FieldType.DATETIME)
    outcome = assert_one_field_alike(mapped, TIMESTAMP, [datetime(2024, 1, 2, tzinfo=UTC)], ["yesterday"])
    assert_raises_alike(outcome, "TargetRecordError")


@pytest.mark.parametrize(
    ("zone", "moment"),
    [("-05:00", datetime(1, 1, 1, tzinfo=UTC)), ("+05:30", datetime(9999, 12, 31, 23, tzinfo=UTC))],
    ids=["year_1_west", "year_9999_east"],
)
def test_datetime_beyond_python_in_local_zone(zone, moment):
    # The local time of the moment in the zone falls in year 0 or year 10000, which Python's
    # datetime cannot hold, so to_pylist raises OverflowError for that row.
    mapped = FieldMapping("seen", "Seen__c", FieldType.DATETIME)
    schema = pa.schema([(KEY.source, pa.string()), (mapped.source, pa.timestamp("us", tz=zone))])
    rows = [{KEY.source: "K-1", mapped.source: moment}]
    records = [{KEY.target: "K-1", mapped.target: query_text(mapped, moment)}]
    target_schema = pa.schema([(KEY.target, pa.string()), (mapped.target, pa.string())])
    source, target = build_table(rows, schema), build_table(records, target_schema)
    assert_same_plan(source, target, Mapping(key=KEY, fields=[mapped]))


@pytest.mark.parametrize("kind", [FieldType.DATE, FieldType.DATETIME])
def test_day_beyond_python_years(kind):
    # Arrow can store 10000-01-01, but Python's date cannot, so to_pylist raises OverflowError.
    mapped = FieldMapping("when", "When__c", kind)
    days = (date.max - date(1970, 1, 1)).days + 1
    if kind is FieldType.DATE:
        values, text = pa.array([days, 0], pa.date32()), "10000-01-01"
    else:
        values, text = pa.array([days * 86_400_000_000, 0], TIMESTAMP), "10000-01-01T00:00:00.000Z"
    source = pa.table({KEY.source: ["K-1", "K-2"], mapped.source: values})
    target = pa.table({KEY.target: ["K-1", "K-2"], mapped.target: [text, ""]})
    assert_raises_alike(assert_same_plan(source, target, Mapping(key=KEY, fields=[mapped])), "OverflowError")


# Keys


def key_tables(
    source_keys: Sequence[Any],
    target_keys: Sequence[str],
    *,
    key: FieldMapping = KEY,
    key_type: pa.DataType = pa.string(),
    key_case_sensitive: bool = True,
) -> tuple[pa.Table, pa.Table, Mapping]:
    """Return tables with one text field, equal on both sides, and the given keys."""
    mapped = FieldMapping("name", "Name", FieldType.STRING)
    rows = [{key.source: value, "name": f"n{number % 3}"} for number, value in enumerate(source_keys)]
    records = [{key.target: value, "Name": f"n{number % 3}"} for number, value in enumerate(target_keys)]
    source = build_table(rows, pa.schema([(key.source, key_type), ("name", pa.string())]))
    target = build_table(records, pa.schema([(key.target, pa.string()), ("Name", pa.string())]))
    return source, target, Mapping(key=key, fields=[mapped], key_case_sensitive=key_case_sensitive)


PLAIN_KEYS = [f"P-{number:03d}" for number in range(30)]
CASE_MODES = pytest.mark.parametrize("key_case_sensitive", [True, False], ids=["case_sensitive", "folding_case"])


@CASE_MODES
def test_keys_differing_in_case(key_case_sensitive):
    source, target, mapping = key_tables(
        [*PLAIN_KEYS, "ACC-1", "acc-2", "Acc-3", "aCC-4"],
        [*PLAIN_KEYS, "acc-1", "ACC-2", "Acc-3", "acc-4"],
        key_case_sensitive=key_case_sensitive,
    )
    assert_same_plan(source, target, mapping)


@CASE_MODES
def test_source_keys_twins_in_case(key_case_sensitive):
    source, target, mapping = key_tables(
        [*PLAIN_KEYS, "ACC-1", "acc-1"], [*PLAIN_KEYS, "ACC-1"], key_case_sensitive=key_case_sensitive
    )
    assert_same_plan(source, target, mapping)


@CASE_MODES
def test_target_keys_twins_in_case(key_case_sensitive):
    source, target, mapping = key_tables(
        [*PLAIN_KEYS, "ACC-1"], [*PLAIN_KEYS, "ACC-1", "Acc-1"], key_case_sensitive=key_case_sensitive
    )
    assert_same_plan(source, target, mapping)


@CASE_MODES
def test_non_ascii_keys(key_case_sensitive):
    source, target, mapping = key_tables(
        [*PLAIN_KEYS, "Straße", "Ключ", "e\u0301", "Ǆ", "İ", "ﬁ", "K-1", "s-1"],
        [*PLAIN_KEYS, "STRASSE", "ключ", "é", "ǆ", "i\u0307", "FI", "\u212a-1", "\u017f-1"],
        key_case_sensitive=key_case_sensitive,
    )
    assert_same_plan(source, target, mapping)


@CASE_MODES
def test_non_ascii_keys_spelled_alike(key_case_sensitive):
    keys = [*PLAIN_KEYS, "Ключ", "é", "Zoë"]
    source, target, mapping = key_tables(keys, keys, key_case_sensitive=key_case_sensitive)
    assert_same_plan(source, target, mapping)


@CASE_MODES
@pytest.mark.parametrize("missing", [None, ""], ids=["null", "empty"])
def test_source_key_missing(key_case_sensitive, missing):
    source, target, mapping = key_tables(
        [*PLAIN_KEYS[:5], missing, *PLAIN_KEYS[5:], missing], PLAIN_KEYS, key_case_sensitive=key_case_sensitive
    )
    plan = assert_same_plan(source, target, mapping)
    assert isinstance(plan, Plan)
    assert len(plan.rejected) == 2


def test_source_key_over_length():
    key = FieldMapping("id", "Id__c", FieldType.STRING, length=5)
    source, target, mapping = key_tables(["P-001", "P-0002", "é" * 5, "é" * 6], ["P-001", "P-0002"], key=key)
    assert_same_plan(source, target, mapping)


@pytest.mark.parametrize("side", ["source", "target"])
def test_key_with_nul(side):
    with_nul = [*PLAIN_KEYS, "K\x00-1"]
    source_keys, target_keys = (with_nul, PLAIN_KEYS) if side == "source" else (PLAIN_KEYS, with_nul)
    source, target, mapping = key_tables(source_keys, target_keys)
    assert_same_plan(source, target, mapping)


def test_target_key_empty():
    source, target, mapping = key_tables(PLAIN_KEYS, [*PLAIN_KEYS, "", ""])
    plan = assert_same_plan(source, target, mapping)
    assert isinstance(plan, Plan)
    assert plan.target_without_key == 2


@CASE_MODES
@pytest.mark.parametrize("side", ["source", "target"])
def test_key_repeated(key_case_sensitive, side):
    repeated = [*PLAIN_KEYS, PLAIN_KEYS[3], PLAIN_KEYS[7], PLAIN_KEYS[3]]
    source_keys, target_keys = (repeated, PLAIN_KEYS) if side == "source" else (PLAIN_KEYS, repeated)
    source, target, mapping = key_tables(source_keys, target_keys, key_case_sensitive=key_case_sensitive)
    assert_raises_alike(assert_same_plan(source, target, mapping), "DuplicateKeyError")


def test_integer_key():
    key = FieldMapping("id", "Id__c", FieldType.INTEGER)
    source, target, mapping = key_tables(
        [42, -5, 0, 7, None, 10**12], ["0042", "-5", "0.0", "7E0", "", "1000000000000"], key=key, key_type=pa.int64()
    )
    assert_same_plan(source, target, mapping)


def test_integer_key_unparseable_in_target():
    key = FieldMapping("id", "Id__c", FieldType.INTEGER)
    source, target, mapping = key_tables([1, 2], ["1", "abc"], key=key, key_type=pa.int64())
    assert_raises_alike(assert_same_plan(source, target, mapping), "TargetRecordError")


@pytest.mark.parametrize("include_orphans", [False, True])
def test_orphans(include_orphans):
    source, target, mapping = key_tables(PLAIN_KEYS[:20], [*PLAIN_KEYS, "O-2", "O-1", "o-1"])
    plan = assert_same_plan(source, target, mapping, include_orphans=include_orphans)
    assert isinstance(plan, Plan)
    assert plan.orphans == sorted([*PLAIN_KEYS[20:], "O-2", "O-1", "o-1"])


# Tables and columns


def test_source_column_missing():
    source, target, mapping = key_tables(PLAIN_KEYS, PLAIN_KEYS)
    assert_same_plan(source.drop_columns(["name"]), target, mapping)


def test_target_column_missing():
    source, target, mapping = key_tables(PLAIN_KEYS, PLAIN_KEYS)
    assert_raises_alike(assert_same_plan(source, target.drop_columns(["Name"]), mapping), "TargetRecordError")


def test_source_key_column_missing():
    source, target, mapping = key_tables(PLAIN_KEYS, PLAIN_KEYS)
    assert_same_plan(source.drop_columns([KEY.source]), target, mapping)


def test_extra_and_reordered_columns():
    source, target, mapping = key_tables([*PLAIN_KEYS, "N-1"], [*PLAIN_KEYS, "O-1"])
    source = source.append_column("extra", pa.array(range(source.num_rows))).select(["extra", "name", KEY.source])
    target = target.append_column("Other__c", pa.array(["x"] * target.num_rows))
    target = target.select(["Name", "Other__c", KEY.target])
    assert_same_plan(source, target, mapping)


@pytest.mark.parametrize(("source_rows", "target_rows"), [(0, 0), (0, 5), (5, 0)])
def test_empty_tables(source_rows, target_rows):
    source, target, mapping = key_tables(PLAIN_KEYS[:source_rows], PLAIN_KEYS[:target_rows])
    assert_same_plan(source, target, mapping)


def test_key_only_mapping():
    source, target, _ = key_tables([*PLAIN_KEYS, "N-1"], [*PLAIN_KEYS, "O-1"])
    assert_same_plan(source, target, Mapping(key=KEY))


# The columnar path ------------------------------------------------------------------------------


def matching_tables(
    row_count: int, changed: Sequence[int] = (), *, key_case_sensitive: bool = True
) -> tuple[pa.Table, pa.Table, Mapping]:
    """Return tables whose target records equal their source rows as query text, except at `changed`.

    Each table comes in several record batches, and the target in another order than the source.
    """
    rng = random.Random(row_count)
    fields = [
        FieldMapping("name", "Name", FieldType.STRING, length=40, nullable=False),
        FieldMapping("notes", "Notes__c", FieldType.TEXTAREA),
        FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=2),
        FieldMapping("quantity", "Quantity__c", FieldType.DECIMAL),
        FieldMapping("count", "Count__c", FieldType.INTEGER),
        FieldMapping("active", "Active__c", FieldType.BOOLEAN),
        FieldMapping("day", "Day__c", FieldType.DATE),
        FieldMapping("seen", "Seen__c", FieldType.DATETIME),
    ]
    specs = [canonical_spec(mapped) for mapped in fields]
    rows, records = [], []
    for number in range(row_count):
        key = f"ACC-{number:05d}"
        row = {KEY.source: key, **{spec.mapped.source: spec.usual(rng) for spec in specs}}
        record = {KEY.target: key, **{f.target: query_text(f, row[f.source]) for f in fields}}
        if number in changed:
            record["Count__c"] = str(row["count"] + 1)
        rows.append(row)
        records.append(record)
    rng.shuffle(records)

    source_schema = pa.schema([(KEY.source, pa.string()), *((s.mapped.source, s.arrow_type) for s in specs)])
    target_schema = pa.schema([(name, pa.string()) for name in [KEY.target, *(f.target for f in fields)]])
    mapping = Mapping(key=KEY, fields=fields, key_case_sensitive=key_case_sensitive)
    return build_table(rows, source_schema, 512), build_table(records, target_schema, 700), mapping


@CASE_MODES
def test_columnar_path_decides_matching_rows(key_case_sensitive):
    source, target, mapping = matching_tables(2000, key_case_sensitive=key_case_sensitive)
    with calls_to_row_engine() as calls:
        plan = assert_same_plan(source, target, mapping)

    assert isinstance(plan, Plan)
    assert plan.unchanged == 2000
    assert sum(len(call.source_rows) for call in calls) == 0
    assert sum(len(call.target_records) for call in calls) == 0


@CASE_MODES
def test_columnar_path_sends_only_changed_rows(key_case_sensitive):
    changed = range(0, 2000, 97)
    source, target, mapping = matching_tables(2000, changed, key_case_sensitive=key_case_sensitive)
    with calls_to_row_engine() as calls:
        plan = assert_same_plan(source, target, mapping)
    changed_keys = {f"ACC-{number:05d}" for number in changed}

    assert isinstance(plan, Plan)
    assert len(plan.updates) == len(changed_keys)
    assert len(calls) == 1
    assert {row[KEY.source] for row in calls[0].source_rows} == changed_keys
    assert len(calls[0].source_rows) == len(changed_keys)
    assert {record[KEY.target] for record in calls[0].target_records} == changed_keys


def test_columnar_path_sliced_large_strings():
    source, target, mapping = matching_tables(600, changed=[5, 17, 400])
    source = source.slice(10, 500)
    target = target.slice(50).cast(pa.schema([(name, pa.large_string()) for name in target.column_names]))
    with calls_to_row_engine() as calls:
        plan = assert_same_plan(source, target, mapping)

    assert isinstance(plan, Plan)
    assert len(calls) == 1
    assert len(calls[0].source_rows) < source.num_rows // 2
