"""Measure how the reconcile diff grows with the table size, to find the limit of one worker.

Both engines get the rows of bench_reconcile_diff.py: N source rows with 10 fields, and about N
target records, 1% changed and 0.5% missing. Each size runs in a fresh Python process, so that one
size's memory does not hide the next one's. Time is CPU time (time.process_time).

Dict rows (`--engine rows`): the process streams the rows into `plan_changes`, as the operator did
before it read Arrow tables. It first streams the same rows without diffing them. The difference
between the two runs is the diff's own cost, and the first run is the baseline. Memory is the
process's peak resident set size (ru_maxrss) less the one before the run.

Arrow tables (`--engine arrow`): the process builds the source and target tables with
`source_table` and `target_table` of bench_reconcile_diff.py, as a worker holds them after
`BigQueryM2MHook.query_arrow` and `SalesforceM2MHook.bulk_query_arrow`, then runs
`plan_changes_arrow` on them twice. A 1,000-row run before the tables are built pages in the
Arrow code. The first timed run starts after the allocators have returned freed memory to the
operating system, as in a worker that plans once per task, and the second reuses what the first
freed. Memory is read from /proc/self/status with bench_reconcile_diff.py's method (Linux 4.0 or
later). The tables are the resident growth while building them, after the allocators return what
building freed. The diff's peak is the resident high-water mark (VmHWM, reset through
/proc/self/clear_refs) during the first run less the resident size before it.

Run: .venv/bin/python benchmarks/bench_reconcile_scale.py [--sizes 1000000,2000000,4000000] [--engine both]
Arrow tables need pyarrow.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import resource
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))
sys.path.insert(0, str(BENCHMARKS))

ARROW_LOGGER = "airflow_provider_m2m.reconcile.arrow"
WARM_UP_ROWS = 1_000


def measure(rows: int) -> dict[str, float]:
    """Stream `rows` rows through the diff in this process and return its costs."""
    from bench_reconcile_diff import MAPPING, expected_counts, source_rows, target_records

    from airflow_provider_m2m.reconcile import plan_changes

    resident_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    deque(source_rows(rows), maxlen=0)
    deque(target_records(rows), maxlen=0)
    generate = time.process_time() - start

    start = time.process_time()
    plan = plan_changes(source_rows(rows), target_records(rows), MAPPING)
    total = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    counts = {"create": len(plan.creates), "update": len(plan.updates), "orphans": len(plan.orphans)}
    if counts != expected_counts(rows):
        raise SystemExit(f"plan {counts} differs from the expected {expected_counts(rows)}")
    return {
        "rows": rows,
        "generate_s": generate,
        "diff_s": total - generate,
        "peak_mib": (peak - resident_before) / 1024,
    }


class _SplitRecorder(logging.Handler):
    """Log handler that stores how many rows plan_changes_arrow compared one by one, read from its summary line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.one_by_one: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Compared"):
            # "Compared %d source rows with %d target records: %d equal as text, %d compared one by one"
            self.one_by_one = record.args[3]
        elif record.msg.startswith("Comparing all"):
            self.one_by_one = record.args[0]


def measure_arrow(rows: int) -> dict[str, float]:
    """Build the tables of `rows` source rows in this process, diff them twice, and return the costs.

    Call it only in a fresh process, because memory that other work freed would let the tables
    and the diff grow without growing the resident set.
    """
    import pyarrow
    from bench_reconcile_diff import (
        MAPPING,
        _process_status_kib,
        _release_free_memory,
        _reset_peak_resident,
        expected_counts,
        source_table,
        target_table,
    )

    from airflow_provider_m2m.reconcile.arrow import plan_changes_arrow

    expected = expected_counts(rows)
    recorder = _SplitRecorder()
    arrow_log = logging.getLogger(ARROW_LOGGER)
    arrow_log.addHandler(recorder)
    arrow_log.setLevel(logging.INFO)
    arrow_log.propagate = False

    # A small run first pages in the Arrow libraries' code and sets up the allocator, which a
    # long-running worker has done before its first large task. It grew the resident set by about
    # 60 MiB with pyarrow 26.0.1 whatever the size, so the tables and the diff are measured after it.
    plan_changes_arrow(source_table(WARM_UP_ROWS), target_table(WARM_UP_ROWS), MAPPING)
    recorder.one_by_one = None
    _release_free_memory(pyarrow)
    before_tables = _process_status_kib("VmRSS")
    source, target = source_table(rows), target_table(rows)
    _release_free_memory(pyarrow)
    tables_kib = _process_status_kib("VmRSS") - before_tables

    seconds = []
    peak_kib = 0
    for run in range(2):
        gc.collect()
        _reset_peak_resident()
        before = _process_status_kib("VmRSS")
        start = time.process_time()
        plan = plan_changes_arrow(source, target, MAPPING)
        seconds.append(time.process_time() - start)
        if run == 0:
            peak_kib = _process_status_kib("VmHWM") - before
        counts = {"create": len(plan.creates), "update": len(plan.updates), "orphans": len(plan.orphans)}
        if counts != expected:
            raise SystemExit(f"plan_changes_arrow plan {counts} on run {run + 1} differs from the expected {expected}")
        del plan

    return {
        "rows": rows,
        "target_records": target.num_rows,
        "before_tables_mib": before_tables / 1024,
        "tables_nbytes_mib": (source.nbytes + target.nbytes) / 2**20,
        "tables_mib": tables_kib / 1024,
        "first_s": seconds[0],
        "second_s": seconds[1],
        "peak_mib": peak_kib / 1024,
        "one_by_one": recorder.one_by_one,
    }


def run_in_child(engine: str, rows: int) -> dict[str, float]:
    # A fresh process per size, so that one size's peak does not hide the next one's.
    child = subprocess.run(
        [sys.executable, __file__, "--engine", engine, "--child", str(rows)], capture_output=True, text=True
    )
    if child.returncode != 0:
        raise SystemExit(f"{engine} run of {rows:,} rows failed with exit status {child.returncode}:\n{child.stderr}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000000,2000000,4000000", help="comma-separated source row counts, one process each"
    )
    parser.add_argument(
        "--engine",
        choices=["both", "rows", "arrow"],
        default="both",
        help="rows: dict rows into plan_changes; arrow: Arrow tables into plan_changes_arrow; both: one, then the other",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        if args.engine == "both":
            parser.error("a child process measures one engine: --engine rows or --engine arrow")
        if args.engine == "rows":
            logging.disable(logging.INFO)
            print(json.dumps(measure(args.child)))
        else:
            print(json.dumps(measure_arrow(args.child)))
        return 0

    sizes = [int(size) for size in args.sizes.split(",")]
    print("# reconcile diff by table size: 10 fields, 1% changed, 0.5% missing; one process per size")
    print(f"# Python {platform.python_version()} on {platform.machine()}, CPU time")
    if args.engine in ("both", "rows"):
        print_rows_table(sizes)
    if args.engine in ("both", "arrow"):
        print_arrow_table(sizes)
    return 0


def print_rows_table(sizes: list[int]) -> None:
    print()
    print("## dict rows streamed into plan_changes")
    print("# peak memory: peak resident set size (ru_maxrss) less the one before the run")
    print()
    print("| source rows | streaming alone (s) | diff (s) | diff µs per row | peak memory (MiB) | bytes per target record |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        result = run_in_child("rows", rows)
        per_row = result["diff_s"] / rows * 1e6
        per_record = result["peak_mib"] * 2**20 / rows
        print(
            f"| {rows:,} | {result['generate_s']:.1f} | {result['diff_s']:.1f} | {per_row:.2f} | "
            f"{result['peak_mib']:,.0f} | {per_record:,.0f} |"
        )


def print_arrow_table(sizes: list[int]) -> None:
    import pyarrow

    print()
    print(f"## Arrow tables into plan_changes_arrow (pyarrow {pyarrow.__version__})")
    print(
        "# tables: Table.nbytes of both, and the resident growth while building them, which also holds what"
        " building them from Python dicts left in the heap"
    )
    print("# diff: CPU time of the first run (cold memory pool) and of the second")
    print("# diff peak: VmHWM during the first run less VmRSS before it")
    print("# bytes per target record: (tables' nbytes + diff peak) / target records, then with the tables' resident growth")
    print()
    print(
        "| source rows | target records | tables nbytes (MiB) | tables resident (MiB) | diff, 1st run (s) |"
        " diff, 2nd run (s) | 1st run µs per row | diff peak (MiB) | bytes per target record, nbytes / resident |"
        " rows compared one by one |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        result = run_in_child("arrow", rows)
        per_row = result["first_s"] / rows * 1e6
        records = result["target_records"]
        per_record_nbytes = (result["tables_nbytes_mib"] + result["peak_mib"]) * 2**20 / records
        per_record_resident = (result["tables_mib"] + result["peak_mib"]) * 2**20 / records
        one_by_one = "not logged" if result["one_by_one"] is None else f"{result['one_by_one']:,}"
        print(
            f"| {rows:,} | {result['target_records']:,} | {result['tables_nbytes_mib']:,.0f} | "
            f"{result['tables_mib']:,.0f} | {result['first_s']:.2f} | {result['second_s']:.2f} | {per_row:.2f} | "
            f"{result['peak_mib']:,.0f} | {per_record_nbytes:,.0f} / {per_record_resident:,.0f} | {one_by_one} |"
        )
    print()
    print(
        f"# resident size before building the tables (interpreter, imports and a {WARM_UP_ROWS:,}-row warm-up run):"
        f" {result['before_tables_mib']:,.0f} MiB"
    )


if __name__ == "__main__":
    raise SystemExit(main())
