"""Measure how the reconcile diff grows with the table size, to find the limit of one worker.

For each size, a fresh Python process streams N source rows and about N target records (the rows
of bench_reconcile_diff.py: 10 fields, 1% changed, 0.5% missing) into `plan_changes`, as the
operator does. The process first streams the same rows without diffing them. The difference
between the two runs is the diff's own cost, and the first run is the baseline.

Memory is the process's peak resident set size (ru_maxrss), which counts everything the worker
would need, less the resident size before the run. Time is CPU time.

Run: .venv/bin/python benchmarks/bench_reconcile_scale.py [--sizes 1000000,2000000,4000000]
"""

from __future__ import annotations

import argparse
import json
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


def run_in_child(rows: int) -> dict[str, float]:
    # A fresh process per size, so that one size's peak does not hide the next one's.
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(rows)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000000,2000000,4000000", help="comma-separated source row counts, one process each"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(measure(args.child)))
        return 0

    sizes = [int(size) for size in args.sizes.split(",")]
    print("# reconcile diff by table size: 10 fields, 1% changed, 0.5% missing; one process per size")
    print(f"# Python {platform.python_version()} on {platform.machine()}, CPU time, peak resident set size")
    print()
    print("| source rows | streaming alone (s) | diff (s) | diff µs per row | peak memory (MiB) | bytes per target record |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        result = run_in_child(rows)
        per_row = result["diff_s"] / rows * 1e6
        per_record = result["peak_mib"] * 2**20 / rows
        print(
            f"| {rows:,} | {result['generate_s']:.1f} | {result['diff_s']:.1f} | {per_row:.2f} | "
            f"{result['peak_mib']:,.0f} | {per_record:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
