"""One row per malformed field per connection type: the error names the connection and the field,
and never contains the secret the connection holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.oauth import OAuthM2MHook
from airflow_provider_m2m.hooks.salesforce import SalesforceM2MHook
from airflow_provider_m2m.hooks.snowflake import SnowflakeM2MHook

SECRET = "Sup3r-s3cret~value_42"
PASSPHRASE_SECRET = "wrong-passphrase~Zq9_x"
GARBAGE_KEY = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IFN1cDNyLXMzY3JldA==GarbageKeyBody7781\n-----END PRIVATE KEY-----"
GARBAGE_KEY_SECRET = "GarbageKeyBody7781"
MISSING = object()


@dataclass
class Case:
    """A connection with one malformed field, and what the error must name and must not contain.

    `problem` is a fragment the message must contain, for rows where two problems of one field
    must be told apart.
    """

    conn_type: str
    field: str
    change: dict[str, Any]
    secret: str = SECRET
    fields_change: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    problem: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.conn_type}-{self.field}"


def _apply(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in change.items():
        if value is MISSING:
            result.pop(key, None)
        else:
            result[key] = value
    return result


CASES = [
    # oauth_m2m: the client secret is in the password field unless the row changes it.
    Case("oauth_m2m", "login", {}, fields_change={"login": MISSING}),
    Case("oauth_m2m", "password", {}, fields_change={"password": MISSING}),
    Case("oauth_m2m", "client_auth_method", {"client_auth_method": "client_secret_jwt"}),
    Case(
        "oauth_m2m",
        "token_url",
        {"token_url": "http://idp.example.com/token"},
        name="oauth-token_url-plain-http",
    ),
    Case("oauth_m2m", "token_url", {"token_url": MISSING}, name="oauth-token_url-missing"),
    Case("oauth_m2m", "issuer", {"issuer": "https://idp.example.com"}, name="oauth-issuer-and-token_url"),
    Case(
        "oauth_m2m",
        "issuer",
        {"token_url": MISSING, "issuer": "idp.example.com"},
        name="oauth-issuer-not-url",
    ),
    Case(
        "oauth_m2m",
        "private_key",
        {"client_auth_method": "private_key_jwt", "private_key": GARBAGE_KEY},
        secret=GARBAGE_KEY_SECRET,
        name="oauth-private_key-garbage",
    ),
    Case(
        "oauth_m2m",
        "private_key",
        {
            "client_auth_method": "private_key_jwt",
            "private_key": "{encrypted}",
            "private_key_passphrase": PASSPHRASE_SECRET,
        },
        secret=PASSPHRASE_SECRET,
        name="oauth-private_key-wrong-passphrase",
    ),
    Case(
        "oauth_m2m",
        "private_key",
        {"client_auth_method": "private_key_jwt", "private_key": "{small}"},
        name="oauth-private_key-too-small",
    ),
    Case(
        "oauth_m2m",
        "signing_algorithm",
        {"client_auth_method": "private_key_jwt", "private_key": "{plain}", "signing_algorithm": "HS256"},
    ),
    Case("oauth_m2m", "token_params", {"token_params": "{not json"}, name="oauth-token_params-not-json"),
    Case(
        "oauth_m2m",
        "token_params",
        {"token_params": {"client_secret": "x"}},
        name="oauth-token_params-reserved",
    ),
    Case("oauth_m2m", "resource", {"resource": "api-without-scheme"}),
    Case("oauth_m2m", "scope", {"scope": {"read": True}}),
    Case("oauth_m2m", "timeout", {"timeout": "fast"}),
    Case("oauth_m2m", "ca_bundle", {"ca_bundle": "/nonexistent/internal-ca.pem"}),
    Case("oauth_m2m", "extra", {}, fields_change={"extra": "{not json " + SECRET}),
    # bigquery_m2m: the secret is the service account key's private key.
    Case("bigquery_m2m", "key_json", {"key_json": MISSING}, name="bigquery-key_json-none-set"),
    Case("bigquery_m2m", "key_json", {"key_path": "/tmp/key.json"}, name="bigquery-key_json-two-set"),
    Case(
        "bigquery_m2m",
        "key_json",
        {"key_json": '{"private_key": "' + SECRET + '",'},
        name="bigquery-key_json-not-json",
    ),
    Case(
        "bigquery_m2m",
        "key_json",
        {"key_json": "{sa:type=authorized_user}"},
        name="bigquery-key_json-wrong-type",
    ),
    Case(
        "bigquery_m2m",
        "key_json",
        {"key_json": "{sa:drop=client_email}"},
        name="bigquery-key_json-missing-email",
    ),
    Case(
        "bigquery_m2m",
        "key_json",
        {"key_json": "{sa:private_key=garbage}"},
        secret=GARBAGE_KEY_SECRET,
        name="bigquery-key_json-garbage-key",
    ),
    Case("bigquery_m2m", "key_path", {"key_json": MISSING, "key_path": "/nonexistent/sa.json"}),
    Case(
        "bigquery_m2m",
        "credential_config",
        {"key_json": MISSING, "credential_config": {"type": "service_account", "private_key": SECRET}},
        name="bigquery-credential_config-wrong-type",
    ),
    Case(
        "bigquery_m2m",
        "credential_config",
        {"key_json": MISSING, "credential_config": '{"type": "external_account", ' + SECRET},
        name="bigquery-credential_config-not-json",
    ),
    Case("bigquery_m2m", "impersonate_service_account", {"impersonate_service_account": "etl-reader"}),
    Case("bigquery_m2m", "project_id", {"key_json": "{sa:drop=project_id}", "project_id": MISSING}),
    Case("bigquery_m2m", "api_url", {"api_url": "ftp://bigquery.example.com"}),
    Case("bigquery_m2m", "scopes", {"scopes": {"bigquery": True}}),
    Case("bigquery_m2m", "timeout", {"timeout": -5}),
    Case("bigquery_m2m", "ca_bundle", {"ca_bundle": "/nonexistent/internal-ca.pem"}),
    # snowflake_m2m: key_pair unless the row switches auth.
    Case("snowflake_m2m", "account", {"account": MISSING}),
    Case("snowflake_m2m", "login", {}, fields_change={"login": MISSING}),
    Case("snowflake_m2m", "auth", {"auth": "password"}),
    Case("snowflake_m2m", "private_key", {"private_key": MISSING}, name="snowflake-private_key-missing"),
    Case(
        "snowflake_m2m",
        "private_key",
        {"private_key": GARBAGE_KEY},
        secret=GARBAGE_KEY_SECRET,
        name="snowflake-private_key-garbage",
    ),
    Case(
        "snowflake_m2m",
        "private_key",
        {"private_key": "{encrypted}", "private_key_passphrase": PASSPHRASE_SECRET},
        secret=PASSPHRASE_SECRET,
        name="snowflake-private_key-wrong-passphrase",
    ),
    Case("snowflake_m2m", "port", {"port": "eighty"}),
    Case("snowflake_m2m", "protocol", {"protocol": "ftp"}),
    Case(
        "snowflake_m2m",
        "token_url",
        {"auth": "oauth_client_credentials", "client_id": "snow-client", "client_secret": SECRET},
        name="snowflake-token_url-missing",
    ),
    Case(
        "snowflake_m2m",
        "token_url",
        {
            "auth": "oauth_client_credentials",
            "token_url": "http://idp.example.com/token",
            "client_id": "c",
            "client_secret": SECRET,
        },
        name="snowflake-token_url-plain-http",
    ),
    Case(
        "snowflake_m2m",
        "client_secret",
        {"auth": "oauth_client_credentials", "token_url": "https://idp.example.com/token", "client_id": "c"},
    ),
    Case(
        "snowflake_m2m",
        "workload_identity_provider",
        {"auth": "workload_identity", "workload_identity_provider": "IBM"},
    ),
    Case(
        "snowflake_m2m",
        "scope",
        {
            "auth": "oauth_client_credentials",
            "token_url": "https://idp.example.com/token",
            "client_id": "c",
            "client_secret": SECRET,
            "scope": {"role": "ANALYST"},
        },
    ),
    # salesforce_m2m: client credentials unless the row switches to jwt_bearer.
    Case("salesforce_m2m", "flow", {"flow": MISSING}, name="salesforce-flow-missing"),
    Case("salesforce_m2m", "flow", {"flow": "password"}, name="salesforce-flow-unknown"),
    Case("salesforce_m2m", "host", {}, fields_change={"host": MISSING}, name="salesforce-host-missing"),
    Case(
        "salesforce_m2m",
        "host",
        {},
        fields_change={"host": "acme.my.salesforce.com"},
        name="salesforce-host-no-scheme",
    ),
    Case("salesforce_m2m", "login", {}, fields_change={"login": MISSING}),
    Case("salesforce_m2m", "password", {}, fields_change={"password": MISSING}),
    Case("salesforce_m2m", "username", {"flow": "jwt_bearer", "private_key": "{plain}"}),
    Case(
        "salesforce_m2m",
        "private_key",
        {"flow": "jwt_bearer", "username": "u@example.com"},
        name="salesforce-private_key-missing",
    ),
    Case(
        "salesforce_m2m",
        "private_key",
        {"flow": "jwt_bearer", "username": "u@example.com", "private_key": GARBAGE_KEY},
        secret=GARBAGE_KEY_SECRET,
        name="salesforce-private_key-garbage",
    ),
    Case(
        "salesforce_m2m",
        "private_key",
        {
            "flow": "jwt_bearer",
            "username": "u@example.com",
            "private_key": "{encrypted}",
            "private_key_passphrase": PASSPHRASE_SECRET,
        },
        secret=PASSPHRASE_SECRET,
        name="salesforce-private_key-wrong-passphrase",
    ),
    Case(
        "salesforce_m2m",
        "private_key",
        {"flow": "jwt_bearer", "username": "u@example.com", "private_key": "{small}"},
        name="salesforce-private_key-too-small",
    ),
    Case(
        "salesforce_m2m",
        "audience",
        {"flow": "jwt_bearer", "username": "u@example.com", "private_key": "{plain}", "audience": "login"},
    ),
    Case(
        "salesforce_m2m",
        "token_host",
        {
            "flow": "jwt_bearer",
            "username": "u@example.com",
            "private_key": "{plain}",
            "token_host": "http://login.example.com",
        },
    ),
    Case(
        "salesforce_m2m",
        "is_sandbox",
        {"flow": "jwt_bearer", "username": "u@example.com", "private_key": "{plain}", "is_sandbox": "maybe"},
    ),
    Case(
        "salesforce_m2m",
        "api_version",
        {"api_version": "latest"},
        name="salesforce-api_version-not-number",
        problem="not a version number",
    ),
    Case(
        "salesforce_m2m",
        "api_version",
        {"api_version": "40.0"},
        name="salesforce-api_version-too-old",
        problem="too old",
    ),
    Case("salesforce_m2m", "session_lifetime_seconds", {"session_lifetime_seconds": 5}),
]


@pytest.fixture
def keys(rsa_pem: str, encrypted_rsa_pem: str, small_rsa_pem: str) -> dict[str, str]:
    return {"{plain}": rsa_pem, "{encrypted}": encrypted_rsa_pem, "{small}": small_rsa_pem}


def _service_account(rsa_pem: str, instruction: str | None = None) -> str:
    info: dict[str, Any] = {
        "type": "service_account",
        "project_id": "bad-input-project",
        "private_key_id": "0123456789abcdef",
        "private_key": rsa_pem,
        "client_email": "etl@bad-input-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.example.com/token",
    }
    if instruction:
        action, _, argument = instruction.partition("=")
        if action == "type":
            info["type"] = argument
        elif action == "drop":
            info.pop(argument)
        elif action == "private_key":
            info["private_key"] = GARBAGE_KEY
    return json.dumps(info)


def _connection(case: Case, keys: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (standard fields, extra) of the connection the case describes."""
    rsa_pem = keys["{plain}"]
    if case.conn_type == "oauth_m2m":
        fields = {"login": "client-1", "password": SECRET}
        extra = {"token_url": "https://idp.example.com/token", "scope": "api.read"}
    elif case.conn_type == "bigquery_m2m":
        fields = {}
        extra = {"key_json": _service_account(rsa_pem), "project_id": "bad-input-project"}
    elif case.conn_type == "snowflake_m2m":
        fields = {"login": "SVC_USER", "password": SECRET}
        extra = {"account": "org-acct", "auth": "key_pair", "private_key": rsa_pem}
    else:
        fields = {"host": "https://acme.my.salesforce.com", "login": "3MVG9consumer", "password": SECRET}
        extra = {"flow": "client_credentials"}
    extra = _apply(extra, case.change)
    for name, value in list(extra.items()):
        if isinstance(value, str) and value in keys:
            extra[name] = keys[value]
        elif isinstance(value, str) and value.startswith("{sa:"):
            extra[name] = _service_account(rsa_pem, value[4:-1])
    fields = _apply(fields, case.fields_change)
    return fields, extra


READERS: dict[str, Callable[[str], Any]] = {
    "oauth_m2m": lambda conn_id: OAuthM2MHook(conn_id).token_provider(),
    "bigquery_m2m": lambda conn_id: BigQueryM2MHook(conn_id).settings,
    "snowflake_m2m": lambda conn_id: SnowflakeM2MHook(
        snowflake_m2m_conn_id=conn_id
    ).get_connection_parameters(),
    "salesforce_m2m": lambda conn_id: SalesforceM2MHook(conn_id).token_provider(),
}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_field_is_named_without_secret(
    case: Case, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = f"bad_{case.name.replace('-', '_')}"
    fields, extra = _connection(case, keys)
    value: dict[str, Any] = {"conn_type": case.conn_type, **fields}
    value["extra"] = extra if "extra" not in fields else fields["extra"]
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))

    with pytest.raises(ValueError) as raised:
        READERS[case.conn_type](conn_id)

    message = str(raised.value)
    assert repr(conn_id) in message
    assert repr(case.field) in message
    assert case.secret not in message
    assert SECRET not in message
    assert case.problem in message


def test_every_connection_type_has_rows() -> None:
    assert {case.conn_type for case in CASES} == set(READERS)
