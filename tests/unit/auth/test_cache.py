import json
import logging
import os
import stat
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from airflow_provider_m2m.auth import AccessToken, FileTokenCache, NullTokenCache, default_node_cache

FINGERPRINT = "ab" * 32


def _token(value: str = "tok-1") -> AccessToken:
    now = datetime.now(UTC)
    return AccessToken(value, "Bearer", now + timedelta(hours=1), "read", now, {"instance_url": "https://x.test"})


def test_store_and_load_encrypted(tmp_path):
    cache = FileTokenCache(tmp_path, fernet_key=Fernet.generate_key())
    token = _token()

    cache.store(FINGERPRINT, token)

    assert cache.load(FINGERPRINT) == token
    raw = (tmp_path / f"{FINGERPRINT}.token").read_bytes()
    assert b"tok-1" not in raw
    assert b"instance_url" not in raw


def test_file_mode_is_0600_and_directory_0700(tmp_path):
    directory = tmp_path / "cache"
    cache = FileTokenCache(directory, fernet_key=Fernet.generate_key())
    cache.store(FINGERPRINT, _token())

    assert stat.S_IMODE(os.stat(directory / f"{FINGERPRINT}.token").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_open_directory_is_tightened(tmp_path):
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o777)
    os.chmod(directory, 0o777)

    FileTokenCache(directory)

    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_plaintext_without_key_logs_info(tmp_path, caplog):
    directory = tmp_path / "plain"
    with caplog.at_level(logging.INFO, logger="airflow_provider_m2m.auth"):
        cache = FileTokenCache(directory)
    cache.store(FINGERPRINT, _token())

    assert cache.encrypted is False
    assert json.loads((directory / f"{FINGERPRINT}.token").read_text())["access_token"] == "tok-1"
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert any("unencrypted" in message and "fernet_key" in message for message in messages)


def test_other_key_is_a_miss(tmp_path):
    FileTokenCache(tmp_path, fernet_key=Fernet.generate_key()).store(FINGERPRINT, _token())

    assert FileTokenCache(tmp_path, fernet_key=Fernet.generate_key()).load(FINGERPRINT) is None


def test_rotated_fernet_keys_still_decrypt(tmp_path):
    old_key = Fernet.generate_key().decode()
    token = _token()
    FileTokenCache(tmp_path, fernet_key=old_key).store(FINGERPRINT, token)
    new_key = Fernet.generate_key().decode()

    assert FileTokenCache(tmp_path, fernet_key=f"{new_key},{old_key}").load(FINGERPRINT) == token


def test_invalid_fernet_key(tmp_path):
    with pytest.raises(ValueError, match="not a valid Fernet key"):
        FileTokenCache(tmp_path, fernet_key="short")


def test_malformed_file_is_a_miss(tmp_path):
    cache = FileTokenCache(tmp_path)
    (tmp_path / f"{FINGERPRINT}.token").write_text("{not json")

    assert cache.load(FINGERPRINT) is None


def test_delete_only_matching_token(tmp_path):
    cache = FileTokenCache(tmp_path, fernet_key=Fernet.generate_key())
    cache.store(FINGERPRINT, _token("tok-2"))

    cache.delete(FINGERPRINT, "tok-1")
    assert cache.load(FINGERPRINT) is not None

    cache.delete(FINGERPRINT, "tok-2")
    assert cache.load(FINGERPRINT) is None


def test_fingerprint_must_be_hex(tmp_path):
    cache = FileTokenCache(tmp_path)
    with pytest.raises(ValueError, match="hex digest"):
        cache.load("../../etc/passwd")


def test_path_that_is_a_file_rejected(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ValueError):
        FileTokenCache(path)


def test_null_cache_stores_nothing():
    cache = NullTokenCache()
    cache.store(FINGERPRINT, _token())
    assert cache.load(FINGERPRINT) is None
    with cache.lock(FINGERPRINT):
        pass


def test_stale_token_files_pruned(tmp_path):
    cache = FileTokenCache(tmp_path)
    stale = tmp_path / f"{'cd' * 32}.token"
    stale.write_text("{}")
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(stale, (week_ago, week_ago))

    cache.store(FINGERPRINT, _token())

    assert not stale.exists()
    assert cache.load(FINGERPRINT) is not None


def test_held_lock_times_out_with_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("airflow_provider_m2m.auth.cache.LOCK_TIMEOUT_SECONDS", 0.2)
    cache = FileTokenCache(tmp_path)

    with cache.lock(FINGERPRINT), caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.auth"):
        started = time.monotonic()
        with cache.lock(FINGERPRINT):
            waited = time.monotonic() - started

    assert 0.2 <= waited < 2.0
    assert any("still held" in record.getMessage() for record in caplog.records)


def test_default_node_cache_reads_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("M2M_TOKEN_CACHE_DIR", str(tmp_path / "node"))
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())

    cache = default_node_cache()

    assert isinstance(cache, FileTokenCache)
    assert cache.directory == tmp_path / "node"
    assert cache.encrypted is True


@pytest.mark.skipif(os.getuid() != 0, reason="changing a directory's owner needs root")
def test_foreign_directory_turns_cache_off(tmp_path, monkeypatch, caplog):
    directory = tmp_path / "foreign"
    directory.mkdir(mode=0o700)
    os.chown(directory, 12345, -1)
    monkeypatch.setenv("M2M_TOKEN_CACHE_DIR", str(directory))

    with caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.auth"):
        cache = default_node_cache()

    assert isinstance(cache, NullTokenCache)
    assert any("another user" in record.getMessage() for record in caplog.records)
