import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airflow_provider_m2m.auth import (
    ClientCredentialsGrant,
    ClientSecretPost,
    InvalidClient,
    InvalidGrant,
    JwtBearerGrant,
    PrivateKeyJwt,
    TokenEndpointError,
    TokenProvider,
    discover_token_endpoint,
)

from .support import make_endpoint


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_private_key_jwt_grant(oauth_server, rsa_key, algorithm):
    key = rsa_key if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1())
    oauth_server.add_client_key("svc-jwt", key.public_key())
    grant = ClientCredentialsGrant(
        oauth_server.token_url, PrivateKeyJwt("svc-jwt", key, key_id="k1", algorithm=algorithm), scope="read write"
    )
    provider = TokenProvider(grant, connection_id="pkjwt", endpoint=make_endpoint(oauth_server.ca_bundle), cache=None)

    token = provider.get_token()

    assert token.scope == "read write"
    form = oauth_server.token_requests[0]["form"]
    assert form["grant_type"] == "client_credentials"
    assert "client_secret" not in form
    assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "k1"


def test_private_key_jwt_wrong_key_is_invalid_client(oauth_server, rsa_key):
    oauth_server.add_client_key("svc-jwt", rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    grant = ClientCredentialsGrant(oauth_server.token_url, PrivateKeyJwt("svc-jwt", rsa_key))
    provider = TokenProvider(grant, connection_id="pkjwt", endpoint=make_endpoint(oauth_server.ca_bundle), cache=None)

    with pytest.raises(InvalidClient, match="invalid_client"):
        provider.get_token()


def test_jwt_bearer_grant(oauth_server, rsa_key):
    oauth_server.add_client_key("consumer-key", rsa_key.public_key())
    grant = JwtBearerGrant(
        oauth_server.token_url,
        issuer="consumer-key",
        subject="integration@example.test",
        audience=oauth_server.issuer,
        private_key=rsa_key,
    )
    provider = TokenProvider(grant, connection_id="sf", endpoint=make_endpoint(oauth_server.ca_bundle), cache=None)

    token = provider.get_token()

    assert token.access_token
    form = oauth_server.token_requests[0]["form"]
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(form["assertion"], options={"verify_signature": False})
    assert claims["sub"] == "integration@example.test"
    assert claims["exp"] - claims["iat"] <= 180


def test_jwt_bearer_wrong_audience_is_invalid_grant(oauth_server, rsa_key):
    oauth_server.add_client_key("consumer-key", rsa_key.public_key())
    grant = JwtBearerGrant(
        oauth_server.token_url, "consumer-key", "user@example.test", "https://elsewhere.test", rsa_key
    )
    provider = TokenProvider(grant, connection_id="sf", endpoint=make_endpoint(oauth_server.ca_bundle), cache=None)

    with pytest.raises(InvalidGrant, match="'sf'"):
        provider.get_token()


def test_scope_audience_resource_sent(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    grant = ClientCredentialsGrant(
        oauth_server.token_url,
        ClientSecretPost("svc", "secret-1"),
        scope=["read", "write"],
        audience="https://api.example.test",
        resource=["https://a.example.test/", "https://b.example.test/"],
        extra_params={"tenant": "t1"},
    )
    provider = TokenProvider(grant, connection_id="params", endpoint=make_endpoint(oauth_server.ca_bundle), cache=None)

    provider.get_token()

    form = oauth_server.token_requests[0]["form"]
    assert form["scope"] == "read write"
    assert form["audience"] == "https://api.example.test"
    assert form["resource"] == ["https://a.example.test/", "https://b.example.test/"]
    assert form["tenant"] == "t1"


def test_expires_in_string_from_server(oauth_server):
    oauth_server.add_client("svc", "secret-1")
    oauth_server.token_lifetime = "1800"
    grant = ClientCredentialsGrant(oauth_server.token_url, ClientSecretPost("svc", "secret-1"))
    provider = TokenProvider(grant, connection_id="str", endpoint=make_endpoint(oauth_server.ca_bundle), cache=None)

    token = provider.get_token()

    assert 1795 <= token.lifetime.total_seconds() <= 1800


def test_discovery_rfc8414(oauth_server):
    endpoint = make_endpoint(oauth_server.ca_bundle)

    assert discover_token_endpoint(oauth_server.issuer, endpoint) == oauth_server.token_url


def test_discovery_openid_fallback_and_cache(oauth_server):
    oauth_server.metadata_paths = {"/.well-known/openid-configuration"}
    endpoint = make_endpoint(oauth_server.ca_bundle)

    assert discover_token_endpoint(oauth_server.issuer, endpoint) == oauth_server.token_url
    oauth_server.metadata_paths = set()
    assert discover_token_endpoint(oauth_server.issuer, endpoint) == oauth_server.token_url


def test_discovery_rejects_other_issuer(oauth_server):
    endpoint = make_endpoint(oauth_server.ca_bundle)
    original = oauth_server.issuer
    oauth_server.issuer = "https://attacker.test"
    try:
        with pytest.raises(TokenEndpointError, match="expected"):
            discover_token_endpoint(original, endpoint)
    finally:
        oauth_server.issuer = original


def test_discovery_without_metadata(oauth_server):
    oauth_server.metadata_paths = set()
    endpoint = make_endpoint(oauth_server.ca_bundle)

    with pytest.raises(TokenEndpointError, match="no authorization server metadata"):
        discover_token_endpoint(oauth_server.issuer, endpoint)
