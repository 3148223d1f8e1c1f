"""Orphans: target records whose external id the source does not have. Imports nothing from Airflow.

A run reports orphans by default. With the action "flag" it sets fields on them (for example
`Active__c = false`) by an update of their record Id, and with "delete" it deletes them by record
Id. Deleted records go to the org's Recycle Bin, where Salesforce keeps them restorable for 15 days.
An update never creates a record, so an orphan deleted after the lookup stays deleted and counts as
gone.

1. `check_orphan_limit` stops a flag or delete run before anything is written when there are more
   orphans than the run allows, so a broken or empty source query cannot wipe an object.
2. `plan_orphan_work` matches the orphan keys with the records a lookup by key returned: the Ids to
   write, the orphans whose flag fields already hold the values, and the keys no longer there.
3. `account_orphans` turns the work and the write outcomes into an `OrphanResult`. Its
   `check_totals` raises when the orphans are not each in exactly one status. A write that failed
   because the record no longer exists counts as gone: a delete that failed with ENTITY_IS_DELETED,
   or a flag update that failed with ENTITY_IS_DELETED (Recycle Bin) or INVALID_CROSS_REFERENCE_KEY
   (purged) for an Id that a lookup after the write no longer found. Both codes also name a flag
   value that refers to a deleted or missing record, so neither alone proves the orphan gone.
   `ids_to_recheck` lists the Ids for that lookup.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_m2m.reconcile.mapping import NULL
from airflow_provider_m2m.reconcile.result import AccountingError, RecordOutcome, failure_sample

ORPHAN_ACTIONS = ("report", "flag", "delete")
ORPHAN_STATUSES = ("reported", "flagged", "already_flagged", "deleted", "gone", "failed", "unprocessed")
# A flag or delete run stops when the orphans are more than this share of the target records read.
# A healthy nightly source rarely loses a tenth of an object; an empty or broken query loses all.
DEFAULT_MAX_ORPHAN_FRACTION = 0.1

# Salesforce's status code for a write to a record that is already deleted, at least while the
# record is in the Recycle Bin. A reference field set to the Id of a deleted record fails with it
# too ("You can't reference an object that has been deleted", API status codes), so for a flag
# update it alone does not prove the orphan gone.
ENTITY_IS_DELETED = "ENTITY_IS_DELETED"
# Salesforce's status code for an update of an Id that names no record, as after a purge. A
# reference field set to an Id of no record fails with it too, so it alone does not prove the
# orphan gone.
# NOTE: that a purged Id gets this code comes from third-party error references and the sandbox,
# not from a real org. Another code would leave the orphan failed, never re-created.
INVALID_CROSS_REFERENCE_KEY = "INVALID_CROSS_REFERENCE_KEY"

MAX_KEYS_IN_MESSAGE = 20

FlagValue = bool | int | float | Decimal | str | None


class OrphanLimitError(RuntimeError):
    """Raised before any write when a flag or delete run has more orphans than its limit allows."""


def parse_orphan_action(value: Any) -> str:
    """Return the orphan action named by `value` (case and surrounding spaces ignored), or raise ValueError."""
    action = value.strip().lower() if isinstance(value, str) else value
    if action not in ORPHAN_ACTIONS:
        raise ValueError(f"orphans={value!r} is invalid; expected one of {', '.join(ORPHAN_ACTIONS)}")
    return action


def validate_orphan_flag(flag: Any, key_field: str) -> dict[str, FlagValue]:
    """Return `flag` as a dict of target field to value, or raise ValueError naming `orphan_flag`."""
    if not isinstance(flag, Mapping) or not flag:
        raise ValueError(
            "orphan_flag must be a non-empty dict of target field to value, for example "
            "{'Active__c': False}; orphans='flag' writes it, and other actions need no orphan_flag"
        )
    for name, value in flag.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"orphan_flag has an invalid field name {name!r}; expected a Salesforce field API name")
        if name.lower() in (key_field.lower(), "id"):
            raise ValueError(f"orphan_flag cannot set {name}: it identifies the record")
        if value is not None and not isinstance(value, bool | int | float | Decimal | str):
            raise ValueError(
                f"orphan_flag[{name!r}] is a {type(value).__name__}; expected a bool, number, text or None"
            )
        # Salesforce number fields cannot store NaN or infinity, and JSON has no literal for them.
        if (isinstance(value, float) and not math.isfinite(value)) or (
            isinstance(value, Decimal) and not value.is_finite()
        ):
            raise ValueError(f"orphan_flag[{name!r}] is {value!r}; expected a finite number")
    return dict(flag)


def validate_orphan_limits(max_orphans: Any, max_orphan_fraction: Any) -> None:
    """Raise ValueError naming the parameter when a limit is neither None nor in its range."""
    if max_orphans is not None and (isinstance(max_orphans, bool) or not isinstance(max_orphans, int) or max_orphans < 0):
        raise ValueError(f"max_orphans={max_orphans!r} is invalid; expected a record count of 0 or more, or None")
    if max_orphan_fraction is not None and (
        isinstance(max_orphan_fraction, bool)
        or not isinstance(max_orphan_fraction, int | float)
        or not 0 <= max_orphan_fraction <= 1
    ):
        raise ValueError(
            f"max_orphan_fraction={max_orphan_fraction!r} is invalid; expected a share from 0 to 1 "
            "of the target records read (0.1 allows 10%), or None"
        )


def check_orphan_limit(
    action: str,
    orphans: int,
    read_target: int,
    *,
    max_orphans: int | None,
    max_orphan_fraction: float | None,
) -> None:
    """Raise OrphanLimitError when a flag or delete run would write more orphans than either limit allows.

    `orphans` counts the orphans the run would write: for "flag", those not flagged yet, so that
    records flagged on earlier runs never stop a later one. "report" writes nothing, so it never
    trips. Each limit that is not None applies on its own. The share is compared in decimal, so
    that 29 of 100 is within `max_orphan_fraction=0.29`.
    """
    if action == "report":
        return
    exceeded = []
    if max_orphans is not None and orphans > max_orphans:
        exceeded.append(f"max_orphans={max_orphans}")
    if max_orphan_fraction is not None and orphans > Decimal(repr(max_orphan_fraction)) * read_target:
        exceeded.append(
            f"max_orphan_fraction={max_orphan_fraction} ({max_orphan_fraction * read_target:.0f} of "
            f"{read_target} target records)"
        )
    if exceeded:
        described = "are not in the source and not flagged yet" if action == "flag" else "are not in the source"
        raise OrphanLimitError(
            f"{orphans} of the {read_target} target records {described}, more than "
            f"{' and '.join(exceeded)} allows for orphans={action!r}; nothing was written. Check that the "
            "source query returned every row; if these records really should be "
            f"{'deleted' if action == 'delete' else 'flagged'}, raise {_parameters(exceeded)} and run again."
        )


def _parameters(exceeded: list[str]) -> str:
    return " and ".join(limit.split("=")[0] for limit in exceeded)


def flag_text(value: Any) -> str:
    """Return a field value as Bulk API 2.0 CSV writes it: null as "", booleans as "true"/"false"."""
    if value is None or value is NULL:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flag_matches(current: Any, expected: FlagValue) -> bool:
    """Tell whether a field value read from Salesforce already equals the flag value.

    Values compare as CSV text, numbers by value, and booleans ignoring case, so "true" read from a
    Bulk API 2.0 query and True from a REST query both match True.
    """
    current_text, expected_text = flag_text(current), flag_text(expected)
    if isinstance(expected, bool):
        return current_text.lower() == expected_text
    if isinstance(expected, int | float | Decimal):
        try:
            return Decimal(current_text) == Decimal(expected_text)
        except InvalidOperation:
            return False
    return current_text == expected_text


FlagCheck = Callable[[Any], bool]


class OrphanFlag:
    """The `orphan_flag` values, and per field the check that a value read from Salesforce equals its flag value.

    `untyped` compares as `flag_matches` does, without knowing the field types. The flag built
    from the object's describe (`reconcile.flag_fields.describe_orphan_flag`) compares in the form
    Salesforce stores, so that a value it rounds, reformats or lengthens still matches on a rerun.
    """

    def __init__(self, values: Mapping[str, FlagValue], checks: Mapping[str, FlagCheck]) -> None:
        if set(values) != set(checks):
            raise ValueError("every orphan_flag field needs exactly one check")
        self.values = dict(values)
        self._checks = dict(checks)

    @classmethod
    def untyped(cls, values: Mapping[str, FlagValue]) -> OrphanFlag:
        checks = {name: _untyped_check(value) for name, value in values.items()}
        return cls(values, checks)

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Tell whether every flag field of a lookup row already equals its flag value.

        Field names match ignoring case, as SOQL field names do, so a flag field spelled in another
        case than the row's column still compares.
        """
        by_lower_name = {str(name).lower(): value for name, value in row.items()}
        return all(check(by_lower_name.get(name.lower())) for name, check in self._checks.items())


def _untyped_check(expected: FlagValue) -> FlagCheck:
    return lambda current: flag_matches(current, expected)


@dataclass
class OrphanWork:
    """The writes of an orphan action, decided before any write.

    `targets` maps each orphan key to write to its record Id. Every orphan key is in exactly one of
    `targets`, `already_flagged`, `gone` (the lookup found no record any more) or `failed` (the
    lookup found more than one record with that exact key, so none is written).
    """

    action: str
    keys: list[str]
    targets: dict[str, str] = field(default_factory=dict)
    already_flagged: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: list[RecordOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """Return the planned counts, as a dry run reports them."""
        return {
            "orphan_action": self.action,
            "orphans": len(self.keys),
            "orphans_to_write": len(self.targets),
            "orphans_already_flagged": len(self.already_flagged),
            "orphans_gone": len(self.gone),
            "orphans_failed": len(self.failed),
        }


def plan_orphan_work(
    action: str,
    keys: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    key_field: str,
    flag: OrphanFlag | Mapping[str, FlagValue] | None = None,
) -> OrphanWork:
    """Match orphan keys with the rows a lookup by key returned (each with `Id`, the key and the flag fields).

    Keys match by exact spelling, because a SOQL `IN` on text ignores case and may return records
    whose key differs from an orphan's only in case. Those rows are ignored. A `flag` given as a
    plain dict is compared with `OrphanFlag.untyped`.
    """
    if action not in ("flag", "delete"):
        raise ValueError(f"no orphan work for orphans={action!r}; only flag and delete write")
    orphan_keys = set(keys)
    found: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = row.get(key_field)
        if key in orphan_keys:
            found.setdefault(key, []).append(row)

    if flag is None or isinstance(flag, OrphanFlag):
        orphan_flag = flag or OrphanFlag({}, {})
    else:
        orphan_flag = OrphanFlag.untyped(flag)
    work = OrphanWork(action=action, keys=list(keys))
    operation = action
    for key in keys:
        matches = found.get(key, [])
        if not matches:
            work.gone.append(key)
        elif len(matches) > 1:
            ids = ", ".join(str(match.get("Id")) for match in matches)
            message = f"the lookup found {len(matches)} records with this {key_field} ({ids}); none was written"
            work.failed.append(RecordOutcome(key, "failed", None, message, operation=operation))
        elif action == "flag" and orphan_flag.matches(matches[0]):
            work.already_flagged.append(key)
        else:
            work.targets[key] = str(matches[0]["Id"])
    return work


def flag_records(work: OrphanWork, flag: Mapping[str, FlagValue]) -> list[dict[str, Any]]:
    """Return the records that set the flag fields on the work's orphans by an update of their record Id.

    A None flag value becomes NULL, because a None in an update record leaves the field unchanged.
    """
    values = {name: NULL if value is None else value for name, value in flag.items()}
    return [{"Id": record_id, **values} for record_id in work.targets.values()]


def ids_to_recheck(outcomes: Iterable[RecordOutcome]) -> list[str]:
    """Return the record Ids of failed flag updates that may name a record deleted since the lookup.

    Salesforce reports an update of a record in the Recycle Bin with ENTITY_IS_DELETED and of a
    purged record with INVALID_CROSS_REFERENCE_KEY, as it does a flag value that refers to a
    deleted or a missing record. A lookup of these Ids separates the two: the Ids it no longer
    finds go to `account_orphans` as `purged_ids`.
    """
    codes = (ENTITY_IS_DELETED, INVALID_CROSS_REFERENCE_KEY)
    return [outcome.key for outcome in outcomes if outcome.status == "failed" and outcome.error_code in codes]


@dataclass
class OrphanResult:
    """Counts of an orphan action: every orphan key is in exactly one of the `ORPHAN_STATUSES`.

    `failures` lists the failed and unprocessed orphans with Salesforce's error. `problems` lists
    write outcomes that were unknown, repeated or missing; `check_totals` raises when there is any.
    """

    action: str
    orphans: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ORPHAN_STATUSES, 0))
    failures: list[RecordOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def reported(cls, keys: Sequence[str]) -> OrphanResult:
        result = cls(action="report", orphans=len(keys))
        result.counts["reported"] = len(keys)
        return result

    @property
    def not_written(self) -> int:
        """Orphans the action did not reach: failed plus unprocessed."""
        return self.counts["failed"] + self.counts["unprocessed"]

    def check_totals(self) -> None:
        """Raise AccountingError unless every orphan is in exactly one status."""
        messages = list(self.problems)
        accounted = sum(self.counts.values())
        if accounted != self.orphans:
            detail = ", ".join(f"{status} {count}" for status, count in self.counts.items())
            messages.append(f"orphan outcomes account for {accounted} records, but {self.orphans} were found ({detail})")
        if messages:
            raise AccountingError("the orphan counts do not add up: " + "; ".join(messages))

    def as_dict(self) -> dict[str, Any]:
        """Return the action and one count per status, each under `orphans_<status>`, for XCom."""
        return {
            "orphan_action": self.action,
            "orphans": self.orphans,
            **{f"orphans_{status}": count for status, count in self.counts.items()},
        }

    def failure_samples(self) -> list[dict[str, Any]]:
        return [failure_sample(outcome) for outcome in self.failures]


def account_orphans(
    work: OrphanWork, outcomes: Iterable[RecordOutcome], *, purged_ids: Collection[str] = ()
) -> OrphanResult:
    """Count the end of every orphan from the work and the outcomes of its writes.

    Outcomes carry the record Id as key, for flag and delete writes alike. A delete that
    Salesforce rejects with ENTITY_IS_DELETED, or a write that failed for a record Id in
    `purged_ids` (Ids that a lookup after the write no longer found), counts as gone: the orphan
    was deleted after the lookup, which is what a delete would have achieved. A flag update that
    failed with ENTITY_IS_DELETED for an Id not in `purged_ids` counts as failed, because its
    flag value may refer to a deleted record.
    """
    result = OrphanResult(action=work.action, orphans=len(work.keys))
    result.counts["already_flagged"] = len(work.already_flagged)
    result.counts["gone"] = len(work.gone)
    for failure in work.failed:
        _add(result, "failed", failure)

    key_of = {record_id: key for key, record_id in work.targets.items()}
    purged = set(purged_ids)
    seen: set[str] = set()
    unknown: list[str] = []
    repeated: list[str] = []
    unexpected: list[str] = []
    for outcome in outcomes:
        key = key_of.get(outcome.key)
        if key is None:
            unknown.append(outcome.key)
            continue
        if key in seen:
            repeated.append(key)
            continue
        seen.add(key)
        end = _orphan_end(work.action, key, outcome, purged)
        if end is None:
            unexpected.append(f"{key} ({outcome.status})")
            continue
        _add(result, *end)

    missing = [key for key in work.targets if key not in seen]
    problems = (
        _describe_keys(unknown, "write outcome(s) for records that were not orphans to write"),
        _describe_keys(repeated, "orphan(s) with more than one write outcome"),
        _describe_keys(missing, "orphan(s) with no write outcome"),
        _describe_keys(unexpected, f"orphan(s) with an outcome that a {work.action} write cannot have"),
    )
    result.problems = [problem for problem in problems if problem]
    return result


def _orphan_end(
    action: str, key: str, outcome: RecordOutcome, purged_ids: set[str]
) -> tuple[str, RecordOutcome] | None:
    """Return the orphan status a write outcome means and the outcome restated under the orphan's
    key and action, or None when the action cannot produce that outcome."""
    record_id = outcome.key
    restated = dataclasses.replace(
        outcome, key=key, operation=action, salesforce_id=outcome.salesforce_id or record_id
    )
    already_deleted = action == "delete" and outcome.error_code == ENTITY_IS_DELETED
    if outcome.status == "failed" and (already_deleted or record_id in purged_ids):
        return "gone", restated
    if outcome.status in ("failed", "unprocessed"):
        return outcome.status, restated
    written = "deleted" if action == "delete" else "updated"
    if outcome.status != written:
        return None
    return ("deleted" if action == "delete" else "flagged"), restated


def _add(result: OrphanResult, status: str, outcome: RecordOutcome) -> None:
    result.counts[status] += 1
    if status in ("failed", "unprocessed"):
        result.failures.append(outcome)


def _describe_keys(keys: list[str], label: str) -> str:
    if not keys:
        return ""
    listed = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
    more = f" and {len(keys) - MAX_KEYS_IN_MESSAGE} more" if len(keys) > MAX_KEYS_IN_MESSAGE else ""
    return f"{len(keys)} {label}: {listed}{more}"
