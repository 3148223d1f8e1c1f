"""Deterministic demo data: the BigQuery source table and a Salesforce object drifted from it.

`generate(seed, rows)` returns the same data for the same arguments on every machine: it draws
from its own `random.Random(seed)` and derives dates from fixed anchors, never from today.

The target starts drifted from the mapped source. 3% of the keys are missing, 5% of the records
have one to three fields changed, 50 records have keys that are not in the source, and the rest
equal the mapped source. Every value fits the target's field definitions (lengths, picklists,
precision), so one reconcile run makes the target equal the source.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from airflow_provider_m2m.sandbox.salesforce.objects import COUNTRY_CODES
from airflow_provider_m2m.sandbox.salesforce.objects import TIERS as PICKLIST_TIERS

PROJECT_ID = "m2m-sandbox"
DATASET_ID = "crm"
TABLE_ID = "customer_accounts"
TARGET_OBJECT = "Customer_Account__c"
RUN_SUMMARY_OBJECT = "Reconciliation_Run__c"

# The target's restricted picklists define the allowed values, so the source draws from the same lists.
COUNTRIES = COUNTRY_CODES
TIERS = PICKLIST_TIERS

NAME_MAX_LENGTH = 80  # Name is Text(80) on the target.
NOTES_MAX_LENGTH = 255  # Notes__c is Text Area(255) on the target.
MISSING_FRACTION = 0.03
CHANGED_FRACTION = 0.05
ORPHAN_COUNT = 50

# BigQuery REST TableFieldSchema list for crm.customer_accounts.
BIGQUERY_SCHEMA: list[dict[str, str]] = [
    {"name": "account_id", "type": "STRING", "mode": "REQUIRED"},
    {"name": "name", "type": "STRING", "mode": "REQUIRED"},
    {"name": "email", "type": "STRING", "mode": "NULLABLE"},
    {"name": "country", "type": "STRING", "mode": "NULLABLE"},
    {"name": "tier", "type": "STRING", "mode": "NULLABLE"},
    {"name": "annual_revenue", "type": "NUMERIC", "mode": "NULLABLE"},
    {"name": "employees", "type": "INT64", "mode": "NULLABLE"},
    {"name": "is_active", "type": "BOOL", "mode": "NULLABLE"},
    {"name": "signup_date", "type": "DATE", "mode": "NULLABLE"},
    {"name": "last_activity_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
    {"name": "notes", "type": "STRING", "mode": "NULLABLE"},
]

# Source column -> target field.
FIELD_MAP: dict[str, str] = {
    "account_id": "External_Id__c",
    "name": "Name",
    "email": "Email__c",
    "country": "Country__c",
    "tier": "Tier__c",
    "annual_revenue": "Annual_Revenue__c",
    "employees": "Employees__c",
    "is_active": "Is_Active__c",
    "signup_date": "Signup_Date__c",
    "last_activity_at": "Last_Activity__c",
    "notes": "Notes__c",
}
KEY_COLUMN = "account_id"
KEY_FIELD = FIELD_MAP[KEY_COLUMN]
# Target fields that accept null; Name is required and the key never changes.
NULLABLE_FIELDS = (
    "Email__c", "Country__c", "Tier__c", "Annual_Revenue__c", "Employees__c",
    "Signup_Date__c", "Last_Activity__c", "Notes__c",
)  # fmt: skip

_FIRST_NAMES = (
    "Zoë", "Łukasz", "José", "Ñandú", "Björn", "Søren", "Anaïs", "Chloé", "Jürgen", "Małgorzata",
    "François", "Đorđe", "İlkay", "Þóra", "Ana", "Olivia", "Noah", "Amara", "Kenji", "Mei",
    "Ngozi", "Priya", "Mateus", "Sofía", "Oğuz", "Ewa", "Hélène", "Ømar", "Rūta", "Dương",
)  # fmt: skip
_LAST_NAMES = (
    "Müller", "Nowak", "García", "O'Brien", "Ångström", "Dvořák", "Kowalczyk", "Nørgaard", "Çelik",
    "Smith", "Tanaka", "Okafor", "Silva", "Rossi", "Lefèvre", "Janssen", "Schröder", "Nguyễn",
    "Ivanova", "Papadopoulos", "Kim", "Sharma", "Fernández", "Häkkinen", "Żółkiewski",
)  # fmt: skip
_COMPANY_SUFFIXES = ("GmbH", "S.A.", "Ltd", "Inc.", "AB", "Sp. z o.o.", "S.r.l.", "K.K.", "Pty Ltd", "A/S")
_COMPANY_WORDS = (
    "Nordlicht", "Café Größe", "Élan", "Ñandú Logística", "Łódź Metal", "Sakura", "Ørsted Værk",
    "Aurora", "Blue Harbor", "Zürich Data", "Saint-Étienne Bois", "Kraków Soft", "São Paulo Frete",
)  # fmt: skip
_CJK_COMPANIES = ("株式会社さくら", "東京データ株式会社", "北京科技有限公司", "서울 소프트 주식회사", "大阪物産株式会社")
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.de", "example.co.jp")
_NOTE_FRAGMENTS = (
    "Renewal due next quarter.",
    "Prefers contact by email.",
    "Kontakt über Frau Müller (Einkauf).",
    "Réunion trimestrielle à Lyon.",
    "担当者は営業部の田中さんです。",
    "Zamówienie wstrzymane do końca miesiąca.",
    "Cliente con facturación en pesos; revisar tipo de cambio.",
    "Escalated twice — see ticket history.",
    "Ønsker faktura på dansk.",
    "Προτιμά επικοινωνία τηλεφωνικά.",
)

_SIGNUP_START = dt.date(2015, 1, 1)
_SIGNUP_DAYS = 4017  # through 2025-12-31
_ACTIVITY_END = dt.datetime(2026, 6, 30, 23, 59, 59, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class SeedData:
    """The demo data of one seed number, with the keys of each kind of drift."""

    source_rows: list[dict[str, Any]]
    target_records: list[dict[str, Any]]
    missing_keys: list[str]
    # key -> target fields whose value differs from the mapped source
    changed_fields: dict[str, list[str]]
    orphan_keys: list[str]
    unchanged_keys: list[str] = field(default_factory=list)


def account_id(number: int) -> str:
    return f"ACC-{number:06d}"


def _person_or_company_name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    if roll < 0.55:
        return rng.choice(_CJK_COMPANIES)
    if roll < 0.58:
        # A long name that ends exactly at the target's length limit.
        words = " ".join(rng.choice(_COMPANY_WORDS) for _ in range(8))
        return words[:NAME_MAX_LENGTH].rstrip() or "Aurora"
    return f"{rng.choice(_COMPANY_WORDS)} {rng.choice(_COMPANY_SUFFIXES)}"


def _email(rng: random.Random, number: int) -> str | None:
    if rng.random() < 0.08:
        return None
    # Salesforce Email fields reject non-ASCII local parts, so addresses stay ASCII.
    return f"contact{number}@{rng.choice(_EMAIL_DOMAINS)}"


def _revenue(rng: random.Random) -> Decimal | None:
    if rng.random() < 0.07:
        return None
    cents = rng.randrange(0, 500_000_000_000)  # up to 5,000,000,000.00, well inside Currency(16, 2)
    return Decimal(cents).scaleb(-2)


def _employees(rng: random.Random) -> int | None:
    if rng.random() < 0.06:
        return None
    return rng.choice((rng.randrange(1, 50), rng.randrange(50, 5_000), rng.randrange(5_000, 400_000)))


def _last_activity(rng: random.Random, signup: dt.date) -> dt.datetime | None:
    if rng.random() < 0.1:
        return None
    start = dt.datetime.combine(signup, dt.time(), tzinfo=dt.timezone.utc)
    span = int((_ACTIVITY_END - start).total_seconds())
    # Whole seconds: Salesforce DateTime keeps milliseconds, so finer source values would never converge.
    return start + dt.timedelta(seconds=rng.randrange(0, span))


def _notes(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.25:
        return None
    if roll < 0.32:
        return ""
    if roll < 0.40:
        text = " ".join(rng.choice(_NOTE_FRAGMENTS) for _ in range(12))
        return text[:NOTES_MAX_LENGTH].rstrip()
    return rng.choice(_NOTE_FRAGMENTS)


def _source_row(rng: random.Random, number: int) -> dict[str, Any]:
    signup = _SIGNUP_START + dt.timedelta(days=rng.randrange(_SIGNUP_DAYS))
    return {
        "account_id": account_id(number),
        "name": _person_or_company_name(rng),
        "email": _email(rng, number),
        "country": rng.choice(COUNTRIES),
        "tier": rng.choice(TIERS),
        "annual_revenue": _revenue(rng),
        "employees": _employees(rng),
        "is_active": rng.random() < 0.8,
        "signup_date": signup,
        "last_activity_at": _last_activity(rng, signup),
        "notes": _notes(rng),
    }


def to_target_record(row: dict[str, Any]) -> dict[str, Any]:
    """Map one source row to the target record that reconciling it must produce.

    Values keep their Python types (Decimal, date, aware datetime, bool, int, str, None). An empty
    string becomes None because Salesforce stores an empty text value as null.
    """
    record: dict[str, Any] = {}
    for column, target_field in FIELD_MAP.items():
        value = row[column]
        record[target_field] = None if value == "" else value
    return record


def _changed_value(rng: random.Random, target_field: str, current: Any) -> Any:
    """Draw a valid target value for `target_field` that differs from `current`."""
    generators: dict[str, Callable[[], Any]] = {
        "Name": lambda: f"{rng.choice(_COMPANY_WORDS)} (renamed)",
        "Email__c": lambda: f"changed{rng.randrange(10**6)}@example.com",
        "Country__c": lambda: rng.choice(COUNTRIES),
        "Tier__c": lambda: rng.choice(TIERS),
        "Annual_Revenue__c": lambda: Decimal(rng.randrange(1, 10**9)).scaleb(-2),
        "Employees__c": lambda: rng.randrange(1, 100_000),
        "Is_Active__c": lambda: not current,
        "Signup_Date__c": lambda: _SIGNUP_START + dt.timedelta(days=rng.randrange(_SIGNUP_DAYS)),
        "Last_Activity__c": lambda: _ACTIVITY_END - dt.timedelta(seconds=rng.randrange(10**8)),
        "Notes__c": lambda: rng.choice(_NOTE_FRAGMENTS) + " (edited in Salesforce)",
    }
    value = generators[target_field]()
    while value == current:
        value = generators[target_field]()
    return value


def _drift(rng: random.Random, record: dict[str, Any], position: int) -> list[str]:
    """Change one to three fields of `record` in place and return their names.

    The first drifted record sets a value to null and the second fills a null, so both
    directions are always present however small the data.
    """
    candidates = [name for name in FIELD_MAP.values() if name != KEY_FIELD]
    if position == 0:
        with_value = [name for name in NULLABLE_FIELDS if record[name] is not None]
        chosen = rng.choice(with_value)
        record[chosen] = None
        return [chosen]
    if position == 1:
        without_value = [name for name in NULLABLE_FIELDS if record[name] is None]
        if without_value:
            chosen = rng.choice(without_value)
            record[chosen] = _changed_value(rng, chosen, None)
            return [chosen]
    changed = rng.sample(candidates, rng.randint(1, 3))
    for name in changed:
        if name in NULLABLE_FIELDS and record[name] is not None and rng.random() < 0.15:
            record[name] = None
        else:
            record[name] = _changed_value(rng, name, record[name])
    return changed


def _orphan_record(rng: random.Random, number: int) -> dict[str, Any]:
    # Orphan keys start at 900001, far past any source key this module generates.
    row = _source_row(rng, number)
    row["account_id"] = account_id(900_000 + number)
    return to_target_record(row)


def generate(seed: int = 42, rows: int = 10_000) -> SeedData:
    """Generate the source rows and the drifted target records for `seed`."""
    if not 1 <= rows < 900_000:
        raise ValueError(f"rows must be between 1 and 899999, got {rows}")
    rng = random.Random(seed)
    source_rows = [_source_row(rng, number) for number in range(1, rows + 1)]

    keys = [row["account_id"] for row in source_rows]
    drift_rng = random.Random(seed + 1)
    shuffled = drift_rng.sample(keys, len(keys))
    missing_count = round(rows * MISSING_FRACTION)
    changed_count = round(rows * CHANGED_FRACTION)
    missing = set(shuffled[:missing_count])
    changed_order = shuffled[missing_count : missing_count + changed_count]
    changed_position = {key: index for index, key in enumerate(changed_order)}

    target_records: list[dict[str, Any]] = []
    changed_fields: dict[str, list[str]] = {}
    unchanged_keys: list[str] = []
    for row in source_rows:
        key = row["account_id"]
        if key in missing:
            continue
        record = to_target_record(row)
        if key in changed_position:
            changed_fields[key] = _drift(drift_rng, record, changed_position[key])
        else:
            unchanged_keys.append(key)
        target_records.append(record)

    orphans = [_orphan_record(drift_rng, number) for number in range(1, ORPHAN_COUNT + 1)]
    target_records.extend(orphans)
    return SeedData(
        source_rows=source_rows,
        target_records=target_records,
        missing_keys=sorted(missing),
        changed_fields=changed_fields,
        orphan_keys=[record[KEY_FIELD] for record in orphans],
        unchanged_keys=unchanged_keys,
    )
