"""Grants: build a token request, send it through a TokenEndpoint, parse the response.

Grants are stateless; TokenProvider caches what they return.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airflow_provider_m2m.auth.client_auth import (
    ClientAuth,
    FormData,
    public_key_digest,
    validate_signing_key,
)
from airflow_provider_m2m.auth.endpoint import TokenEndpoint, safe_url
from airflow_provider_m2m.auth.masking import mask_secret
from airflow_provider_m2m.auth.token import DEFAULT_LIFETIME, AccessToken, parse_token_response, utcnow

JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# Lifetime of a JWT bearer assertion. It is signed right before each request, so it only has
# to outlive one request plus clock skew. A short window limits what a leaked assertion allows.
JWT_BEARER_ASSERTION_LIFETIME = timedelta(minutes=3)

# Form fields that carry the grant or client authentication; extra parameters may not override them.
_RESERVED_PARAMS = frozenset(
    {
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "assertion",
        "scope",
        "audience",
        "resource",
    }
)


@runtime_checkable
class Grant(Protocol):
    """A way to obtain an access token.

    ``fingerprint`` identifies the credential and the requested access: it changes when the
    token URL, client id, secret or key, scope, audience or resource changes, so a cached token
    is never reused across a secret rotation. Optional attributes that TokenProvider reads when
    present are ``grant_type`` (a name for logs) and ``secret_values()`` (strings to mask).
    """

    def fingerprint(self) -> str: ...

    def obtain(self, endpoint: TokenEndpoint, *, default_lifetime: timedelta = DEFAULT_LIFETIME) -> AccessToken: ...


def validate_token_url(url: str, name: str = "token_url") -> str:
    """Raise ``ValueError`` unless ``url`` is an absolute https URL, or http on a loopback host.

    RFC 6749 section 3.2 requires TLS at the token endpoint because the request carries client
    credentials. Plain http is accepted only for loopback test servers.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"{name} is missing or empty")
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{name} must be an absolute URL such as https://host/path")
    if parts.username or parts.password:
        raise ValueError(f"{name} must not contain user info; put credentials in the client authentication fields")
    # urlsplit reads the port only on access, and raises ValueError when it is not a number.
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{name} has a port that is not a number from 0 to 65535") from None
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return url
    raise ValueError(f"{name} must use https (RFC 6749 section 3.2), got {safe_url(url)}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scope_text(scope: str | Sequence[str] | None) -> str | None:
    """Join a scope list with spaces (RFC 6749 section 3.3)."""
    if scope is None:
        return None
    if isinstance(scope, str):
        text = " ".join(scope.split())
    else:
        text = " ".join(str(item).strip() for item in scope if str(item).strip())
    return text or None


def _resource_list(resource: str | Sequence[str] | None) -> list[str]:
    if resource is None:
        return []
    items = [resource] if isinstance(resource, str) else list(resource)
    for item in items:
        # RFC 8707 section 2: each resource is an absolute URI without a fragment.
        parts = urlsplit(item)
        if not parts.scheme or parts.fragment:
            raise ValueError(
                f"resource {safe_url(item)!r} must be an absolute URI without a fragment (RFC 8707 section 2)"
            )
    return items


def _fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _assertion_secrets(assertion: object) -> tuple[str, ...]:
    """Return the forms of a signed assertion to redact from server text: the whole JWT and its signature.

    Anyone who has a copy of a signed assertion can present it until it expires, and a server
    may quote all of it or only its signature in an ``error_description``.
    """
    if not isinstance(assertion, str) or not assertion:
        return ()
    signature = assertion.rpartition(".")[2]
    return (assertion, signature) if signature and signature != assertion else (assertion,)


def _post(
    endpoint: TokenEndpoint,
    token_url: str,
    build_form: Callable[[], tuple[FormData, tuple[str, ...]]],
    client_auth: ClientAuth | None,
    default_lifetime: timedelta,
) -> AccessToken:
    """Send a token request built by `build_form` (the form and its secrets), which runs again for each retry."""

    def prepare() -> tuple[FormData, dict[str, str], tuple[str, ...]]:
        form, secrets = build_form()
        headers: dict[str, str] = {}
        if client_auth is not None:
            # private_key_jwt signs a new client assertion, with a new jti, on every call.
            client_auth.apply(token_url, form, headers)
            secrets += client_auth.secret_values()
            # secret_values() cannot list the client assertion because apply signs a new one each time.
            secrets += _assertion_secrets(form.get("client_assertion"))
        return form, headers, secrets

    form, headers, secrets = prepare()
    requested_at = utcnow()
    body = endpoint.request_token(token_url, form, headers, secrets=secrets, rebuild=prepare)
    token = parse_token_response(body, requested_at=requested_at, default_lifetime=default_lifetime)
    mask_secret(token.access_token)
    for field_name in ("refresh_token", "id_token"):
        value = token.extra.get(field_name)
        if isinstance(value, str):
            mask_secret(value)
    return token


class ClientCredentialsGrant:
    """Client credentials grant (RFC 6749 section 4.4).

    ``scope`` (RFC 6749 section 3.3), ``audience`` (used by Auth0 and Okta among others) and
    ``resource`` (RFC 8707) are sent when set. ``extra_params`` adds other form fields from the
    connection but cannot override the ones this class sets.
    """

    grant_type = "client_credentials"

    def __init__(
        self,
        token_url: str,
        client_auth: ClientAuth,
        scope: str | Sequence[str] | None = None,
        audience: str | None = None,
        resource: str | Sequence[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
    ) -> None:
        self.token_url = validate_token_url(token_url)
        if client_auth is None:
            raise ValueError("client_auth is required for the client credentials grant (RFC 6749 section 4.4.2)")
        self.client_auth = client_auth
        self.scope = _scope_text(scope)
        self.audience = audience or None
        self.resource = _resource_list(resource)
        extra = dict(extra_params or {})
        reserved = sorted(_RESERVED_PARAMS.intersection(extra))
        if reserved:
            raise ValueError(f"extra_params must not set {', '.join(reserved)}; use the dedicated arguments")
        for key, value in extra.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"extra_params must map strings to strings; {key!r} does not")
        self.extra_params = extra

    @property
    def client_id(self) -> str:
        return self.client_auth.client_id

    def __repr__(self) -> str:
        return (
            f"ClientCredentialsGrant(token_url={safe_url(self.token_url)!r}, client_auth={self.client_auth!r}, "
            f"scope={self.scope!r}, audience={self.audience!r}, resource={self.resource!r})"
        )

    def fingerprint(self) -> str:
        return _fingerprint(
            self.grant_type,
            self.token_url,
            self.client_auth.client_id,
            self.client_auth.key_material(),
            self.scope,
            self.audience,
            self.resource,
            sorted(self.extra_params.items()),
        )

    def secret_values(self) -> tuple[str, ...]:
        return self.client_auth.secret_values()

    def build_form(self) -> dict[str, str | list[str]]:
        form: dict[str, str | list[str]] = {"grant_type": self.grant_type}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        if self.resource:
            # RFC 8707 section 2: "resource" may be repeated to name several target services.
            form["resource"] = list(self.resource)
        form.update(self.extra_params)
        return form

    def obtain(self, endpoint: TokenEndpoint, *, default_lifetime: timedelta = DEFAULT_LIFETIME) -> AccessToken:
        return _post(endpoint, self.token_url, lambda: (self.build_form(), ()), self.client_auth, default_lifetime)


class JwtBearerGrant:
    """JWT bearer grant (RFC 7523 section 2.1), as Salesforce's server-to-server flow uses it.

    Each request carries a new assertion signed with ``private_key``, with a unique ``jti`` and
    an ``exp`` 3 minutes ahead. Its ``iss`` is ``issuer`` (for Salesforce, the connected app's
    consumer key) and its ``sub`` is ``subject`` (for Salesforce, the username). Its ``aud`` is
    ``audience``, which for Salesforce is the login host, not the token URL.
    """

    grant_type = JWT_BEARER_GRANT_TYPE

    def __init__(
        self,
        token_url: str,
        issuer: str,
        subject: str,
        audience: str,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        key_id: str | None = None,
        algorithm: str = "RS256",
        scope: str | Sequence[str] | None = None,
        client_auth: ClientAuth | None = None,
    ) -> None:
        self.token_url = validate_token_url(token_url)
        for name, value in (("issuer", issuer), ("subject", subject), ("audience", audience)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} is missing or empty")
        validate_signing_key(private_key, algorithm)
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self._private_key = private_key
        self.key_id = key_id or None
        self.algorithm = algorithm
        self.scope = _scope_text(scope)
        self.client_auth = client_auth

    @property
    def client_id(self) -> str:
        return self.issuer

    def __repr__(self) -> str:
        return (
            f"JwtBearerGrant(token_url={safe_url(self.token_url)!r}, issuer={self.issuer!r}, subject={self.subject!r}, "
            f"audience={self.audience!r}, scope={self.scope!r})"
        )

    def fingerprint(self) -> str:
        return _fingerprint(
            "jwt_bearer",
            self.token_url,
            self.issuer,
            self.subject,
            self.audience,
            self.algorithm,
            self.key_id,
            public_key_digest(self._private_key),
            self.scope,
            self.client_auth.key_material() if self.client_auth else None,
        )

    def secret_values(self) -> tuple[str, ...]:
        return self.client_auth.secret_values() if self.client_auth else ()

    def build_assertion(self) -> str:
        now = utcnow()
        claims = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int((now + JWT_BEARER_ASSERTION_LIFETIME).timestamp()),
        }
        headers = {"kid": self.key_id} if self.key_id else None
        assertion = jwt.encode(claims, self._private_key, algorithm=self.algorithm, headers=headers)
        mask_secret(assertion)
        return assertion

    def obtain(self, endpoint: TokenEndpoint, *, default_lifetime: timedelta = DEFAULT_LIFETIME) -> AccessToken:
        def build_form() -> tuple[FormData, tuple[str, ...]]:
            # A new assertion for each attempt: its jti must not reach the server twice.
            assertion = self.build_assertion()
            form: FormData = {"grant_type": self.grant_type, "assertion": assertion}
            if self.scope:
                form["scope"] = self.scope
            return form, _assertion_secrets(assertion)

        return _post(endpoint, self.token_url, build_form, self.client_auth, default_lifetime)
