import base64
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from airflow_provider_m2m.auth import ClientSecretBasic, ClientSecretPost, PrivateKeyJwt
from airflow_provider_m2m.auth.client_auth import CLIENT_ASSERTION_TYPE, load_certificate

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


# --- certificate thumbprints (Entra ID) and assertion audience (Auth0) ----------------------------


def _certificate(key, *, days: int = 30, expired: bool = False) -> x509.Certificate:
    """Build a self-signed certificate for `key`, valid from now or, with `expired`, ended a day ago."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m2m-client")])
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=days + 1) if expired else now - timedelta(minutes=1)
    end = now - timedelta(days=1) if expired else now + timedelta(days=days)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _base64url(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="module")
def rsa_certificate(rsa_key):
    return _certificate(rsa_key)


def _assertion_header(auth: PrivateKeyJwt) -> dict:
    form: dict[str, str] = {}
    auth.apply(TOKEN_URL, form, {})
    return jwt.get_unverified_header(form["client_assertion"])


def test_certificate_thumbprints_in_header(rsa_key, rsa_certificate):
    auth = PrivateKeyJwt("client-1", rsa_key, certificate=rsa_certificate)

    header = _assertion_header(auth)

    # cryptography's fingerprint is the digest of the DER encoding, computed apart from the code under test.
    assert header["x5t#S256"] == _base64url(rsa_certificate.fingerprint(hashes.SHA256()))
    assert header["x5t"] == _base64url(rsa_certificate.fingerprint(hashes.SHA1()))
    assert "=" not in header["x5t#S256"]
    assert len(header["x5t#S256"]) == 43
    assert len(header["x5t"]) == 27


def test_certificate_header_keeps_kid(rsa_key, rsa_certificate):
    auth = PrivateKeyJwt("client-1", rsa_key, key_id="key-7", certificate=rsa_certificate)

    header = _assertion_header(auth)

    assert header["kid"] == "key-7"
    assert "x5t#S256" in header


def test_without_certificate_no_thumbprints(rsa_key):
    header = _assertion_header(PrivateKeyJwt("client-1", rsa_key))

    assert "x5t#S256" not in header
    assert "x5t" not in header


def test_certificate_of_other_key_rejected(rsa_key):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_certificate = _certificate(other_key)

    with pytest.raises(ValueError, match=r"^certificate does not match private_key"):
        PrivateKeyJwt("client-1", rsa_key, certificate=other_certificate)


def test_certificate_with_ec_key(ec_key):
    certificate = _certificate(ec_key)
    auth = PrivateKeyJwt("client-1", ec_key, algorithm="ES256", certificate=certificate)

    header = _assertion_header(auth)

    assert header["alg"] == "ES256"
    assert header["x5t#S256"] == _base64url(certificate.fingerprint(hashes.SHA256()))


def test_expired_certificate_logs_warning(rsa_key, caplog):
    expired = _certificate(rsa_key, expired=True)

    with caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.auth.client_auth"):
        auth = PrivateKeyJwt("client-1", rsa_key, certificate=expired)

    assert "x5t#S256" in _assertion_header(auth)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "expired" in warnings[0]
    assert "'client-1'" in warnings[0]


def test_valid_certificate_logs_nothing(rsa_key, rsa_certificate, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.auth.client_auth"):
        PrivateKeyJwt("client-1", rsa_key, certificate=rsa_certificate)

    assert caplog.records == []


def test_certificate_must_be_x509(rsa_key, rsa_certificate):
    with pytest.raises(ValueError, match=r"^certificate must be an X.509 certificate"):
        PrivateKeyJwt("client-1", rsa_key, certificate=_pem(rsa_certificate))


def test_assertion_audience_overrides_aud(rsa_key):
    tenant_url = "https://example-tenant.us.auth0.com/"
    form: dict[str, str] = {}

    PrivateKeyJwt("client-1", rsa_key, assertion_audience=tenant_url).apply(TOKEN_URL, form, {})

    claims = jwt.decode(form["client_assertion"], rsa_key.public_key(), algorithms=["RS256"], audience=tenant_url)
    assert claims["aud"] == tenant_url
    assert claims["iss"] == "client-1"


def test_aud_defaults_to_token_url(rsa_key):
    form: dict[str, str] = {}

    PrivateKeyJwt("client-1", rsa_key, assertion_audience=None).apply(TOKEN_URL, form, {})

    assert jwt.decode(form["client_assertion"], options={"verify_signature": False})["aud"] == TOKEN_URL


@pytest.mark.parametrize("audience", ["", 42])
def test_assertion_audience_rejects_non_text(rsa_key, audience):
    with pytest.raises(ValueError, match=r"^assertion_audience is missing or empty"):
        PrivateKeyJwt("client-1", rsa_key, assertion_audience=audience)


def test_ps256_signs_with_rsa_key(rsa_key):
    form: dict[str, str] = {}

    PrivateKeyJwt("client-1", rsa_key, algorithm="PS256").apply(TOKEN_URL, form, {})

    assert jwt.get_unverified_header(form["client_assertion"])["alg"] == "PS256"
    claims = jwt.decode(form["client_assertion"], rsa_key.public_key(), algorithms=["PS256"], audience=TOKEN_URL)
    assert claims["sub"] == "client-1"


def test_ps256_rejects_ec_key(ec_key):
    with pytest.raises(ValueError, match="RSA private key for PS256"):
        PrivateKeyJwt("client-1", ec_key, algorithm="PS256")


# --- load_certificate: the forms a connection field may hold ---------------------------------------


def _certificate_forms(certificate: x509.Certificate, key, tmp_path) -> dict[str, str]:
    pem = _pem(certificate)
    der = certificate.public_bytes(serialization.Encoding.DER)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    other_pem = _pem(_certificate(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "client.pem").write_text(pem)
    (tmp_path / "client.der").write_bytes(der)
    (tmp_path / "key-and-certificate.pem").write_text(key_pem + pem)
    return {
        "real-newlines": pem,
        "escaped-newlines": pem.replace("\n", "\\n"),
        "newlines-as-spaces": pem.replace("\n", " "),
        # A single-line HTML input drops the line breaks of pasted text.
        "newlines-lost": pem.replace("\n", ""),
        "base64-of-pem": base64.b64encode(pem.encode()).decode(),
        "base64-of-der": base64.b64encode(der).decode(),
        "pem-file": str(tmp_path / "client.pem"),
        "der-file": str(tmp_path / "client.der"),
        "file-with-key-first": str(tmp_path / "key-and-certificate.pem"),
        "chain-leaf-first": pem + other_pem,
    }


@pytest.mark.parametrize(
    "form",
    [
        "real-newlines",
        "escaped-newlines",
        "newlines-as-spaces",
        "newlines-lost",
        "base64-of-pem",
        "base64-of-der",
        "pem-file",
        "der-file",
        "file-with-key-first",
        "chain-leaf-first",
    ],
)
def test_load_certificate_forms(rsa_key, rsa_certificate, tmp_path, form):
    value = _certificate_forms(rsa_certificate, rsa_key, tmp_path)[form]

    assert load_certificate(value) == rsa_certificate


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not a certificate!", "neither PEM, base64 of a certificate, nor a path"),
        ("/nonexistent/client-cert.pem", "neither PEM, base64 of a certificate, nor a path"),
        ("-----BEGIN CERTIFICATE-----\nMIIB", "no complete -----BEGIN CERTIFICATE-----"),
        ("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----", "not a valid X.509"),
        ("-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----", "not valid base64"),
        ("", "missing or empty"),
    ],
)
def test_load_certificate_rejects_bad_value(value, problem):
    with pytest.raises(ValueError) as raised:
        load_certificate(value)

    message = str(raised.value)
    assert message.startswith("certificate ")
    assert problem in message
    if len(value) > 4:
        assert value not in message


def test_load_certificate_file_without_certificate(rsa_key, tmp_path):
    key_only = tmp_path / "key-only.pem"
    key_only.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    with pytest.raises(ValueError, match="contains no CERTIFICATE block"):
        load_certificate(str(key_only))
