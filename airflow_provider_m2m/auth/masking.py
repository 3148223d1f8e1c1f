"""Secret masking without an Airflow import.

Hooks call ``register_secret_masker(airflow.sdk.log.mask_secret)`` before they build client
authentication or grants, so that client secrets, keys, passphrases, assertions and access
tokens are redacted from task logs. Without a registered masker, ``mask_secret`` does nothing.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

_maskers: list[Callable[[str], object]] = []
_lock = threading.Lock()

# PEM body lines shorter than this are the last line of a block; masking tiny fragments would
# redact ordinary text in logs.
_MIN_PEM_LINE_LENGTH = 16


def register_secret_masker(masker: Callable[[str], object]) -> None:
    """Add a callable that is given every secret value, in each form it may appear in."""
    with _lock:
        if masker not in _maskers:
            _maskers.append(masker)


def unregister_secret_masker(masker: Callable[[str], object]) -> None:
    """Remove a masker added with ``register_secret_masker``; unknown maskers are ignored."""
    with _lock:
        if masker in _maskers:
            _maskers.remove(masker)


def secret_forms(value: str) -> list[str]:
    """Return the forms a secret may take on the wire or in logs.

    The forms are the raw value, its URL encodings (form encoding and percent encoding) and,
    for a multi-line value such as a PEM key, each long body line.
    """
    forms = [value, quote_plus(value, safe=""), quote(value, safe="")]
    if "\n" in value:
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= _MIN_PEM_LINE_LENGTH and not line.startswith("-----"):
                forms.append(line)
    return list(dict.fromkeys(forms))


def basic_credentials(client_id: str, client_secret: str) -> str:
    """Return the base64 credentials of an HTTP Basic header (RFC 6749 section 2.3.1).

    Client id and secret are form-encoded (RFC 6749 appendix B) before they are joined with a
    colon and base64-encoded.
    """
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return base64.b64encode(pair.encode("utf-8")).decode("ascii")


def mask_secret(value: str | bytes | None) -> None:
    """Pass a secret in all its forms to every registered masker; empty values are skipped."""
    if not value:
        return
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    with _lock:
        maskers = list(_maskers)
    if not maskers:
        return
    for form in secret_forms(value):
        for masker in maskers:
            masker(form)


def mask_secrets(values: Iterable[str | bytes | None]) -> None:
    """Call ``mask_secret`` on each value."""
    for value in values:
        mask_secret(value)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each form of each secret in ``text`` with ``***``.

    Used on text from a server, such as an ``error_description``, before it goes into an
    exception message.
    """
    for secret in secrets:
        if not secret:
            continue
        for form in secret_forms(secret):
            if form:
                text = text.replace(form, "***")
    return text
