"""The plan of a reconciliation: the records to write, and the errors that stop planning."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from airflow_provider_m2m.reconcile.mapping import Mapping, Null

# Maximum number of keys an error message lists; it gives the count of the rest.
MAX_KEYS_IN_MESSAGE = 20

WireValue = str | Null
Record = dict[str, WireValue]


class DuplicateKeyError(ValueError):
    """The source or the target has an external id more than once, so no write is planned.

    `side` is "source" or "target"; `keys` lists every repeated key, sorted. With
    `case_sensitive=False` keys that differ only in case count as one, and `keys` shows one spelling
    of each, the one a repeating row used.
    """

    def __init__(self, side: str, field_name: str, keys: list[str], *, case_sensitive: bool = True) -> None:
        self.side = side
        self.field_name = field_name
        self.keys = keys
        self.case_sensitive = case_sensitive
        shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
        more = f" and {len(keys) - MAX_KEYS_IN_MESSAGE} more" if len(keys) > MAX_KEYS_IN_MESSAGE else ""
        compared = "" if case_sensitive else " (ignoring case)"
        super().__init__(
            f"the {side} has {len(keys)} {field_name} value(s) more than once{compared}: {shown}{more}; "
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
    """Writes that make the target match the source, and the counts that account for every row.

    `creates` contains whole records, and `updates` the key and only the fields that differ. Both map
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
