import base64
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airflow_provider_m2m.auth import ClientSecretBasic, ClientSecretPost, PrivateKeyJwt
from airflow_provider_m2m.auth.client_auth import CLIENT_ASSERTION_TYPE

TOKEN_URL = "https://login.example.test/oauth2/token"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def test_basic_form_encodes_before_base64():
    auth = ClientSecretBasic("a b/c", "p+q:r=")
    headers: dict[str, str] = {}
    form: dict[str, str] = {}

    auth.apply(TOKEN_URL, form, headers)

    scheme, credentials = headers["Authorization"].split(" ", 1)
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == "a+b%2Fc:p%2Bq%3Ar%3D"
    assert form == {}


def test_basic_decodes_back_to_original_pair():
    auth = ClientSecretBasic("a b/c", "p+q:r=")
    headers: dict[str, str] = {}
    auth.apply(TOKEN_URL, {}, headers)

    encoded_id, encoded_secret = base64.b64decode(headers["Authorization"][6:]).decode().split(":")
    assert parse_qs(f"x={encoded_id}")["x"] == ["a b/c"]
    assert parse_qs(f"x={encoded_secret}")["x"] == ["p+q:r="]


def test_basic_secret_values_include_header_credentials():
    auth = ClientSecretBasic("a b/c", "p+q:r=")
    headers: dict[str, str] = {}
    auth.apply(TOKEN_URL, {}, headers)

    assert "p+q:r=" in auth.secret_values()
    assert headers["Authorization"][6:] in auth.secret_values()


def test_post_puts_credentials_in_form():
    auth = ClientSecretPost("client", "s3cret")
    form: dict[str, str] = {}
    headers: dict[str, str] = {}

    auth.apply(TOKEN_URL, form, headers)

    assert form == {"client_id": "client", "client_secret": "s3cret"}
    assert headers == {}


@pytest.mark.parametrize("cls", [ClientSecretBasic, ClientSecretPost])
@pytest.mark.parametrize(("client_id", "secret", "field"), [("", "s", "client_id"), ("c", "", "client_secret")])
def test_secret_methods_reject_empty_values(cls, client_id, secret, field):
    with pytest.raises(ValueError, match=field):
        cls(client_id, secret)


def test_repr_hides_secret():
    assert "s3cret" not in repr(ClientSecretBasic("client", "s3cret"))
    assert "s3cret" not in repr(ClientSecretPost("client", "s3cret"))


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_private_key_jwt_assertion_claims(algorithm, rsa_key, ec_key):
    key = rsa_key if algorithm == "RS256" else ec_key
    auth = PrivateKeyJwt("client-1", key, key_id="key-7", algorithm=algorithm)
    form: dict[str, str] = {}

    auth.apply(TOKEN_URL, form, {})

    assert form["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == algorithm
    assert header["kid"] == "key-7"
    claims = jwt.decode(assertion, key.public_key(), algorithms=[algorithm], audience=TOKEN_URL)
    assert claims["iss"] == "client-1"
    assert claims["sub"] == "client-1"
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - claims["iat"] <= 60


def test_private_key_jwt_jti_is_unique(rsa_key):
    auth = PrivateKeyJwt("client-1", rsa_key)
    ids = set()
    for _ in range(20):
        form: dict[str, str] = {}
        auth.apply(TOKEN_URL, form, {})
        ids.add(jwt.decode(form["client_assertion"], options={"verify_signature": False})["jti"])
    assert len(ids) == 20


def test_private_key_jwt_without_kid_omits_header(rsa_key):
    form: dict[str, str] = {}
    PrivateKeyJwt("client-1", rsa_key).apply(TOKEN_URL, form, {})
    assert "kid" not in jwt.get_unverified_header(form["client_assertion"])


def test_private_key_jwt_rejects_mismatched_key(rsa_key, ec_key):
    with pytest.raises(ValueError, match="RSA private key for RS256"):
        PrivateKeyJwt("client-1", ec_key, algorithm="RS256")
    with pytest.raises(ValueError, match="EC P-256"):
        PrivateKeyJwt("client-1", rsa_key, algorithm="ES256")


def test_private_key_jwt_rejects_unknown_algorithm(rsa_key):
    with pytest.raises(ValueError, match="HS256"):
        PrivateKeyJwt("client-1", rsa_key, algorithm="HS256")


def test_private_key_jwt_rejects_short_rsa_key():
    short_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="1024-bit"):
        PrivateKeyJwt("client-1", short_key)


def test_private_key_jwt_rejects_other_curve():
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        PrivateKeyJwt("client-1", p384, algorithm="ES256")
