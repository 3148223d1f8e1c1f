import time

import pytest

from airflow_provider_m2m.auth import (
    ClientCredentialsGrant,
    ClientSecretPost,
    InvalidClient,
    TokenEndpointError,
    TokenProvider,
)

from .conftest import ScriptedResponse
from .support import make_endpoint, make_provider


def test_429_retry_after_waits_then_succeeds(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.push(ScriptedResponse(429, {"error": "slow_down"}, {"Retry-After": "2"}))
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)

    started = time.monotonic()
    token = provider.get_token()
    elapsed = time.monotonic() - started

    assert token.access_token
    assert elapsed >= 2.0
    assert len(oauth_server.token_requests) == 2
    assert oauth_server.grants == 1


def test_503_twice_then_succeeds(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.push(ScriptedResponse(503, {}), ScriptedResponse(503, {}))
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)

    token = provider.get_token()

    assert token.access_token
    assert len(oauth_server.token_requests) == 3


def test_invalid_client_fails_at_once(oauth_server):
    oauth_server.push(
        ScriptedResponse(400, {"error": "invalid_client", "error_description": "Client secret has expired"})
    )
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, connection_id="sales_m2m")

    started = time.monotonic()
    with pytest.raises(InvalidClient) as caught:
        provider.get_token()
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert "'sales_m2m'" in message
    assert "Client secret has expired" in message
    assert "invalid_client" in message
    assert caught.value.retryable is False
    assert caught.value.connection_id == "sales_m2m"
    assert len(oauth_server.token_requests) == 1
    assert elapsed < 1.0


def test_retries_exhausted_raises_endpoint_error(oauth_server):
    oauth_server.push(*[ScriptedResponse(503, {}) for _ in range(4)])
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, connection_id="flaky")

    with pytest.raises(TokenEndpointError) as caught:
        provider.get_token()

    assert "'flaky'" in str(caught.value)
    assert "HTTP 503 after 4 attempts" in str(caught.value)
    assert caught.value.retryable is True
    assert len(oauth_server.token_requests) == 4


def test_retry_after_capped(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.push(ScriptedResponse(429, {}, {"Retry-After": "3600"}))
    grant = ClientCredentialsGrant(oauth_server.token_url, ClientSecretPost("svc", "secret-1"))
    endpoint = make_endpoint(oauth_server.ca_bundle, max_retry_after=0.2)
    provider = TokenProvider(grant, connection_id="capped", endpoint=endpoint, cache=None)

    started = time.monotonic()
    provider.get_token()

    assert time.monotonic() - started < 2.0
    assert len(oauth_server.token_requests) == 2


def test_slow_answer_times_out(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.push(ScriptedResponse(200, None, delay=0.6), ScriptedResponse(200, None, delay=0.6))
    grant = ClientCredentialsGrant(oauth_server.token_url, ClientSecretPost("svc", "secret-1"))
    endpoint = make_endpoint(oauth_server.ca_bundle, timeout=(2.0, 0.3), max_retries=1)
    provider = TokenProvider(grant, connection_id="slow", endpoint=endpoint, cache=None)

    with pytest.raises(TokenEndpointError, match="timed out after 2 attempts"):
        provider.get_token()


def test_unknown_ca_fails_without_retry(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    grant = ClientCredentialsGrant(oauth_server.token_url, ClientSecretPost("svc", "secret-1"))
    endpoint = make_endpoint(True)
    provider = TokenProvider(grant, connection_id="no_ca", endpoint=endpoint, cache=None)

    with pytest.raises(TokenEndpointError, match="TLS verification"):
        provider.get_token()
    assert oauth_server.token_requests == []


def test_non_json_error_body(oauth_server):
    oauth_server.push(ScriptedResponse(403, None))
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, connection_id="proxy")

    with pytest.raises(TokenEndpointError, match="HTTP 403 without an OAuth error body"):
        provider.get_token()
