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
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
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


ColumnConverter = Callable[[list[Any]], list[str]]


def source_column_converter(field: FieldMapping) -> ColumnConverter:
    """Build the function that converts a list of source values of `field`, with the same results
    and errors as `source_converter` applied to each value.

    Text columns take a fast path: when every value is already valid text, the list is checked
    with a few C-level string operations and returned as it is.
    """
    convert = source_converter(field)

    def convert_each(values: list[Any]) -> list[str]:
        return list(map(convert, values))

    if not field.type.is_text:
        return convert_each
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
_day_texts: dict[int, str] = {}
_second_texts: dict[int, str] = {}


def _datetime_text(moment: datetime) -> str:
    """Write an aware datetime in UTC, truncated to whole seconds, as Salesforce returns it."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    day = moment.toordinal()
    day_text = _day_texts.get(day)
    if day_text is None:
        day_text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        if len(_day_texts) < _MAX_CACHED_DAYS:
            _day_texts[day] = day_text
    second = moment.hour * 3600 + moment.minute * 60 + moment.second
    second_text = _second_texts.get(second)
    if second_text is None:
        second_text = f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.000Z"
        _second_texts[second] = second_text  # at most 86,400 entries
    return day_text + second_text


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
