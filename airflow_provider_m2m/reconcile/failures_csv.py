"""Write the failed records of a run to a CSV file that an operator can open in a spreadsheet."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Any

from airflow_provider_m2m.reconcile.mapping import NULL
from airflow_provider_m2m.reconcile.plan import Plan
from airflow_provider_m2m.reconcile.result import RecordOutcome

# Bulk API 2.0 CSV text for "set to null"; the same file can be edited and uploaded again.
NULL_CELL = "#N/A"

# A cell starting with one of these runs as a formula in Excel and LibreOffice (OWASP, "CSV
# Injection"). Error messages and field values come from outside, so such cells get a leading
# apostrophe, except plain numbers such as "-12.50".
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")

# `operation` names the write that failed: "upsert" for a source row, "flag" or "delete" for an orphan.
FIXED_COLUMNS = ["key", "operation", "status", "error", "salesforce_id"]


def write_failures_csv(
    path: str | os.PathLike[str],
    failures: Iterable[RecordOutcome],
    plan_or_records: Plan | MappingABC[str, MappingABC[str, Any]],
) -> Path:
    """Write one row per failed or unprocessed record and return the path.

    Columns: key, operation (upsert, flag or delete), status, error (Salesforce's message, or why
    the row was not sent), salesforce_id, then the fields that were sent, in mapping order when a
    Plan is given. An orphan's row leaves the field columns blank. `plan_or_records` is the
    Plan, or a dict from key to the record sent. A field that was not sent is blank; a field
    sent as null reads `#N/A`. The file is UTF-8 and is replaced as a whole, never left half written.
    """
    failures = list(failures)
    records, field_names = _records_for(failures, plan_or_records)

    destination = Path(path)
    temporary = destination.with_name(destination.name + ".partial")
    with temporary.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(FIXED_COLUMNS + field_names)
        for outcome in failures:
            record = records.get(outcome.key, {}) if outcome.operation == "upsert" else {}
            row = [outcome.key, outcome.operation, outcome.status, outcome.error or "", outcome.salesforce_id or ""]
            row.extend(_cell(record.get(name, "")) for name in field_names)
            writer.writerow([_defuse_formula(cell) for cell in row])
    os.replace(temporary, destination)
    return destination


def _records_for(
    failures: list[RecordOutcome], plan_or_records: Plan | MappingABC[str, MappingABC[str, Any]]
) -> tuple[dict[str, MappingABC[str, Any]], list[str]]:
    """Return the sent record of each failed key and the field columns to write."""
    wanted = {outcome.key for outcome in failures}
    if isinstance(plan_or_records, Plan):
        key_name = plan_or_records.mapping.key.target
        records = {
            record[key_name]: record
            for record in plan_or_records.iter_writes()
            if record[key_name] in wanted
        }
        field_names = [
            name for name in plan_or_records.mapping.target_fields() if name != key_name
        ]
        return records, field_names

    records = {key: plan_or_records[key] for key in wanted if key in plan_or_records}
    field_names: list[str] = []
    for record in records.values():
        for name in record:
            if name not in field_names:
                field_names.append(name)
    return records, field_names


def _cell(value: Any) -> str:
    if value is NULL:
        return NULL_CELL
    if value is None:
        return ""
    return str(value)


def _defuse_formula(cell: str) -> str:
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell
