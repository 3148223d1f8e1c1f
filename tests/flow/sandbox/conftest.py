"""Fixtures for the sandbox's own tests: TLS files, an OAuth server over HTTPS, RSA keys."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from airflow_provider_m2m.sandbox.oauth_server import OAuthServer, generate_rsa_key
from airflow_provider_m2m.sandbox.tls import TLSFiles, create_tls_files

HTTP_TIMEOUT = 10


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return create_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def client_key() -> KeyPair:
    return KeyPair(*generate_rsa_key())


@pytest.fixture(scope="session")
def other_key() -> KeyPair:
    """A key no client registered, to sign assertions the server must reject."""
    return KeyPair(*generate_rsa_key())


@pytest.fixture
def oauth(tls: TLSFiles) -> Iterator[OAuthServer]:
    app = OAuthServer()
    server = app.serve(tls)
    try:
        yield app
    finally:
        server.stop()


def https_session(tls: TLSFiles) -> requests.Session:
    """A session that trusts the sandbox CA.

    trust_env is off because requests lets REQUESTS_CA_BUNDLE from the environment override
    `session.verify`, and CI machines set that variable.
    """
    session = requests.Session()
    session.verify = str(tls.ca_cert)
    session.trust_env = False
    return session


@pytest.fixture
def http(tls: TLSFiles) -> Iterator[requests.Session]:
    with https_session(tls) as session:
        yield session


def random_secret() -> str:
    return secrets.token_urlsafe(24)
