"""Local servers that speak the real protocols, for the tests and the demo.

`start_sandbox(state_dir)` starts them all and yields a `Sandbox`; `python -m
airflow_provider_m2m.sandbox run --state-dir DIR` does the same from a shell.
"""

from airflow_provider_m2m.sandbox.runner import Sandbox, start_sandbox

__all__ = ["Sandbox", "start_sandbox"]
