"""Check `orphan_flag` values against the target object's describe, and compare them as Salesforce stores them.

A flag value reads back in its field's form. A dateTime `2026-01-01T00:00:00Z` reads back as
`2026-01-01T00:00:00.000+0000`, and a lookup field set with a 15-character Id returns the
18-character Id. A Number field of scale 0 shows 1.5 as 2. So each flag value is converted once
with the engine's `source_converter` for a `FieldMapping` built from the describe, each value read
back with its `target_converter`, and the two comparable forms must be equal. Imports nothing from
Airflow.

Some flag values the describe proves the field cannot store: a wrong type, text too long, a number
out of range, a value outside a restricted picklist, a field that does not exist or cannot be
edited. Each raises ValueError naming `orphan_flag` and the field, before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType
from airflow_provider_m2m.reconcile.normalize import InvalidValue, source_converter, target_converter
from airflow_provider_m2m.reconcile.orphans import FlagCheck, FlagValue, OrphanFlag, flag_matches, flag_text

# Salesforce field types (describe's `type`) and the engine type that compares them. Number,
# Currency and Percent fields compare as DECIMAL rounded half up to the field's scale, both the flag
# value and the value read back. A value written through the API is stored as sent and only shown
# rounded (Salesforce Help article 000387302), while the sandbox stores it rounded. Rounding both
# sides matches either, so a Number field of scale 0 takes 1.5 as 2, never as a whole number.
_FIELD_TYPES = {
    "string": FieldType.STRING,
    "textarea": FieldType.TEXTAREA,
    "picklist": FieldType.PICKLIST,
    "email": FieldType.EMAIL,
    "phone": FieldType.PHONE,
    "url": FieldType.URL,
    "currency": FieldType.DECIMAL,
    "percent": FieldType.DECIMAL,
    "double": FieldType.DECIMAL,
    "int": FieldType.INTEGER,
    "long": FieldType.INTEGER,
    "boolean": FieldType.BOOLEAN,
    "date": FieldType.DATE,
    "datetime": FieldType.DATETIME,
}
# Lookup and Id fields. Salesforce returns an 18-character Id: the 15-character, case-sensitive Id
# and a 3-character suffix that encodes the case of its letters.
_REFERENCE_TYPES = frozenset({"reference", "id"})
_CASE_SENSITIVE_ID_LENGTH = 15
_RECORD_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")


def describe_orphan_flag(flag: Mapping[str, FlagValue], describe: Mapping[str, Any]) -> OrphanFlag:
    """Build the flag's per-field checks from an sObject describe result; raise ValueError for a value it cannot store.

    A field of a type not listed above (multi-select picklist, encrypted text, time, and others)
    is compared as `flag_matches` does, and its value is left for Salesforce to check.
    """
    object_name = describe.get("name") or "the target object"
    fields = {str(item.get("name", "")).lower(): item for item in describe.get("fields", [])}
    checks: dict[str, FlagCheck] = {}
    for name, value in flag.items():
        described = fields.get(name.lower())
        if described is None:
            raise ValueError(
                f"orphan_flag field {name!r} is not a field of {object_name} that the connection's user can see; "
                "check the field's API name and that the user has read and edit access to it"
            )
        if not described.get("updateable", True):
            raise ValueError(
                f"orphan_flag field {name!r} of {object_name} cannot be edited by the connection's user "
                "(describe reports updateable false): it is read-only, a formula, or the user lacks edit access"
            )
        checks[name] = _field_check(object_name, name, value, described)
    return OrphanFlag(flag, checks)


def _field_check(object_name: str, name: str, value: FlagValue, described: Mapping[str, Any]) -> FlagCheck:
    salesforce_type = str(described.get("type", "")).lower()
    where = f"orphan_flag[{name!r}]={value!r} cannot be stored in the {salesforce_type} field {object_name}.{name}"
    if value is None and described.get("nillable") is False and salesforce_type != "boolean":
        raise ValueError(f"{where}: the field is required, so it cannot be set to null")
    if salesforce_type in _REFERENCE_TYPES:
        return _reference_check(where, value)
    field_type = _FIELD_TYPES.get(salesforce_type)
    if field_type is None:
        return lambda current: flag_matches(current, value)

    if field_type is FieldType.DATETIME and isinstance(value, str) and not _has_time_zone(value):
        raise ValueError(
            f"orphan_flag[{name!r}]={value!r} has no time zone. Add Z or an offset, for example "
            f"2026-01-01T00:00:00Z, so that it compares with the UTC value Salesforce stores in {object_name}.{name}"
        )
    field = _field_mapping(name, field_type, described)
    if field_type.is_text and isinstance(value, bool | float):
        value = flag_text(value)  # JSON true or 1.5 is stored in a text field as its text
    try:
        expected = source_converter(field)(value)
    except InvalidValue as err:
        reason = str(err).partition(": ")[2] or str(err)
        raise ValueError(f"{where}: {reason}") from err
    _check_range(where, expected, field_type, described)
    _check_picklist(where, expected, field_type, described)

    read = target_converter(field)
    return lambda current: _read_or_none(read, current) == expected


def _field_mapping(name: str, field_type: FieldType, described: Mapping[str, Any]) -> FieldMapping:
    scale = None
    length = None
    if field_type is FieldType.DECIMAL:
        scale = int(described.get("scale") or 0)
    elif field_type.is_text and described.get("length"):
        length = int(described["length"])
    # A checkbox is never null, and the boolean converters read null as false.
    nullable = described.get("nillable", True) is not False or field_type is FieldType.BOOLEAN
    return FieldMapping("orphan_flag", name, field_type, scale=scale, length=length, nullable=nullable)


def _has_time_zone(text: str) -> bool:
    try:
        return datetime.fromisoformat(text.strip()).tzinfo is not None
    except ValueError:
        return True  # not a datetime at all: the converter names that error


def _read_or_none(read: Any, current: Any) -> str | None:
    """Convert a value read back; None when it does not parse, so that the flag is written again."""
    try:
        return read(current)
    except (ValueError, TypeError, ArithmeticError):
        return None


def _check_range(where: str, expected: str, field_type: FieldType, described: Mapping[str, Any]) -> None:
    """Raise when a number has more integer digits than the field's precision minus its scale allows."""
    precision = described.get("precision") or 0
    if field_type is not FieldType.DECIMAL or not expected or not precision:
        return
    allowed = int(precision) - int(described.get("scale") or 0)
    # Truncated, not rounded: 99.6 has 2 integer digits and fits a field of precision 3 and scale 1.
    integral = abs(Decimal(expected)).to_integral_value(rounding=ROUND_DOWN)
    digits = 0 if integral == 0 else len(str(integral))
    if digits > allowed:
        raise ValueError(f"{where}: the field allows {allowed} digits before the decimal point, the value has {digits}")


def _check_picklist(where: str, expected: str, field_type: FieldType, described: Mapping[str, Any]) -> None:
    """Raise when a restricted picklist has no active value equal to the flag value."""
    if field_type is not FieldType.PICKLIST or not expected or not described.get("restrictedPicklist"):
        return
    allowed = [item.get("value") for item in described.get("picklistValues", []) if item.get("active", True)]
    if expected not in allowed:
        raise ValueError(f"{where}: the picklist is restricted to {', '.join(map(str, allowed))}")


def _reference_check(where: str, value: FlagValue) -> FlagCheck:
    """Build a check that compares Ids by their first 15 characters, case-sensitively.

    A 15-character flag value then matches the 18-character form that Salesforce returns.
    """
    if value is None or value == "":
        return lambda current: current is None or current == ""
    if not isinstance(value, str) or not _RECORD_ID.fullmatch(value):
        raise ValueError(f"{where}: expected a 15- or 18-character record Id")
    expected = value[:_CASE_SENSITIVE_ID_LENGTH]
    return lambda current: isinstance(current, str) and current[:_CASE_SENSITIVE_ID_LENGTH] == expected
