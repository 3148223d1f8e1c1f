"""Fixtures for hook flow tests: the whole sandbox over real HTTPS, and its connections as
`AIRFLOW_CONN_*` variables, so hooks read real Airflow Connection objects."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_m2m.auth import clear_discovery_cache, clear_memory_cache
from airflow_provider_m2m.sandbox import Sandbox, start_sandbox

# Small enough to start in seconds, large enough for more than one page and a Bulk API upsert.
SANDBOX_ROWS = 300


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), rows=SANDBOX_ROWS) as running:
        saved = {name: os.environ.get(name) for name in running.env()}
        os.environ.update(running.env())
        try:
            yield running
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(autouse=True)
def fresh_token_caches(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start each test with empty token caches, as a new task process on a new node would."""
    monkeypatch.setenv("M2M_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    clear_memory_cache()
    clear_discovery_cache()
    yield
    clear_memory_cache()


@pytest.fixture
def derive_connection(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a new connection from a sandbox connection with some fields changed; return its id.

    Extra keys set to None are removed.
    """

    def derive(base_id: str, new_id: str, extra: dict[str, Any] | None = None, **fields: Any) -> str:
        value = json.loads(sandbox.connections[base_id])
        value.update(fields)
        merged = {**value.get("extra", {}), **(extra or {})}
        value["extra"] = {key: item for key, item in merged.items() if item is not None}
        monkeypatch.setenv(f"AIRFLOW_CONN_{new_id.upper()}", json.dumps(value))
        return new_id

    return derive


@pytest.fixture(scope="session")
def rsa_pem() -> str:
    """An RSA key that no sandbox client or connected app has registered."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
