"""BigQueryToSalesforceReconcileOperator's orphan arguments, checked when the DAG is parsed."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_m2m.operators.reconcile import BigQueryToSalesforceReconcileOperator
from airflow_provider_m2m.reconcile import FieldMapping, FieldType, Mapping

MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING),
    fields=[FieldMapping("name", "Name", FieldType.STRING)],
)


def _operator(**kwargs: Any) -> BigQueryToSalesforceReconcileOperator:
    return BigQueryToSalesforceReconcileOperator(
        task_id="reconcile", source_sql="SELECT 1", target_object="Customer_Account__c", mapping=MAPPING, **kwargs
    )


def test_orphans_default_is_report() -> None:
    operator = _operator()

    assert operator.orphans == "report"
    assert operator.max_orphan_fraction == 0.1
    assert operator.max_orphans is None
    assert "orphans" in operator.template_fields


def test_invalid_orphans_names_parameter() -> None:
    with pytest.raises(ValueError, match="orphans='purge' is invalid; expected one of report, flag, delete"):
        _operator(orphans="purge")


def test_flag_needs_orphan_flag() -> None:
    with pytest.raises(ValueError, match="orphan_flag must be a non-empty dict"):
        _operator(orphans="flag")


def test_orphan_flag_cannot_set_key() -> None:
    with pytest.raises(ValueError, match="orphan_flag cannot set External_Id__c"):
        _operator(orphans="flag", orphan_flag={"External_Id__c": "x"})


def test_template_checked_when_rendered() -> None:
    operator = _operator(orphans="{{ params.orphans }}")
    operator.orphans = "purge"

    with pytest.raises(ValueError, match="orphans='purge' is invalid"):
        operator._orphan_action()


def test_invalid_fraction_names_parameter() -> None:
    with pytest.raises(ValueError, match="max_orphan_fraction=2 is invalid"):
        _operator(orphans="delete", max_orphan_fraction=2)


@pytest.mark.parametrize("dataset", ["m2m_staging", "my-project.m2m.staging", "my-project.`m2m`", "my-project.m2m staging"])
def test_invalid_staging_dataset_names_parameter(dataset: str) -> None:
    with pytest.raises(ValueError, match="warehouse_staging_dataset=.* is invalid; expected project.dataset"):
        _operator(warehouse_staging_dataset=dataset)


def test_staging_dataset_template_checked_when_rendered() -> None:
    operator = _operator(warehouse_staging_dataset="{{ params.dataset }}")
    operator.warehouse_staging_dataset = "m2m_staging"

    with pytest.raises(ValueError, match="warehouse_staging_dataset='m2m_staging' is invalid"):
        operator._staging_dataset()


def test_valid_staging_dataset_accepted() -> None:
    operator = _operator(warehouse_staging_dataset="my-project.m2m_staging")

    assert operator._staging_dataset() == "my-project.m2m_staging"
