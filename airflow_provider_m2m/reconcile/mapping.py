"""Field mapping from source columns to Salesforce fields, and the NULL sentinel of a plan."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field


class FieldType(enum.Enum):
    """Salesforce field type, which decides how a value is normalised, compared and written."""

    STRING = "string"
    TEXTAREA = "textarea"
    PICKLIST = "picklist"
    EMAIL = "email"
    PHONE = "phone"
    URL = "url"
    DECIMAL = "decimal"  # Currency, Number and Percent fields, compared exactly at the field's scale
    INTEGER = "integer"  # Number fields with scale 0
    DOUBLE = "double"  # Number fields compared as binary floating point
    BOOLEAN = "boolean"  # Checkbox
    DATE = "date"
    DATETIME = "datetime"

    @property
    def is_text(self) -> bool:
        return self in TEXT_TYPES


TEXT_TYPES = frozenset(
    {
        FieldType.STRING,
        FieldType.TEXTAREA,
        FieldType.PICKLIST,
        FieldType.EMAIL,
        FieldType.PHONE,
        FieldType.URL,
    }
)

# Salesforce external id fields can be Text, Number, Email or Auto Number.
KEY_TYPES = TEXT_TYPES | {FieldType.INTEGER}


class Null(enum.Enum):
    """Type of the NULL sentinel: an enum member stays a singleton across copy and pickle."""

    NULL = "NULL"

    def __repr__(self) -> str:
        return "NULL"

    def __bool__(self) -> bool:
        return False


NULL = Null.NULL
"""Plan value that sets a Salesforce field to null.

A plan never uses None for this, because a writer needs to tell "set to null" apart from "leave as
it is". In a Bulk API 2.0 CSV upload, write NULL as `#N/A`: a blank cell there leaves the field
unchanged on update. In a REST or sObject Collections JSON body, write it as JSON null.
"""


@dataclass(frozen=True)
class FieldMapping:
    """One source column mapped to one Salesforce field.

    `scale` is the number of decimal places of a DECIMAL field (values are rounded half up to it)
    or of a DOUBLE field (values are rounded to it). `length` is the maximum number of characters
    of a text field. `nullable=False` rejects a source row whose value is null before it is sent.
    """

    source: str
    target: str
    type: FieldType
    scale: int | None = None
    length: int | None = None
    nullable: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.type, FieldType):
            raise TypeError(f"field {self.target!r}: type must be a FieldType, got {self.type!r}")
        if not self.source or not self.target:
            raise ValueError(f"field mapping {self.source!r} -> {self.target!r}: both names are required")
        if self.scale is not None:
            if self.type not in (FieldType.DECIMAL, FieldType.DOUBLE):
                raise ValueError(f"field {self.target!r}: scale applies only to DECIMAL and DOUBLE fields")
            if not 0 <= self.scale <= 18:
                raise ValueError(f"field {self.target!r}: scale must be between 0 and 18, got {self.scale}")
        if self.length is not None:
            if not self.type.is_text:
                raise ValueError(f"field {self.target!r}: length applies only to text fields")
            if self.length < 1:
                raise ValueError(f"field {self.target!r}: length must be positive, got {self.length}")


@dataclass(frozen=True)
class Mapping:
    """Field mappings of one reconciliation; `key` maps the external id field used for upserts.

    `key_case_sensitive=False`, the default, compares text keys as Salesforce matches an external
    id that is Unique with "Treat ABC and abc as duplicate values": "ACC-1" and "acc-1" are one key.
    Keys are then compared after `str.casefold()`, so two source rows that differ only in case are
    duplicates, and a source key finds the target record spelled in another case. Set it to True
    for a field defined Unique and case-sensitive. It has no effect on an integer key.

    NOTE: the Apex Developer Guide ("Upserting Records") states that matching folds case only for a custom
    field that is Unique and case-insensitive, which suggests an external id that is not Unique
    matches case-sensitively and needs True as well. This was not checked against a real org.
    """

    key: FieldMapping
    fields: Sequence[FieldMapping] = field(default_factory=tuple)
    key_case_sensitive: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if not isinstance(self.key_case_sensitive, bool):
            raise TypeError(f"key field {self.key.target!r}: key_case_sensitive must be a bool")
        if self.key.type not in KEY_TYPES:
            raise ValueError(
                f"key field {self.key.target!r}: an external id must be a text, email or integer field, "
                f"got {self.key.type.name}"
            )
        if self.key.nullable:
            # A key mapped with the default nullable=True is still required: a row without it
            # cannot be upserted. Store the fact so that the mapping reads as it behaves.
            object.__setattr__(self, "key", _replace_nullable(self.key))
        all_fields = (self.key, *self.fields)
        _reject_repeats([f.source for f in all_fields], "source column")
        _reject_repeats([f.target for f in all_fields], "target field")

    def target_fields(self) -> list[str]:
        """Return the target field names, the key first, in mapping order."""
        return [self.key.target, *(f.target for f in self.fields)]

    def source_columns(self) -> list[str]:
        """Return the source column names, the key first, in mapping order."""
        return [self.key.source, *(f.source for f in self.fields)]


def _replace_nullable(key: FieldMapping) -> FieldMapping:
    return FieldMapping(key.source, key.target, key.type, key.scale, key.length, nullable=False)


def _reject_repeats(names: list[str], what: str) -> None:
    seen: set[str] = set()
    repeated = []
    for name in names:
        if name in seen:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(f"mapping uses the {what} {', '.join(map(repr, repeated))} more than once")
