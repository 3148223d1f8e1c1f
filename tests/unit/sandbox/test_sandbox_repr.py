"""The Sandbox repr, which pytest prints for a failing test's arguments, shows no secret."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_m2m.sandbox.runner import Sandbox


def test_sandbox_repr_hides_secrets():
    sandbox = Sandbox(
        state_dir=Path("/tmp/state"),
        tls=None,
        oauth=None,
        connections={"salesforce_m2m_default": "salesforce-m2m://client:connection-secret@127.0.0.1"},
        private_key_pem="-----BEGIN PRIVATE KEY-----\nkey-material\n-----END PRIVATE KEY-----\n",
        service_account_info={"private_key": "service-account-key"},
        _secrets=["listed-secret"],
    )

    text = repr(sandbox)

    assert "state_dir=PosixPath('/tmp/state')" in text
    for secret in ("connection-secret", "key-material", "service-account-key", "listed-secret"):
        assert secret not in text
