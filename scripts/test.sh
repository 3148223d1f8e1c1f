#!/usr/bin/env bash
# Run the whole test suite: unit tests, flow tests against the sandbox, and the end-to-end DAG runs.
source "$(dirname "$0")/_venv.sh"
exec python -m pytest "$@"
