"""Account for every planned record after the writes, and check that the counts add up."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_m2m.reconcile.plan import Plan

OUTCOME_STATUSES = ("created", "updated", "deleted", "failed", "unprocessed")
# The write that produced an outcome: the plan's upserts, an action on orphans, or an update by
# record Id as the Salesforce hook reports it (an orphan's outcome is relabelled "flag").
OPERATIONS = ("upsert", "update", "flag", "delete")

# How many failures `ReconcileResult.as_dict` includes by default; XCom is no place for all of them.
DEFAULT_FAILURE_SAMPLES = 20

# How many problem keys an AccountingError message lists per kind of problem.
MAX_KEYS_IN_MESSAGE = 20


class AccountingError(RuntimeError):
    """Raised when the write outcomes do not account for every planned record exactly once."""


class FailureThresholdError(RuntimeError):
    """Raised when more records failed or stayed unprocessed than the run allows."""


@dataclass(frozen=True)
class RecordOutcome:
    """Outcome of one record write, as the writer read it from Salesforce's results.

    `status` is "created", "updated", "deleted", "failed" (with Salesforce's error) or
    "unprocessed" (the job ended before it reached the record). `error_code` is Salesforce's
    status code of the first error, such as ENTITY_IS_DELETED, where the writer reads one.
    `operation` names the write: "upsert" for the plan's records, "update" for an update by record
    Id as the Salesforce hook reports it, "flag" or "delete" for orphans (an orphan's update is
    relabelled "flag" when it is accounted).
    """

    key: str
    status: str
    salesforce_id: str | None = None
    error: str | None = None
    operation: str = "upsert"
    error_code: str | None = None

    def __post_init__(self) -> None:
        if self.status not in OUTCOME_STATUSES:
            raise ValueError(
                f"record {self.key}: invalid outcome status {self.status!r}; "
                f"expected one of {', '.join(OUTCOME_STATUSES)}"
            )
        if self.operation not in OPERATIONS:
            raise ValueError(
                f"record {self.key}: invalid operation {self.operation!r}; expected one of {', '.join(OPERATIONS)}"
            )


@dataclass
class ReconcileResult:
    """Counts of one reconciliation: every source row read is in exactly one of unchanged, created,
    updated, failed or unprocessed.

    `failed` includes the rows the plan rejected before sending (`rejected` of them). `failures`
    lists every failed and unprocessed record. `problems` lists outcome keys that were unknown,
    repeated or missing; `check_totals` raises when there is any.
    """

    read: int
    read_target: int
    unchanged: int
    created: int
    updated: int
    failed: int
    unprocessed: int
    rejected: int
    orphans: int
    planned_writes: int
    failures: list[RecordOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check_totals(self) -> None:
        """Raise AccountingError unless every planned record has exactly one outcome."""
        accounted_writes = self.created + self.updated + self.failed - self.rejected + self.unprocessed
        messages = list(self.problems)
        if accounted_writes != self.planned_writes:
            messages.append(
                f"outcomes account for {accounted_writes} records, but {self.planned_writes} were planned "
                f"(created {self.created}, updated {self.updated}, failed {self.failed - self.rejected}, "
                f"unprocessed {self.unprocessed})"
            )
        accounted_rows = self.unchanged + self.created + self.updated + self.failed + self.unprocessed
        if accounted_rows != self.read:
            messages.append(
                f"{accounted_rows} source rows are accounted for, but {self.read} were read "
                f"(unchanged {self.unchanged}, created {self.created}, updated {self.updated}, "
                f"failed {self.failed}, unprocessed {self.unprocessed})"
            )
        if messages:
            raise AccountingError("the counts do not add up: " + "; ".join(messages))

    def check_failures(self, max_failed: int = 0, max_failed_fraction: float | None = None) -> None:
        """Raise FailureThresholdError when failed plus unprocessed records exceed a threshold.

        `max_failed` is a count of records. `max_failed_fraction`, when given, is a share of the
        source rows read (0.01 allows 1%). With both, the larger allowance applies.
        """
        not_written = self.failed + self.unprocessed
        over_count = not_written > max_failed
        over_fraction = max_failed_fraction is None or not_written > max_failed_fraction * self.read
        if over_count and over_fraction:
            allowed = f"{max_failed} records"
            if max_failed_fraction is not None:
                allowed += f" or {max_failed_fraction:.2%} of {self.read} rows"
            raise FailureThresholdError(
                f"{not_written} records were not written ({self.failed} failed, {self.unprocessed} "
                f"unprocessed), more than the {allowed} allowed"
            )

    def as_dict(self, max_failure_samples: int = DEFAULT_FAILURE_SAMPLES) -> dict[str, Any]:
        """Return the counts and at most `max_failure_samples` failures, for XCom or a run summary."""
        samples = [
            failure_sample(outcome) for outcome in self.failures[:max_failure_samples]
        ]
        return {
            "read_source": self.read,
            "read_target": self.read_target,
            "unchanged": self.unchanged,
            "created": self.created,
            "updated": self.updated,
            "failed": self.failed,
            "unprocessed": self.unprocessed,
            "rejected": self.rejected,
            "orphans": self.orphans,
            "failure_samples": samples,
            "failure_samples_omitted": max(0, len(self.failures) - len(samples)),
        }


def failure_sample(outcome: RecordOutcome) -> dict[str, Any]:
    """Return one failed or unprocessed record as the dict the XCom failure samples contain."""
    return {"key": outcome.key, "operation": outcome.operation, "status": outcome.status, "error": outcome.error}


def account(plan: Plan, outcomes: Iterable[RecordOutcome]) -> ReconcileResult:
    """Count the outcome of every planned write and of every row the plan rejected.

    An outcome's status decides its count, so a planned create that Salesforce reports as updated
    (someone created the record after the target was read) counts as updated. Three kinds of
    problem go to `problems`: outcome keys that were not planned, keys with more than one outcome,
    and planned keys with none. `check_totals` raises on any of them.
    """
    key_name = plan.mapping.key.target
    planned = {record[key_name] for record in plan.iter_writes()}
    counts = dict.fromkeys(OUTCOME_STATUSES, 0)
    failures: list[RecordOutcome] = []
    unknown: list[str] = []
    repeated: list[str] = []
    seen: set[str] = set()

    for outcome in outcomes:
        if outcome.key not in planned:
            unknown.append(outcome.key)
            continue
        if outcome.key in seen:
            repeated.append(outcome.key)
            continue
        seen.add(outcome.key)
        counts[outcome.status] += 1
        if outcome.status in ("failed", "unprocessed"):
            failures.append(outcome)

    for rejection in plan.rejected:
        failures.append(RecordOutcome(rejection.key, "failed", None, f"not sent: {rejection.error}"))

    missing = sorted(planned - seen)
    problems = [
        _describe_keys(unknown, "outcome(s) for keys that were not planned"),
        _describe_keys(repeated, "key(s) with more than one outcome"),
        _describe_keys(missing, "planned key(s) with no outcome"),
    ]
    return ReconcileResult(
        read=plan.read_source,
        read_target=plan.read_target,
        unchanged=plan.unchanged,
        created=counts["created"],
        updated=counts["updated"],
        failed=counts["failed"] + len(plan.rejected),
        unprocessed=counts["unprocessed"],
        rejected=len(plan.rejected),
        orphans=len(plan.orphans),
        planned_writes=plan.write_count,
        failures=failures,
        problems=[problem for problem in problems if problem],
    )


def _describe_keys(keys: list[str], what: str) -> str:
    if not keys:
        return ""
    shown = ", ".join(str(key) for key in keys[:MAX_KEYS_IN_MESSAGE])
    more = f" and {len(keys) - MAX_KEYS_IN_MESSAGE} more" if len(keys) > MAX_KEYS_IN_MESSAGE else ""
    return f"{len(keys)} {what}: {shown}{more}"
