"""``requests`` authentication that attaches access tokens and recovers from one rejection."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar

from airflow_provider_m2m.auth.endpoint import safe_url
from airflow_provider_m2m.auth.errors import TokenRejectedError
from airflow_provider_m2m.auth.provider import TokenProvider

log = logging.getLogger(__name__)

_ERROR_PARAM = re.compile(r'\berror\s*=\s*"?([^",\s]+)"?', re.IGNORECASE)
_DESCRIPTION_PARAM = re.compile(r'\berror_description\s*=\s*"([^"]*)"', re.IGNORECASE)

# Attribute set on a PreparedRequest to remember which token it carries and whether it is a replay.
_TOKEN_ATTRIBUTE = "_m2m_access_token"
_REPLAY_ATTRIBUTE = "_m2m_replayed"


def bearer_error(response: requests.Response) -> str | None:
    """Return the ``error`` parameter of a Bearer ``WWW-Authenticate`` challenge (RFC 6750 section 3)."""
    header = response.headers.get("WWW-Authenticate", "")
    if not header.lower().startswith("bearer"):
        return None
    match = _ERROR_PARAM.search(header)
    return match.group(1) if match else None


def is_invalid_token(response: requests.Response) -> bool:
    """Tell whether the API rejected the token itself: 401 with ``error="invalid_token"``.

    RFC 6750 section 3.1 sends ``invalid_token`` for an expired, revoked or malformed token.
    Other 401s (missing scope is 403 ``insufficient_scope``) are not fixed by a new token.
    """
    return response.status_code == 401 and bearer_error(response) == "invalid_token"


class BearerAuth(AuthBase):
    """Attaches ``Authorization: Bearer <token>`` from a TokenProvider (RFC 6750 section 2.1).

    When ``is_token_rejected(response)`` is true, the token is invalidated, a new one obtained
    and the request sent once more. If the replay is rejected too, ``TokenRejectedError`` is
    raised: a new token did not help, so retrying again would loop.
    """

    def __init__(
        self,
        provider: TokenProvider,
        is_token_rejected: Callable[[requests.Response], bool] = is_invalid_token,
    ) -> None:
        self.provider = provider
        self.is_token_rejected = is_token_rejected

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.provider.get_token()
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        setattr(request, _TOKEN_ATTRIBUTE, token.access_token)
        request.register_hook("response", self._handle_response)
        return request

    def _handle_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if not self.is_token_rejected(response):
            return response
        request = response.request
        rejected_token = getattr(request, _TOKEN_ATTRIBUTE, None)
        if getattr(request, _REPLAY_ATTRIBUTE, False):
            # The replay's own response hook: _replay raises for it.
            return response
        if _has_stream_body(request):
            raise TokenRejectedError(
                f"{safe_url(response.url)} rejected the access token of connection "
                f"{self.provider.connection_id!r} (HTTP {response.status_code}), and the request "
                "cannot be sent again because its body is a stream"
            )
        log.info(
            "%s rejected the access token of connection %r (HTTP %d, %s); obtaining a new token and sending the request again",
            safe_url(response.url),
            self.provider.connection_id,
            response.status_code,
            bearer_error(response) or "no error code",
        )
        if rejected_token is not None:
            self.provider.invalidate(rejected_token)
        return self._replay(response, **kwargs)

    def _replay(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        # Read and release the rejected response so its connection returns to the pool.
        _ = response.content
        response.close()

        replay = response.request.copy()
        if response.request._cookies is not None:
            extract_cookies_to_jar(replay._cookies, response.request, response.raw)
            replay.prepare_cookies(replay._cookies)
        token = self.provider.get_token()
        replay.headers["Authorization"] = f"Bearer {token.access_token}"
        setattr(replay, _TOKEN_ATTRIBUTE, token.access_token)
        setattr(replay, _REPLAY_ATTRIBUTE, True)

        second = response.connection.send(replay, **kwargs)
        second.history.append(response)
        second.request = replay
        if self.is_token_rejected(second):
            error = bearer_error(second)
            description = _DESCRIPTION_PARAM.search(second.headers.get("WWW-Authenticate", ""))
            detail = f"error {error!r}" if error else "no error code"
            if description:
                detail += f": {description.group(1)[:200]}"
            second.close()
            raise TokenRejectedError(
                f"{safe_url(second.url)} rejected a newly obtained access token of connection "
                f"{self.provider.connection_id!r} (HTTP {second.status_code}, {detail}). The token was "
                "renewed once and the request sent again; check that the client may call this API "
                "with the configured scope and audience."
            )
        return second


def _has_stream_body(request: requests.PreparedRequest) -> bool:
    body = request.body
    return body is not None and not isinstance(body, bytes | str)
