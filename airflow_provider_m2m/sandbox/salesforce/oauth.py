"""The token endpoint `/services/oauth2/token` and the sessions its access tokens open.

It serves the two grants a Salesforce connected app offers for server-to-server use. The client
credentials grant (RFC 6749 section 4.4) runs as the app's execution user. The JWT bearer grant
(RFC 7523) takes an assertion signed with the key of the certificate uploaded to the app. Error
bodies use Salesforce's `error` / `error_description` texts, with HTTP 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from airflow_provider_m2m.sandbox.http import Request, Response

log = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_CREDENTIALS_GRANT = "client_credentials"
LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")

# Salesforce requires the assertion's exp to be at most 3 minutes ahead. The extra seconds allow
# for a client that rounds its clock up to the next whole second.
MAX_ASSERTION_LIFETIME_SECONDS = 180
ASSERTION_EXP_LEEWAY_SECONDS = 5


@dataclass
class ConnectedApp:
    """A connected app: its consumer key and secret, execution user and JWT certificate.

    `certificate_public_key_pem` takes the PEM of the X.509 certificate uploaded to the app or of its
    public key; without it the app rejects JWT bearer grants. `allowed_usernames` are the users
    pre-authorised for the JWT bearer grant.
    """

    consumer_key: str
    consumer_secret: str
    run_as_username: str
    certificate_public_key_pem: str | bytes | None = None
    allowed_usernames: Sequence[str] = ()
    scope: str = "api"
    public_key: PublicKeyTypes | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.certificate_public_key_pem:
            pem = self.certificate_public_key_pem
            pem_bytes = pem.encode("ascii") if isinstance(pem, str) else pem
            if b"BEGIN CERTIFICATE" in pem_bytes:
                self.public_key = x509.load_pem_x509_certificate(pem_bytes).public_key()
            else:
                self.public_key = serialization.load_pem_public_key(pem_bytes)


@dataclass
class Session:
    """One access token and the user it acts as; it lapses after a period without API calls."""

    access_token: str
    username: str
    user_id: str
    consumer_key: str
    last_used: float
    expired: bool = False


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description

    def response(self) -> Response:
        return Response.json(400, {"error": self.error, "error_description": self.description}, {"Cache-Control": "no-store"})


class Sessions:
    """Issued access tokens, expired after `timeout_seconds` without use or on request."""

    def __init__(self, timeout_seconds: float, lock: threading.RLock, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.timeout_seconds = timeout_seconds
        self.lock = lock
        self.monotonic = monotonic
        self._by_token: dict[str, Session] = {}
        self._user_ids: dict[str, str] = {}

    def issue(self, org_id: str, username: str, consumer_key: str, new_user_id: Callable[[], str]) -> Session:
        with self.lock:
            user_id = self._user_ids.setdefault(username, new_user_id())
            # Salesforce access tokens start with the org id (15 characters) and an exclamation mark.
            token = f"{org_id[:15]}!{secrets.token_urlsafe(72)}"
            session = Session(token, username, user_id, consumer_key, self.monotonic())
            self._by_token[token] = session
            return session

    def touch(self, token: str) -> Session | None:
        """Return the live session for a token and restart its inactivity timer; None when invalid."""
        with self.lock:
            session = self._by_token.get(token)
            if session is None or session.expired:
                return None
            now = self.monotonic()
            if now - session.last_used > self.timeout_seconds:
                session.expired = True
                log.info("Salesforce emulator: session of %s expired after %.1f s idle", session.username, now - session.last_used)
                return None
            session.last_used = now
            return session

    def expire(self, token: str) -> None:
        with self.lock:
            if token in self._by_token:
                self._by_token[token].expired = True

    def expire_all(self) -> None:
        with self.lock:
            for session in self._by_token.values():
                session.expired = True

    def tokens(self) -> list[str]:
        with self.lock:
            return list(self._by_token)

    def user_id(self, username: str) -> str | None:
        return self._user_ids.get(username)


def _client_from_basic(header: str) -> tuple[str, str] | None:
    """Read `Authorization: Basic` client credentials (RFC 6749 section 2.3.1: form-encoded parts)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, separator, client_secret = decoded.partition(":")
    if not separator:
        return None
    return unquote_plus(client_id), unquote_plus(client_secret)


class TokenEndpoint:
    """Grant handling for `/services/oauth2/token`."""

    def __init__(
        self,
        apps: Sequence[ConnectedApp],
        sessions: Sessions,
        *,
        org_id: str,
        new_user_id: Callable[[], str],
        base_url: Callable[[], str],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.apps = {app.consumer_key: app for app in apps}
        self.sessions = sessions
        self.org_id = org_id
        self.new_user_id = new_user_id
        self.base_url = base_url
        self.wall_clock = wall_clock

    def handle(self, request: Request) -> Response:
        try:
            form = request.form()
        except UnicodeDecodeError:
            return OAuthError("invalid_request", "invalid request body").response()
        grant_type = form.get("grant_type", "")
        try:
            if grant_type == CLIENT_CREDENTIALS_GRANT:
                return self._client_credentials(request, form)
            if grant_type == JWT_BEARER_GRANT:
                return self._jwt_bearer(form)
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        except OAuthError as err:
            log.info("Salesforce emulator: token request rejected: %s", err)
            return err.response()

    def _client_credentials(self, request: Request, form: dict[str, str]) -> Response:
        credentials = _client_from_basic(request.headers.get("Authorization", ""))
        if credentials is None:
            credentials = (form.get("client_id", ""), form.get("client_secret", ""))
        client_id, client_secret = credentials
        app = self.apps.get(client_id)
        if app is None or not hmac.compare_digest(app.consumer_secret.encode(), client_secret.encode()):
            raise OAuthError("invalid_client", "invalid client credentials")
        session = self.sessions.issue(self.org_id, app.run_as_username, app.consumer_key, self.new_user_id)
        log.info("Salesforce emulator: client credentials grant for %s as %s", client_id, app.run_as_username)
        body = self._token_body(session, app)
        issued_at = str(int(self.wall_clock() * 1000))
        # Salesforce signs the identity URL and issue time with the consumer secret (HMAC-SHA256).
        digest = hmac.new(app.consumer_secret.encode(), (body["id"] + issued_at).encode(), hashlib.sha256).digest()
        body["signature"] = base64.b64encode(digest).decode("ascii")
        body["issued_at"] = issued_at
        return Response.json(200, body, {"Cache-Control": "no-store"})

    def _jwt_bearer(self, form: dict[str, str]) -> Response:
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as err:
            raise OAuthError("invalid_grant", "invalid assertion") from err
        app = self.apps.get(str(unverified.get("iss", "")))
        if app is None:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if app.public_key is None or header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            claims = jwt.decode(
                assertion,
                app.public_key,  # type: ignore[arg-type]
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.PyJWTError as err:
            raise OAuthError("invalid_grant", "invalid assertion") from err

        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        accepted = {*LOGIN_AUDIENCES, self.base_url().rstrip("/")}
        if not any(str(audience).rstrip("/") in accepted for audience in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")

        now = self.wall_clock()
        try:
            expires = float(claims["exp"])
        except (TypeError, ValueError) as err:
            raise OAuthError("invalid_grant", "invalid assertion") from err
        if expires <= now:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        if expires > now + MAX_ASSERTION_LIFETIME_SECONDS + ASSERTION_EXP_LEEWAY_SECONDS:
            raise OAuthError("invalid_grant", "invalid assertion")

        username = str(claims["sub"])
        if username not in app.allowed_usernames:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        session = self.sessions.issue(self.org_id, username, app.consumer_key, self.new_user_id)
        log.info("Salesforce emulator: JWT bearer grant for %s as %s", app.consumer_key, username)
        return Response.json(200, self._token_body(session, app), {"Cache-Control": "no-store"})

    def _token_body(self, session: Session, app: ConnectedApp) -> dict[str, str]:
        instance_url = self.base_url().rstrip("/")
        return {
            "access_token": session.access_token,
            "scope": app.scope,
            "instance_url": instance_url,
            "id": f"{instance_url}/id/{self.org_id}/{session.user_id}",
            "token_type": "Bearer",
        }
