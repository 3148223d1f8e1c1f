"""Salesforce hook helpers: wire values, session rejection, login error hints, flow settings."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests

from airflow_provider_m2m.auth import ClientCredentialsGrant, JwtBearerGrant, OAuthError
from airflow_provider_m2m.auth.errors import InvalidGrant, InvalidRequest
from airflow_provider_m2m.hooks.salesforce import (
    BULK_CSV_NULL,
    SalesforceLoginError,
    SalesforceM2MHook,
    csv_value,
    explain_login_error,
    has_literal_csv_null,
    is_session_rejected,
    json_value,
)
from airflow_provider_m2m.reconcile.mapping import NULL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NULL, BULK_CSV_NULL),
        (None, ""),
        (True, "true"),
        (False, "false"),
        (Decimal("1234567890123.45"), "1234567890123.45"),
        (date(2024, 2, 29), "2024-02-29"),
        (
            datetime(2024, 2, 29, 12, 0, 1, 999999, tzinfo=timezone(timedelta(hours=2))),
            "2024-02-29T10:00:01.999Z",
        ),
        ('Ñandú, "quoted"', 'Ñandú, "quoted"'),
    ],
)
def test_csv_value(value: Any, expected: str) -> None:
    assert csv_value(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NULL, None),
        (True, True),
        (7, 7),
        (Decimal("0.10"), "0.10"),
        (date(2024, 1, 2), "2024-01-02"),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05.000Z"),
        ("text", "text"),
    ],
)
def test_json_value(value: Any, expected: Any) -> None:
    assert json_value(value) == expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"Name": "#N/A"}, True),
        ({"Name": "Acme", "Notes__c": "#N/A"}, True),
        ({"Name": "Acme", "Notes__c": NULL}, False),
        ({"Name": "Acme", "Notes__c": None}, False),
        ({"Name": "#N/A ", "Notes__c": "n/a"}, False),
        ({}, False),
    ],
)
def test_has_literal_csv_null(record: dict[str, Any], expected: bool) -> None:
    assert has_literal_csv_null(record) is expected


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        csv_value(datetime(2024, 1, 2, 3, 4, 5))


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


def test_invalid_session_id_is_rejection() -> None:
    body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]

    assert is_session_rejected(_response(401, body))


def test_bearer_invalid_token_is_rejection() -> None:
    assert is_session_rejected(_response(401, {}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, [{"errorCode": "API_DISABLED_FOR_ORG", "message": "API is not enabled"}]),
        (403, [{"errorCode": "INVALID_SESSION_ID"}]),
        (400, [{"errorCode": "MALFORMED_QUERY"}]),
    ],
)
def test_other_errors_are_not_rejection(status: int, body: Any) -> None:
    assert not is_session_rejected(_response(status, body))


@pytest.mark.parametrize(
    ("error", "description", "expected"),
    [
        (InvalidGrant, "audience is invalid", "set is_sandbox"),
        (InvalidGrant, "user hasn't approved this consumer", "Pre-authorize the user"),
        (InvalidGrant, "invalid assertion", "upload the certificate"),
        (InvalidRequest, "request not supported on this domain", "My Domain URL"),
        (InvalidGrant, "no client credentials user enabled", "Run As user"),
        (OAuthError, "something new", "Check the connection's flow"),
    ],
)
def test_login_error_hint(error: type[OAuthError], description: str, expected: str) -> None:
    original = error(getattr(error, "error_code", None) or "invalid_grant", description, status_code=400)

    explained = explain_login_error(original, "sf_conn")

    assert isinstance(explained, SalesforceLoginError)
    assert isinstance(explained, OAuthError)
    assert expected in str(explained)
    assert "'sf_conn'" in str(explained)
    assert description in str(explained)
    assert not explained.retryable


def _salesforce(set_connection, conn_id: str, extra: dict[str, Any], **fields: Any) -> SalesforceM2MHook:
    defaults = {
        "host": "https://acme.my.salesforce.com",
        "login": "3MVG9consumer",
        "password": "consumer-secret",
    }
    set_connection(conn_id, "salesforce_m2m", extra=extra, **{**defaults, **fields})
    return SalesforceM2MHook(conn_id)


def test_client_credentials_posts_to_my_domain(set_connection) -> None:
    hook = _salesforce(set_connection, "sf_cc", {"flow": "client_credentials"})

    grant = hook.token_provider().grant._grant

    assert isinstance(grant, ClientCredentialsGrant)
    assert grant.token_url == "https://acme.my.salesforce.com/services/oauth2/token"
    assert grant.client_auth.method == "client_secret_post"
    assert hook.token_provider().default_lifetime == timedelta(seconds=7200)


@pytest.mark.parametrize(
    ("extra", "token_url", "audience"),
    [
        ({}, "https://acme.my.salesforce.com/services/oauth2/token", "https://login.salesforce.com"),
        (
            {"is_sandbox": True},
            "https://acme.my.salesforce.com/services/oauth2/token",
            "https://test.salesforce.com",
        ),
        (
            {"is_sandbox": "true", "audience": "https://acme.my.salesforce.com"},
            None,
            "https://acme.my.salesforce.com",
        ),
        (
            {"token_host": "https://test.salesforce.com"},
            "https://test.salesforce.com/services/oauth2/token",
            None,
        ),
    ],
    ids=["production", "sandbox", "audience-override", "token-host"],
)
def test_jwt_bearer_token_host_and_audience(
    set_connection, rsa_pem: str, extra: dict, token_url: str | None, audience: str | None
) -> None:
    hook = _salesforce(
        set_connection,
        "sf_jwt",
        {"flow": "jwt_bearer", "username": "u@example.com", "private_key": rsa_pem, **extra},
    )

    grant = hook.token_provider().grant._grant

    assert isinstance(grant, JwtBearerGrant)
    assert grant.issuer == "3MVG9consumer"
    assert grant.subject == "u@example.com"
    if token_url:
        assert grant.token_url == token_url
    if audience:
        assert grant.audience == audience


def test_session_lifetime_sets_default_lifetime(set_connection) -> None:
    hook = _salesforce(
        set_connection, "sf_life", {"flow": "client_credentials", "session_lifetime_seconds": 900}
    )

    assert hook.token_provider().default_lifetime == timedelta(seconds=900)


def test_hook_init_sends_nothing(set_connection) -> None:
    # An unreachable My Domain URL: building the hook and its settings must not contact it.
    hook = _salesforce(set_connection, "sf_lazy", {"flow": "client_credentials"}, host="https://127.0.0.1:9")

    assert hook.settings.flow == "client_credentials"
    assert hook._provider is None
