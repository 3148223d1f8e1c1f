"""Which node-wide token cache the hooks use, from Airflow's configuration."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airflow_provider_m2m.auth.cache import FileTokenCache, NullTokenCache
from airflow_provider_m2m.hooks import _connection
from airflow_provider_m2m.hooks._connection import node_token_cache


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connection, "_cache_off_reported", set())
    monkeypatch.delenv("AIRFLOW__M2M__NODE_TOKEN_CACHE", raising=False)
    monkeypatch.delenv("AIRFLOW__M2M__TOKEN_CACHE_DIR", raising=False)


def test_cache_encrypted_with_fernet_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("AIRFLOW__M2M__TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    cache = node_token_cache()
    assert isinstance(cache, FileTokenCache)
    assert (tmp_path / "tokens").is_dir()


def test_cache_off_without_fernet_key(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    with caplog.at_level(logging.INFO, logger=_connection.log.name):
        cache = node_token_cache()
    assert isinstance(cache, NullTokenCache)
    assert any("fernet_key" in record.getMessage() for record in caplog.records)


def test_cache_off_by_configuration(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("AIRFLOW__M2M__NODE_TOKEN_CACHE", "False")
    with caplog.at_level(logging.INFO, logger=_connection.log.name):
        cache = node_token_cache()
    assert isinstance(cache, NullTokenCache)
    assert any("node_token_cache" in record.getMessage() for record in caplog.records)


def test_cache_off_reported_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    with caplog.at_level(logging.INFO, logger=_connection.log.name):
        node_token_cache()
        node_token_cache()
    assert len([record for record in caplog.records if "token cache is off" in record.getMessage()]) == 1
