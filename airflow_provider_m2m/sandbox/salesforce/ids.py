"""Salesforce-style record ids: 15 case-sensitive characters plus a 3-character checksum suffix.

The 15-character id is the object's 3-character key prefix, a 2-character pod code, one reserved
character and a 9-character base-62 counter. The suffix makes the 18-character form unique even
when compared case-insensitively: each character encodes which of 5 characters are upper case.
"""

from __future__ import annotations

import itertools
import threading

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
POD = "5g"

ORG_PREFIX = "00D"
USER_PREFIX = "005"
JOB_PREFIX = "750"
QUERY_LOCATOR_PREFIX = "01g"


def checksum_suffix(id15: str) -> str:
    """Compute the 3-character suffix that turns a 15-character id into its 18-character form."""
    suffix = ""
    for start in (0, 5, 10):
        bits = 0
        for position, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def to_18(record_id: str) -> str:
    """Return the 18-character form of a 15- or 18-character id (unchanged when already 18)."""
    if len(record_id) == 15:
        return record_id + checksum_suffix(record_id)
    return record_id


def is_valid_id(record_id: str) -> bool:
    if len(record_id) not in (15, 18) or any(char not in _BASE62 for char in record_id):
        return False
    return len(record_id) == 15 or checksum_suffix(record_id[:15]) == record_id[15:].upper()


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(_BASE62[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


class IdFactory:
    """Issue unique 18-character ids per key prefix; safe to call from several threads."""

    def __init__(self, start: int = 1000) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def new_id(self, key_prefix: str) -> str:
        with self._lock:
            number = next(self._counter)
        id15 = f"{key_prefix}{POD}0{_base62(number, 9)}"
        return id15 + checksum_suffix(id15)
