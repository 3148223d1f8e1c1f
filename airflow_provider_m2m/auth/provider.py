"""TokenProvider: one token per credential per lifetime, shared by threads and processes."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow_provider_m2m.auth import metrics
from airflow_provider_m2m.auth.cache import NullTokenCache, TokenCache, default_node_cache
from airflow_provider_m2m.auth.endpoint import TokenEndpoint
from airflow_provider_m2m.auth.errors import InvalidClient, OAuthError, TokenEndpointError
from airflow_provider_m2m.auth.grants import Grant
from airflow_provider_m2m.auth.masking import mask_secret, mask_secrets
from airflow_provider_m2m.auth.token import (
    CLOCK_SKEW,
    DEFAULT_LIFETIME,
    REFRESH_MARGIN,
    AccessToken,
    Freshness,
    utcnow,
)

log = logging.getLogger(__name__)

# Pause after a failed renewal while the current token is still valid. Without it every
# caller would wait through a full retry budget in turn during a token endpoint outage.
RENEWAL_RETRY_SECONDS = 15.0

# Client authentication methods that send a client secret (RFC 6749 section 2.3.1).
CLIENT_SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})


@dataclass
class _Slot:
    """In-process cache entry for one credential, shared by every TokenProvider built for it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    token: AccessToken | None = None
    # time.monotonic() before which a due token is served without another renewal attempt.
    renew_after: float = 0.0


_slots: dict[str, _Slot] = {}
_slots_lock = threading.Lock()


def _slot_for(key: str) -> _Slot:
    with _slots_lock:
        slot = _slots.get(key)
        if slot is None:
            slot = _slots[key] = _Slot()
        return slot


def _authenticates_with_secret(grant: Grant) -> bool:
    client_auth = getattr(grant, "client_auth", None)
    return getattr(client_auth, "method", None) in CLIENT_SECRET_METHODS


def clear_memory_cache() -> None:
    """Forget every in-process token, as a new task process would start. Meant for tests."""
    with _slots_lock:
        _slots.clear()


class _DefaultCache:
    def __repr__(self) -> str:
        return "DEFAULT_CACHE"


DEFAULT_CACHE: Any = _DefaultCache()


class TokenProvider:
    """Hands out access tokens for one credential and renews them ahead of expiry.

    ``get_token`` looks in the in-process cache, then the node-wide cache, then obtains a token
    with one grant while concurrent callers for the same credential wait for it (single flight
    across threads, and across processes through the node-wide cache's lock).

    Args:
        grant: the grant to obtain tokens with.
        connection_id: Airflow connection id, named in logs, metrics and errors.
        endpoint: transport to the token endpoint; a default TokenEndpoint when ``None``.
        cache: node-wide cache. The default is ``default_node_cache()``; ``None`` or
            ``NullTokenCache()`` keeps tokens in this process only.
        refresh_margin: renew a token this long before it expires.
        clock_skew: how far the API's clock may run ahead of this host's.
        default_lifetime: lifetime assumed when a response carries no expiry.
        fallback_grant: the same grant with the secondary client secret, tried once when the
            primary gets ``invalid_client``, or any HTTP 401 for a client secret method.
    """

    def __init__(
        self,
        grant: Grant,
        *,
        connection_id: str,
        endpoint: TokenEndpoint | None = None,
        cache: TokenCache | None = DEFAULT_CACHE,
        refresh_margin: timedelta = REFRESH_MARGIN,
        clock_skew: timedelta = CLOCK_SKEW,
        default_lifetime: timedelta = DEFAULT_LIFETIME,
        fallback_grant: Grant | None = None,
    ) -> None:
        if not connection_id:
            raise ValueError("connection_id is required")
        if refresh_margin < timedelta(0) or clock_skew < timedelta(0):
            raise ValueError("refresh_margin and clock_skew must not be negative")
        if default_lifetime <= timedelta(0):
            raise ValueError("default_lifetime must be positive")
        self.grant = grant
        self.fallback_grant = fallback_grant
        self.connection_id = connection_id
        self.endpoint = endpoint or TokenEndpoint()
        if cache is DEFAULT_CACHE:
            cache = default_node_cache()
        self.cache: TokenCache = cache if cache is not None else NullTokenCache()
        self.refresh_margin = refresh_margin
        self.clock_skew = clock_skew
        self.default_lifetime = default_lifetime
        self._use_fallback = False

        # The key covers both secrets: changing either one in the connection must not reuse a token.
        key = grant.fingerprint()
        if fallback_grant is not None:
            key = hashlib.sha256(f"{key}:{fallback_grant.fingerprint()}".encode()).hexdigest()
        self.cache_key = key
        self._slot = _slot_for(key)
        for candidate in (grant, fallback_grant):
            if candidate is not None and hasattr(candidate, "secret_values"):
                mask_secrets(candidate.secret_values())

    def __repr__(self) -> str:
        return f"TokenProvider(connection_id={self.connection_id!r}, grant={self.grant!r})"

    def _freshness(self, token: AccessToken) -> Freshness:
        return token.freshness(utcnow(), self.refresh_margin, self.clock_skew)

    def _tags(self, **more: str) -> dict[str, str]:
        return {"conn_id": self.connection_id, **more}

    def get_token(self, force: bool = False) -> AccessToken:
        """Return a fresh access token, obtaining one with a grant when the caches have none.

        A token that is due for renewal but not expired is returned while another thread
        renews it, or when renewal fails with a retryable error (logged at WARNING).
        ``force=True`` obtains a new token even when the cached one is fresh, unless another
        caller replaced the token while this one waited.

        Raises:
            OAuthError: the token endpoint rejected the grant; ``connection_id`` is set.
            TokenEndpointError: the token endpoint failed after retries; ``connection_id`` is set.
        """
        seen = self._slot.token
        if not force and seen is not None:
            state = self._freshness(seen)
            if state is Freshness.FRESH:
                metrics.incr(metrics.CACHE_HITS, self._tags(level="memory"))
                return seen
            if state is Freshness.DUE and (
                self._slot.lock.locked() or time.monotonic() < self._slot.renew_after
            ):
                # Another thread is renewing, or renewal failed moments ago. The current
                # token stays valid meanwhile.
                return seen
        with self._slot.lock:
            return self._get_token_locked(force, seen)

    def _replaces(self, candidate: AccessToken | None, seen: AccessToken | None, force: bool) -> bool:
        """Tell whether ``candidate`` can be returned: fresh, and new to a caller that forced renewal."""
        if candidate is None or self._freshness(candidate) is not Freshness.FRESH:
            return False
        if not force:
            return True
        return seen is not None and candidate.access_token != seen.access_token

    def _get_token_locked(self, force: bool, seen: AccessToken | None) -> AccessToken:
        current = self._slot.token
        if self._replaces(current, seen, force):
            return current

        stored = None if force and seen is None else self.cache.load(self.cache_key)
        if self._replaces(stored, seen, force):
            self._slot.token = stored
            metrics.incr(metrics.CACHE_HITS, self._tags(level="node"))
            return stored

        with self.cache.lock(self.cache_key):
            # Another process may have obtained a token while this one waited for the lock.
            stored = self.cache.load(self.cache_key)
            if self._replaces(stored, seen, force):
                self._slot.token = stored
                metrics.incr(metrics.CACHE_HITS, self._tags(level="node"))
                return stored

            still_valid = [
                token
                for token in (current, stored)
                if token is not None and self._freshness(token) is not Freshness.EXPIRED
            ]
            try:
                token = self._grant()
            except (OAuthError, TokenEndpointError) as err:
                if still_valid and err.retryable and not force:
                    fallback = max(still_valid, key=lambda item: item.expires_at)
                    log.warning(
                        "Token renewal for connection %r failed (%s); using the current token until %s",
                        self.connection_id,
                        err,
                        fallback.expires_at.isoformat(timespec="seconds"),
                    )
                    self._slot.renew_after = time.monotonic() + RENEWAL_RETRY_SECONDS
                    return fallback
                raise
            self.cache.store(self.cache_key, token)
            self._slot.token = token
            return token

    def _grant(self) -> AccessToken:
        if self._use_fallback and self.fallback_grant is not None:
            return self._obtain(self.fallback_grant)
        try:
            return self._obtain(self.grant)
        except (OAuthError, TokenEndpointError) as err:
            if self.fallback_grant is None or not self._rejects_client_secret(err):
                raise
            reason = err.error if isinstance(err, OAuthError) else "no OAuth error body"
            status_code = err.status_code
        log.warning(
            "Connection %r: the token endpoint rejected the primary client secret (%s, HTTP %s); "
            "the secondary secret is used now. Rotate the primary secret of connection %r.",
            self.connection_id,
            reason,
            status_code,
            self.connection_id,
        )
        token = self._obtain(self.fallback_grant)
        self._use_fallback = True
        return token

    def _rejects_client_secret(self, err: OAuthError | TokenEndpointError) -> bool:
        """Tell whether ``err`` means the token endpoint rejected the client secret.

        RFC 6749 section 5.2 defines ``invalid_client`` for failed client authentication and lets
        the server send it with HTTP 401. Keycloak sends ``unauthorized_client`` and Auth0
        ``access_denied`` with that 401 for a wrong secret, so any 401 to a grant that sends a
        client secret counts as a rejected secret. A 400 with another code, such as
        ``invalid_scope``, would fail with the secondary secret too.
        """
        if isinstance(err, InvalidClient):
            return True
        return err.status_code == 401 and _authenticates_with_secret(self.grant)
    def _obtain(self, grant: Grant) -> AccessToken:
        grant_type = str(getattr(grant, "grant_type", type(grant).__name__))
        tags = self._tags(grant_type=grant_type)
        started = time.monotonic()
        try:
            token = grant.obtain(self.endpoint, default_lifetime=self.default_lifetime)
        except (OAuthError, TokenEndpointError) as err:
            err.connection_id = self.connection_id
            error_name = err.error if isinstance(err, OAuthError) else "transport"
            metrics.incr(metrics.GRANT_FAILURES, {**tags, "error": error_name})
            raise
        elapsed = timedelta(seconds=time.monotonic() - started)
        mask_secret(token.access_token)
        metrics.incr(metrics.GRANTS, tags)
        metrics.timing(metrics.GRANT_DURATION, elapsed, tags)

        if self._freshness(token) is Freshness.EXPIRED:
            metrics.incr(metrics.GRANT_FAILURES, {**tags, "error": "expired_on_arrival"})
            raise TokenEndpointError(
                f"the token endpoint issued a token that expires at {token.expires_at.isoformat()}, "
                "which is already past by this host's clock; check the system clock",
                connection_id=self.connection_id,
            )
        lifetime = (token.expires_at - utcnow()).total_seconds()
        log.info(
            "Obtained access token for connection %r with grant %s: lifetime %d s, granted scope %s",
            self.connection_id,
            grant_type,
            lifetime,
            repr(token.scope) if token.scope else "(not returned)",
        )
        return token

    def invalidate(self, access_token: str) -> None:
        """Drop ``access_token`` from both caches so that the next ``get_token`` obtains a new one.

        A token that another caller already replaced is left alone.
        """
        with self._slot.lock:
            current = self._slot.token
            if current is not None and current.access_token == access_token:
                self._slot.token = None
        self.cache.delete(self.cache_key, access_token)
