"""The demo data generator: deterministic, drifted as documented, and always valid for the target."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from airflow_provider_m2m.sandbox import seed
from airflow_provider_m2m.sandbox.salesforce import SalesforceEmulator
from airflow_provider_m2m.sandbox.salesforce.objects import COUNTRY_CODES, TIERS


@pytest.fixture(scope="module")
def data() -> seed.SeedData:
    return seed.generate(42, 10_000)


def test_same_seed_same_data(data):
    again = seed.generate(42, 10_000)

    assert again.source_rows == data.source_rows
    assert again.target_records == data.target_records


def test_other_seed_other_data(data):
    other = seed.generate(43, 10_000)

    assert other.source_rows != data.source_rows


def test_source_row_count_and_keys(data):
    keys = [row["account_id"] for row in data.source_rows]

    assert len(keys) == 10_000
    assert len(set(keys)) == 10_000
    assert keys[0] == "ACC-000001"
    assert keys[-1] == "ACC-010000"


def test_source_columns_match_schema(data):
    schema_columns = [column["name"] for column in seed.BIGQUERY_SCHEMA]

    for row in data.source_rows[:100]:
        assert list(row) == schema_columns


def test_source_value_types(data):
    for row in data.source_rows:
        assert isinstance(row["name"], str)
        assert row["annual_revenue"] is None or isinstance(row["annual_revenue"], Decimal)
        assert row["employees"] is None or isinstance(row["employees"], int)
        assert isinstance(row["is_active"], bool)
        assert isinstance(row["signup_date"], dt.date)
        assert row["last_activity_at"] is None or row["last_activity_at"].tzinfo is not None


def test_source_has_hard_values(data):
    names = [row["name"] for row in data.source_rows]
    notes = [row["notes"] for row in data.source_rows]

    assert any(not name.isascii() for name in names)
    assert any("株式会社" in name for name in names)
    assert "" in notes
    assert None in notes
    assert any(note and len(note) > 200 and not note.isascii() for note in notes)
    for column in ("email", "annual_revenue", "employees", "last_activity_at"):
        assert any(row[column] is None for row in data.source_rows), column


def test_source_fits_target_fields(data):
    for row in data.source_rows:
        assert len(row["name"]) <= seed.NAME_MAX_LENGTH
        assert len(row["notes"] or "") <= seed.NOTES_MAX_LENGTH
        assert row["country"] in COUNTRY_CODES
        assert row["tier"] in TIERS
        assert row["email"] is None or row["email"].isascii()
        revenue = row["annual_revenue"]
        assert revenue is None or (revenue.as_tuple().exponent == -2 and revenue < Decimal("1e14"))
        assert row["employees"] is None or row["employees"] < 10**9
        assert row["last_activity_at"] is None or row["last_activity_at"].microsecond == 0


def test_drift_counts(data):
    target_keys = {record[seed.KEY_FIELD] for record in data.target_records}
    source_keys = {row["account_id"] for row in data.source_rows}

    assert len(data.missing_keys) == 300
    assert len(data.changed_fields) == 500
    assert len(data.orphan_keys) == 50
    assert len(data.unchanged_keys) == 10_000 - 300 - 500
    assert target_keys.isdisjoint(data.missing_keys)
    assert set(data.orphan_keys) == target_keys - source_keys
    assert len(data.target_records) == 10_000 - 300 + 50


def test_unchanged_records_equal_mapped_source(data):
    source = {row["account_id"]: row for row in data.source_rows}
    target = {record[seed.KEY_FIELD]: record for record in data.target_records}

    for key in data.unchanged_keys:
        assert target[key] == seed.to_target_record(source[key])


def test_changed_records_differ_in_listed_fields_only(data):
    source = {row["account_id"]: row for row in data.source_rows}
    target = {record[seed.KEY_FIELD]: record for record in data.target_records}

    for key, fields in data.changed_fields.items():
        mapped = seed.to_target_record(source[key])
        differing = {name for name in mapped if mapped[name] != target[key][name]}
        assert 1 <= len(fields) <= 3
        assert differing == set(fields), key


def test_drift_includes_both_null_directions(data):
    source = {row["account_id"]: seed.to_target_record(row) for row in data.source_rows}
    target = {record[seed.KEY_FIELD]: record for record in data.target_records}
    to_null = from_null = 0

    for key, fields in data.changed_fields.items():
        for name in fields:
            to_null += source[key][name] is not None and target[key][name] is None
            from_null += source[key][name] is None and target[key][name] is not None

    assert to_null >= 1
    assert from_null >= 1


def test_empty_string_maps_to_null():
    row = seed.generate(1, 1).source_rows[0] | {"notes": ""}

    assert seed.to_target_record(row)["Notes__c"] is None


def test_small_data_drift_counts():
    small = seed.generate(5, 40)

    assert len(small.changed_fields) == 2
    assert len(small.missing_keys) == 1


def test_rows_out_of_range_rejected():
    with pytest.raises(ValueError, match="rows must be between"):
        seed.generate(1, 0)


def test_target_accepts_seeded_and_mapped_records(data):
    # Every seeded record, and every mapped source row the reconcile will write, passes the
    # emulator's field validation (lengths, picklists, precision, required fields).
    mapped = [seed.to_target_record(row) for row in data.source_rows]
    orphans = [record for record in data.target_records if record[seed.KEY_FIELD] in set(data.orphan_keys)]

    seeded_org = SalesforceEmulator()
    seeded_ids = seeded_org.insert_records(seed.TARGET_OBJECT, data.target_records)
    mapped_org = SalesforceEmulator()
    mapped_ids = mapped_org.insert_records(seed.TARGET_OBJECT, mapped + orphans)

    assert len(seeded_ids) == len(data.target_records)
    assert len(mapped_ids) == len(mapped) + len(orphans)
