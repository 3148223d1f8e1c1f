"""The chunk path and the row-by-row path of the diff must plan the same writes.

The chunk path compares probes (such as `str(Decimal)`) and converted columns with the target
text. Whatever it decides for a row, the row-by-row path, which converts every value, must decide
too. These tests build random rows around the values where the two could part: decimals that need
rounding, trailing zeros, negative zero, exponents, NaN and infinities, nulls in required fields,
and text that differs from the target only in form.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from airflow_provider_m2m.reconcile import FieldMapping, FieldType, Mapping, plan_changes
from airflow_provider_m2m.reconcile import diff as diff_module

MAPPING = Mapping(
    key=FieldMapping("id", "External_Id__c", FieldType.STRING, length=20),
    fields=[
        FieldMapping("amount", "Amount__c", FieldType.DECIMAL, scale=2),
        FieldMapping("price", "Price__c", FieldType.DECIMAL, scale=4, nullable=False),
        FieldMapping("count", "Count__c", FieldType.INTEGER),
        FieldMapping("name", "Name", FieldType.STRING, length=12),
    ],
)

VALID_DECIMALS = [
    Decimal("0"),
    Decimal("-0"),
    Decimal("-0.00"),
    Decimal("-0.001"),
    Decimal("1200"),
    Decimal("1200.5"),
    Decimal("1200.50"),
    Decimal("1200.500000000"),
    Decimal("1.005"),
    Decimal("1.004999"),
    Decimal("-2.675"),
    Decimal("1E+3"),
    Decimal("1.2E-7"),
    Decimal("12345678901234.56"),
]
# Values the chunk path hands to the row-by-row path: NaN, infinities and other types.
OTHER_DECIMALS = [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), 1.5, "3.25"]
TARGET_DECIMALS = ["", "0", "-0", "0.01", "1200", "1200.5", "1200.50", "1.01", "1.00", "-2.68", "1000", "12345678901234.56", "NaN"]
VALID_NAMES = [None, "", "Zoë", "Zoe\u0308", "x" * 12, "Ünïcode"]
# Text the chunk path hands to the row-by-row path: too long, with NUL, not a str.
OTHER_NAMES = ["x" * 13, "a\x00b", 5]
TARGET_NAMES = ["", "Zoë", "Zoe\u0308", "x" * 12, "Ünïcode"]


def pick(rng: random.Random, usual: list, other: list):
    """Return a value from `usual` mostly, and one from `other` for about one value in a hundred."""
    if other and rng.random() < 0.01:
        return rng.choice(other)
    return rng.choice(usual)


def random_pair(rng: random.Random, index: int) -> tuple[dict, dict]:
    key = f"K{index:05d}"
    source = {
        "id": key,
        "amount": pick(rng, [None, *VALID_DECIMALS], OTHER_DECIMALS),
        "price": pick(rng, VALID_DECIMALS, [None, *OTHER_DECIMALS]),
        "count": rng.choice([None, 0, 7, 123456789]),
        "name": pick(rng, VALID_NAMES, OTHER_NAMES),
    }
    target = {
        "External_Id__c": key,
        "Amount__c": rng.choice(TARGET_DECIMALS),
        "Price__c": rng.choice(TARGET_DECIMALS),
        "Count__c": rng.choice(["", "0", "7", "123456789"]),
        "Name": rng.choice(TARGET_NAMES),
    }
    return source, target


def plan_summary(plan) -> dict:
    return {
        "creates": plan.creates,
        "updates": plan.updates,
        "unchanged": plan.unchanged,
        "rejected": [(rejection.key, rejection.error) for rejection in plan.rejected],
        "orphans": plan.orphans,
    }


def plan_row_by_row(monkeypatch, source: list[dict], target: list[dict]) -> dict:
    with monkeypatch.context() as patch:
        patch.setattr(diff_module._Differ, "_plan_chunk", lambda self, chunk: False)
        return plan_summary(plan_changes(source, target, MAPPING))


def plan_chunked(monkeypatch, source: list[dict], target: list[dict]) -> tuple[dict, list[bool]]:
    """Plan in chunks of 8 rows, so that many chunks hold only valid values.

    Also return one flag per chunk: True where the chunk path planned it, False where it went row by row.
    """
    chunk_path_used: list[bool] = []
    original = diff_module._Differ._plan_chunk

    def spy(self, chunk):
        planned = original(self, chunk)
        chunk_path_used.append(planned)
        return planned

    with monkeypatch.context() as patch:
        patch.setattr(diff_module, "CHUNK_ROWS", 8)
        patch.setattr(diff_module._Differ, "_plan_chunk", spy)
        return plan_summary(plan_changes(source, target, MAPPING)), chunk_path_used


@pytest.mark.parametrize("seed", range(20))
def test_chunk_path_matches_row_path(monkeypatch, seed):
    rng = random.Random(seed)
    pairs = [random_pair(rng, index) for index in range(400)]
    source = [pair[0] for pair in pairs]
    target = [pair[1] for pair in pairs if rng.random() > 0.05]  # some keys only in the source

    chunked, chunk_path_used = plan_chunked(monkeypatch, source, target)
    row_by_row = plan_row_by_row(monkeypatch, source, target)

    assert chunk_path_used.count(True) >= 10, "too few chunks took the chunk path to compare the two"
    assert chunk_path_used.count(False) >= 1
    assert chunked["creates"] == row_by_row["creates"]
    assert chunked["updates"] == row_by_row["updates"]
    assert chunked["unchanged"] == row_by_row["unchanged"]
    assert chunked["rejected"] == row_by_row["rejected"]
    assert chunked["orphans"] == row_by_row["orphans"]


def test_chunk_path_chunk_path_used_for_valid_decimals(monkeypatch):
    """Valid rows are planned by the chunk path, so the equality above compares two paths."""
    calls = []
    original = diff_module._Differ._plan_chunk

    def spy(self, chunk):
        planned = original(self, chunk)
        calls.append(planned)
        return planned

    monkeypatch.setattr(diff_module._Differ, "_plan_chunk", spy)
    source = [{"id": f"K{i}", "amount": Decimal("1.005"), "price": Decimal("2"), "count": 1, "name": "n"} for i in range(10)]
    target = [
        {"External_Id__c": f"K{i}", "Amount__c": "1.01", "Price__c": "2", "Count__c": "1", "Name": "n"} for i in range(10)
    ]

    plan = plan_changes(source, target, MAPPING)

    assert calls == [True]
    assert plan.unchanged == 10


def test_decimal_probe_mismatch_converts_row():
    """A value that needs rounding differs from the target as text, yet equals it once converted."""
    source = [{"id": "K1", "amount": Decimal("1200.504"), "price": Decimal("1.23456"), "count": None, "name": "n"}]
    target = [{"External_Id__c": "K1", "Amount__c": "1200.5", "Price__c": "1.2346", "Count__c": "", "Name": "n"}]

    plan = plan_changes(source, target, MAPPING)

    assert plan.unchanged == 1
    assert plan.updates == []


def test_decimal_nan_rejected_in_chunk():
    source = [{"id": "K1", "amount": Decimal("NaN"), "price": Decimal("1"), "count": None, "name": "n"}]
    target = [{"External_Id__c": "K1", "Amount__c": "NaN", "Price__c": "1", "Count__c": "", "Name": "n"}]

    plan = plan_changes(source, target, MAPPING)

    assert [rejection.key for rejection in plan.rejected] == ["K1"]
    assert plan.unchanged == 0


@pytest.mark.parametrize("text", ["1" * 27, "1E+30"])
def test_decimal_too_long_to_round_rejected_in_chunk(text):
    """The target's text equals the probe, yet rounding to the scale overflows: the row is rejected."""
    source = [{"id": "K1", "amount": Decimal(text), "price": Decimal("1"), "count": None, "name": "n"}]
    target = [{"External_Id__c": "K1", "Amount__c": text, "Price__c": "1", "Count__c": "", "Name": "n"}]

    plan = plan_changes(source, target, MAPPING)

    assert [rejection.key for rejection in plan.rejected] == ["K1"]
    assert plan.unchanged == 0
