"""The Salesforce API call benchmark at a small size: the provider's request counts and a fair comparison.

`benchmarks/bench_salesforce_calls.py` runs as it does from the command line, against the sandbox emulator over
HTTPS, with page sizes scaled down so that 20,000 records take as many result sets as 1,000,000
records do with the real page sizes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARK_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_salesforce_calls.py"

RECORDS = 20_000
UPDATES = 100
CREATES = 100
# 20,000 / 2,000 gives 10 Bulk API 2.0 result sets, as 1,000,000 / 100,000 does with the hook's size.
QUERY_PAGE_SIZE = 2_000
# The smallest REST page Salesforce accepts, so the naive pattern reads 100 pages.
REST_PAGE_SIZE = 200
# Below the 200 changes, so the provider writes through a Bulk API 2.0 job as it does at full size.
BULK_THRESHOLD = 50


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_salesforce_calls", BENCHMARK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    return _load_benchmark()


@pytest.fixture(scope="module")
def measurement(benchmark: ModuleType) -> Any:
    scenario = benchmark.Scenario(records=RECORDS, updates=UPDATES, creates=CREATES)
    return benchmark.measure(
        scenario,
        query_page_size=QUERY_PAGE_SIZE,
        bulk_threshold=BULK_THRESHOLD,
        rest_page_size=REST_PAGE_SIZE,
    )


def test_provider_requests_by_route(measurement: Any) -> None:
    calls = measurement.provider.calls
    assert calls["bulk_query_create"] == 1
    assert calls["bulk_query_results"] == RECORDS // QUERY_PAGE_SIZE
    assert calls["bulk_ingest_create"] == 1
    assert calls["bulk_ingest_upload"] == 1
    assert calls["bulk_ingest_state"] == 1
    # successful results, failed results and unprocessed records
    assert calls["bulk_ingest_results"] == 1  # no failed or unprocessed records to read
    assert calls["bulk_query_status"] >= 1
    assert calls["bulk_ingest_status"] >= 1
    assert calls["token"] == 1
    assert measurement.provider.other == 0


def test_naive_requests_by_route(measurement: Any) -> None:
    calls = measurement.naive.calls
    assert calls["query"] == 1
    assert calls["query_more"] == RECORDS // REST_PAGE_SIZE - 1
    assert calls["collection_upsert"] == (UPDATES + CREATES) // 200
    assert calls["token"] == 1
    assert measurement.naive.other == 0


def test_provider_far_below_naive(benchmark: ModuleType, measurement: Any) -> None:
    provider, naive = measurement.provider, measurement.naive
    assert provider.total * 4 < naive.total, (provider.calls, naive.calls)
    assert provider.total - provider.polls <= benchmark.API_CALL_BUDGET


def test_contenders_reach_same_state(benchmark: ModuleType, measurement: Any) -> None:
    assert measurement.state_differences() == []
    assert benchmark.check(measurement) == []
    assert len(measurement.provider.final_state) == RECORDS + CREATES


def test_check_reports_unequal_states(benchmark: ModuleType, measurement: Any) -> None:
    key = next(iter(sorted(measurement.scenario.updated_keys())))
    altered = dict(measurement.naive.final_state)
    altered[key] = measurement.initial_state[key]
    tampered = benchmark.Measurement(
        measurement.scenario,
        measurement.provider,
        benchmark.ContenderResult("naive", measurement.naive.calls, CREATES, UPDATES, 0.0, altered),
        measurement.seed_seconds,
        measurement.initial_state,
    )
    problems = benchmark.check(tampered)
    assert any("final states differ in 1 records" in problem for problem in problems), problems
