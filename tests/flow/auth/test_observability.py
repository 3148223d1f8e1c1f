import base64
import logging
from urllib.parse import quote_plus

import pytest
import requests

from airflow_provider_m2m.auth import (
    BearerAuth,
    InvalidClient,
    InvalidScope,
    register_metrics_backend,
    register_secret_masker,
    unregister_secret_masker,
)

from .conftest import ScriptedResponse
from .support import make_provider

SECRET = "p+q:r=/s3cret"


class RecordingStats:
    """Stand-in for Airflow's Stats with the same incr and timing signatures."""

    def __init__(self) -> None:
        self.counters: list[tuple[str, dict[str, str]]] = []
        self.timings: list[tuple[str, object, dict[str, str]]] = []

    def incr(self, stat, count=1, rate=1, *, tags=None):
        self.counters.append((stat, dict(tags or {})))

    def timing(self, stat, dt, *, tags=None):
        self.timings.append((stat, dt, dict(tags or {})))

    def names(self) -> list[str]:
        return [name for name, _ in self.counters]


@pytest.fixture
def masked():
    values: list[str] = []
    register_secret_masker(values.append)
    yield values
    unregister_secret_masker(values.append)


@pytest.fixture
def stats():
    backend = RecordingStats()
    register_metrics_backend(backend)
    yield backend
    register_metrics_backend(None)


def test_secret_masked_in_every_form(oauth_server, masked):
    oauth_server.add_client("a b/c", SECRET)
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, client_id="a b/c", secret=SECRET)

    token = provider.get_token()

    basic = base64.b64encode(f"{quote_plus('a b/c')}:{quote_plus(SECRET)}".encode()).decode()
    assert SECRET in masked
    assert quote_plus(SECRET) in masked
    assert basic in masked
    assert oauth_server.token_requests[0]["headers"]["Authorization"] == f"Basic {basic}"
    assert token.access_token in masked


def test_grant_logged_without_secrets(oauth_server, caplog):
    oauth_server.add_client("svc", SECRET)
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, secret=SECRET, connection_id="erp")

    with caplog.at_level(logging.DEBUG, logger="airflow_provider_m2m.auth"):
        token = provider.get_token()

    info = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    grant_lines = [line for line in info if line.startswith("Obtained access token")]
    assert len(grant_lines) == 1
    assert "'erp'" in grant_lines[0]
    assert "client_credentials" in grant_lines[0]
    assert "lifetime 3599 s" in grant_lines[0] or "lifetime 3600 s" in grant_lines[0]
    assert "'read'" in grant_lines[0]
    for record in caplog.records:
        text = record.getMessage()
        assert SECRET not in text
        assert quote_plus(SECRET) not in text
        assert token.access_token not in text


def test_echoed_secret_redacted_from_error(oauth_server):
    oauth_server.push(
        ScriptedResponse(400, {"error": "invalid_client", "error_description": f"secret {SECRET} is revoked"})
    )
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, secret=SECRET, connection_id="erp")

    with pytest.raises(InvalidClient) as caught:
        provider.get_token()

    assert SECRET not in str(caught.value)
    assert "secret *** is revoked" in str(caught.value)


def test_metrics_for_grant_hit_and_failure(oauth_server, stats):
    oauth_server.add_client("svc", "secret-1")
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, connection_id="erp")

    provider.get_token()
    provider.get_token()
    oauth_server.push(ScriptedResponse(400, {"error": "invalid_scope"}))
    with pytest.raises(InvalidScope):
        provider.get_token(force=True)

    assert stats.names().count("m2m.token.grants") == 1
    assert stats.names().count("m2m.token.cache_hits") == 1
    failures = [tags for name, tags in stats.counters if name == "m2m.token.grant_failures"]
    assert failures == [{"conn_id": "erp", "grant_type": "client_credentials", "error": "invalid_scope"}]
    assert [name for name, _, _ in stats.timings] == ["m2m.token.grant_duration"]
    assert stats.timings[0][2]["conn_id"] == "erp"


def test_failing_metrics_backend_ignored(oauth_server):
    class Broken:
        def incr(self, *args, **kwargs):
            raise RuntimeError("statsd down")

        def timing(self, *args, **kwargs):
            raise RuntimeError("statsd down")

    oauth_server.add_client("svc", "secret-1")
    register_metrics_backend(Broken())
    try:
        assert make_provider(oauth_server.token_url, oauth_server.ca_bundle).get_token().access_token
    finally:
        register_metrics_backend(None)


def test_other_401_not_replayed(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)
    session = requests.Session()
    session.auth = BearerAuth(provider, is_token_rejected=lambda response: False)
    provider.get_token()
    oauth_server.revoke_all()

    response = session.get(oauth_server.api_url, verify=oauth_server.ca_bundle, timeout=5)

    assert response.status_code == 401
    assert oauth_server.grants == 1
    assert oauth_server.api_requests == 1
