"""Orphan actions: argument checks, the limit, matching lookup rows, and accounting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from airflow_provider_m2m.reconcile import NULL, AccountingError, RecordOutcome
from airflow_provider_m2m.reconcile.orphans import (
    ORPHAN_STATUSES,
    OrphanLimitError,
    OrphanResult,
    account_orphans,
    check_orphan_limit,
    flag_matches,
    flag_records,
    ids_to_recheck,
    parse_orphan_action,
    plan_orphan_work,
    validate_orphan_flag,
    validate_orphan_limits,
)

KEY = "External_Id__c"
FLAG = "Missing_From_Source__c"


def _rows(*entries: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"Id": record_id, KEY: key, FLAG: flag} for key, record_id, flag in entries]


def _delete_work(keys: list[str]):
    rows = [{"Id": f"ID{index}", KEY: key} for index, key in enumerate(keys)]
    return plan_orphan_work("delete", keys, rows, KEY)


# arguments


@pytest.mark.parametrize("value", ["report", "flag", "delete", " Delete "])
def test_action_accepts_known_values(value: str) -> None:
    assert parse_orphan_action(value) == value.strip().lower()


@pytest.mark.parametrize("value", ["remove", "", None, True])
def test_action_rejects_others(value: object) -> None:
    with pytest.raises(ValueError, match="orphans=.* is invalid; expected one of report, flag, delete"):
        parse_orphan_action(value)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        pytest.param(None, "orphan_flag must be a non-empty dict", id="missing"),
        pytest.param({}, "orphan_flag must be a non-empty dict", id="empty"),
        pytest.param({KEY: True}, f"cannot set {KEY}", id="key-field"),
        pytest.param({"id": True}, "cannot set id", id="id-field"),
        pytest.param({FLAG: [1]}, "is a list", id="list-value"),
        pytest.param({FLAG: float("nan")}, "expected a finite number", id="nan-value"),
        pytest.param({FLAG: float("-inf")}, "expected a finite number", id="infinite-value"),
        pytest.param({FLAG: Decimal("NaN")}, "expected a finite number", id="decimal-nan-value"),
        pytest.param({FLAG: Decimal("sNaN")}, "expected a finite number", id="decimal-snan-value"),
    ],
)
def test_flag_argument_rejected(flag: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_orphan_flag(flag, KEY)


@pytest.mark.parametrize(
    ("max_orphans", "max_orphan_fraction", "parameter"),
    [
        (-1, None, "max_orphans"),
        (True, None, "max_orphans"),
        (None, 1.5, "max_orphan_fraction"),
        (None, "0.1", "max_orphan_fraction"),
    ],
)
def test_limits_rejected(max_orphans: object, max_orphan_fraction: object, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"^{parameter}="):
        validate_orphan_limits(max_orphans, max_orphan_fraction)


# limit


@pytest.mark.parametrize(("orphans", "total", "fraction"), [(29, 100, 0.29), (7, 100, 0.07), (3, 10, 0.3)])
def test_limit_fraction_exact_share_allowed(orphans: int, total: int, fraction: float) -> None:
    """0.29 * 100 is 28.999999999999996 in binary floating point; 29 of 100 must still pass."""
    check_orphan_limit("delete", orphans, total, max_orphans=None, max_orphan_fraction=fraction)


def test_limit_fraction_boundary() -> None:
    check_orphan_limit("delete", 10, 100, max_orphans=None, max_orphan_fraction=0.1)

    with pytest.raises(OrphanLimitError) as raised:
        check_orphan_limit("delete", 11, 100, max_orphans=None, max_orphan_fraction=0.1)

    message = str(raised.value)
    assert "11 of the 100 target records" in message
    assert "max_orphan_fraction=0.1 (10 of 100 target records)" in message
    assert "raise max_orphan_fraction" in message


def test_limit_count_boundary() -> None:
    check_orphan_limit("flag", 5, 10, max_orphans=5, max_orphan_fraction=None)

    with pytest.raises(OrphanLimitError, match="more than max_orphans=5 allows for orphans='flag'"):
        check_orphan_limit("flag", 6, 10, max_orphans=5, max_orphan_fraction=None)


def test_limit_names_both_parameters() -> None:
    with pytest.raises(OrphanLimitError, match="raise max_orphans and max_orphan_fraction"):
        check_orphan_limit("delete", 50, 100, max_orphans=3, max_orphan_fraction=0.1)


def test_limit_each_set_limit_applies() -> None:
    with pytest.raises(OrphanLimitError, match="max_orphan_fraction"):
        check_orphan_limit("delete", 20, 100, max_orphans=1000, max_orphan_fraction=0.1)


def test_report_never_trips() -> None:
    check_orphan_limit("report", 100, 100, max_orphans=0, max_orphan_fraction=0.0)


def test_no_limits_allow_everything() -> None:
    check_orphan_limit("delete", 100, 100, max_orphans=None, max_orphan_fraction=None)


# flag values


@pytest.mark.parametrize(
    ("current", "flag_value", "matches"),
    [
        ("true", True, True),
        ("TRUE", True, True),
        (True, True, True),
        ("false", True, False),
        ("", False, False),
        ("1.0", 1, True),
        ("2", Decimal("2.00"), True),
        ("x", 1, False),
        ("", None, True),
        (None, None, True),
        ("Missing", "Missing", True),
        ("missing", "Missing", False),
    ],
)
def test_flag_matches(current: object, flag_value: object, matches: bool) -> None:
    assert flag_matches(current, flag_value) is matches


def test_flag_records_null_value() -> None:
    flag = {"Status__c": None, FLAG: True}
    work = plan_orphan_work("flag", ["A"], _rows(("A", "ID1", "false")), KEY, flag)

    records = flag_records(work, flag)

    assert records == [{"Id": "ID1", "Status__c": NULL, FLAG: True}]


# matching lookup rows


def test_work_sorts_orphans() -> None:
    keys = ["A", "B", "C", "D"]
    rows = _rows(("A", "ID1", "true"), ("B", "ID2", "false"), ("D", "ID4", ""), ("D", "ID5", ""), ("c", "ID9", ""))

    work = plan_orphan_work("flag", keys, rows, KEY, {FLAG: True})

    assert work.already_flagged == ["A"]
    assert work.targets == {"B": "ID2"}
    # "c" differs from "C" in case only: a SOQL IN matched it, the orphan is a different record.
    assert work.gone == ["C"]
    assert [failure.key for failure in work.failed] == ["D"]
    assert "found 2 records" in (work.failed[0].error or "")
    assert work.failed[0].operation == "flag"


def test_work_delete_ignores_flag_values() -> None:
    work = plan_orphan_work("delete", ["A"], _rows(("A", "ID1", "true")), KEY)

    assert work.targets == {"A": "ID1"}
    assert work.already_flagged == []


def test_work_counts_for_dry_run() -> None:
    work = plan_orphan_work("flag", ["A", "B", "C"], _rows(("A", "ID1", "true"), ("B", "ID2", "")), KEY, {FLAG: True})

    assert work.counts() == {
        "orphan_action": "flag",
        "orphans": 3,
        "orphans_to_write": 1,
        "orphans_already_flagged": 1,
        "orphans_gone": 1,
        "orphans_failed": 0,
    }


def test_work_rejects_report() -> None:
    with pytest.raises(ValueError, match="only flag and delete write"):
        plan_orphan_work("report", ["A"], [], KEY)


# accounting


def test_account_flag_outcomes() -> None:
    keys = ["A", "B", "C", "D", "E", "F", "G", "H"]
    rows = _rows(*[(key, f"ID{key}", "false") for key in keys[:7]], ("H", "IDH", "true"))
    work = plan_orphan_work("flag", keys, rows, KEY, {FLAG: True})
    outcomes = [
        RecordOutcome("IDA", "updated", "IDA", operation="flag"),
        RecordOutcome("IDB", "updated", "IDB", operation="flag"),
        RecordOutcome("IDC", "failed", "IDC", "ENTITY_IS_LOCKED: locked", "flag", "ENTITY_IS_LOCKED"),
        RecordOutcome("IDD", "unprocessed", None, "job ended", "flag"),
        RecordOutcome("IDE", "failed", None, "ENTITY_IS_DELETED: entity is deleted", "flag", "ENTITY_IS_DELETED"),
        RecordOutcome("IDF", "failed", "IDF", "INVALID_CROSS_REFERENCE_KEY: invalid", "flag", "INVALID_CROSS_REFERENCE_KEY"),
        RecordOutcome("IDG", "failed", "IDG", "INVALID_CROSS_REFERENCE_KEY: invalid", "flag", "INVALID_CROSS_REFERENCE_KEY"),
    ]

    result = account_orphans(work, outcomes, purged_ids={"IDE", "IDF"})

    result.check_totals()
    assert result.counts == {
        "reported": 0,
        "flagged": 2,
        "already_flagged": 1,
        "deleted": 0,
        "gone": 2,
        "failed": 2,
        "unprocessed": 1,
    }
    assert [(failure.key, failure.status, failure.operation) for failure in result.failures] == [
        ("C", "failed", "flag"),
        ("D", "unprocessed", "flag"),
        ("G", "failed", "flag"),
    ]
    assert [failure.salesforce_id for failure in result.failures] == ["IDC", "IDD", "IDG"]
    assert result.not_written == 3


def test_recheck_lists_missing_record_failures() -> None:
    outcomes = [
        RecordOutcome("ID1", "updated", "ID1", operation="flag"),
        RecordOutcome("ID2", "failed", "ID2", "invalid", "flag", "INVALID_CROSS_REFERENCE_KEY"),
        RecordOutcome("ID3", "failed", None, "deleted", "flag", "ENTITY_IS_DELETED"),
        RecordOutcome("ID4", "failed", "ID4", "locked", "flag", "ENTITY_IS_LOCKED"),
    ]

    assert ids_to_recheck(outcomes) == ["ID2", "ID3"]


def test_account_flag_deleted_reference_fails() -> None:
    """ENTITY_IS_DELETED for a record the recheck still finds means the flag value refers to a deleted record."""
    work = plan_orphan_work("flag", ["A"], _rows(("A", "IDA", "false")), KEY, {FLAG: True})
    outcome = RecordOutcome("IDA", "failed", "IDA", "ENTITY_IS_DELETED: entity is deleted", "flag", "ENTITY_IS_DELETED")

    result = account_orphans(work, [outcome])

    result.check_totals()
    assert result.counts["gone"] == 0
    assert result.counts["failed"] == 1
    assert [failure.key for failure in result.failures] == ["A"]


def test_account_flag_never_created() -> None:
    """An update cannot create a record, so a "created" flag outcome is an accounting problem."""
    work = plan_orphan_work("flag", ["A"], _rows(("A", "IDA", "false")), KEY, {FLAG: True})

    result = account_orphans(work, [RecordOutcome("IDA", "created", "NEW1", operation="flag")])

    with pytest.raises(AccountingError, match="an outcome that a flag write cannot have: A \\(created\\)"):
        result.check_totals()


def test_account_delete_outcomes_by_id() -> None:
    work = _delete_work(["A", "B", "C"])
    outcomes = [
        RecordOutcome("ID0", "deleted", "ID0", operation="delete"),
        RecordOutcome("ID1", "failed", "ID1", "ENTITY_IS_DELETED: entity is deleted", "delete", "ENTITY_IS_DELETED"),
        RecordOutcome("ID2", "failed", "ID2", "ENTITY_IS_LOCKED: locked", "delete", "ENTITY_IS_LOCKED"),
    ]

    result = account_orphans(work, outcomes)

    result.check_totals()
    assert (result.counts["deleted"], result.counts["gone"], result.counts["failed"]) == (1, 1, 1)
    assert [(failure.key, failure.salesforce_id) for failure in result.failures] == [("C", "ID2")]


@pytest.mark.parametrize(
    ("outcomes", "problem"),
    [
        pytest.param([RecordOutcome("ID0", "deleted")], "1 orphan(s) with no write outcome: B", id="missing"),
        pytest.param(
            [RecordOutcome("ID0", "deleted"), RecordOutcome("ID0", "deleted"), RecordOutcome("ID1", "deleted")],
            "more than one write outcome: A",
            id="repeated",
        ),
        pytest.param(
            [RecordOutcome("ID0", "deleted"), RecordOutcome("ID1", "deleted"), RecordOutcome("ID7", "deleted")],
            "not orphans to write: ID7",
            id="unknown",
        ),
        pytest.param(
            [RecordOutcome("ID0", "deleted"), RecordOutcome("ID1", "updated")],
            "an outcome that a delete write cannot have: B (updated)",
            id="wrong-status",
        ),
    ],
)
def test_account_problems_raise(outcomes: list[RecordOutcome], problem: str) -> None:
    result = account_orphans(_delete_work(["A", "B"]), outcomes)

    with pytest.raises(AccountingError) as raised:
        result.check_totals()

    assert problem in str(raised.value)


def test_check_totals_catches_lost_orphan() -> None:
    result = OrphanResult.reported(["A", "B"])
    result.counts["reported"] = 1

    with pytest.raises(AccountingError, match="account for 1 records, but 2 were found"):
        result.check_totals()


def test_reported_result_as_dict() -> None:
    summary = OrphanResult.reported(["A", "B"]).as_dict()

    assert summary["orphan_action"] == "report"
    assert summary["orphans"] == 2
    assert summary["orphans_reported"] == 2
    assert sum(summary[f"orphans_{status}"] for status in ORPHAN_STATUSES) == 2
