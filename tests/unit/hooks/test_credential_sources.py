"""Credential sources that the sandbox does not serve: workload identity federation, impersonation,
and Snowflake workload identity. These check what the hooks build, without a network call."""

from __future__ import annotations

import json
import os

import pytest
from google.auth import identity_pool, impersonated_credentials
from google.oauth2 import service_account

from airflow_provider_m2m.hooks import snowflake as snowflake_module
from airflow_provider_m2m.hooks.bigquery import BigQueryM2MHook
from airflow_provider_m2m.hooks.snowflake import PLATFORM_DETECTION_VARIABLE, SnowflakeM2MHook

EXTERNAL_ACCOUNT = {
    "type": "external_account",
    "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/ci",
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "token_url": "https://sts.googleapis.com/v1/token",
    "credential_source": {"file": "/var/run/secrets/tokens/gcp-ksa/token"},
}


def _service_account(rsa_pem: str) -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "key-project",
            "private_key": rsa_pem,
            "client_email": "etl@key-project.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


@pytest.mark.parametrize("form", ["object", "text", "path"])
def test_external_account_config_forms(set_connection, tmp_path, form: str) -> None:
    if form == "object":
        config: object = EXTERNAL_ACCOUNT
    elif form == "text":
        config = json.dumps(EXTERNAL_ACCOUNT)
    else:
        path = tmp_path / "wif.json"
        path.write_text(json.dumps(EXTERNAL_ACCOUNT))
        config = str(path)
    set_connection("bq_wif", "bigquery_m2m", extra={"credential_config": config, "project_id": "wif-project"})

    settings = BigQueryM2MHook("bq_wif").settings

    assert isinstance(settings.credentials, identity_pool.Credentials)
    assert settings.project_id == "wif-project"


def test_impersonation_wraps_source(set_connection, rsa_pem: str) -> None:
    set_connection(
        "bq_impersonate",
        "bigquery_m2m",
        extra={
            "key_json": _service_account(rsa_pem),
            "impersonate_service_account": "reader@other.iam.gserviceaccount.com",
        },
    )

    settings = BigQueryM2MHook("bq_impersonate").settings

    assert isinstance(settings.credentials, impersonated_credentials.Credentials)
    assert settings.credentials._target_principal == "reader@other.iam.gserviceaccount.com"
    assert settings.credentials._target_scopes == ["https://www.googleapis.com/auth/bigquery"]
    assert settings.project_id == "key-project"


def test_rotated_key_changes_cache_key(
    set_connection, rsa_pem: str, encrypted_rsa_pem: str, small_rsa_pem: str
) -> None:
    set_connection("bq_key_a", "bigquery_m2m", extra={"key_json": _service_account(rsa_pem)})
    set_connection("bq_key_b", "bigquery_m2m", extra={"key_json": _service_account(small_rsa_pem)})

    first = BigQueryM2MHook("bq_key_a").token_provider().cache_key
    second = BigQueryM2MHook("bq_key_b").token_provider().cache_key

    assert first != second
    assert isinstance(BigQueryM2MHook("bq_key_a").settings.credentials, service_account.Credentials)


def test_snowflake_workload_identity_keeps_detection(set_connection, monkeypatch: pytest.MonkeyPatch) -> None:
    from snowflake.connector.wif_util import AttestationProvider

    monkeypatch.delenv(PLATFORM_DETECTION_VARIABLE, raising=False)
    monkeypatch.setattr(snowflake_module, "_platform_detection_set_here", False)
    set_connection(
        "sf_wif",
        "snowflake_m2m",
        login="SVC",
        extra={"account": "org-acct", "auth": "workload_identity", "workload_identity_provider": "AWS"},
    )

    params = SnowflakeM2MHook(snowflake_m2m_conn_id="sf_wif").get_connection_parameters()
    snowflake_module._set_platform_detection(enabled=False)
    turned_off = os.environ.get(PLATFORM_DETECTION_VARIABLE)
    snowflake_module._set_platform_detection(enabled=True)

    assert params["authenticator"] == "WORKLOAD_IDENTITY"
    assert params["workload_identity_provider"] is AttestationProvider.AWS
    assert "private_key" not in params
    assert turned_off == "true"
    assert PLATFORM_DETECTION_VARIABLE not in os.environ


def test_platform_detection_choice_of_deployment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLATFORM_DETECTION_VARIABLE, "false")
    monkeypatch.setattr(snowflake_module, "_platform_detection_set_here", False)

    snowflake_module._set_platform_detection(enabled=False)
    snowflake_module._set_platform_detection(enabled=True)

    assert os.environ[PLATFORM_DETECTION_VARIABLE] == "false"
