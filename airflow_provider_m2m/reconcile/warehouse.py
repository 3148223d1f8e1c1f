"""Plan a reconciliation with BigQuery proving most unchanged rows, for targets larger than one worker.

SQL here never decides a write. It renders each source column as the text that a Bulk API 2.0
query CSV writes for the value, and joins the source with the staged target records on the key.
A pair is proven unchanged when every rendered column and the key's spelling equal the staged text.
Every other source row and target record is read back and planned by `plan_changes`, which
applies all of normalize.py's rules. A difference between SQL dialects can therefore only send
more rows to Python.

Why equal text proves a row unchanged: each rendering below has a Python inverse that returns the
source values rendering to a text, as the BigQuery hook returns them. While the target records
are staged, each record is marked provable only if, for every field, `source_converter` accepts
each of those values and returns the target's comparable form. A source row whose rendered text
equals a provable record's text is then unchanged under normalize.py's rules, and valid. No
validity rule of normalize.py (NaN, required fields, NUL, field length) is written in SQL.

Keys: a provable key is ASCII text or an INT64 number, so NFC changes nothing and LOWER equals
`str.casefold()`. Non-ASCII keys are never proven. Where NFC or case folding maps one to an ASCII
key, that key is excluded from the proof too, so `plan_changes` receives both spellings.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Protocol

from airflow_provider_m2m.reconcile.diff import plan_changes
from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.normalize import (
    NULL_TEXT,
    source_converter,
    target_converter,
)
from airflow_provider_m2m.reconcile.plan import DuplicateKeyError, Plan, TargetRecordError

log = logging.getLogger(__name__)

# Staging tables expire on their own if the run dies before it drops them.
STAGING_EXPIRATION = timedelta(days=1)
# Above this many non-ASCII keys whose NFC or case-folded form is ASCII, the run proves nothing
# and plans every row in Python, because the keys travel as one query parameter.
MAX_EXCLUDED_KEYS = 10_000

PROVABLE_COLUMN = "m2m_provable"
FOLDED_KEY_COLUMN = "m2m_folded_key"
SOURCE_SNAPSHOT_SUFFIX = "_source"

_ERRORS = (ValueError, TypeError, ArithmeticError)
_TYPE_ALIASES = {"INTEGER": "INT64", "BOOLEAN": "BOOL", "FLOAT": "FLOAT64"}
_NUMERAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_INTEGER_NUMERAL = re.compile(r"-?[0-9]+")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.000Z")


class BigQueryRunner(Protocol):
    """The part of `BigQueryM2MHook` that this module uses: queries through the REST API, and a
    google-cloud-bigquery client for load jobs and table management."""

    def iter_rows(self, sql: str, *, parameters: MappingABC[str, Any] | None = None) -> Iterator[dict[str, Any]]: ...

    def get_client(self) -> Any: ...


@dataclass
class WarehousePlan:
    """The plan, the same as `plan_changes` returns, and how many unchanged pairs SQL proved."""

    plan: Plan
    proven_unchanged: int


# Renderings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendering:
    """A source column written in SQL as Bulk API 2.0 query CSV text, and the Python inverse.

    `values(text)` returns every source value whose rendering is `text`, as the BigQuery hook
    returns it, or one value standing for them all where normalize.py treats them alike (a
    TIMESTAMP within one second). It raises ValueError for a text that no value renders to.
    """

    sql: str
    values: Callable[[str], tuple[Any, ...]]


def _text_values(text: str) -> tuple[Any, ...]:
    return (None, "") if text == "" else (text,)


def _decimal_values(text: str) -> tuple[Any, ...]:
    if text == "":
        return (None,)
    if not _NUMERAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a plain decimal numeral")
    return (Decimal(text),)


def _int_values(text: str) -> tuple[Any, ...]:
    if text == "":
        return (None,)
    if not _INTEGER_NUMERAL.fullmatch(text):
        raise ValueError(f"{text!r} is not an integer numeral")
    return (int(text),)


def _bool_values(text: str) -> tuple[Any, ...]:
    if text == "true":
        return (True,)
    if text == "false":
        return (False, None)
    raise ValueError(f"{text!r} is neither true nor false")


def _date_values(text: str) -> tuple[Any, ...]:
    if text == "":
        return (None,)
    if not _DATE_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not YYYY-MM-DD")
    return (date.fromisoformat(text),)


def _timestamp_values(text: str) -> tuple[Any, ...]:
    if text == "":
        return (None,)
    match = _DATETIME_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not YYYY-MM-DDTHH:MM:SS.000Z")
    # Every TIMESTAMP within this second renders to the text, and normalize.py truncates each
    # to the second, so the whole second stands for them all.
    return (datetime(*map(int, match.groups()), tzinfo=UTC),)


def _trimmed_number(expression: str) -> str:
    # GoogleSQL writes NUMERIC without trailing zeros. bqemulator (DuckDB) pads them to the
    # column's scale. Trimming gives the same value in both, and the text a Bulk query writes.
    return f"IF(STRPOS({expression}, '.') > 0, RTRIM(RTRIM({expression}, '0'), '.'), {expression})"


def render_field(field: FieldMapping, column_type: str, column: str) -> Rendering | None:
    """Return the rendering of a source column of BigQuery type `column_type` mapped to `field`,
    or None where no rendering is argued for that pair of types, so the field is never proven.

    `column` is the SQL expression of the column, already quoted.
    """
    column_type = _TYPE_ALIASES.get(column_type, column_type)
    kind = field.type
    if kind.is_text and column_type == "STRING":
        return Rendering(f"IFNULL({column}, '')", _text_values)
    if kind is FieldType.DECIMAL and column_type in ("NUMERIC", "BIGNUMERIC"):
        return Rendering(f"IFNULL({_trimmed_number(f'CAST({column} AS STRING)')}, '')", _decimal_values)
    if kind in (FieldType.DECIMAL, FieldType.INTEGER) and column_type == "INT64":
        return Rendering(f"IFNULL(CAST({column} AS STRING), '')", _int_values)
    if kind is FieldType.BOOLEAN and column_type == "BOOL":
        # NULL takes the ELSE branch, and a checkbox stores null as false.
        return Rendering(f"IF({column}, 'true', 'false')", _bool_values)
    if kind is FieldType.DATE and column_type == "DATE":
        return Rendering(f"IFNULL(FORMAT_DATE('%Y-%m-%d', {column}), '')", _date_values)
    if kind is FieldType.DATETIME and column_type == "TIMESTAMP":
        # normalize.py truncates to the earlier second, also before 1970. Whether FORMAT_TIMESTAMP
        # does the same for a fraction of a second before 1970 was not checked on BigQuery, so
        # such a value renders as NULL, which equals nothing.
        return Rendering(
            f"CASE WHEN {column} IS NULL THEN '' "
            f"WHEN {column} < TIMESTAMP '1970-01-01 00:00:00+00' "
            f"AND TIMESTAMP_TRUNC({column}, SECOND) != {column} THEN NULL "
            f"ELSE FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%S.000Z', {column}, 'UTC') END",
            _timestamp_values,
        )
    # DOUBLE and FLOAT64 are left out: equal text proves equal floats only if both sides parse
    # decimal text with the same rounding, which was not checked on BigQuery.
    return None


def render_key(key: FieldMapping, column_type: str, column: str) -> Rendering | None:
    """Return the rendering of the key column, which is NULL for a NULL key so that it never joins."""
    column_type = _TYPE_ALIASES.get(column_type, column_type)
    if key.type.is_text and column_type == "STRING":
        return Rendering(column, lambda text: (text,))
    if key.type is FieldType.INTEGER and column_type == "INT64":
        return Rendering(f"CAST({column} AS STRING)", _int_values)
    return None


def quote_identifier(name: str) -> str:
    """Quote a column name with backticks. Raises ValueError for a name that would need escapes."""
    if not name or any(character in name for character in "`\\\n\r"):
        raise ValueError(f"column name {name!r} cannot be quoted as a GoogleSQL identifier without escapes")
    return f"`{name}`"


def quote_table(table: str) -> str:
    """Quote a `project.dataset.table` path as one GoogleSQL identifier."""
    if table.count(".") != 2 or any(character in table for character in "`\\\n\r "):
        raise ValueError(f"staging table {table!r} must be project.dataset.table with no quotes or spaces")
    return f"`{table}`"


# Staging the target ---------------------------------------------------------------------------------


class _ProvableCheck:
    """Decide, from a staged target record's text alone, whether equal source text proves it unchanged."""

    def __init__(
        self, mapping: Mapping, key_rendering: Rendering | None, renderings: list[Rendering] | None
    ) -> None:
        self.mapping = mapping
        self.key_rendering = key_rendering
        self.renderings = renderings
        self.source_key = source_converter(mapping.key)
        self.target_key = target_converter(mapping.key)
        self.fold_keys = mapping.key.type.is_text and not mapping.key_case_sensitive
        self.checks = [(source_converter(f), target_converter(f)) for f in mapping.fields]
        # Comparable forms of non-ASCII keys that are ASCII, which no proof may use.
        self.excluded_keys: set[str] = set()

    def comparable_key(self, converted_key: str) -> str:
        return converted_key.casefold() if self.fold_keys else converted_key

    def note_key(self, converted_key: str) -> None:
        """Record a non-ASCII key whose comparable form is ASCII, to exclude that form from the proof."""
        if not converted_key.isascii() and len(self.excluded_keys) <= MAX_EXCLUDED_KEYS:
            comparable = self.comparable_key(converted_key)
            if comparable.isascii():
                self.excluded_keys.add(comparable)

    def provable(self, key_text: Any, texts: tuple[Any, ...]) -> bool:
        if self.key_rendering is None or self.renderings is None:
            return False
        if not isinstance(key_text, str) or not key_text.isascii():
            return False
        try:
            key_values = self.key_rendering.values(key_text)
            expected_key = self.target_key(key_text)
            if any(self.source_key(value) != expected_key for value in key_values):
                return False
            for (to_source, to_target), rendering, text in zip(self.checks, self.renderings, texts):
                if not isinstance(text, str):
                    return False
                expected = to_target(text)
                if any(to_source(value) != expected for value in rendering.values(text)):
                    return False
        except _ERRORS:  # InvalidValue is a ValueError
            return False
        return True


def _write_staging_file(
    records: Iterable[MappingABC[str, Any]], mapping: Mapping, check: _ProvableCheck, handle: IO[bytes]
) -> int:
    """Write the target records as newline-delimited JSON, one STRING column per field; return the count.

    Raises TargetRecordError, as `plan_changes` does, for a record that lacks a mapped field or
    whose key does not parse.
    """
    names = mapping.target_fields()
    key_name = mapping.key.target
    count = 0
    for number, record in enumerate(records, start=1):
        try:
            texts = tuple(record[name] for name in names)
        except KeyError as err:
            raise TargetRecordError(
                f"target record {number} has no field {err.args[0]}; the target query must select every mapped field"
            ) from err
        try:
            converted_key = check.target_key(texts[0])
        except _ERRORS as err:
            raise TargetRecordError(f"target record {number}: invalid external id {key_name}: {err}") from err
        check.note_key(converted_key)
        row: dict[str, Any] = {
            _staged_name(position): _staged_text(text, number, name)
            for position, (name, text) in enumerate(zip(names, texts))
        }
        row[FOLDED_KEY_COLUMN] = None if converted_key == NULL_TEXT else check.comparable_key(converted_key)
        row[PROVABLE_COLUMN] = check.provable(texts[0], texts[1:])
        handle.write(json.dumps(row).encode("ascii") + b"\n")
        count += 1
    return count


def _staged_name(position: int) -> str:
    # Positional names, so that no target field name has to be a valid BigQuery column name.
    return f"f{position}"


def _staged_text(value: Any, number: int, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # Staging keeps text only, so a REST record's number or boolean would read back as a
    # different type than plan_changes would have seen.
    raise TargetRecordError(
        f"target record {number}: {name} has a {type(value).__name__}, but the warehouse path takes "
        "Bulk API 2.0 query records, whose values are text"
    )


# The run ----------------------------------------------------------------------------------------------


def plan_changes_in_warehouse(
    bigquery: BigQueryRunner,
    source_sql: str,
    target_records: Iterable[MappingABC[str, Any]],
    mapping: Mapping,
    staging_table: str,
    *,
    include_orphans: bool = False,
) -> WarehousePlan:
    """Plan the writes like `plan_changes`, with BigQuery proving the unchanged pairs it can.

    `source_sql` is a GoogleSQL query, run once as a subquery into the snapshot table
    `<staging_table>_source`. `target_records` are Bulk API 2.0 query records (field name to
    text), loaded into `staging_table`. Both tables get a one-day expiration and are dropped
    before returning. `staging_table` is `project.dataset.table`, must not exist yet, and must be
    in a dataset in the same location as the tables the source query reads.

    Raises DuplicateKeyError or TargetRecordError where `plan_changes` would. The plan's counts
    include the proven pairs in `read_source`, `read_target` and `unchanged`.
    """
    from google.cloud import bigquery as bq  # optional extra: airflow-provider-m2m[bigquery-client]

    client = bigquery.get_client()
    snapshot_table = f"{staging_table}{SOURCE_SNAPSHOT_SUFFIX}"
    quote_table(staging_table)  # validates the name before anything is created
    created: list[str] = []
    try:
        schema, source_count = _snapshot_source(bigquery, client, source_sql, snapshot_table, created)
        key_rendering, renderings = _renderings(mapping, schema)
        check = _ProvableCheck(mapping, key_rendering, renderings)
        target_count = _stage_target(client, bq, target_records, mapping, check, staging_table, created)

        query = _ProofQuery(mapping, snapshot_table, staging_table)
        if key_rendering is not None:
            _raise_for_duplicates(bigquery, mapping, key_rendering, snapshot_table, staging_table)
            excluded = _excluded_keys(bigquery, mapping, check, snapshot_table)
            if renderings is not None and excluded is not None:
                query.prove(key_rendering, renderings, excluded)
        proven = _count_proven(bigquery, query)
        log.info("BigQuery proved %d source rows unchanged; the rest is planned in Python", proven)

        source_rows = bigquery.iter_rows(query.source_remainder(), parameters=query.parameters)
        target_rows = _target_records(bigquery.iter_rows(query.target_remainder(), parameters=query.parameters), mapping)
        plan = plan_changes(source_rows, target_rows, mapping, include_orphans=include_orphans)
    finally:
        _drop_tables(client, created)

    plan.read_source += proven
    plan.read_target += proven
    plan.unchanged += proven
    if (plan.read_source, plan.read_target) != (source_count, target_count):
        # Unreachable unless the proof or the reads back are wrong. A silent loss is worse than a stop.
        raise AssertionError(
            f"the plan read {plan.read_source} source rows and {plan.read_target} target records, "
            f"but {source_count} and {target_count} were staged"
        )
    return WarehousePlan(plan=plan, proven_unchanged=proven)


def _drop_tables(client: Any, tables: list[str]) -> None:
    from google.api_core.exceptions import GoogleAPIError

    for table in reversed(tables):
        try:
            client.delete_table(table, not_found_ok=True)
        except GoogleAPIError as err:
            # Logged, not raised, so that it does not hide the run's own error. The table expires.
            log.warning("Could not drop staging table %s, which expires within a day: %s", table, err)


def _snapshot_source(
    bigquery: BigQueryRunner, client: Any, source_sql: str, snapshot_table: str, created: list[str]
) -> tuple[dict[str, str], int]:
    """Run the source query once into a table, so that every later query reads the same rows.

    Returns the column types by name, and the row count.
    """
    body = source_sql.strip().rstrip(";")  # a semicolon inside the subquery is a syntax error
    seconds = int(STAGING_EXPIRATION.total_seconds())
    sql = (
        f"CREATE TABLE {quote_table(snapshot_table)} "
        f"OPTIONS(expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {seconds} SECOND)) "
        f"AS SELECT * FROM (\n{body}\n)"
    )
    for _ in bigquery.iter_rows(sql):
        pass
    created.append(snapshot_table)  # only now, so that a table another run created is never dropped
    table = client.get_table(snapshot_table)
    rows = list(bigquery.iter_rows(f"SELECT COUNT(*) AS row_count FROM {quote_table(snapshot_table)}"))
    return _column_types(table.schema), int(rows[0]["row_count"])


def _column_types(schema: Iterable[Any]) -> dict[str, str]:
    """Return the type of each column by name, with the collation of a collated STRING column.

    Under a collation such as 'und:ci', `=`, joins and GROUP BY compare STRING values by that
    collation, so "Acme" would equal "ACME" and a changed row would be proven unchanged. Such a
    column's type reads "STRING COLLATE und:ci", which no rendering takes.
    """
    types = {}
    for field in schema:
        column_type = str(field.field_type).upper()
        collation = field.to_api_repr().get("collation")
        types[field.name] = f"{column_type} COLLATE {collation}" if collation else column_type
    return types


def _renderings(
    mapping: Mapping, schema: dict[str, str]
) -> tuple[Rendering | None, list[Rendering] | None]:
    """Return the key's rendering and the fields' renderings.

    Where the key or any field has no rendering, nothing is proven, and its part is None.
    """
    key = mapping.key
    key_type = schema.get(key.source)
    key_rendering = None if key_type is None else render_key(key, key_type, f"s.{quote_identifier(key.source)}")
    if key_rendering is None:
        log.warning(
            "No SQL rendering for the key column %s (%s) of %s (%s), so BigQuery proves no row unchanged "
            "and every row is planned in Python",
            key.source,
            key_type or "missing",
            key.target,
            key.type.name,
        )
        return None, None
    renderings: list[Rendering] = []
    unproven: list[str] = []
    for field in mapping.fields:
        column_type = schema.get(field.source)
        rendering = None
        if column_type is not None:
            rendering = render_field(field, column_type, f"s.{quote_identifier(field.source)}")
        if rendering is None:
            unproven.append(f"{field.source} ({column_type or 'missing'}) -> {field.target} ({field.type.name})")
        else:
            renderings.append(rendering)
    if unproven:
        log.warning(
            "No SQL rendering for %s, so BigQuery proves no row unchanged and every row is planned in Python",
            ", ".join(unproven),
        )
        return key_rendering, None
    return key_rendering, renderings


def _stage_target(
    client: Any,
    bq: Any,
    records: Iterable[MappingABC[str, Any]],
    mapping: Mapping,
    check: _ProvableCheck,
    staging_table: str,
    created: list[str],
) -> int:
    """Load the target records into a new staging table with a load job of newline-delimited JSON.

    Returns the number of records loaded.
    """
    schema = [bq.SchemaField(_staged_name(position), "STRING") for position in range(len(mapping.target_fields()))]
    schema += [bq.SchemaField(FOLDED_KEY_COLUMN, "STRING"), bq.SchemaField(PROVABLE_COLUMN, "BOOL")]
    table = bq.Table(staging_table, schema=schema)
    table.expires = datetime.now(UTC) + STAGING_EXPIRATION
    # NOTE: bqemulator 1.1 accepts the expiration but does not store it, so no test shows it set.
    table = client.create_table(table)  # raises Conflict if the table exists, so no other run's rows mix in
    created.append(staging_table)
    collated = sorted({f"{name} {kind}" for name, kind in _column_types(table.schema).items() if " COLLATE " in kind})
    if collated:
        # A dataset's default collation applies to new tables, and the proof compares staged text
        # with `=`, which a collation such as 'und:ci' makes case-insensitive.
        raise ValueError(
            f"staging table {staging_table} got a collation from its dataset ({', '.join(collated)}); "
            "stage in a dataset without a default collation"
        )

    with tempfile.TemporaryFile() as handle:
        count = _write_staging_file(records, mapping, check, handle)
        if count == 0:
            # An empty target, as on the first run into a new object. The table already has its
            # schema, and bqemulator 1.1 fails an upload of no bytes.
            log.info("Staged no target records in %s", staging_table)
            return 0
        handle.seek(0)
        config = bq.LoadJobConfig(
            schema=schema, source_format=bq.SourceFormat.NEWLINE_DELIMITED_JSON, write_disposition="WRITE_APPEND"
        )
        # No size is passed, so the client sends a resumable upload. With a known size under
        # 5 MiB it sends a multipart upload instead, which bqemulator 1.1 rejects.
        job = client.load_table_from_file(handle, staging_table, job_config=config, rewind=True)
        job.result()
    log.info("Staged %d target records in %s", count, staging_table)
    return count


def _raise_for_duplicates(
    bigquery: BigQueryRunner, mapping: Mapping, key_rendering: Rendering, snapshot_table: str, staging_table: str
) -> None:
    """Raise DuplicateKeyError for a key repeated on either side, where SQL compares keys as Python does.

    The target is checked on the comparable key computed in Python while staging. The source is
    checked only on keys that `plan_changes` would accept and compare exactly as SQL does: ASCII
    text without NUL within the key's length, or INT64. Other source keys are never proven, so
    `plan_changes` checks them.
    """
    key = mapping.key
    case_sensitive = not (key.type.is_text and not mapping.key_case_sensitive)
    # plan_changes lists a repeated key as converted (NFC text, an integer without leading zeros),
    # which is the comparable key unless keys fold case. Then it lists the spelling of one record.
    spelling = FOLDED_KEY_COLUMN if case_sensitive else _staged_name(0)
    target_sql = (
        f"SELECT MIN({spelling}) AS spelling FROM {quote_table(staging_table)} "
        f"WHERE {FOLDED_KEY_COLUMN} IS NOT NULL GROUP BY {FOLDED_KEY_COLUMN} HAVING COUNT(*) > 1"
    )
    repeated = sorted(row["spelling"] for row in bigquery.iter_rows(target_sql))
    if repeated:
        raise DuplicateKeyError("target", key.target, repeated, case_sensitive=case_sensitive)

    rendered = key_rendering.sql
    if key.type.is_text:
        conditions = [f"{rendered} != ''", rf"NOT REGEXP_CONTAINS({rendered}, r'[^\x01-\x7F]')"]
        if key.length is not None:
            conditions.append(f"LENGTH({rendered}) <= {int(key.length)}")
        compared = rendered if case_sensitive else f"LOWER({rendered})"
    else:
        conditions = [f"{rendered} IS NOT NULL"]
        compared = rendered
    source_sql = (
        f"SELECT MIN(k) AS spelling FROM (SELECT {rendered} AS k, {compared} AS compared "
        f"FROM {quote_table(snapshot_table)} AS s WHERE {' AND '.join(conditions)}) "
        "GROUP BY compared HAVING COUNT(*) > 1"
    )
    repeated = sorted(row["spelling"] for row in bigquery.iter_rows(source_sql))
    if repeated:
        raise DuplicateKeyError("source", key.target, repeated, case_sensitive=case_sensitive)


def _excluded_keys(
    bigquery: BigQueryRunner, mapping: Mapping, check: _ProvableCheck, snapshot_table: str
) -> list[str] | None:
    """Return the ASCII comparable forms of non-ASCII keys on both sides, or None when there are too many."""
    if mapping.key.type.is_text:
        column = f"s.{quote_identifier(mapping.key.source)}"
        sql = (
            f"SELECT DISTINCT {column} AS k FROM {quote_table(snapshot_table)} AS s "
            rf"WHERE REGEXP_CONTAINS({column}, r'[^\x00-\x7F]')"
        )
        convert = source_converter(mapping.key)
        for row in bigquery.iter_rows(sql):
            try:
                check.note_key(convert(row["k"]))
            except _ERRORS:
                continue  # plan_changes rejects the row, and a rejected row claims no key
            if len(check.excluded_keys) > MAX_EXCLUDED_KEYS:
                break
    if len(check.excluded_keys) > MAX_EXCLUDED_KEYS:
        log.warning(
            "More than %d non-ASCII keys fold to ASCII, so BigQuery proves no row unchanged", MAX_EXCLUDED_KEYS
        )
        return None
    return sorted(check.excluded_keys)


class _ProofQuery:
    """The SQL that counts the proven pairs and reads back everything else; without `prove`, it proves nothing."""

    def __init__(self, mapping: Mapping, snapshot_table: str, staging_table: str) -> None:
        self.mapping = mapping
        self.snapshot = quote_table(snapshot_table)
        self.staging = quote_table(staging_table)
        self.key_sql: str | None = None
        self.proven: str | None = None
        self.parameters: dict[str, Any] | None = None

    def prove(self, key_rendering: Rendering, renderings: list[Rendering], excluded_keys: list[str]) -> None:
        key_column = f"t.{_staged_name(0)}"
        conditions = [f"t.{PROVABLE_COLUMN}"]
        for position, rendering in enumerate(renderings, start=1):
            conditions.append(f"{rendering.sql} = t.{_staged_name(position)}")
        if excluded_keys:
            fold = self.mapping.key.type.is_text and not self.mapping.key_case_sensitive
            compared = f"LOWER({key_column})" if fold else key_column
            conditions.append(f"{compared} NOT IN UNNEST(@excluded_keys)")
            self.parameters = {"excluded_keys": excluded_keys}
        self.key_sql = key_rendering.sql
        self.proven = (
            f"proven AS (SELECT {key_column} AS k FROM {self.snapshot} AS s "
            f"JOIN {self.staging} AS t ON {self.key_sql} = {key_column} "
            f"WHERE {' AND '.join(conditions)})"
        )

    def count(self) -> str | None:
        if self.proven is None:
            return None
        return f"WITH {self.proven} SELECT COUNT(*) AS proven FROM proven"

    def source_remainder(self) -> str:
        if self.proven is None:
            return f"SELECT s.* FROM {self.snapshot} AS s"
        return (
            f"WITH {self.proven} SELECT s.* FROM {self.snapshot} AS s "
            f"LEFT JOIN proven AS p ON {self.key_sql} = p.k WHERE p.k IS NULL"
        )

    def target_remainder(self) -> str:
        columns = ", ".join(f"t.{_staged_name(position)}" for position in range(len(self.mapping.target_fields())))
        if self.proven is None:
            return f"SELECT {columns} FROM {self.staging} AS t"
        return (
            f"WITH {self.proven} SELECT {columns} FROM {self.staging} AS t "
            f"LEFT JOIN proven AS p ON t.{_staged_name(0)} = p.k WHERE p.k IS NULL"
        )


def _count_proven(bigquery: BigQueryRunner, query: _ProofQuery) -> int:
    sql = query.count()
    if sql is None:
        return 0
    rows = list(bigquery.iter_rows(sql, parameters=query.parameters))
    return int(rows[0]["proven"])


def _target_records(rows: Iterable[dict[str, Any]], mapping: Mapping) -> Iterator[dict[str, Any]]:
    names = mapping.target_fields()
    for row in rows:
        yield {name: row[_staged_name(position)] for position, name in enumerate(names)}
