"""Salesforce hook: OAuth client credentials or JWT bearer login, REST, sObject Collections and Bulk API 2.0.

Every request goes through one `requests.Session` whose `BearerAuth` attaches the current access
token. Salesforce rejects a session after the org's session timeout with HTTP 401
`INVALID_SESSION_ID`. `BearerAuth` then drops the token, grants a new one once and sends the
request again once. So REST calls, Collections upserts and every Bulk API 2.0 step survive a
session timeout.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, UTC
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, quote_plus

import requests
from airflow.sdk import BaseHook

from airflow_provider_m2m.auth import (
    AccessToken,
    BearerAuth,
    ClientCredentialsGrant,
    ClientSecretPost,
    JwtBearerGrant,
    TokenProvider,
)
from airflow_provider_m2m.auth.errors import KeyLoadError, OAuthError
from airflow_provider_m2m.hooks._connection import (
    ConnectionFieldError,
    ConnectionFields,
    M2MConnectionMixin,
    Timeouts,
    TimeoutSession,
    argument_error,
    build_token_endpoint,
    describe_token,
    node_token_cache,
    register_airflow_hooks,
)
from airflow_provider_m2m.reconcile.mapping import NULL
from airflow_provider_m2m.reconcile.result import RecordOutcome

if TYPE_CHECKING:
    import pyarrow as pa
    from simple_salesforce import Salesforce

log = logging.getLogger(__name__)

# A parsed Bulk API 2.0 query result page: a list of rows or an Arrow table.
PageT = TypeVar("PageT", bound=Sized)

FLOWS = ("client_credentials", "jwt_bearer")
PRODUCTION_LOGIN_URL = "https://login.salesforce.com"
SANDBOX_LOGIN_URL = "https://test.salesforce.com"
DEFAULT_API_VERSION = "62.0"
# sObject Collections upsert by external id arrived in REST API version 46.0.
MIN_API_VERSION = 46.0
DEFAULT_SESSION_LIFETIME_SECONDS = 7200

# sObject Collections take at most 200 records per request (Salesforce REST API Developer Guide,
# "sObject Collections").
COLLECTIONS_BATCH_SIZE = 200
DEFAULT_BULK_THRESHOLD = 200
# Bulk API 2.0 accepts at most 150 MB of base64-encoded data per job upload, which Salesforce's
# guide equates to about 100 MB of CSV before encoding.
MAX_BULK_UPLOAD_BYTES = 100_000_000
# Rows per page of Bulk API 2.0 query results: large pages mean fewer requests, and each page
# is parsed in memory, so 100,000 rows of a typical object stay under about 100 MB. At this size
# a 1,000,000-record object is read in 10 result requests.
BULK_QUERY_PAGE_SIZE = 100_000
# Bulk job status polls wait 1 s, then twice as long each time up to 30 s. Every poll counts
# against the org's daily API request allocation, so a job of one minute costs 6 polls and one of
# five minutes 14.
POLL_FIRST_INTERVAL_SECONDS = 1.0
POLL_MAX_INTERVAL_SECONDS = 30.0
DEFAULT_BULK_JOB_TIMEOUT_SECONDS = 3600.0

# Bulk API 2.0 CSV: an empty cell leaves the field unchanged, "#N/A" sets it to null.
BULK_CSV_NULL = "#N/A"

# A SOQL statement is at most 100,000 characters long by default (Salesforce, "SOQL and SOSL Limits
# for Search Queries").
MAX_SOQL_LENGTH = 100_000
# A REST request's URI and headers together are at most 16,384 bytes (Salesforce Help article
# 000386264, "Maximum number of rows returned by SOQL queries over the REST API"). 12,000 bytes of
# percent-encoded SOQL leave about 4 KB for the path, the bearer token and the other headers.
MAX_REST_QUERY_BYTES = 12_000
# SOQL quoted strings escape these characters with a backslash (SOQL and SOSL Reference, "Quoted
# String Escape Sequences").
_SOQL_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
# The status code that starts a Bulk API 2.0 sf__Error cell, as in "ENTITY_IS_DELETED:entity is deleted:--".
_BULK_ERROR_CODE = re.compile(r"^([A-Z][A-Z_]*):")
# The part of pyarrow's CSV error for a row of the wrong length that comes before the row's text.
_CSV_COLUMN_COUNT_ERROR = re.compile(r"Expected \d+ columns, got \d+")

# Hints for the login errors Salesforce returns most often, keyed by a lowercase fragment of
# its error_description.
_LOGIN_ERROR_HINTS: tuple[tuple[str, str], ...] = (
    (
        "audience is invalid",
        "The assertion's aud must be https://login.salesforce.com for a production org or "
        "https://test.salesforce.com for a sandbox: set is_sandbox to match the org, or set audience.",
    ),
    (
        "user hasn't approved this consumer",
        "Pre-authorize the user for the connected app: set Permitted Users to 'Admin approved users "
        "are pre-authorized' and add the user's profile or a permission set to the app.",
    ),
    (
        "user is not admin approved",
        "Add the user's profile or a permission set to the connected app's policies.",
    ),
    (
        "invalid assertion",
        "The assertion was not accepted: upload the certificate of this private key to the connected "
        "app (Use digital signatures), check that the consumer key belongs to that app, and that "
        "the worker's clock is correct.",
    ),
    (
        "request not supported on this domain",
        "The client credentials flow works only on the org's My Domain URL: set host to "
        "https://<your-domain>.my.salesforce.com instead of login.salesforce.com or test.salesforce.com.",
    ),
    (
        "no client credentials user enabled",
        "Enable the client credentials flow on the connected app and set its Run As user.",
    ),
    (
        "invalid client credentials",
        "Check the consumer key (login) and consumer secret (password) against the connected app.",
    ),
    (
        "authentication failure",
        "Check that username is an active user of this org (a sandbox username usually ends with "
        "the sandbox name) and that the connected app is in the same org.",
    ),
)


class SalesforceLoginError(OAuthError):
    """Salesforce rejected the login; the message names the setting to change.

    A subclass of `OAuthError`, so the token provider counts it as a failed grant, with the
    error code and description Salesforce sent.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str,
        description: str | None,
        connection_id: str,
        status_code: int | None,
    ) -> None:
        super().__init__(error, description, False, connection_id, status_code=status_code)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SalesforceApiError(Exception):
    """A Salesforce API request failed; carries the HTTP status and Salesforce's error codes."""

    def __init__(
        self, message: str, *, status_code: int | None = None, error_codes: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_codes = tuple(error_codes)


class SalesforceWriteError(SalesforceApiError):
    """Raised when a write request failed and the write stopped there.

    `outcomes` has one outcome per input record, in input order.

    Records of the requests that succeeded keep their outcomes. Those of the failed request are
    "failed" with its error, because Salesforce may have written some of them before it failed,
    and those never sent are "unprocessed".
    """

    def __init__(self, error: SalesforceApiError, outcomes: Sequence[RecordOutcome]) -> None:
        super().__init__(str(error), status_code=error.status_code, error_codes=error.error_codes)
        self.outcomes = list(outcomes)


@dataclass(frozen=True)
class SalesforceSettings:
    """The validated fields of a salesforce_m2m connection."""

    connection_id: str
    flow: str
    my_domain_url: str | None
    consumer_key: str
    api_version: str
    session_lifetime: timedelta
    verify: bool | str
    timeouts: Timeouts

    @classmethod
    def from_fields(cls, fields: ConnectionFields) -> SalesforceSettings:
        flow = fields.choice(
            "flow",
            FLOWS,
            required=True,
            hint="set it to client_credentials or jwt_bearer; the flow is never guessed from the other fields",
        )
        assert flow is not None

        my_domain_url = fields.url(
            "host",
            required=flow == "client_credentials" or not fields.is_set("token_host"),
            hint="set it to the org's My Domain URL, https://<your-domain>.my.salesforce.com",
        )
        consumer_key = fields.text("login", required=True, hint="set it to the connected app's consumer key")
        assert consumer_key is not None

        api_version = fields.text("api_version", default=DEFAULT_API_VERSION)
        assert api_version is not None
        api_version = api_version.removeprefix("v")
        try:
            version_number = float(api_version)
        except ValueError:
            raise fields.error("api_version", f"{api_version!r} is not a version number like 62.0") from None
        if version_number < MIN_API_VERSION:
            raise fields.error(
                "api_version", f"{api_version} is too old; sObject Collections upsert needs 46.0 or later"
            )
        lifetime = fields.integer(
            "session_lifetime_seconds", default=DEFAULT_SESSION_LIFETIME_SECONDS, minimum=60
        )
        assert lifetime is not None

        return cls(
            connection_id=fields.connection_id,
            flow=flow,
            my_domain_url=my_domain_url,
            consumer_key=consumer_key,
            api_version=api_version,
            session_lifetime=timedelta(seconds=lifetime),
            verify=fields.ca_bundle(),
            timeouts=fields.timeouts(),
        )


def build_salesforce_grant(fields: ConnectionFields, settings: SalesforceSettings) -> Any:
    """Build the grant of the connection's flow, validating the fields that flow needs."""
    if settings.flow == "client_credentials":
        secret = fields.secret(
            "password", required=True, hint="set it to the connected app's consumer secret"
        )
        assert secret is not None and settings.my_domain_url is not None
        ignored = [name for name in ("username", "private_key") if fields.is_set(name)]
        if ignored:
            log.warning(
                "Connection %r uses flow client_credentials; %s are set but not used",
                settings.connection_id,
                ", ".join(ignored),
            )
        # Salesforce documents client_id and client_secret in the request body for this flow.
        return ClientCredentialsGrant(
            token_url=f"{settings.my_domain_url}/services/oauth2/token",
            client_auth=ClientSecretPost(settings.consumer_key, secret),
        )

    username = fields.text("username", required=True, hint="set it to the Salesforce username to log in as")
    private_key = fields.private_key(
        "private_key",
        "private_key_passphrase",
        required=True,
        hint="set it to the private key whose certificate is uploaded to the connected app",
    )
    token_host = fields.url("token_host", default=settings.my_domain_url)
    audience = fields.url("audience")
    if audience is None:
        audience = SANDBOX_LOGIN_URL if fields.boolean("is_sandbox") else PRODUCTION_LOGIN_URL
    if fields.is_set("password"):
        log.warning(
            "Connection %r uses flow jwt_bearer; the consumer secret is set but not used",
            settings.connection_id,
        )
    assert username is not None and token_host is not None
    # RFC 7523 section 2.1 with Salesforce's claims: iss is the consumer key, sub the username and
    # aud the login server, which differs from the URL the grant is posted to.
    return JwtBearerGrant(
        token_url=f"{token_host}/services/oauth2/token",
        issuer=settings.consumer_key,
        subject=username,
        audience=audience,
        private_key=private_key,
    )


def explain_login_error(err: OAuthError, connection_id: str) -> SalesforceLoginError:
    """Turn a token endpoint error into a message that names the setting to change."""
    description = err.description or ""
    lowered = description.lower()
    hint = next((text for fragment, text in _LOGIN_ERROR_HINTS if fragment in lowered), None)
    if hint is None:
        hint = "Check the connection's flow, consumer key and credentials against the connected app."
    detail = f"{err.error}: {description}" if description else err.error
    message = f"Connection {connection_id!r}: Salesforce rejected the login ({detail}). {hint}"
    return SalesforceLoginError(
        message,
        error=err.error,
        description=err.description,
        connection_id=connection_id,
        status_code=err.status_code,
    )


class _ExplainedGrant:
    """A grant whose OAuth errors become `SalesforceLoginError` with a hint; otherwise the inner grant."""

    def __init__(self, grant: Any, connection_id: str) -> None:
        self._grant = grant
        self._connection_id = connection_id
        self.grant_type = getattr(grant, "grant_type", "unknown")

    def fingerprint(self) -> str:
        return self._grant.fingerprint()

    def secret_values(self) -> tuple[str, ...]:
        return tuple(getattr(self._grant, "secret_values", lambda: ())())

    def obtain(self, endpoint: Any, **kwargs: Any) -> AccessToken:
        try:
            return self._grant.obtain(endpoint, **kwargs)
        except OAuthError as err:
            raise explain_login_error(err, self._connection_id) from err


def is_session_rejected(response: requests.Response) -> bool:
    """Tell whether Salesforce rejected the access token, as it does after the session timeout.

    Salesforce sends HTTP 401 with `[{"errorCode": "INVALID_SESSION_ID", ...}]` from REST and Bulk
    API 2.0; RFC 6750 section 3.1 servers send `WWW-Authenticate: Bearer error="invalid_token"`.
    """
    if response.status_code != 401:
        return False
    if 'error="invalid_token"' in response.headers.get("WWW-Authenticate", ""):
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    items = body if isinstance(body, list) else [body]
    return any(isinstance(item, Mapping) and item.get("errorCode") == "INVALID_SESSION_ID" for item in items)


def _error_codes(body: Any) -> list[str]:
    items = body if isinstance(body, list) else [body]
    return [str(item["errorCode"]) for item in items if isinstance(item, Mapping) and "errorCode" in item]


def _error_text(errors: Any) -> str:
    """Join Salesforce record errors (`statusCode` or `errorCode`, `message`, `fields`) into one line."""
    if not isinstance(errors, list):
        return str(errors)
    parts = []
    for item in errors:
        if not isinstance(item, Mapping):
            parts.append(str(item))
            continue
        code = item.get("statusCode") or item.get("errorCode") or "ERROR"
        text = f"{code}: {item.get('message', '')}".strip()
        if item.get("fields"):
            text += f" [{', '.join(str(field) for field in item['fields'])}]"
        parts.append(text)
    return "; ".join(parts)


def _iso_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(
            f"naive datetime {value.isoformat()} has no time zone; Salesforce needs an aware one"
        )
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def json_value(value: Any) -> Any:
    """Convert a record value for a REST or Collections JSON body; NULL becomes JSON null."""
    if value is NULL or value is None:
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        # A JSON string keeps every digit; Salesforce parses numeric fields from strings.
        return str(value)
    if isinstance(value, datetime):
        return _iso_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} to Salesforce")


def csv_value(value: Any) -> str:
    """Convert a record value for a Bulk API 2.0 CSV cell; NULL becomes `#N/A` and None an empty cell."""
    if value is NULL:
        return BULK_CSV_NULL
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _iso_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal | str):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Salesforce")


def has_literal_csv_null(record: Mapping[str, Any]) -> bool:
    """Tell whether a value other than the NULL sentinel would be written as the CSV cell `#N/A`."""
    return any(
        value is not NULL and value is not None and csv_value(value) == BULK_CSV_NULL
        for value in record.values()
    )


def _strip_attributes(value: Any) -> Any:
    """Drop the `attributes` entries Salesforce adds to each record and nested record."""
    if isinstance(value, Mapping):
        return {key: _strip_attributes(item) for key, item in value.items() if key != "attributes"}
    if isinstance(value, list):
        return [_strip_attributes(item) for item in value]
    return value


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _csv_page_rows(response: requests.Response) -> list[dict[str, str]]:
    """Parse a Bulk API 2.0 query result page into one dict of CSV text per row."""
    # Salesforce sends CSV as UTF-8; without a charset requests would decode it as Latin-1.
    # utf-8-sig drops a byte order mark, as pyarrow's CSV reader does.
    response.encoding = "utf-8-sig"
    return _csv_rows(response.text)


def _csv_header(content: bytes) -> list[str] | None:
    """Return the names in the header row of a CSV document, or None when it has no rows."""
    lines = codecs.iterdecode(io.BytesIO(content), "utf-8-sig", errors="replace")
    return next(csv.reader(lines), None)


def _csv_page_table(response: requests.Response) -> pa.Table:
    """Parse a Bulk API 2.0 query result page into an Arrow table of string columns.

    The values are the same as `_csv_page_rows` returns: an empty value stays an empty string,
    never a null, and a quoted value keeps its line breaks. Invalid UTF-8 is replaced with
    U+FFFD, as requests does when it decodes the page for `_csv_page_rows`. Raises ValueError
    for a page that is not valid CSV.
    """
    import pyarrow as pa

    content = response.content
    header = _csv_header(content)
    if not header:  # no rows, or only an empty line, which csv.reader also reads as no rows
        return pa.table({})
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        content = content.decode("utf-8", errors="replace").encode("utf-8")
    if not content.endswith((b"\n", b"\r")):
        # pyarrow 26 reads a header row without a line break after it as an empty file.
        content += b"\n"
    try:
        return _read_csv_strings(content, header)
    except pa.ArrowInvalid as err:
        raise ValueError(_csv_error_summary(err)) from None


def _read_csv_strings(content: bytes, header: list[str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    return pa_csv.read_csv(
        io.BytesIO(content),
        read_options=pa_csv.ReadOptions(encoding="utf8"),
        # RFC 4180 section 2.6: a quoted field may contain line breaks.
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        # Every column is text, as csv.DictReader returns it: no type inference, and no empty
        # or quoted value read as null.
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _csv_error_summary(err: Exception) -> str:
    """Return pyarrow's CSV error without the text of the row it quotes, which is record data."""
    match = _CSV_COLUMN_COUNT_ERROR.search(str(err))
    return match.group(0) if match else f"pyarrow could not parse it ({type(err).__name__})"


def soql_quote(value: str) -> str:
    """Return `value` as a quoted SOQL string literal, with its special characters escaped."""
    return "'" + "".join(_SOQL_ESCAPES.get(char, char) for char in value) + "'"


def soql_in_statements(
    prefix: str, values: Sequence[str], *, max_length: int, measure: Callable[[str], int] = len
) -> Iterator[str]:
    """Yield statements `prefix'v1', 'v2', ...)` that together list every value once, each at most `max_length` long.

    `prefix` ends with `IN (`. `measure` returns a text's length as the limit counts it, and must add
    up over concatenation, as `len` and the percent-encoded length do. Raises ValueError when one
    value alone makes a statement too long.
    """
    fixed = measure(prefix) + measure(")")
    separator = measure(", ")
    literals: list[str] = []
    size = fixed
    for value in values:
        literal = soql_quote(value)
        if literals and size + separator + measure(literal) > max_length:
            yield prefix + ", ".join(literals) + ")"
            literals, size = [], fixed
        if fixed + measure(literal) > max_length:
            raise ValueError(f"the value {value[:40]!r} makes a SOQL statement longer than {max_length} characters")
        size += measure(literal) + (separator if literals else 0)
        literals.append(literal)
    if literals:
        yield prefix + ", ".join(literals) + ")"


def _encoded_length(text: str) -> int:
    """Return the length of `text` in a URL query, percent-encoded as requests sends parameters."""
    return len(quote_plus(text))


def _text_value(value: Any) -> str:
    """Return a REST JSON value as Bulk API 2.0 CSV text: null as "", booleans as "true"/"false"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bulk_error_code(error: str) -> str | None:
    match = _BULK_ERROR_CODE.match(error)
    return match.group(1) if match else None


def _result_kinds(job: Mapping[str, Any], uploaded: int) -> list[str]:
    """Return the result lists of a finished ingest job that can hold records.

    The job's counts show when the failed and the unprocessed lists are empty: no failed records,
    and a complete job that processed every uploaded record. Reading an empty list would cost an
    API request for nothing. A count that is missing or different reads the list.
    """
    kinds = ["successfulResults"]
    if job.get("numberRecordsFailed") != 0:
        kinds.append("failedResults")
    if job.get("state") != "JobComplete" or job.get("numberRecordsProcessed") != uploaded:
        kinds.append("unprocessedrecords")
    return kinds


def _collections_record(object_name: str, record: Mapping[str, Any], operation: str) -> dict[str, Any]:
    """Build one record of an sObject Collections request body; None values are left out.

    An update names the record by `id`, as the REST API Developer Guide's examples spell it.
    """
    body: dict[str, Any] = {"attributes": {"type": object_name}}
    for name, value in record.items():
        if value is None:
            continue
        body["id" if operation == "update" and name == "Id" else name] = json_value(value)
    return body


def _every_outcome(outcomes: list[RecordOutcome | None]) -> list[RecordOutcome]:
    """Return the outcomes once each record has one; a missing outcome is a bug in this hook."""
    final = [outcome for outcome in outcomes if outcome is not None]
    assert len(final) == len(outcomes), "every input record must have exactly one outcome"
    return final


def _fail_chunk(
    err: SalesforceApiError,
    records: Sequence[Mapping[str, Any]],
    chunk: Sequence[int],
    outcomes: list[RecordOutcome | None],
    key_field: str,
    operation: str,
) -> None:
    """Mark the records of a sent request or job that have no outcome yet as failed with its error.

    Salesforce may have written them, for example when a Bulk job goes on after a timed-out poll,
    so they count as failed, never as unprocessed.
    """
    error_code = err.error_codes[0] if err.error_codes else None
    for index in chunk:
        if outcomes[index] is None:
            key = str(records[index][key_field])
            record_id = key if key_field == "Id" else None
            outcomes[index] = RecordOutcome(key, "failed", record_id, str(err), operation=operation, error_code=error_code)


def _first_error_code(errors: Any) -> str | None:
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        return errors[0].get("statusCode") or errors[0].get("errorCode")
    return None


class SalesforceM2MHook(M2MConnectionMixin, BaseHook):
    """Salesforce through a connected app, logged in with client credentials or JWT bearer.

    :param salesforce_m2m_conn_id: id of a `salesforce_m2m` connection.
    :param bulk_job_timeout_seconds: how long to wait for one Bulk API 2.0 job before failing.
    """

    conn_name_attr = "salesforce_m2m_conn_id"
    default_conn_name = "salesforce_m2m_default"
    conn_type = "salesforce_m2m"
    hook_name = "Salesforce (client credentials or JWT bearer, M2M)"

    def __init__(
        self,
        salesforce_m2m_conn_id: str = default_conn_name,
        *,
        bulk_job_timeout_seconds: float = DEFAULT_BULK_JOB_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        register_airflow_hooks()
        self.salesforce_m2m_conn_id = salesforce_m2m_conn_id
        self.bulk_job_timeout_seconds = bulk_job_timeout_seconds
        self._settings: SalesforceSettings | None = None
        self._provider: TokenProvider | None = None
        self._session: requests.Session | None = None

    # Connection and token

    @property
    def settings(self) -> SalesforceSettings:
        if self._settings is None:
            self._settings = SalesforceSettings.from_fields(self.connection_fields())
        return self._settings

    def token_provider(self) -> TokenProvider:
        """Return the connection's token provider, built on first use; building it sends no request."""
        if self._provider is None:
            fields = self.connection_fields()
            settings = self.settings
            try:
                grant = _ExplainedGrant(build_salesforce_grant(fields, settings), settings.connection_id)
            except (ConnectionFieldError, KeyLoadError):
                raise
            except ValueError as err:
                # The grant validates its arguments; name the connection field each one came from.
                raise argument_error(fields, err, {"token_url": "token_host", "issuer": "login"}) from None
            self._provider = TokenProvider(
                grant,
                connection_id=settings.connection_id,
                endpoint=build_token_endpoint(fields),
                cache=node_token_cache(),
                # Salesforce's token response has no expires_in, so the org's session timeout decides.
                default_lifetime=settings.session_lifetime,
            )
        return self._provider

    def get_token(self, force: bool = False) -> AccessToken:
        """Return a valid access token, from the cache or from a new grant."""
        return self.token_provider().get_token(force=force)

    def instance_url(self) -> str:
        token = self.get_token()
        url = token.extra.get("instance_url")
        if not isinstance(url, str) or not url:
            raise SalesforceApiError(
                f"Connection {self.salesforce_m2m_conn_id!r}: the token response has no instance_url"
            )
        return url.rstrip("/")

    def get_session(self) -> requests.Session:
        """Return the session every call uses: it authenticates, re-grants on a rejected session and times out."""
        if self._session is None:
            settings = self.settings
            session = TimeoutSession(settings.timeouts, verify=settings.verify)
            session.auth = BearerAuth(self.token_provider(), is_token_rejected=is_session_rejected)
            self._session = session
        return self._session

    def get_conn(self) -> Salesforce:
        """Return a simple-salesforce client on the hook's authenticated session.

        The client's own Authorization header is replaced on every request by the session's
        current token, so the client keeps working after the hook renews the token.
        """
        from simple_salesforce import Salesforce

        token = self.get_token()
        return Salesforce(
            instance_url=self.instance_url(),
            session_id=token.access_token,
            session=self.get_session(),
            version=self.settings.api_version,
            object_pairs_hook=dict,
        )

    # Plain REST

    def _data_url(self, path: str) -> str:
        if path.startswith("/services/"):
            return f"{self.instance_url()}{path}"
        return f"{self.instance_url()}/services/data/v{self.settings.api_version}/{path.lstrip('/')}"

    def _request(
        self, method: str, path: str, *, ok: Sequence[int] = (200, 201, 204), **kwargs: Any
    ) -> requests.Response:
        try:
            response = self.get_session().request(method, self._data_url(path), **kwargs)
        except requests.RequestException as err:
            # A timeout or a broken connection. A write may have been applied or not, so the caller
            # accounts for its records as for an HTTP error, and a rerun compares again.
            raise SalesforceApiError(
                f"Connection {self.salesforce_m2m_conn_id!r}: Salesforce {method} {path.split('?')[0]} "
                f"got no response: {type(err).__name__}: {err}"
            ) from err
        if response.status_code not in ok:
            raise self._api_error(method, path, response)
        return response

    def _api_error(self, method: str, path: str, response: requests.Response) -> SalesforceApiError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:300]
        codes = _error_codes(body)
        detail = _error_text(body) if codes else str(body)[:300]
        return SalesforceApiError(
            f"Connection {self.salesforce_m2m_conn_id!r}: Salesforce {method} {path.split('?')[0]} "
            f"returned HTTP {response.status_code}: {detail}",
            status_code=response.status_code,
            error_codes=codes,
        )

    def query_all(self, soql: str, *, batch_size: int | None = None) -> list[dict[str, Any]]:
        """Run a SOQL query through the REST API and return every record of every page.

        `batch_size` (200 to 2000) sets the records per page with the `Sforce-Query-Options`
        header; Salesforce may return smaller pages. Raises SalesforceApiError when Salesforce
        rejects the query, for example for a field that does not exist.
        """
        from simple_salesforce.exceptions import SalesforceError

        options: dict[str, Any] = {}
        if batch_size is not None:
            options["headers"] = {"Sforce-Query-Options": f"batchSize={batch_size}"}
        try:
            records = [_strip_attributes(record) for record in self.get_conn().query_all_iter(soql, **options)]
        except SalesforceError as err:
            # simple-salesforce's own message contains the whole request URL, so the statement too,
            # which for an orphan lookup lists thousands of keys.
            raise SalesforceApiError(
                f"Connection {self.salesforce_m2m_conn_id!r}: SOQL query returned HTTP {err.status}: "
                f"{_error_text(err.content)[:300]}",
                status_code=err.status,
                error_codes=_error_codes(err.content),
            ) from err
        log.info("SOQL query on connection %r returned %d records", self.salesforce_m2m_conn_id, len(records))
        return records

    def describe(self, object_name: str) -> dict[str, Any]:
        """Return the describe result of an object: its fields, types, picklist values and more."""
        return self._request("GET", f"sobjects/{quote(object_name, safe='')}/describe").json()

    # Bulk API 2.0 query

    def _bulk_query_pages(
        self, soql: str, page_size: int, parse_page: Callable[[requests.Response], PageT]
    ) -> Iterator[PageT]:
        """Run a SOQL query as a Bulk API 2.0 query job and yield each result page parsed by `parse_page`.

        Pages of at most `page_size` rows are fetched one at a time, following the
        `Sforce-Locator` header, as the iterator is consumed.
        """
        job = self._request(
            "POST",
            "jobs/query",
            json={
                "operation": "query",
                "query": soql,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
        ).json()
        job_id = job["id"]
        log.info("Bulk API 2.0 query job %s started on connection %r", job_id, self.salesforce_m2m_conn_id)
        self._wait_for_job("query", job_id)

        locator: str | None = None
        total = 0
        while True:
            params: dict[str, Any] = {"maxRecords": page_size}
            if locator:
                params["locator"] = locator
            response = self._request("GET", f"jobs/query/{job_id}/results", params=params)
            try:
                page = parse_page(response)
            except ValueError as err:
                raise SalesforceApiError(
                    f"Connection {self.salesforce_m2m_conn_id!r}: Bulk API 2.0 query job {job_id} returned "
                    f"a result page that is not valid CSV: {err}"
                ) from err
            total += len(page)
            yield page
            locator = response.headers.get("Sforce-Locator")
            if not locator or locator == "null":
                break
        log.info("Bulk API 2.0 query job %s returned %d rows", job_id, total)

    def bulk_query(self, soql: str, *, page_size: int = BULK_QUERY_PAGE_SIZE) -> Iterator[dict[str, str]]:
        """Run a SOQL query as a Bulk API 2.0 query job and yield every row of every result page.

        Values are the CSV text Salesforce writes: an empty string for null, `true`/`false`,
        ISO 8601 dates. Pages of at most `page_size` rows are fetched one at a time, following
        the `Sforce-Locator` header, as the iterator is consumed.
        """
        for rows in self._bulk_query_pages(soql, page_size, _csv_page_rows):
            yield from rows

    def bulk_query_arrow(self, soql: str, *, page_size: int = BULK_QUERY_PAGE_SIZE) -> pa.Table:
        """Run a SOQL query as a Bulk API 2.0 query job and return every row as one Arrow table.

        Needs pyarrow. Every column is a string column of the CSV text Salesforce writes, an
        empty string for null, and `table.to_pylist()` equals `list(bulk_query(...))`. pyarrow
        parses each page, so no Python object is made per value. A query with no rows returns
        the selected columns with no rows when the result has a header row, else a table with
        no columns. Raises SalesforceApiError for a page that is not valid CSV, such as a row
        with more or fewer values than the header.
        """
        import pyarrow as pa

        pages = [table for table in self._bulk_query_pages(soql, page_size, _csv_page_table) if table.num_columns]
        if not pages:
            return pa.table({})
        try:
            return pa.concat_tables(pages)
        except pa.ArrowInvalid as err:
            raise SalesforceApiError(
                f"Connection {self.salesforce_m2m_conn_id!r}: the result pages of the Bulk API 2.0 query "
                "have different columns; run the query again"
            ) from err

    def _wait_for_job(self, kind: str, job_id: str) -> dict[str, Any]:
        """Poll a Bulk API 2.0 job until it completes; raise when it fails, aborts or times out."""
        deadline = time.monotonic() + self.bulk_job_timeout_seconds
        interval = POLL_FIRST_INTERVAL_SECONDS
        while True:
            # The first poll waits too: a job is rarely done as soon as it is created or closed.
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            job = self._request("GET", f"jobs/{kind}/{job_id}").json()
            state = job.get("state")
            if state == "JobComplete":
                return job
            if state in ("Failed", "Aborted"):
                if kind == "ingest":
                    # Records of a failed ingest job still have results; the caller reads them.
                    return job
                raise SalesforceApiError(
                    f"Connection {self.salesforce_m2m_conn_id!r}: Bulk API 2.0 {kind} job {job_id} "
                    f"ended {state}: {job.get('errorMessage') or 'no error message'}"
                )
            if time.monotonic() >= deadline:
                raise SalesforceApiError(
                    f"Connection {self.salesforce_m2m_conn_id!r}: Bulk API 2.0 {kind} job {job_id} is still "
                    f"{state} after {self.bulk_job_timeout_seconds:.0f} s; raise bulk_job_timeout_seconds "
                    "or check the job in Setup > Bulk Data Load Jobs"
                )
            interval = min(interval * 2, POLL_MAX_INTERVAL_SECONDS)
            log.debug("Bulk API 2.0 %s job %s is %s; next poll in %.1f s", kind, job_id, state, interval)

    # Lookup by key

    def lookup_records(
        self,
        object_name: str,
        key_field: str,
        keys: Sequence[str],
        fields: Sequence[str] = (),
        *,
        bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
        max_soql_length: int = MAX_SOQL_LENGTH,
    ) -> list[dict[str, str]]:
        """Return `Id`, `key_field` and `fields` of every record whose `key_field` is one of `keys`.

        Runs `SELECT ... WHERE key_field IN (...)` statements of at most `max_soql_length`
        characters. Up to `bulk_threshold` keys go through REST queries, whose statements also fit
        the URI limit; more go through Bulk API 2.0 query jobs. Values are CSV text either way: ""
        for null, "true"/"false" for booleans. SOQL compares text ignoring case, so a row's key may
        differ in case from the key asked for.
        """
        selected = ", ".join(dict.fromkeys(["Id", key_field, *fields]))
        prefix = f"SELECT {selected} FROM {object_name} WHERE {key_field} IN ("
        use_rest = len(keys) <= bulk_threshold
        if use_rest:
            statements = soql_in_statements(
                prefix, keys, max_length=min(MAX_REST_QUERY_BYTES, max_soql_length), measure=_encoded_length
            )
        else:
            statements = soql_in_statements(prefix, keys, max_length=max_soql_length)

        rows: list[dict[str, str]] = []
        count = 0
        for statement in statements:
            count += 1
            if use_rest:
                rows += [{name: _text_value(value) for name, value in record.items()} for record in self.query_all(statement)]
            else:
                rows += list(self.bulk_query(statement))
        log.info(
            "Looked up %d %s keys in %d %s queries on connection %r: %d records found",
            len(keys),
            object_name,
            count,
            "REST" if use_rest else "Bulk API 2.0",
            self.salesforce_m2m_conn_id,
            len(rows),
        )
        return rows

    # Upserts

    def upsert_record(
        self, object_name: str, external_id_field: str, value: str, fields: Mapping[str, Any]
    ) -> RecordOutcome:
        """Upsert one record by external id through the REST API and return its outcome.

        A record Salesforce rejects (HTTP 400) is returned as a failed outcome; other HTTP
        errors raise `SalesforceApiError`.
        """
        body = {
            name: json_value(item)
            for name, item in fields.items()
            if item is not None and name != external_id_field
        }
        path = f"sobjects/{quote(object_name, safe='')}/{quote(external_id_field, safe='')}/{quote(str(value), safe='')}"
        response = self._request("PATCH", path, json=body, ok=(200, 201, 204, 400))
        if response.status_code == 400:
            return RecordOutcome(str(value), "failed", None, _error_text(response.json()))
        result = response.json() if response.content else {}
        created = response.status_code == 201 or bool(result.get("created"))
        return RecordOutcome(str(value), "created" if created else "updated", result.get("id"), None)

    def upsert_records(
        self,
        object_name: str,
        external_id_field: str,
        records: list[dict[str, Any]],
        *,
        bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    ) -> list[RecordOutcome]:
        """Upsert records by external id and return one outcome per input record, in input order.

        Up to `bulk_threshold` records go through sObject Collections in requests of 200; more go
        through Bulk API 2.0. Records with a text value of exactly `#N/A` still go through
        Collections, because Bulk API 2.0 would store that value as null. In a record, the
        `NULL` sentinel sets a field to null and a None value (or a missing key) leaves the field
        as it is. The outcomes' created, updated, failed
        and unprocessed counts add up to `len(records)`.

        A request that fails whole (an HTTP error, or a response without one result per record)
        stops the upsert and raises `SalesforceWriteError`, whose `outcomes` account for every record.
        """
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        sendable: list[int] = []
        for index, record in enumerate(records):
            key = record.get(external_id_field)
            if key is None or key is NULL or str(key) == "":
                outcomes[index] = RecordOutcome(
                    "", "failed", None, f"record has no value for the external id field {external_id_field}"
                )
            else:
                sendable.append(index)

        path = f"composite/sobjects/{quote(object_name, safe='')}/{quote(external_id_field, safe='')}"
        try:
            self._send_records(
                object_name, path, external_id_field, records, sendable, outcomes, "upsert", bulk_threshold=bulk_threshold
            )
        except SalesforceApiError as err:
            raise self._write_stopped(err, object_name, records, outcomes, external_id_field, "upsert") from err

        final = _every_outcome(outcomes)
        counts = Counter(outcome.status for outcome in final)
        log.info(
            "Upserted %d %s records on connection %r: %d created, %d updated, %d failed, %d unprocessed",
            len(records),
            object_name,
            self.salesforce_m2m_conn_id,
            counts["created"],
            counts["updated"],
            counts["failed"],
            counts["unprocessed"],
        )
        return final

    def _write_stopped(
        self,
        err: SalesforceApiError,
        object_name: str,
        records: Sequence[Mapping[str, Any]],
        outcomes: list[RecordOutcome | None],
        key_field: str,
        operation: str,
    ) -> SalesforceWriteError:
        """Build the error of a write that stopped at a failed request: records without an outcome were never sent."""
        for index, outcome in enumerate(outcomes):
            if outcome is None:
                key = str(records[index][key_field])
                outcomes[index] = RecordOutcome(
                    key,
                    "unprocessed",
                    key if key_field == "Id" else None,
                    f"no result, because the write stopped at a failed request: {err}",
                    operation=operation,
                )
        final = _every_outcome(outcomes)
        counts = Counter(outcome.status for outcome in final)
        log.error(
            "%s of %d %s records on connection %r stopped at a failed request: %d written, %d failed, "
            "%d unprocessed: %s",
            operation.capitalize(),
            len(records),
            object_name,
            self.salesforce_m2m_conn_id,
            counts["created"] + counts["updated"] + counts["deleted"],
            counts["failed"],
            counts["unprocessed"],
            err,
        )
        return SalesforceWriteError(err, final)

    def _send_records(
        self,
        object_name: str,
        collections_path: str,
        key_field: str,
        records: Sequence[Mapping[str, Any]],
        indexes: list[int],
        outcomes: list[RecordOutcome | None],
        operation: str,
        *,
        bulk_threshold: int,
    ) -> None:
        """Upsert or update up to `bulk_threshold` records through sObject Collections, and more through Bulk API 2.0.

        Bulk API 2.0 reads a "#N/A" cell as null, so a text value that is literally "#N/A" would
        be stored as null while its outcome reports success. sObject Collections send JSON and
        store the text, so those records go there in either case.
        """
        collections: list[int] = []
        bulk: list[int] = []
        if len(indexes) <= bulk_threshold:
            collections = indexes
        else:
            for index in indexes:
                (collections if has_literal_csv_null(records[index]) else bulk).append(index)
            if collections:
                log.info(
                    "Sending %d %s records through sObject Collections on connection %r because a value "
                    "is the text %r, which Bulk API 2.0 would store as null",
                    len(collections),
                    object_name,
                    self.salesforce_m2m_conn_id,
                    BULK_CSV_NULL,
                )
        if collections:
            self._send_collections(
                object_name, collections_path, key_field, records, collections, outcomes, operation=operation
            )
        if bulk:
            self._send_bulk(object_name, key_field, records, bulk, outcomes, operation=operation)

    def _send_collections(
        self,
        object_name: str,
        path: str,
        key_field: str,
        records: Sequence[Mapping[str, Any]],
        indexes: list[int],
        outcomes: list[RecordOutcome | None],
        *,
        operation: str,
    ) -> None:
        """Upsert (PATCH on the external id path) or update (PATCH `composite/sobjects`) records in requests of 200.

        Each outcome is keyed by the record's `key_field` value: the external id for an upsert, the
        record Id for an update.
        """
        for start in range(0, len(indexes), COLLECTIONS_BATCH_SIZE):
            chunk = indexes[start : start + COLLECTIONS_BATCH_SIZE]
            body_records = [_collections_record(object_name, records[index], operation) for index in chunk]
            # allOrNone false: each record succeeds or fails on its own, and the response lists
            # one result per record in request order (REST API Developer Guide, "Update Records
            # Using sObject Collections" and "Upsert Records Using sObject Collections").
            try:
                results = self._collections_results(
                    "PATCH", path, operation, len(chunk), json={"allOrNone": False, "records": body_records}
                )
            except SalesforceApiError as err:
                error_code = err.error_codes[0] if err.error_codes else None
                for index in chunk:
                    key = str(records[index][key_field])
                    record_id = key if operation == "update" else None
                    outcomes[index] = RecordOutcome(
                        key, "failed", record_id, str(err), operation=operation, error_code=error_code
                    )
                raise
            for index, result in zip(chunk, results, strict=True):
                key = str(records[index][key_field])
                # A failed update's result has no id, but the request named the record.
                record_id = result.get("id") or (key if operation == "update" else None)
                if result.get("success"):
                    status = "created" if result.get("created") else "updated"
                    outcomes[index] = RecordOutcome(key, status, record_id, None, operation=operation)
                else:
                    errors = result.get("errors")
                    outcomes[index] = RecordOutcome(
                        key,
                        "failed",
                        record_id,
                        _error_text(errors),
                        operation=operation,
                        error_code=_first_error_code(errors),
                    )

    def _collections_results(
        self, method: str, path: str, operation: str, count: int, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Send one sObject Collections request and return its `count` results.

        A timeout, a broken connection or a body that is not one result per record raises
        SalesforceApiError, so that the caller accounts for the request's records as for an HTTP error.
        """
        try:
            results = self._request(method, path, **kwargs).json()
        except (requests.RequestException, ValueError) as err:
            raise SalesforceApiError(
                f"Connection {self.salesforce_m2m_conn_id!r}: sObject Collections {operation} request "
                f"failed: {type(err).__name__}: {err}"
            ) from err
        if not isinstance(results, list) or len(results) != count:
            raise SalesforceApiError(
                f"Connection {self.salesforce_m2m_conn_id!r}: sObject Collections {operation} returned "
                f"{len(results) if isinstance(results, list) else 'no'} results for {count} records"
            )
        return results

    def _send_bulk(
        self,
        object_name: str,
        key_field: str,
        records: Sequence[Mapping[str, Any]],
        indexes: list[int],
        outcomes: list[RecordOutcome | None],
        *,
        operation: str,
    ) -> None:
        """Write records in Bulk API 2.0 ingest jobs whose CSV has `key_field` as first column."""
        columns: dict[str, None] = {key_field: None}
        for index in indexes:
            columns.update(dict.fromkeys(records[index]))
        header = list(columns)
        for chunk in self._bulk_chunks(header, records, indexes):
            try:
                self._run_ingest_job(object_name, key_field, header, records, chunk, outcomes, operation=operation)
            except SalesforceApiError as err:
                _fail_chunk(err, records, chunk, outcomes, key_field, operation)
                raise

    # Updates by record Id

    def update_records(
        self,
        object_name: str,
        records: Sequence[Mapping[str, Any]],
        *,
        bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    ) -> list[RecordOutcome]:
        """Update records by record Id and return one outcome per record, in input order, keyed by the Id.

        Each record contains `Id` and the fields to set: the `NULL` sentinel sets a field to null,
        and a None value leaves it as it is. Up to `bulk_threshold` records go through sObject
        Collections in requests of 200, more through Bulk API 2.0 `update` jobs, except records
        with a text value of exactly `#N/A`, as in `upsert_records`.

        An update never creates a record. A record deleted since its Id was read fails with
        `error_code` ENTITY_IS_DELETED while it is in the Recycle Bin, and an Id that was purged or
        never existed fails with INVALID_CROSS_REFERENCE_KEY. Each outcome is "updated", "failed"
        or "unprocessed", with the operation "update". A request that fails whole raises
        `SalesforceWriteError`, as in `upsert_records`.
        """
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        sendable: list[int] = []
        for index, record in enumerate(records):
            record_id = record.get("Id")
            if isinstance(record_id, str) and record_id:
                sendable.append(index)
            else:
                outcomes[index] = RecordOutcome("", "failed", None, "record has no Id to update", operation="update")

        path = "composite/sobjects"
        try:
            self._send_records(
                object_name, path, "Id", records, sendable, outcomes, "update", bulk_threshold=bulk_threshold
            )
        except SalesforceApiError as err:
            raise self._write_stopped(err, object_name, records, outcomes, "Id", "update") from err

        final = _every_outcome(outcomes)
        counts = Counter(outcome.status for outcome in final)
        log.info(
            "Updated %d of %d %s records by Id on connection %r: %d failed, %d unprocessed",
            counts["updated"],
            len(records),
            object_name,
            self.salesforce_m2m_conn_id,
            counts["failed"],
            counts["unprocessed"],
        )
        return final

    def _bulk_chunks(
        self, header: list[str], records: Sequence[Mapping[str, Any]], indexes: list[int]
    ) -> Iterator[list[int]]:
        """Split the records into groups whose CSV stays under the Bulk API 2.0 upload limit."""
        chunk: list[int] = []
        size = len(",".join(header)) + 1
        for index in indexes:
            row_size = (
                sum(len(csv_value(records[index].get(name)).encode("utf-8")) + 3 for name in header) + 1
            )
            if chunk and size + row_size > MAX_BULK_UPLOAD_BYTES:
                yield chunk
                chunk, size = [], len(",".join(header)) + 1
            chunk.append(index)
            size += row_size
        if chunk:
            yield chunk

    def _run_ingest_job(
        self,
        object_name: str,
        external_id_field: str,
        header: list[str],
        records: Sequence[Mapping[str, Any]],
        chunk: list[int],
        outcomes: list[RecordOutcome | None],
        *,
        operation: str = "upsert",
    ) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for index in chunk:
            writer.writerow([csv_value(records[index].get(name)) for name in header])

        body = {"object": object_name, "contentType": "CSV", "operation": operation, "lineEnding": "LF"}
        if operation == "upsert":
            body["externalIdFieldName"] = external_id_field
        job = self._request("POST", "jobs/ingest", json=body).json()
        job_id = job["id"]
        log.info("Bulk API 2.0 %s job %s started for %d %s records", operation, job_id, len(chunk), object_name)
        self._request(
            "PUT",
            f"jobs/ingest/{job_id}/batches",
            data=buffer.getvalue().encode("utf-8"),
            headers={"Content-Type": "text/csv"},
        )
        self._request("PATCH", f"jobs/ingest/{job_id}", json={"state": "UploadComplete"})
        job = self._wait_for_job("ingest", job_id)
        if job.get("state") != "JobComplete":
            log.warning(
                "Bulk API 2.0 %s job %s ended %s: %s; reading the records' results",
                operation,
                job_id,
                job.get("state"),
                job.get("errorMessage") or "no error message",
            )
        self._read_ingest_results(job_id, job, external_id_field, records, chunk, outcomes, operation=operation)

    def _read_ingest_results(
        self,
        job_id: str,
        job: Mapping[str, Any],
        external_id_field: str,
        records: Sequence[Mapping[str, Any]],
        chunk: list[int],
        outcomes: list[RecordOutcome | None],
        *,
        operation: str = "upsert",
    ) -> None:
        """Map the job's successful, failed and unprocessed result rows back to the input records.

        Rows are matched by the external id text as uploaded (the Id for an update or delete job);
        a key uploaded twice is matched in order. A record that is in no result file is counted as
        unprocessed.
        """
        pending: dict[str, deque[int]] = defaultdict(deque)
        for index in chunk:
            pending[csv_value(records[index][external_id_field])].append(index)

        def take(row: Mapping[str, str]) -> int | None:
            queue = pending.get(row.get(external_id_field, ""))
            return queue.popleft() if queue else None

        unmatched = 0
        for kind in _result_kinds(job, len(chunk)):
            response = self._request("GET", f"jobs/ingest/{job_id}/{kind}")
            response.encoding = "utf-8"
            for row in _csv_rows(response.text):
                index = take(row)
                if index is None:
                    unmatched += 1
                    continue
                key = str(records[index][external_id_field])
                # A failed row of an update or delete job may have no sf__Id, but its Id column names the record.
                record_id = row.get("sf__Id") or (key if external_id_field == "Id" else None)
                if kind == "successfulResults":
                    created = row.get("sf__Created", "").lower() == "true"
                    status = "created" if created else "updated"
                    if operation == "delete":
                        status = "deleted"
                    outcomes[index] = RecordOutcome(key, status, record_id, None, operation=operation)
                elif kind == "failedResults":
                    error = row.get("sf__Error") or "failed"
                    outcomes[index] = RecordOutcome(
                        key,
                        "failed",
                        record_id,
                        error,
                        operation=operation,
                        error_code=_bulk_error_code(error),
                    )
                else:
                    outcomes[index] = RecordOutcome(
                        key, "unprocessed", None, f"job {job_id} ended before this record", operation=operation
                    )

        if unmatched:
            log.warning(
                "Bulk API 2.0 job %s returned %d result rows that match no uploaded record", job_id, unmatched
            )
        missing = [index for index in chunk if outcomes[index] is None]
        if missing:
            log.warning(
                "Bulk API 2.0 job %s has no result for %d records; counting them unprocessed",
                job_id,
                len(missing),
            )
        for index in missing:
            outcomes[index] = RecordOutcome(
                str(records[index][external_id_field]),
                "unprocessed",
                None,
                f"job {job_id} ({job.get('state')}) returned no result for this record",
                operation=operation,
            )

    # Deletes

    def delete_records(
        self, object_name: str, record_ids: Sequence[str], *, bulk_threshold: int = DEFAULT_BULK_THRESHOLD
    ) -> list[RecordOutcome]:
        """Delete records by Id and return one outcome per Id, in input order, keyed by the Id.

        Up to `bulk_threshold` Ids go through sObject Collections in requests of 200, more through
        a Bulk API 2.0 `delete` job. Deleted records go to the Recycle Bin. Each outcome is
        "deleted", "failed" (with Salesforce's error and `error_code`, ENTITY_IS_DELETED for a
        record already deleted) or "unprocessed". A request that fails whole raises
        `SalesforceWriteError`, as in `upsert_records`.
        """
        outcomes: list[RecordOutcome | None] = [None] * len(record_ids)
        sendable: list[int] = []
        for index, record_id in enumerate(record_ids):
            if record_id:
                sendable.append(index)
            else:
                outcomes[index] = RecordOutcome("", "failed", None, "no record Id to delete", operation="delete")

        records = [{"Id": record_id} for record_id in record_ids]
        try:
            if len(sendable) <= bulk_threshold:
                self._delete_collections(record_ids, sendable, outcomes)
            else:
                for chunk in self._bulk_chunks(["Id"], records, sendable):
                    self._delete_bulk_chunk(object_name, records, chunk, outcomes)
        except SalesforceApiError as err:
            raise self._write_stopped(err, object_name, records, outcomes, "Id", "delete") from err

        final = _every_outcome(outcomes)
        counts = Counter(outcome.status for outcome in final)
        log.info(
            "Deleted %d of %d %s records on connection %r: %d failed, %d unprocessed",
            counts["deleted"],
            len(record_ids),
            object_name,
            self.salesforce_m2m_conn_id,
            counts["failed"],
            counts["unprocessed"],
        )
        return final

    def _delete_bulk_chunk(
        self,
        object_name: str,
        records: Sequence[Mapping[str, Any]],
        chunk: list[int],
        outcomes: list[RecordOutcome | None],
    ) -> None:
        """Delete one chunk in a Bulk API 2.0 job; when the job fails to finish, its records without a result fail."""
        try:
            self._run_ingest_job(object_name, "Id", ["Id"], records, chunk, outcomes, operation="delete")
        except SalesforceApiError as err:
            _fail_chunk(err, records, chunk, outcomes, "Id", "delete")
            raise

    def _delete_collections(
        self, record_ids: Sequence[str], indexes: list[int], outcomes: list[RecordOutcome | None]
    ) -> None:
        for start in range(0, len(indexes), COLLECTIONS_BATCH_SIZE):
            chunk = indexes[start : start + COLLECTIONS_BATCH_SIZE]
            ids = ",".join(record_ids[index] for index in chunk)
            # allOrNone false: each record is deleted or fails on its own, and the response lists
            # one result per Id in request order (REST API Developer Guide, "Delete Records Using
            # sObject Collections").
            try:
                results = self._collections_results(
                    "DELETE", "composite/sobjects", "delete", len(chunk), params={"ids": ids, "allOrNone": "false"}
                )
            except SalesforceApiError as err:
                records = [{"Id": record_id} for record_id in record_ids]
                _fail_chunk(err, records, chunk, outcomes, "Id", "delete")
                raise
            for index, result in zip(chunk, results, strict=True):
                record_id = record_ids[index]
                if result.get("success"):
                    outcomes[index] = RecordOutcome(record_id, "deleted", record_id, None, operation="delete")
                else:
                    errors = result.get("errors")
                    outcomes[index] = RecordOutcome(
                        record_id,
                        "failed",
                        record_id,
                        _error_text(errors),
                        operation="delete",
                        error_code=_first_error_code(errors),
                    )

    # Test button

    def test_connection(self) -> tuple[bool, str]:
        """Grant a new token, list the org's objects (describeGlobal), and report scope and lifetime."""
        try:
            token = self.get_token(force=True)
            self._request("GET", "sobjects")
        except Exception as err:  # the Test button shows any failure as text
            return False, str(err)
        return (
            True,
            f"Connected to {self.instance_url()} with flow {self.settings.flow}; {describe_token(token)}",
        )
