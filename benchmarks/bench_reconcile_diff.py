"""Benchmark the reconcile diff against a pandas merge.

Diff: N source rows against N target records with 10 mapped fields, 1% of the target changed in one
field and 0.5% of the source missing from the target. Both contenders receive the same iterators:
typed source rows (as the BigQuery hook yields them) and text records (as a Bulk API 2.0 query CSV
reader yields them). Each produces the same plan: keys to create, changed fields per key to update,
orphan keys.

Time: both contenders read the same rows from lists built before the clock starts, so the time is
the diff's alone. Memory: both read rows generated while they are read, as rows stream from the
BigQuery client and a Bulk API 2.0 CSV reader, so the peak shows what each contender keeps.

Time is the median CPU time of this process (time.process_time) over the repeats. It is steadier
than wall time on a machine shared with other work, and it counts every thread, so a contender that
used several cores is not flattered. Peak memory is measured in a separate run under
tracemalloc, which slows the code down and so is never timed. It is the highest traced allocation
above what was allocated before the run. numpy and pandas report their buffers to tracemalloc.

Salesforce API calls per reconciliation are measured by benchmarks/bench_salesforce_calls.py.

Run: .venv/bin/python benchmarks/bench_reconcile_diff.py [--rows 1000000] [--repeats 3]
Needs pandas for the baseline (`pip install pandas`).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_m2m.reconcile import FieldMapping, FieldType, Mapping, plan_changes  # noqa: E402

MAPPING = Mapping(
    key=FieldMapping("account_id", "External_Id__c", FieldType.STRING, length=20),
    fields=[
        FieldMapping("name", "Name", FieldType.STRING, length=80, nullable=False),
        FieldMapping("email", "Email__c", FieldType.EMAIL),
        FieldMapping("country", "Country__c", FieldType.PICKLIST),
        FieldMapping("tier", "Tier__c", FieldType.PICKLIST),
        FieldMapping("annual_revenue", "Annual_Revenue__c", FieldType.DECIMAL, scale=2),
        FieldMapping("employees", "Employees__c", FieldType.INTEGER),
        FieldMapping("is_active", "Is_Active__c", FieldType.BOOLEAN),
        FieldMapping("signup_date", "Signup_Date__c", FieldType.DATE),
        FieldMapping("last_activity_at", "Last_Activity__c", FieldType.DATETIME),
        FieldMapping("notes", "Notes__c", FieldType.TEXTAREA, length=255),
    ],
)

CHANGED_EVERY = 100  # 1% of target records differ from the source in one field
MISSING_EVERY = 200  # 0.5% of source rows are not in the target

_NAMES = ["Zoë Adams", "Łukasz Nowak", "株式会社 Sato", "Ñandú Ltd", "Acme Corp", "Jane Doe", "O'Brien & Co"]
_COUNTRIES = ["US", "DE", "FR", "JP", "PL", "AR", "GB", "IN"]
_TIERS = ["Bronze", "Silver", "Gold", "Platinum"]
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_FIRST_DAY = date(2020, 1, 1)


def source_row(i: int) -> dict[str, Any]:
    """Return source row i, typed as the BigQuery hook yields it."""
    row = {
        "account_id": f"ACC-{i:08d}",
        "name": f"{_NAMES[i % len(_NAMES)]} {i}",
        "email": None if i % 11 == 0 else f"user{i}@example.com",
        "country": _COUNTRIES[i % len(_COUNTRIES)],
        "tier": _TIERS[i % len(_TIERS)],
        "annual_revenue": None if i % 13 == 0 else Decimal(i * 37 % 10_000_000) / 100,
        "employees": None if i % 17 == 0 else i % 5000,
        "is_active": i % 3 != 0,
        "signup_date": _FIRST_DAY + timedelta(days=i % 2000),
        "last_activity_at": None if i % 19 == 0 else _EPOCH + timedelta(seconds=i * 7919 % 150_000_000),
        "notes": f"Customer note {i} — priorité",
    }
    if i % 23 == 0:
        row["notes"] = ""
    elif i % 29 == 0:
        row["notes"] = None
    return row


def _revenue_text(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = format(value, "f")
    # Bulk API 2.0 query CSV writes numbers without trailing zeros: 1200.5, not 1200.50.
    return text.rstrip("0").rstrip(".") if "." in text else text


def target_record(i: int) -> dict[str, str]:
    """Return the target record matching source row i, as Bulk API 2.0 query CSV text."""
    row = source_row(i)
    moment = row["last_activity_at"]
    record = {
        "External_Id__c": row["account_id"],
        "Name": row["name"],
        "Email__c": row["email"] or "",
        "Country__c": row["country"],
        "Tier__c": row["tier"],
        "Annual_Revenue__c": _revenue_text(row["annual_revenue"]),
        "Employees__c": "" if row["employees"] is None else str(row["employees"]),
        "Is_Active__c": "true" if row["is_active"] else "false",
        "Signup_Date__c": row["signup_date"].isoformat(),
        "Last_Activity__c": "" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "Notes__c": row["notes"] or "",
    }
    if i % CHANGED_EVERY == 1:
        field = MAPPING.fields[(i // CHANGED_EVERY) % len(MAPPING.fields)].target
        record[field] = {"Is_Active__c": "false" if record[field] == "true" else "true",
                         "Signup_Date__c": "1999-12-31",
                         "Last_Activity__c": "1999-12-31T00:00:00.000Z",
                         "Annual_Revenue__c": "0.01",
                         "Employees__c": "999999"}.get(field, "changed")
    return record


def source_rows(rows: int) -> Iterator[dict[str, Any]]:
    return (source_row(i) for i in range(rows))


def target_records(rows: int) -> Iterator[dict[str, str]]:
    return (target_record(i) for i in range(rows) if i % MISSING_EVERY != 2)


def expected_counts(rows: int) -> dict[str, int]:
    missing = sum(1 for i in range(rows) if i % MISSING_EVERY == 2)
    changed = sum(1 for i in range(rows) if i % CHANGED_EVERY == 1 and i % MISSING_EVERY != 2)
    return {"create": missing, "update": changed, "orphans": 0}


# Contenders ---------------------------------------------------------------------------------------


Contender = Callable[[Iterable[dict[str, Any]], Iterable[dict[str, str]]], dict[str, int]]


def run_engine(source: Iterable[dict[str, Any]], target: Iterable[dict[str, str]]) -> dict[str, int]:
    plan = plan_changes(source, target, MAPPING)
    return {"create": len(plan.creates), "update": len(plan.updates), "orphans": len(plan.orphans)}


def run_pandas(source_rows: Iterable[dict[str, Any]], target_records: Iterable[dict[str, str]]) -> dict[str, int]:
    """Diff the way a pandas user would: frames, vectorised normalisation, an outer merge."""
    import pandas as pd

    source = pd.DataFrame.from_records(source_rows)
    target = pd.DataFrame.from_records(target_records)
    key = MAPPING.key
    if source[key.source].duplicated().any() or target[key.target].duplicated().any():
        raise ValueError("duplicate keys")

    left = pd.DataFrame({"key": source[key.source]})
    right = pd.DataFrame({"key": target[key.target]})
    for mapped in MAPPING.fields:
        left[mapped.target] = _pandas_source(source[mapped.source], mapped)
        right[mapped.target] = _pandas_target(target[mapped.target], mapped)
    del source, target

    merged = left.merge(right, on="key", how="outer", suffixes=("_s", "_t"), indicator=True)
    creates = merged.loc[merged["_merge"] == "left_only"]
    orphans = merged.loc[merged["_merge"] == "right_only", "key"]
    both = merged.loc[merged["_merge"] == "both"]
    changed = pd.DataFrame(index=both.index)
    for mapped in MAPPING.fields:
        new, old = both[mapped.target + "_s"], both[mapped.target + "_t"]
        # A comparison with a missing value yields NA in nullable dtypes; NA is "not equal" here.
        equal = (new == old).fillna(False).astype(bool)
        changed[mapped.target] = ~(equal | (new.isna() & old.isna()))
    any_changed = changed.any(axis=1)
    updates = []
    for index in changed.index[any_changed]:
        fields = [name for name in changed.columns if changed.at[index, name]]
        updates.append({"key": both.at[index, "key"], **{name: both.at[index, name + "_s"] for name in fields}})
    return {"create": len(creates), "update": len(updates), "orphans": len(orphans)}


def _pandas_source(column: Any, mapped: FieldMapping) -> Any:
    import pandas as pd

    kind = mapped.type
    if kind is FieldType.DECIMAL:
        return pd.to_numeric(column.astype("float64")).round(mapped.scale or 0)
    if kind is FieldType.INTEGER:
        return column.astype("Int64")
    if kind is FieldType.BOOLEAN:
        return column.fillna(False).astype(bool)
    if kind is FieldType.DATE:
        return pd.to_datetime(column)
    if kind is FieldType.DATETIME:
        return pd.to_datetime(column, utc=True).dt.floor("s")
    return column.replace("", None).str.normalize("NFC")


def _pandas_target(column: Any, mapped: FieldMapping) -> Any:
    import pandas as pd

    kind = mapped.type
    if kind is FieldType.DECIMAL:
        return pd.to_numeric(column.replace("", None)).round(mapped.scale or 0)
    if kind is FieldType.INTEGER:
        return pd.to_numeric(column.replace("", None)).astype("Int64")
    if kind is FieldType.BOOLEAN:
        return column == "true"
    if kind is FieldType.DATE:
        return pd.to_datetime(column.replace("", None), format="%Y-%m-%d")
    if kind is FieldType.DATETIME:
        return pd.to_datetime(column.replace("", None), utc=True, format="ISO8601").dt.floor("s")
    return column.replace("", None).str.normalize("NFC")


# Measurement --------------------------------------------------------------------------------------


def time_run(
    run: Contender, source: list[dict[str, Any]], target: list[dict[str, str]], repeats: int
) -> tuple[float, dict[str, int]]:
    seconds = []
    counts: dict[str, int] = {}
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        counts = run(iter(source), iter(target))
        seconds.append(time.process_time() - start)
    return statistics.median(seconds), counts


def peak_memory(run: Contender, rows: int) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    run(source_rows(rows), target_records(rows))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="source rows, and about as many target records")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender; the median is reported")
    parser.add_argument("--no-pandas", action="store_true", help="measure the engine alone")
    args = parser.parse_args(argv)

    expected = expected_counts(args.rows)
    print(f"# reconcile diff: {args.rows:,} source rows, 10 fields, 1% changed, 0.5% missing")
    print(f"# Python {platform.python_version()} on {platform.machine()}, {args.repeats} repeats, median CPU time")

    if not args.no_pandas:
        import pandas  # noqa: F401  # imported before the clock starts, as a long-running worker has it

    source, target = list(source_rows(args.rows)), list(target_records(args.rows))
    engine_time, engine_counts = time_run(run_engine, source, target, args.repeats)
    if engine_counts != expected:
        raise SystemExit(f"engine plan {engine_counts} differs from the expected {expected}")
    results = [("reconcile engine", engine_time, engine_counts)]
    if not args.no_pandas:
        pandas_time, pandas_counts = time_run(run_pandas, source, target, args.repeats)
        if pandas_counts != expected:
            raise SystemExit(f"pandas plan {pandas_counts} differs from the expected {expected}")
        results.append(("pandas merge", pandas_time, pandas_counts))
    del source, target

    print()
    print("| contender | CPU time (s) | source rows/s | peak memory (MiB) | creates | updates |")
    print("|---|---:|---:|---:|---:|---:|")
    memories = []
    for name, seconds, counts in results:
        run = run_engine if name == "reconcile engine" else run_pandas
        memories.append(peak_memory(run, args.rows))
        print(
            f"| {name} | {seconds:.2f} | {args.rows / seconds:,.0f} | {memories[-1] / 2**20:.0f} | "
            f"{counts['create']:,} | {counts['update']:,} |"
        )
    if len(results) == 2:
        print()
        print(f"speed-up, engine over pandas: {results[1][1] / results[0][1]:.2f}x")
        print(f"peak memory, engine / pandas: {memories[0] / memories[1]:.2f}")

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
