"""Generic OAuth 2.0 client credentials hook (RFC 6749 section 4.4) for any token-protected HTTP API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import requests
from airflow.sdk import BaseHook

from airflow_provider_m2m.auth import (
    AccessToken,
    BearerAuth,
    ClientCredentialsGrant,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    TokenProvider,
    discover_token_endpoint,
)
from airflow_provider_m2m.auth.client_auth import SUPPORTED_ALGORITHMS, load_certificate
from airflow_provider_m2m.auth.endpoint import safe_url
from airflow_provider_m2m.auth.errors import KeyLoadError
from airflow_provider_m2m.hooks._connection import (
    ConnectionFieldError,
    ConnectionFields,
    M2MConnectionMixin,
    Timeouts,
    TimeoutSession,
    argument_error,
    build_token_endpoint,
    describe_token,
    node_token_cache,
    register_airflow_hooks,
)

log = logging.getLogger(__name__)

CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
# Fields that only private_key_jwt reads. Any other method ignores them and logs a warning.
PRIVATE_KEY_JWT_FIELDS = ("private_key", "certificate", "assertion_audience")
# Connection fields of the PrivateKeyJwt arguments that ARGUMENT_FIELDS does not name.
_ARGUMENT_FIELDS = {"certificate": "certificate", "assertion_audience": "assertion_audience"}


class BaseUrlSession(TimeoutSession):
    """A session that resolves relative URLs against the API base URL of the connection."""

    def __init__(self, timeouts: Timeouts, verify: bool | str, base_url: str | None) -> None:
        super().__init__(timeouts, verify)
        self.base_url = base_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if self.base_url and "://" not in url:
            url = urljoin(self.base_url + "/", url.lstrip("/"))
        return super().request(method, url, *args, **kwargs)


class OAuthM2MHook(M2MConnectionMixin, BaseHook):
    """Calls an HTTP API with access tokens from the OAuth 2.0 client credentials grant.

    The client authenticates with client_secret_basic, client_secret_post or private_key_jwt
    (RFC 6749 section 2.3, RFC 7523 section 2.2). The token endpoint is the `token_url` field or
    is discovered from `issuer` (RFC 8414, OpenID Connect Discovery).

    :param oauth_m2m_conn_id: id of an `oauth_m2m` connection.
    """

    conn_name_attr = "oauth_m2m_conn_id"
    default_conn_name = "oauth_m2m_default"
    conn_type = "oauth_m2m"
    hook_name = "OAuth 2.0 client credentials (M2M)"
    standard_fields = ("login", "password")

    def __init__(self, oauth_m2m_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        register_airflow_hooks()
        self.oauth_m2m_conn_id = oauth_m2m_conn_id
        self._provider: TokenProvider | None = None
        self._session: BaseUrlSession | None = None

    def _client_auth(self, fields: ConnectionFields, method: str, secret_field: str) -> Any:
        client_id = fields.text("login", required=True, hint="set it to the client id")
        assert client_id is not None
        if method == "private_key_jwt":
            private_key = fields.private_key(
                "private_key",
                "private_key_passphrase",
                required=True,
                hint="private_key_jwt signs the client assertion with it",
            )
            algorithm = fields.choice("signing_algorithm", SUPPORTED_ALGORITHMS, default="RS256")
            certificate_text = fields.text("certificate")
            return PrivateKeyJwt(
                client_id,
                private_key,
                key_id=fields.text("key_id"),
                algorithm=algorithm or "RS256",
                certificate=load_certificate(certificate_text) if certificate_text else None,
                # Read as text, not as a URL field, because that strips the trailing slash Auth0 needs.
                assertion_audience=fields.text("assertion_audience"),
            )
        secret = fields.secret(secret_field, required=True, hint=f"{method} sends the client secret")
        assert secret is not None
        if method == "client_secret_post":
            return ClientSecretPost(client_id, secret)
        return ClientSecretBasic(client_id, secret)

    def _token_url(self, fields: ConnectionFields) -> str:
        token_url = fields.url("token_url")
        issuer = fields.url("issuer")
        if token_url and issuer:
            raise fields.error("issuer", "is set together with token_url; set one of them")
        if token_url:
            return token_url
        if not issuer:
            raise fields.error("token_url", "is missing; set token_url, or issuer to discover it")
        # RFC 8414 section 3: the token endpoint is read from the issuer's metadata document.
        return discover_token_endpoint(issuer, build_token_endpoint(fields))

    def _grant(self, fields: ConnectionFields, token_url: str, client_auth: Any) -> ClientCredentialsGrant:
        token_params = fields.json_object("token_params") or {}
        extra_params = {
            str(name): value if isinstance(value, str) else str(value) for name, value in token_params.items()
        }
        resource = fields.raw("resource")
        if isinstance(resource, str):
            resource = resource.split()
        return ClientCredentialsGrant(
            token_url=token_url,
            client_auth=client_auth,
            scope=fields.space_separated("scope"),
            audience=fields.text("audience"),
            resource=resource,
            extra_params=extra_params,
        )

    def token_provider(self) -> TokenProvider:
        """Return the connection's token provider, built on first use.

        Building it sends no token request; with `issuer` set it fetches the issuer's metadata.
        """
        if self._provider is not None:
            return self._provider
        fields = self.connection_fields()
        method = fields.choice("client_auth_method", CLIENT_AUTH_METHODS, default="client_secret_basic")
        assert method is not None
        try:
            client_auth = self._client_auth(fields, method, "password")
            token_url = self._token_url(fields)
            grant = self._grant(fields, token_url, client_auth)
            fallback = None
            if method != "private_key_jwt":
                for name in PRIVATE_KEY_JWT_FIELDS:
                    if fields.is_set(name):
                        log.warning(
                            "Connection %r: %s is set but only private_key_jwt uses it, so %s ignores it",
                            fields.connection_id,
                            name,
                            method,
                        )
            if fields.is_set("secondary_client_secret"):
                if method == "private_key_jwt":
                    log.warning(
                        "Connection %r: secondary_client_secret is set but private_key_jwt uses no secret; it is ignored",
                        fields.connection_id,
                    )
                else:
                    fallback = self._grant(
                        fields, token_url, self._client_auth(fields, method, "secondary_client_secret")
                    )
        except (ConnectionFieldError, KeyLoadError):
            raise
        except ValueError as err:
            # The auth package validates arguments when built; name the connection field they came from.
            raise argument_error(fields, err, _ARGUMENT_FIELDS) from None
        self._provider = TokenProvider(
            grant,
            connection_id=fields.connection_id,
            endpoint=build_token_endpoint(fields),
            cache=node_token_cache(),
            fallback_grant=fallback,
        )
        return self._provider

    def get_token(self, force: bool = False) -> AccessToken:
        """Return a valid access token with its expiry and granted scope, from the cache or a new grant."""
        return self.token_provider().get_token(force=force)

    def get_session(
        self, is_token_rejected: Callable[[requests.Response], bool] | None = None
    ) -> requests.Session:
        """Return a session that authenticates every request and resolves paths against `base_url`.

        A request that the API rejects with `401` and `error="invalid_token"` (RFC 6750 section
        3.1), or whose response `is_token_rejected` returns True for, gets one new token and is
        sent once more.
        """
        if self._session is not None and is_token_rejected is None:
            return self._session
        fields = self.connection_fields()
        session = BaseUrlSession(fields.timeouts(), fields.ca_bundle(), fields.url("base_url"))
        if is_token_rejected is None:
            session.auth = BearerAuth(self.token_provider())
            self._session = session
        else:
            session.auth = BearerAuth(self.token_provider(), is_token_rejected=is_token_rejected)
        return session

    def get_conn(self) -> requests.Session:
        return self.get_session()

    def run(
        self, method: str, endpoint: str, *, check_response: bool = True, **kwargs: Any
    ) -> requests.Response:
        """Send one request to `endpoint` (a path under `base_url`, or an absolute URL).

        Keyword arguments go to `requests.Session.request`. With `check_response` an HTTP error
        status raises `requests.HTTPError`.
        """
        response = self.get_session().request(method.upper(), endpoint, **kwargs)
        if check_response:
            response.raise_for_status()
        return response

    def test_connection(self) -> tuple[bool, str]:
        """Grant a new token and, when `base_url` is set, send a GET to it; report scope and lifetime."""
        try:
            token = self.get_token(force=True)
            message = f"Token granted; {describe_token(token)}"
            base_url = self.connection_fields().url("base_url")
            if base_url:
                response = self.run("GET", base_url, check_response=False)
                if response.status_code in (401, 403) or response.status_code >= 500:
                    return False, f"{message}; GET {safe_url(base_url)} returned HTTP {response.status_code}"
                message += f"; GET {safe_url(base_url)} returned HTTP {response.status_code}"
        except Exception as err:  # the Test button shows any failure as text
            return False, str(err)
        return True, message
