"""Collated STRING columns in the warehouse path: BigQuery compares them by their collation, so
under 'und:ci' "Acme" equals "ACME" there, and nothing may be proven on them."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import bigquery as bq

from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.warehouse import _column_types, _renderings, _stage_target

MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING),
    fields=[FieldMapping("name", "Name", FieldType.STRING)],
)


def _field(name: str, collation: str | None = None) -> bq.SchemaField:
    resource = {"name": name, "type": "STRING", "mode": "NULLABLE"}
    if collation is not None:
        resource["collation"] = collation
    return bq.SchemaField.from_api_repr(resource)


def test_column_types_show_collation() -> None:
    types = _column_types([_field("account_id"), _field("name", "und:ci"), _field("code", "")])

    assert types == {"account_id": "STRING", "name": "STRING COLLATE und:ci", "code": "STRING"}


def test_collated_field_proves_nothing() -> None:
    key_rendering, renderings = _renderings(MAPPING, _column_types([_field("account_id"), _field("name", "und:ci")]))

    assert key_rendering is not None
    assert renderings is None


def test_collated_key_proves_nothing() -> None:
    key_rendering, renderings = _renderings(MAPPING, _column_types([_field("account_id", "und:ci"), _field("name")]))

    assert key_rendering is None
    assert renderings is None


class _CollatingClient:
    """Creates every table with the dataset's default collation on its STRING columns, as BigQuery does."""

    def create_table(self, table: bq.Table) -> bq.Table:
        created = bq.Table(table.reference)
        created.schema = [_field(field.name, "und:ci") if field.field_type == "STRING" else field for field in table.schema]
        return created

    def load_table_from_file(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing may be loaded into a collated staging table")


def test_collated_staging_dataset_rejected() -> None:
    created: list[str] = []

    with pytest.raises(ValueError, match="got a collation from its dataset .*stage in a dataset without"):
        _stage_target(_CollatingClient(), bq, iter([]), MAPPING, None, "p.d.stage", created)  # type: ignore[arg-type]

    assert created == ["p.d.stage"]  # so that the run drops it
