"""Field values: conversion from JSON, CSV and Python input, validation, and output formatting.

Stored values are Python types: `str` for text, `Decimal` quantised to the field's scale for
numbers, `bool`, `datetime.date`, and aware UTC `datetime.datetime` with millisecond precision.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from airflow_provider_m2m.sandbox.salesforce import objects
from airflow_provider_m2m.sandbox.salesforce.objects import FieldDef


class _Unchanged:
    """Marker for a blank Bulk API CSV cell, which leaves the field as it is."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()

# Bulk API CSV: this cell value sets a field to null, while a blank cell leaves it unchanged.
CSV_NULL = "#N/A"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d+)?(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class RecordError:
    """A per-record error as Salesforce reports it: status code, message and the fields involved."""

    status_code: str
    message: str
    fields: tuple[str, ...] = field(default=())

    def to_result(self) -> dict[str, Any]:
        """Form used in save results (sObject Collections, upsert): `statusCode`, `message`, `fields`."""
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}

    def to_api_error(self) -> dict[str, Any]:
        """Form used in the body of a failed REST request: `message`, `errorCode`, and `fields` when any."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.status_code}
        if self.fields:
            body["fields"] = list(self.fields)
        return body

    def to_bulk(self) -> str:
        """Form of the Bulk API `sf__Error` column: `CODE:message:Field1 Field2 --`."""
        return f"{self.status_code}:{self.message}:{' '.join(self.fields)} --" if self.fields else f"{self.status_code}:{self.message}:--"


class ValueTypeError(ValueError):
    """A value that cannot be read as the field's type (a number field given `abc`)."""

    def __init__(self, field_def: FieldDef, value: Any) -> None:
        super().__init__(f"{value!r} is not a valid value for the type {objects.SOAP_TYPES[field_def.type]}")
        self.field_def = field_def
        self.value = value

    def bulk_error(self, column: int) -> RecordError:
        """Build the Bulk API error for this cell; `column` is the 1-based CSV column."""
        soap_type = objects.SOAP_TYPES[self.field_def.type]
        message = f"Failed to deserialize field at col {column}. Due to, '{self.value}' is not a valid value for the type {soap_type}"
        return RecordError("INVALID_FIELD", message, (self.field_def.name,))

    def rest_error(self) -> RecordError:
        """Build the REST API error, which fails the whole request because its JSON body cannot be read."""
        java_type = {"xsd:double": "double", "xsd:boolean": "boolean", "xsd:date": "date", "xsd:dateTime": "datetime"}
        type_name = java_type.get(objects.SOAP_TYPES[self.field_def.type], "string")
        message = (
            f"Cannot deserialize instance of {type_name} from VALUE_STRING value {self.value} "
            "or request may be missing a required field"
        )
        return RecordError("JSON_PARSER_ERROR", message, ())


# -- reading values -------------------------------------------------------------------------------


def _quantise(field_def: FieldDef, number: Decimal) -> Decimal:
    """Round to the field's scale the way Salesforce stores numbers (half up)."""
    return number.quantize(Decimal(1).scaleb(-field_def.scale), rounding=ROUND_HALF_UP)


def _read_number(field_def: FieldDef, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueTypeError(field_def, value)
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as err:
        raise ValueTypeError(field_def, value) from err
    if not number.is_finite():
        raise ValueTypeError(field_def, value)
    return number


def _read_boolean(field_def: FieldDef, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0"):
        return False
    raise ValueTypeError(field_def, value)


def _read_date(field_def: FieldDef, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _DATE.match(value.strip()):
        raise ValueTypeError(field_def, value)
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as err:
        raise ValueTypeError(field_def, value) from err


def _truncate_to_millis(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _read_datetime(field_def: FieldDef, value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return _truncate_to_millis(aware.astimezone(dt.timezone.utc))
    match = _DATETIME.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueTypeError(field_def, value)
    fraction = (match["fraction"] or ".0")[1:7].ljust(6, "0")
    zone = match["zone"] or "Z"
    offset = "+00:00" if zone == "Z" else f"{zone[:3]}:{zone[-2:]}"
    try:
        parsed = dt.datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{offset}")
    except ValueError as err:
        raise ValueTypeError(field_def, value) from err
    return _truncate_to_millis(parsed.astimezone(dt.timezone.utc))


def _read_text(field_def: FieldDef, value: Any) -> str | None:
    if isinstance(value, (dict, list)):
        raise ValueTypeError(field_def, value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    # Salesforce stores an empty string in a text field as null.
    return text or None


def read_value(field_def: FieldDef, value: Any) -> Any:
    """Convert a JSON or Python value to the stored form; None stays None (a checkbox becomes false).

    Raises ValueTypeError when the value cannot be read as the field's type.
    """
    if value is None:
        return False if field_def.type == objects.BOOLEAN else None
    if field_def.type in objects.NUMBER_TYPES:
        return _read_number(field_def, value)
    if field_def.type == objects.BOOLEAN:
        return _read_boolean(field_def, value)
    if field_def.type == objects.DATE:
        return _read_date(field_def, value)
    if field_def.type == objects.DATETIME:
        return _read_datetime(field_def, value)
    return _read_text(field_def, value)


def read_csv_cell(field_def: FieldDef, cell: str) -> Any:
    """Convert one Bulk API CSV cell: blank leaves the field unchanged and `#N/A` sets it to null."""
    if cell == "":
        return UNCHANGED
    if cell == CSV_NULL:
        return read_value(field_def, None)
    return read_value(field_def, cell)


# -- validating values ----------------------------------------------------------------------------


def _digits_before_point(number: Decimal) -> int:
    integral = abs(number).to_integral_value(rounding="ROUND_DOWN")
    return 0 if integral == 0 else len(str(integral))


def validate_value(field_def: FieldDef, value: Any) -> tuple[Any, RecordError | None]:
    """Check a converted value against the field's limits; return the value to store and any error.

    Numbers come back rounded to the field's scale. Required fields are checked on the whole
    record, not here.
    """
    if value is None:
        return None, None
    if field_def.type in objects.NUMBER_TYPES:
        rounded = _quantise(field_def, value)
        if _digits_before_point(rounded) > field_def.max_integer_digits:
            message = f"{field_def.label}: value outside of valid range on numeric field: {value}"
            return value, RecordError("NUMBER_OUTSIDE_VALID_RANGE", message, (field_def.name,))
        return rounded, None
    if not isinstance(value, str):
        return value, None
    if field_def.length and len(value) > field_def.length:
        excerpt = value if len(value) <= 40 else value[:37] + "..."
        message = f"{field_def.label}: data value too large: {excerpt} (max length={field_def.length})"
        return value, RecordError("STRING_TOO_LONG", message, (field_def.name,))
    if field_def.type == objects.PICKLIST and field_def.restricted_picklist and value not in field_def.picklist_values:
        message = f"{field_def.label}: bad value for restricted picklist field: {value}"
        return value, RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", message, (field_def.name,))
    if field_def.type == objects.EMAIL and not _EMAIL.match(value):
        message = f"{field_def.label}: invalid email address: {value}"
        return value, RecordError("INVALID_EMAIL_ADDRESS", message, (field_def.name,))
    return value, None


# -- writing values -------------------------------------------------------------------------------


def format_decimal(number: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros (`1234.5`, `42`)."""
    text = format(number.normalize(), "f")
    return text


def format_datetime_rest(moment: dt.datetime) -> str:
    """REST API datetime form: `2024-01-02T03:04:05.000+0000`."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def format_datetime_csv(moment: dt.datetime) -> str:
    """Bulk API CSV datetime form: `2024-01-02T03:04:05.000Z`."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_json_value(value: Any) -> Any:
    """Convert a stored value for a REST response; Decimals stay Decimal for `dumps` to write as numbers."""
    if isinstance(value, dt.datetime):
        return format_datetime_rest(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def to_csv_value(value: Any) -> str:
    """Convert a stored value for a Bulk API query CSV; null becomes an empty string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, dt.datetime):
        return format_datetime_csv(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _json_number(number: Decimal) -> str:
    # The REST API returns number and currency fields as JSON doubles: 42.0, 1234.5.
    text = format_decimal(number)
    return text if "." in text else text + ".0"


def dumps(payload: Any) -> str:
    """Serialise a response body to JSON, writing Decimals as exact JSON numbers."""
    if isinstance(payload, Decimal):
        return _json_number(payload)
    if isinstance(payload, dict):
        items = (f"{json.dumps(str(key))}:{dumps(value)}" for key, value in payload.items())
        return "{" + ",".join(items) + "}"
    if isinstance(payload, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in payload) + "]"
    return json.dumps(payload, ensure_ascii=False)
