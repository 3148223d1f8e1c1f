"""OAuthM2MHook builds private_key_jwt from a real Connection: the certificate field puts its
thumbprints in the assertion header, and assertion_audience sets the assertion's aud."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from airflow_provider_m2m.hooks._connection import ConnectionFieldError
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook

TOKEN_URL = "https://idp.example.com/oauth2/v2.0/token"


def _certificate_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m2m-unit-client")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _jwt_connection(set_connection: Callable[..., str], rsa_pem: str, **extra: object) -> str:
    return set_connection(
        "oauth_jwt_unit",
        "oauth_m2m",
        login="client-1",
        extra={"token_url": TOKEN_URL, "client_auth_method": "private_key_jwt", "private_key": rsa_pem, **extra},
    )


def _assertion(conn_id: str) -> str:
    form: dict[str, str] = {}
    OAuthM2MHook(conn_id).token_provider().grant.client_auth.apply(TOKEN_URL, form, {})
    return form["client_assertion"]


def test_certificate_field_sets_thumbprint(
    set_connection: Callable[..., str], rsa_key: rsa.RSAPrivateKey, rsa_pem: str
) -> None:
    certificate_pem = _certificate_pem(rsa_key)
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    expected = base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
    conn_id = _jwt_connection(set_connection, rsa_pem, certificate=certificate_pem.replace("\n", " "))

    header = jwt.get_unverified_header(_assertion(conn_id))

    assert header["x5t#S256"] == expected
    assert "x5t" in header


def test_assertion_audience_keeps_trailing_slash(set_connection: Callable[..., str], rsa_pem: str) -> None:
    conn_id = _jwt_connection(set_connection, rsa_pem, assertion_audience="https://tenant.example.auth0.com/")

    claims = jwt.decode(_assertion(conn_id), options={"verify_signature": False})

    assert claims["aud"] == "https://tenant.example.auth0.com/"


def test_aud_defaults_to_token_url(set_connection: Callable[..., str], rsa_pem: str) -> None:
    conn_id = _jwt_connection(set_connection, rsa_pem)

    claims = jwt.decode(_assertion(conn_id), options={"verify_signature": False})

    assert claims["aud"] == TOKEN_URL
    assert "x5t#S256" not in jwt.get_unverified_header(_assertion(conn_id))


@pytest.mark.parametrize(
    ("certificate", "problem"),
    [
        ("/nonexistent/client-cert.pem", "nor a path to an existing certificate file"),
        ("-----BEGIN CERTIFICATE-----\nMIIB", "no complete -----BEGIN CERTIFICATE-----"),
        ("{other-key}", "does not match private_key"),
    ],
)
def test_bad_certificate_names_field(
    set_connection: Callable[..., str], rsa_pem: str, certificate: str, problem: str
) -> None:
    if certificate == "{other-key}":
        certificate = _certificate_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    conn_id = _jwt_connection(set_connection, rsa_pem, certificate=certificate)

    with pytest.raises(ConnectionFieldError) as raised:
        OAuthM2MHook(conn_id).token_provider()

    assert raised.value.field == "certificate"
    assert raised.value.connection_id == conn_id
    assert problem in str(raised.value)
    assert rsa_pem not in str(raised.value)


def test_ps256_algorithm_accepted(set_connection: Callable[..., str], rsa_pem: str) -> None:
    conn_id = _jwt_connection(set_connection, rsa_pem, signing_algorithm="PS256")

    assert jwt.get_unverified_header(_assertion(conn_id))["alg"] == "PS256"


def test_jwt_fields_ignored_for_secret(
    set_connection: Callable[..., str], rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    conn_id = set_connection(
        "oauth_secret_with_certificate",
        "oauth_m2m",
        login="client-1",
        password="client-secret-value",
        extra={
            "token_url": TOKEN_URL,
            "certificate": _certificate_pem(rsa_key),
            "assertion_audience": "https://tenant.example.auth0.com/",
        },
    )

    with caplog.at_level(logging.WARNING, logger="airflow_provider_m2m.hooks.oauth"):
        OAuthM2MHook(conn_id).token_provider()

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("certificate is set" in message for message in warnings)
    assert any("assertion_audience is set" in message for message in warnings)
    for message in warnings:
        assert repr(conn_id) in message
        assert "client-secret-value" not in message
