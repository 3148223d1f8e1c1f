import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_m2m.auth import (
    ClientCredentialsGrant,
    ClientSecretBasic,
    ClientSecretPost,
    JwtBearerGrant,
    PrivateKeyJwt,
    validate_token_url,
)

TOKEN_URL = "https://login.example.test/token"


def _grant(**overrides):
    settings = {"token_url": TOKEN_URL, "client_auth": ClientSecretBasic("svc", "s1"), "scope": "read"}
    settings.update(overrides)
    return ClientCredentialsGrant(**settings)


def test_fingerprint_stable():
    assert _grant().fingerprint() == _grant().fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"client_auth": ClientSecretBasic("svc", "s2")},
        {"client_auth": ClientSecretBasic("other", "s1")},
        {"client_auth": ClientSecretPost("svc", "s1")},
        {"token_url": "https://login.example.test/v2/token"},
        {"scope": "write"},
        {"audience": "https://api.example.test"},
        {"resource": "https://api.example.test/"},
        {"extra_params": {"tenant": "t1"}},
    ],
)
def test_fingerprint_changes_with_input(change):
    assert _grant(**change).fingerprint() != _grant().fingerprint()


def test_fingerprint_hides_secret():
    assert "s1" not in _grant().fingerprint()


def test_fingerprint_changes_with_key():
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    assert (
        _grant(client_auth=PrivateKeyJwt("svc", first)).fingerprint()
        != _grant(client_auth=PrivateKeyJwt("svc", second)).fingerprint()
    )


def test_scope_list_joined():
    assert _grant(scope=["a", " b ", ""]).build_form()["scope"] == "a b"


def test_extra_params_cannot_override_grant():
    with pytest.raises(ValueError, match="grant_type"):
        _grant(extra_params={"grant_type": "password"})


def test_resource_must_be_absolute():
    with pytest.raises(ValueError, match="RFC 8707"):
        _grant(resource="api")


@pytest.mark.parametrize(
    "url",
    ["https://login.example.test/token", "http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]/t"],
)
def test_token_url_accepted(url):
    assert validate_token_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://login.example.test/token", "must use https"),
        ("/token", "absolute URL"),
        ("", "missing"),
        ("https://user:pw@login.example.test/token", "user info"),
    ],
)
def test_token_url_rejected(url, message):
    with pytest.raises(ValueError, match=message):
        validate_token_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://login.example.test/token?client_secret=s3cr3t-value",
        "ftp://login.example.test/token#s3cr3t-value",
        "https://u:s3cr3t-value@login.example.test/token",
        "https://login.example.test:s3cr3t-value/token",
        "login.example.test/token?client_secret=s3cr3t-value",
    ],
)
def test_token_url_error_hides_secret(url):
    with pytest.raises(ValueError) as caught:
        validate_token_url(url)

    assert "s3cr3t-value" not in str(caught.value)


def test_grant_repr_hides_query():
    url = "https://login.example.test/token?tenant_key=s3cr3t-value#s3cr3t-value"
    grant = ClientCredentialsGrant(url, ClientSecretBasic("svc", "client-secret-value"))

    assert "s3cr3t-value" not in repr(grant)
    assert "'https://login.example.test/token'" in repr(grant)


def test_jwt_bearer_requires_subject():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="subject"):
        JwtBearerGrant(TOKEN_URL, "issuer", "", "https://login.example.test", key)
