"""Exceptions raised by the token lifecycle engine.

Messages name the connection id and the field involved, never a secret value.
"""

from __future__ import annotations


class M2MAuthError(Exception):
    """Base class for every error raised by ``airflow_provider_m2m.auth``."""


class TokenEndpointError(M2MAuthError):
    """Transport failure, 5xx or 429 after all retries, or a malformed token response."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool = False,
        connection_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
        self.connection_id = connection_id

    def __str__(self) -> str:
        if self.connection_id is None:
            return self.message
        return f"Connection {self.connection_id!r}: {self.message}"


class OAuthError(M2MAuthError):
    """Error response from a token endpoint (RFC 6749 section 5.2).

    ``retryable`` is true when sending the same request again can succeed. The six codes of
    RFC 6749 section 5.2 all need a configuration change, so their subclasses are not retryable.
    """

    error_code: str | None = None
    default_retryable = False

    def __init__(
        self,
        error: str,
        description: str | None = None,
        retryable: bool | None = None,
        connection_id: str | None = None,
        *,
        status_code: int | None = None,
        error_uri: str | None = None,
    ) -> None:
        super().__init__(error, description)
        self.error = error
        self.description = description
        self.retryable = self.default_retryable if retryable is None else retryable
        self.connection_id = connection_id
        self.status_code = status_code
        self.error_uri = error_uri

    def __str__(self) -> str:
        where = f" for connection {self.connection_id!r}" if self.connection_id else ""
        text = f"Token request{where} failed: {self.error}"
        if self.description:
            text += f" ({self.description})"
        if self.status_code is not None:
            text += f", HTTP {self.status_code}"
        return text


class InvalidRequest(OAuthError):
    """``invalid_request``: a parameter is missing, repeated or malformed."""

    error_code = "invalid_request"


class InvalidClient(OAuthError):
    """``invalid_client``: client authentication failed (unknown client, wrong secret or key)."""

    error_code = "invalid_client"


class InvalidGrant(OAuthError):
    """``invalid_grant``: the assertion or grant is invalid, expired or issued to another client."""

    error_code = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """``unauthorized_client``: the client may not use this grant type."""

    error_code = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """``unsupported_grant_type``: the server does not support this grant type."""

    error_code = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """``invalid_scope``: the requested scope is invalid, unknown or beyond what the client may get."""

    error_code = "invalid_scope"


class ServerError(OAuthError):
    """``server_error``: some token endpoints send this code from RFC 6749 section 4.1.2.1."""

    error_code = "server_error"
    default_retryable = True


class TemporarilyUnavailable(OAuthError):
    """``temporarily_unavailable``: RFC 6749 section 4.1.2.1 code sent by some token endpoints."""

    error_code = "temporarily_unavailable"
    default_retryable = True


OAUTH_ERRORS: dict[str, type[OAuthError]] = {
    cls.error_code: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        InvalidGrant,
        UnauthorizedClient,
        UnsupportedGrantType,
        InvalidScope,
        ServerError,
        TemporarilyUnavailable,
    )
    if cls.error_code is not None
}


def oauth_error_for(
    error: str,
    description: str | None = None,
    *,
    status_code: int | None = None,
    error_uri: str | None = None,
) -> OAuthError:
    """Build the exception for an RFC 6749 section 5.2 error code; unknown codes get ``OAuthError``."""
    cls = OAUTH_ERRORS.get(error, OAuthError)
    return cls(error, description, status_code=status_code, error_uri=error_uri)


class TokenRejectedError(M2MAuthError):
    """An API rejected an access token that was granted again after a first rejection."""


class KeyLoadError(M2MAuthError, ValueError):
    """A private key in a connection cannot be loaded."""

    def __init__(self, message: str, *, connection_id: str, field: str) -> None:
        super().__init__(f"Connection {connection_id!r}, field {field!r}: {message}")
        self.connection_id = connection_id
        self.field = field


class WrongPassphraseError(KeyLoadError):
    """The passphrase does not decrypt the encrypted private key."""
