"""Client authentication at the token endpoint (RFC 6749 section 2.3, RFC 7523 section 2.2).

Each method validates its inputs when built and adds itself to a token request with ``apply``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airflow_provider_m2m.auth.masking import basic_credentials, mask_secret
from airflow_provider_m2m.auth.token import utcnow

FormData = MutableMapping[str, str | list[str]]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Lifetime of a client assertion. It is signed right before each request, so it only has to
# outlive the request and the server's clock skew; a short window limits replay.
ASSERTION_LIFETIME = timedelta(seconds=60)

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
_MIN_RSA_KEY_BITS = 2048


class ClientAuth(Protocol):
    """Client authentication method: adds the client's credentials to a token request."""

    client_id: str
    method: str

    def apply(self, token_url: str, form: FormData, headers: MutableMapping[str, str]) -> None: ...

    def secret_values(self) -> tuple[str, ...]: ...

    def key_material(self) -> str:
        """Return a string that changes when the credential changes, hashed into fingerprints."""
        ...


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is missing or empty")
    return value


def validate_signing_key(private_key: object, algorithm: str, name: str = "private_key") -> None:
    """Raise ``ValueError`` unless the key type fits the JWS algorithm (RFC 7518 section 3.1)."""
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r} is not supported; use one of {', '.join(SUPPORTED_ALGORITHMS)}")
    if algorithm == "RS256":
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError(f"{name} must be an RSA private key for RS256, got {type(private_key).__name__}")
        # RFC 7518 section 3.3: RSA keys for RS256 must be at least 2048 bits.
        if private_key.key_size < _MIN_RSA_KEY_BITS:
            raise ValueError(f"{name} is a {private_key.key_size}-bit RSA key; RS256 needs at least 2048 bits")
    elif algorithm == "ES256":
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise ValueError(f"{name} must be an EC P-256 private key for ES256")


def public_key_digest(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """Return the SHA-256 of the public key, which identifies the key pair without exposing it."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ClientSecretBasic:
    """``client_secret_basic``: client id and secret in an HTTP Basic header (RFC 6749 section 2.3.1)."""

    method = "client_secret_basic"

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = _require_text(client_id, "client_id")
        self._client_secret = _require_text(client_secret, "client_secret")
        self._credentials = basic_credentials(self.client_id, self._client_secret)
        mask_secret(self._client_secret)
        mask_secret(self._credentials)

    def __repr__(self) -> str:
        return f"ClientSecretBasic(client_id={self.client_id!r})"

    def apply(self, token_url: str, form: FormData, headers: MutableMapping[str, str]) -> None:
        headers["Authorization"] = f"Basic {self._credentials}"

    def secret_values(self) -> tuple[str, ...]:
        return (self._client_secret, self._credentials)

    def key_material(self) -> str:
        return f"{self.method}:{_secret_digest(self._client_secret)}"


class ClientSecretPost:
    """``client_secret_post``: client id and secret in the request body (RFC 6749 section 2.3.1)."""

    method = "client_secret_post"

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = _require_text(client_id, "client_id")
        self._client_secret = _require_text(client_secret, "client_secret")
        mask_secret(self._client_secret)

    def __repr__(self) -> str:
        return f"ClientSecretPost(client_id={self.client_id!r})"

    def apply(self, token_url: str, form: FormData, headers: MutableMapping[str, str]) -> None:
        form["client_id"] = self.client_id
        form["client_secret"] = self._client_secret

    def secret_values(self) -> tuple[str, ...]:
        return (self._client_secret,)

    def key_material(self) -> str:
        return f"{self.method}:{_secret_digest(self._client_secret)}"


class PrivateKeyJwt:
    """``private_key_jwt``: a client assertion signed with the client's key (RFC 7523 section 2.2).

    A new assertion is signed for every request, with ``iss`` and ``sub`` set to the client id,
    ``aud`` set to the token endpoint URL, a unique ``jti`` and a 60-second ``exp``
    (RFC 7523 section 3).
    """

    method = "private_key_jwt"

    def __init__(
        self,
        client_id: str,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        key_id: str | None = None,
        algorithm: str = "RS256",
    ) -> None:
        self.client_id = _require_text(client_id, "client_id")
        validate_signing_key(private_key, algorithm)
        if key_id is not None and not isinstance(key_id, str):
            raise ValueError("key_id must be a string")
        self._private_key = private_key
        self.key_id = key_id or None
        self.algorithm = algorithm

    def __repr__(self) -> str:
        return f"PrivateKeyJwt(client_id={self.client_id!r}, key_id={self.key_id!r}, algorithm={self.algorithm!r})"

    def build_assertion(self, token_url: str) -> str:
        now = utcnow()
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int((now + ASSERTION_LIFETIME).timestamp()),
        }
        headers = {"kid": self.key_id} if self.key_id else None
        assertion = jwt.encode(claims, self._private_key, algorithm=self.algorithm, headers=headers)
        mask_secret(assertion)
        return assertion

    def apply(self, token_url: str, form: FormData, headers: MutableMapping[str, str]) -> None:
        # RFC 7521 section 4.2: client_id is optional with an assertion but widely required.
        form["client_id"] = self.client_id
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = self.build_assertion(token_url)

    def secret_values(self) -> tuple[str, ...]:
        return ()

    def key_material(self) -> str:
        return f"{self.method}:{self.algorithm}:{self.key_id}:{public_key_digest(self._private_key)}"
