"""Count the Salesforce API requests of one reconciliation, this provider against the naive REST pattern.

Both contenders reconcile the same source into fresh copies of the same target object in the
sandbox's Salesforce emulator, over HTTPS on 127.0.0.1, and the emulator counts every request it
receives by route (`SalesforceEmulator.api_calls`):

- provider: `SalesforceM2MHook.bulk_query` of the target (Bulk API 2.0 query, result sets of
  `BULK_QUERY_PAGE_SIZE` records), `plan_changes`, then `SalesforceM2MHook.upsert_records` (a Bulk API
  2.0 upsert job above `bulk_threshold`), as `BigQueryToSalesforceReconcileOperator` does it.
- naive: simple-salesforce `query_all` (REST query pages of 2,000 records, followed through
  nextRecordsUrl), the same `plan_changes`, then sObject Collections upserts of 200 records per
  request.

The target starts with N records. The source has the same records with `--updates` of them changed
in one field, plus `--creates` new keys, so each contender plans and writes the same changes.
Afterwards the benchmark checks that both contenders left the target in the same state (a hash of
each record's mapped fields, by external id) and that this state differs from the seed in exactly
the planned keys.

Status polls depend on how fast the emulator finishes a job, not on the protocol. The hook polls
at once, then after 0.5, 1, 2 s and so on, so a job that takes longer costs more polls. They are
counted within the read and write columns and shown on their own as well.

Run: .venv/bin/python benchmarks/bench_salesforce_calls.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_m2m.auth import clear_memory_cache  # noqa: E402
from airflow_provider_m2m.hooks.salesforce import (  # noqa: E402
    BULK_QUERY_PAGE_SIZE,
    COLLECTIONS_BATCH_SIZE,
    DEFAULT_BULK_THRESHOLD,
    POLL_FIRST_INTERVAL_SECONDS,
    POLL_MAX_INTERVAL_SECONDS,
    SalesforceM2MHook,
    json_value,
)
from airflow_provider_m2m.reconcile import FieldMapping, FieldType, Mapping, account, plan_changes  # noqa: E402
from airflow_provider_m2m.reconcile.plan import Plan  # noqa: E402

TARGET_OBJECT = "Customer_Account__c"
SALESFORCE_CONN_ID = "salesforce_m2m_default"
# The REST API's default and maximum query page size (REST API Developer Guide, "Query Options
# Header"). Salesforce may send smaller pages, so a real org needs at least as many requests.
REST_QUERY_PAGE_SIZE = 2_000
# Calls allowed to reconcile 1,000,000 target records with 10,000 changes.
API_CALL_BUDGET = 25
# A request may wait while the emulator holds its lock to select 1,000,000 records for a query.
HTTP_TIMEOUT_SECONDS = 600.0

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
SOQL = f"SELECT {', '.join(MAPPING.target_fields())} FROM {TARGET_OBJECT}"

_NAMES = ("Zoë Adams", "Łukasz Nowak", "株式会社 Sato", "Ñandú Ltd", "Acme Corp", "Jane Doe", "O'Brien & Co")
_COUNTRIES = ("US", "DE", "FR", "JP", "PL", "AR", "GB", "IN")  # all in the target's restricted picklist
_TIERS = ("Bronze", "Silver", "Gold", "Platinum")
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_FIRST_DAY = date(2020, 1, 1)


# Data ---------------------------------------------------------------------------------------------


def source_row(number: int) -> dict[str, Any]:
    """Return source row `number`, typed as the BigQuery hook yields it."""
    return {
        "account_id": f"ACC-{number:08d}",
        "name": f"{_NAMES[number % len(_NAMES)]} {number}",
        "email": None if number % 11 == 0 else f"user{number}@example.com",
        "country": _COUNTRIES[number % len(_COUNTRIES)],
        "tier": _TIERS[number % len(_TIERS)],
        "annual_revenue": None if number % 13 == 0 else Decimal(number * 37 % 10_000_000).scaleb(-2),
        "employees": None if number % 17 == 0 else number % 5000,
        "is_active": number % 3 != 0,
        "signup_date": _FIRST_DAY + timedelta(days=number % 2000),
        "last_activity_at": None if number % 19 == 0 else _EPOCH + timedelta(seconds=number * 7919 % 150_000_000),
        "notes": None if number % 29 == 0 else f"Customer note {number} — priorité",
    }


def changed_source_row(number: int) -> dict[str, Any]:
    """Return source row `number` with one field changed; the field rotates through the mapping."""
    row = source_row(number)
    column = MAPPING.fields[number % len(MAPPING.fields)].source
    replacements: dict[str, Any] = {
        "name": f"Renamed account {number}",
        "email": f"changed{number}@example.org",
        "country": "CH",
        "tier": "Platinum" if row["tier"] != "Platinum" else "Bronze",
        "annual_revenue": Decimal("12345.67"),
        "employees": 123_456,
        "is_active": not row["is_active"],
        "signup_date": date(1999, 12, 31),
        "last_activity_at": datetime(1999, 12, 31, 12, 0, tzinfo=UTC),
        "notes": None if row["notes"] is not None else "Note added in the source",
    }
    row[column] = replacements[column]
    return row


def seed_record(number: int) -> dict[str, Any]:
    """Return target record `number` as the seed inserts it: the unchanged source row, mapped."""
    row = source_row(number)
    return {mapped.target: row[mapped.source] for mapped in (MAPPING.key, *MAPPING.fields)}


@dataclass(frozen=True)
class Scenario:
    """The seeded target and the source that differs from it by `updates` changed and `creates` new rows."""

    records: int
    updates: int
    creates: int

    def __post_init__(self) -> None:
        if self.records < 1 or not 0 <= self.updates <= self.records or self.creates < 0:
            raise ValueError(
                f"invalid scenario: {self.records} records, {self.updates} updates, {self.creates} creates; "
                "records must be at least 1 and updates at most records"
            )

    def is_updated(self, number: int) -> bool:
        """Tell whether source row `number` differs from its target record; they are spread evenly over the keys."""
        if self.updates == 0:
            return False
        step = self.records // self.updates
        return number % step == 0 and number < step * self.updates

    def source_rows(self) -> Iterator[dict[str, Any]]:
        for number in range(self.records):
            yield changed_source_row(number) if self.is_updated(number) else source_row(number)
        for number in range(self.records, self.records + self.creates):
            yield source_row(number)

    def seed_records(self) -> Iterator[dict[str, Any]]:
        return (seed_record(number) for number in range(self.records))

    def updated_keys(self) -> set[str]:
        return {source_row(number)["account_id"] for number in range(self.records) if self.is_updated(number)}

    def created_keys(self) -> set[str]:
        return {source_row(number)["account_id"] for number in range(self.records, self.records + self.creates)}


# Contenders ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SalesforceAccess:
    """Connection details of one emulator: the hook's connection JSON and, for the naive client, its parts."""

    connection_json: str
    token_url: str
    consumer_key: str
    consumer_secret: str
    ca_bundle: str
    api_version: str


def run_provider(access: SalesforceAccess, scenario: Scenario, *, query_page_size: int, bulk_threshold: int) -> Plan:
    """Reconcile as the operator does: Bulk API 2.0 query, plan, `upsert_records`."""
    hook = SalesforceM2MHook(salesforce_m2m_conn_id=SALESFORCE_CONN_ID)
    target = hook.bulk_query(SOQL, page_size=query_page_size)
    plan = plan_changes(scenario.source_rows(), target, MAPPING)
    outcomes = hook.upsert_records(
        TARGET_OBJECT, MAPPING.key.target, list(plan.iter_writes()), bulk_threshold=bulk_threshold
    )
    account(plan, outcomes).check_totals()
    return plan


class _TimeoutSession(requests.Session):
    """A session that gives every request a timeout and the sandbox's CA bundle.

    simple-salesforce passes no timeout. The CA bundle goes with each request because requests
    lets REQUESTS_CA_BUNDLE override a session's `verify` attribute.
    """

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (10.0, HTTP_TIMEOUT_SECONDS))
        kwargs.setdefault("verify", self.ca_bundle)
        return super().request(method, url, *args, **kwargs)


def run_naive(access: SalesforceAccess, scenario: Scenario, *, rest_page_size: int, collection_size: int) -> Plan:
    """Reconcile with simple-salesforce: REST `query_all`, plan, sObject Collections upserts."""
    from simple_salesforce import Salesforce

    session = _TimeoutSession(access.ca_bundle)
    # simple-salesforce builds its login URL from a salesforce.com domain, so the token comes from
    # one client credentials grant posted by hand (client_id and client_secret in the body).
    response = session.post(
        access.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": access.consumer_key,
            "client_secret": access.consumer_secret,
        },
    )
    response.raise_for_status()
    token = response.json()
    client = Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version=access.api_version,
    )

    # Sforce-Query-Options sets the REST page size; without it Salesforce sends pages of 2,000.
    headers = {"Sforce-Query-Options": f"batchSize={rest_page_size}"}
    result = client.query_all(SOQL, headers=headers)
    target = ({name: value for name, value in record.items() if name != "attributes"} for record in result["records"])
    plan = plan_changes(scenario.source_rows(), target, MAPPING)

    writes = list(plan.iter_writes())
    path = f"composite/sobjects/{TARGET_OBJECT}/{MAPPING.key.target}"
    for start in range(0, len(writes), collection_size):
        chunk = writes[start : start + collection_size]
        body = {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": TARGET_OBJECT}, **{name: json_value(value) for name, value in record.items()}}
                for record in chunk
            ],
        }
        results = client.restful(path, method="PATCH", data=json.dumps(body))
        failed = [item for item in results if not item.get("success")]
        if failed:
            raise RuntimeError(f"sObject Collections upsert failed for {len(failed)} records: {failed[:3]}")
    return plan


# Measurement --------------------------------------------------------------------------------------

# External id -> hash of the record's mapped field values.
TargetState = dict[str, int]

READ_PREFIXES = ("query", "bulk_query_")
WRITE_PREFIXES = ("collection_", "upsert", "bulk_ingest_")
POLL_KINDS = ("bulk_query_status", "bulk_ingest_status")


@dataclass
class ContenderResult:
    """Requests one contender sent, by emulator route kind, and what it planned."""

    pattern: str
    calls: Counter[str]
    creates: int
    updates: int
    seconds: float
    final_state: TargetState = field(repr=False, default_factory=dict)
    # (job kind, seconds the emulator took to process it) for every Bulk API 2.0 job
    job_seconds: list[tuple[str, float]] = field(default_factory=list)

    def count(self, prefixes: tuple[str, ...]) -> int:
        return sum(number for kind, number in self.calls.items() if kind.startswith(prefixes))

    @property
    def read(self) -> int:
        return self.count(READ_PREFIXES)

    @property
    def write(self) -> int:
        return self.count(WRITE_PREFIXES)

    @property
    def polls(self) -> int:
        return sum(self.calls[kind] for kind in POLL_KINDS)

    @property
    def other(self) -> int:
        return sum(number for kind, number in self.calls.items() if kind != "token") - self.read - self.write

    @property
    def total(self) -> int:
        """API requests, token grants excluded."""
        return self.read + self.write + self.other

    @property
    def token(self) -> int:
        return self.calls["token"]


@dataclass
class Measurement:
    scenario: Scenario
    provider: ContenderResult
    naive: ContenderResult
    seed_seconds: float
    initial_state: TargetState = field(repr=False, default_factory=dict)

    def state_differences(self) -> list[str]:
        """Keys whose fields differ between the contenders' final states, sorted."""
        keys = set(self.provider.final_state) | set(self.naive.final_state)
        return sorted(key for key in keys if self.provider.final_state.get(key) != self.naive.final_state.get(key))

    def changed_keys(self, result: ContenderResult) -> set[str]:
        """Keys whose fields differ between the seed and a contender's final state."""
        keys = set(self.initial_state) | set(result.final_state)
        return {key for key in keys if self.initial_state.get(key) != result.final_state.get(key)}


def target_state(emulator: Any) -> TargetState:
    """Return a hash of each target record's mapped field values by external id, read from the emulator's store.

    Hashes keep the states small: a state is one int per record, where the values would keep a
    million records' objects alive. On a 64-bit build, a changed record keeps its hash by chance
    with a probability of about 2**-64.
    """
    fields = MAPPING.target_fields()
    key = MAPPING.key.target
    object_def = emulator.store.object_def(TARGET_OBJECT)
    with emulator.lock:
        return {record[key]: hash(tuple(record[name] for name in fields)) for record in emulator.store.rows(object_def)}


@contextlib.contextmanager
def seeded_salesforce(scenario: Scenario, state_dir: Path) -> Iterator[tuple[Any, SalesforceAccess]]:
    """Start the sandbox's OAuth server and Salesforce emulator, seed the target; yield the emulator and access."""
    from airflow_provider_m2m.sandbox import start_sandbox

    with start_sandbox(state_dir, rows=1, bigquery=False, snowflake=False) as sandbox:
        emulator = sandbox.salesforce
        # The sandbox seeds its own demo records; the benchmark's target holds only its own.
        emulator.delete_all_records(TARGET_OBJECT)
        emulator.insert_records(TARGET_OBJECT, scenario.seed_records())

        connection = json.loads(sandbox.connections[SALESFORCE_CONN_ID])
        connection["extra"]["timeout"] = HTTP_TIMEOUT_SECONDS
        access = SalesforceAccess(
            connection_json=json.dumps(connection),
            token_url=f"{sandbox.salesforce_url}/services/oauth2/token",
            consumer_key=connection["login"],
            consumer_secret=connection["password"],
            ca_bundle=connection["extra"]["ca_bundle"],
            api_version=connection["extra"]["api_version"],
        )
        yield emulator, access


@contextlib.contextmanager
def _hook_environment(access: SalesforceAccess, cache_dir: Path) -> Iterator[None]:
    """Point the hook at the emulator's connection and at an empty token cache, as a new worker would be."""
    names = (f"AIRFLOW_CONN_{SALESFORCE_CONN_ID.upper()}", "M2M_TOKEN_CACHE_DIR")
    saved = {name: os.environ.get(name) for name in names}
    os.environ[names[0]] = access.connection_json
    os.environ[names[1]] = str(cache_dir)
    clear_memory_cache()
    try:
        yield
    finally:
        clear_memory_cache()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _job_seconds(emulator: Any) -> list[tuple[str, float]]:
    """Return how long the emulator took to process each Bulk API 2.0 job, query jobs first."""
    with emulator.lock:
        jobs = [("query", job) for job in emulator.bulk.query_jobs.values()]
        jobs += [("ingest", job) for job in emulator.bulk.ingest_jobs.values()]
        return [(kind, job.processing_ms / 1000) for kind, job in jobs]


def _run_contender(
    pattern: str, scenario: Scenario, work_dir: Path, run: Any, *, keep_seed_state: bool, **options: Any
) -> tuple[ContenderResult, TargetState, float]:
    """Seed a fresh emulator and run one contender against it.

    Returns the contender's result, the seeded state (empty unless `keep_seed_state`) and the
    seconds the seeding took.
    """
    seed_started = time.monotonic()
    with seeded_salesforce(scenario, work_dir / pattern) as (emulator, access):
        seed_seconds = time.monotonic() - seed_started
        initial = target_state(emulator) if keep_seed_state else {}
        with _hook_environment(access, work_dir / pattern / "token-cache"):
            emulator.reset_api_calls()
            started = time.monotonic()
            plan = run(access, scenario, **options)
            seconds = time.monotonic() - started
            emulator.wait_for_jobs()
            calls = Counter(emulator.api_calls)
        result = ContenderResult(
            pattern,
            calls,
            len(plan.creates),
            len(plan.updates),
            seconds,
            target_state(emulator),
            _job_seconds(emulator),
        )
    return result, initial, seed_seconds


def measure(
    scenario: Scenario,
    *,
    query_page_size: int = BULK_QUERY_PAGE_SIZE,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    rest_page_size: int = REST_QUERY_PAGE_SIZE,
    collection_size: int = COLLECTIONS_BATCH_SIZE,
) -> Measurement:
    """Run both contenders, each against its own freshly seeded emulator, and return their counts and states.

    The page sizes default to the hook's and Salesforce's; a test passes smaller ones to keep the
    ratio of pages at a small size.
    """
    with tempfile.TemporaryDirectory(prefix="bench-salesforce-calls-") as work:
        work_dir = Path(work)
        provider, initial, seed_seconds = _run_contender(
            "provider",
            scenario,
            work_dir,
            run_provider,
            keep_seed_state=True,
            query_page_size=query_page_size,
            bulk_threshold=bulk_threshold,
        )
        naive, _, _ = _run_contender(
            "naive",
            scenario,
            work_dir,
            run_naive,
            keep_seed_state=False,
            rest_page_size=rest_page_size,
            collection_size=collection_size,
        )
    return Measurement(scenario, provider, naive, seed_seconds, initial)


def check(measurement: Measurement) -> list[str]:
    """Return what makes the comparison unfair or wrong; an empty list means both contenders did the same work."""
    scenario = measurement.scenario
    expected_keys = scenario.updated_keys() | scenario.created_keys()
    problems = []
    for result in (measurement.provider, measurement.naive):
        if (result.updates, result.creates) != (scenario.updates, scenario.creates):
            problems.append(
                f"{result.pattern} planned {result.updates} updates and {result.creates} creates, "
                f"expected {scenario.updates} and {scenario.creates}"
            )
        changed = measurement.changed_keys(result)
        if changed != expected_keys:
            problems.append(
                f"{result.pattern} changed {len(changed)} records, expected the {len(expected_keys)} planned keys"
            )
    differences = measurement.state_differences()
    if differences:
        problems.append(f"the final states differ in {len(differences)} records, for example {differences[:5]}")
    return problems


def estimate_polls(job_seconds: float) -> int:
    """Estimate the status polls the hook sends for a job that runs `job_seconds`, request time ignored.

    `SalesforceM2MHook` waits 1 s before its first poll and doubles the wait up to 30 s, so a job of
    60 s costs 6 polls. This is a model of the hook's schedule, not a measurement.
    """
    polls, elapsed, interval = 0, 0.0, POLL_FIRST_INTERVAL_SECONDS
    while True:
        elapsed += interval
        polls += 1
        if elapsed >= job_seconds:
            return polls
        interval = min(interval * 2, POLL_MAX_INTERVAL_SECONDS)


def print_report(measurement: Measurement, *, query_page_size: int, rest_page_size: int) -> None:
    scenario = measurement.scenario
    provider, naive = measurement.provider, measurement.naive
    changes = scenario.updates + scenario.creates
    print(
        f"# Salesforce API requests to reconcile {scenario.records:,} target records with {changes:,} changes "
        f"({scenario.updates:,} updates, {scenario.creates:,} creates)"
    )
    print(
        f"# counted by the sandbox's Salesforce emulator over HTTPS on 127.0.0.1, not a real org; "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        f"# Bulk API 2.0 query result sets of {query_page_size:,} records; REST query pages of "
        f"{rest_page_size:,}; each emulator seeded in about {measurement.seed_seconds:.0f} s"
    )
    print()
    print("| pattern | read calls | write calls | total | of which status polls | token grants | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, result in (
        ("Bulk API 2.0 query + Bulk API 2.0 upsert (this provider)", provider),
        ("REST query_all + sObject Collections (simple-salesforce)", naive),
    ):
        print(
            f"| {name} | {result.read} | {result.write} | {result.total} | {result.polls} | {result.token} | "
            f"{result.seconds:.0f} |"
        )
    print()
    print(f"ratio, provider / naive: {provider.total / naive.total:.3f}")
    verdict = "within" if provider.total <= API_CALL_BUDGET else "over"
    print(f"provider: {provider.total} calls, {verdict} the budget of {API_CALL_BUDGET}")
    for result in (provider, naive):
        kinds = ", ".join(f"{kind} {number}" for kind, number in sorted(result.calls.items()))
        print(f"{result.pattern} requests by route: {kinds}")
    jobs = ", ".join(f"{kind} job {seconds:.1f} s" for kind, seconds in provider.job_seconds)
    print(f"emulator processing time of the provider's Bulk API 2.0 jobs: {jobs}")

    fixed = provider.total - provider.polls
    result_sets = provider.calls["bulk_query_results"]
    room = API_CALL_BUDGET - (provider.total - result_sets)
    if room > 0:
        smallest = math.ceil(scenario.records / room)
        print(f"with these polls, {API_CALL_BUDGET} calls allow query result sets of at least {smallest:,} records")
    kinds = {kind for kind, _ in provider.job_seconds}
    if kinds != {"query", "ingest"}:
        return
    print()
    print(f"# estimate, not measured: the provider's {fixed} calls without polls plus the hook's polls for slower jobs")
    print("| query job (s) | upsert job (s) | status polls | total calls | within budget |")
    print("|---:|---:|---:|---:|---|")
    # The first row takes this run's job durations, so it checks the estimate against the measured polls.
    durations = [
        (max(seconds for kind, seconds in provider.job_seconds if kind == "query"),
         max(seconds for kind, seconds in provider.job_seconds if kind == "ingest")),
        (30, 5), (60, 10), (300, 30),
    ]  # fmt: skip
    for query_seconds, ingest_seconds in durations:
        polls = estimate_polls(query_seconds) + estimate_polls(ingest_seconds)
        total = fixed + polls
        verdict = "yes" if total <= API_CALL_BUDGET else "no"
        print(f"| {query_seconds:.1f} | {ingest_seconds:.1f} | {polls} | {total} | {verdict} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="target records seeded (default 1,000,000)")
    parser.add_argument("--updates", type=int, help="source rows changed in one field (default 0.5%% of --records)")
    parser.add_argument("--creates", type=int, help="source rows not in the target (default 0.5%% of --records)")
    parser.add_argument(
        "--query-page-size",
        type=int,
        default=BULK_QUERY_PAGE_SIZE,
        help="records per Bulk API 2.0 query result set (maxRecords; default: the hook's)",
    )
    parser.add_argument(
        "--rest-page-size",
        type=int,
        default=REST_QUERY_PAGE_SIZE,
        help="records per REST query page, 200 to 2000 (batchSize; default 2000, as Salesforce)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the INFO logs of the sandbox and the hook")
    args = parser.parse_args(argv)
    if not args.verbose:
        logging.getLogger("airflow_provider_m2m").setLevel(logging.WARNING)
    half_percent = max(1, math.ceil(args.records * 0.005))
    scenario = Scenario(
        records=args.records,
        updates=half_percent if args.updates is None else args.updates,
        creates=half_percent if args.creates is None else args.creates,
    )
    os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")

    measurement = measure(scenario, query_page_size=args.query_page_size, rest_page_size=args.rest_page_size)
    print_report(measurement, query_page_size=args.query_page_size, rest_page_size=args.rest_page_size)
    problems = check(measurement)
    if problems:
        print("comparison is not fair: " + "; ".join(problems))
        return 1
    print("both contenders left the same target state: the planned keys changed, every other record kept its values")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
