"""External ids that differ only in case: duplicates, matching, spelling written, orphans.

Each planning test runs twice: with text-only rows, which the diff handles a chunk at a time, and
with a rejected source row and REST JSON target values, which send the chunk row by row.
"""

from __future__ import annotations

import pytest

from airflow_provider_m2m.reconcile import DuplicateKeyError, FieldMapping, FieldType, Mapping, plan_changes
from airflow_provider_m2m.reconcile.diff import CHUNK_ROWS
from airflow_provider_m2m.sandbox.salesforce.store import match_key

KEY = FieldMapping("id", "External_Id__c", FieldType.STRING)
FIELDS = [FieldMapping("name", "Name", FieldType.STRING), FieldMapping("employees", "Employees__c", FieldType.INTEGER)]
FOLDED = Mapping(key=KEY, fields=FIELDS)
EXACT = Mapping(key=KEY, fields=FIELDS, key_case_sensitive=True)

PATHS = ["chunk", "row"]
REJECTED_KEY = "ZZ-REJECTED"


def source(key: str, name: str = "Acme", employees: object = 12) -> dict:
    return {"id": key, "name": name, "employees": employees}


def target(key: str, name: str = "Acme", employees: int = 12, path: str = "chunk") -> dict:
    # A REST JSON record carries numbers as numbers, which the diff cannot index a chunk at a time.
    return {"External_Id__c": key, "Name": name, "Employees__c": employees if path == "row" else str(employees)}


def plan_on(path: str, source_rows: list[dict], target_records: list[dict], mapping: Mapping = FOLDED):
    if path == "row":
        source_rows = [*source_rows, source(REJECTED_KEY, employees=float("nan"))]
    plan = plan_changes(source_rows, target_records, mapping)
    if path == "row":
        assert [rejection.key for rejection in plan.rejected] == [REJECTED_KEY]
    return plan


@pytest.mark.parametrize("path", PATHS)
def test_source_case_variants_are_duplicates(path):
    rows = [source("ACC-1"), source("acc-1")]

    with pytest.raises(DuplicateKeyError) as caught:
        plan_on(path, rows, [])

    assert caught.value.side == "source"
    assert caught.value.keys == ["acc-1"]
    assert caught.value.case_sensitive is False
    assert "more than once (ignoring case): acc-1" in str(caught.value)


def test_source_case_variants_across_chunks():
    rows = [source(f"K{i:05d}") for i in range(CHUNK_ROWS + 10)]
    rows.append(source("k00003"))

    with pytest.raises(DuplicateKeyError) as caught:
        plan_changes(rows, [target("K00003")], FOLDED)

    assert caught.value.keys == ["k00003"]


def test_source_case_variant_of_matched_key():
    # The first spelling matched a target record, the second then repeats a seen key.
    rows = [source("ACC-1"), source("Acc-1")]

    with pytest.raises(DuplicateKeyError) as caught:
        plan_changes(rows, [target("acc-1")], FOLDED)

    assert caught.value.keys == ["Acc-1"]


@pytest.mark.parametrize("path", PATHS)
def test_target_case_variants_are_duplicates(path):
    records = [target("ACC-1", path=path), target("acc-1", path=path)]

    with pytest.raises(DuplicateKeyError) as caught:
        plan_on(path, [source("ACC-1")], records)

    assert caught.value.side == "target"
    assert len(caught.value.keys) == 1
    assert caught.value.keys[0].casefold() == "acc-1"


@pytest.mark.parametrize("path", PATHS)
def test_case_variant_target_unchanged(path):
    plan = plan_on(path, [source("acc-1")], [target("ACC-1", path=path)])

    assert plan.creates == []
    assert plan.updates == []
    assert plan.orphans == []
    assert plan.unchanged == 1


@pytest.mark.parametrize("path", PATHS)
def test_update_writes_source_spelling(path):
    plan = plan_on(path, [source("acc-1", name="Acme Ltd")], [target("ACC-1", path=path)])

    assert plan.creates == []
    assert plan.orphans == []
    assert plan.updates == [{"External_Id__c": "acc-1", "Name": "Acme Ltd"}]


@pytest.mark.parametrize("path", PATHS)
def test_create_writes_source_spelling(path):
    plan = plan_on(path, [source("New-7")], [])

    assert [record["External_Id__c"] for record in plan.creates] == ["New-7"]


@pytest.mark.parametrize("path", PATHS)
def test_orphans_keep_target_spelling(path):
    records = [target("ACC-1", path=path), target("Old-9", path=path), target("old-10", path=path)]

    plan = plan_on(path, [source("acc-1")], records)

    assert plan.orphans == ["Old-9", "old-10"]


def test_fold_after_nfc():
    # "Ä" written as A and a combining diaeresis is NFC "Ä", whose case fold is "ä".
    plan = plan_changes([source("A\u0308BC")], [target("äbc")], FOLDED)

    assert plan.creates == []
    assert plan.orphans == []
    assert plan.unchanged == 1


@pytest.mark.parametrize("path", PATHS)
def test_case_sensitive_keeps_variants_apart(path):
    plan = plan_on(path, [source("ACC-1"), source("acc-1")], [target("ACC-2", path=path)], EXACT)

    assert [record["External_Id__c"] for record in plan.creates] == ["ACC-1", "acc-1"]
    assert plan.orphans == ["ACC-2"]


@pytest.mark.parametrize("path", PATHS)
def test_case_sensitive_variant_is_create_and_orphan(path):
    plan = plan_on(path, [source("acc-1")], [target("ACC-1", path=path)], EXACT)

    assert [record["External_Id__c"] for record in plan.creates] == ["acc-1"]
    assert plan.orphans == ["ACC-1"]


def test_case_sensitive_duplicate_message_unchanged():
    with pytest.raises(DuplicateKeyError) as caught:
        plan_changes([source("ACC-1"), source("ACC-1")], [], EXACT)

    assert caught.value.case_sensitive is True
    assert "ignoring case" not in str(caught.value)


def test_integer_key_ignores_case_setting():
    mapping = Mapping(key=FieldMapping("id", "Number__c", FieldType.INTEGER), fields=FIELDS)

    plan = plan_changes([source(7)], [{"Number__c": "7", "Name": "Acme", "Employees__c": "12"}], mapping)

    assert plan.unchanged == 1


def test_mapping_rejects_non_bool_case_setting():
    with pytest.raises(TypeError, match="key_case_sensitive"):
        Mapping(key=KEY, fields=FIELDS, key_case_sensitive="no")


@pytest.mark.parametrize(
    ("first", "second"),
    [("ACC-1", "acc-1"), ("Acc-1", "ACC-1"), ("ÉCOLE-1", "école-1"), ("ACC-1", "ACC-2"), ("a b", "a  b")],
)
def test_matching_agrees_with_sandbox(first, second):
    # The sandbox emulator compares external ids with str.lower(). NOTE: case folding also matches
    # "STRASSE" with "straße", which str.lower() keeps apart, so such keys are left out here.
    plan = plan_changes([source(first)], [target(second)], FOLDED)

    matched = plan.creates == []
    assert matched == (match_key(first) == match_key(second))


@pytest.mark.parametrize("path", PATHS)
def test_key_only_mapping_folds_case(path):
    mapping = Mapping(key=KEY)
    records = [{"External_Id__c": "ACC-1"}, {"External_Id__c": "Old-9"}]
    if path == "row":
        records.append({"External_Id__c": None})  # a record without a key is indexed row by row

    plan = plan_changes([{"id": "acc-1"}, {"id": "New-7"}], records, mapping)

    assert plan.unchanged == 1
    assert plan.creates == [{"External_Id__c": "New-7"}]
    assert plan.orphans == ["Old-9"]
