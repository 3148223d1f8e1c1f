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


def _update(org: Org, records: list[dict[str, object]], all_or_none: bool = False) -> list[dict[str, object]]:
    body = json.dumps({"allOrNone": all_or_none, "records": records})
    return org.salesforce().restful("composite/sobjects", method="PATCH", data=body)


def _by_id(record_id: str | None, **fields: object) -> dict[str, object]:
    record: dict[str, object] = {"attributes": {"type": "Customer_Account__c"}, **fields}
    if record_id is not None:
        record["id"] = record_id
    return record


def test_collection_update_results_in_order(org: Org) -> None:
    live, deleted, purged = org.emulator.insert_records(
        "Customer_Account__c", [{"External_Id__c": f"ACC-{number}", "Name": "Old"} for number in range(3)]
    )
    org.salesforce().Customer_Account__c.delete(deleted)
    org.emulator.purge_records("Customer_Account__c", [purged])

    results = _update(
        org,
        [_by_id(live, Name="New"), _by_id(deleted, Name="New"), _by_id(purged, Name="New"), _by_id(None, Name="New")],
    )

    assert results[0] == {"id": live, "success": True, "errors": []}
    assert [result["success"] for result in results] == [True, False, False, False]
    assert results[1] == {
        "success": False,
        "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}],
    }
    assert results[2]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert results[3]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    records = org.emulator.records("Customer_Account__c")
    assert [(record["Id"], record["Name"]) for record in records] == [(live, "New")]
    assert org.emulator.api_calls["collection_update"] == 1


def test_collection_update_accepts_capital_Id(org: Org) -> None:
    [record_id] = org.emulator.insert_records("Customer_Account__c", [{"External_Id__c": "ACC-1", "Name": "Old"}])

    results = _update(org, [{"attributes": {"type": "Customer_Account__c"}, "Id": record_id, "Name": "New"}])

    assert results == [{"id": record_id, "success": True, "errors": []}]
    assert org.emulator.records("Customer_Account__c")[0]["Name"] == "New"


def test_collection_update_all_or_none_rolls_back(org: Org) -> None:
    first, second = org.emulator.insert_records(
        "Customer_Account__c", [{"External_Id__c": f"ACC-{number}", "Name": "Old"} for number in range(2)]
    )
    org.salesforce().Customer_Account__c.delete(second)

    results = _update(org, [_by_id(first, Name="New"), _by_id(second, Name="New")], all_or_none=True)

    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert [record["Name"] for record in org.emulator.records("Customer_Account__c")] == ["Old"]


def test_collection_update_rejects_more_than_200(org: Org) -> None:
    [record_id] = org.emulator.insert_records("Customer_Account__c", [{"External_Id__c": "ACC-1", "Name": "Old"}])

    with pytest.raises(SalesforceMalformedRequest) as raised:
        _update(org, [_by_id(record_id, Name="New")] * 201)

    assert raised.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert org.emulator.records("Customer_Account__c")[0]["Name"] == "Old"


def test_scripted_collections_failure_fails_one_request(org: Org) -> None:
    """fail_collections_request(after=1): the first request is served, the second gets 503, the third is served."""
    session = org.api()
    url = org.data_url("composite/sobjects/Customer_Account__c/External_Id__c")
    org.emulator.fail_collections_request(after=1, status=503)

    responses = [
        session.patch(url, json={"allOrNone": False, "records": [_record(f"ACC-{number}")]}, timeout=10)
        for number in range(3)
    ]

    assert [response.status_code for response in responses] == [200, 503, 200]
    assert responses[1].json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    keys = sorted(record["External_Id__c"] for record in org.emulator.records("Customer_Account__c"))
    assert keys == ["ACC-0", "ACC-2"]
    assert org.emulator.api_calls["collection_upsert"] == 3


def test_reference_stored_as_18_character_id(org: Org) -> None:
    """A lookup field set with a 15-character Id reads back in the 18-character form, as in a real org."""
    [target_id] = org.emulator.insert_records("Customer_Account__c", [{"External_Id__c": "ACC-1", "Name": "Target"}])

    results = _upsert(org, [_record("ACC-2", Merged_Into__c=target_id[:15])])

    assert results[0]["success"] is True
    merged = {record["External_Id__c"]: record["Merged_Into__c"] for record in org.emulator.records("Customer_Account__c")}
    assert merged["ACC-2"] == target_id
