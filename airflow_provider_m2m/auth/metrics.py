"""Metrics without an Airflow import.

A backend has the ``incr(stat, count, *, tags)`` and ``timing(stat, dt, *, tags)`` methods of
Airflow's ``Stats``, so hooks call ``register_metrics_backend(Stats)``. Without a backend, metrics
are dropped. A failing backend is logged at DEBUG and never breaks authentication.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Protocol

log = logging.getLogger(__name__)

GRANTS = "m2m.token.grants"
GRANT_FAILURES = "m2m.token.grant_failures"
GRANT_DURATION = "m2m.token.grant_duration"
CACHE_HITS = "m2m.token.cache_hits"


class MetricsBackend(Protocol):
    def incr(self, stat: str, count: int = 1, *args: object, tags: dict[str, str] | None = None) -> None: ...

    def timing(self, stat: str, dt: timedelta, *, tags: dict[str, str] | None = None) -> None: ...


_backend: MetricsBackend | None = None
_lock = threading.Lock()


def register_metrics_backend(backend: MetricsBackend | None) -> None:
    """Send metrics to ``backend`` (for example Airflow's ``Stats``); ``None`` drops them."""
    global _backend
    with _lock:
        _backend = backend


def incr(stat: str, tags: dict[str, str]) -> None:
    backend = _backend
    if backend is None:
        return
    try:
        backend.incr(stat, 1, tags=tags)
    except Exception:  # a metrics outage must not fail a grant
        log.debug("Metrics backend failed on %s", stat, exc_info=True)


def timing(stat: str, duration: timedelta, tags: dict[str, str]) -> None:
    backend = _backend
    if backend is None:
        return
    try:
        backend.timing(stat, duration, tags=tags)
    except Exception:  # a metrics outage must not fail a grant
        log.debug("Metrics backend failed on %s", stat, exc_info=True)
