"""The sandbox OAuth server over real HTTPS: each grant, each client authentication method, each error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

import jwt
import pytest
import requests
import time_machine

from airflow_provider_m2m.sandbox.oauth_server import (
    CLIENT_ASSERTION_TYPE,
    GOOGLE_TOKEN_URL,
    JWT_BEARER,
    OAuthServer,
    ScriptedResponse,
)
from tests.flow.sandbox.conftest import HTTP_TIMEOUT, KeyPair, random_secret

CLIENT_ID = "reporting-service"
SCOPES = ("reports.read", "reports.write")


def _basic(client_id: str, secret: str) -> dict[str, str]:
    # RFC 6749 section 2.3.1: form-urlencode each part, then base64 "id:secret".
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _post_token(http: requests.Session, oauth: OAuthServer, data: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return http.post(oauth.token_url, data=data, headers=headers or {}, timeout=HTTP_TIMEOUT)


def _assertion(key: KeyPair, *, lifetime: int = 300, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key.private_pem, algorithm="RS256")


def _client_assertion(oauth: OAuthServer, key: KeyPair, client_id: str = CLIENT_ID, **claims: Any) -> dict[str, str]:
    claims = {"iss": client_id, "sub": client_id, "aud": oauth.token_url, **claims}
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": _assertion(key, **claims),
    }


def _assert_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def secret(oauth: OAuthServer, client_key: KeyPair) -> str:
    value = random_secret()
    oauth.register_client(CLIENT_ID, secret=value, public_key_pem=client_key.public_pem, scopes=SCOPES, token_lifetime_seconds=900)
    return value


# -- client_secret_basic --------------------------------------------------------------------------


def test_basic_issues_token(http, oauth, secret):
    response = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "reports.read reports.write"
    assert response.headers["Cache-Control"] == "no-store"
    assert oauth.is_active(body["access_token"])
    assert oauth.grants_issued(CLIENT_ID) == 1
    claims = oauth.introspect(body["access_token"])
    assert claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == 900


def test_basic_decodes_form_urlencoding(http, oauth):
    client_id, secret = "svc:reports äö", "p+ss%w:rd &=/"
    oauth.register_client(client_id, secret=secret)

    encoded = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(client_id, secret))
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    unencoded = _post_token(http, oauth, {"grant_type": "client_credentials"}, {"Authorization": f"Basic {raw}"})

    assert encoded.status_code == 200, encoded.text
    # Without form-urlencoding, '+' decodes to a space and '%w:' is left as is, so the secret differs.
    _assert_error(unencoded, 401, "invalid_client")


def test_basic_wrong_secret_is_401_with_challenge(http, oauth, secret):
    response = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret + "x"))

    _assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert oauth.grants_issued(CLIENT_ID) == 0


def test_basic_unknown_client_rejected(http, oauth, secret):
    response = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic("nobody", secret))

    _assert_error(response, 401, "invalid_client")


def test_basic_malformed_header_rejected(http, oauth, secret):
    response = _post_token(http, oauth, {"grant_type": "client_credentials"}, {"Authorization": "Basic %%%"})

    _assert_error(response, 401, "invalid_client")


# -- client_secret_post ---------------------------------------------------------------------------


def test_post_issues_token(http, oauth, secret):
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret, "scope": "reports.read"}
    response = _post_token(http, oauth, data)

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "reports.read"
    assert oauth.token_requests[-1].client_auth_method == "client_secret_post"


def test_post_wrong_secret_is_400(http, oauth, secret):
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "wrong"}
    response = _post_token(http, oauth, data)

    _assert_error(response, 400, "invalid_client")
    assert "WWW-Authenticate" not in response.headers


def test_two_auth_methods_rejected(http, oauth, secret):
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret}
    response = _post_token(http, oauth, data, _basic(CLIENT_ID, secret))

    _assert_error(response, 400, "invalid_request")


def test_no_client_auth_rejected(http, oauth, secret):
    response = _post_token(http, oauth, {"grant_type": "client_credentials", "client_id": CLIENT_ID})

    _assert_error(response, 401, "invalid_client")
    assert "WWW-Authenticate" in response.headers


# -- request format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "admin"}, "invalid_scope"),
        ("grant_type=client_credentials&grant_type=client_credentials", "invalid_request"),
    ],
    ids=["missing-grant-type", "password-grant", "unknown-scope", "repeated-parameter"],
)
def test_bad_request_errors(http, oauth, secret, data, error):
    headers = {**_basic(CLIENT_ID, secret), "Content-Type": "application/x-www-form-urlencoded"}
    response = _post_token(http, oauth, data, headers)

    _assert_error(response, 400, error)


def test_json_body_rejected(http, oauth, secret):
    response = http.post(
        oauth.token_url, json={"grant_type": "client_credentials"}, headers=_basic(CLIENT_ID, secret), timeout=HTTP_TIMEOUT
    )

    _assert_error(response, 400, "invalid_request")


def test_get_not_allowed(http, oauth, secret):
    response = http.get(oauth.token_url, timeout=HTTP_TIMEOUT)

    assert response.status_code == 405


# -- private_key_jwt ------------------------------------------------------------------------------


def test_private_key_jwt_issues_token(http, oauth, secret, client_key):
    response = _post_token(http, oauth, _client_assertion(oauth, client_key))

    assert response.status_code == 200, response.text
    assert oauth.token_requests[-1].client_auth_method == "private_key_jwt"
    assert oauth.grants_issued(CLIENT_ID) == 1


def test_private_key_jwt_accepts_issuer_audience(http, oauth, secret, client_key):
    response = _post_token(http, oauth, _client_assertion(oauth, client_key, aud=oauth.issuer))

    assert response.status_code == 200, response.text


def test_private_key_jwt_reused_jti_rejected(http, oauth, secret, client_key):
    data = _client_assertion(oauth, client_key)

    first = _post_token(http, oauth, data)
    replay = _post_token(http, oauth, data)

    assert first.status_code == 200, first.text
    _assert_error(replay, 400, "invalid_client")
    assert "already used" in replay.json()["error_description"]


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://elsewhere.example/token"},
        {"aud": GOOGLE_TOKEN_URL},
        {"lifetime": -120},
        {"jti": None},
        {"sub": "someone-else"},
        {"sub": None},
        {"lifetime": 7200},
    ],
    ids=["wrong-aud", "google-aud-not-service-account", "expired", "no-jti", "sub-not-iss", "no-sub", "too-long"],
)
def test_private_key_jwt_bad_claims_rejected(http, oauth, secret, client_key, claims):
    response = _post_token(http, oauth, _client_assertion(oauth, client_key, **claims))

    _assert_error(response, 400, "invalid_client")
    assert oauth.grants_issued(CLIENT_ID) == 0


def test_private_key_jwt_wrong_key_rejected(http, oauth, secret, other_key):
    response = _post_token(http, oauth, _client_assertion(oauth, other_key))

    _assert_error(response, 400, "invalid_client")


def test_private_key_jwt_hmac_with_public_key_rejected(http, oauth, secret, client_key):
    # Algorithm confusion: an HS256 JWT keyed with the public key PEM must not verify.
    now = int(time.time())
    claims = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": oauth.token_url, "exp": now + 60, "jti": uuid.uuid4().hex}
    forged = _hs256(claims, client_key.public_pem)
    data = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": forged}

    response = _post_token(http, oauth, data)

    _assert_error(response, 400, "invalid_client")


def _hs256(claims: dict[str, Any], secret_text: str) -> str:
    # Built by hand because PyJWT refuses to use a PEM key as an HMAC secret.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret_text.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def test_private_key_jwt_wrong_assertion_type_rejected(http, oauth, secret, client_key):
    data = _client_assertion(oauth, client_key)
    data["client_assertion_type"] = "urn:example:other"

    response = _post_token(http, oauth, data)

    _assert_error(response, 400, "invalid_request")


# -- JWT bearer grant -----------------------------------------------------------------------------


def _bearer(assertion: str) -> dict[str, str]:
    return {"grant_type": JWT_BEARER, "assertion": assertion}


def test_jwt_bearer_issues_token(http, oauth, secret, client_key):
    assertion = _assertion(client_key, iss=CLIENT_ID, sub=CLIENT_ID, aud=oauth.token_url)

    response = _post_token(http, oauth, _bearer(assertion))

    assert response.status_code == 200, response.text
    assert oauth.token_requests[-1].grant_type == JWT_BEARER
    assert oauth.introspect(response.json()["access_token"])["sub"] == CLIENT_ID


def test_jwt_bearer_allowed_subject(http, oauth, client_key):
    oauth.register_client("etl", public_key_pem=client_key.public_pem, allowed_subjects=["etl-user@example.com"])

    allowed = _post_token(http, oauth, _bearer(_assertion(client_key, iss="etl", sub="etl-user@example.com", aud=oauth.token_url)))
    other = _post_token(http, oauth, _bearer(_assertion(client_key, iss="etl", sub="admin@example.com", aud=oauth.token_url)))

    assert allowed.status_code == 200, allowed.text
    _assert_error(other, 400, "invalid_grant")


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://elsewhere.example/token"},
        {"aud": GOOGLE_TOKEN_URL},
        {"lifetime": -120},
        {"sub": None},
        {"iss": "unknown-client"},
    ],
    ids=["wrong-aud", "google-aud-not-service-account", "expired", "no-sub", "unknown-iss"],
)
def test_jwt_bearer_bad_claims_rejected(http, oauth, secret, client_key, claims):
    base = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": oauth.token_url}
    lifetime = claims.pop("lifetime", 300)
    assertion = _assertion(client_key, lifetime=lifetime, **{**base, **claims})

    response = _post_token(http, oauth, _bearer(assertion))

    _assert_error(response, 400, "invalid_grant")


def test_jwt_bearer_wrong_key_rejected(http, oauth, secret, other_key):
    assertion = _assertion(other_key, iss=CLIENT_ID, sub=CLIENT_ID, aud=oauth.token_url)

    response = _post_token(http, oauth, _bearer(assertion))

    _assert_error(response, 400, "invalid_grant")


def test_jwt_bearer_garbage_assertion_rejected(http, oauth, secret):
    response = _post_token(http, oauth, _bearer("not-a-jwt"))

    _assert_error(response, 400, "invalid_grant")


def test_service_account_google_audience_accepted(http, oauth, client_key):
    email = "loader@m2m-sandbox.iam.gserviceaccount.com"
    oauth.register_client(email, public_key_pem=client_key.public_pem, scopes=["https://www.googleapis.com/auth/bigquery"], service_account=True)
    # The claims google-auth sends: no sub and no jti, aud fixed to Google's token URL.
    assertion = _assertion(client_key, iss=email, aud=GOOGLE_TOKEN_URL, jti=None, scope="https://www.googleapis.com/auth/bigquery")

    response = _post_token(http, oauth, _bearer(assertion))

    assert response.status_code == 200, response.text
    assert oauth.introspect(response.json()["access_token"])["sub"] == email


# -- lifetimes, revocation, rotation --------------------------------------------------------------


def test_token_expires_after_client_lifetime(http, oauth, secret):
    oauth.set_token_lifetime(CLIENT_ID, 5)
    response = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret))
    token = response.json()["access_token"]
    assert response.json()["expires_in"] == 5

    with time_machine.travel(time.time() + 4, tick=False):
        assert oauth.is_active(token)
    with time_machine.travel(time.time() + 6, tick=False):
        assert not oauth.is_active(token)


def test_revoke_deactivates_token(http, oauth, secret):
    first = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret)).json()
    second = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret)).json()

    oauth.revoke(first["access_token"])

    assert not oauth.is_active(first["access_token"])
    assert oauth.is_active(second["access_token"])


def test_token_from_other_server_inactive(http, oauth, secret, tls):
    other = OAuthServer()
    other.issuer = oauth.issuer  # same issuer URL, different signing key
    other.register_client(CLIENT_ID, secret=secret)
    token = other._issue(other.client(CLIENT_ID), CLIENT_ID, [], {})["access_token"]

    assert not oauth.is_active(token)
    assert not oauth.is_active("not-a-token")


def test_revoked_secret_secondary_still_valid(http, oauth, client_key):
    primary, secondary = random_secret(), random_secret()
    oauth.register_client("rotating", secret=primary, secondary_secret=secondary)

    oauth.revoke_secret("rotating", primary)
    with_primary = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic("rotating", primary))
    with_secondary = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic("rotating", secondary))

    _assert_error(with_primary, 401, "invalid_client")
    assert with_secondary.status_code == 200, with_secondary.text


def test_add_secret_keeps_two_newest(oauth):
    oauth.register_client("rotating", secret="one", secondary_secret="two")

    oauth.add_secret("rotating", "three")

    assert oauth.client("rotating").secrets == ["two", "three"]


# -- scripted faults ------------------------------------------------------------------------------


def test_scripted_429_then_normal(http, oauth, secret):
    oauth.script(ScriptedResponse.too_many_requests(retry_after_seconds=2), ScriptedResponse.unavailable())
    data = {"grant_type": "client_credentials"}

    throttled = _post_token(http, oauth, data, _basic(CLIENT_ID, secret))
    unavailable = _post_token(http, oauth, data, _basic(CLIENT_ID, secret))
    normal = _post_token(http, oauth, data, _basic(CLIENT_ID, secret))

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    assert unavailable.status_code == 503
    assert unavailable.json()["error"] == "temporarily_unavailable"
    assert normal.status_code == 200
    assert oauth.grants_issued(CLIENT_ID) == 1


def test_scripted_response_for_one_client(http, oauth, secret):
    oauth.register_client("bystander", secret="bystander-secret")
    oauth.script(ScriptedResponse.unavailable(), client_id=CLIENT_ID)

    bystander = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic("bystander", "bystander-secret"))
    target = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret))

    assert bystander.status_code == 200
    assert target.status_code == 503


def test_scripted_delay_passes_through(http, oauth, secret):
    oauth.script(ScriptedResponse.delay(0.5))

    started = time.monotonic()
    response = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret))

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5


def test_scripted_delay_trips_client_timeout(http, oauth, secret):
    oauth.script(ScriptedResponse.delay(1.5))

    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(oauth.token_url, data={"grant_type": "client_credentials"}, headers=_basic(CLIENT_ID, secret), timeout=(5, 0.5))


# -- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
def test_metadata_documents(http, oauth, secret, path):
    metadata = http.get(oauth.issuer + path, timeout=HTTP_TIMEOUT).json()

    assert metadata["issuer"] == oauth.issuer
    assert metadata["token_endpoint"] == oauth.token_url
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt",
    }  # fmt: skip
    assert JWT_BEARER in metadata["grant_types_supported"]


def test_jwks_verifies_access_token(http, oauth, secret):
    token = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret)).json()["access_token"]
    jwks = http.get(oauth.issuer + "/jwks", timeout=HTTP_TIMEOUT).json()

    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(token, key.key, algorithms=["RS256"], options={"verify_aud": False})

    assert claims["client_id"] == CLIENT_ID


# -- protected resource ---------------------------------------------------------------------------


def test_protected_api_returns_claims(http, oauth, secret):
    token = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret)).json()["access_token"]

    response = http.get(oauth.issuer + "/api/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)

    assert response.status_code == 200, response.text
    assert response.json()["client_id"] == CLIENT_ID
    assert response.json()["scope"] == "reports.read reports.write"


def test_protected_api_rejects_missing_token(http, oauth):
    response = http.get(oauth.issuer + "/api", timeout=HTTP_TIMEOUT)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="m2m-sandbox"'


def test_protected_api_rejects_revoked_token(http, oauth, secret):
    token = _post_token(http, oauth, {"grant_type": "client_credentials"}, _basic(CLIENT_ID, secret)).json()["access_token"]
    oauth.revoke(token)

    response = http.post(oauth.issuer + "/api/orders", headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
