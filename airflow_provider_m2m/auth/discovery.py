"""Token endpoint discovery from an issuer URL (RFC 8414, OpenID Connect Discovery 1.0)."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_m2m.auth.endpoint import TokenEndpoint, safe_url
from airflow_provider_m2m.auth.errors import TokenEndpointError
from airflow_provider_m2m.auth.grants import validate_token_url

log = logging.getLogger(__name__)

# Metadata changes rarely; an hour keeps a long-running worker from missing a moved endpoint.
DISCOVERY_CACHE_SECONDS = 3600.0

_cache: dict[str, tuple[float, str]] = {}
_cache_lock = threading.Lock()


def metadata_urls(issuer: str) -> list[str]:
    """Return the metadata URLs to try for an issuer, in order.

    RFC 8414 section 3.1 inserts ``/.well-known/oauth-authorization-server`` between the host
    and the issuer's path. OpenID Connect Discovery 1.0 section 4 appends
    ``/.well-known/openid-configuration`` to the issuer.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit((parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", ""))
    openid = urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", ""))
    return [rfc8414, openid]


def discover_token_endpoint(issuer: str, endpoint: TokenEndpoint) -> str:
    """Return the ``token_endpoint`` from the issuer's metadata, cached per issuer for an hour.

    Raises:
        TokenEndpointError: no metadata document was found, its ``issuer`` differs from the
            requested one (RFC 8414 section 3.3), or it has no usable ``token_endpoint``.
    """
    validate_token_url(issuer, "issuer")
    key = issuer.rstrip("/")
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]

    failures: list[str] = []
    for url in metadata_urls(issuer):
        try:
            metadata = endpoint.fetch_json(url)
        except TokenEndpointError as err:
            failures.append(str(err))
            continue
        # RFC 8414 section 3.3: the issuer in the metadata must equal the issuer used to find it,
        # which stops a metadata document from redirecting tokens to another server.
        if str(metadata.get("issuer", "")).rstrip("/") != key:
            raise TokenEndpointError(
                f"metadata at {safe_url(url)} names issuer {safe_url(str(metadata.get('issuer')))!r}, "
                f"expected {safe_url(issuer)!r}"
            )
        token_endpoint = metadata.get("token_endpoint")
        if not isinstance(token_endpoint, str):
            raise TokenEndpointError(f"metadata at {safe_url(url)} has no token_endpoint")
        try:
            validate_token_url(token_endpoint, "token_endpoint")
        except ValueError as err:
            raise TokenEndpointError(f"metadata at {safe_url(url)}: {err}") from err
        log.debug("Discovered token endpoint %s for issuer %s", safe_url(token_endpoint), safe_url(issuer))
        with _cache_lock:
            _cache[key] = (now + DISCOVERY_CACHE_SECONDS, token_endpoint)
        return token_endpoint
    raise TokenEndpointError(
        f"no authorization server metadata found for issuer {safe_url(issuer)}: {'; '.join(failures)}"
    )


def clear_discovery_cache() -> None:
    """Forget discovered endpoints, for tests and after an issuer moves."""
    with _cache_lock:
        _cache.clear()
