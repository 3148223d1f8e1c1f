"""Fixtures for hook unit tests: connections from AIRFLOW_CONN_* variables, keys, an isolated token cache."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_m2m.auth import clear_memory_cache


@pytest.fixture(autouse=True)
def isolated_token_cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep each test's tokens out of the shared node-wide cache and the in-process cache."""
    monkeypatch.setenv("M2M_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    clear_memory_cache()
    yield
    clear_memory_cache()


@pytest.fixture
def set_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a connection as an `AIRFLOW_CONN_<ID>` JSON variable; return its id."""

    def define(conn_id: str, conn_type: str, extra: dict[str, Any] | None = None, **fields: Any) -> str:
        value = {"conn_type": conn_type, **fields, "extra": extra or {}}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
        return conn_id

    return define


def _pem(key: rsa.RSAPrivateKey, passphrase: bytes | None = None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return _pem(rsa_key)


@pytest.fixture(scope="session")
def encrypted_rsa_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    """The same key as `rsa_pem`, PKCS#8 encrypted with the passphrase `correct horse`."""
    return _pem(rsa_key, b"correct horse")


@pytest.fixture(scope="session")
def small_rsa_pem() -> str:
    """A 1024-bit RSA key, too small for RS256."""
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
