import logging

import pytest
from cryptography.fernet import Fernet

from airflow_provider_m2m.auth import (
    ClientCredentialsGrant,
    ClientSecretBasic,
    FileTokenCache,
    InvalidClient,
    TokenProvider,
    clear_memory_cache,
)

from .support import make_endpoint, make_provider


@pytest.fixture
def file_cache(tmp_path):
    return FileTokenCache(tmp_path, fernet_key=Fernet.generate_key())


def test_changed_secret_skips_cached_token(oauth_server, file_cache):
    oauth_server.add_client("svc", "secret-1", "secret-2")
    first_run = make_provider(oauth_server.token_url, oauth_server.ca_bundle, secret="secret-1", cache=file_cache)
    first_token = first_run.get_token()
    clear_memory_cache()  # the next task run is a new process

    second_run = make_provider(oauth_server.token_url, oauth_server.ca_bundle, secret="secret-2", cache=file_cache)
    second_token = second_run.get_token()

    assert second_token.access_token != first_token.access_token
    assert oauth_server.grants == 2
    assert oauth_server.token_requests[-1]["headers"]["Authorization"] != oauth_server.token_requests[0]["headers"][
        "Authorization"
    ]


def test_same_secret_reuses_cached_token(oauth_server, file_cache):
    oauth_server.add_client("svc", "secret-1")
    first_token = make_provider(oauth_server.token_url, oauth_server.ca_bundle, cache=file_cache).get_token()
    clear_memory_cache()

    second_token = make_provider(oauth_server.token_url, oauth_server.ca_bundle, cache=file_cache).get_token()

    assert second_token == first_token
    assert oauth_server.grants == 1


def _rotating_provider(oauth_server, connection_id="billing_api"):
    endpoint = make_endpoint(oauth_server.ca_bundle)
    primary = ClientCredentialsGrant(oauth_server.token_url, ClientSecretBasic("svc", "old-secret"))
    secondary = ClientCredentialsGrant(oauth_server.token_url, ClientSecretBasic("svc", "new-secret"))
    return TokenProvider(
        primary, connection_id=connection_id, endpoint=endpoint, cache=None, fallback_grant=secondary
    )


def test_revoked_primary_falls_back_to_secondary(oauth_server, caplog):
    oauth_server.add_client("svc", "new-secret")
    provider = _rotating_provider(oauth_server)

    with caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.auth"):
        token = provider.get_token()

    assert token.access_token
    assert oauth_server.grants == 1
    assert len(oauth_server.token_requests) == 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'billing_api'" in warnings[0]
    assert "Rotate the primary secret" in warnings[0]
    assert "old-secret" not in warnings[0]


def test_fallback_sticks_after_first_success(oauth_server):
    oauth_server.add_client("svc", "new-secret")
    provider = _rotating_provider(oauth_server)
    first = provider.get_token()

    provider.invalidate(first.access_token)
    provider.get_token()

    # The second grant goes straight to the secondary secret: 2 + 1 requests, not 2 + 2.
    assert len(oauth_server.token_requests) == 3
    assert oauth_server.grants == 2


def test_both_secrets_revoked_raises(oauth_server):
    oauth_server.add_client("svc", "another-secret")
    provider = _rotating_provider(oauth_server)

    with pytest.raises(InvalidClient) as caught:
        provider.get_token()

    assert "'billing_api'" in str(caught.value)
    assert len(oauth_server.token_requests) == 2
