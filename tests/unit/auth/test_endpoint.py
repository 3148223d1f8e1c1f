from datetime import UTC, datetime

import pytest

from airflow_provider_m2m.auth import InvalidClient, InvalidScope, OAuthError, TokenEndpoint
from airflow_provider_m2m.auth.endpoint import parse_retry_after, safe_url
from airflow_provider_m2m.auth.errors import TemporarilyUnavailable, oauth_error_for


def test_retry_after_seconds():
    assert parse_retry_after("2") == 2.0


def test_retry_after_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:05 GMT", now) == 5.0


@pytest.mark.parametrize("value", [None, "", "soon"])
def test_retry_after_unusable(value):
    assert parse_retry_after(value) is None


def test_safe_url_drops_query_and_user_info():
    assert safe_url("https://u:p@host.test:8443/token?client_secret=x#f") == "https://host.test:8443/token"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://u:p@[::1]:8080/t?x=1", "http://[::1]:8080/t"),
        ("https://host.test:not-a-port/token", "https://host.test/token"),
        ("ftp://user:pw@host.test/file;type=a", "ftp://host.test/file;type=a"),
        ("host.test/token?client_secret=x", "host.test/token"),
    ],
)
def test_safe_url_edge_cases(url, expected):
    assert safe_url(url) == expected


@pytest.mark.parametrize(
    ("code", "cls", "retryable"),
    [
        ("invalid_client", InvalidClient, False),
        ("invalid_scope", InvalidScope, False),
        ("temporarily_unavailable", TemporarilyUnavailable, True),
        ("vendor_specific", OAuthError, False),
    ],
)
def test_error_code_mapping(code, cls, retryable):
    error = oauth_error_for(code, "details", status_code=400)
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.error == code


def test_error_message_names_connection():
    error = oauth_error_for("invalid_client", "Client secret has expired", status_code=400)
    error.connection_id = "crm"
    assert str(error) == (
        "Token request for connection 'crm' failed: invalid_client (Client secret has expired), HTTP 400"
    )


@pytest.mark.parametrize(
    "settings",
    [{"max_retries": -1}, {"timeout": (0, 5)}, {"timeout": (5,)}],
)
def test_endpoint_rejects_bad_settings(settings):
    with pytest.raises(ValueError):
        TokenEndpoint(**settings)
