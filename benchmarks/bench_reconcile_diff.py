"""Benchmark the reconcile diff against a pandas merge, on dict rows and on Arrow tables.

Diff: N source rows against N target records with 10 mapped fields, 1% of the target changed in one
field and 0.5% of the source missing from the target. Each contender produces the same plan: keys to
create, changed fields per key to update, orphan keys. The same generators feed two comparisons.

Dict rows (`--input rows`): `plan_changes` against `run_pandas`. Both receive the same iterators:
typed source rows (as the BigQuery hook yields them) and text records (as a Bulk API 2.0 query CSV
reader yields them). Both read the same rows from lists built before the clock starts, so the time
is the diff's alone. For memory, both read rows generated while they are read, as rows stream from
the BigQuery client and a Bulk API 2.0 CSV reader, so the peak shows what each contender keeps.

Arrow tables (`--input arrow`): `plan_changes_arrow` against `run_pandas_arrow`, which converts the
tables with `Table.to_pandas()` and then runs the same normalisation and merge as `run_pandas`. The
source table has the Arrow types a BigQuery read returns (NUMERIC as decimal128(38, 9), DATE as
date32, TIMESTAMP as timestamp("us", tz="UTC")). The target table has string columns with an empty
string for null, as pyarrow.csv reads a Bulk API 2.0 query CSV page with every column typed string
and strings_can_be_null=False. Both tables are built, 100,000 rows at a time, before the clock
starts and before memory is measured, and neither is counted.

Time is the median CPU time of this process (time.process_time) over the repeats. It is steadier
than wall time on a machine shared with other work, and it counts every thread, so a contender that
used several cores is not flattered.

Peak memory of dict rows is measured in a separate run under tracemalloc, which slows the code down
and so is never timed. It is the highest traced allocation above what was allocated before the run.
numpy and pandas report their buffers to tracemalloc.

Peak memory of Arrow tables is the growth of the resident set size, because pyarrow allocates
outside Python's allocator and tracemalloc does not trace it. Each contender runs once in a fresh
Python process (this script with a hidden flag) that imports pandas and pyarrow, builds both
tables, releases freed memory of its allocators to the operating system, and resets the kernel's
resident high-water mark. The figure is that high-water mark after the run (VmHWM in /proc/self/status, the counter
behind getrusage's ru_maxrss) less the resident size before the run. ru_maxrss itself is not read
because a child process starts with its parent's peak, which would hide the run's. This needs
Linux 4.0 or later.

Salesforce API calls per reconciliation are measured by benchmarks/bench_salesforce_calls.py.

Run: .venv/bin/python benchmarks/bench_reconcile_diff.py [--rows 1000000] [--repeats 3] [--input both]
Needs pandas for the baseline and pyarrow for the Arrow tables (`pip install pandas pyarrow`).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

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


TABLE_BATCH_ROWS = 100_000  # rows per Table.from_pylist call, so the whole list of dicts never exists at once


def source_schema() -> pa.Schema:
    """Return the Arrow schema a BigQuery read (REST or Storage API) gives the source columns."""
    import pyarrow as pa

    text = pa.string()
    return pa.schema(
        [
            ("account_id", text),
            ("name", text),
            ("email", text),
            ("country", text),
            ("tier", text),
            ("annual_revenue", pa.decimal128(38, 9)),  # BigQuery NUMERIC
            ("employees", pa.int64()),
            ("is_active", pa.bool_()),
            ("signup_date", pa.date32()),
            ("last_activity_at", pa.timestamp("us", tz="UTC")),  # BigQuery TIMESTAMP
            ("notes", text),
        ]
    )


def target_schema() -> pa.Schema:
    """Return the schema pyarrow.csv reads a Bulk API 2.0 query CSV page with, every column a string."""
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in target_record(0)])


def source_table(rows: int) -> pa.Table:
    """Return source rows 0 to rows - 1 as one table, typed as a BigQuery read returns them."""
    return _table_in_batches(source_schema(), rows, lambda start, stop: [source_row(i) for i in range(start, stop)])


def target_table(rows: int) -> pa.Table:
    """Return the target records as one table of strings, with an empty string for null."""
    return _table_in_batches(
        target_schema(),
        rows,
        lambda start, stop: [target_record(i) for i in range(start, stop) if i % MISSING_EVERY != 2],
    )


def _table_in_batches(
    schema: pa.Schema, rows: int, build_batch: Callable[[int, int], list[dict[str, Any]]]
) -> pa.Table:
    import pyarrow as pa

    tables = [
        pa.Table.from_pylist(build_batch(start, min(start + TABLE_BATCH_ROWS, rows)), schema=schema)
        for start in range(0, rows, TABLE_BATCH_ROWS)
    ]
    # concat_tables keeps each batch as a chunk instead of copying, as a BigQuery read returns
    # one chunk per page or stream.
    return pa.concat_tables(tables) if tables else schema.empty_table()


def expected_counts(rows: int) -> dict[str, int]:
    missing = sum(1 for i in range(rows) if i % MISSING_EVERY == 2)
    changed = sum(1 for i in range(rows) if i % CHANGED_EVERY == 1 and i % MISSING_EVERY != 2)
    return {"create": missing, "update": changed, "orphans": 0}


# Contenders ---------------------------------------------------------------------------------------


Contender = Callable[[Iterable[dict[str, Any]], Iterable[dict[str, str]]], dict[str, int]]


def run_engine(source: Iterable[dict[str, Any]], target: Iterable[dict[str, str]]) -> dict[str, int]:
    plan = plan_changes(source, target, MAPPING)
    return {"create": len(plan.creates), "update": len(plan.updates), "orphans": len(plan.orphans)}


def run_engine_arrow(source: pa.Table, target: pa.Table) -> dict[str, int]:
    from airflow_provider_m2m.reconcile.arrow import plan_changes_arrow

    plan = plan_changes_arrow(source, target, MAPPING)
    return {"create": len(plan.creates), "update": len(plan.updates), "orphans": len(plan.orphans)}


def run_pandas(source_rows: Iterable[dict[str, Any]], target_records: Iterable[dict[str, str]]) -> dict[str, int]:
    """Diff the way a pandas user would: frames, vectorised normalisation, an outer merge."""
    import pandas as pd

    left, right = _normalise_frames(pd.DataFrame.from_records(source_rows), pd.DataFrame.from_records(target_records))
    return _merge_and_count(left, right)


def run_pandas_arrow(source: pa.Table, target: pa.Table) -> dict[str, int]:
    """Diff Arrow tables the way a pandas user would: convert each with to_pandas, then as run_pandas does.

    google-cloud-bigquery's `to_dataframe()` (3.47) calls `to_pandas()` too, but passes a types_mapper
    for nullable dtypes (Int64, boolean, dbdate) that the default conversion here does not use.
    """
    left, right = _normalise_frames(source.to_pandas(), target.to_pandas())
    return _merge_and_count(left, right)


def _normalise_frames(source: pd.DataFrame, target: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the key and the normalised mapped fields of each side, raising on a repeated key."""
    import pandas as pd

    key = MAPPING.key
    if source[key.source].duplicated().any() or target[key.target].duplicated().any():
        raise ValueError("duplicate keys")

    left = pd.DataFrame({"key": source[key.source]})
    right = pd.DataFrame({"key": target[key.target]})
    for mapped in MAPPING.fields:
        left[mapped.target] = _pandas_source(source[mapped.source], mapped)
        right[mapped.target] = _pandas_target(target[mapped.target], mapped)
    return left, right


def _merge_and_count(left: pd.DataFrame, right: pd.DataFrame) -> dict[str, int]:
    import pandas as pd

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


TableContender = Callable[["pa.Table", "pa.Table"], dict[str, int]]
TABLE_CONTENDERS: dict[str, TableContender] = {"engine": run_engine_arrow, "pandas": run_pandas_arrow}


def time_table_run(run: TableContender, source: pa.Table, target: pa.Table, repeats: int) -> tuple[float, dict[str, int]]:
    seconds = []
    counts: dict[str, int] = {}
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        counts = run(source, target)
        seconds.append(time.process_time() - start)
    return statistics.median(seconds), counts


def measure_table_peak(contender: str, rows: int) -> dict[str, int]:
    """Build the tables in this process, run one contender once, and return its resident growth in KiB and its counts.

    Call it only in a fresh process (see `table_peak_in_child`), because other work would leave
    memory behind that the contender could reuse without growing the resident set.
    """
    import pandas  # noqa: F401  # imported by both contenders' processes, so the baseline is the same
    import pyarrow

    import airflow_provider_m2m.reconcile.arrow  # noqa: F401

    source, target = source_table(rows), target_table(rows)
    _release_free_memory(pyarrow)
    _reset_peak_resident()
    before = _process_status_kib("VmRSS")
    start = time.process_time()
    counts = TABLE_CONTENDERS[contender](source, target)
    seconds = time.process_time() - start
    peak = _process_status_kib("VmHWM")
    return {"growth_kib": peak - before, "before_kib": before, "first_run_ms": round(seconds * 1000), **counts}


def table_peak_in_child(contender: str, rows: int) -> dict[str, int]:
    child = subprocess.run(
        [sys.executable, __file__, "--table-peak-child", contender, "--rows", str(rows)],
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise SystemExit(f"memory run of {contender} failed with exit status {child.returncode}:\n{child.stderr}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def _release_free_memory(pyarrow: Any) -> None:
    # Return what building the tables freed, so the contender's allocations grow the resident set
    # instead of reusing pages that the measurement would not see.
    gc.collect()
    pyarrow.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc only
    except (AttributeError, OSError):
        pass


def _reset_peak_resident() -> None:
    # Linux 4.0+ (proc(5), /proc/pid/clear_refs): writing 5 sets the resident high-water mark
    # (VmHWM) to the current resident set size.
    Path("/proc/self/clear_refs").write_text("5")


def _process_status_kib(field: str) -> int:
    """Return a size in KiB from /proc/self/status: VmRSS (now) or VmHWM (peak since the reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise RuntimeError(
        f"/proc/self/status has no {field} line. Peak memory of Arrow tables needs Linux 4.0 or later,"
        " so use --input rows elsewhere."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="source rows, and about as many target records")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender; the median is reported")
    parser.add_argument("--no-pandas", action="store_true", help="measure the engine alone")
    parser.add_argument(
        "--input",
        choices=["both", "rows", "arrow"],
        default="both",
        help="rows: dict rows into plan_changes; arrow: Arrow tables into plan_changes_arrow; both: one, then the other",
    )
    parser.add_argument("--table-peak-child", choices=sorted(TABLE_CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.table_peak_child:
        print(json.dumps(measure_table_peak(args.table_peak_child, args.rows)))
        return 0

    expected = expected_counts(args.rows)
    print(f"# reconcile diff: {args.rows:,} source rows, 10 fields, 1% changed, 0.5% missing")
    print(f"# Python {platform.python_version()} on {platform.machine()}, {args.repeats} repeats, median CPU time")

    if not args.no_pandas:
        import pandas  # noqa: F401  # imported before the clock starts, as a long-running worker has it

    if args.input in ("both", "rows"):
        compare_rows(args.rows, args.repeats, not args.no_pandas, expected)
    if args.input in ("both", "arrow"):
        compare_tables(args.rows, args.repeats, not args.no_pandas, expected)
    return 0


def compare_rows(rows: int, repeats: int, with_pandas: bool, expected: dict[str, int]) -> None:
    """Time and measure `plan_changes` and `run_pandas` on dict rows, and print their table."""
    source, target = list(source_rows(rows)), list(target_records(rows))
    engine_time, engine_counts = time_run(run_engine, source, target, repeats)
    if engine_counts != expected:
        raise SystemExit(f"engine plan {engine_counts} differs from the expected {expected}")
    results = [("reconcile engine", engine_time, engine_counts)]
    if with_pandas:
        pandas_time, pandas_counts = time_run(run_pandas, source, target, repeats)
        if pandas_counts != expected:
            raise SystemExit(f"pandas plan {pandas_counts} differs from the expected {expected}")
        results.append(("pandas merge", pandas_time, pandas_counts))
    del source, target

    print()
    print("## dict rows: plan_changes against pandas DataFrame.from_records")
    print("# peak memory: highest tracemalloc-traced allocation during one run on streamed rows")
    print()
    print("| contender | CPU time (s) | source rows/s | peak memory (MiB) | creates | updates |")
    print("|---|---:|---:|---:|---:|---:|")
    memories = []
    for name, seconds, counts in results:
        run = run_engine if name == "reconcile engine" else run_pandas
        memories.append(peak_memory(run, rows))
        print(
            f"| {name} | {seconds:.2f} | {rows / seconds:,.0f} | {memories[-1] / 2**20:.0f} | "
            f"{counts['create']:,} | {counts['update']:,} |"
        )
    if len(results) == 2:
        print()
        print(f"speed-up, engine over pandas: {results[1][1] / results[0][1]:.2f}x")
        print(f"peak memory, engine / pandas: {memories[0] / memories[1]:.2f}")


def compare_tables(rows: int, repeats: int, with_pandas: bool, expected: dict[str, int]) -> None:
    """Time and measure `plan_changes_arrow` and `run_pandas_arrow` on Arrow tables, and print their table."""
    from airflow_provider_m2m.reconcile.arrow import plan_changes_arrow  # noqa: F401  # fail before the work

    names = {"engine": "plan_changes_arrow", "pandas": "pandas merge after to_pandas"}
    contenders = ["engine", "pandas"] if with_pandas else ["engine"]
    source, target = source_table(rows), target_table(rows)
    results = []
    for contender in contenders:
        seconds, counts = time_table_run(TABLE_CONTENDERS[contender], source, target, repeats)
        if counts != expected:
            raise SystemExit(f"{names[contender]} plan {counts} differs from the expected {expected}")
        results.append((contender, seconds, counts))
    del source, target

    print()
    print("## Arrow tables: plan_changes_arrow against pandas Table.to_pandas")
    print(
        "# peak memory: resident high-water mark during one run in a fresh process, less the resident size"
        " before the run. The tables are built before the run and not counted."
    )
    print()
    print(
        "# first run: CPU time of that one run, in a process whose memory pools are still cold, as a task's"
        " worker runs it once"
    )
    print()
    print("| contender | CPU time (s) | first run (s) | source rows/s | peak memory (MiB) | creates | updates |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    memories = []
    first_runs = []
    for contender, seconds, counts in results:
        peak = table_peak_in_child(contender, rows)
        peak_counts = {name: peak[name] for name in expected}
        if peak_counts != expected:
            raise SystemExit(f"{names[contender]} plan {peak_counts} in the memory run differs from the expected {expected}")
        memories.append(peak["growth_kib"])
        first_runs.append(peak["first_run_ms"] / 1000)
        print(
            f"| {names[contender]} | {seconds:.2f} | {first_runs[-1]:.2f} | {rows / seconds:,.0f} | "
            f"{memories[-1] / 1024:.0f} | {counts['create']:,} | {counts['update']:,} |"
        )
    if len(results) == 2:
        print()
        print(f"speed-up, plan_changes_arrow over pandas: {results[1][1] / results[0][1]:.2f}x")
        print(f"speed-up on the first run: {first_runs[1] / first_runs[0]:.2f}x")
        print(f"peak memory, plan_changes_arrow / pandas: {memories[0] / memories[1]:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
