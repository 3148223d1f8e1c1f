"""Provider registration for Airflow: package metadata and the four connection forms.

Airflow 3.2+ builds the connection form from `conn-fields` (stored in `Connection.extra`) and
`ui-field-behaviour` (hides and relabels the standard fields) without importing the hook, and skips
a hook's deprecated wtforms methods when these keys are present.

Checked in Airflow 3.3.2's UI: `placeholders` reach the standard fields only (host, schema, login,
password and port), so an example for an extra field goes into its description. A placeholder key
named like a standard field, such as "schema", lands on that standard field even when a conn-field
has the same name. An extra field's schema `examples` become suggestions under a text input, and a
schema type without "null" marks the field required and disables Save until it has a value.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_m2m import __version__

PACKAGE_NAME = "airflow-provider-m2m"

# Salesforce's login hosts for production orgs and for sandbox orgs.
SALESFORCE_LOGIN_URL = "https://login.salesforce.com"
SALESFORCE_TEST_LOGIN_URL = "https://test.salesforce.com"

_OPTIONAL_STRING = ["string", "null"]
_TIMEOUT_DESCRIPTION = (
    "Seconds to wait for a connection and for each read, on every token and API request. Default 30."
)
_CA_BUNDLE_DESCRIPTION = (
    "Path to a PEM file of CA certificates that TLS verification trusts instead of the system store, "
    "for example /etc/ssl/certs/internal-ca.pem. Leave empty for public endpoints."
)
_PRIVATE_KEY_DESCRIPTION = (
    "PKCS#8 or PKCS#1 private key: pasted PEM (line breaks may be lost or written as \\n), "
    "base64 of a PEM, or a path to a PEM file on the worker."
)


def _text(
    label: str,
    description: str,
    *,
    default: Any = None,
    format: str | None = None,
    examples: list[str] | None = None,
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _OPTIONAL_STRING}
    if default is not None:
        schema["default"] = default
    if format is not None:
        schema["format"] = format
    if examples is not None:
        # Offered as suggestions under the input; the user can still type any other value.
        schema["examples"] = examples
    return {"label": label, "description": description, "schema": schema}


def _secret(label: str, description: str) -> dict[str, Any]:
    # Format "password" makes Airflow treat the field as sensitive: masked in the form and in API output.
    return _text(label, description, format="password")


def _choice(
    label: str, description: str, values: list[str], default: str | None = None, *, required: bool = False
) -> dict[str, Any]:
    # A type without "null" makes the form mark the field required and keep Save disabled until a
    # value is chosen.
    schema: dict[str, Any] = {"type": "string" if required else _OPTIONAL_STRING, "enum": values}
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


def _number(
    label: str, description: str, *, kind: str = "number", default: Any = None, minimum: float = 0
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"], "minimum": minimum}
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


def _oauth_m2m() -> dict[str, Any]:
    return {
        "hook-class-name": "airflow_provider_m2m.hooks.oauth.OAuthM2MHook",
        "hook-name": "OAuth 2.0 client credentials (M2M)",
        "connection-type": "oauth_m2m",
        "conn-fields": {
            "token_url": _text(
                "Token URL",
                "Token endpoint of the authorization server, for example "
                "https://login.example.com/oauth2/v1/token. Set this or Issuer, not both.",
                format="url",
            ),
            "issuer": _text(
                "Issuer",
                "Issuer URL, for example https://login.example.com/oauth2/default. The token endpoint is "
                "read from its /.well-known/openid-configuration or oauth-authorization-server metadata. "
                "Set this or Token URL, not both.",
                format="url",
            ),
            "client_auth_method": _choice(
                "Client authentication method",
                "How the client proves itself at the token endpoint: HTTP Basic with the client secret, "
                "the secret in the form body, or a JWT signed with the private key below.",
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
                default="client_secret_basic",
            ),
            "secondary_client_secret": _secret(
                "Secondary client secret",
                "Tried once when the server rejects the client secret as invalid_client, so a secret "
                "can be rotated without downtime.",
            ),
            "private_key": _secret("Private key (private_key_jwt)", _PRIVATE_KEY_DESCRIPTION),
            "private_key_passphrase": _secret(
                "Private key passphrase",
                "Passphrase of an encrypted private key; empty for an unencrypted key.",
            ),
            # Public data: not marked sensitive, so the form shows it and the API returns it unmasked.
            "certificate": _text(
                "Certificate (private_key_jwt)",
                "X.509 certificate of the private key, for servers that find the key by its thumbprint "
                "(Microsoft Entra ID): the client assertion then carries x5t#S256 and x5t headers. "
                "Pasted PEM, base64 of a PEM or DER certificate, or a path to a certificate file on the "
                "worker, for example /opt/airflow/secrets/orders-client.crt.",
            ),
            "key_id": _text(
                "Key ID (kid)",
                "Sent as the kid header of the client assertion when the server needs it, for example key-2026-01.",
            ),
            "signing_algorithm": _choice(
                "Signing algorithm",
                "Algorithm of the client assertion: RS256 or PS256 for an RSA key, ES256 for a P-256 EC key.",
                ["RS256", "PS256", "ES256"],
                default="RS256",
            ),
            "assertion_audience": _text(
                "Assertion audience (private_key_jwt)",
                "aud claim of the client assertion, when the server expects a value other than the token "
                "URL. For Auth0 set the tenant URL with its trailing slash, for example "
                "https://example-tenant.us.auth0.com/. Default: the token URL.",
            ),
            "scope": _text(
                "Scope",
                "Space-separated scopes to request, for example: api.read api.write. Leave empty to get "
                "the client's default scopes.",
            ),
            "audience": _text(
                "Audience",
                "audience parameter of the token request, for servers that need one (Auth0), for example "
                "https://api.example.com.",
            ),
            "resource": _text(
                "Resource",
                "resource parameter (RFC 8707), for servers that need one, for example https://api.example.com.",
            ),
            "base_url": _text(
                "API base URL",
                "Base URL that run() and get_session() resolve relative endpoints against, for example "
                "https://api.example.com/v1.",
                format="url",
            ),
            "token_params": {
                "label": "Extra token parameters",
                "description": "JSON object of additional form parameters sent with every token request, "
                'for example {"tenant": "example"}.',
                "schema": {"type": ["object", "null"]},
            },
            "ca_bundle": _text("CA bundle", _CA_BUNDLE_DESCRIPTION),
            "timeout": _number("Timeout (seconds)", _TIMEOUT_DESCRIPTION, default=30),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["host", "port", "schema", "extra"],
            "relabeling": {"login": "Client ID", "password": "Client secret"},
            "placeholders": {
                "login": "0oa1b2c3d4e5f6g7h8i9",
                "password": "client secret; empty for private_key_jwt",
            },
        },
    }


def _bigquery_m2m() -> dict[str, Any]:
    return {
        "hook-class-name": "airflow_provider_m2m.hooks.bigquery.BigQueryM2MHook",
        "hook-name": "Google BigQuery (service account, M2M)",
        "connection-type": "bigquery_m2m",
        "conn-fields": {
            "key_json": _secret(
                "Service account key JSON",
                "Contents of the service account key file, a JSON object with type service_account, "
                "project_id, private_key and client_email. Set exactly one of this, Key file path or "
                "Credential configuration.",
            ),
            "key_path": _text(
                "Key file path",
                "Path to the service account key file on the worker, for example "
                "/opt/airflow/secrets/bigquery-sa.json.",
            ),
            "credential_config": {
                "label": "Credential configuration (workload identity federation)",
                "description": "JSON object with type external_account, audience and subject_token_type, "
                "as written by `gcloud iam workload-identity-pools create-cred-config`, or a path to that file.",
                "schema": {"type": ["object", "string", "null"]},
            },
            "impersonate_service_account": _text(
                "Impersonate service account",
                "Email of a service account to act as, for example "
                "etl-reader@my-project.iam.gserviceaccount.com. The credentials above need "
                "roles/iam.serviceAccountTokenCreator on it.",
            ),
            "project_id": _text(
                "Project ID", "Project that runs and bills the query jobs; default the key's project_id."
            ),
            "location": _text(
                "Location",
                "Location of the query jobs: a multi-region (US, EU) or a region such as europe-west2.",
                examples=["US", "EU"],
            ),
            "scopes": _text(
                "OAuth scopes",
                "Comma- or space-separated scopes; default https://www.googleapis.com/auth/bigquery.",
            ),
            "api_url": _text(
                "API URL",
                "BigQuery REST API root; change only for an emulator or a private endpoint.",
                default="https://bigquery.googleapis.com/bigquery/v2",
                format="url",
            ),
            "ca_bundle": _text("CA bundle", _CA_BUNDLE_DESCRIPTION),
            "timeout": _number("Timeout (seconds)", _TIMEOUT_DESCRIPTION, default=30),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["host", "port", "login", "password", "schema", "extra"],
            "relabeling": {},
            "placeholders": {},
        },
    }


def _snowflake_m2m() -> dict[str, Any]:
    return {
        "hook-class-name": "airflow_provider_m2m.hooks.snowflake.SnowflakeM2MHook",
        "hook-name": "Snowflake (key pair or OAuth, M2M)",
        "connection-type": "snowflake_m2m",
        "conn-fields": {
            "account": _text(
                "Account",
                "Account identifier, <orgname>-<account_name> (for example myorg-myaccount) or the account locator.",
            ),
            "auth": _choice(
                "Authentication",
                "key_pair: the user's RSA key signs a JWT. oauth_client_credentials: a token from the "
                "OAuth server below. workload_identity: the cloud platform's identity of the worker.",
                ["key_pair", "oauth_client_credentials", "workload_identity"],
                default="key_pair",
            ),
            "private_key": _secret("Private key (key_pair)", _PRIVATE_KEY_DESCRIPTION),
            "private_key_passphrase": _secret(
                "Private key passphrase",
                "Passphrase of an encrypted private key; empty for an unencrypted key.",
            ),
            "token_url": _text(
                "Token URL (oauth_client_credentials)",
                "Token endpoint of the external OAuth server, for example https://login.example.com/oauth2/v1/token.",
                format="url",
            ),
            "client_id": _text("Client ID (oauth_client_credentials)", "OAuth client ID."),
            "client_secret": _secret("Client secret (oauth_client_credentials)", "OAuth client secret."),
            "scope": _text(
                "Scope (oauth_client_credentials)",
                "Scopes to request, such as session:role:ANALYST for a Snowflake external OAuth integration.",
            ),
            "workload_identity_provider": _choice(
                "Workload identity provider (workload_identity)",
                "Cloud platform whose identity the worker presents.",
                ["AWS", "AZURE", "GCP", "OIDC"],
            ),
            "warehouse": _text("Warehouse", "Virtual warehouse for queries, for example COMPUTE_WH."),
            "database": _text("Database", "Default database of the session, for example ANALYTICS."),
            "schema": _text("Schema", "Default schema of the session, for example PUBLIC."),
            "role": _text("Role", "Role of the session, for example ANALYST. Default: the user's default role."),
            "host": _text(
                "Host", "Only for a non-standard endpoint; default <account>.snowflakecomputing.com."
            ),
            "port": _number(
                "Port", "Only for a non-standard endpoint; default 443.", kind="integer", minimum=1
            ),
            "protocol": _choice(
                "Protocol", "Only for a non-standard endpoint; default https.", ["https", "http"]
            ),
            "ca_bundle": _text("CA bundle", _CA_BUNDLE_DESCRIPTION),
            "timeout": _number("Timeout (seconds)", _TIMEOUT_DESCRIPTION, default=30),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["host", "port", "password", "schema", "extra"],
            "relabeling": {"login": "User"},
            "placeholders": {"login": "ETL_SERVICE_USER"},
        },
    }


def _salesforce_m2m() -> dict[str, Any]:
    return {
        "hook-class-name": "airflow_provider_m2m.hooks.salesforce.SalesforceM2MHook",
        "hook-name": "Salesforce (client credentials or JWT bearer, M2M)",
        "connection-type": "salesforce_m2m",
        "conn-fields": {
            # Required and without a default: the hook never guesses the flow from the other fields.
            "flow": _choice(
                "OAuth flow",
                "client_credentials: consumer key and secret, run-as user set in the connected app. "
                "jwt_bearer: consumer key, username and the private key of the app's certificate.",
                ["client_credentials", "jwt_bearer"],
                required=True,
            ),
            "username": _text(
                "Username (jwt_bearer)",
                "Salesforce username the JWT bearer flow logs in as, for example integration@mycompany.com.",
            ),
            "private_key": _secret("Private key (jwt_bearer)", _PRIVATE_KEY_DESCRIPTION),
            "private_key_passphrase": _secret(
                "Private key passphrase",
                "Passphrase of an encrypted private key; empty for an unencrypted key.",
            ),
            "is_sandbox": {
                "label": "Sandbox org (jwt_bearer)",
                "description": "Use https://test.salesforce.com as the assertion audience instead of "
                "https://login.salesforce.com.",
                "schema": {"type": ["boolean", "null"], "default": False},
            },
            "audience": _text(
                "Assertion audience (jwt_bearer)",
                "Overrides the audience that Sandbox org selects.",
                format="url",
                examples=[SALESFORCE_LOGIN_URL, SALESFORCE_TEST_LOGIN_URL],
            ),
            "token_host": _text(
                "Token host (jwt_bearer)",
                "Where the JWT bearer grant is posted; default the My Domain URL.",
                format="url",
                examples=[SALESFORCE_LOGIN_URL, SALESFORCE_TEST_LOGIN_URL],
            ),
            "api_version": _text("API version", "Salesforce REST API version.", default="62.0"),
            "session_lifetime_seconds": _number(
                "Session lifetime (seconds)",
                "Session timeout of the org (Setup > Session Settings). Salesforce's token response has no "
                "expires_in, so the token is renewed ahead of this.",
                kind="integer",
                default=7200,
                minimum=60,
            ),
            "ca_bundle": _text("CA bundle", _CA_BUNDLE_DESCRIPTION),
            "timeout": _number("Timeout (seconds)", _TIMEOUT_DESCRIPTION, default=30),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["port", "schema", "extra"],
            "relabeling": {"host": "My Domain URL", "login": "Consumer key", "password": "Consumer secret"},
            "placeholders": {
                "host": "https://mycompany.my.salesforce.com",
                "login": "3MVG9... (connected app consumer key)",
                "password": "consumer secret; empty for jwt_bearer",
            },
        },
    }


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata that Airflow's providers manager reads from the entry point."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Machine-to-machine auth (M2M)",
        "description": "OAuth 2.0 client credentials, JWT bearer and service-account keys for "
        "BigQuery, Snowflake, Salesforce and any OAuth-protected API, with the token lifecycle "
        "handled by the provider.",
        "versions": [__version__],
        "hooks": [
            {
                "integration-name": "Machine-to-machine auth (M2M)",
                "python-modules": [
                    "airflow_provider_m2m.hooks.oauth",
                    "airflow_provider_m2m.hooks.bigquery",
                    "airflow_provider_m2m.hooks.snowflake",
                    "airflow_provider_m2m.hooks.salesforce",
                ],
            }
        ],
        "connection-types": [_oauth_m2m(), _bigquery_m2m(), _snowflake_m2m(), _salesforce_m2m()],
    }
