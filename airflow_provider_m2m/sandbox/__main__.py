"""Run the sandbox until interrupted.

    python -m airflow_provider_m2m.sandbox run --state-dir DIR [--rows 10000]

When every server is serving, it writes DIR/connections.json, DIR/airflow-connections.env
(lines `AIRFLOW_CONN_X='json'`, for `set -a; . DIR/airflow-connections.env`) and then DIR/ready.
Ctrl-C or SIGTERM stops every server and removes DIR/ready.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from airflow_provider_m2m.sandbox.runner import start_sandbox, write_connection_files

log = logging.getLogger("airflow_provider_m2m.sandbox")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_m2m.sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the sandbox and serve until interrupted")
    run.add_argument("--state-dir", type=Path, required=True, help="folder for certificates, keys, logs and connection files")
    run.add_argument("--rows", type=int, default=10_000, help="source rows to seed in BigQuery (default 10000)")
    run.add_argument("--seed", type=int, default=42, help="seed number of the demo data generator (default 42)")
    run.add_argument(
        "--session-timeout-seconds",
        type=float,
        default=7200,
        help="Salesforce session timeout in seconds (default 7200)",
    )
    run.add_argument(
        "--token-lifetime-seconds",
        type=int,
        default=3600,
        help="lifetime of the OAuth server's access tokens in seconds (default 3600)",
    )
    return parser.parse_args(argv)


def _stop_on_sigterm(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir: Path = args.state_dir.resolve()
    ready_path = state_dir / "ready"
    stop = threading.Event()
    _stop_on_sigterm(stop)
    try:
        with start_sandbox(
            state_dir,
            rows=args.rows,
            seed=args.seed,
            session_timeout_seconds=args.session_timeout_seconds,
            oauth_token_lifetime_seconds=args.token_lifetime_seconds,
        ) as sandbox:
            write_connection_files(sandbox, state_dir)
            ready_path.write_text("ready\n", encoding="utf-8")
            print(f"Sandbox serving. Connections: {state_dir / 'airflow-connections.env'}. Ctrl-C stops it.", flush=True)
            # Event.wait wakes up on Ctrl-C (KeyboardInterrupt) and, through the handler, on SIGTERM.
            while not stop.wait(timeout=1.0):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        ready_path.unlink(missing_ok=True)
    log.info("Sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
