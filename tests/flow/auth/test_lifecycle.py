import multiprocessing
import threading
from datetime import UTC, datetime

import pytest
import requests
import time_machine
from cryptography.fernet import Fernet

from airflow_provider_m2m.auth import BearerAuth, FileTokenCache, TokenRejectedError

from .support import make_provider, obtain_token_in_process


def _session(provider) -> requests.Session:
    session = requests.Session()
    session.auth = BearerAuth(provider)
    return session


def test_short_token_never_sent_expired(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.token_lifetime = 60
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)
    session = _session(provider)

    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        for _ in range(61):  # one request every 5 s for 5 minutes
            response = session.get(oauth_server.api_url, verify=oauth_server.ca_bundle, timeout=5)
            assert response.status_code == 200
            traveller.shift(5)

    assert oauth_server.api_rejections == 0
    assert oauth_server.rejected_expired == 0
    # A 60 s token stays fresh for 30 s, so five minutes need about ten grants, not 61.
    assert 10 <= oauth_server.grants <= 11


def test_revoked_token_regranted_and_replayed(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)
    session = _session(provider)
    assert session.get(oauth_server.api_url, verify=oauth_server.ca_bundle, timeout=5).status_code == 200

    oauth_server.revoke_all()
    response = session.get(oauth_server.api_url, verify=oauth_server.ca_bundle, timeout=5)

    assert response.status_code == 200
    assert oauth_server.grants == 2
    assert oauth_server.api_requests == 3
    assert oauth_server.api_rejections == 1
    assert [item.status_code for item in response.history] == [401]


def test_second_rejection_raises_clear_error(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, connection_id="crm_api")
    session = _session(provider)
    assert session.get(oauth_server.api_url, verify=oauth_server.ca_bundle, timeout=5).status_code == 200
    oauth_server.reject_all_tokens = True

    with pytest.raises(TokenRejectedError) as caught:
        session.get(oauth_server.api_url, verify=oauth_server.ca_bundle, timeout=5)

    message = str(caught.value)
    assert "'crm_api'" in message
    assert "invalid_token" in message
    assert "/api/resource" in message
    assert oauth_server.grants == 2
    assert oauth_server.api_requests == 3


def test_replay_keeps_method_and_body(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)
    session = _session(provider)
    provider.get_token()
    oauth_server.revoke_all()

    response = session.get(
        oauth_server.api_url, params={"page": "2"}, verify=oauth_server.ca_bundle, timeout=5
    )

    assert response.status_code == 200
    assert response.request.url.endswith("/api/resource?page=2")
    assert response.request.headers["Authorization"] != response.history[0].request.headers["Authorization"]


def test_64_threads_cold_cache_one_grant(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.grant_delay = 0.3
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)
    barrier = threading.Barrier(64)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            tokens.append(provider.get_token().access_token)
        except BaseException as err:  # reported by the asserts below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(tokens) == 64
    assert len(set(tokens)) == 1
    assert oauth_server.grants == 1


def test_providers_for_same_credential_share_token(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    first = make_provider(oauth_server.token_url, oauth_server.ca_bundle)
    second = make_provider(oauth_server.token_url, oauth_server.ca_bundle)

    assert first.get_token() == second.get_token()
    assert oauth_server.grants == 1


def test_four_processes_one_grant(oauth_server, tmp_path):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.grant_delay = 0.5
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    fernet_key = Fernet.generate_key().decode()
    processes = [
        context.Process(
            target=obtain_token_in_process,
            args=(oauth_server.token_url, oauth_server.ca_bundle, str(tmp_path), fernet_key, barrier, results),
        )
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    tokens = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert len(set(tokens)) == 1
    assert oauth_server.grants == 1


def test_invalidate_forces_new_grant_across_cache(oauth_server, tmp_path):
    oauth_server.add_client("svc", "secret-1")
    cache = FileTokenCache(tmp_path, fernet_key=Fernet.generate_key())
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle, cache=cache)
    first = provider.get_token()

    provider.invalidate(first.access_token)
    second = provider.get_token()

    assert second.access_token != first.access_token
    assert cache.load(provider.cache_key).access_token == second.access_token
    assert oauth_server.grants == 2


def test_invalidate_ignores_replaced_token(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    provider = make_provider(oauth_server.token_url, oauth_server.ca_bundle)
    first = provider.get_token()
    provider.invalidate(first.access_token)
    second = provider.get_token()

    provider.invalidate(first.access_token)

    assert provider.get_token() == second
    assert oauth_server.grants == 2
