"""HTTP transport to token endpoints: timeouts, retries with backoff, error mapping."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import tenacity

from airflow_provider_m2m.auth.errors import OAuthError, TokenEndpointError, oauth_error_for
from airflow_provider_m2m.auth.masking import redact

log = logging.getLogger(__name__)

# Status codes worth another attempt: 429 (RFC 6585 section 4) and the 5xx server errors.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_DESCRIPTION_LENGTH = 300


class _RetryableResponse(Exception):
    """Internal signal to tenacity: the response may succeed when sent again."""

    def __init__(self, response: requests.Response, retry_after: float | None) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.retry_after = retry_after


def _is_retryable(error: BaseException) -> bool:
    # A TLS failure (bad CA bundle, wrong host name) does not heal by waiting.
    if isinstance(error, requests.exceptions.SSLError):
        return False
    return isinstance(error, _RetryableResponse | requests.ConnectionError | requests.Timeout)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the delay in seconds that a ``Retry-After`` header requests (RFC 9110 section 10.2.3), or ``None``.

    The header is either a number of seconds or an HTTP date.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def safe_url(url: str) -> str:
    """Return scheme, host, port and path of ``url`` for messages, logs and reprs.

    User info, query and fragment are dropped because they may carry credentials
    (``user:secret@`` or ``?client_secret=``). A port that is not a number is dropped as well.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class TokenEndpoint:
    """Sends token and discovery requests with timeouts and bounded retries.

    Network errors, 5xx and 429 are retried up to ``max_retries`` times with full-jitter
    exponential backoff (``backoff_base * 2**attempt``, capped at ``backoff_max`` seconds). A 429
    or 503 with ``Retry-After`` waits the delay the server requests, capped at ``max_retry_after``
    seconds. 400 and 401 are never retried: RFC 6749 section 5.2 errors need a configuration change.

    Args:
        session: ``requests.Session`` to send with; a new one when ``None``.
        timeout: ``(connect, read)`` timeout in seconds for every request.
        verify: ``True``, ``False`` or the path of a CA bundle for TLS verification.
        max_retries: retries after the first attempt.
        sleep: function used to wait between attempts (tests replace it).
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        verify: bool | str = True,
        max_retries: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 10.0,
        max_retry_after: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if len(timeout) != 2 or min(timeout) <= 0:
            raise ValueError("timeout must be a (connect, read) pair of positive seconds")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.verify = verify
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._sleep = sleep

    def _wait_seconds(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, _RetryableResponse) and error.retry_after is not None:
            # Honour the server's Retry-After plus up to 10% jitter, so clients that received
            # the same value do not return in lockstep.
            wait = min(error.retry_after, self.max_retry_after)
            return wait + random.uniform(0, wait * 0.1)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry_state.attempt_number - 1))
        return random.uniform(0, ceiling)

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        reason = f"HTTP {error.response.status_code}" if isinstance(error, _RetryableResponse) else type(error).__name__
        log.warning(
            "Token endpoint request failed (%s), retry %d of %d in %.1f s",
            reason,
            retry_state.attempt_number,
            self.max_retries,
            retry_state.upcoming_sleep,
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, url, timeout=self.timeout, verify=self.verify, **kwargs)
        if response.status_code in _RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            raise _RetryableResponse(response, retry_after)
        return response

    def _send_with_retries(
        self, method: str, url: str, build: Callable[[], Mapping[str, Any]] | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send with retries; `build`, when given, returns the request's keyword arguments anew for each attempt."""

        def attempt() -> requests.Response:
            return self._send(method, url, **(build() if build is not None else kwargs))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait_seconds,
            retry=tenacity.retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            sleep=self._sleep,
            reraise=True,
        )
        where = safe_url(url)
        try:
            return retrying(attempt)
        except _RetryableResponse as err:
            status = err.response.status_code
            raise TokenEndpointError(
                f"{where} returned HTTP {status} after {self.max_retries + 1} attempts",
                status_code=status,
                retryable=True,
            ) from None
        except requests.exceptions.SSLError as err:
            raise TokenEndpointError(
                f"TLS verification of {where} failed; check the CA bundle and the host name"
            ) from err
        except requests.Timeout as err:
            raise TokenEndpointError(
                f"request to {where} timed out after {self.max_retries + 1} attempts "
                f"(connect {self.timeout[0]} s, read {self.timeout[1]} s)",
                retryable=True,
            ) from err
        except requests.ConnectionError as err:
            raise TokenEndpointError(
                f"cannot connect to {where} after {self.max_retries + 1} attempts: {type(err).__name__}",
                retryable=True,
            ) from err
        except requests.RequestException as err:
            raise TokenEndpointError(f"request to {where} failed: {type(err).__name__}") from err

    def request_token(
        self,
        token_url: str,
        form: Mapping[str, str | list[str]],
        headers: Mapping[str, str] | None = None,
        *,
        secrets: Iterable[str] = (),
        rebuild: Callable[[], tuple[Mapping[str, str | list[str]], Mapping[str, str], Iterable[str]]] | None = None,
    ) -> Mapping[str, Any]:
        """POST a token request and return the JSON body of a 200 response (RFC 6749 section 5.1).

        ``secrets`` are redacted from any server text copied into an exception. ``rebuild``, when
        given, returns a new ``(form, headers, secrets)`` for each retry. A request that timed out
        may have reached the server, and RFC 7523 section 3 lets a server reject an assertion whose
        jti it has seen, so a retry must carry a newly signed assertion.

        Raises:
            OAuthError: the server sent an RFC 6749 section 5.2 error; the subclass names the code.
            TokenEndpointError: transport failure, retries exhausted or a malformed response.
        """
        log.debug("Token request to %s, grant_type=%s", safe_url(token_url), form.get("grant_type"))
        all_secrets = list(secrets)
        attempts = 0

        def build() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            data, extra_headers = form, headers
            if attempts > 1 and rebuild is not None:
                data, extra_headers, more_secrets = rebuild()
                all_secrets.extend(more_secrets)
            return {"data": data, "headers": {"Accept": "application/json", **(extra_headers or {})}}

        response = self._send_with_retries("POST", token_url, build)
        return self._parse(response, token_url, tuple(all_secrets))

    def fetch_json(self, url: str) -> Mapping[str, Any]:
        """GET a JSON document, such as authorization server metadata, with the same retries."""
        response = self._send_with_retries("GET", url, headers={"Accept": "application/json"})
        where = safe_url(url)
        if response.status_code != 200:
            raise TokenEndpointError(f"{where} returned HTTP {response.status_code}", status_code=response.status_code)
        try:
            body = response.json()
        except ValueError as err:
            raise TokenEndpointError(f"{where} did not return JSON") from err
        if not isinstance(body, Mapping):
            raise TokenEndpointError(f"{where} did not return a JSON object")
        return body

    def _parse(self, response: requests.Response, token_url: str, secrets: tuple[str, ...]) -> Mapping[str, Any]:
        where = safe_url(token_url)
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None

        if status == 200:
            if not isinstance(body, Mapping):
                raise TokenEndpointError(f"{where} returned HTTP 200 without a JSON object", status_code=status)
            return body

        # RFC 6749 section 5.2: errors are JSON with "error" and optional "error_description".
        if isinstance(body, Mapping) and isinstance(body.get("error"), str):
            description = body.get("error_description")
            if isinstance(description, str):
                description = redact(description, secrets)[:_MAX_DESCRIPTION_LENGTH]
            else:
                description = None
            error_uri = body.get("error_uri") if isinstance(body.get("error_uri"), str) else None
            error: OAuthError = oauth_error_for(
                redact(body["error"], secrets)[:100], description, status_code=status, error_uri=error_uri
            )
            log.debug("Token endpoint %s returned error %s (HTTP %d)", where, error.error, status)
            raise error
        raise TokenEndpointError(
            f"{where} returned HTTP {status} without an OAuth error body", status_code=status
        )
