"""Helpers shared by the auth flow tests, importable by spawned worker processes."""

from __future__ import annotations

from typing import Any

from airflow_provider_m2m.auth import (
    ClientCredentialsGrant,
    ClientSecretBasic,
    FileTokenCache,
    TokenEndpoint,
    TokenProvider,
)


def make_endpoint(ca_bundle: str, **overrides: Any) -> TokenEndpoint:
    """Build a TokenEndpoint that trusts the fixture CA and backs off in milliseconds."""
    settings: dict[str, Any] = {"verify": ca_bundle, "timeout": (2.0, 5.0), "backoff_base": 0.01, "backoff_max": 0.05}
    settings.update(overrides)
    return TokenEndpoint(**settings)


def make_provider(
    token_url: str,
    ca_bundle: str,
    *,
    client_id: str = "svc",
    secret: str = "secret-1",
    connection_id: str = "m2m_flow",
    cache: Any = None,
    **overrides: Any,
) -> TokenProvider:
    grant = ClientCredentialsGrant(token_url, ClientSecretBasic(client_id, secret), scope="read")
    return TokenProvider(
        grant, connection_id=connection_id, endpoint=make_endpoint(ca_bundle), cache=cache, **overrides
    )


def obtain_token_in_process(
    token_url: str, ca_bundle: str, cache_dir: str, fernet_key: str, barrier: Any, results: Any
) -> None:
    """Act as one task process: wait for the others, then get a token through the shared file cache."""
    cache = FileTokenCache(cache_dir, fernet_key=fernet_key)
    provider = make_provider(token_url, ca_bundle, cache=cache)
    barrier.wait(timeout=60)
    token = provider.get_token()
    results.put(token.access_token)
