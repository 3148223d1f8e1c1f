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

Errors: the target's are raised while staging and by one grouping query, before any source
error, as `plan_changes` reads the whole target first. The source's are raised by `plan_changes`
itself, on every source row that could take part, read back in snapshot order
(`_raise_source_error`).
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
from typing import IO, Any, NoReturn, Protocol

from airflow_provider_m2m.reconcile.diff import missing_key_label, plan_changes
from airflow_provider_m2m.reconcile.mapping import FieldMapping, FieldType, Mapping
from airflow_provider_m2m.reconcile.normalize import (
    NULL_TEXT,
    InvalidValue,
    source_converter,
    target_converter,
)
from airflow_provider_m2m.reconcile.plan import DuplicateKeyError, Plan, Rejection, TargetRecordError

log = logging.getLogger(__name__)

# Staging tables expire on their own if the run dies before it drops them.
STAGING_EXPIRATION = timedelta(days=1)
# Above this many non-ASCII keys whose NFC or case-folded form is ASCII, the run proves nothing
# and plans every row in Python, because the keys travel as one query parameter.
MAX_EXCLUDED_KEYS = 10_000

PROVABLE_COLUMN = "m2m_provable"
FOLDED_KEY_COLUMN = "m2m_folded_key"
# The key as plan_changes spells it in errors and orphans: converted, but not case-folded.
KEY_SPELLING_COLUMN = "m2m_key"
# The record's 1-based position in `target_records`, which decides the spelling that plan_changes
# lists for a repeated key.
RECORD_NUMBER_COLUMN = "m2m_record"
# Whether a field's text does not parse, so that plan_changes would raise TargetRecordError for
# the record where a source row differs from it.
UNPARSED_COLUMN = "m2m_unparsed"
# A source row's position in the snapshot, added only by the queries that need one.
SOURCE_ROW_COLUMN = "m2m_source_row"
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


def query_body(source_sql: str) -> str:
    """Return `source_sql` without the semicolons, comments and whitespace after its last token.

    The result can be wrapped as a subquery, `(\n<body>\n)`, because nothing after the last
    token is left to end it early. GoogleSQL's lexical rules decide what is a comment: `--` and `#`
    run to the end of the line, `/* */` does not nest, and neither starts inside a string literal
    ('', "", triple-quoted, raw or bytes) or a quoted identifier. Raises ValueError for SQL with
    no query, with a statement after a semicolon (a script), or with an unterminated string
    literal, quoted identifier or comment.
    """
    end = 0  # the index after the last character of the last token
    semicolon = -1  # the index of the first semicolon that ends the query
    position = 0
    length = len(source_sql)
    while position < length:
        character = source_sql[position]
        pair = source_sql[position : position + 2]
        if character.isspace():
            position += 1
        elif pair == "--" or character == "#":
            position = _line_end(source_sql, position)
        elif pair == "/*":
            close = source_sql.find("*/", position + 2)
            if close < 0:
                location = _location(source_sql, position)
                raise ValueError(f"source_sql has an unterminated /* comment at {location}; close it with */")
            position = close + 2
        elif character == ";":
            if semicolon < 0:
                semicolon = position
            position += 1
        else:
            if semicolon >= 0:
                raise ValueError(
                    f"source_sql has another statement after the semicolon at {_location(source_sql, semicolon)}. "
                    "The warehouse path runs it as one subquery, so pass a single query"
                )
            position = _token_end(source_sql, position)
            end = position
    if end == 0:
        raise ValueError("source_sql contains no query, only comments, semicolons or whitespace")
    return source_sql[:end]


def _line_end(sql: str, start: int) -> int:
    """Return the index after the line terminator that ends the comment at `start`, or len(sql).

    GoogleSQL ends a `--` or `#` comment at CR as well as LF, so a lone CR must end it here too,
    or the next line would be cut off as part of the comment.
    """
    for position in range(start, len(sql)):
        if sql[position] in "\r\n":
            return position + 1
    return len(sql)


def _token_end(sql: str, start: int) -> int:
    """Return the index after the token at `start`: a quoted literal or identifier, or one other character."""
    quote = sql[start]
    if quote not in "'\"`":
        return start + 1
    delimiter = quote * 3 if quote != "`" and sql.startswith(quote * 3, start) else quote
    position = start + len(delimiter)
    while position < len(sql):
        if sql[position] == "\\":
            # A backslash keeps the next character inside the literal, in raw strings too, where
            # GoogleSQL keeps both characters in the value.
            position += 2
        elif sql.startswith(delimiter, position):
            return position + len(delimiter)
        elif sql[position] == "\n" and len(delimiter) == 1 and quote != "`":
            break  # only triple-quoted literals span lines
        else:
            position += 1
    kind = "quoted identifier" if quote == "`" else "string literal"
    raise ValueError(f"source_sql has an unterminated {kind} at {_location(sql, start)}; close it with {delimiter}")


def _location(sql: str, index: int) -> str:
    line = sql.count("\n", 0, index) + 1
    column = index - (sql.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


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

    def comparable_fields(self, texts: tuple[Any, ...]) -> list[str] | None:
        """Return the comparable form of each field's text, or None where plan_changes could raise
        TargetRecordError for the record: a text that does not parse, or one with NUL."""
        comparable = []
        for (_, to_target), text in zip(self.checks, texts):
            if isinstance(text, str) and "\x00" in text:
                return None
            try:
                comparable.append(to_target(text))
            except _ERRORS:
                return None
        return comparable

    def provable(self, key_text: Any, texts: tuple[Any, ...], comparable: list[str] | None) -> bool:
        if self.key_rendering is None or self.renderings is None or comparable is None:
            return False
        if not isinstance(key_text, str) or not key_text.isascii():
            return False
        try:
            key_values = self.key_rendering.values(key_text)
            expected_key = self.target_key(key_text)
            if any(self.source_key(value) != expected_key for value in key_values):
                return False
            for (to_source, _), rendering, text, expected in zip(self.checks, self.renderings, texts, comparable):
                if not isinstance(text, str):
                    return False
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
        comparable = check.comparable_fields(texts[1:])
        has_key = converted_key != NULL_TEXT
        row[FOLDED_KEY_COLUMN] = check.comparable_key(converted_key) if has_key else None
        row[KEY_SPELLING_COLUMN] = converted_key if has_key else None
        row[RECORD_NUMBER_COLUMN] = number
        row[UNPARSED_COLUMN] = comparable is None
        row[PROVABLE_COLUMN] = check.provable(texts[0], texts[1:], comparable)
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

    `source_sql` is one GoogleSQL query, run once as a subquery into the snapshot table
    `<staging_table>_source`. Semicolons and comments after its last token are dropped. A second
    statement raises ValueError before anything is created. `target_records` are Bulk API 2.0
    query records (field name to text), loaded into `staging_table`. Both tables get a one-day
    expiration and are dropped before returning. `staging_table` is `project.dataset.table`, must
    not exist yet, and must be in a dataset in the same location as the tables the source query
    reads.

    Raises DuplicateKeyError or TargetRecordError where `plan_changes` would, the same error with
    the same message when both apply. Unlike `plan_changes`, it runs the source query before it
    reads `target_records`, so a failing query stops the run before any target record error, and
    it raises TargetRecordError for a target value that is not text. The plan's counts include
    the proven pairs in `read_source`, `read_target` and `unchanged`.

    Where plan_changes depends on the order of the source rows (the N of a rejected row "(source
    row N, no external id)", the first target record that does not parse, and the spelling listed
    for a repeated key that folds case), this uses the order in which BigQuery scans the snapshot
    table. bqemulator keeps the source query's order there, ORDER BY included.

    NOTE: BigQuery does not document that a table keeps the order of the query that filled it, so
    there these three may differ from a plan_changes run on the source query. The rest of the plan
    and of the error, including which error is raised, does not depend on the order.
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
        # plan_changes reads the whole target before the source, so the target's errors come first.
        _raise_for_target_duplicates(bigquery, mapping, staging_table)

        query = _ProofQuery(mapping, snapshot_table, staging_table)
        excluded: list[str] | None = None
        if key_rendering is not None:
            excluded = _excluded_keys(bigquery, mapping, check, snapshot_table)
            if _source_has_duplicates(bigquery, mapping, key_rendering, snapshot_table):
                _raise_source_error(bigquery, mapping, key_rendering, snapshot_table, staging_table, excluded, None)
            if renderings is not None and excluded is not None:
                query.prove(key_rendering, renderings, excluded)
        proven, without_key = _count_proven(bigquery, query)
        log.info("BigQuery proved %d source rows unchanged; the rest is planned in Python", proven)
        keyless = _rejections_without_key(bigquery, mapping, snapshot_table) if without_key else []

        source_rows = bigquery.iter_rows(query.source_remainder(), parameters=query.parameters)
        target_rows = _target_records(bigquery.iter_rows(query.target_remainder(), parameters=query.parameters), mapping)
        try:
            plan = plan_changes(source_rows, target_rows, mapping, include_orphans=include_orphans)
        except (DuplicateKeyError, TargetRecordError) as err:
            if key_rendering is None or query.proven is None:
                raise  # planned on the whole snapshot, in its order, as the reference does
            _raise_source_error(bigquery, mapping, key_rendering, snapshot_table, staging_table, excluded, err)
    finally:
        _drop_tables(client, created)

    plan.read_source += proven + len(keyless)
    plan.read_target += proven
    plan.unchanged += proven
    if keyless:
        plan.rejected.extend(keyless)
        plan.rejected.sort(key=lambda rejection: rejection.key)  # as plan_changes sorts them
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
    body = query_body(source_sql)  # a semicolon, or a comment on the last line, would break the subquery
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
    """Return the type of each column by name, with the collation of a collated STRING column, and
    ARRAY<type> for a REPEATED column.

    Under a collation such as 'und:ci', `=`, joins and GROUP BY compare STRING values by that
    collation, so "Acme" would equal "ACME" and a changed row would be proven unchanged. Such a
    column's type reads "STRING COLLATE und:ci", which no rendering takes.
    """
    types = {}
    for field in schema:
        column_type = str(field.field_type).upper()
        collation = field.to_api_repr().get("collation")
        if collation:
            column_type = f"{column_type} COLLATE {collation}"
        if str(field.mode).upper() == "REPEATED":
            # The schema gives an ARRAY column its element type and mode REPEATED. Its values are
            # lists, which no rendering takes, so plan_changes rejects or converts them.
            column_type = f"ARRAY<{column_type}>"
        types[field.name] = column_type
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
    schema += [
        bq.SchemaField(FOLDED_KEY_COLUMN, "STRING"),
        bq.SchemaField(KEY_SPELLING_COLUMN, "STRING"),
        bq.SchemaField(RECORD_NUMBER_COLUMN, "INT64"),
        bq.SchemaField(UNPARSED_COLUMN, "BOOL"),
        bq.SchemaField(PROVABLE_COLUMN, "BOOL"),
    ]
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


def _raise_for_target_duplicates(bigquery: BigQueryRunner, mapping: Mapping, staging_table: str) -> None:
    """Raise DuplicateKeyError for a key that two staged target records share, listed as plan_changes does.

    The records are grouped on the comparable key computed in Python while staging, so the check
    covers every key. plan_changes lists a repeated key in its converted form (NFC text, an integer
    without leading zeros). Where keys fold case it lists the spelling of the last record with
    that key, because each record replaces the earlier one in its index.
    """
    key = mapping.key
    case_sensitive = not (key.type.is_text and not mapping.key_case_sensitive)
    if case_sensitive:
        spelling = f"MIN({FOLDED_KEY_COLUMN})"  # the converted key, the same for the whole group
    else:
        spelling = f"ARRAY_AGG({KEY_SPELLING_COLUMN} ORDER BY {RECORD_NUMBER_COLUMN} DESC LIMIT 1)[OFFSET(0)]"
    sql = (
        f"SELECT {spelling} AS spelling FROM {quote_table(staging_table)} "
        f"WHERE {FOLDED_KEY_COLUMN} IS NOT NULL GROUP BY {FOLDED_KEY_COLUMN} HAVING COUNT(*) > 1"
    )
    repeated = sorted(row["spelling"] for row in bigquery.iter_rows(sql))
    if repeated:
        raise DuplicateKeyError("target", key.target, repeated, case_sensitive=case_sensitive)


def _compared_key(mapping: Mapping, key_rendering: Rendering) -> str:
    """Return the SQL of the key as compared: LOWER of the text where keys fold case."""
    if mapping.key.type.is_text and not mapping.key_case_sensitive:
        return f"LOWER({key_rendering.sql})"
    return key_rendering.sql


def _simple_key_condition(key: FieldMapping, key_rendering: Rendering) -> str:
    """Return the SQL condition that a source key is one that SQL compares exactly as Python does.

    That is ASCII text without NUL, not empty and within the key's length, or an INT64. For such a
    key `source_converter` returns the text unchanged, and LOWER equals `str.casefold()`.
    """
    rendered = key_rendering.sql
    if not key.type.is_text:
        return f"{rendered} IS NOT NULL"
    conditions = [f"{rendered} != ''", rf"NOT REGEXP_CONTAINS({rendered}, r'[^\x01-\x7F]')"]
    if key.length is not None:
        conditions.append(f"LENGTH({rendered}) <= {int(key.length)}")
    return " AND ".join(conditions)


def _source_has_duplicates(
    bigquery: BigQueryRunner, mapping: Mapping, key_rendering: Rendering, snapshot_table: str
) -> bool:
    """Return whether two source rows share a key among the keys that SQL compares as Python does.

    A repeated key there must not reach the proof, which would pair one target record with both
    rows. Repeats among the other keys are found by `plan_changes`, because those rows are never
    proven.
    """
    compared = _compared_key(mapping, key_rendering)
    sql = (
        f"SELECT COUNT(*) AS repeated FROM (SELECT {compared} AS compared FROM {quote_table(snapshot_table)} AS s "
        f"WHERE {_simple_key_condition(mapping.key, key_rendering)} GROUP BY compared HAVING COUNT(*) > 1)"
    )
    rows = list(bigquery.iter_rows(sql))
    return int(rows[0]["repeated"]) > 0


def _raise_source_error(
    bigquery: BigQueryRunner,
    mapping: Mapping,
    key_rendering: Rendering,
    snapshot_table: str,
    staging_table: str,
    excluded_keys: list[str] | None,
    found: Exception | None,
) -> NoReturn:
    """Raise the error that `plan_changes` raises while it reads the whole source in snapshot order.

    While it reads the source, plan_changes raises TargetRecordError at the first row that differs
    from a target record whose value does not parse, and DuplicateKeyError at the end, listing the
    spelling of every row whose key an earlier row had. Both depend on the order of the rows and
    on every row with such a key, so the proof's remainder cannot decide them. This reads back, in
    snapshot order, every source row that could take part. Those are the rows whose key SQL finds
    repeated, is outside ASCII, equals an excluded key, or has a target record that does not parse.
    It plans them with those target records, and plan_changes raises its error. A row left out has
    a key that no other row and no such record has, so it changes neither error.

    `found` is the error that planning the remainder raised, if any. It is raised as it is if the
    rows read back raise nothing, which only a difference between BigQuery and Python could cause.
    """
    compared = _compared_key(mapping, key_rendering)
    rendered = key_rendering.sql
    snapshot = quote_table(snapshot_table)
    staging = quote_table(staging_table)
    candidates = [
        f"{compared} IN (SELECT {compared} FROM numbered AS s "
        f"WHERE {_simple_key_condition(mapping.key, key_rendering)} GROUP BY {compared} HAVING COUNT(*) > 1)",
        f"{compared} IN (SELECT {FOLDED_KEY_COLUMN} FROM {staging} WHERE {UNPARSED_COLUMN})",
    ]
    if mapping.key.type.is_text:
        candidates.append(rf"REGEXP_CONTAINS({rendered}, r'[^\x01-\x7F]')")
    parameters = None
    if excluded_keys is None:
        # NOTE: with too many excluded keys to pass, every source row is read back and becomes a
        # create in this plan, which takes memory in proportion to the source.
        candidates.append("TRUE")
    elif excluded_keys:
        candidates.append(f"{compared} IN UNNEST(@excluded_keys)")
        parameters = {"excluded_keys": excluded_keys}
    source_sql = (
        f"WITH numbered AS (SELECT s.*, ROW_NUMBER() OVER () AS {SOURCE_ROW_COLUMN} FROM {snapshot} AS s) "
        f"SELECT * EXCEPT ({SOURCE_ROW_COLUMN}) FROM numbered AS s "
        f"WHERE {rendered} IS NOT NULL AND ({' OR '.join(candidates)}) ORDER BY {SOURCE_ROW_COLUMN}"
    )
    columns = ", ".join(f"t.{_staged_name(position)}" for position in range(len(mapping.target_fields())))
    target_sql = f"SELECT {columns} FROM {staging} AS t WHERE t.{UNPARSED_COLUMN} ORDER BY t.{RECORD_NUMBER_COLUMN}"

    source_rows = bigquery.iter_rows(source_sql, parameters=parameters)
    target_rows = _target_records(bigquery.iter_rows(target_sql), mapping)
    plan_changes(source_rows, target_rows, mapping)  # raises the error, with its message
    if found is not None:
        raise found
    raise AssertionError(
        f"BigQuery found a repeated {mapping.key.target} in the source, "
        "but plan_changes found none in the rows read back"
    )


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
        self.without_key: str | None = None
        self.proven: str | None = None
        self.parameters: dict[str, Any] | None = None

    def prove(self, key_rendering: Rendering, renderings: list[Rendering], excluded_keys: list[str]) -> None:
        """Set the proof, and leave the source rows without a key out of the remainder.

        Those rows are rejected apart (`_rejections_without_key`), numbered by their place in the
        whole snapshot as plan_changes numbers them, not by their place in the remainder.
        """
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
        self.without_key = _missing_key_condition(self.mapping, "s")
        self.proven = (
            f"proven AS (SELECT {key_column} AS k FROM {self.snapshot} AS s "
            f"JOIN {self.staging} AS t ON {self.key_sql} = {key_column} "
            f"WHERE {' AND '.join(conditions)})"
        )

    def count(self) -> str | None:
        """Return the SQL that counts the proven pairs and the source rows without a key."""
        if self.proven is None:
            return None
        return (
            f"WITH {self.proven} SELECT COUNT(*) AS proven, "
            f"(SELECT COUNTIF({self.without_key}) FROM {self.snapshot} AS s) AS without_key FROM proven"
        )

    def source_remainder(self) -> str:
        if self.proven is None:
            return f"SELECT s.* FROM {self.snapshot} AS s"
        return (
            f"WITH {self.proven} SELECT s.* FROM {self.snapshot} AS s "
            f"LEFT JOIN proven AS p ON {self.key_sql} = p.k WHERE p.k IS NULL AND NOT ({self.without_key})"
        )

    def target_remainder(self) -> str:
        columns = ", ".join(f"t.{_staged_name(position)}" for position in range(len(self.mapping.target_fields())))
        if self.proven is None:
            return f"SELECT {columns} FROM {self.staging} AS t"
        return (
            f"WITH {self.proven} SELECT {columns} FROM {self.staging} AS t "
            f"LEFT JOIN proven AS p ON t.{_staged_name(0)} = p.k WHERE p.k IS NULL"
        )


def _count_proven(bigquery: BigQueryRunner, query: _ProofQuery) -> tuple[int, int]:
    """Return the number of proven pairs, and of source rows without a key that the remainder leaves out."""
    sql = query.count()
    if sql is None:
        return 0, 0
    rows = list(bigquery.iter_rows(sql, parameters=query.parameters))
    return int(rows[0]["proven"]), int(rows[0]["without_key"])


def _missing_key_condition(mapping: Mapping, alias: str) -> str:
    """Return the SQL condition that a source row has no key: NULL, or empty text.

    These are the rows that plan_changes names "(source row N, no external id)". Only a STRING
    or INT64 key column has a rendering, so only those two types reach here.
    """
    column = f"{alias}.{quote_identifier(mapping.key.source)}"
    if mapping.key.type.is_text:
        return f"({column} IS NULL OR {column} = '')"
    return f"{column} IS NULL"


def _rejections_without_key(bigquery: BigQueryRunner, mapping: Mapping, snapshot_table: str) -> list[Rejection]:
    """Return the rejections of the source rows without a key, numbered by their place in the snapshot.

    plan_changes numbers such a row by its place in the source it reads, counting from 1. The
    snapshot order is taken as the source query's order: bqemulator keeps it, and BigQuery
    documents no order for a query without ORDER BY.
    """
    column = f"s.{quote_identifier(mapping.key.source)}"
    sql = (
        f"SELECT {column} AS k, s.{SOURCE_ROW_COLUMN} AS n FROM (SELECT {column}, "
        f"ROW_NUMBER() OVER () AS {SOURCE_ROW_COLUMN} FROM {quote_table(snapshot_table)} AS s) AS s "
        f"WHERE {_missing_key_condition(mapping, 's')} ORDER BY n"
    )
    convert = source_converter(mapping.key)
    rejections = []
    for row in bigquery.iter_rows(sql):
        try:
            convert(row["k"])
        except InvalidValue as err:
            rejections.append(Rejection(missing_key_label(row["n"]), str(err)))
        else:
            # Unreachable unless the SQL condition and source_converter disagree on what a missing key is.
            raise AssertionError(f"{mapping.key.target}: source_converter accepted the missing key {row['k']!r}")
    return rejections


def _target_records(rows: Iterable[dict[str, Any]], mapping: Mapping) -> Iterator[dict[str, Any]]:
    names = mapping.target_fields()
    for row in rows:
        yield {name: row[_staged_name(position)] for position, name in enumerate(names)}
