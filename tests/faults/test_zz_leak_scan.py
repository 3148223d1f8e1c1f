"""The leak scan and the suite's figures, run after every other test of the fault suite.

The scan looks for every secret the suite uses (client secrets, the private key, the key
passphrase, every access token and Salesforce session issued) in raw, URL-encoded and base64
form, in every text the suite kept: in-process log lines and exception texts of the hook tests,
the output of every DAG run, and the XCom values, rendered templates, task log files and
failures CSVs of the Airflow home.
"""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_m2m.sandbox import Sandbox
from tests.faults.secret_scan import SecretRegistry, secret_forms
from tests.faults.support import LEDGER

SAMPLE_SECRET = "s3cr3t/with+odd=chars and space"


def _scanned_texts() -> list[tuple[str, str]]:
    texts = list(LEDGER.texts)
    for home in LEDGER.airflow_homes:
        texts += home.stored_texts()
    return texts


@pytest.mark.parametrize(
    "carrier",
    [
        f"token={SAMPLE_SECRET}",
        f"client_secret={quote_plus(SAMPLE_SECRET)}&grant_type=client_credentials",
        f"path/{quote(SAMPLE_SECRET, safe='')}/x",
        "Authorization: Basic " + base64.b64encode(f"client:{quote_plus(SAMPLE_SECRET)}".encode()).decode(),
        "a" + base64.b64encode(b"x" + SAMPLE_SECRET.encode()).decode(),
        base64.urlsafe_b64encode(b"xy" + SAMPLE_SECRET.encode()).decode(),
    ],
)
def test_secret_forms_found(carrier: str) -> None:
    assert any(form in carrier for form in secret_forms(SAMPLE_SECRET))


@pytest.mark.after_all_faults
def test_no_secret_leaked(sandbox: Sandbox) -> None:
    texts = _scanned_texts()
    if not any(where.startswith("DAG run") for where, _ in texts):
        pytest.skip("no DAG run in this session: run the scan with the whole fault suite")
    secrets = [*sandbox.secrets(), *LEDGER.extra_secrets]
    assert any(token in secrets for token in sandbox.oauth.issued_tokens)
    assert sandbox.salesforce.issued_tokens()

    forms = {form: secret for secret in secrets for form in secret_forms(secret)}
    hits = sorted({(where, form[:6] + "...") for where, text in texts for form in forms if form in text})
    LEDGER.secrets_leaked = len(hits)
    assert hits == [], f"{len(hits)} secret forms found, for example {hits[:5]}"


@pytest.mark.after_all_faults
def test_fault_figures() -> None:
    figures = LEDGER.figures()
    print("\n".join(LEDGER.report_lines()))
    if not figures["runs"]:
        pytest.skip("no fault was injected in this session")
    assert figures["records lost"] == 0
    assert figures["secrets leaked"] in (0, None)


def test_registry_finds_forms_anywhere() -> None:
    registry = SecretRegistry()
    registry.add([SAMPLE_SECRET])
    encoded = base64.b64encode(b"xy" + SAMPLE_SECRET.encode()).decode()

    assert registry.find(f"start {quote_plus(SAMPLE_SECRET)} end") == {quote_plus(SAMPLE_SECRET)}
    assert registry.find("a" + encoded)
    assert registry.find(SAMPLE_SECRET[:-1]) == set()
    assert registry.find("") == set()


def test_registry_keeps_forgotten_secrets() -> None:
    issued: list[str] = []
    registry = SecretRegistry()
    registry.add_source(lambda: list(issued))
    issued.append("token-issued-after-registration")
    registry.refresh()
    issued.clear()
    registry.refresh()

    assert registry.secret_count == 1
    assert registry.find("Bearer token-issued-after-registration")
