"""Benchmark the token engine against plain ``requests`` and the one-grant-per-hook pattern.

Two tables, each measured in one run on a loopback HTTP server that runs in its own process:

1. Per-request time of a ``requests`` session with ``BearerAuth`` against a session with a
   static ``Authorization`` header, in interleaved rounds. The ratio is the median of the
   per-round ratios.
2. Token endpoint calls for ``--total`` API requests from ``--processes`` processes of
   ``--threads`` threads within one token lifetime. TokenProvider with the node-wide file
   cache runs beside the pattern of official providers, which obtain a token per hook
   instance (here one hook instance per thread).

Run: ``.venv/bin/python benchmarks/bench_token_engine.py`` (about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import secrets
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from cryptography.fernet import Fernet

from airflow_provider_m2m.auth import (
    BearerAuth,
    ClientCredentialsGrant,
    ClientSecretBasic,
    FileTokenCache,
    TokenEndpoint,
    TokenProvider,
)

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"
TIMEOUT = (5.0, 30.0)


class _BenchServer(ThreadingHTTPServer):
    daemon_threads = True
    grants = 0
    tokens: set[str]
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes. With Nagle's algorithm on, the second write waits
    # for the client's delayed ACK (about 40 ms on Linux), which would swamp the measurement.
    disable_nagle_algorithm = True
    server: _BenchServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        token = secrets.token_urlsafe(24)
        with self.server.lock:
            self.server.grants += 1
            self.server.tokens.add(token)
        self._reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def do_GET(self) -> None:
        if self.path == "/stats":
            with self.server.lock:
                self._reply(200, {"grants": self.server.grants})
            return
        token = self.headers.get("Authorization", "")[7:]
        if token in self.server.tokens:
            self._reply(200, {"ok": True})
        else:
            self._reply(401, {"error": "invalid_token"})


def _serve(port_queue: Any) -> None:
    server = _BenchServer(("127.0.0.1", 0), _Handler)
    server.tokens = set()
    server.lock = threading.Lock()
    port_queue.put(server.server_address[1])
    server.serve_forever(poll_interval=0.1)


def _grant_count(base_url: str) -> int:
    return requests.get(f"{base_url}/stats", timeout=TIMEOUT).json()["grants"]


def _provider(base_url: str, cache: Any) -> TokenProvider:
    grant = ClientCredentialsGrant(f"{base_url}/token", ClientSecretBasic(CLIENT_ID, CLIENT_SECRET))
    return TokenProvider(grant, connection_id="bench", endpoint=TokenEndpoint(timeout=TIMEOUT), cache=cache)


def _static_token(base_url: str) -> str:
    response = requests.post(
        f"{base_url}/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET), timeout=TIMEOUT
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _timed_requests(session: requests.Session, url: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        response = session.get(url, timeout=TIMEOUT)
        if response.status_code != 200:
            raise RuntimeError(f"benchmark request failed with HTTP {response.status_code}")
    return (time.perf_counter() - started) / count


def measure_hook_cost(base_url: str, count: int = 20_000) -> float:
    """Return seconds per call of BearerAuth on a prepared request, without any I/O."""
    auth = BearerAuth(_provider(base_url, cache=None))
    request = requests.Request("GET", f"{base_url}/api").prepare()
    auth(request)
    started = time.perf_counter()
    for _ in range(count):
        request.hooks["response"].clear()
        auth(request)
    return (time.perf_counter() - started) / count


def measure_overhead(base_url: str, rounds: int, per_round: int) -> dict[str, float]:
    """Return median seconds per request of both sessions and the median per-round ratio."""
    url = f"{base_url}/api"
    static = requests.Session()
    static.headers["Authorization"] = f"Bearer {_static_token(base_url)}"
    authenticated = requests.Session()
    authenticated.auth = BearerAuth(_provider(base_url, cache=None))
    _timed_requests(static, url, per_round)
    _timed_requests(authenticated, url, per_round)

    static_times, auth_times, ratios = [], [], []
    for round_number in range(rounds):
        # Alternate the order so that drift within a round favours neither side.
        if round_number % 2 == 0:
            static_time = _timed_requests(static, url, per_round)
            auth_time = _timed_requests(authenticated, url, per_round)
        else:
            auth_time = _timed_requests(authenticated, url, per_round)
            static_time = _timed_requests(static, url, per_round)
        static_times.append(static_time)
        auth_times.append(auth_time)
        ratios.append(auth_time / static_time)
    return {
        "static": statistics.median(static_times),
        "auth": statistics.median(auth_times),
        "ratio": statistics.median(ratios),
    }


def _process_with_provider(base_url: str, cache_dir: str, fernet_key: str, threads: int, count: int, barrier: Any) -> None:
    provider = _provider(base_url, cache=FileTokenCache(cache_dir, fernet_key=fernet_key))
    url = f"{base_url}/api"

    def work(count: int) -> None:
        session = requests.Session()
        session.auth = BearerAuth(provider)
        for _ in range(count):
            session.get(url, timeout=TIMEOUT).raise_for_status()

    barrier.wait(timeout=60)
    _run_threads(work, threads, count)


def _process_per_hook(base_url: str, cache_dir: str, fernet_key: str, threads: int, count: int, barrier: Any) -> None:
    url = f"{base_url}/api"

    def work(count: int) -> None:
        # A hook instance obtains its own token in get_conn and keeps it for its lifetime.
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {_static_token(base_url)}"
        for _ in range(count):
            session.get(url, timeout=TIMEOUT).raise_for_status()

    barrier.wait(timeout=60)
    _run_threads(work, threads, count)


def _run_threads(work: Any, threads: int, total: int) -> None:
    """Run ``work(count)`` in ``threads`` threads whose counts add up to ``total``."""
    counts = [total // threads + (1 if index < total % threads else 0) for index in range(threads)]
    workers = [threading.Thread(target=work, args=(count,)) for count in counts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def measure_grants(base_url: str, target: Any, total: int, processes: int, threads: int) -> tuple[int, float, int]:
    """Run ``total`` requests from processes and threads; return grants, seconds and requests sent."""
    context = multiprocessing.get_context("spawn")
    per_process = [total // processes + (1 if index < total % processes else 0) for index in range(processes)]
    barrier = context.Barrier(processes)
    before = _grant_count(base_url)
    with tempfile.TemporaryDirectory() as cache_dir:
        fernet_key = Fernet.generate_key().decode()
        workers = [
            context.Process(target=target, args=(base_url, cache_dir, fernet_key, threads, count, barrier))
            for count in per_process
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
    if any(worker.exitcode != 0 for worker in workers):
        raise RuntimeError("a benchmark process failed")
    return _grant_count(base_url) - before, elapsed, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31, help="interleaved rounds for the overhead table")
    parser.add_argument("--per-round", type=int, default=100, help="requests per session per round")
    parser.add_argument("--total", type=int, default=10_000, help="API requests for the grant-count table")
    parser.add_argument("--processes", type=int, default=4, help="processes for the grant-count table")
    parser.add_argument("--threads", type=int, default=8, help="threads per process for the grant-count table")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(target=_serve, args=(port_queue,), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{port_queue.get(timeout=30)}"
    try:
        overhead = measure_overhead(base_url, args.rounds, args.per_round)
        hook_cost = measure_hook_cost(base_url)
        engine = measure_grants(base_url, _process_with_provider, args.total, args.processes, args.threads)
        per_hook = measure_grants(base_url, _process_per_hook, args.total, args.processes, args.threads)
    finally:
        server.terminate()
        server.join(timeout=10)

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, loopback HTTP server in its own process")
    print()
    print(f"Per-request time, {args.rounds} interleaved rounds of {args.per_round} requests")
    print("| client | median µs/request | ratio to static header |")
    print("|---|---:|---:|")
    print(f"| requests, static Authorization header | {overhead['static'] * 1e6:.0f} | 1.000 |")
    print(f"| requests + BearerAuth(TokenProvider) | {overhead['auth'] * 1e6:.0f} | {overhead['ratio']:.3f} |")
    print(f"| BearerAuth call alone, no I/O | {hook_cost * 1e6:.1f} | |")
    print()
    print(
        f"Token endpoint calls, {engine[2]} requests from {args.processes} processes x {args.threads} threads "
        "within one token lifetime"
    )
    print("| pattern | token endpoint calls | wall time s |")
    print("|---|---:|---:|")
    print(f"| TokenProvider, node-wide file cache | {engine[0]} | {engine[1]:.1f} |")
    print(f"| one grant per hook instance (one hook per thread) | {per_hook[0]} | {per_hook[1]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
