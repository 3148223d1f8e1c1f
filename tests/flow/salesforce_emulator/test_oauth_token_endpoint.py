"""The emulator's token endpoint: both grants and Salesforce's error bodies, over HTTPS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.flow.salesforce_emulator.conftest import CONSUMER_KEY, CONSUMER_SECRET, HTTP_TIMEOUT, JWT_USER, Org


def _token(org: Org, data: dict[str, str], auth: tuple[str, str] | None = None):
    return org.http().post(f"{org.url}/services/oauth2/token", data=data, auth=auth, timeout=HTTP_TIMEOUT)


def test_client_credentials_basic_auth(org: Org) -> None:
    before_ms = int(time.time() * 1000)

    response = _token(org, {"grant_type": "client_credentials"}, auth=(CONSUMER_KEY, CONSUMER_SECRET))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == org.url
    assert body["id"].startswith(f"{org.url}/id/00D")
    assert before_ms <= int(body["issued_at"]) <= int(time.time() * 1000)
    expected = hmac.new(CONSUMER_SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256).digest()
    assert body["signature"] == base64.b64encode(expected).decode()
    assert response.headers["Cache-Control"] == "no-store"
    assert body["access_token"] in org.emulator.issued_tokens()


def test_client_credentials_in_body(org: Org) -> None:
    response = _token(org, {"grant_type": "client_credentials", "client_id": CONSUMER_KEY, "client_secret": CONSUMER_SECRET})

    assert response.status_code == 200
    assert "expires_in" not in response.json()


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [(CONSUMER_KEY, "wrong-secret"), ("unknown-key", CONSUMER_SECRET)],
)
def test_client_credentials_rejected(org: Org, client_id: str, client_secret: str) -> None:
    response = _token(org, {"grant_type": "client_credentials"}, auth=(client_id, client_secret))

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}


def test_unsupported_grant_type(org: Org) -> None:
    response = _token(org, {"grant_type": "password", "username": "u", "password": "p"})

    assert response.status_code == 400
    assert response.json() == {"error": "unsupported_grant_type", "error_description": "grant type not supported"}


@pytest.mark.parametrize("audience", ["https://login.salesforce.com", "https://test.salesforce.com", "OWN_URL"])
def test_jwt_bearer_accepts_audiences(org: Org, audience: str) -> None:
    assertion = org.assertion(aud=org.url if audience == "OWN_URL" else audience)

    response = _token(org, {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == org.url
    assert "expires_in" not in body
    sf = org.salesforce(body["access_token"])
    assert sf.query("SELECT COUNT() FROM Customer_Account__c")["totalSize"] == 0


def _jwt_error(org: Org, assertion: str) -> tuple[int, dict[str, str]]:
    response = _token(org, {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
    return response.status_code, response.json()


def test_jwt_bearer_rejects_bad_audience(org: Org) -> None:
    status, body = _jwt_error(org, org.assertion(aud="https://example.invalid"))

    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "audience is invalid"}


def test_jwt_bearer_rejects_unapproved_user(org: Org) -> None:
    status, body = _jwt_error(org, org.assertion(sub="someone-else@m2m.example"))

    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}


def test_jwt_bearer_rejects_expired_assertion(org: Org) -> None:
    status, body = _jwt_error(org, org.assertion(exp=int(time.time()) - 10))

    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "expired access/refresh token"}


def test_jwt_bearer_rejects_exp_beyond_three_minutes(org: Org) -> None:
    status, body = _jwt_error(org, org.assertion(exp=int(time.time()) + 600))

    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_jwt_bearer_rejects_foreign_signature(org: Org) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": CONSUMER_KEY, "sub": JWT_USER, "aud": "https://login.salesforce.com", "exp": int(time.time()) + 60}

    status, body = _jwt_error(org, jwt.encode(claims, other_key, algorithm="RS256"))

    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_jwt_bearer_rejects_garbage_assertion(org: Org) -> None:
    status, body = _jwt_error(org, "not-a-jwt")

    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_session_expires_after_idle_timeout(org: Org) -> None:
    org.emulator.session_timeout_seconds = 0.5
    token = org.client_credentials_token()
    api = org.api(token)
    url = org.data_url("query")

    first = api.get(url, params={"q": "SELECT Id FROM Customer_Account__c"}, timeout=HTTP_TIMEOUT)
    time.sleep(0.8)
    second = api.get(url, params={"q": "SELECT Id FROM Customer_Account__c"}, timeout=HTTP_TIMEOUT)

    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_activity_keeps_session_alive(org: Org) -> None:
    org.emulator.session_timeout_seconds = 0.6
    api = org.api()
    url = org.data_url("query")

    statuses = []
    for _ in range(4):
        time.sleep(0.3)
        statuses.append(api.get(url, params={"q": "SELECT Id FROM Customer_Account__c"}, timeout=HTTP_TIMEOUT).status_code)

    assert statuses == [200, 200, 200, 200]


def test_expire_all_sessions(org: Org) -> None:
    api = org.api()

    org.emulator.expire_all_sessions()
    response = api.get(org.data_url("sobjects/Customer_Account__c/describe"), timeout=HTTP_TIMEOUT)

    assert response.status_code == 401


def test_expire_sessions_after_calls(org: Org) -> None:
    api = org.api()
    org.emulator.expire_sessions_after_calls(1)
    url = org.data_url("sobjects/Customer_Account__c/describe")

    first = api.get(url, timeout=HTTP_TIMEOUT)
    second = api.get(url, timeout=HTTP_TIMEOUT)

    assert first.status_code == 200
    assert second.status_code == 401


def test_missing_token_is_invalid_session(org: Org) -> None:
    response = org.http().get(org.data_url("query"), params={"q": "SELECT Id FROM Customer_Account__c"}, timeout=HTTP_TIMEOUT)

    assert response.status_code == 401
    assert response.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_api_calls_counted_per_kind(org: Org) -> None:
    api = org.api()

    api.get(org.data_url("sobjects/Customer_Account__c/describe"), timeout=HTTP_TIMEOUT)
    api.get(org.data_url("query"), params={"q": "SELECT Id FROM Customer_Account__c"}, timeout=HTTP_TIMEOUT)

    assert org.emulator.api_calls["token"] == 1
    assert org.emulator.api_calls["describe"] == 1
    assert org.emulator.api_calls["query"] == 1
