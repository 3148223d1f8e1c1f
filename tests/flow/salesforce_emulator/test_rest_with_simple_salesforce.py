"""simple-salesforce's REST calls against the emulator over HTTPS: query, describe, writes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest, SalesforceResourceNotFound

from tests.flow.salesforce_emulator.conftest import Org


def _account(number: int, **fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "External_Id__c": f"ACC-{number:06d}",
        "Name": f"Account {number}",
        "Country__c": "DE",
        "Tier__c": "Gold",
        "Is_Active__c": True,
    }
    record.update(fields)
    return record


def test_upsert_creates_then_updates(org: Org) -> None:
    sf = org.salesforce()

    created = sf.Customer_Account__c.upsert("External_Id__c/ACC-1", {"Name": "Zoë Łukasz", "Tier__c": "Gold"}, raw_response=True)
    updated = sf.Customer_Account__c.upsert("External_Id__c/ACC-1", {"Tier__c": "Platinum"}, raw_response=True)

    assert created.status_code == 201
    assert created.json()["created"] is True
    assert created.json()["success"] is True
    assert updated.status_code == 200
    assert updated.json()["created"] is False
    assert updated.json()["id"] == created.json()["id"]
    [record] = org.emulator.records("Customer_Account__c")
    assert record["Name"] == "Zoë Łukasz"
    assert record["Tier__c"] == "Platinum"


def test_create_returns_18_character_id(org: Org) -> None:
    sf = org.salesforce()

    result = sf.Customer_Account__c.create(_account(1))

    assert result["success"] is True
    assert len(result["id"]) == 18
    assert result["id"].startswith("a01")


def test_query_returns_typed_values(org: Org) -> None:
    org.emulator.insert_records(
        "Customer_Account__c",
        [
            _account(
                1,
                Annual_Revenue__c=Decimal("1234.50"),
                Employees__c=42,
                Signup_Date__c=dt.date(2024, 2, 29),
                Last_Activity__c=dt.datetime(2024, 3, 1, 12, 30, 5, 123456, tzinfo=dt.timezone.utc),
                Notes__c="",
            )
        ],
    )
    sf = org.salesforce()

    result = sf.query(
        "SELECT Id, External_Id__c, Annual_Revenue__c, Employees__c, Signup_Date__c, Last_Activity__c, "
        "Is_Active__c, Notes__c, Email__c FROM Customer_Account__c"
    )

    assert result["totalSize"] == 1
    assert result["done"] is True
    [record] = result["records"]
    assert record["attributes"]["type"] == "Customer_Account__c"
    assert record["attributes"]["url"] == f"/services/data/v62.0/sobjects/Customer_Account__c/{record['Id']}"
    assert record["Annual_Revenue__c"] == 1234.5
    assert record["Employees__c"] == 42.0
    assert record["Signup_Date__c"] == "2024-02-29"
    assert record["Last_Activity__c"] == "2024-03-01T12:30:05.123+0000"
    assert record["Is_Active__c"] is True
    assert record["Notes__c"] is None
    assert record["Email__c"] is None


def test_query_all_follows_next_records_url(org: Org) -> None:
    org.emulator.insert_records("Customer_Account__c", [_account(number) for number in range(4500)])
    sf = org.salesforce()

    first_page = sf.query("SELECT External_Id__c FROM Customer_Account__c ORDER BY External_Id__c")
    everything = sf.query_all("SELECT External_Id__c FROM Customer_Account__c ORDER BY External_Id__c")

    assert first_page["done"] is False
    assert len(first_page["records"]) == 2000
    assert first_page["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
    assert first_page["totalSize"] == 4500
    keys = [record["External_Id__c"] for record in everything["records"]]
    assert keys == sorted(f"ACC-{number:06d}" for number in range(4500))
    assert org.emulator.api_calls["query"] == 2
    assert org.emulator.api_calls["query_more"] == 2


def test_query_where_clauses(org: Org) -> None:
    org.emulator.insert_records(
        "Customer_Account__c",
        [
            _account(1, Tier__c="Gold", Employees__c=10, Email__c="a@example.com"),
            _account(2, Tier__c="Silver", Employees__c=20),
            _account(3, Tier__c="Bronze", Employees__c=None, Name="Ñandú SA"),
        ],
    )
    sf = org.salesforce()

    def keys(where: str) -> list[str]:
        result = sf.query(f"SELECT External_Id__c FROM Customer_Account__c WHERE {where} ORDER BY External_Id__c")
        return [record["External_Id__c"] for record in result["records"]]

    assert keys("Tier__c = 'gold'") == ["ACC-000001"]
    assert keys("Tier__c IN ('Gold', 'Silver')") == ["ACC-000001", "ACC-000002"]
    assert keys("Tier__c NOT IN ('Gold')") == ["ACC-000002", "ACC-000003"]
    assert keys("Employees__c = null") == ["ACC-000003"]
    assert keys("Employees__c != null AND Employees__c >= 15") == ["ACC-000002"]
    assert keys("Email__c != null OR Name LIKE 'ñandú%'") == ["ACC-000001", "ACC-000003"]
    assert keys("NOT (Tier__c = 'Gold')") == ["ACC-000002", "ACC-000003"]
    assert keys("External_Id__c = 'ACC-000002' AND (Tier__c = 'Gold' OR Tier__c = 'Silver')") == ["ACC-000002"]


def test_query_count_limit_and_order(org: Org) -> None:
    org.emulator.insert_records("Customer_Account__c", [_account(number, Employees__c=number % 3 or None) for number in range(10)])
    sf = org.salesforce()

    count = sf.query("SELECT COUNT() FROM Customer_Account__c WHERE Employees__c = null")
    ordered = sf.query("SELECT External_Id__c, Employees__c FROM Customer_Account__c ORDER BY Employees__c DESC NULLS LAST, External_Id__c LIMIT 4")

    assert count["totalSize"] == 4
    assert count["records"] == []
    assert [record["Employees__c"] for record in ordered["records"]] == [2.0, 2.0, 2.0, 1.0]
    assert [record["External_Id__c"] for record in ordered["records"]][:3] == ["ACC-000002", "ACC-000005", "ACC-000008"]


def test_query_errors_use_salesforce_codes(org: Org) -> None:
    sf = org.salesforce()

    with pytest.raises(SalesforceMalformedRequest) as unknown_field:
        sf.query("SELECT Bogus__c FROM Customer_Account__c")
    with pytest.raises(SalesforceMalformedRequest) as unknown_object:
        sf.query("SELECT Id FROM Bogus__c")
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf.query("SELECT Id FROM Customer_Account__c WHERE")

    assert unknown_field.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert unknown_object.value.content[0]["errorCode"] == "INVALID_TYPE"
    assert malformed.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_describe_reports_field_attributes(org: Org) -> None:
    sf = org.salesforce()

    describe = sf.Customer_Account__c.describe()

    fields = {field["name"]: field for field in describe["fields"]}
    assert describe["name"] == "Customer_Account__c"
    assert fields["External_Id__c"]["externalId"] is True
    assert fields["External_Id__c"]["unique"] is True
    assert fields["External_Id__c"]["length"] == 20
    assert fields["Name"]["nillable"] is False
    assert fields["Name"]["length"] == 80
    assert fields["Tier__c"]["restrictedPicklist"] is True
    assert [value["value"] for value in fields["Tier__c"]["picklistValues"]] == ["Bronze", "Silver", "Gold", "Platinum"]
    assert fields["Annual_Revenue__c"]["type"] == "currency"
    assert (fields["Annual_Revenue__c"]["precision"], fields["Annual_Revenue__c"]["scale"]) == (16, 2)
    assert fields["Employees__c"]["precision"] == 9
    assert fields["Id"]["createable"] is False
    assert fields["Notes__c"]["type"] == "textarea"
    assert fields["Last_Activity__c"]["type"] == "datetime"


def test_record_errors_match_salesforce(org: Org) -> None:
    sf = org.salesforce()
    cases = [
        ({"Tier__c": "Gold"}, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"]),
        ({"Name": "x", "Tier__c": "Diamond"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Tier: bad value for restricted picklist field: Diamond", ["Tier__c"]),
        ({"Name": "x" * 81}, "STRING_TOO_LONG", None, ["Name"]),
        ({"Name": "x", "Email__c": "not-an-email"}, "INVALID_EMAIL_ADDRESS", "Email: invalid email address: not-an-email", ["Email__c"]),
        ({"Name": "x", "Employees__c": 1234567890}, "NUMBER_OUTSIDE_VALID_RANGE", None, ["Employees__c"]),
    ]
    for body, code, message, fields in cases:
        with pytest.raises(SalesforceMalformedRequest) as raised:
            sf.Customer_Account__c.create(body)
        [error] = raised.value.content
        assert error["errorCode"] == code, body
        assert error["fields"] == fields, body
        if message:
            assert error["message"] == message


def test_string_too_long_message(org: Org) -> None:
    sf = org.salesforce()

    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Customer_Account__c.create({"Name": "x" * 81})

    message = raised.value.content[0]["message"]
    assert message.startswith("Name: data value too large: ")
    assert message.endswith("(max length=80)")


def test_bad_type_fails_whole_request(org: Org) -> None:
    sf = org.salesforce()

    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Customer_Account__c.create({"Name": "x", "Signup_Date__c": "2024-13-45"})

    assert raised.value.content[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert org.emulator.records("Customer_Account__c") == []


def test_get_update_delete_by_id(org: Org) -> None:
    [record_id] = org.emulator.insert_records("Customer_Account__c", [_account(1)])
    sf = org.salesforce()

    sf.Customer_Account__c.update(record_id, {"Notes__c": "株式会社 note", "Email__c": None})
    fetched = sf.Customer_Account__c.get(record_id)
    by_key = sf.Customer_Account__c.get_by_custom_id("External_Id__c", "ACC-000001")
    sf.Customer_Account__c.delete(record_id)

    assert fetched["Notes__c"] == "株式会社 note"
    assert by_key["Id"] == record_id
    assert org.emulator.records("Customer_Account__c") == []
    with pytest.raises(SalesforceResourceNotFound):
        sf.Customer_Account__c.get(record_id)


def test_expired_session_raises_in_simple_salesforce(org: Org) -> None:
    token = org.client_credentials_token()
    sf = org.salesforce(token)
    sf.query("SELECT Id FROM Customer_Account__c")

    org.emulator.expire_session(token)

    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM Customer_Account__c")
    assert raised.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_timestamps_set_by_the_org(org: Org) -> None:
    sf = org.salesforce()
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    sf.Customer_Account__c.create(_account(1))

    [record] = org.emulator.records("Customer_Account__c")
    assert record["CreatedDate"] >= before
    assert record["CreatedDate"].microsecond % 1000 == 0
    assert record["LastModifiedDate"] == record["CreatedDate"]
    assert record["SystemModstamp"] == record["CreatedDate"]
    assert record["CreatedById"].startswith("005")


def test_unknown_resource_answers_not_found(org: Org) -> None:
    api = org.api()

    unknown_object = api.get(org.data_url("sobjects/Bogus__c/describe"), timeout=10)
    unknown_path = api.get(org.data_url("no/such/resource"), timeout=10)
    old_version = api.get(f"{org.url}/services/data/v20.0/query", params={"q": "SELECT Id FROM Customer_Account__c"}, timeout=10)

    for response in (unknown_object, unknown_path, old_version):
        assert response.status_code == 404
        assert response.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def test_limit_info_header_reports_usage(org: Org) -> None:
    sf = org.salesforce()

    sf.query("SELECT Id FROM Customer_Account__c")
    sf.query("SELECT Id FROM Customer_Account__c")

    assert sf.api_usage["api-usage"].used == 2
    assert sf.api_usage["api-usage"].total == 15000


def test_run_summary_upsert_by_airflow_run_id(org: Org) -> None:
    sf = org.salesforce()
    run_id = "scheduled__2024-01-01T02:00:00+00:00"
    summary = {
        "Name": "Nightly 2024-01-01",
        "Status__c": "Succeeded",
        "Source_Read__c": 10000,
        "Created__c": 300,
        "Started_At__c": "2024-01-01T02:00:01.250Z",
        "Finished_At__c": "2024-01-01T02:01:00Z",
        "Failures__c": "key,error\n" + "ACC-000001,STRING_TOO_LONG\n" * 4000,
    }

    first = sf.Reconciliation_Run__c.upsert(f"Run_Id__c/{run_id}", summary)
    second = sf.Reconciliation_Run__c.upsert(f"Run_Id__c/{run_id}", {"Status__c": "Failed"})

    assert (first, second) == (201, 200)
    [record] = org.emulator.records("Reconciliation_Run__c")
    assert record["Run_Id__c"] == run_id
    assert record["Status__c"] == "Failed"
    assert record["Source_Read__c"] == Decimal(10000)
    assert record["Started_At__c"] == dt.datetime(2024, 1, 1, 2, 0, 1, 250000, tzinfo=dt.timezone.utc)
    assert len(record["Failures__c"]) > 100_000
