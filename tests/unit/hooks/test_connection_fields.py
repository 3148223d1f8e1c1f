"""ConnectionFields: typed access, extra parsing and secret masking through real Connection objects."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from airflow.sdk import BaseHook
from airflow.sdk._shared.secrets_masker import redact

from airflow_provider_m2m.hooks._connection import ConnectionFieldError, ConnectionFields
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook


def _fields(set_connection, extra: dict[str, Any], **standard: Any) -> ConnectionFields:
    conn_id = set_connection("fields_conn", "oauth_m2m", extra=extra, **standard)
    return ConnectionFields(BaseHook.get_connection(conn_id), "oauth_m2m")


def test_plain_and_prefixed_extra_keys(set_connection) -> None:
    fields = _fields(
        set_connection, {"scope": "a b", "extra__oauth_m2m__audience": "https://api.example.com"}
    )

    assert fields.text("scope") == "a b"
    assert fields.text("audience") == "https://api.example.com"


def test_empty_string_counts_as_unset(set_connection) -> None:
    fields = _fields(set_connection, {"scope": "  ", "audience": ""})

    assert fields.text("scope", default="fallback") == "fallback"
    assert not fields.is_set("audience")


@pytest.mark.parametrize(("raw", "expected"), [(True, True), ("yes", True), ("False", False), ("0", False)])
def test_boolean_forms(set_connection, raw: Any, expected: bool) -> None:
    assert _fields(set_connection, {"flag": raw}).boolean("flag") is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a b", "a b"), ("a,b", "a b"), (["a", " b "], "a b"), ("a, ,b", "a b")],
)
def test_space_separated_forms(set_connection, raw: Any, expected: str) -> None:
    assert _fields(set_connection, {"scope": raw}).space_separated("scope") == expected


def test_number_from_text(set_connection) -> None:
    fields = _fields(set_connection, {"timeout": "12.5"})

    assert fields.timeouts().read == 12.5
    assert fields.timeouts().connect == 10.0


def test_api_version_number_is_text(set_connection) -> None:
    assert _fields(set_connection, {"api_version": 62.0}).text("api_version") == "62.0"


def test_url_allows_http_on_loopback_only(set_connection) -> None:
    fields = _fields(
        set_connection, {"local": "http://127.0.0.1:8080/token/", "remote": "http://example.com/token"}
    )

    assert fields.url("local") == "http://127.0.0.1:8080/token"
    with pytest.raises(ConnectionFieldError, match="plain http"):
        fields.url("remote")


def test_json_object_from_text_or_object(set_connection) -> None:
    fields = _fields(set_connection, {"as_text": '{"a": "1"}', "as_object": {"b": "2"}, "as_list": "[1]"})

    assert fields.json_object("as_text") == {"a": "1"}
    assert fields.json_object("as_object") == {"b": "2"}
    with pytest.raises(ConnectionFieldError, match="JSON object"):
        fields.json_object("as_list")


def test_secret_fields_are_masked_in_logs(set_connection, rsa_pem: str) -> None:
    secret = "p~a-ss_w0rd+with/odd=chars"
    secondary = "second~ary-secret_value"
    set_connection(
        "masked_conn",
        "oauth_m2m",
        login="client-1",
        password=secret,
        extra={"token_url": "https://idp.example.com/token", "secondary_client_secret": secondary},
    )

    OAuthM2MHook("masked_conn").token_provider()

    for value in (secret, secondary):
        assert redact(f"before {value} after") == "before *** after"
    # The form the secret takes in an AIRFLOW_CONN_* URI or a form-encoded token request.
    assert redact(f"before {quote(secret, safe='')} after") == "before *** after"


def test_private_key_is_masked_in_logs(set_connection, rsa_pem: str) -> None:
    set_connection(
        "masked_key_conn",
        "oauth_m2m",
        login="client-1",
        extra={
            "token_url": "https://idp.example.com/token",
            "client_auth_method": "private_key_jwt",
            "private_key": rsa_pem.replace("\n", " "),
        },
    )

    OAuthM2MHook("masked_key_conn").token_provider()

    body_line = rsa_pem.splitlines()[5]
    assert body_line not in redact(f"leak {body_line}")


def test_uri_connection_password_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "uri~pass-word_42"
    uri = (
        f"oauth-m2m://client-1:{quote(secret, safe='')}@/"
        "?token_url=https%3A%2F%2Fidp.example.com%2Ftoken&scope=api.read"
    )
    monkeypatch.setenv("AIRFLOW_CONN_URI_CONN", uri)

    hook = OAuthM2MHook("uri_conn")
    grant = hook.token_provider().grant

    assert hook.connection_fields().text("login") == "client-1"
    assert grant.token_url == "https://idp.example.com/token"
    assert grant.scope == "api.read"
    assert redact(f"password {secret} and {quote(secret, safe='')}") == "password *** and ***"
