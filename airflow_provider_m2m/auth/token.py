"""Access token model, freshness rule and token response parsing (RFC 6749 section 5.1)."""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import jwt

from airflow_provider_m2m.auth.errors import TokenEndpointError

log = logging.getLogger(__name__)

# Renew a token 2 minutes before it expires. With the default TokenEndpoint settings, one
# renewal sleeps at most 90 s between attempts: 3 retries of at most 30 s each, even when a
# Retry-After header requests more. A token endpoint outage of that length therefore never
# reaches API requests, because they keep the old token while renewal retries. For the
# common 1-hour token this costs about 3% of the lifetime.
REFRESH_MARGIN = timedelta(minutes=2)

# How far the clock of the server that checks expiry may run ahead of this host's clock.
# Hosts synced with NTP differ by well under a second. 30 s also covers a VM whose clock
# drifted since its last sync.
CLOCK_SKEW = timedelta(seconds=30)

# Lifetime assumed when a token response has neither ``expires_in`` nor a JWT ``exp``.
# RFC 6749 section 5.1 leaves the lifetime to the server's documentation then. Callers pass
# another default_lifetime when the API documents a different session length.
DEFAULT_LIFETIME = timedelta(hours=1)

# A short-lived token spends at most this share of its lifetime on early renewal, so a
# 60-second token is still used for 30 seconds before it is renewed.
_MAX_EARLY_SHARE = 0.5


class Freshness(enum.Enum):
    """State of an access token at a given time."""

    FRESH = "fresh"  # use it
    DUE = "due"  # still valid, renew it now; usable while renewal is in flight or failing
    EXPIRED = "expired"  # never send it


@dataclass(frozen=True)
class AccessToken:
    """An access token with the expiry, granted scope and other fields of its token response."""

    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime
    scope: str | None
    issued_at: datetime
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def __post_init__(self) -> None:
        for name in ("expires_at", "issued_at"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"AccessToken.{name} must be timezone-aware UTC, got a naive datetime")
        if not isinstance(self.extra, MappingProxyType):
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @property
    def lifetime(self) -> timedelta:
        return self.expires_at - self.issued_at

    def freshness(
        self,
        now: datetime,
        refresh_margin: timedelta = REFRESH_MARGIN,
        clock_skew: timedelta = CLOCK_SKEW,
    ) -> Freshness:
        """Classify the token at ``now``.

        The token is EXPIRED from ``expires_at - clock_skew``, and DUE for renewal from
        ``refresh_margin`` before that. When margin plus skew exceed half the token's lifetime,
        both shrink in proportion so that a short-lived token stays FRESH for half its life.
        """
        early = refresh_margin + clock_skew
        half_life = self.lifetime * _MAX_EARLY_SHARE
        if early > half_life and early > timedelta(0):
            ratio = max(half_life, timedelta(0)) / early
            refresh_margin = refresh_margin * ratio
            clock_skew = clock_skew * ratio
        expires_locally = self.expires_at - clock_skew
        if now >= expires_locally:
            return Freshness.EXPIRED
        if now >= expires_locally - refresh_margin:
            return Freshness.DUE
        return Freshness.FRESH

    def to_json(self) -> dict[str, Any]:
        """Serialize for the node-wide token cache."""
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at.isoformat(),
            "scope": self.scope,
            "issued_at": self.issued_at.isoformat(),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccessToken:
        return cls(
            access_token=data["access_token"],
            token_type=data["token_type"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
            scope=data.get("scope"),
            issued_at=datetime.fromisoformat(data["issued_at"]),
            extra=data.get("extra") or {},
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


def _seconds_from_expires_in(value: Any) -> float | None:
    """Return ``expires_in`` as seconds, accepting a number or a numeric string; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def jwt_expiry(access_token: str) -> datetime | None:
    """Return the ``exp`` claim of a JWT access token, or ``None`` for an opaque token.

    The signature is not checked, because the API validates the token. This client uses the
    claim only to schedule renewal.
    """
    if access_token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_token_response(
    body: Any,
    *,
    requested_at: datetime,
    default_lifetime: timedelta = DEFAULT_LIFETIME,
) -> AccessToken:
    """Build an ``AccessToken`` from a successful token response (RFC 6749 section 5.1).

    The expiry comes from ``expires_in`` (a number or numeric string, counted from
    ``requested_at`` so that network time only makes it earlier), else from the ``exp``
    claim of a JWT access token, else from ``default_lifetime``.

    Raises:
        TokenEndpointError: the body is not a JSON object, has no ``access_token``, or its
            ``token_type`` is not ``Bearer``.
    """
    if not isinstance(body, Mapping):
        raise TokenEndpointError("Token response is not a JSON object")
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenEndpointError("Token response has no access_token")

    # RFC 6749 section 5.1: token_type is required and case-insensitive. Some servers omit it,
    # and RFC 6750 bearer tokens are the only type this package sends.
    token_type = body.get("token_type") or "Bearer"
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenEndpointError(
            f"Token response has token_type {token_type!r}; only Bearer tokens (RFC 6750) are supported"
        )

    expires_at: datetime | None = None
    raw_expires_in = body.get("expires_in")
    seconds = _seconds_from_expires_in(raw_expires_in)
    if seconds is not None:
        expires_at = requested_at + timedelta(seconds=seconds)
    else:
        if raw_expires_in is not None:
            log.warning(
                "Token response has an invalid expires_in %r; using the token's exp claim or the default lifetime",
                raw_expires_in,
            )
        expires_at = jwt_expiry(access_token)
        if expires_at is None:
            expires_at = requested_at + default_lifetime
            log.debug("Token response has no expiry; assuming %d s", default_lifetime.total_seconds())

    scope = body.get("scope")
    if isinstance(scope, list):
        scope = " ".join(str(item) for item in scope)
    elif scope is not None and not isinstance(scope, str):
        scope = str(scope)

    known = {"access_token", "token_type", "expires_in", "scope"}
    extra = {key: value for key, value in body.items() if key not in known}
    return AccessToken(
        access_token=access_token,
        token_type="Bearer",
        expires_at=expires_at,
        scope=scope,
        issued_at=requested_at,
        extra=extra,
    )
