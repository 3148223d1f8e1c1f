#!/usr/bin/env bash
# Start the sandbox, run the nightly reconciliation DAG with `airflow dags test`, print its summary, rerun it.
source "$(dirname "$0")/_venv.sh"
exec python -m airflow_provider_m2m.sandbox.demo "$@"
