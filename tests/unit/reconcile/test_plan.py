"""Diff and plan: creates, field-level updates, duplicates, nulls, orphans and reruns."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_provider_m2m.reconcile import (
    NULL,
    DuplicateKeyError,
    FieldMapping,
    FieldType,
    Mapping,
    TargetRecordError,
    plan_changes,
)
from airflow_provider_m2m.reconcile.diff import CHUNK_ROWS

MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING, length=20),
    fields=[
        FieldMapping("name", "Name", FieldType.STRING, length=80, nullable=False),
        FieldMapping("tier", "Tier__c", FieldType.PICKLIST),
        FieldMapping("annual_revenue", "Annual_Revenue__c", FieldType.DECIMAL, scale=2),
        FieldMapping("employees", "Employees__c", FieldType.INTEGER),
        FieldMapping("is_active", "Is_Active__c", FieldType.BOOLEAN),
        FieldMapping("signup_date", "Signup_Date__c", FieldType.DATE),
        FieldMapping("last_activity_at", "Last_Activity__c", FieldType.DATETIME),
        FieldMapping("notes", "Notes__c", FieldType.TEXTAREA, length=255),
    ],
)


def source_row(key: str, **changes) -> dict:
    row = {
        "account_id": key,
        "name": f"Name {key}",
        "tier": "Gold",
        "annual_revenue": Decimal("1200.50"),
        "employees": 12,
        "is_active": True,
        "signup_date": date(2024, 1, 2),
        "last_activity_at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "notes": "note",
    }
    row.update(changes)
    return row


def target_record(key: str, **changes) -> dict:
    """Return the Bulk API 2.0 query CSV record that matches source_row(key)."""
    record = {
        "External_Id__c": key,
        "Name": f"Name {key}",
        "Tier__c": "Gold",
        "Annual_Revenue__c": "1200.5",
        "Employees__c": "12",
        "Is_Active__c": "true",
        "Signup_Date__c": "2024-01-02",
        "Last_Activity__c": "2024-01-02T03:04:05.000Z",
        "Notes__c": "note",
    }
    record.update(changes)
    return record


def test_plan_create_update_unchanged():
    source = [source_row("A1"), source_row("A2", tier="Silver"), source_row("A3")]
    target = [target_record("A1"), target_record("A2")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.unchanged == 1
    assert plan.updates == [{"External_Id__c": "A2", "Tier__c": "Silver"}]
    assert len(plan.creates) == 1
    assert plan.creates[0]["External_Id__c"] == "A3"
    assert plan.creates[0]["Annual_Revenue__c"] == "1200.50"
    assert plan.counts() == {
        "read_source": 3,
        "read_target": 2,
        "create": 1,
        "update": 1,
        "unchanged": 1,
        "rejected": 0,
        "orphans": 0,
        "target_without_key": 0,
    }


def test_update_holds_only_changed_fields():
    source = [source_row("A1", annual_revenue=Decimal("99.999"), notes=None)]
    target = [target_record("A1")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.updates == [{"External_Id__c": "A1", "Annual_Revenue__c": "100.00", "Notes__c": NULL}]


def test_iter_writes_creates_then_updates():
    source = [source_row("B1", tier="Silver"), source_row("A9")]
    target = [target_record("B1")]

    plan = plan_changes(source, target, MAPPING)

    keys = [record["External_Id__c"] for record in plan.iter_writes()]
    assert keys == ["A9", "B1"]


def test_source_duplicate_key_stops_plan():
    source = [source_row("A1"), source_row("A2"), source_row("A1"), source_row("A3"), source_row("A3")]
    target = [target_record("A2")]

    with pytest.raises(DuplicateKeyError) as caught:
        plan_changes(source, target, MAPPING)

    assert caught.value.side == "source"
    assert caught.value.keys == ["A1", "A3"]
    assert "A1, A3" in str(caught.value)
    assert "nothing was written" in str(caught.value)


def test_source_duplicate_of_target_key_detected():
    source = [source_row("A2"), source_row("A2", tier="Silver")]
    target = [target_record("A2")]

    with pytest.raises(DuplicateKeyError) as caught:
        plan_changes(source, target, MAPPING)

    assert caught.value.keys == ["A2"]


def test_duplicate_after_nfc_detected():
    source = [source_row("Zoe\u0308"), source_row("Zoë")]

    with pytest.raises(DuplicateKeyError) as caught:
        plan_changes(source, [], MAPPING)

    assert caught.value.keys == ["Zoë"]


def test_target_duplicate_key_stops_before_source_read():
    target = [target_record("A1"), target_record("A1"), target_record("A2")]

    def source_never_read():
        raise AssertionError("the source must not be read after a duplicate in the target")
        yield

    with pytest.raises(DuplicateKeyError) as caught:
        plan_changes(source_never_read(), target, MAPPING)

    assert caught.value.side == "target"
    assert caught.value.keys == ["A1"]


def test_number_null_source_empty_target_unchanged():
    source = [source_row("A1", annual_revenue=None, employees=None)]
    target = [target_record("A1", Annual_Revenue__c="", Employees__c="")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.unchanged == 1
    assert plan.updates == []


def test_number_null_source_clears_target_value():
    source = [source_row("A1", annual_revenue=None)]
    target = [target_record("A1")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.updates == [{"External_Id__c": "A1", "Annual_Revenue__c": NULL}]


def test_nan_in_source_rejected_not_sent():
    source = [source_row("A1", annual_revenue=float("nan")), source_row("A2")]
    target = [target_record("A1", Annual_Revenue__c="5")]

    plan = plan_changes(source, target, MAPPING)

    assert [rejection.key for rejection in plan.rejected] == ["A1"]
    assert "Annual_Revenue__c (source column annual_revenue)" in plan.rejected[0].error
    assert "never sent" in plan.rejected[0].error
    assert all(record["External_Id__c"] != "A1" for record in plan.iter_writes())
    # A1 is in the source, so it is not an orphan even though it was not sent.
    assert plan.orphans == []


def test_empty_string_text_matches_null_target():
    source = [source_row("A1", notes="")]
    target = [target_record("A1", Notes__c="")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.unchanged == 1


def test_empty_string_text_clears_target_text():
    source = [source_row("A1", notes="")]
    target = [target_record("A1", Notes__c="old note")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.updates == [{"External_Id__c": "A1", "Notes__c": NULL}]


def test_create_writes_nulls_explicitly():
    plan = plan_changes([source_row("A1", notes="", employees=None)], [], MAPPING)

    assert plan.creates[0]["Notes__c"] is NULL
    assert plan.creates[0]["Employees__c"] is NULL


def test_absent_source_column_left_alone():
    row = source_row("A1", tier="Silver")
    del row["notes"]
    source = [row, {k: v for k, v in source_row("A2").items() if k != "notes"}]
    target = [target_record("A1", Notes__c="kept"), target_record("A2", Notes__c="kept")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.updates == [{"External_Id__c": "A1", "Tier__c": "Silver"}]
    assert plan.unchanged == 1


def test_absent_source_column_omitted_from_create():
    row = source_row("A1")
    del row["notes"]

    plan = plan_changes([row], [], MAPPING)

    assert "Notes__c" not in plan.creates[0]


def test_missing_key_rejected():
    source = [source_row(None), source_row("")]

    plan = plan_changes(source, [], MAPPING)

    assert len(plan.rejected) == 2
    assert all("required" in rejection.error for rejection in plan.rejected)
    assert plan.rejected[0].key.startswith("(source row")


def test_target_form_differences_unchanged():
    decomposed = "Zoe\u0308"
    source = [source_row("A1", name="Zoë", annual_revenue=Decimal("1200.5"))]
    target = [
        target_record(
            "A1",
            Name=decomposed,
            Annual_Revenue__c="1200.50",
            Last_Activity__c="2024-01-02T03:04:05.000+0000",
        )
    ]

    plan = plan_changes(source, target, MAPPING)

    assert plan.unchanged == 1


def test_rest_json_target_values():
    source = [source_row("A1"), source_row("A2", employees=None, notes="")]
    target = [
        target_record("A1", Annual_Revenue__c=1200.5, Employees__c=12, Is_Active__c=True),
        target_record("A2", Employees__c=None, Notes__c=None, Is_Active__c=True),
    ]

    plan = plan_changes(source, target, MAPPING)

    assert plan.unchanged == 2


def test_target_missing_field_raises():
    record = target_record("A1")
    del record["Tier__c"]

    with pytest.raises(TargetRecordError, match="no field Tier__c"):
        plan_changes([], [record], MAPPING)


def test_target_bad_value_names_field():
    source = [source_row("A1")]
    target = [target_record("A1", Annual_Revenue__c="n/a")]

    with pytest.raises(TargetRecordError, match="A1: Annual_Revenue__c has 'n/a'"):
        plan_changes(source, target, MAPPING)


def test_orphans_listed_not_written():
    source = [source_row("A1")]
    target = [target_record("Z9"), target_record("A1"), target_record("B5")]

    plan = plan_changes(source, target, MAPPING)

    assert plan.orphans == ["B5", "Z9"]
    assert list(plan.iter_writes()) == []


def test_orphans_logged_when_included(caplog):
    caplog.set_level("INFO", logger="airflow_provider_m2m.reconcile.diff")

    plan_changes([], [target_record("Z9")], MAPPING, include_orphans=True)

    assert "External_Id__c=Z9" in caplog.text


def test_target_without_key_counted():
    plan = plan_changes([], [target_record(""), target_record("A1")], MAPPING)

    assert plan.target_without_key == 1
    assert plan.read_target == 2
    assert plan.orphans == ["A1"]


def test_integer_key_matches_text():
    mapping = Mapping(
        key=FieldMapping("id", "Legacy_Id__c", FieldType.INTEGER),
        fields=[FieldMapping("name", "Name", FieldType.STRING)],
    )

    plan = plan_changes([{"id": 42, "name": "x"}], [{"Legacy_Id__c": "42", "Name": "x"}], mapping)

    assert plan.unchanged == 1


def test_plan_independent_of_row_order():
    source = [source_row(f"K{i:03d}", employees=i) for i in range(50)]
    target = [target_record(f"K{i:03d}") for i in range(0, 50, 2)]
    shuffled_source, shuffled_target = source[:], target[:]
    random.Random(7).shuffle(shuffled_source)
    random.Random(8).shuffle(shuffled_target)

    first = plan_changes(source, target, MAPPING)
    second = plan_changes(shuffled_source, shuffled_target, MAPPING)

    assert first.creates == second.creates
    assert first.updates == second.updates


def test_source_read_once_as_a_stream():
    reads = []

    def rows():
        for i in range(3):
            reads.append(i)
            yield source_row(f"A{i}")

    plan = plan_changes(rows(), [], MAPPING)

    assert reads == [0, 1, 2]
    assert plan.read_source == 3


def apply_writes(target: dict[str, dict], plan, mapping: Mapping) -> None:
    """Store the plan's writes as Salesforce would: NULL clears a field, an absent field is kept."""
    key_name = mapping.key.target
    for record in plan.iter_writes():
        stored = target.setdefault(record[key_name], dict.fromkeys(mapping.target_fields(), ""))
        for name, value in record.items():
            stored[name] = "" if value is NULL else value


def test_rerun_after_apply_writes_nothing():
    source = [
        source_row("A1", tier="Silver", notes=""),
        source_row("A2", annual_revenue=Decimal("0.005"), employees=None),
        source_row("A3", last_activity_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)),
        source_row("A4", name="Zoe\u0308"),
    ]
    target = {key: target_record(key) for key in ("A1", "A2")}

    apply_writes(target, plan_changes(source, target.values(), MAPPING), MAPPING)
    rerun = plan_changes(source, target.values(), MAPPING)

    assert list(rerun.iter_writes()) == []
    assert rerun.unchanged == 4


def test_rerun_after_partial_apply_converges():
    source = [source_row(f"K{i}", employees=i) for i in range(10)]
    target: dict[str, dict] = {}
    first = plan_changes(source, target.values(), MAPPING)
    first.creates = first.creates[:4]  # the run was killed after four records were written
    apply_writes(target, first, MAPPING)

    second = plan_changes(source, target.values(), MAPPING)
    apply_writes(target, second, MAPPING)
    third = plan_changes(source, target.values(), MAPPING)

    assert len(second.creates) == 6
    assert second.unchanged == 4
    assert list(third.iter_writes()) == []
    assert len(target) == 10


def test_key_only_mapping():
    mapping = Mapping(key=FieldMapping("id", "Ext__c", FieldType.STRING))

    plan = plan_changes([{"id": "a"}, {"id": "b"}], [{"Ext__c": "a"}], mapping)

    assert plan.unchanged == 1
    assert plan.creates == [{"Ext__c": "b"}]


def test_single_field_mapping():
    mapping = Mapping(
        key=FieldMapping("id", "Ext__c", FieldType.STRING),
        fields=[FieldMapping("n", "N__c", FieldType.INTEGER)],
    )

    plan = plan_changes([{"id": "a", "n": 1}, {"id": "b", "n": 2}], [{"Ext__c": "a", "N__c": "1"}, {"Ext__c": "b", "N__c": "3"}], mapping)

    assert plan.unchanged == 1
    assert plan.updates == [{"Ext__c": "b", "N__c": "2"}]


def test_mapping_rejects_repeated_names():
    with pytest.raises(ValueError, match="target field 'Name' more than once"):
        Mapping(
            key=FieldMapping("id", "Ext__c", FieldType.STRING),
            fields=[FieldMapping("a", "Name", FieldType.STRING), FieldMapping("b", "Name", FieldType.STRING)],
        )


def test_mapping_rejects_boolean_key():
    with pytest.raises(ValueError, match="external id"):
        Mapping(key=FieldMapping("id", "Ext__c", FieldType.BOOLEAN))


def test_mapping_target_fields_key_first():
    assert MAPPING.target_fields()[:2] == ["External_Id__c", "Name"]
    assert MAPPING.key.nullable is False


def test_duplicates_across_chunks_detected():
    rows = CHUNK_ROWS * 2 + 10
    source = [source_row(f"K{i:05d}") for i in range(rows)]
    source[-1] = source_row("K00000")
    target = [target_record(f"K{i:05d}") for i in range(rows)]
    target[-1] = target_record("K00001")

    with pytest.raises(DuplicateKeyError) as target_error:
        plan_changes(source, target, MAPPING)
    with pytest.raises(DuplicateKeyError) as source_error:
        plan_changes(source, target[:-1], MAPPING)

    assert (target_error.value.side, target_error.value.keys) == ("target", ["K00001"])
    assert (source_error.value.side, source_error.value.keys) == ("source", ["K00000"])


def test_chunk_with_rejected_row_plans_rest():
    rows = CHUNK_ROWS + 5
    source = [source_row(f"K{i:05d}", employees=i) for i in range(rows)]
    source[3] = source_row("K00003", employees=float("nan"))
    target = [target_record(f"K{i:05d}", Employees__c=str(i)) for i in range(0, rows, 2)]

    plan = plan_changes(source, target, MAPPING)

    assert [rejection.key for rejection in plan.rejected] == ["K00003"]
    assert plan.unchanged == len(target)
    assert len(plan.creates) == rows - len(target) - 1
    assert plan.read_source == rows
