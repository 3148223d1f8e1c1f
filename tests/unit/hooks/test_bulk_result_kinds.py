"""Which Bulk API 2.0 ingest result lists the hook reads, from the job's counts."""

from __future__ import annotations

import pytest

from airflow_provider_m2m.hooks.salesforce import _result_kinds

ALL = ["successfulResults", "failedResults", "unprocessedrecords"]


@pytest.mark.parametrize(
    ("job", "uploaded", "expected"),
    [
        ({"state": "JobComplete", "numberRecordsProcessed": 10, "numberRecordsFailed": 0}, 10, ["successfulResults"]),
        (
            {"state": "JobComplete", "numberRecordsProcessed": 10, "numberRecordsFailed": 1},
            10,
            ["successfulResults", "failedResults"],
        ),
        ({"state": "Failed", "numberRecordsProcessed": 4, "numberRecordsFailed": 0}, 10, ["successfulResults", "unprocessedrecords"]),
        ({"state": "JobComplete", "numberRecordsProcessed": 9, "numberRecordsFailed": 0}, 10, ["successfulResults", "unprocessedrecords"]),
        ({"state": "JobComplete"}, 10, ALL),
        ({"state": "Aborted", "numberRecordsProcessed": 0, "numberRecordsFailed": 0}, 10, ["successfulResults", "unprocessedrecords"]),
    ],
)
def test_result_kinds_from_counts(job, uploaded, expected):
    assert _result_kinds(job, uploaded) == expected
