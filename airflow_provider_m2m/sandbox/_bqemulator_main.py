"""Run bqemulator's CLI with the DuckDB `spatial` extension load skipped.

bqemulator 1.1 runs `INSTALL spatial` when its engine starts and refuses to start when that fails,
which it always does offline because DuckDB downloads extensions from its own repository. The
sandbox has no GEOGRAPHY columns, so it starts the emulator through this module instead:
`python -m airflow_provider_m2m.sandbox._bqemulator_main start --rest-port ...`.
"""

from __future__ import annotations

import logging
import sys

from bqemulator import cli
from bqemulator.storage.engine import DuckDBEngine

log = logging.getLogger("airflow_provider_m2m.sandbox.bigquery")


def _skip_spatial(self: DuckDBEngine) -> None:
    log.warning("DuckDB spatial extension not loaded: GEOGRAPHY types and ST_* functions are unavailable in the sandbox")


# TODO: remove this patch once bqemulator can start without the spatial extension (1.1 cannot) or
# DuckDB ships `spatial` inside its wheel. Then run `bqemulator start` directly.
DuckDBEngine._load_spatial = _skip_spatial  # type: ignore[method-assign]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sys.exit(cli.main())
