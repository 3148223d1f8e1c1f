"""Helpers shared by the tests that compare Arrow tables with rows read as Python objects."""

from __future__ import annotations

import math
from typing import Any


def comparable(value: Any) -> Any:
    """Replace each float NaN in a row, list or dict with a marker, so == compares NaN cells as equal."""
    if isinstance(value, float) and math.isnan(value):
        return "<float NaN>"
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value
