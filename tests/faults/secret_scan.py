"""The forms a secret takes in output, and a registry that finds any known secret in a text.

The fault suite's own leak scan and the session-wide scan in `tests/conftest.py` share them.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

# Secrets shorter than this would match by chance; every secret the sandbox makes is longer.
MIN_SECRET_FORM_LENGTH = 8


def _base64_cores(data: bytes) -> set[str]:
    """Return base64 text that appears whenever `data` is base64-encoded inside a longer value.

    The encoding of a byte string depends on where it starts in the encoded value (offset 0, 1 or
    2 in a 3-byte group), so each offset gives one core: the characters that only `data` decides.
    """
    cores = set()
    for offset in range(3):
        padded = b"\0" * offset + data
        encoded = base64.b64encode(padded).decode()
        start = 4 if offset else 0
        end = 4 * (len(padded) // 3)
        core = encoded[start:end]
        cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def secret_forms(secret: str) -> set[str]:
    """Return a secret as it may appear in output: raw, URL-encoded, and base64 at any alignment."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    forms |= _base64_cores(secret.encode())
    forms |= _base64_cores(quote_plus(secret).encode())  # client_secret_basic encodes before base64
    return {form for form in forms if len(form) >= MIN_SECRET_FORM_LENGTH}


SecretSource = Callable[[], Iterable[str]]


class SecretRegistry:
    """Secrets known so far, read from live sources, with an index that finds their forms in a text.

    A source is called again at each `refresh`, so tokens issued after it was added are found too.
    Secrets are never dropped, because a fixture server clears its tokens when a test resets it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[SecretSource] = []
        self._secrets: set[str] = set()
        # First MIN_SECRET_FORM_LENGTH characters of each form -> the forms that start with them.
        self._by_prefix: dict[str, set[str]] = {}

    def add_source(self, source: SecretSource) -> None:
        with self._lock:
            self._sources.append(source)
        self.refresh()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            for secret in secrets:
                if secret and secret not in self._secrets:
                    self._secrets.add(secret)
                    for form in secret_forms(secret):
                        self._by_prefix.setdefault(form[:MIN_SECRET_FORM_LENGTH], set()).add(form)

    def refresh(self) -> None:
        """Read every source again and index the secrets that are new."""
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            self.add(source())

    @property
    def secret_count(self) -> int:
        return len(self._secrets)

    def find(self, text: str) -> set[str]:
        """Return every form of a known secret that occurs in `text`.

        The scan looks up each window of MIN_SECRET_FORM_LENGTH characters in the prefix index, so
        its time grows with the text, not with the number of secrets.
        """
        found: set[str] = set()
        if not text or not self._by_prefix:
            return found
        by_prefix = self._by_prefix
        width = MIN_SECRET_FORM_LENGTH
        for position in range(len(text) - width + 1):
            forms = by_prefix.get(text[position : position + width])
            if forms is None:
                continue
            found |= {form for form in forms if text.startswith(form, position)}
        return found
