"""BigQuery hook: service-account key or workload identity federation, queries over the REST API.

Credentials come from google-auth, and their access tokens go through the shared TokenProvider.
`GoogleCredentialsGrant` wraps google-auth's own refresh: the JWT bearer assertion of a service
account, the STS exchange of an external account, or the IAM Credentials call of impersonation.
`TokenProviderCredentials` hands the provider's cached token to google-auth's `AuthorizedSession`
and to the google-cloud-bigquery client. So google-auth keeps the protocol work it does well, and
the TokenProvider keeps one token per credential per lifetime on a node.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import math
import operator
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import requests
from airflow.sdk import BaseHook
from google.auth import impersonated_credentials
from google.oauth2 import service_account

from airflow_provider_m2m.auth import AccessToken, TokenEndpoint, TokenProvider
from airflow_provider_m2m.auth.errors import TokenEndpointError, oauth_error_for
from airflow_provider_m2m.auth.masking import mask_secret
from airflow_provider_m2m.auth.token import DEFAULT_LIFETIME, utcnow
from airflow_provider_m2m.hooks._connection import (
    ConnectionFields,
    M2MConnectionMixin,
    Timeouts,
    TimeoutSession,
    build_token_endpoint,
    node_token_cache,
    register_airflow_hooks,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud import bigquery

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://bigquery.googleapis.com/bigquery/v2"
# google-cloud-bigquery (3.x) builds each request URL as <api_endpoint>/bigquery/v2/<path>.
CLIENT_API_PATH = "/bigquery/v2"
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/bigquery",)
# Impersonation calls the IAM Credentials API. google-auth gives a service-account source the
# scope that call needs, but an external account source needs this one.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_PAGE_SIZE = 10_000
# How long one jobs.query or jobs.getQueryResults call waits on the server for the job to finish
# before it returns jobComplete=false; the hook then polls jobs.get.
SERVER_WAIT_MS = 10_000
POLL_FIRST_INTERVAL_SECONDS = 0.5
POLL_MAX_INTERVAL_SECONDS = 5.0
DEFAULT_QUERY_TIMEOUT_SECONDS = 3600.0


class BigQueryError(Exception):
    """A BigQuery request or job failed; carries the HTTP status and BigQuery's error reasons."""

    def __init__(self, message: str, *, status_code: int | None = None, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reasons = tuple(reasons)


def client_api_endpoint(api_url: str) -> str | None:
    """Return the google-cloud-bigquery endpoint for a REST API root ending in /bigquery/v2, else None.

    A path in front of /bigquery/v2, as on a gateway that serves several APIs, is kept.
    """
    parts = urlsplit(api_url)
    path = parts.path.rstrip("/")
    if not path.endswith(CLIENT_API_PATH):
        return None
    return f"{parts.scheme}://{parts.netloc}{path.removesuffix(CLIENT_API_PATH)}"


# Credentials


class _TimeoutRequest(google.auth.transport.requests.Request):
    """google-auth transport that applies the connection's timeouts where google-auth passes none."""

    def __init__(self, session: requests.Session, timeouts: Timeouts) -> None:
        super().__init__(session)
        self._timeouts = timeouts.as_tuple()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(
            url, method=method, body=body, headers=headers, timeout=timeout or self._timeouts, **kwargs
        )


class _CABundleAuthorizedSession(google.auth.transport.requests.AuthorizedSession):
    """`AuthorizedSession` that passes the connection's CA bundle and timeouts with each request.

    requests lets REQUESTS_CA_BUNDLE override a session's `verify`, so it is passed per request,
    also for requests that google-cloud-bigquery sends through this session.
    """

    def __init__(self, credentials: Any, auth_request: Any, verify: bool | str, timeouts: Timeouts) -> None:
        super().__init__(credentials, auth_request=auth_request, max_refresh_attempts=1)
        self.verify = verify
        self._timeouts = timeouts.as_tuple()

    def request(self, method: str, url: str, data: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeouts
        return super().request(method, url, data=data, headers=headers, **kwargs)


class GoogleCredentialsGrant:
    """A Grant (in the `airflow_provider_m2m.auth` sense) that obtains a token by refreshing
    google-auth credentials.

    google-auth sends its own token requests through `transport`, which carries the connection's
    CA bundle and timeouts. The `endpoint` argument of `obtain` supplies only the retry settings.
    """

    grant_type = "google_credentials"

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        transport: google.auth.transport.requests.Request,
        *,
        fingerprint_material: Mapping[str, Any],
        scopes: Sequence[str],
    ) -> None:
        self.credentials = credentials
        self.transport = transport
        self.scopes = tuple(scopes)
        self.grant_type = f"google_{type(credentials).__module__.rsplit('.', 1)[-1]}"
        text = json.dumps(fingerprint_material, sort_keys=True, separators=(",", ":"), default=str)
        self._fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"GoogleCredentialsGrant({type(self.credentials).__name__}, scopes={list(self.scopes)!r})"

    def fingerprint(self) -> str:
        return self._fingerprint

    def _refresh(self, endpoint: TokenEndpoint | None) -> None:
        """Refresh the credentials, retrying a dropped connection or a timeout.

        google-auth retries 429 and 5xx responses itself but raises TransportError at once for a
        network failure. Those are retried here with the TokenEndpoint's retry count and
        full-jitter exponential backoff, like the package's own token requests.
        """
        max_retries = endpoint.max_retries if endpoint is not None else 0
        backoff_base = endpoint.backoff_base if endpoint is not None else 1.0
        backoff_max = endpoint.backoff_max if endpoint is not None else 10.0
        for attempt in range(max_retries + 1):
            try:
                self.credentials.refresh(self.transport)
                return
            except google.auth.exceptions.RefreshError as err:
                raise _oauth_error_from_refresh(err) from err
            except google.auth.exceptions.TransportError as err:
                if attempt == max_retries:
                    raise TokenEndpointError(
                        f"google-auth token request failed after {attempt + 1} attempts: {type(err.__cause__ or err).__name__}",
                        retryable=True,
                    ) from err
                wait = random.uniform(0, min(backoff_max, backoff_base * 2**attempt))
                log.warning(
                    "google-auth token request failed (%s), retry %d of %d in %.1f s",
                    type(err.__cause__ or err).__name__,
                    attempt + 1,
                    max_retries,
                    wait,
                )
                time.sleep(wait)

    def obtain(
        self, endpoint: TokenEndpoint | None = None, *, default_lifetime: timedelta = DEFAULT_LIFETIME
    ) -> AccessToken:
        requested_at = utcnow()
        self._refresh(endpoint)
        token = self.credentials.token
        if not token:
            raise TokenEndpointError("google-auth refresh returned no access token")
        mask_secret(token)
        expiry = self.credentials.expiry
        # google-auth stores expiry as a naive datetime in UTC.
        expires_at = expiry.replace(tzinfo=UTC) if expiry is not None else requested_at + default_lifetime
        return AccessToken(
            access_token=token,
            token_type="Bearer",
            expires_at=expires_at,
            # Google's token responses for these grants carry no scope, so the requested scopes are reported.
            scope=" ".join(self.scopes) or None,
            issued_at=requested_at,
        )


def _oauth_error_from_refresh(err: google.auth.exceptions.RefreshError) -> Exception:
    """Map google-auth's RefreshError to the package's OAuth error classes (RFC 6749 section 5.2)."""
    body = next((arg for arg in err.args[1:] if isinstance(arg, Mapping)), None)
    if body is not None and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return oauth_error_for(body["error"], description if isinstance(description, str) else None)
    retryable = bool(getattr(err, "retryable", False))
    return TokenEndpointError(
        f"google-auth refresh failed: {err.args[0] if err.args else type(err).__name__}", retryable=retryable
    )


class TokenProviderCredentials(google.auth.credentials.Credentials):
    """google-auth credentials whose token comes from a TokenProvider.

    Every request gets its token from the provider, a cache hit while the token is fresh.
    `refresh`, which `AuthorizedSession` calls after a 401, drops the rejected token from the
    caches and obtains a new one.
    """

    def __init__(self, provider: TokenProvider) -> None:
        super().__init__()
        self._provider = provider

    def _load(self, token: AccessToken) -> None:
        self.token = token.access_token
        self.expiry = token.expires_at.astimezone(UTC).replace(tzinfo=None)

    def refresh(self, request: Any) -> None:
        if self.token:
            self._provider.invalidate(self.token)
        self._load(self._provider.get_token())

    def before_request(self, request: Any, method: str, url: str, headers: dict[str, str]) -> None:
        self._load(self._provider.get_token())
        self.apply(headers)


@dataclass(frozen=True)
class BigQuerySettings:
    """The validated fields of a bigquery_m2m connection, credentials built but not refreshed."""

    connection_id: str
    credentials: google.auth.credentials.Credentials
    fingerprint_material: Mapping[str, Any]
    scopes: tuple[str, ...]
    project_id: str
    location: str | None
    api_url: str
    verify: bool | str
    timeouts: Timeouts


def _normalize_private_key(info: dict[str, Any]) -> dict[str, Any]:
    """Undo a second escaping of the key's newlines, as when a key JSON was pasted into another JSON string."""
    key = info.get("private_key")
    if isinstance(key, str) and "\\n" in key:
        info = {**info, "private_key": key.replace("\\r\\n", "\n").replace("\\n", "\n")}
    return info


def _service_account_credentials(
    fields: ConnectionFields, field: str, info: dict[str, Any], scopes: Sequence[str]
) -> service_account.Credentials:
    from airflow_provider_m2m.auth.keys import load_private_key

    if info.get("type") != "service_account":
        raise fields.error(
            field, f"has type {info.get('type')!r}; expected a service account key (type service_account)"
        )
    missing = [name for name in ("client_email", "private_key", "token_uri") if not info.get(name)]
    if missing:
        raise fields.error(field, f"service account key lacks {', '.join(missing)}; paste the whole key file")
    info = _normalize_private_key(info)
    mask_secret(info["private_key"])
    # Loading the key here gives a message that names the field when the key is damaged.
    load_private_key(info["private_key"], connection_id=fields.connection_id, field=field)
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=list(scopes))
    except ValueError as err:
        raise fields.error(
            field, f"google-auth rejected the service account key: {type(err).__name__}"
        ) from None


def _load_key_file(fields: ConnectionFields) -> dict[str, Any]:
    path = fields.file_path("key_path")
    assert path is not None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise fields.error("key_path", f"cannot read {path!r}: {err.strerror}") from None
    mask_secret(text)
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        raise fields.error(
            "key_path", f"file {path!r} is not valid JSON ({err.msg} at line {err.lineno})"
        ) from None
    if not isinstance(info, dict):
        raise fields.error("key_path", f"file {path!r} does not contain a JSON object")
    return info


def _credential_config(fields: ConnectionFields) -> dict[str, Any]:
    raw = fields.raw("credential_config")
    if isinstance(raw, str) and not raw.lstrip().startswith("{"):
        path = fields.file_path("credential_config")
        assert path is not None
        try:
            with open(path, encoding="utf-8") as handle:
                info = json.load(handle)
        except (OSError, json.JSONDecodeError) as err:
            raise fields.error(
                "credential_config", f"cannot read a JSON object from {path!r}: {err}"
            ) from None
    else:
        info = fields.json_object("credential_config")
    if not isinstance(info, dict) or info.get("type") != "external_account":
        raise fields.error(
            "credential_config",
            f"has type {info.get('type') if isinstance(info, dict) else None!r}; expected an "
            "external_account configuration from `gcloud iam workload-identity-pools create-cred-config`",
        )
    return info


def _external_account_credentials(
    fields: ConnectionFields, info: dict[str, Any], scopes: Sequence[str]
) -> google.auth.credentials.Credentials:
    """Build workload identity federation credentials without a network call.

    google.auth.load_credentials_from_dict would also look up the pool's project, which reads
    the subject token and calls Google's STS while the connection is only being read.
    """
    from google.auth import aws, identity_pool, pluggable

    source = info.get("credential_source") or {}
    try:
        if info.get("subject_token_type") == "urn:ietf:params:aws:token-type:aws4_request":
            return aws.Credentials.from_info(info, scopes=list(scopes))
        if isinstance(source, Mapping) and source.get("executable") is not None:
            return pluggable.Credentials.from_info(info, scopes=list(scopes))
        return identity_pool.Credentials.from_info(info, scopes=list(scopes))
    except (ValueError, google.auth.exceptions.GoogleAuthError) as err:
        raise fields.error("credential_config", f"google-auth rejected the configuration: {err}") from None


def build_bigquery_settings(
    fields: ConnectionFields, transport: google.auth.transport.requests.Request | None = None
) -> BigQuerySettings:
    """Validate the connection and build its google-auth credentials (no network request)."""
    sources = [name for name in ("key_json", "key_path", "credential_config") if fields.is_set(name)]
    if len(sources) != 1:
        problem = "none is set" if not sources else f"{' and '.join(sources)} are all set"
        raise fields.error(
            sources[0] if sources else "key_json",
            f"set exactly one of key_json, key_path or credential_config ({problem})",
        )
    source = sources[0]
    scopes = tuple((fields.space_separated("scopes") or " ".join(DEFAULT_SCOPES)).split())
    target = fields.text("impersonate_service_account")
    if target is not None and "@" not in target:
        raise fields.error("impersonate_service_account", f"{target!r} is not a service account email")
    source_scopes = (CLOUD_PLATFORM_SCOPE,) if target else scopes

    credentials: google.auth.credentials.Credentials
    if source in ("key_json", "key_path"):
        info = fields.json_object("key_json", secret=True) if source == "key_json" else _load_key_file(fields)
        assert info is not None
        credentials = _service_account_credentials(fields, source, info, source_scopes)
        default_project = info.get("project_id")
        material: dict[str, Any] = {
            "key": hashlib.sha256(
                json.dumps(_normalize_private_key(info), sort_keys=True).encode()
            ).hexdigest()
        }
    else:
        info = _credential_config(fields)
        credentials = _external_account_credentials(fields, info, source_scopes)
        default_project = info.get("quota_project_id")
        material = {"config": info}

    if target:
        credentials = impersonated_credentials.Credentials(
            source_credentials=credentials, target_principal=target, target_scopes=list(scopes)
        )
    project_id = fields.text("project_id") or default_project
    if not project_id:
        raise fields.error(
            "project_id",
            "is missing and the credentials name no project; set the project that runs the queries",
        )
    api_url = fields.url("api_url", default=DEFAULT_API_URL)
    assert api_url is not None
    material.update({"scopes": scopes, "impersonate": target, "source": source})
    return BigQuerySettings(
        connection_id=fields.connection_id,
        credentials=credentials,
        fingerprint_material=material,
        scopes=scopes,
        project_id=str(project_id),
        location=fields.text("location"),
        api_url=api_url,
        verify=fields.ca_bundle(),
        timeouts=fields.timeouts(),
    )


# Row conversion


def _parse_float(text: str) -> float:
    # BigQuery's JSON writes non-finite FLOAT64 as the strings NaN, Infinity and -Infinity.
    return float(text)


def _parse_timestamp(value: Any) -> datetime:
    """Parse a TIMESTAMP cell: integer microseconds (formatOptions.useInt64Timestamp) or float seconds.

    The hook always requests integer microseconds; a value with a decimal point or an exponent is
    the float-seconds form some servers still send.
    """
    text = str(value)
    if any(mark in text for mark in ".eE"):
        seconds = Decimal(text)
        micros = int((seconds * 1_000_000).to_integral_value())
    else:
        micros = int(text)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def _parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T"))


def _parse_time(text: str) -> time_of_day:
    return time_of_day.fromisoformat(text)


def _parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ValueError(f"{text!r} is not a BOOL value")


_SCALAR_PARSERS: dict[str, Any] = {
    "STRING": str,
    "INTEGER": int,
    "INT64": int,
    "FLOAT": _parse_float,
    "FLOAT64": _parse_float,
    "NUMERIC": Decimal,
    "BIGNUMERIC": Decimal,
    "BOOLEAN": _parse_bool,
    "BOOL": _parse_bool,
    "BYTES": base64.b64decode,
    "DATE": date.fromisoformat,
    "DATETIME": _parse_datetime,
    "TIME": _parse_time,
    "TIMESTAMP": _parse_timestamp,
    "JSON": json.loads,
    "GEOGRAPHY": str,
    "INTERVAL": str,
    "RANGE": str,
}


def convert_cell(field: Mapping[str, Any], cell: Any) -> Any:
    """Convert one cell of a `jobs.getQueryResults` row to Python, by the field's schema.

    REPEATED fields become lists and RECORD (STRUCT) fields dicts, recursively; NULL is None.
    """
    value = cell.get("v") if isinstance(cell, Mapping) else cell
    if field.get("mode") == "REPEATED":
        if value is None:
            return []
        element = {**field, "mode": "NULLABLE"}
        return [convert_cell(element, item) for item in value]
    if value is None:
        return None
    field_type = str(field.get("type", "STRING")).upper()
    if field_type in ("RECORD", "STRUCT"):
        return convert_row(field.get("fields", []), value)
    parser = _SCALAR_PARSERS.get(field_type, str)
    try:
        return parser(value)
    except (ValueError, TypeError, InvalidOperation, binascii.Error) as err:
        raise BigQueryError(
            f"column {field.get('name')!r}: cannot parse {field_type} value {value!r}"
        ) from err


def convert_row(fields: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a `{"f": [{"v": ...}, ...]}` row to a dict keyed by column name."""
    cells = row.get("f", [])
    return {field["name"]: convert_cell(field, cell) for field, cell in zip(fields, cells, strict=True)}


# Arrow conversion

# Column types whose JSON cells query_arrow turns into an Arrow array with one cast of the cell
# strings. Every other type goes through convert_cell, one Python value per cell.
_CAST_TYPES = frozenset(
    {"STRING", "INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOLEAN", "BOOL", "DATE", "DATETIME", "TIMESTAMP"}
)
# The value of a REST cell, {"v": value}, read without a Python call per cell.
_CELL_VALUE = operator.itemgetter("v")


def _arrow_errors() -> tuple[type[Exception], ...]:
    """Return the exceptions that a failed pyarrow conversion raises."""
    import pyarrow as pa

    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


@functools.cache
def _arrow_scalar_types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {
        "INTEGER": pa.int64(),
        "INT64": pa.int64(),
        "FLOAT": pa.float64(),
        "FLOAT64": pa.float64(),
        # NUMERIC has precision 38 and scale 9. BIGNUMERIC has scale 38 and 76.76 digits of
        # precision, so Arrow's widest decimal, precision 76, stores only its values below 10**38.
        "NUMERIC": pa.decimal128(38, 9),
        "BIGNUMERIC": pa.decimal256(76, 38),
        "BOOLEAN": pa.bool_(),
        "BOOL": pa.bool_(),
        "BYTES": pa.binary(),
        "DATE": pa.date32(),
        "DATETIME": pa.timestamp("us"),
        "TIME": pa.time64("us"),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    }


def arrow_type(field: Mapping[str, Any]) -> pa.DataType | None:
    """Return the Arrow type that `query_arrow` gives a column of this schema field.

    Returns None for a column that contains JSON anywhere, because a JSON value can be any
    document, so Arrow infers that column's type from its values. STRING, GEOGRAPHY, INTERVAL, RANGE and types
    unknown to this module become strings, as in `convert_cell`. Needs pyarrow.
    """
    import pyarrow as pa

    if field.get("mode") == "REPEATED":
        element = arrow_type({**field, "mode": "NULLABLE"})
        return None if element is None else pa.list_(element)
    field_type = str(field.get("type", "STRING")).upper()
    if field_type in ("RECORD", "STRUCT"):
        children = []
        for child in field.get("fields", []):
            child_type = arrow_type(child)
            if child_type is None:
                return None
            children.append(pa.field(child["name"], child_type))
        return pa.struct(children)
    if field_type == "JSON":
        return None
    return _arrow_scalar_types().get(field_type, pa.string())


def _cast_cells(field_type: str, values: list[Any], target: pa.DataType) -> pa.Array:
    """Build an array from the cell strings of a column of one of `_CAST_TYPES` with Arrow casts.

    Raises a pyarrow error for a value the cast rejects. Arrow parses the NaN, Infinity and
    -Infinity that BigQuery writes for FLOAT64, and nan, inf and -inf as well (pyarrow 26).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = pa.array(values, type=pa.string())
    if field_type == "STRING":
        return strings
    if field_type in ("BOOL", "BOOLEAN"):
        # Arrow's cast also reads 1, 0 and any letter case, which convert_cell handles differently.
        if not pc.all(pc.is_in(strings.drop_null(), value_set=pa.array(["true", "false"]))).as_py():
            raise pa.ArrowInvalid("a BOOL cell is not true or false")
        return pc.equal(strings, "true")
    if field_type == "TIMESTAMP":
        # Integer microseconds since the epoch, as the hook requests with formatOptions.useInt64Timestamp.
        return strings.cast(pa.int64()).cast(target)
    return strings.cast(target)


def _convert_cells(field: Mapping[str, Any], cells: Sequence[Any], target: pa.DataType) -> pa.Array:
    """Convert each cell with `convert_cell` and build an array of type `target` from the values."""
    import pyarrow as pa

    values = [convert_cell(field, cell) for cell in cells]
    try:
        return pa.array(values, type=target)
    except _arrow_errors() as err:
        # The error is not quoted, because pyarrow's message contains a value of the column.
        raise BigQueryError(
            f"column {field.get('name')!r}: its {field.get('type')} values do not fit Arrow {target}, "
            f"for example a BIGNUMERIC of 10**38 or more; cast the column to STRING in the query"
        ) from err


def _infer_array(field: Mapping[str, Any], values: list[Any]) -> pa.Array:
    """Build an array whose type Arrow infers from the values of a column that contains JSON.

    Raises BigQueryError when the array does not give back the same values, as for JSON objects
    with different keys, which Arrow stores as one struct with every key.
    """
    import pyarrow as pa

    name = field.get("name")
    hint = (
        f"select TO_JSON_STRING({name}) to read the column as STRING, or LAX_FLOAT64({name}) or "
        f"CAST(LAX_STRING({name}) AS NUMERIC) for a number"
    )
    try:
        array = pa.array(values)
    except _arrow_errors() as err:
        # The error is not quoted, because pyarrow's message contains a value of the column.
        raise BigQueryError(
            f"column {field.get('name')!r}: its JSON values have no common Arrow type, "
            f"such as text, numbers and booleans in one column; {hint}"
        ) from err
    if not _same_values(array.to_pylist(), values):
        raise BigQueryError(
            f"column {field.get('name')!r}: Arrow type {array.type} inferred from its JSON values "
            f"changes some of them, for example 1 into 1.0, or missing object keys into nulls; {hint}"
        )
    return array


def _same_values(left: Any, right: Any) -> bool:
    """Compare two converted values as == does, but a float NaN equals a float NaN, and an int
    never equals a float, because Arrow turns JSON's 1 into 1.0 in a column that also contains 1.5."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float) and math.isnan(left) and math.isnan(right):
        return True
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same_values(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same_values(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


class ArrowTableBuilder:
    """Build one Arrow table from the result pages of a query, column by column.

    Each page adds one chunk per column, typed by `arrow_type`, so every page has the schema of
    the first. A column that contains JSON is kept as Python values until `table()` infers its
    type once over every row. Needs pyarrow.
    """

    def __init__(self, fields: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
        self.fields = list(fields)
        # Positions of the columns kept; the others are never converted.
        self.kept_positions = [
            index for index, field in enumerate(self.fields) if columns is None or field.get("name") in columns
        ]
        self.types = [arrow_type(field) for field in self.fields]
        self._chunks: list[list[pa.Array]] = [[] for _ in self.fields]
        self._values: list[list[Any]] = [[] for _ in self.fields]

    def add_page(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Convert one page of `{"f": [{"v": ...}, ...]}` rows and append it to the columns."""
        if not rows:
            return
        columns = list(zip(*(row.get("f", []) for row in rows), strict=True))
        if len(columns) != len(self.fields):
            raise BigQueryError(
                f"invalid result page: its rows have {len(columns)} cells but the schema has {len(self.fields)} columns"
            )
        for index in self.kept_positions:
            field, cells, target = self.fields[index], columns[index], self.types[index]
            if target is None:
                self._values[index] += [convert_cell(field, cell) for cell in cells]
            else:
                self._chunks[index].append(self._column(field, cells, target))

    def _column(self, field: Mapping[str, Any], cells: Sequence[Any], target: pa.DataType) -> pa.Array:
        field_type = str(field.get("type", "STRING")).upper()
        if field.get("mode") != "REPEATED" and field_type in _CAST_TYPES:
            try:
                return _cast_cells(field_type, list(map(_CELL_VALUE, cells)), target)
            except (KeyError, TypeError, *_arrow_errors()):
                # convert_cell raises BigQueryError for the cell that does not parse, or converts
                # the forms the cast rejects, such as TIMESTAMP in float seconds.
                pass
        return _convert_cells(field, cells, target)

    def table(self) -> pa.Table:
        """Return the table of every page added so far."""
        import pyarrow as pa

        columns = []
        for index in self.kept_positions:
            field, target = self.fields[index], self.types[index]
            if target is None:
                columns.append(pa.chunked_array([_infer_array(field, self._values[index])]))
            else:
                columns.append(pa.chunked_array(self._chunks[index], type=target))
        return pa.Table.from_arrays(columns, names=[self.fields[index]["name"] for index in self.kept_positions])


# Query parameters


def _parameter_type(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "BOOL"}
    if isinstance(value, int):
        return {"type": "INT64"}
    if isinstance(value, float):
        return {"type": "FLOAT64"}
    if isinstance(value, Decimal):
        # NUMERIC has 38 digits of precision with 9 after the point; wider values need BIGNUMERIC.
        exponent = value.as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        digits = len(value.as_tuple().digits)
        return {"type": "NUMERIC" if scale <= 9 and digits - scale <= 29 else "BIGNUMERIC"}
    if isinstance(value, str) or value is None:
        return {"type": "STRING"}
    if isinstance(value, bytes):
        return {"type": "BYTES"}
    if isinstance(value, datetime):
        return {"type": "TIMESTAMP" if value.tzinfo is not None else "DATETIME"}
    if isinstance(value, date):
        return {"type": "DATE"}
    if isinstance(value, time_of_day):
        return {"type": "TIME"}
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(
                f"query parameter {name!r} is an empty list, whose element type cannot be inferred"
            )
        return {"type": "ARRAY", "arrayType": _parameter_type(value[0], name)}
    raise ValueError(f"query parameter {name!r} has unsupported type {type(value).__name__}")


def _parameter_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC).isoformat()
        return value.isoformat()
    if isinstance(value, date | time_of_day):
        return value.isoformat()
    return str(value)


def query_parameters(parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Build named query parameters (`@name` in the SQL) for jobs.query, inferring each type."""
    result = []
    for name, value in parameters.items():
        parameter_type = _parameter_type(value, name)
        if parameter_type["type"] == "ARRAY":
            parameter_value: dict[str, Any] = {
                "arrayValues": [{"value": _parameter_text(item)} for item in value]
            }
        else:
            parameter_value = {"value": _parameter_text(value)}
        result.append({"name": name, "parameterType": parameter_type, "parameterValue": parameter_value})
    return result


def _error_reasons(errors: Any) -> list[str]:
    if not isinstance(errors, list):
        return []
    return [str(item.get("reason")) for item in errors if isinstance(item, Mapping) and item.get("reason")]


class BigQueryM2MHook(M2MConnectionMixin, BaseHook):
    """BigQuery over its REST API with a service-account key or workload identity federation.

    :param bigquery_m2m_conn_id: id of a `bigquery_m2m` connection.
    :param query_timeout_seconds: how long to wait for one query job before failing.
    """

    conn_name_attr = "bigquery_m2m_conn_id"
    default_conn_name = "bigquery_m2m_default"
    conn_type = "bigquery_m2m"
    hook_name = "Google BigQuery (service account, M2M)"
    standard_fields = ()

    def __init__(
        self,
        bigquery_m2m_conn_id: str = default_conn_name,
        *,
        query_timeout_seconds: float = DEFAULT_QUERY_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        register_airflow_hooks()
        self.bigquery_m2m_conn_id = bigquery_m2m_conn_id
        self.query_timeout_seconds = query_timeout_seconds
        self._settings: BigQuerySettings | None = None
        self._provider: TokenProvider | None = None
        self._session: google.auth.transport.requests.AuthorizedSession | None = None

    @property
    def settings(self) -> BigQuerySettings:
        if self._settings is None:
            fields = self.connection_fields()
            self._settings = build_bigquery_settings(fields)
        return self._settings

    @property
    def project_id(self) -> str:
        return self.settings.project_id

    def _transport(self) -> google.auth.transport.requests.Request:
        settings = self.settings
        session = TimeoutSession(settings.timeouts, verify=settings.verify)
        return _TimeoutRequest(session, settings.timeouts)

    def token_provider(self) -> TokenProvider:
        """Return the connection's token provider, built on first use; building it sends no request."""
        if self._provider is None:
            settings = self.settings
            grant = GoogleCredentialsGrant(
                settings.credentials,
                self._transport(),
                fingerprint_material=settings.fingerprint_material,
                scopes=settings.scopes,
            )
            self._provider = TokenProvider(
                grant,
                connection_id=settings.connection_id,
                endpoint=build_token_endpoint(self.connection_fields()),
                cache=node_token_cache(),
            )
        return self._provider

    def get_token(self, force: bool = False) -> AccessToken:
        """Return a valid access token, from the cache or from a new grant."""
        return self.token_provider().get_token(force=force)

    def get_credentials(self) -> TokenProviderCredentials:
        """Return google-auth credentials backed by the shared token cache, for Google client libraries."""
        return TokenProviderCredentials(self.token_provider())

    def get_session(self) -> google.auth.transport.requests.AuthorizedSession:
        """Return an `AuthorizedSession` with the connection's CA bundle.

        After a 401 it obtains a new token and sends the request once more, not twice.
        """
        if self._session is None:
            settings = self.settings
            self._session = _CABundleAuthorizedSession(
                self.get_credentials(), self._transport(), settings.verify, settings.timeouts
            )
        return self._session

    def get_conn(self) -> google.auth.transport.requests.AuthorizedSession:
        return self.get_session()

    def get_client(self) -> bigquery.Client:
        """Return a google-cloud-bigquery client for the connection's api_url, project and location.

        Needs the optional extra: `pip install airflow-provider-m2m[bigquery-client]`.
        """
        try:
            from google.api_core.client_options import ClientOptions
            from google.cloud import bigquery
        except ImportError as err:
            raise ImportError(
                "get_client() needs google-cloud-bigquery; install airflow-provider-m2m[bigquery-client]"
            ) from err
        settings = self.settings
        api_endpoint = client_api_endpoint(settings.api_url)
        if api_endpoint is None:
            raise self.connection_fields().error(
                "api_url",
                f"{settings.api_url!r} does not end in {CLIENT_API_PATH}, which google-cloud-bigquery appends "
                f"to its endpoint, so get_client() cannot use it; set the REST API root that ends in {CLIENT_API_PATH}",
            )
        # The session carries the credentials, the CA bundle and the timeouts, so the client sends
        # every request through it rather than through a session of its own.
        return bigquery.Client(
            project=settings.project_id,
            credentials=self.get_credentials(),
            location=settings.location,
            client_options=ClientOptions(api_endpoint=api_endpoint),
            _http=self.get_session(),
        )

    # REST

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send one BigQuery REST request; raise `BigQueryError` for an HTTP error or a failed job in a 200 body."""
        settings = self.settings
        url = f"{settings.api_url}/{path}"
        response = self.get_session().request(method, url, timeout=settings.timeouts.as_tuple(), **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except (ValueError, AttributeError):
                error = {}
            message = error.get("message") if isinstance(error, Mapping) else None
            reasons = _error_reasons(error.get("errors") if isinstance(error, Mapping) else None)
            raise BigQueryError(
                f"Connection {self.bigquery_m2m_conn_id!r}: BigQuery {method} {path.split('?')[0]} returned "
                f"HTTP {response.status_code}: {message or response.reason}"
                + (f" (reason: {', '.join(reasons)})" if reasons else ""),
                status_code=response.status_code,
                reasons=reasons,
            )
        body = response.json()
        self._raise_for_job_error(body)
        return body

    def _raise_for_job_error(self, body: Mapping[str, Any]) -> None:
        status = body.get("status")
        error = status.get("errorResult") if isinstance(status, Mapping) else None
        if error:
            reasons = _error_reasons([error, *(status.get("errors") or [])])
            job_id = (body.get("jobReference") or {}).get("jobId")
            raise BigQueryError(
                f"Connection {self.bigquery_m2m_conn_id!r}: BigQuery job {job_id} failed: "
                f"{error.get('message', 'no message')} (reason: {error.get('reason', 'unknown')})",
                reasons=reasons,
            )

    def _start_query(self, sql: str, parameters: Mapping[str, Any] | None, page_size: int) -> dict[str, Any]:
        settings = self.settings
        body: dict[str, Any] = {
            "query": sql,
            "useLegacySql": False,
            "maxResults": page_size,
            "timeoutMs": SERVER_WAIT_MS,
            "formatOptions": {"useInt64Timestamp": True},
        }
        if settings.location:
            body["location"] = settings.location
        if parameters:
            body["parameterMode"] = "NAMED"
            body["queryParameters"] = query_parameters(parameters)
        return self._call("POST", f"projects/{quote(settings.project_id, safe='')}/queries", json=body)

    def _get_job(self, job_reference: Mapping[str, Any]) -> dict[str, Any]:
        """Return the job resource (jobs.get); raise `BigQueryError` when its status has an errorResult."""
        project = job_reference.get("projectId", self.settings.project_id)
        params = {"location": job_reference["location"]} if job_reference.get("location") else {}
        path = f"projects/{quote(project, safe='')}/jobs/{quote(job_reference['jobId'], safe='')}"
        return self._call("GET", path, params=params)

    def _wait_for_job(self, job_reference: Mapping[str, Any]) -> None:
        """Poll jobs.get until the job is DONE; a failed job raises from its status.errorResult."""
        deadline = time.monotonic() + self.query_timeout_seconds
        interval = POLL_FIRST_INTERVAL_SECONDS
        job_id = job_reference["jobId"]
        while True:
            job = self._get_job(job_reference)
            if (job.get("status") or {}).get("state") == "DONE":
                return
            if time.monotonic() + interval > deadline:
                raise BigQueryError(
                    f"Connection {self.bigquery_m2m_conn_id!r}: BigQuery job {job_id} is not done after "
                    f"{self.query_timeout_seconds:.0f} s; raise query_timeout_seconds or cancel the job"
                )
            time.sleep(interval)
            interval = min(interval * 2, POLL_MAX_INTERVAL_SECONDS)

    def _result_page(
        self, job_reference: Mapping[str, Any], page_size: int, page_token: str | None
    ) -> dict[str, Any]:
        project = job_reference.get("projectId", self.settings.project_id)
        params: dict[str, Any] = {
            "maxResults": page_size,
            "timeoutMs": SERVER_WAIT_MS,
            "formatOptions.useInt64Timestamp": "true",
        }
        if job_reference.get("location"):
            params["location"] = job_reference["location"]
        if page_token:
            params["pageToken"] = page_token
        return self._call(
            "GET",
            f"projects/{quote(project, safe='')}/queries/{quote(job_reference['jobId'], safe='')}",
            params=params,
        )

    def _query_pages(
        self, sql: str, parameters: Mapping[str, Any] | None, page_size: int
    ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Run a GoogleSQL query and yield (schema fields, REST rows) for each result page.

        The first page is yielded even when the result has no rows, so the caller receives the schema.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        response = self._start_query(sql, parameters, page_size)
        job_reference = response.get("jobReference") or {}
        if not response.get("jobComplete"):
            self._wait_for_job(job_reference)
            response = self._result_page(job_reference, page_size, None)
        while not response.get("jobComplete"):
            # getQueryResults can still report an unfinished job right after jobs.get reported DONE.
            response = self._result_page(job_reference, page_size, None)
        if response.get("errors"):
            # A query response lists errors and warnings alike. Only the job's status.errorResult
            # shows that the job failed, and _call raises when it is set.
            self._get_job(job_reference)

        fields = (response.get("schema") or {}).get("fields", [])
        count = 0
        while True:
            rows = response.get("rows") or []
            count += len(rows)
            yield fields, rows
            page_token = response.get("pageToken")
            if not page_token:
                break
            response = self._result_page(job_reference, page_size, page_token)
        log.info(
            "BigQuery job %s on connection %r returned %d rows",
            job_reference.get("jobId"),
            self.bigquery_m2m_conn_id,
            count,
        )

    def iter_rows(
        self, sql: str, *, parameters: Mapping[str, Any] | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Run a GoogleSQL query and yield its rows as dicts of Python values, page by page.

        NUMERIC and BIGNUMERIC become Decimal, DATE a date, DATETIME a naive datetime and
        TIMESTAMP an aware UTC datetime. INT64 becomes int, FLOAT64 float (NaN and infinities
        included), BOOL bool, BYTES bytes and JSON the parsed value. ARRAY becomes a list and
        STRUCT a dict, recursively. `parameters` become named parameters, `@name` in the SQL.
        """
        for fields, rows in self._query_pages(sql, parameters, page_size):
            for row in rows:
                yield convert_row(fields, row)

    def query_arrow(
        self,
        sql: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Run a GoogleSQL query and return every row as one Arrow table. Needs pyarrow.

        `table.to_pylist()` equals `list(iter_rows(...))`. Columns of INT64, FLOAT64, NUMERIC,
        BIGNUMERIC, BOOL, DATE, DATETIME, TIMESTAMP and STRING are cast from the cell strings
        by Arrow, with no Python object per value: int64, float64, decimal128(38, 9),
        decimal256(76, 38), bool, date32, timestamp("us"), timestamp("us", tz="UTC") and
        string. BYTES becomes binary, TIME time64("us"), ARRAY a list and STRUCT a struct,
        converted value by value. Arrow infers the type of a column that contains JSON.

        `columns`, when given, keeps only the result columns of those names, in the result's
        order; the others are never converted. Names the result lacks are left out.

        Raises BigQueryError naming the connection and the column for a cell that does not
        parse, for a BIGNUMERIC of 10**38 or more, which decimal256(76, 38) cannot hold, and for
        JSON values that no Arrow type gives back unchanged.
        """
        builder: ArrowTableBuilder | None = None
        for fields, rows in self._query_pages(sql, parameters, page_size):
            if builder is None:
                builder = ArrowTableBuilder(fields, columns)
            self._naming_connection(builder.add_page, rows)
        assert builder is not None, "_query_pages yields the first page even when it has no rows"
        return self._naming_connection(builder.table)

    def _naming_connection(self, convert: Callable[..., Any], *args: Any) -> Any:
        """Call a conversion and add this connection's id to the BigQueryError it raises."""
        try:
            return convert(*args)
        except BigQueryError as err:
            raise BigQueryError(f"Connection {self.bigquery_m2m_conn_id!r}: {err}") from err

    def get_records(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Return every row of a query as a list; use `iter_rows` for large results."""
        return list(self.iter_rows(sql, parameters=parameters))

    def test_connection(self) -> tuple[bool, str]:
        """Grant a new token, run `SELECT 1`, and report the scopes and the token lifetime."""
        try:
            token = self.get_token(force=True)
            rows = list(self.iter_rows("SELECT 1 AS ok"))
            if rows != [{"ok": 1}]:
                return False, f"SELECT 1 returned {rows!r}"
        except Exception as err:  # the Test button shows any failure as text
            return False, str(err)
        lifetime = int(token.lifetime.total_seconds())
        # Google's token response for these grants reports no scope, so the message names the requested ones.
        return True, (
            f"Connected to project {self.settings.project_id}; requested scopes: {token.scope}; "
            f"token lifetime: {lifetime} s"
        )
