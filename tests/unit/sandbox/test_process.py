"""ChildProcess: a clear error with the log tail when an emulator exits or never gets ready."""

from __future__ import annotations

import sys

import pytest

from airflow_provider_m2m.sandbox._process import ChildProcess, EmulatorStartError, free_loopback_port


def test_exit_before_ready_shows_log_tail(tmp_path):
    child = ChildProcess("crasher", [sys.executable, "-c", "print('port already in use'); raise SystemExit(3)"], tmp_path / "crasher.log")

    with pytest.raises(EmulatorStartError, match="exited with code 3") as raised:
        child.wait_until_ready(lambda: False, timeout_seconds=30)

    assert "port already in use" in str(raised.value)


def test_timeout_shows_log_tail_and_stop_ends_child(tmp_path):
    script = "import time; print('still loading', flush=True); time.sleep(60)"
    child = ChildProcess("sleeper", [sys.executable, "-c", script], tmp_path / "sleeper.log")
    try:
        with pytest.raises(EmulatorStartError, match="not ready after 1 seconds") as raised:
            child.wait_until_ready(lambda: False, timeout_seconds=1)
        assert "still loading" in str(raised.value)
        assert child.running()
    finally:
        child.stop()

    assert not child.running()


def test_stop_kills_child_ignoring_sigterm(tmp_path, monkeypatch):
    monkeypatch.setattr("airflow_provider_m2m.sandbox._process.STOP_GRACE_SECONDS", 0.5)
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    child = ChildProcess("stubborn", [sys.executable, "-c", script], tmp_path / "stubborn.log")
    child.wait_until_ready(lambda: "ready" in (tmp_path / "stubborn.log").read_text(), timeout_seconds=30)

    child.stop()

    assert child.popen.returncode == -9


def test_free_port_is_bindable():
    import socket

    port = free_loopback_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
