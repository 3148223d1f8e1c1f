"""URL fields: errors and reprs quote scheme, host, port and path, never user info, query or fragment."""

from __future__ import annotations

import pytest
from airflow.sdk import BaseHook

from airflow_provider_m2m.hooks._connection import ConnectionFields
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook

SECRET = "Sup3rS3cretValue"

REJECTED_URLS = [
    pytest.param(f"http://client:{SECRET}@idp.example.com/oauth2/token", id="plain-http-user-info"),
    pytest.param(f"http://idp.example.com/oauth2/token?client_secret={SECRET}", id="plain-http-query"),
    pytest.param(f"http://idp.example.com/oauth2/token#{SECRET}", id="plain-http-fragment"),
    pytest.param(f"ftp://idp.example.com/oauth2/token?client_secret={SECRET}", id="ftp-query"),
    pytest.param(f"ftp://client:{SECRET}@idp.example.com/oauth2/token", id="ftp-user-info"),
    pytest.param(f"client:{SECRET}@idp.example.com/oauth2/token", id="no-scheme"),
    pytest.param(f"https://client:{SECRET}@idp.example.com/oauth2/token", id="https-user-info"),
    pytest.param(f"https://idp.example.com:{SECRET}/oauth2/token", id="secret-as-port"),
]


@pytest.mark.parametrize("token_url", REJECTED_URLS)
def test_token_url_error_hides_secret(set_connection, token_url) -> None:
    conn_id = set_connection(
        "url_conn", "oauth_m2m", login="client", password="primary-secret-value", extra={"token_url": token_url}
    )

    with pytest.raises(ValueError) as caught:
        OAuthM2MHook(oauth_m2m_conn_id=conn_id).token_provider()

    message = str(caught.value)
    assert "url_conn" in message
    assert "token_url" in message
    assert SECRET not in message


@pytest.mark.parametrize("base_url", REJECTED_URLS[:-2])
def test_url_field_error_hides_secret(set_connection, base_url) -> None:
    conn_id = set_connection("url_conn", "oauth_m2m", extra={"base_url": base_url})
    fields = ConnectionFields(BaseHook.get_connection(conn_id), "oauth_m2m")

    with pytest.raises(ValueError) as caught:
        fields.url("base_url")

    message = str(caught.value)
    assert "base_url" in message
    assert SECRET not in message


def test_plain_http_error_names_host(set_connection) -> None:
    conn_id = set_connection(
        "url_conn", "oauth_m2m", extra={"base_url": f"http://idp.example.com:8080/api?key={SECRET}"}
    )
    fields = ConnectionFields(BaseHook.get_connection(conn_id), "oauth_m2m")

    with pytest.raises(ValueError, match="plain http") as caught:
        fields.url("base_url")

    assert "'http://idp.example.com:8080/api'" in str(caught.value)


def test_provider_repr_hides_query(set_connection) -> None:
    conn_id = set_connection(
        "url_conn",
        "oauth_m2m",
        login="client",
        password="primary-secret-value",
        extra={"token_url": f"https://idp.example.com/oauth2/token?tenant_key={SECRET}"},
    )

    provider = OAuthM2MHook(oauth_m2m_conn_id=conn_id).token_provider()

    assert SECRET not in repr(provider)
    assert "https://idp.example.com/oauth2/token" in repr(provider)
    assert SECRET in provider.grant.token_url
