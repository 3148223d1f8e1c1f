"""sObject Collections create and upsert through simple-salesforce's `restful`."""

from __future__ import annotations

import json

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.flow.salesforce_emulator.conftest import Org


def _record(key: str, **fields: object) -> dict[str, object]:
    return {"attributes": {"type": "Customer_Account__c"}, "External_Id__c": key, "Name": f"Account {key}", **fields}


def _upsert(org: Org, records: list[dict[str, object]], all_or_none: bool = False) -> list[dict[str, object]]:
    sf = org.salesforce()
    body = json.dumps({"allOrNone": all_or_none, "records": records})
    return sf.restful("composite/sobjects/Customer_Account__c/External_Id__c", method="PATCH", data=body)


def test_collection_upsert_results_in_order(org: Org) -> None:
    org.emulator.insert_records("Customer_Account__c", [{"External_Id__c": "ACC-2", "Name": "Old"}])

    results = _upsert(org, [_record("ACC-1"), _record("ACC-2", Name="New"), _record("ACC-3", Tier__c="Diamond")])

    assert [result["success"] for result in results] == [True, True, False]
    assert results[0]["created"] is True
    assert results[1]["created"] is False
    assert results[2]["errors"] == [
        {
            "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "message": "Tier: bad value for restricted picklist field: Diamond",
            "fields": ["Tier__c"],
        }
    ]
    names = {record["External_Id__c"]: record["Name"] for record in org.emulator.records("Customer_Account__c")}
    assert names == {"ACC-1": "Account ACC-1", "ACC-2": "New"}


def test_collection_all_or_none_rolls_back(org: Org) -> None:
    org.emulator.insert_records("Customer_Account__c", [{"External_Id__c": "ACC-2", "Name": "Old"}])

    results = _upsert(org, [_record("ACC-1"), _record("ACC-2", Name="New"), _record("ACC-3", Name=None)], all_or_none=True)

    assert [result["success"] for result in results] == [False, False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert [(record["External_Id__c"], record["Name"]) for record in org.emulator.records("Customer_Account__c")] == [("ACC-2", "Old")]


def test_collection_upsert_duplicate_keys_fail(org: Org) -> None:
    results = _upsert(org, [_record("ACC-1"), _record("acc-1"), _record("ACC-9")])

    assert [result["success"] for result in results] == [False, False, True]
    assert results[0]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"


def test_collection_create(org: Org) -> None:
    sf = org.salesforce()
    body = json.dumps({"allOrNone": False, "records": [_record("ACC-1"), _record("ACC-1")]})

    results = sf.restful("composite/sobjects", method="POST", data=body)

    assert results[0]["success"] is True
    assert results[1]["success"] is False
    assert results[1]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    assert "id" not in results[1]


def test_collection_rejects_more_than_200(org: Org) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        _upsert(org, [_record(f"ACC-{number}") for number in range(201)])

    assert raised.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert org.emulator.records("Customer_Account__c") == []


def test_upsert_with_two_matching_records_answers_300(org: Org) -> None:
    ids = org.emulator.insert_records(
        "Customer_Account__c",
        [{"External_Id__c": "ACC-1", "Name": "One"}, {"External_Id__c": "ACC-1", "Name": "Two"}],
        enforce_unique=False,
    )
    api = org.api()

    response = api.patch(org.data_url("sobjects/Customer_Account__c/External_Id__c/ACC-1"), json={"Name": "x"}, timeout=10)
    bulk_style = _upsert(org, [_record("ACC-1")])

    assert response.status_code == 300
    assert response.json() == [f"/services/data/v62.0/sobjects/Customer_Account__c/{record_id}" for record_id in ids]
    assert bulk_style[0]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"


def test_concurrent_upserts_create_each_key_once(org: Org) -> None:
    from concurrent.futures import ThreadPoolExecutor

    token = org.client_credentials_token()
    keys = [f"ACC-{number}" for number in range(40)]

    def upsert_all(worker: int) -> list[int]:
        api = org.api(token)
        return [
            api.patch(org.data_url(f"sobjects/Customer_Account__c/External_Id__c/{key}"), json={"Name": f"w{worker}"}, timeout=10).status_code
            for key in keys
        ]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [status for result in pool.map(upsert_all, range(4)) for status in result]

    assert statuses.count(201) == len(keys)
    assert statuses.count(200) == 3 * len(keys)
    assert sorted(record["External_Id__c"] for record in org.emulator.records("Customer_Account__c")) == sorted(keys)
