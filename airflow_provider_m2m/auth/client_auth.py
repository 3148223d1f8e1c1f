"""Client authentication at the token endpoint (RFC 6749 section 2.3, RFC 7523 section 2.2).

Each method validates its inputs when built and adds itself to a token request with ``apply``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import uuid
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from airflow_provider_m2m.auth.masking import basic_credentials, mask_secret
from airflow_provider_m2m.auth.token import utcnow

log = logging.getLogger(__name__)

FormData = MutableMapping[str, str | list[str]]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Lifetime of a client assertion. It is signed right before each request, so it only has to
# outlive the request and the server's clock skew; a short window limits replay.
ASSERTION_LIFETIME = timedelta(seconds=60)

SUPPORTED_ALGORITHMS = ("RS256", "PS256", "ES256")
_RSA_ALGORITHMS = ("RS256", "PS256")
_MIN_RSA_KEY_BITS = 2048

_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
# Maximum length of a value tried as a file path. Longer values are read as base64 only.
_MAX_PATH_LENGTH = 1024


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
    if algorithm in _RSA_ALGORITHMS:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError(
                f"{name} must be an RSA private key for {algorithm}, got {type(private_key).__name__}"
            )
        # RFC 7518 sections 3.3 and 3.5: RSA keys for RS256 and PS256 must be at least 2048 bits.
        if private_key.key_size < _MIN_RSA_KEY_BITS:
            raise ValueError(
                f"{name} is a {private_key.key_size}-bit RSA key; {algorithm} needs at least 2048 bits"
            )
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


def _public_key_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _der_of_pem_certificate(text: str) -> bytes | None:
    """Return the DER of the first certificate block in ``text``, or None when it has none.

    The body is read with all whitespace removed, so a PEM whose line breaks were escaped as
    ``\\n``, turned into spaces or lost (as a single-line form input does) still loads.
    """
    match = _PEM_CERTIFICATE.search(text.replace("\\r\\n", "\n").replace("\\n", "\n"))
    if match is None:
        return None
    try:
        return base64.b64decode(re.sub(r"\s+", "", match.group(1)), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("certificate PEM block is not valid base64") from err


def _read_certificate_der(text: str) -> bytes:
    if "-----BEGIN" in text:
        der = _der_of_pem_certificate(text)
        if der is None:
            raise ValueError(
                "certificate has no complete -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- block"
            )
        return der

    if len(text) <= _MAX_PATH_LENGTH and "\n" not in text:
        path = os.path.expanduser(text)
        if os.path.isfile(path):
            try:
                with open(path, "rb") as handle:
                    content = handle.read()
            except OSError as err:
                raise ValueError(f"certificate file {path} could not be read: {err.strerror}") from err
            if b"-----BEGIN" not in content:
                return content
            der = _der_of_pem_certificate(content.decode("ascii", errors="replace"))
            if der is None:
                raise ValueError(f"certificate file {path} contains no CERTIFICATE block")
            return der

    try:
        decoded = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(
            "certificate is neither PEM, base64 of a certificate, nor a path to an existing certificate file"
        ) from err
    if b"-----BEGIN" in decoded:
        return _read_certificate_der(decoded.decode("ascii", errors="replace"))
    return decoded


def load_certificate(value: str) -> x509.Certificate:
    """Load an X.509 certificate from PEM text, base64 of a PEM or DER certificate, or a file path.

    These are the forms the private key fields accept. Of a chain, the first certificate is taken,
    which is the leaf in the usual order. Raises ``ValueError`` with a message that starts with
    "certificate" and contains no part of the value.
    """
    text = _require_text(value, "certificate").strip()
    der = _read_certificate_der(text)
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as err:
        raise ValueError("certificate is not a valid X.509 certificate in PEM or DER form") from err


def certificate_thumbprints(certificate: x509.Certificate) -> dict[str, str]:
    """Return the ``x5t#S256`` and ``x5t`` JOSE header values of a certificate (RFC 7515 sections 4.1.8 and 4.1.7).

    Each is the base64url, without padding, of a digest of the certificate's DER encoding: SHA-256
    and SHA-1. The SHA-1 digest only names the certificate, so its weakness against collisions
    does not matter here.
    """
    der = certificate.public_bytes(serialization.Encoding.DER)
    sha256 = hashlib.sha256(der).digest()
    sha1 = hashlib.sha1(der, usedforsecurity=False).digest()
    return {
        "x5t#S256": base64.urlsafe_b64encode(sha256).rstrip(b"=").decode("ascii"),
        "x5t": base64.urlsafe_b64encode(sha1).rstrip(b"=").decode("ascii"),
    }


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
    ``aud`` set to the token endpoint URL unless ``assertion_audience`` is given, a unique ``jti``
    and a 60-second ``exp`` (RFC 7523 section 3). With ``certificate`` (the X.509 certificate of
    the key pair) the JOSE header also carries its ``x5t#S256`` and ``x5t`` thumbprints, which
    Microsoft Entra ID uses to find the registered certificate.
    """

    method = "private_key_jwt"

    def __init__(
        self,
        client_id: str,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        key_id: str | None = None,
        algorithm: str = "RS256",
        certificate: x509.Certificate | None = None,
        assertion_audience: str | None = None,
    ) -> None:
        self.client_id = _require_text(client_id, "client_id")
        validate_signing_key(private_key, algorithm)
        if key_id is not None and not isinstance(key_id, str):
            raise ValueError("key_id must be a string")
        if assertion_audience is not None:
            _require_text(assertion_audience, "assertion_audience")
        self._private_key = private_key
        self.key_id = key_id or None
        self.algorithm = algorithm
        self.assertion_audience = assertion_audience or None
        self.certificate = certificate
        self._thumbprints: dict[str, str] = {}
        if certificate is not None:
            self._thumbprints = self._check_certificate(certificate)

    def _check_certificate(self, certificate: x509.Certificate) -> dict[str, str]:
        """Reject a certificate of another key pair, and warn when it has expired."""
        if not isinstance(certificate, x509.Certificate):
            raise ValueError(f"certificate must be an X.509 certificate, got {type(certificate).__name__}")
        if _public_key_der(certificate.public_key()) != _public_key_der(self._private_key.public_key()):
            # A server that finds the certificate by its thumbprint would check the signature with
            # another public key and reject every assertion, so the mismatch is reported here.
            raise ValueError(
                "certificate does not match private_key: the certificate's public key differs from the "
                "private key's; use the certificate issued for this key"
            )
        expires_at = certificate.not_valid_after_utc
        if expires_at < utcnow():
            log.warning(
                "The certificate of client %r expired at %s, so a server that checks its dates may reject "
                "the client assertion. Register a new certificate for the key.",
                self.client_id,
                expires_at.isoformat(),
            )
        return certificate_thumbprints(certificate)

    def __repr__(self) -> str:
        return (
            f"PrivateKeyJwt(client_id={self.client_id!r}, key_id={self.key_id!r}, algorithm={self.algorithm!r}, "
            f"assertion_audience={self.assertion_audience!r})"
        )

    def build_assertion(self, token_url: str) -> str:
        now = utcnow()
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            # RFC 7523 section 3 point 3: aud identifies the authorization server, and the token
            # endpoint URL may be used for it. Some servers expect another value: Auth0 its tenant URL.
            "aud": self.assertion_audience or token_url,
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int((now + ASSERTION_LIFETIME).timestamp()),
        }
        headers: dict[str, str] = {}
        if self.key_id:
            headers["kid"] = self.key_id
        headers.update(self._thumbprints)
        assertion = jwt.encode(claims, self._private_key, algorithm=self.algorithm, headers=headers or None)
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
