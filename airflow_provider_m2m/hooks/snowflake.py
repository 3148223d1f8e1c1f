"""Snowflake hook: key-pair JWT, OAuth client credentials or workload identity, as a DbApiHook.

Being a `DbApiHook`, it works with `SQLExecuteQueryOperator` and the rest of common-sql.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from airflow.providers.common.sql.hooks.sql import DbApiHook

from airflow_provider_m2m.auth import AccessToken, ClientCredentialsGrant, ClientSecretBasic, TokenProvider
from airflow_provider_m2m.hooks._connection import (
    ConnectionFields,
    M2MConnectionMixin,
    argument_error,
    build_token_endpoint,
    describe_token,
    node_token_cache,
    register_airflow_hooks,
)

log = logging.getLogger(__name__)

AUTH_METHODS = ("key_pair", "oauth_client_credentials", "workload_identity")
WORKLOAD_IDENTITY_PROVIDERS = ("AWS", "AZURE", "GCP", "OIDC")

# The connector probes cloud metadata addresses (AWS, Azure, GCP) at every login to report the
# platform, unless this variable is true. Only workload identity needs those addresses.
PLATFORM_DETECTION_VARIABLE = "SNOWFLAKE_DISABLE_PLATFORM_DETECTION"

_platform_detection_lock = threading.Lock()
_platform_detection_set_here = False


def _set_platform_detection(enabled: bool) -> None:
    """Turn the connector's cloud platform detection off, or back on for workload identity.

    Detection is turned on only by removing the value this hook set, so a deployment that
    sets the variable itself keeps its choice.
    """
    global _platform_detection_set_here
    with _platform_detection_lock:
        if not enabled:
            if PLATFORM_DETECTION_VARIABLE not in os.environ:
                os.environ[PLATFORM_DETECTION_VARIABLE] = "true"
                _platform_detection_set_here = True
        elif _platform_detection_set_here:
            os.environ.pop(PLATFORM_DETECTION_VARIABLE, None)
            _platform_detection_set_here = False


class SnowflakeM2MHook(M2MConnectionMixin, DbApiHook):
    """Snowflake as a service user: key-pair JWT, an OAuth token from client credentials, or workload identity.

    :param snowflake_m2m_conn_id: id of a `snowflake_m2m` connection.
    """

    conn_name_attr = "snowflake_m2m_conn_id"
    default_conn_name = "snowflake_m2m_default"
    conn_type = "snowflake_m2m"
    hook_name = "Snowflake (key pair or OAuth, M2M)"
    supports_autocommit = True
    # host, port and schema are extra fields of this connection type, like the other settings.
    standard_fields = ("login",)
    _test_connection_sql = "select 1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register_airflow_hooks()
        self._provider: TokenProvider | None = None

    @property
    def auth_method(self) -> str:
        method = self.connection_fields().choice("auth", AUTH_METHODS, default="key_pair")
        assert method is not None
        return method

    def token_provider(self) -> TokenProvider:
        """Return the token provider of an oauth_client_credentials connection, built on first use."""
        if self._provider is None:
            fields = self.connection_fields()
            if self.auth_method != "oauth_client_credentials":
                raise fields.error(
                    "auth", f"is {self.auth_method}; only oauth_client_credentials uses an OAuth token"
                )
            token_url = fields.url(
                "token_url", required=True, hint="set the token endpoint of the OAuth server"
            )
            client_id = fields.text("client_id", required=True, hint="set the OAuth client id")
            client_secret = fields.secret("client_secret", required=True, hint="set the OAuth client secret")
            assert token_url is not None
            assert client_id is not None
            assert client_secret is not None
            scope = fields.space_separated("scope")
            try:
                grant = ClientCredentialsGrant(
                    token_url=token_url,
                    client_auth=ClientSecretBasic(client_id, client_secret),
                    scope=scope,
                )
            except ValueError as err:
                raise argument_error(
                    fields, err, {"client_id": "client_id", "client_secret": "client_secret"}
                ) from None
            self._provider = TokenProvider(
                grant,
                connection_id=fields.connection_id,
                endpoint=build_token_endpoint(fields),
                cache=node_token_cache(),
            )
        return self._provider

    def get_token(self, force: bool = False) -> AccessToken:
        """Return the OAuth access token used at login (oauth_client_credentials only)."""
        return self.token_provider().get_token(force=force)

    def _connection_parameters(self, fields: ConnectionFields) -> dict[str, Any]:
        account = fields.text(
            "account", required=True, hint="set the account identifier, <orgname>-<account_name>"
        )
        user = fields.text("login", required=True, hint="set the Snowflake user of the service")
        params: dict[str, Any] = {
            "account": account,
            "user": user,
            "application": "airflow_provider_m2m",
            "login_timeout": int(fields.timeouts().read),
            "network_timeout": int(fields.timeouts().read),
        }
        for name in ("warehouse", "database", "schema", "role"):
            value = fields.text(name)
            if value is not None:
                params[name] = value
        # host, port and protocol only for a non-standard endpoint, such as a local emulator.
        host = fields.text("host")
        if host is not None:
            params["host"] = host
        port = fields.integer("port", minimum=1)
        if port is not None:
            params["port"] = port
        protocol = fields.choice("protocol", ("https", "http"))
        if protocol is not None:
            params["protocol"] = protocol
        return params

    def get_connection_parameters(self) -> dict[str, Any]:
        """Return the keyword arguments for `snowflake.connector.connect`, credentials included.

        For oauth_client_credentials this obtains a token (from the cache while it is fresh).
        """
        fields = self.connection_fields()
        params = self._connection_parameters(fields)
        method = self.auth_method
        if method == "key_pair":
            # The connector's private_key parameter takes the key object; it signs the login JWT itself.
            params["private_key"] = fields.private_key(
                "private_key",
                "private_key_passphrase",
                required=True,
                hint="set the private key whose public key is set on the user (ALTER USER ... SET RSA_PUBLIC_KEY)",
            )
            params["authenticator"] = "SNOWFLAKE_JWT"
        elif method == "oauth_client_credentials":
            params["authenticator"] = "oauth"
            params["token"] = self.get_token().access_token
        else:
            from snowflake.connector.wif_util import AttestationProvider

            provider = fields.choice(
                "workload_identity_provider",
                WORKLOAD_IDENTITY_PROVIDERS,
                required=True,
                hint="set the cloud platform",
            )
            params["authenticator"] = "WORKLOAD_IDENTITY"
            params["workload_identity_provider"] = AttestationProvider.from_string(provider or "")
        return params

    def get_conn(self) -> Any:
        """Open a Snowflake connection with the connection's credentials."""
        import snowflake.connector

        params = self.get_connection_parameters()
        _set_platform_detection(enabled=self.auth_method == "workload_identity")
        log.info(
            "Connecting to Snowflake account %s as %s with %s (connection %r)",
            params["account"],
            params["user"],
            self.auth_method,
            self.snowflake_m2m_conn_id,
        )
        return snowflake.connector.connect(**params)

    def get_uri(self) -> str:
        """Raise: this hook connects through the Snowflake connector and has no SQLAlchemy URI.

        Airflow's default would put the connection, private key included, into a URI.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no SQLAlchemy URI; use get_conn(), run() or get_records()"
        )

    def set_autocommit(self, conn: Any, autocommit: bool) -> None:
        conn.autocommit(autocommit)
        conn.autocommit_mode = autocommit

    def get_autocommit(self, conn: Any) -> bool:
        return bool(getattr(conn, "autocommit_mode", False))

    def test_connection(self) -> tuple[bool, str]:
        """Log in, run `select 1`, and for OAuth report the granted scope and token lifetime."""
        try:
            detail = ""
            if self.auth_method == "oauth_client_credentials":
                detail = f"; {describe_token(self.get_token(force=True))}"
            if self.get_first(self._test_connection_sql) is None:
                return False, "select 1 returned no row"
        except Exception as err:  # the Test button shows any failure as text
            return False, str(err)
        return True, f"Logged in to Snowflake with {self.auth_method}{detail}"
