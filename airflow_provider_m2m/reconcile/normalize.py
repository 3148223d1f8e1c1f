"""Normalise source values and Salesforce values of one field to one comparable text form.

The comparable form of a value is the text that a Bulk API 2.0 upload would carry for it, so a plan
compares and writes the same string. The empty string stands for null in this form: no non-null
value of any field type normalises to it. The rules per type:

- Text types: Unicode NFC, never trimmed (Bulk API 2.0 does not trim field values either). An empty
  string is null, because Salesforce stores an empty string in a text field as null and returns it
  as null, so treating the two as different would plan the same update on every run.
- DECIMAL: `Decimal` rounded half up to the field's scale, written with exactly `scale` decimal places
  ("1200.50"); without a scale, written without trailing zeros.
- INTEGER: an integral number written without a fraction.
- DOUBLE: a finite float, rounded to the scale when there is one, written in the shortest form.
- BOOLEAN: "true" or "false". A Salesforce checkbox has no null, and null reads back as false.
- DATE: ISO 8601 "YYYY-MM-DD".
- DATETIME: UTC, truncated to whole seconds, "YYYY-MM-DDTHH:MM:SS.000Z". Salesforce keeps dateTime
  fields to the second (SOAP API Developer Guide, "Primitive Data Types": dateTime), so finer digits
  in the source would otherwise show as a change on every run.

Some source values cannot be stored by Salesforce: NaN or infinity in a number field, a naive
datetime, text longer than the field, a null in a required field. Converting one raises
`InvalidValue`, and the plan reports its row as failed without sending it. A target value that does
not parse raises `ValueError`.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, getcontext
from typing import Any

from airflow_provider_m2m.reconcile.mapping import TEXT_TYPES, FieldMapping, FieldType

Converter = Callable[[Any], str]

NULL_TEXT = ""


class InvalidValue(ValueError):
    """A source value that cannot be sent to its Salesforce field; the message names the field."""


def source_converter(field: FieldMapping) -> Converter:
    """Build the function that turns a source value of `field` into its comparable form."""
    convert = _SOURCE_BUILDERS[field.type](field)
    if field.nullable or field.type is FieldType.BOOLEAN or field.type.is_text:
        return convert  # text converters check `nullable` themselves, saving a call per value
    label = _label(field)

    def convert_required(value: Any) -> str:
        text = convert(value)
        if text == NULL_TEXT:
            raise InvalidValue(f"{label}: the field is required, but the value is null or empty")
        return text

    return convert_required


def target_converter(field: FieldMapping) -> Converter:
    """Build the function that turns a Salesforce value of `field` into its comparable form.

    Accepts Bulk API 2.0 query CSV text (empty means null) and REST JSON values.
    """
    return _TARGET_BUILDERS[field.type](field)


ColumnConverter = Callable[[Sequence[Any]], Sequence[str]]
ProbeConverter = Callable[[Sequence[Any]], Sequence[str] | None]


def source_column_converter(field: FieldMapping) -> ColumnConverter:
    """Build the function that converts a list of source values of `field`, with the same results
    and errors as `source_converter` applied to each value.

    Text, INTEGER, BOOLEAN, DATE, DATETIME, and DECIMAL columns with a scale of at most 6 take a
    fast path for the values that a BigQuery client returns: None and one exact Python type per
    field. A list with any other value, or one that the fast path cannot prove it handles exactly
    as `source_converter` does, is converted value by value instead.
    """
    convert = source_converter(field)

    def convert_each(values: list[Any]) -> list[str]:
        return list(map(convert, values))

    build_fast_path = _COLUMN_BUILDERS.get(field.type)
    if build_fast_path is None:
        return convert_each
    return build_fast_path(field, convert_each)


def query_text_column_converter(field: FieldMapping) -> ColumnConverter | None:
    """Build the function that rewrites comparable texts of `field` as a Bulk API 2.0 query CSV
    writes the same values, or return None where the two texts are the same.

    The query writes a number without trailing zeros ("1200.5" for 1200.50). The comparable form
    of a DECIMAL with a scale has exactly `scale` decimal places, so it is rewritten. The target
    converter returns the comparable form for that text, so equal texts in this form mean equal
    comparable forms.
    """
    if field.type is not FieldType.DECIMAL or not field.scale:
        return None

    def trim_zeros(texts: list[str]) -> list[str]:
        return [text.rstrip("0").rstrip(".") if "." in text else text for text in texts]

    return trim_zeros


def decimal_probe_column_converter(field: FieldMapping) -> ProbeConverter | None:
    """Build a cheap stand-in for the query text of a DECIMAL column, or return None for other fields.

    The probe of a Decimal is `str(value)`, with no rounding. When it equals the text a Bulk API
    2.0 query wrote, both are the same number, so their comparable forms are equal. When it
    differs ("1200.50", more decimals than the scale), the value still has to be converted to
    know whether it changed. The probe function returns None for a list whose values conversion
    might reject. Those are other types, a null in a required field, a NaN or an infinity, an
    exponent, and more digits than rounding to the scale can hold.
    """
    quantum = _quantum(field)
    if field.type is not FieldType.DECIMAL or quantum is None:
        return None
    required = not field.nullable
    scale = -quantum.as_tuple().exponent

    def probe_column(values: Sequence[Any]) -> list[str] | None:
        if not _types_within(values, _DECIMAL_TYPES) or (required and None in values):
            return None
        texts = [NULL_TEXT if value is None else str(value) for value in values]
        joined = "\x00".join(texts)
        if "N" in joined or "I" in joined or "E" in joined:  # NaN, sNaN, Infinity, 1E+30
            return None
        # Plain text has at most as many integer digits as characters, so rounding to the scale
        # fits the context's precision when the longest text plus the scale does.
        if max(map(len, texts)) + scale > getcontext().prec:
            return None
        return texts

    return probe_column


def _text_column(field: FieldMapping, convert_each: ColumnConverter) -> ColumnConverter:
    """Check a list of valid text with a few C-level string operations and return it as it is."""
    length = field.length
    required = not field.nullable

    def convert_text_column(values: list[Any]) -> list[str]:
        if None in values:
            if required:
                return convert_each(values)
            values = [NULL_TEXT if value is None else value for value in values]
        if _all_comparable_text(values) and (length is None or max(map(len, values), default=0) <= length):
            if not required or NULL_TEXT not in values:
                return values
        return convert_each(values)

    return convert_text_column


def target_key_column_converter(field: FieldMapping) -> ColumnConverter:
    """Build the function that converts a list of target key values, like `target_converter`."""
    convert = target_converter(field)

    def convert_each(values: list[Any]) -> list[str]:
        return list(map(convert, values))

    if not field.type.is_text:
        return convert_each

    def convert_text_column(values: list[Any]) -> list[str]:
        if None not in values and _all_comparable_text(values):
            return values
        return convert_each(values)

    return convert_text_column


def _all_comparable_text(values: list[Any]) -> bool:
    """Return whether every value is a str in NFC without NUL, checked on the values joined by NUL.

    NUL is a starter that composes with nothing, so the joined text is in NFC exactly when every
    value is, and a NUL inside a value shows as one NUL too many.
    """
    try:
        joined = "\x00".join(values)
    except TypeError:  # a value that is not a str
        return False
    if joined.count("\x00") != len(values) - 1:
        return False
    return joined.isascii() or unicodedata.is_normalized("NFC", joined)


def _label(field: FieldMapping) -> str:
    return f"{field.target} (source column {field.source})"


def _type_name(value: Any) -> str:
    return type(value).__name__


# Text ---------------------------------------------------------------------------------------------


def _text_source(field: FieldMapping) -> Converter:
    label = _label(field)
    length = field.length
    required = not field.nullable

    def convert(value: Any) -> str:
        if value is None:
            if required:
                raise InvalidValue(f"{label}: the field is required, but the value is null or empty")
            return NULL_TEXT
        if type(value) is not str:
            if isinstance(value, str):
                value = str(value)
            elif isinstance(value, (int, Decimal)) and not isinstance(value, bool):
                value = str(value)
            else:
                raise InvalidValue(f"{label}: expected text, got {_type_name(value)}")
        text = value if value.isascii() else unicodedata.normalize("NFC", value)
        if "\x00" in text:
            # Salesforce text cannot contain NUL, and the plan uses it as its field separator.
            raise InvalidValue(f"{label}: text contains a NUL character, which Salesforce cannot store")
        # Counted in code points. Salesforce may count a character outside the Basic Multilingual
        # Plane as two, so a value that passes here can still fail there. This check never
        # rejects a value that Salesforce would store.
        if length is not None and len(text) > length:
            raise InvalidValue(f"{label}: text has {len(text)} characters, the field allows {length}")
        if required and not text:
            raise InvalidValue(f"{label}: the field is required, but the value is null or empty")
        return text

    return convert


def _text_target(field: FieldMapping) -> Converter:
    def convert(value: Any) -> str:
        if value is None:
            return NULL_TEXT
        if type(value) is not str:
            value = str(value)
        return value if value.isascii() else unicodedata.normalize("NFC", value)

    return convert


# Numbers ------------------------------------------------------------------------------------------


def _decimal_text(number: Decimal, quantum: Decimal | None) -> str:
    """Write a finite Decimal in plain notation, at the quantum's scale or without trailing zeros."""
    if quantum is None:
        number = number.normalize()
        text = format(number, "f")
    else:
        number = number.quantize(quantum, rounding=ROUND_HALF_UP)
        # str() is plain notation while the exponent is at least -6 (Python's decimal
        # specification), and it is three times faster than format().
        text = str(number) if quantum >= _SMALLEST_PLAIN_QUANTUM else format(number, "f")
    if text[0] == "-" and not number:
        return text[1:]  # -0.00 and 0.00 are the same value to Salesforce
    return text


_SMALLEST_PLAIN_QUANTUM = Decimal("1e-6")


def _to_decimal(value: Any, label: str) -> Decimal:
    """Convert a number or numeric text to a finite Decimal, raising InvalidValue otherwise."""
    kind = type(value)
    if kind is Decimal:
        number = value
    elif kind is int:
        number = Decimal(value)
    elif kind is float:
        if not math.isfinite(value):
            raise InvalidValue(f"{label}: {value!r} is not a number Salesforce can store, so it is never sent")
        number = Decimal(repr(value))
    elif kind is str:
        try:
            number = Decimal(value.strip())
        except InvalidOperation as err:
            raise InvalidValue(f"{label}: {value!r} is not a number") from err
    elif isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        raise InvalidValue(f"{label}: expected a number, got {_type_name(value)}")
    elif isinstance(value, Decimal):
        number = Decimal(value)  # a subclass of Decimal
    elif isinstance(value, numbers.Integral):
        number = Decimal(int(value))  # a subclass of int, or numpy.int64 and the like
    else:
        return _to_decimal(float(value), label)  # a subclass of float, or numpy.float32 and the like
    if not number.is_finite():
        raise InvalidValue(f"{label}: {value!r} is not a number Salesforce can store, so it is never sent")
    return number


def _quantum(field: FieldMapping) -> Decimal | None:
    return None if field.scale is None else Decimal(1).scaleb(-field.scale)


def _decimal_source(field: FieldMapping) -> Converter:
    label = _label(field)
    quantum = _quantum(field)
    plain = quantum is not None and quantum >= _SMALLEST_PLAIN_QUANTUM

    def convert(value: Any) -> str:
        if value is None:
            return NULL_TEXT
        number = value if type(value) is Decimal and value.is_finite() else _to_decimal(value, label)
        try:
            if plain:  # the common case of _decimal_text, inlined because it runs per row
                rounded = number.quantize(quantum, ROUND_HALF_UP)
                text = str(rounded)
                return text[1:] if text[0] == "-" and not rounded else text
            return _decimal_text(number, quantum)
        except InvalidOperation as err:
            raise InvalidValue(f"{label}: {value!r} has more digits than a decimal can hold") from err

    return convert


def _decimal_target(field: FieldMapping) -> Converter:
    quantum = _quantum(field)

    def convert(value: Any) -> str:
        if value is None or value == "":
            return NULL_TEXT
        if type(value) is float:
            value = repr(value)
        return _decimal_text(Decimal(value), quantum)

    return convert


def _integer_source(field: FieldMapping) -> Converter:
    label = _label(field)

    def convert(value: Any) -> str:
        if value is None:
            return NULL_TEXT
        if type(value) is int:
            return str(value)
        number = _to_decimal(value, label)
        if number != number.to_integral_value():
            raise InvalidValue(f"{label}: {value!r} is not a whole number")
        return str(int(number))

    return convert


def _integer_target(field: FieldMapping) -> Converter:
    def convert(value: Any) -> str:
        if value is None or value == "":
            return NULL_TEXT
        if type(value) is int:
            return str(value)
        if type(value) is str and value.isdigit():
            return str(int(value))  # drops leading zeros
        # "42.0" from a Number field, or a fraction that a whole source value will then replace.
        return _decimal_text(Decimal(repr(value) if type(value) is float else value), None)

    return convert


def _float_text(number: float) -> str:
    """Write a finite float in its shortest round-trip form, in plain notation."""
    if number == 0:
        return "0"  # also for -0.0
    text = repr(number)
    if "e" in text or "E" in text:
        return _decimal_text(Decimal(text), None)
    if text.endswith(".0"):
        return text[:-2]
    return text


def _double_source(field: FieldMapping) -> Converter:
    label = _label(field)
    scale = field.scale

    def convert(value: Any) -> str:
        if value is None:
            return NULL_TEXT
        if type(value) is not float:
            value = float(_to_decimal(value, label))
        if not math.isfinite(value):
            raise InvalidValue(f"{label}: {value!r} is not a number Salesforce can store, so it is never sent")
        if scale is not None:
            value = round(value, scale)
        return _float_text(value)

    return convert


def _double_target(field: FieldMapping) -> Converter:
    scale = field.scale

    def convert(value: Any) -> str:
        if value is None or value == "":
            return NULL_TEXT
        number = float(value)
        if scale is not None:
            number = round(number, scale)
        return _float_text(number)

    return convert


# Booleans -----------------------------------------------------------------------------------------

_BOOLEAN_TEXT = {"true": "true", "false": "false", "1": "true", "0": "false"}


def _boolean_source(field: FieldMapping) -> Converter:
    label = _label(field)

    def convert(value: Any) -> str:
        if value is True:
            return "true"
        if value is False or value is None:
            return "false"  # a checkbox has no null state: Salesforce stores null as false
        if isinstance(value, str):
            text = _BOOLEAN_TEXT.get(value.strip().lower())
            if text is not None:
                return text
            raise InvalidValue(f"{label}: {value!r} is not a boolean; expected true or false")
        raise InvalidValue(f"{label}: expected a boolean, got {_type_name(value)}")

    return convert


def _boolean_target(field: FieldMapping) -> Converter:
    def convert(value: Any) -> str:
        if value is True:
            return "true"
        if value is False or value is None or value == "":
            return "false"
        text = _BOOLEAN_TEXT.get(str(value).lower())
        if text is None:
            raise ValueError(f"{field.target}: {value!r} is not a Salesforce boolean")
        return text

    return convert


# Dates and times ----------------------------------------------------------------------------------


def _date_source(field: FieldMapping) -> Converter:
    label = _label(field)

    texts: dict[date, str] = {}

    def convert(value: Any) -> str:
        if value is None:
            return NULL_TEXT
        if type(value) is date:
            text = texts.get(value)
            if text is None:
                text = value.isoformat()
                if len(texts) < _MAX_CACHED_DAYS:
                    texts[value] = text
            return text
        if isinstance(value, datetime):
            raise InvalidValue(f"{label}: expected a date, got a datetime; convert it to a date in the query")
        if isinstance(value, date):
            return date(value.year, value.month, value.day).isoformat()
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()).isoformat()
            except ValueError as err:
                raise InvalidValue(f"{label}: {value!r} is not an ISO 8601 date (YYYY-MM-DD)") from err
        raise InvalidValue(f"{label}: expected a date, got {_type_name(value)}")

    return convert


def _date_target(field: FieldMapping) -> Converter:
    def convert(value: Any) -> str:
        if value is None or value == "":
            return NULL_TEXT
        # Bulk API 2.0 and REST both return YYYY-MM-DD; anything else is parsed to be sure.
        if len(value) == 10 and value[4] == "-" and value[7] == "-":
            return value
        return date.fromisoformat(value).isoformat()

    return convert


# Texts of days and of seconds within a day, cached because formatting a datetime field costs more
# than any other conversion per row. The caps bound the memory to a few MB.
_MAX_CACHED_DAYS = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


class _DayTexts(dict[int, str]):
    """Texts "YYYY-MM-DDT" by the number of days since 1970-01-01, filled on first use."""

    def __missing__(self, days: int) -> str:
        day = date.fromordinal(_EPOCH_ORDINAL + days)
        text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}T"
        if len(self) < _MAX_CACHED_DAYS:
            self[days] = text
        return text


class _SecondTexts(dict[int, str]):
    """Texts "HH:MM:SS.000Z" by the second within a day, filled on first use."""

    def __missing__(self, second: int) -> str:
        hours, rest = divmod(second, 3600)
        text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.000Z"
        self[second] = text  # at most 86,400 entries
        return text


_day_texts = _DayTexts()
_second_texts = _SecondTexts()


def _datetime_text(moment: datetime) -> str:
    """Write an aware datetime in UTC, truncated to whole seconds, as Salesforce returns it."""
    if moment.tzinfo is not UTC or type(moment) is not datetime:
        moment = moment.astimezone(UTC)
        # A subclass, such as pandas.Timestamp, may subtract differently: keep its fields only.
        moment = datetime(
            moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, tzinfo=UTC
        )
    # Both operands have the same tzinfo object, so Python subtracts their fields without calling
    # utcoffset(). The timedelta is normalised to whole days and 0 <= seconds < 86,400, which
    # truncates microseconds towards the earlier second, also before 1970.
    since_epoch = moment - _EPOCH
    return _day_texts[since_epoch.days] + _second_texts[since_epoch.seconds]


def _datetime_source(field: FieldMapping) -> Converter:
    label = _label(field)

    def convert(value: Any) -> str:
        if type(value) is datetime and value.tzinfo is UTC:
            return _datetime_text(value)  # what the BigQuery client returns for a TIMESTAMP
        if value is None:
            return NULL_TEXT
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError as err:
                raise InvalidValue(f"{label}: {value!r} is not an ISO 8601 datetime") from err
        if not isinstance(value, datetime):
            raise InvalidValue(f"{label}: expected a datetime, got {_type_name(value)}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidValue(
                f"{label}: the datetime {value.isoformat()} has no time zone; "
                "select a TIMESTAMP or attach the zone in the query"
            )
        return _datetime_text(value)

    return convert


def _datetime_target(field: FieldMapping) -> Converter:
    def convert(value: Any) -> str:
        if value is None or value == "":
            return NULL_TEXT
        # Bulk API 2.0 query CSV: 2024-01-02T03:04:05.000Z, already whole seconds in UTC.
        if len(value) == 24 and value[10] == "T" and value.endswith(".000Z"):
            return value
        # REST returns 2024-01-02T03:04:05.000+0000; Python 3.11 parses both forms.
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # Salesforce API datetimes are UTC
        return _datetime_text(moment)

    return convert


# Column fast paths -------------------------------------------------------------------------------
#
# Each builder takes a field and the value-by-value converter of its column. It returns a converter
# that handles a list of None and one exact type in a comprehension or a C-level map, with no
# Python call per value, and hands every other list to the value-by-value converter. Checking
# `type(value)` in a set excludes subclasses, so bool never passes for int, nor datetime for date.

_NONE_TYPE = type(None)
_DECIMAL_TYPES = frozenset({Decimal, _NONE_TYPE})
_INTEGER_TYPES = frozenset({int, _NONE_TYPE})
_BOOLEAN_TYPES = frozenset({bool, _NONE_TYPE})
_DATE_TYPES = frozenset({date, _NONE_TYPE})
_DATETIME_TYPES = frozenset({datetime, _NONE_TYPE})
_BOOLEAN_VALUE_TEXT = {True: "true", False: "false", None: "false"}


def _types_within(values: list[Any], types: frozenset[type]) -> bool:
    return set(map(type, values)) <= types


def _decimal_column(field: FieldMapping, convert_each: ColumnConverter) -> ColumnConverter:
    quantum = _quantum(field)
    if quantum is None or quantum < _SMALLEST_PLAIN_QUANTUM:
        return convert_each
    required = not field.nullable
    negative_zero = str(Decimal(0).quantize(quantum).copy_negate())  # "-0.00" at scale 2

    def convert_column(values: list[Any]) -> list[str]:
        if not _types_within(values, _DECIMAL_TYPES) or (required and None in values):
            return convert_each(values)
        try:
            texts = [
                NULL_TEXT if value is None else str(value.quantize(quantum, ROUND_HALF_UP)) for value in values
            ]
        except InvalidOperation:  # an infinity, a signalling NaN or too many digits
            return convert_each(values)
        # A quiet NaN quantizes to "NaN". A rounded value of zero keeps its sign, and its text is
        # the negative zero, which the value-by-value converter writes without the sign.
        joined = "\x00".join(texts)
        if "N" in joined or negative_zero in joined:
            return convert_each(values)
        return texts

    return convert_column


def _integer_column(field: FieldMapping, convert_each: ColumnConverter) -> ColumnConverter:
    required = not field.nullable

    def convert_column(values: list[Any]) -> list[str]:
        if not _types_within(values, _INTEGER_TYPES) or (required and None in values):
            return convert_each(values)
        return [NULL_TEXT if value is None else str(value) for value in values]

    return convert_column


def _boolean_column(field: FieldMapping, convert_each: ColumnConverter) -> ColumnConverter:
    def convert_column(values: list[Any]) -> list[str]:
        if not _types_within(values, _BOOLEAN_TYPES):
            return convert_each(values)
        return list(map(_BOOLEAN_VALUE_TEXT.__getitem__, values))

    return convert_column


class _DateTexts(dict[date | None, str]):
    """ISO 8601 texts of dates, filled on first use; None maps to NULL_TEXT."""

    def __missing__(self, day: date) -> str:
        text = day.isoformat()
        if len(self) < _MAX_CACHED_DAYS:
            self[day] = text
        return text


def _date_column(field: FieldMapping, convert_each: ColumnConverter) -> ColumnConverter:
    required = not field.nullable
    texts = _DateTexts({None: NULL_TEXT})

    def convert_column(values: list[Any]) -> list[str]:
        if not _types_within(values, _DATE_TYPES) or (required and None in values):
            return convert_each(values)
        return list(map(texts.__getitem__, values))

    return convert_column


def _datetime_column(field: FieldMapping, convert_each: ColumnConverter) -> ColumnConverter:
    required = not field.nullable
    day_texts, second_texts = _day_texts, _second_texts

    def convert_column(values: list[Any]) -> list[str]:
        if not _types_within(values, _DATETIME_TYPES) or (required and None in values):
            return convert_each(values)
        # The UTC datetimes that the BigQuery client returns for a TIMESTAMP, as _datetime_text
        # writes them. The filter drops any other zone, and the length check then sends the list
        # value by value.
        texts = [
            NULL_TEXT if value is None else day_texts[(since := value - _EPOCH).days] + second_texts[since.seconds]
            for value in values
            if value is None or value.tzinfo is UTC
        ]
        return texts if len(texts) == len(values) else convert_each(values)

    return convert_column


_COLUMN_BUILDERS: dict[FieldType, Callable[[FieldMapping, ColumnConverter], ColumnConverter]] = {
    FieldType.DECIMAL: _decimal_column,
    FieldType.INTEGER: _integer_column,
    FieldType.BOOLEAN: _boolean_column,
    FieldType.DATE: _date_column,
    FieldType.DATETIME: _datetime_column,
}


_SOURCE_BUILDERS: dict[FieldType, Callable[[FieldMapping], Converter]] = {
    FieldType.DECIMAL: _decimal_source,
    FieldType.INTEGER: _integer_source,
    FieldType.DOUBLE: _double_source,
    FieldType.BOOLEAN: _boolean_source,
    FieldType.DATE: _date_source,
    FieldType.DATETIME: _datetime_source,
}
_TARGET_BUILDERS: dict[FieldType, Callable[[FieldMapping], Converter]] = {
    FieldType.DECIMAL: _decimal_target,
    FieldType.INTEGER: _integer_target,
    FieldType.DOUBLE: _double_target,
    FieldType.BOOLEAN: _boolean_target,
    FieldType.DATE: _date_target,
    FieldType.DATETIME: _datetime_target,
}
for _text_type in TEXT_TYPES:
    _SOURCE_BUILDERS[_text_type] = _text_source
    _TARGET_BUILDERS[_text_type] = _text_target
    _COLUMN_BUILDERS[_text_type] = _text_column
