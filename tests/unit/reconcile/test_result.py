"""Accounting of write outcomes, totals, failure thresholds and the failed-records CSV."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest

from airflow_provider_m2m.reconcile import (
    NULL,
    AccountingError,
    FailureThresholdError,
    FieldMapping,
    FieldType,
    Mapping,
    RecordOutcome,
    account,
    plan_changes,
    write_failures_csv,
)

MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING),
    fields=[
        FieldMapping("name", "Name", FieldType.STRING),
        FieldMapping("tier", "Tier__c", FieldType.PICKLIST),
        FieldMapping("annual_revenue", "Annual_Revenue__c", FieldType.DECIMAL, scale=2),
    ],
)

PICKLIST_ERROR = (
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Tier: bad value for restricted picklist field: Diamond:Tier__c --"
)


def ten_creates_one_bad_tier():
    source = [
        {"account_id": f"ACC-{i:02d}", "name": f"N{i}", "tier": "Gold", "annual_revenue": Decimal(i)}
        for i in range(10)
    ]
    source[4]["tier"] = "Diamond"
    return plan_changes(source, [], MAPPING)


def salesforce_outcomes(plan):
    """Outcomes as the writer reads them: Salesforce rejects the restricted picklist value."""
    outcomes = []
    for number, record in enumerate(plan.iter_writes()):
        key = record["External_Id__c"]
        if record["Tier__c"] == "Diamond":
            outcomes.append(RecordOutcome(key, "failed", None, PICKLIST_ERROR))
        else:
            outcomes.append(RecordOutcome(key, "created", f"a0X{number:015d}"))
    return outcomes


def test_one_invalid_picklist_of_ten():
    plan = ten_creates_one_bad_tier()

    result = account(plan, salesforce_outcomes(plan))
    result.check_totals()

    assert result.created == 9
    assert result.failed == 1
    assert result.created + result.updated + result.failed + result.unprocessed == 10
    assert [failure.key for failure in result.failures] == ["ACC-04"]
    assert result.failures[0].error == PICKLIST_ERROR


def test_failures_csv_has_record_and_error(tmp_path):
    plan = ten_creates_one_bad_tier()
    result = account(plan, salesforce_outcomes(plan))

    path = write_failures_csv(tmp_path / "failures.csv", result.failures, plan)

    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert rows == [
        {
            "key": "ACC-04",
            "operation": "upsert",
            "status": "failed",
            "error": PICKLIST_ERROR,
            "salesforce_id": "",
            "Name": "N4",
            "Tier__c": "Diamond",
            "Annual_Revenue__c": "4.00",
        }
    ]
    assert not (tmp_path / "failures.csv.partial").exists()


def test_failures_csv_null_and_formula(tmp_path):
    records = {"K1": {"External_Id__c": "K1", "Name": "=HYPERLINK(\"x\")", "Annual_Revenue__c": NULL}}
    failures = [RecordOutcome("K1", "failed", None, "-bad value"), RecordOutcome("K2", "unprocessed")]

    path = write_failures_csv(tmp_path / "f.csv", failures, records)

    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert rows[0]["Name"] == "'=HYPERLINK(\"x\")"
    assert rows[0]["error"] == "'-bad value"
    assert rows[0]["Annual_Revenue__c"] == "#N/A"
    assert rows[1]["status"] == "unprocessed"
    assert rows[1]["Name"] == ""


def test_failures_csv_keeps_negative_numbers(tmp_path):
    records = {"K1": {"Annual_Revenue__c": "-12.50"}}

    path = write_failures_csv(tmp_path / "f.csv", [RecordOutcome("K1", "failed", None, "e")], records)

    with path.open(newline="", encoding="utf-8") as stream:
        assert next(csv.DictReader(stream))["Annual_Revenue__c"] == "-12.50"


def test_rejected_rows_counted_as_failed():
    source = [
        {"account_id": "A1", "name": "x", "tier": "Gold", "annual_revenue": float("nan")},
        {"account_id": "A2", "name": "y", "tier": "Gold", "annual_revenue": Decimal(1)},
    ]
    plan = plan_changes(source, [], MAPPING)

    result = account(plan, [RecordOutcome("A2", "created", "a0X1")])
    result.check_totals()

    assert result.failed == 1
    assert result.rejected == 1
    assert result.failures[0].key == "A1"
    assert result.failures[0].error.startswith("not sent: Annual_Revenue__c")


def test_updates_and_unchanged_add_up():
    source = [
        {"account_id": "A1", "name": "x", "tier": "Gold", "annual_revenue": None},
        {"account_id": "A2", "name": "new", "tier": "Gold", "annual_revenue": None},
    ]
    target = [
        {"External_Id__c": "A1", "Name": "x", "Tier__c": "Gold", "Annual_Revenue__c": ""},
        {"External_Id__c": "A2", "Name": "old", "Tier__c": "Gold", "Annual_Revenue__c": ""},
        {"External_Id__c": "A3", "Name": "orphan", "Tier__c": "Gold", "Annual_Revenue__c": ""},
    ]
    plan = plan_changes(source, target, MAPPING)

    result = account(plan, [RecordOutcome("A2", "updated", "a0X2")])
    result.check_totals()

    assert (result.read, result.unchanged, result.updated, result.orphans) == (2, 1, 1, 1)


def test_unprocessed_listed_in_failures():
    plan = ten_creates_one_bad_tier()
    outcomes = [RecordOutcome(record["External_Id__c"], "unprocessed") for record in plan.iter_writes()]

    result = account(plan, outcomes)
    result.check_totals()

    assert result.unprocessed == 10
    assert len(result.failures) == 10


def test_missing_outcome_fails_totals():
    plan = ten_creates_one_bad_tier()
    outcomes = salesforce_outcomes(plan)[:-1]

    result = account(plan, outcomes)

    with pytest.raises(AccountingError, match="1 planned key\\(s\\) with no outcome: ACC-09"):
        result.check_totals()


def test_repeated_outcome_fails_totals():
    plan = ten_creates_one_bad_tier()
    outcomes = salesforce_outcomes(plan)
    outcomes.append(RecordOutcome("ACC-01", "created", "a0Xdup"))

    result = account(plan, outcomes)

    assert result.created == 9  # the repeat is not counted twice
    with pytest.raises(AccountingError, match="more than one outcome: ACC-01"):
        result.check_totals()


def test_unknown_outcome_fails_totals():
    plan = ten_creates_one_bad_tier()
    outcomes = salesforce_outcomes(plan)
    outcomes.append(RecordOutcome("NOT-PLANNED", "created", "a0Xzzz"))

    with pytest.raises(AccountingError, match="not planned: NOT-PLANNED"):
        account(plan, outcomes).check_totals()


def test_tampered_counts_fail_totals():
    plan = ten_creates_one_bad_tier()
    result = account(plan, salesforce_outcomes(plan))
    result.created -= 1

    with pytest.raises(AccountingError, match="9 records, but 10 were planned"):
        result.check_totals()


def test_outcome_status_validated():
    with pytest.raises(ValueError, match="invalid outcome status 'archived'"):
        RecordOutcome("A1", "archived")


def test_failure_threshold():
    plan = ten_creates_one_bad_tier()
    result = account(plan, salesforce_outcomes(plan))

    result.check_failures(max_failed=1)
    with pytest.raises(FailureThresholdError, match="1 records were not written"):
        result.check_failures(max_failed=0)
    result.check_failures(max_failed=0, max_failed_fraction=0.1)
    with pytest.raises(FailureThresholdError):
        result.check_failures(max_failed=0, max_failed_fraction=0.05)


def test_as_dict_samples_failures():
    plan = ten_creates_one_bad_tier()
    outcomes = [RecordOutcome(record["External_Id__c"], "failed", None, "E") for record in plan.iter_writes()]

    summary = account(plan, outcomes).as_dict(max_failure_samples=3)

    assert summary["failed"] == 10
    assert len(summary["failure_samples"]) == 3
    assert summary["failure_samples_omitted"] == 7
    assert summary["failure_samples"][0] == {"key": "ACC-00", "operation": "upsert", "status": "failed", "error": "E"}
