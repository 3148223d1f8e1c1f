"""Start an emulator as a child process, wait until it serves, and stop it for sure."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from airflow_provider_m2m.sandbox.http import LOOPBACK

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
LOG_TAIL_LINES = 40


class EmulatorStartError(RuntimeError):
    """An emulator process exited or did not become ready in time."""


def free_loopback_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now.

    Another process may take it before the emulator binds it; the start then fails with the
    emulator's own bind error in the log tail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


class ChildProcess:
    """One emulator process, its own process group and its log file."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            # A new session makes the child a process group leader, so `stop` reaches any
            # grandchildren too.
            self.popen = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        log.info("Started %s (pid %s), log in %s", name, self.popen.pid, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_until_ready(self, probe: Callable[[], bool], *, timeout_seconds: float, interval_seconds: float = 0.2) -> None:
        """Call `probe` until it returns True; raise EmulatorStartError with the log tail on exit or timeout."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if not self.running():
                raise EmulatorStartError(
                    f"{self.name} exited with code {self.popen.returncode} before it was ready. "
                    f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if probe():
                return
            if time.monotonic() >= deadline:
                raise EmulatorStartError(
                    f"{self.name} was not ready after {timeout_seconds:.0f} seconds. "
                    f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(interval_seconds)

    def stop(self) -> None:
        """Send SIGTERM to the process group, then SIGKILL after a grace period."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) ignored SIGTERM; killing it", self.name, self.popen.pid)
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.popen.wait(timeout=STOP_GRACE_SECONDS)
        try:
            # Children the emulator left behind are still in its process group.
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.info("Stopped %s (pid %s)", self.name, self.popen.pid)
