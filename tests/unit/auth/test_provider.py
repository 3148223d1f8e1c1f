"""TokenProvider with an in-memory grant: freshness, renewal failures and single flight."""

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from cryptography.hazmat.primitives.asymmetric import ec

from airflow_provider_m2m.auth import (
    AccessToken,
    ClientSecretBasic,
    InvalidScope,
    OAuthError,
    PrivateKeyJwt,
    TokenEndpointError,
    TokenProvider,
    clear_memory_cache,
)
from airflow_provider_m2m.auth.errors import oauth_error_for


class CountingGrant:
    """Grant that issues numbered tokens with a fixed lifetime, or raises ``failure`` when it is set."""

    grant_type = "counting"

    def __init__(self, lifetime: timedelta = timedelta(hours=1), key: str = "c0ffee" * 8) -> None:
        self.lifetime = lifetime
        self.key = key
        self.calls = 0
        self.failure: Exception | None = None
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def fingerprint(self) -> str:
        return self.key

    def obtain(self, endpoint, *, default_lifetime):
        self.calls += 1
        self.started.set()
        self.release.wait(10)
        if self.failure is not None:
            raise self.failure
        now = datetime.now(UTC)
        return AccessToken(f"token-{self.calls}", "Bearer", now + self.lifetime, None, now)


@pytest.fixture(autouse=True)
def _fresh_memory():
    clear_memory_cache()
    yield
    clear_memory_cache()


def _provider(grant, **kwargs) -> TokenProvider:
    return TokenProvider(grant, connection_id="unit", cache=None, **kwargs)


def test_fresh_token_reused():
    grant = CountingGrant()
    provider = _provider(grant)

    assert provider.get_token() is provider.get_token()
    assert grant.calls == 1


def test_due_token_renewed():
    grant = CountingGrant()
    provider = _provider(grant)
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        first = provider.get_token()
        traveller.shift(timedelta(hours=1) - timedelta(seconds=100))
        second = provider.get_token()

    assert first.access_token == "token-1"
    assert second.access_token == "token-2"


def test_failed_renewal_keeps_valid_token(caplog):
    grant = CountingGrant()
    provider = _provider(grant)
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        first = provider.get_token()
        traveller.shift(timedelta(minutes=59))
        grant.failure = TokenEndpointError("HTTP 503 after 4 attempts", retryable=True)
        with caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.auth"):
            second = provider.get_token()

    assert second is first
    assert any("'unit'" in record.getMessage() for record in caplog.records)


def test_failed_renewal_pauses_attempts():
    grant = CountingGrant()
    provider = _provider(grant)
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        first = provider.get_token()
        traveller.shift(timedelta(minutes=59))
        grant.failure = TokenEndpointError("HTTP 503 after 4 attempts", retryable=True)
        provider.get_token()
        calls_after_failure = grant.calls

        assert provider.get_token() is first
        assert grant.calls == calls_after_failure

        # The pause runs on time.monotonic, which time_machine leaves alone, so end it by hand.
        grant.failure = None
        provider._slot.renew_after = 0.0
        assert provider.get_token() is not first


def test_failed_renewal_of_expired_token_raises():
    grant = CountingGrant()
    provider = _provider(grant)
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        provider.get_token()
        traveller.shift(timedelta(hours=2))
        grant.failure = TokenEndpointError("HTTP 503 after 4 attempts", retryable=True)
        with pytest.raises(TokenEndpointError, match="'unit'"):
            provider.get_token()


def test_non_retryable_renewal_failure_raises():
    grant = CountingGrant()
    provider = _provider(grant)
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        provider.get_token()
        traveller.shift(timedelta(minutes=59))
        grant.failure = InvalidScope("invalid_scope", "scope was removed")
        with pytest.raises(InvalidScope):
            provider.get_token()


def test_force_obtains_new_token():
    grant = CountingGrant()
    provider = _provider(grant)
    first = provider.get_token()

    second = provider.get_token(force=True)

    assert second.access_token != first.access_token
    assert grant.calls == 2


def test_expired_on_arrival_raises():
    grant = CountingGrant(lifetime=timedelta(seconds=-5))
    provider = _provider(grant)

    with pytest.raises(TokenEndpointError, match="check the system clock"):
        provider.get_token()


def test_due_token_served_while_renewal_in_flight():
    grant = CountingGrant()
    provider = _provider(grant)
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        first = provider.get_token()
        traveller.shift(timedelta(minutes=59))
        grant.release.clear()
        grant.started.clear()
        renewing = threading.Thread(target=provider.get_token)
        renewing.start()
        assert grant.started.wait(5)

        during = provider.get_token()
        grant.release.set()
        renewing.join(5)

    assert during is first
    assert grant.calls == 2


def test_connection_id_required():
    with pytest.raises(ValueError, match="connection_id"):
        TokenProvider(CountingGrant(), connection_id="", cache=None)


def test_negative_margin_rejected():
    with pytest.raises(ValueError, match="must not be negative"):
        _provider(CountingGrant(), refresh_margin=timedelta(seconds=-1))


def test_fallback_changes_cache_key():
    plain = _provider(CountingGrant(key="aa" * 32))
    rotating = _provider(CountingGrant(key="aa" * 32), fallback_grant=CountingGrant(key="bb" * 32))

    assert plain.cache_key != rotating.cache_key


def _rotating_grants(primary_failure: Exception, client_auth=None) -> tuple[CountingGrant, CountingGrant]:
    primary = CountingGrant(key="aa" * 32)
    primary.client_auth = client_auth or ClientSecretBasic("svc", "old-secret")
    primary.failure = primary_failure
    secondary = CountingGrant(key="bb" * 32)
    secondary.client_auth = ClientSecretBasic("svc", "new-secret")
    return primary, secondary


@pytest.mark.parametrize(
    ("failure", "falls_back"),
    [
        (oauth_error_for("invalid_client", status_code=400), True),
        (oauth_error_for("invalid_client", status_code=401), True),
        # Keycloak's response to a wrong client secret.
        (oauth_error_for("unauthorized_client", "Invalid client credentials", status_code=401), True),
        # Auth0's response to a wrong client secret.
        (oauth_error_for("access_denied", "Unauthorized", status_code=401), True),
        (TokenEndpointError("HTTP 401 without an OAuth error body", status_code=401), True),
        (oauth_error_for("unauthorized_client", status_code=400), False),
        (oauth_error_for("invalid_scope", status_code=400), False),
        (TokenEndpointError("HTTP 403 without an OAuth error body", status_code=403), False),
    ],
    ids=lambda value: f"{getattr(value, 'error', 'transport')}-{getattr(value, 'status_code', '')}",
)
def test_secondary_secret_tried_on_rejection(failure, falls_back, caplog):
    primary, secondary = _rotating_grants(failure)
    provider = TokenProvider(primary, connection_id="billing_api", cache=None, fallback_grant=secondary)

    with caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.auth"):
        if falls_back:
            token = provider.get_token()
        else:
            with pytest.raises(type(failure)):
                provider.get_token()

    assert primary.calls == 1
    assert secondary.calls == (1 if falls_back else 0)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    if falls_back:
        assert token.access_token == "token-1"
        assert len(warnings) == 1
        assert "'billing_api'" in warnings[0]
        assert "old-secret" not in warnings[0]
    else:
        assert warnings == []


def test_secondary_secret_tried_once():
    primary, secondary = _rotating_grants(oauth_error_for("access_denied", status_code=401))
    secondary.failure = oauth_error_for("access_denied", status_code=401)
    provider = TokenProvider(primary, connection_id="billing_api", cache=None, fallback_grant=secondary)

    with pytest.raises(OAuthError) as caught:
        provider.get_token()

    assert caught.value.error == "access_denied"
    assert caught.value.connection_id == "billing_api"
    assert primary.calls == 1
    assert secondary.calls == 1


def test_401_without_secret_no_fallback():
    key = ec.generate_private_key(ec.SECP256R1())
    primary, secondary = _rotating_grants(
        oauth_error_for("access_denied", status_code=401), client_auth=PrivateKeyJwt("svc", key, algorithm="ES256")
    )
    provider = TokenProvider(primary, connection_id="billing_api", cache=None, fallback_grant=secondary)

    with pytest.raises(OAuthError):
        provider.get_token()

    assert secondary.calls == 0
