"""Reading an Airflow connection for the M2M hooks: typed fields, validation and secret masking.

Every error names the connection id and the field, and never contains the value of a secret
field. Every secret value read here is passed to the secret masker, which under Airflow is
`airflow.sdk.log.mask_secret`, so it is redacted from task logs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from airflow_provider_m2m.auth.cache import FileTokenCache, NullTokenCache, TokenCache, default_node_cache
from airflow_provider_m2m.auth.endpoint import TokenEndpoint, safe_url
from airflow_provider_m2m.auth.keys import load_private_key
from airflow_provider_m2m.auth.masking import mask_secret, register_secret_masker

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_m2m.auth.token import AccessToken

log = logging.getLogger(__name__)

# Fields of the Connection model itself. A hook names the ones it reads, and every other field
# name is a key of the `extra` JSON, also a standard name that the hook does not read.
STANDARD_FIELDS = frozenset({"host", "login", "password", "schema", "port"})

DEFAULT_TIMEOUT_SECONDS = 30.0
# A TCP connect that takes longer than this will not succeed by waiting, so the connect part of
# the timeout is capped even when the read timeout is raised for slow queries.
MAX_CONNECT_TIMEOUT_SECONDS = 10.0

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})

_airflow_hooks_registered = False
_registration_lock = threading.Lock()


class ConnectionFieldError(ValueError):
    """A connection field is missing or invalid; the message names the connection id and the field."""

    def __init__(self, connection_id: str, field: str, problem: str) -> None:
        super().__init__(f"Connection {connection_id!r}, field {field!r}: {problem}")
        self.connection_id = connection_id
        self.field = field
        self.problem = problem


def register_airflow_hooks() -> None:
    """Send every secret the provider handles to Airflow's secret masker, and its metrics to `Stats`.

    Called by each hook when it is built. Outside Airflow (the `auth` package used alone) the
    imports fail and nothing is registered.
    """
    global _airflow_hooks_registered
    with _registration_lock:
        if _airflow_hooks_registered:
            return
        try:
            from airflow.sdk.log import mask_secret as airflow_mask_secret
        except ImportError:
            log.debug("airflow.sdk is not importable; secrets are not registered with a log masker")
        else:
            register_secret_masker(airflow_mask_secret)
        try:
            from airflow.sdk.observability.stats import Stats

            from airflow_provider_m2m.auth.metrics import register_metrics_backend
        except ImportError:
            log.debug("Airflow Stats is not importable; token metrics are dropped")
        else:
            register_metrics_backend(Stats)
        _airflow_hooks_registered = True


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts in seconds, in the order `requests` takes them."""

    connect: float
    read: float

    def as_tuple(self) -> tuple[float, float]:
        return (self.connect, self.read)


def _is_loopback(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


class ConnectionFields:
    """Typed, validated access to the fields of one Airflow connection.

    Extra keys are read by their plain name and, as a fallback, by the `extra__<conn_type>__<name>`
    form older connection forms wrote. An empty string counts as not set, because the connection
    form stores empty inputs that way.
    """

    def __init__(
        self,
        connection: Connection,
        conn_type: str,
        standard_fields: Iterable[str] = ("host", "login", "password"),
    ) -> None:
        self.connection_id: str = connection.conn_id
        self.conn_type = conn_type
        self.standard_fields = frozenset(standard_fields)
        unknown = self.standard_fields - STANDARD_FIELDS
        if unknown:
            raise ValueError(f"not standard connection fields: {', '.join(sorted(unknown))}")
        self._connection = connection
        self._extra = self._parse_extra(connection)
        if connection.conn_type and connection.conn_type != conn_type:
            log.warning(
                "Connection %r has conn_type %r, but this hook reads %r connections; fields may not match",
                self.connection_id,
                connection.conn_type,
                conn_type,
            )

    def _parse_extra(self, connection: Connection) -> dict[str, Any]:
        raw = connection.extra
        if not raw:
            return {}
        if isinstance(raw, Mapping):
            return dict(raw)
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as err:
            # The position is safe to show; the text may contain secrets, so it is not quoted.
            raise self.error(
                "extra", f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
            ) from None
        if not isinstance(parsed, dict):
            raise self.error("extra", f"must be a JSON object, got a JSON {type(parsed).__name__}")
        return parsed

    def error(self, field: str, problem: str) -> ConnectionFieldError:
        """Build the error for `field`; `problem` must not contain a secret value."""
        return ConnectionFieldError(self.connection_id, field, problem)

    def raw(self, field: str) -> Any:
        """Return the field's value as stored, or None when it is not set or empty."""
        if field in self.standard_fields:
            value = getattr(self._connection, field, None)
        else:
            value = self._extra.get(field)
            if value is None or value == "":
                value = self._extra.get(f"extra__{self.conn_type}__{field}")
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return value

    def is_set(self, field: str) -> bool:
        return self.raw(field) is not None

    def extra_keys(self) -> set[str]:
        prefix = f"extra__{self.conn_type}__"
        return {key.removeprefix(prefix) for key in self._extra}

    def text(
        self,
        field: str,
        *,
        required: bool = False,
        secret: bool = False,
        default: str | None = None,
        hint: str = "",
    ) -> str | None:
        """Return a text field, stripped of surrounding whitespace.

        A secret is passed to the masker before anything else happens to it. Numbers are accepted
        for non-secret fields because JSON writers turn values like `62.0` into numbers.
        """
        value = self.raw(field)
        if value is None:
            if required:
                raise self.error(field, f"is missing{'; ' + hint if hint else ''}")
            return default
        if secret and isinstance(value, str):
            mask_secret(value)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(field, f"must be text, got a JSON {type(value).__name__}")
        if not isinstance(value, str):
            if secret:
                raise self.error(field, "must be text, got a number")
            value = str(value)
        value = value.strip()
        if secret:
            mask_secret(value)
        return value

    def secret(self, field: str, *, required: bool = False, hint: str = "") -> str | None:
        """Return a secret text field; the value is passed to the masker."""
        return self.text(field, required=required, secret=True, hint=hint)

    def choice(
        self,
        field: str,
        choices: Iterable[str],
        *,
        required: bool = False,
        default: str | None = None,
        hint: str = "",
    ) -> str | None:
        allowed = list(choices)
        value = self.text(
            field, required=required, default=default, hint=hint or f"set it to one of {', '.join(allowed)}"
        )
        if value is None:
            return None
        if value not in allowed:
            raise self.error(field, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def boolean(self, field: str, *, default: bool = False) -> bool:
        value = self.raw(field)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
        raise self.error(field, f"{value!r} is not a boolean; use true or false")

    def number(
        self,
        field: str,
        *,
        default: float | None = None,
        minimum: float | None = None,
        integer: bool = False,
    ) -> float | None:
        value = self.raw(field)
        if value is None:
            return default
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool):
            raise self.error(field, f"must be {kind}, got a boolean")
        try:
            number = float(value) if not isinstance(value, int) else value
        except (TypeError, ValueError):
            raise self.error(field, f"{value!r} is not {kind}") from None
        if integer and (number != int(number)):
            raise self.error(field, f"{value!r} is not {kind}")
        if number != number or number in (float("inf"), float("-inf")):
            raise self.error(field, f"{value!r} is not a finite number")
        if minimum is not None and number < minimum:
            raise self.error(field, f"{value!r} is below the minimum {minimum:g}")
        return int(number) if integer else float(number)

    def integer(self, field: str, *, default: int | None = None, minimum: int | None = None) -> int | None:
        value = self.number(field, default=default, minimum=minimum, integer=True)
        return None if value is None else int(value)

    def url(
        self, field: str, *, required: bool = False, default: str | None = None, hint: str = ""
    ) -> str | None:
        """Return an absolute https URL; plain http is accepted only for a loopback host.

        RFC 6749 section 3.2 and section 2.3.1 require TLS for requests that carry client
        credentials. A loopback server, such as a local emulator, is the only exception allowed here.
        """
        value = self.text(field, required=required, default=default, hint=hint)
        if value is None:
            return None
        # Messages quote the URL through safe_url, which drops user info, query and fragment,
        # because a URL pasted from elsewhere may carry a secret there.
        try:
            parts = urlsplit(value)
        except ValueError:
            raise self.error(field, "is not a valid URL; expected https://host/path") from None
        if not parts.scheme or not parts.hostname:
            raise self.error(field, "is not an absolute URL; expected https://host/path")
        if parts.scheme not in ("https", "http"):
            raise self.error(field, f"{safe_url(value)!r} is not an https URL; expected https://host/path")
        # urlsplit reads the port only on access, and raises ValueError when it is not a number.
        try:
            _ = parts.port
        except ValueError:
            raise self.error(field, "has a port that is not a number from 0 to 65535") from None
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise self.error(
                field,
                f"{safe_url(value)!r} uses plain http, which would send credentials and tokens unencrypted; "
                "use https (only a loopback host may use http)",
            )
        return value.rstrip("/")

    def json_object(
        self, field: str, *, secret: bool = False, required: bool = False, hint: str = ""
    ) -> dict[str, Any] | None:
        """Return a field holding a JSON object, stored either as an object or as JSON text."""
        value = self.raw(field)
        if value is None:
            if required:
                raise self.error(field, f"is missing{'; ' + hint if hint else ''}")
            return None
        if isinstance(value, str):
            if secret:
                mask_secret(value)
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise self.error(
                    field, f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
                ) from None
        if not isinstance(value, dict):
            raise self.error(field, f"must be a JSON object, got a JSON {type(value).__name__}")
        return value

    def space_separated(self, field: str, *, default: str | None = None) -> str | None:
        """Return a list-like field (a JSON array, or text separated by commas or spaces) as one
        space-separated string, the form RFC 6749 section 3.3 uses for scope."""
        value = self.raw(field)
        if value is None:
            return default
        if isinstance(value, list):
            items = [str(item).strip() for item in value]
        elif isinstance(value, str):
            items = value.replace(",", " ").split()
        else:
            raise self.error(field, f"must be text or a JSON array, got a JSON {type(value).__name__}")
        joined = " ".join(item for item in items if item)
        return joined or default

    def file_path(self, field: str, *, required: bool = False, hint: str = "") -> str | None:
        value = self.text(field, required=required, hint=hint)
        if value is None:
            return None
        path = os.path.expanduser(value)
        if not os.path.isfile(path):
            raise self.error(field, f"file {path!r} does not exist or is not a file")
        return path

    def ca_bundle(self) -> bool | str:
        """Return the `verify` argument of requests: the CA bundle path, or True for the system store."""
        return self.file_path("ca_bundle") or True

    def timeouts(self) -> Timeouts:
        seconds = self.number("timeout", default=DEFAULT_TIMEOUT_SECONDS, minimum=0.1)
        assert seconds is not None
        return Timeouts(connect=min(seconds, MAX_CONNECT_TIMEOUT_SECONDS), read=seconds)

    def private_key(
        self, field: str, passphrase_field: str, *, required: bool = False, hint: str = ""
    ) -> Any:
        """Load the private key in `field`, decrypted with `passphrase_field` when that is set.

        Returns a `cryptography` private key object, or None when the field is not set and not required.
        Raises `KeyLoadError` (or `WrongPassphraseError`) naming this connection and the field.
        """
        value = self.secret(field, required=required, hint=hint)
        passphrase = self.secret(passphrase_field)
        if value is None:
            return None
        return load_private_key(value, passphrase, connection_id=self.connection_id, field=field)


class TimeoutSession(requests.Session):
    """A `requests.Session` that applies the connection's timeouts and CA bundle to every request.

    simple-salesforce and google-auth send through a session they are given but pass no timeout,
    so the default lives here. `verify` is passed with each request because requests lets the
    REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE variables override a session's `verify` attribute, and
    a worker with those set would then reject a private CA that the connection names.
    """

    def __init__(self, timeouts: Timeouts, verify: bool | str = True) -> None:
        super().__init__()
        self.default_timeout = timeouts.as_tuple()
        self.verify = verify

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


class M2MConnectionMixin:
    """Lazy reading of the hook's connection into `ConnectionFields`.

    The connection is read on first use, not in `__init__`, so building a hook in a DAG file
    costs nothing and a connection fixed after a failure is read again by a new hook.
    """

    conn_name_attr: str
    conn_type: str
    # Standard Connection fields the hook reads; other names are read from `extra`.
    standard_fields: tuple[str, ...] = ("host", "login", "password")
    _fields: ConnectionFields | None = None

    def connection_fields(self) -> ConnectionFields:
        if self._fields is None:
            conn_id = getattr(self, self.conn_name_attr)
            connection = self.get_connection(conn_id)  # type: ignore[attr-defined]
            self._fields = ConnectionFields(connection, self.conn_type, self.standard_fields)
        return self._fields


# Argument names that start the auth package's ValueError messages, and the connection field each
# hook fills that argument from.
ARGUMENT_FIELDS = {
    "client_id": "login",
    "client_secret": "password",
    "private_key": "private_key",
    "algorithm": "signing_algorithm",
    "key_id": "key_id",
    "extra_params": "token_params",
    "resource": "resource",
    "token_url": "token_url",
    "issuer": "login",
    "subject": "username",
    "audience": "audience",
}


def argument_error(
    fields: ConnectionFields, err: ValueError, overrides: Mapping[str, str] | None = None
) -> ConnectionFieldError:
    """Turn a ValueError from an auth package constructor into an error naming the connection field.

    Those messages start with the argument name and contain no secret values.
    """
    argument = str(err).split(" ", 1)[0]
    field = {**ARGUMENT_FIELDS, **(overrides or {})}.get(argument, "extra")
    return fields.error(field, str(err))


def _airflow_option(key: str, fallback: str) -> str:
    """Read `[m2m] key` from Airflow's configuration (or `AIRFLOW__M2M__<KEY>`)."""
    try:
        from airflow.configuration import conf

        return str(conf.get("m2m", key, fallback=fallback))
    except Exception:  # no readable Airflow configuration, as in a plain Python process
        return os.environ.get(f"AIRFLOW__M2M__{key.upper()}", fallback)


def _airflow_fernet_key() -> str | None:
    try:
        from airflow.configuration import conf

        fernet_key = conf.get("core", "fernet_key", fallback="") or None
    except Exception:  # no readable Airflow configuration: fall back to the environment
        log.debug("Airflow's fernet_key is not readable; using $AIRFLOW__CORE__FERNET_KEY", exc_info=True)
        fernet_key = os.environ.get("AIRFLOW__CORE__FERNET_KEY") or None
    if fernet_key is not None and fernet_key.startswith("{"):
        # An unexpanded template value such as "{FERNET_KEY}" means no key is configured.
        return None
    return fernet_key


_cache_off_reported: set[str] = set()


def _report_cache_off(reason: str) -> None:
    if reason not in _cache_off_reported:
        _cache_off_reported.add(reason)
        log.info("Node-wide token cache is off (%s); each task process obtains its own tokens.", reason)


def node_token_cache() -> TokenCache:
    """Return the node-wide token cache shared by the task processes of one worker.

    Tokens are encrypted at rest with Airflow's `[core] fernet_key`. Without a key the cache is
    off rather than storing tokens in clear text, and an INFO line reports it once per process.
    `[m2m] node_token_cache = False` turns it off; `[m2m] token_cache_dir` moves it.
    """
    if _airflow_option("node_token_cache", "True").strip().lower() in {"false", "0", "no", "off"}:
        _report_cache_off("[m2m] node_token_cache is False")
        return NullTokenCache()
    fernet_key = _airflow_fernet_key()
    if fernet_key is None:
        _report_cache_off("no [core] fernet_key is configured to encrypt tokens at rest; set one to share tokens")
        return NullTokenCache()
    directory = _airflow_option("token_cache_dir", "")
    if directory:
        try:
            return FileTokenCache(Path(directory), fernet_key=fernet_key)
        except ValueError as err:
            log.warning("Node-wide token cache is off: [m2m] token_cache_dir %s is not usable: %s", directory, err)
            return NullTokenCache()
    return default_node_cache(fernet_key)


def build_token_endpoint(fields: ConnectionFields) -> TokenEndpoint:
    return TokenEndpoint(timeout=fields.timeouts().as_tuple(), verify=fields.ca_bundle())


def describe_token(token: AccessToken) -> str:
    """Describe a token for a test result or a log line: granted scope and lifetime, never the token."""
    seconds = int(token.lifetime.total_seconds())
    scope = token.scope if token.scope else "(none reported)"
    return f"granted scope: {scope}; token lifetime: {seconds} s"
