"""Fixtures: a Salesforce emulator served over real HTTPS on 127.0.0.1, and clients for it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from simple_salesforce import Salesforce

from airflow_provider_m2m.sandbox.http import SandboxServer
from airflow_provider_m2m.sandbox.salesforce import ConnectedApp, SalesforceEmulator
from airflow_provider_m2m.sandbox.tls import TLSFiles, create_tls_files

CONSUMER_KEY = "3MVG9-test-consumer-key"
CONSUMER_SECRET = "test-consumer-secret-0123456789"
RUN_AS = "integration@m2m.example"
JWT_USER = "jwt-user@m2m.example"
HTTP_TIMEOUT = 10


@dataclass
class Org:
    """A running emulator and what a client needs to reach it."""

    emulator: SalesforceEmulator
    url: str
    tls: TLSFiles
    private_key: rsa.RSAPrivateKey

    def http(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.tls.ca_cert)
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override
        # `session.verify`; ignoring the environment keeps the sandbox CA in force.
        session.trust_env = False
        return session

    def client_credentials_token(self) -> str:
        response = self.http().post(
            f"{self.url}/services/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(CONSUMER_KEY, CONSUMER_SECRET),
            timeout=HTTP_TIMEOUT,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def assertion(self, **overrides: object) -> str:
        claims: dict[str, object] = {
            "iss": CONSUMER_KEY,
            "sub": JWT_USER,
            "aud": "https://login.salesforce.com",
            "exp": int(time.time()) + 120,
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, self.private_key, algorithm="RS256")

    def salesforce(self, token: str | None = None) -> Salesforce:
        return Salesforce(
            instance_url=self.url,
            session_id=token or self.client_credentials_token(),
            session=self.http(),
            version="62.0",
        )

    def api(self, token: str | None = None) -> requests.Session:
        """A requests session that sends a bearer token on every call."""
        session = self.http()
        session.headers["Authorization"] = f"Bearer {token or self.client_credentials_token()}"
        return session

    def data_url(self, path: str) -> str:
        return f"{self.url}/services/data/v62.0/{path}"


def _self_signed_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m2m test connected app")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def jwt_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return create_tls_files(Path(tmp_path_factory.mktemp("salesforce-tls")))


@pytest.fixture
def org(tls_files: TLSFiles, jwt_private_key: rsa.RSAPrivateKey) -> Iterator[Org]:
    app = ConnectedApp(
        CONSUMER_KEY,
        CONSUMER_SECRET,
        RUN_AS,
        _self_signed_certificate(jwt_private_key).decode("ascii"),
        [JWT_USER],
    )
    emulator = SalesforceEmulator(session_timeout_seconds=60, clients=[app])
    server = SandboxServer(emulator, tls_files, name="salesforce-test").start()
    emulator.base_url = server.url
    try:
        yield Org(emulator, server.url, tls_files, jwt_private_key)
    finally:
        emulator.wait_for_jobs()
        server.stop()
