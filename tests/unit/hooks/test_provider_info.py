"""Provider registration: schema-valid provider info and the connection forms Airflow builds from it."""

from __future__ import annotations

import json
from pathlib import Path

import airflow
import jsonschema
import pytest
from airflow.providers_manager import ProvidersManager
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

from airflow_provider_m2m.get_provider_info import get_provider_info

CONN_TYPES = ["oauth_m2m", "bigquery_m2m", "snowflake_m2m", "salesforce_m2m"]
# Placeholder keys that Airflow 3.3.2 gives to a standard field (providers_manager's conn_attrs,
# without "extra"). Its UI shows no placeholder on an extra field.
STANDARD_PLACEHOLDER_FIELDS = {"host", "schema", "login", "password", "port"}


def _connection_type(conn_type: str) -> dict:
    return next(
        item for item in get_provider_info()["connection-types"] if item["connection-type"] == conn_type
    )


def test_matches_airflow_runtime_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())

    jsonschema.validate(get_provider_info(), schema)


def test_connection_types_match_yaml_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider.yaml.schema.json").read_text())
    connection_schema = schema["properties"]["connection-types"]

    jsonschema.validate(get_provider_info()["connection-types"], connection_schema)


def test_every_field_has_label_and_description() -> None:
    for connection_type in get_provider_info()["connection-types"]:
        for name, definition in connection_type["conn-fields"].items():
            assert definition["label"], name
            assert definition.get("description"), name


def test_secret_fields_are_sensitive() -> None:
    secret_names = {
        "private_key",
        "private_key_passphrase",
        "secondary_client_secret",
        "client_secret",
        "key_json",
    }
    for connection_type in get_provider_info()["connection-types"]:
        for name, definition in connection_type["conn-fields"].items():
            if name in secret_names:
                assert definition["schema"].get("format") == "password", (
                    connection_type["connection-type"],
                    name,
                )


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_providers_manager_loads_form(conn_type: str) -> None:
    manager = ProvidersManager()

    behaviour = manager.field_behaviours[conn_type]
    widgets = [name for name in manager.connection_form_widgets if name.startswith(f"extra__{conn_type}__")]
    hook = ProvidersManagerTaskRuntime().hooks[conn_type]

    assert "extra" in behaviour["hidden_fields"]
    assert widgets
    assert all(name.startswith(f"extra__{conn_type}__") for name in behaviour["placeholders"] if "__" in name)
    assert hook is not None
    assert hook.hook_class_name.startswith("airflow_provider_m2m.hooks.")


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_placeholders_only_for_shown_standard_fields(conn_type: str) -> None:
    connection_type = _connection_type(conn_type)
    behaviour = connection_type["ui-field-behaviour"]
    hidden = set(behaviour["hidden-fields"])

    for name in behaviour["placeholders"]:
        assert name in STANDARD_PLACEHOLDER_FIELDS, f"{conn_type}: placeholder {name!r} is not a standard field"
        assert name not in hidden, f"{conn_type}: placeholder for hidden standard field {name!r}"


def test_snowflake_schema_example_in_description() -> None:
    schema_field = _connection_type("snowflake_m2m")["conn-fields"]["schema"]

    assert "PUBLIC" in schema_field["description"]


def test_salesforce_flow_required_without_default() -> None:
    schema = _connection_type("salesforce_m2m")["conn-fields"]["flow"]["schema"]

    assert schema["type"] == "string"
    assert schema["enum"] == ["client_credentials", "jwt_bearer"]
    assert "default" not in schema


def test_examples_only_on_text_fields() -> None:
    for connection_type in get_provider_info()["connection-types"]:
        for name, definition in connection_type["conn-fields"].items():
            schema = definition["schema"]
            if "examples" not in schema:
                continue
            label = (connection_type["connection-type"], name)
            assert "enum" not in schema, label
            assert schema["type"] == ["string", "null"], label
            assert all(isinstance(example, str) and example for example in schema["examples"]), label


def test_oauth_certificate_field_not_sensitive() -> None:
    oauth = next(
        info for info in get_provider_info()["connection-types"] if info["connection-type"] == "oauth_m2m"
    )
    fields = oauth["conn-fields"]

    assert "format" not in fields["certificate"]["schema"]
    assert fields["private_key"]["schema"]["format"] == "password"
    assert "format" not in fields["assertion_audience"]["schema"]
    assert "PS256" in fields["signing_algorithm"]["schema"]["enum"]
