"""Token lifecycle engine: grants, client authentication, token caches and ``requests`` auth.

This package imports nothing from Airflow. Hooks connect it to Airflow by registering
``airflow.sdk.log.mask_secret`` with ``register_secret_masker`` and ``Stats`` with
``register_metrics_backend``.
"""

from airflow_provider_m2m.auth.cache import (
    FileTokenCache,
    NullTokenCache,
    TokenCache,
    default_cache_directory,
    default_node_cache,
)
from airflow_provider_m2m.auth.client_auth import ClientAuth, ClientSecretBasic, ClientSecretPost, PrivateKeyJwt
from airflow_provider_m2m.auth.discovery import clear_discovery_cache, discover_token_endpoint
from airflow_provider_m2m.auth.endpoint import TokenEndpoint
from airflow_provider_m2m.auth.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    KeyLoadError,
    M2MAuthError,
    OAuthError,
    ServerError,
    TemporarilyUnavailable,
    TokenEndpointError,
    TokenRejectedError,
    UnauthorizedClient,
    UnsupportedGrantType,
    WrongPassphraseError,
)
from airflow_provider_m2m.auth.grants import ClientCredentialsGrant, Grant, JwtBearerGrant, validate_token_url
from airflow_provider_m2m.auth.keys import load_private_key
from airflow_provider_m2m.auth.masking import mask_secret, register_secret_masker, unregister_secret_masker
from airflow_provider_m2m.auth.metrics import register_metrics_backend
from airflow_provider_m2m.auth.provider import DEFAULT_CACHE, TokenProvider, clear_memory_cache
from airflow_provider_m2m.auth.requests_auth import BearerAuth, is_invalid_token
from airflow_provider_m2m.auth.token import (
    CLOCK_SKEW,
    DEFAULT_LIFETIME,
    REFRESH_MARGIN,
    AccessToken,
    Freshness,
    parse_token_response,
)

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_CACHE",
    "DEFAULT_LIFETIME",
    "REFRESH_MARGIN",
    "AccessToken",
    "BearerAuth",
    "ClientAuth",
    "ClientCredentialsGrant",
    "ClientSecretBasic",
    "ClientSecretPost",
    "FileTokenCache",
    "Freshness",
    "Grant",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "JwtBearerGrant",
    "KeyLoadError",
    "M2MAuthError",
    "NullTokenCache",
    "OAuthError",
    "PrivateKeyJwt",
    "ServerError",
    "TemporarilyUnavailable",
    "TokenCache",
    "TokenEndpoint",
    "TokenEndpointError",
    "TokenProvider",
    "TokenRejectedError",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "WrongPassphraseError",
    "clear_discovery_cache",
    "clear_memory_cache",
    "default_cache_directory",
    "default_node_cache",
    "discover_token_endpoint",
    "is_invalid_token",
    "load_private_key",
    "mask_secret",
    "parse_token_response",
    "register_metrics_backend",
    "register_secret_masker",
    "unregister_secret_masker",
    "validate_token_url",
]
