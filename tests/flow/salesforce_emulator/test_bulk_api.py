"""Bulk API 2.0 ingest and query jobs through simple-salesforce's bulk2 client and plain requests."""

from __future__ import annotations

import csv
import io
import time
from decimal import Decimal
from pathlib import Path

import pytest
from simple_salesforce.exceptions import SalesforceOperationError

from tests.flow.salesforce_emulator.conftest import HTTP_TIMEOUT, Org

# simple-salesforce's bulk2 `wait` sleeps this long before its first poll; keep tests quick.
WAIT = 0.1

HEADER = "External_Id__c,Name,Tier__c,Annual_Revenue__c,Employees__c,Is_Active__c,Signup_Date__c,Last_Activity__c,Notes__c\n"


def _write_csv(tmp_path: Path, body: str) -> str:
    path = tmp_path / "accounts.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    return str(path)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_bulk_upsert_reports_per_record_results(org: Org, tmp_path: Path) -> None:
    org.emulator.insert_records("Customer_Account__c", [{"External_Id__c": "ACC-2", "Name": "Old", "Notes__c": "keep"}])
    csv_file = _write_csv(
        tmp_path,
        "ACC-1,Zoë,Gold,1234.5,10,true,2024-01-31,2024-02-01T10:00:00Z,株式会社\n"
        'ACC-2,"Łukasz, Sp. z o.o.",Silver,#N/A,,false,,,\n'
        "ACC-3,Bad,Diamond,,,,,,\n"
        "ACC-4,,Gold,,,,,,\n"
        "ACC-5,Nums,Gold,abc,,,,,\n",
    )
    sf = org.salesforce()

    [summary] = sf.bulk2.Customer_Account__c.upsert(csv_file=csv_file, external_id_field="External_Id__c", wait=WAIT)
    successful = _rows(sf.bulk2.Customer_Account__c.get_successful_records(summary["job_id"]))
    failed = _rows(sf.bulk2.Customer_Account__c.get_failed_records(summary["job_id"]))
    unprocessed = sf.bulk2.Customer_Account__c.get_unprocessed_records(summary["job_id"])

    assert summary["numberRecordsProcessed"] == 5
    assert summary["numberRecordsFailed"] == 3
    assert summary["numberRecordsTotal"] == 5
    assert [(row["External_Id__c"], row["sf__Created"]) for row in successful] == [("ACC-1", "true"), ("ACC-2", "false")]
    assert all(len(row["sf__Id"]) == 18 for row in successful)
    errors = {row["External_Id__c"]: row["sf__Error"] for row in failed}
    assert errors == {
        "ACC-3": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Tier: bad value for restricted picklist field: Diamond:Tier__c --",
        "ACC-4": "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
        "ACC-5": "INVALID_FIELD:Failed to deserialize field at col 4. Due to, 'abc' is not a valid value for the type xsd:double:Annual_Revenue__c --",
    }
    assert list(csv.reader(io.StringIO(unprocessed))) == [HEADER.strip().split(",")]
    records = {record["External_Id__c"]: record for record in org.emulator.records("Customer_Account__c")}
    assert records["ACC-1"]["Annual_Revenue__c"] == Decimal("1234.50")
    assert records["ACC-1"]["Notes__c"] == "株式会社"
    assert records["ACC-2"]["Name"] == "Łukasz, Sp. z o.o."
    assert records["ACC-2"]["Annual_Revenue__c"] is None
    # A blank cell leaves the field as it was.
    assert records["ACC-2"]["Notes__c"] == "keep"
    assert records["ACC-2"]["Is_Active__c"] is False


def test_bulk_upsert_duplicate_keys_in_one_job(org: Org, tmp_path: Path) -> None:
    csv_file = _write_csv(tmp_path, "ACC-1,One,,,,,,,\nACC-1,Two,,,,,,,\nACC-2,Three,,,,,,,\n")
    sf = org.salesforce()

    [summary] = sf.bulk2.Customer_Account__c.upsert(csv_file=csv_file, external_id_field="External_Id__c", wait=WAIT)
    failed = _rows(sf.bulk2.Customer_Account__c.get_failed_records(summary["job_id"]))

    assert summary["numberRecordsFailed"] == 2
    assert {row["sf__Error"].split(":")[0] for row in failed} == {"DUPLICATE_EXTERNAL_ID"}
    assert [record["External_Id__c"] for record in org.emulator.records("Customer_Account__c")] == ["ACC-2"]


def test_bulk_job_failure_raises_and_keeps_unprocessed(org: Org, tmp_path: Path) -> None:
    csv_file = _write_csv(tmp_path, "".join(f"ACC-{number},Name {number},,,,,,,\n" for number in range(500)))
    org.emulator.fail_ingest_job_after(250, "InternalServerError : simulated outage")
    sf = org.salesforce()

    with pytest.raises(SalesforceOperationError, match="simulated outage"):
        sf.bulk2.Customer_Account__c.upsert(csv_file=csv_file, external_id_field="External_Id__c", wait=WAIT)

    [job] = org.api().get(org.data_url("jobs/ingest"), timeout=HTTP_TIMEOUT).json()["records"]
    info = org.api().get(org.data_url(f"jobs/ingest/{job['id']}"), timeout=HTTP_TIMEOUT).json()
    unprocessed = _rows(sf.bulk2.Customer_Account__c.get_unprocessed_records(job["id"]))
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InternalServerError : simulated outage"
    assert info["numberRecordsProcessed"] == 250
    assert len(unprocessed) == 250
    assert unprocessed[0]["External_Id__c"] == "ACC-250"
    assert len(org.emulator.records("Customer_Account__c")) == 250


def test_fail_next_ingest_job_writes_nothing(org: Org, tmp_path: Path) -> None:
    csv_file = _write_csv(tmp_path, "ACC-1,One,,,,,,,\n")
    org.emulator.fail_next_ingest_job()
    sf = org.salesforce()

    with pytest.raises(SalesforceOperationError):
        sf.bulk2.Customer_Account__c.upsert(csv_file=csv_file, external_id_field="External_Id__c", wait=WAIT)

    assert org.emulator.records("Customer_Account__c") == []


def test_ingest_job_lifecycle_with_requests(org: Org) -> None:
    api = org.api()
    org.emulator.set_processing_delay(0.3)

    created = api.post(
        org.data_url("jobs/ingest"),
        json={"object": "Customer_Account__c", "operation": "insert", "lineEnding": "LF", "columnDelimiter": "COMMA"},
        timeout=HTTP_TIMEOUT,
    ).json()
    upload = api.put(
        org.data_url(f"jobs/ingest/{created['id']}/batches"),
        data="Name,External_Id__c\nAlpha,ACC-1\n".encode(),
        headers={"Content-Type": "text/csv"},
        timeout=HTTP_TIMEOUT,
    )
    closed = api.patch(org.data_url(f"jobs/ingest/{created['id']}"), json={"state": "UploadComplete"}, timeout=HTTP_TIMEOUT).json()
    late_upload = api.put(org.data_url(f"jobs/ingest/{created['id']}/batches"), data=b"Name\nBeta\n", timeout=HTTP_TIMEOUT)
    states = {closed["state"]}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = api.get(org.data_url(f"jobs/ingest/{created['id']}"), timeout=HTTP_TIMEOUT).json()
        states.add(info["state"])
        if info["state"] == "JobComplete":
            break
        time.sleep(0.05)
    deleted = api.delete(org.data_url(f"jobs/ingest/{created['id']}"), timeout=HTTP_TIMEOUT)

    assert created["state"] == "Open"
    assert created["id"].startswith("750")
    assert created["contentType"] == "CSV"
    assert created["apiVersion"] == 62.0
    assert upload.status_code == 201
    assert late_upload.status_code >= 400
    assert late_upload.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert {"UploadComplete", "InProgress", "JobComplete"} <= states
    assert info["jobType"] == "V2Ingest"
    assert info["numberRecordsProcessed"] == 1
    assert info["numberRecordsFailed"] == 0
    assert deleted.status_code == 204
    assert org.emulator.api_calls["bulk_ingest_upload"] == 2


def test_ingest_job_with_unknown_column_fails(org: Org) -> None:
    api = org.api()
    job = api.post(org.data_url("jobs/ingest"), json={"object": "Customer_Account__c", "operation": "insert"}, timeout=HTTP_TIMEOUT).json()
    api.put(org.data_url(f"jobs/ingest/{job['id']}/batches"), data=b"Name,Bogus__c\nA,B\n", timeout=HTTP_TIMEOUT)
    api.patch(org.data_url(f"jobs/ingest/{job['id']}"), json={"state": "UploadComplete"}, timeout=HTTP_TIMEOUT)

    org.emulator.wait_for_jobs()
    info = api.get(org.data_url(f"jobs/ingest/{job['id']}"), timeout=HTTP_TIMEOUT).json()

    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Bogus__c"


def test_upsert_job_requires_external_id_field(org: Org) -> None:
    response = org.api().post(org.data_url("jobs/ingest"), json={"object": "Customer_Account__c", "operation": "upsert"}, timeout=HTTP_TIMEOUT)

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALIDJOB"


def test_bulk_query_pages_with_locator(org: Org) -> None:
    org.emulator.insert_records(
        "Customer_Account__c",
        [{"External_Id__c": f"ACC-{number:04d}", "Name": f"Name {number}", "Annual_Revenue__c": "10.5" if number % 2 else None} for number in range(25)],
    )
    sf = org.salesforce()

    pages = list(sf.bulk2.Customer_Account__c.query("SELECT External_Id__c, Annual_Revenue__c, Email__c FROM Customer_Account__c ORDER BY External_Id__c", max_records=10, wait=WAIT))

    assert len(pages) == 3
    rows = [row for page in pages for row in _rows(page)]
    assert [row["External_Id__c"] for row in rows] == [f"ACC-{number:04d}" for number in range(25)]
    assert rows[0]["Annual_Revenue__c"] == ""
    assert rows[1]["Annual_Revenue__c"] == "10.5"
    assert rows[0]["Email__c"] == ""
    assert org.emulator.api_calls["bulk_query_results"] == 3


def test_bulk_query_headers(org: Org) -> None:
    org.emulator.insert_records("Customer_Account__c", [{"External_Id__c": f"ACC-{number}", "Name": "n"} for number in range(3)])
    api = org.api()
    job = api.post(org.data_url("jobs/query"), json={"operation": "query", "query": "SELECT Id, Name FROM Customer_Account__c"}, timeout=HTTP_TIMEOUT).json()
    org.emulator.wait_for_jobs()

    first = api.get(org.data_url(f"jobs/query/{job['id']}/results"), params={"maxRecords": 2}, timeout=HTTP_TIMEOUT)
    second = api.get(
        org.data_url(f"jobs/query/{job['id']}/results"),
        params={"maxRecords": 2, "locator": first.headers["Sforce-Locator"]},
        timeout=HTTP_TIMEOUT,
    )

    assert first.headers["Sforce-NumberOfRecords"] == "2"
    assert first.headers["Sforce-Locator"] != "null"
    assert second.headers["Sforce-NumberOfRecords"] == "1"
    assert second.headers["Sforce-Locator"] == "null"
    assert first.text.splitlines()[0] == '"Id","Name"'


@pytest.mark.parametrize(("line_ending", "data", "expected_state"), [("LF", "Name\r\nA\r\n", "Failed"), ("CRLF", "Name\r\nA\r\n", "JobComplete"), ("CRLF", "Name\nA\n", "Failed")])
def test_ingest_line_ending_must_match(org: Org, line_ending: str, data: str, expected_state: str) -> None:
    api = org.api()
    job = api.post(
        org.data_url("jobs/ingest"),
        json={"object": "Customer_Account__c", "operation": "insert", "lineEnding": line_ending},
        timeout=HTTP_TIMEOUT,
    ).json()
    api.put(org.data_url(f"jobs/ingest/{job['id']}/batches"), data=data.encode(), timeout=HTTP_TIMEOUT)
    api.patch(org.data_url(f"jobs/ingest/{job['id']}"), json={"state": "UploadComplete"}, timeout=HTTP_TIMEOUT)

    org.emulator.wait_for_jobs()
    info = api.get(org.data_url(f"jobs/ingest/{job['id']}"), timeout=HTTP_TIMEOUT).json()

    assert info["state"] == expected_state
    if expected_state == "Failed":
        assert info["errorMessage"].startswith("ClientInputError : LineEnding is invalid on user data")


def test_aborted_job_leaves_rows_unprocessed(org: Org) -> None:
    api = org.api()
    org.emulator.set_processing_delay(0.5)
    job = api.post(org.data_url("jobs/ingest"), json={"object": "Customer_Account__c", "operation": "insert"}, timeout=HTTP_TIMEOUT).json()
    api.put(org.data_url(f"jobs/ingest/{job['id']}/batches"), data=b"Name\nA\nB\n", timeout=HTTP_TIMEOUT)
    api.patch(org.data_url(f"jobs/ingest/{job['id']}"), json={"state": "UploadComplete"}, timeout=HTTP_TIMEOUT)

    aborted = api.patch(org.data_url(f"jobs/ingest/{job['id']}"), json={"state": "Aborted"}, timeout=HTTP_TIMEOUT).json()
    org.emulator.wait_for_jobs()
    info = api.get(org.data_url(f"jobs/ingest/{job['id']}"), timeout=HTTP_TIMEOUT).json()
    unprocessed = api.get(org.data_url(f"jobs/ingest/{job['id']}/unprocessedrecords/"), timeout=HTTP_TIMEOUT).text

    assert aborted["state"] == "Aborted"
    assert info["state"] == "Aborted"
    assert _rows(unprocessed) == [{"Name": "A"}, {"Name": "B"}]
    assert org.emulator.records("Customer_Account__c") == []


def test_bulk_call_after_expiry_raises(org: Org) -> None:
    from simple_salesforce.exceptions import SalesforceExpiredSession

    token = org.client_credentials_token()
    sf = org.salesforce(token)
    sf.query("SELECT Id FROM Customer_Account__c")
    org.emulator.expire_sessions_after_calls(0)

    with pytest.raises(SalesforceExpiredSession):
        sf.bulk2.Customer_Account__c.upsert(records=[{"External_Id__c": "ACC-1", "Name": "A"}], external_id_field="External_Id__c", wait=WAIT)

    assert org.emulator.api_calls["bulk_ingest_create"] == 1
    assert org.emulator.records("Customer_Account__c") == []


def test_bulk_insert_with_crlf_records(org: Org) -> None:
    sf = org.salesforce()

    [summary] = sf.bulk2.Customer_Account__c.insert(
        records=[{"Name": "Ünïcode\nline", "External_Id__c": "ACC-1"}, {"Name": "Plain", "External_Id__c": "ACC-2"}],
        line_ending="CRLF",
        wait=WAIT,
    )

    assert summary["numberRecordsProcessed"] == 2
    assert summary["numberRecordsFailed"] == 0
    assert sorted(record["Name"] for record in org.emulator.records("Customer_Account__c")) == ["Plain", "Ünïcode\nline"]


def test_bulk_update_of_deleted_records_fails(org: Org) -> None:
    live, deleted, purged = org.emulator.insert_records(
        "Customer_Account__c", [{"External_Id__c": f"ACC-{number}", "Name": "Old"} for number in range(3)]
    )
    sf = org.salesforce()
    sf.Customer_Account__c.delete(deleted)
    org.emulator.purge_records("Customer_Account__c", [purged])

    [summary] = sf.bulk2.Customer_Account__c.update(
        records=[{"Id": record_id, "Name": "New"} for record_id in (live, deleted, purged)], wait=WAIT
    )
    failed = _rows(sf.bulk2.Customer_Account__c.get_failed_records(summary["job_id"]))

    assert summary["numberRecordsFailed"] == 2
    assert {row["Id"]: row["sf__Error"] for row in failed} == {
        deleted: "ENTITY_IS_DELETED:entity is deleted:--",
        purged: "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
    }
    assert [(record["Id"], record["Name"]) for record in org.emulator.records("Customer_Account__c")] == [(live, "New")]
