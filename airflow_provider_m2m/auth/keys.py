"""Private key loading from connection fields."""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from airflow_provider_m2m.auth.errors import KeyLoadError, WrongPassphraseError
from airflow_provider_m2m.auth.masking import mask_secret

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
# Maximum length of a value treated as a possible file path. A PEM key is always longer.
_MAX_PATH_LENGTH = 1024


def _normalize_pem(text: str) -> bytes | None:
    """Rebuild a PEM block whose newlines were escaped as ``\\n`` or turned into spaces.

    Connection forms and environment variables often flatten a PEM key into one line.
    Returns ``None`` when the text contains no PEM block.
    """
    text = text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n").strip()
    match = _PEM_BLOCK.search(text)
    if match is None:
        return None
    label, body = match.group(1), match.group(2)
    if "Proc-Type:" in body:
        # Legacy OpenSSL encryption keeps "Name: value" headers that need their line breaks.
        return match.group(0).encode("ascii") + b"\n"
    body = re.sub(r"\s+", "", body)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode("ascii")


def _read_key_bytes(value: str | bytes, *, connection_id: str, field: str) -> tuple[bytes, bool]:
    """Return the key as bytes and whether they are PEM (else DER)."""
    if isinstance(value, bytes):
        if b"-----BEGIN" not in value:
            return value, False
        value = value.decode("utf-8", errors="replace")

    text = value.strip()
    if not text:
        raise KeyLoadError("private key is empty", connection_id=connection_id, field=field)

    if "-----BEGIN" in text or "\\n" in text:
        pem = _normalize_pem(text)
        if pem is None:
            raise KeyLoadError(
                "value looks like PEM but has no complete BEGIN/END block",
                connection_id=connection_id,
                field=field,
            )
        return pem, True

    if len(text) <= _MAX_PATH_LENGTH and "\n" not in text:
        path = os.path.expanduser(text)
        if os.path.isfile(path):
            try:
                with open(path, "rb") as handle:
                    content = handle.read()
            except OSError as err:
                raise KeyLoadError(
                    f"cannot read key file {path}: {err.strerror}", connection_id=connection_id, field=field
                ) from err
            if b"-----BEGIN" in content:
                pem = _normalize_pem(content.decode("utf-8", errors="replace"))
                if pem is not None:
                    return pem, True
            return content, False

    try:
        decoded = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError) as err:
        raise KeyLoadError(
            "value is neither PEM, base64 of a key, nor a path to an existing key file",
            connection_id=connection_id,
            field=field,
        ) from err
    if b"-----BEGIN" in decoded:
        pem = _normalize_pem(decoded.decode("utf-8", errors="replace"))
        if pem is not None:
            mask_secret(decoded.decode("utf-8", errors="replace"))
            return pem, True
    return decoded, False


def load_private_key(
    value: str | bytes,
    passphrase: str | bytes | None = None,
    *,
    connection_id: str,
    field: str,
) -> PrivateKey:
    """Load an RSA or EC private key from a connection field.

    ``value`` may be PEM (with real newlines, literal ``\\n`` or newlines turned into spaces),
    base64 of a PEM or DER key, or a path to a key file. PKCS#8, PKCS#1 (traditional OpenSSL)
    and SEC1 keys load, encrypted or not. Key and passphrase are passed to the secret masker.

    Raises:
        KeyLoadError: the value is not a usable key, or an encrypted key has no passphrase.
        WrongPassphraseError: the passphrase does not decrypt the key.
    """
    mask_secret(value if isinstance(value, str) else None)
    mask_secret(passphrase)
    data, is_pem = _read_key_bytes(value, connection_id=connection_id, field=field)
    if is_pem:
        mask_secret(data.decode("ascii", errors="replace"))
    password = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    password = password or None
    encrypted = b"ENCRYPTED" in data if is_pem else False
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key

    try:
        key: PrivateKeyTypes = loader(data, password=password)
    except TypeError as err:
        message = str(err)
        if "not encrypted" in message:
            # A passphrase configured for a plain key is harmless; load the key without it.
            key = loader(data, password=None)
        else:
            raise KeyLoadError(
                "private key is encrypted; set the passphrase in the connection",
                connection_id=connection_id,
                field=field,
            ) from err
    except ValueError as err:
        if password is not None and (encrypted or not is_pem):
            raise WrongPassphraseError(
                "passphrase does not decrypt the private key; check the passphrase field",
                connection_id=connection_id,
                field=field,
            ) from err
        raise KeyLoadError(
            "private key cannot be parsed; expected PKCS#8 or PKCS#1 PEM, or DER",
            connection_id=connection_id,
            field=field,
        ) from err
    except Exception as err:  # cryptography raises UnsupportedAlgorithm for unknown key types
        raise KeyLoadError(
            f"private key cannot be loaded ({type(err).__name__})", connection_id=connection_id, field=field
        ) from err

    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyLoadError(
            f"private key type {type(key).__name__} is not supported; use an RSA or EC key",
            connection_id=connection_id,
            field=field,
        )
    return key
