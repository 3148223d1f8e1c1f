"""An OAuth 2.0 authorization server for machine-to-machine grants, served by `SandboxServer`.

It issues access tokens for the client credentials grant (RFC 6749 section 4.4) and the JWT bearer
grant (RFC 7523 section 2.1). Clients authenticate with client_secret_basic, client_secret_post or
private_key_jwt (RFC 7523 section 2.2). Access tokens are RS256 JWTs signed with a key made at
start, so a resource server in the same process can check them with `is_active`.

Tests drive it in process. Each client has its own token lifetime and up to two valid secrets.
`grants_issued` counts successful grants, `revoke` ends a token early, and `script` queues
responses such as 429 or 503, a slow response or a connection reset for the next token requests.
`assertions` keeps the claims of every assertion whose signature checked out. `/api/...` is a protected resource
that returns the caller's token claims, so a client has an API to call with its token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_m2m.sandbox.http import ConnectionReset, Request, Response, Router, SandboxServer
from airflow_provider_m2m.sandbox.tls import TLSFiles

log = logging.getLogger(__name__)

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"

CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
PRIVATE_KEY_JWT = "private_key_jwt"

ASSERTION_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
# Accepted difference between the client's clock and ours when checking assertion exp, nbf and iat.
CLOCK_SKEW_SECONDS = 30
# Assertions valid for longer than this are rejected, as Google does for service-account assertions.
MAX_ASSERTION_LIFETIME_SECONDS = 3600
ACCESS_TOKEN_ALGORITHM = "RS256"

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error response."""

    def __init__(self, error: str, description: str, *, status: int = 400, headers: Mapping[str, str] | None = None):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = {"error": self.error, "error_description": self.description}
        return Response.json(self.status, body, {**_NO_STORE, **self.headers})


@dataclass
class OAuthClient:
    """A registered client and what it may do."""

    client_id: str
    # Up to two secrets are valid at once, so a secret can be rotated without downtime.
    secrets: list[str] = field(default_factory=list)
    public_key_pem: str | None = None
    token_lifetime_seconds: int = 3600
    # Scopes this client may request; a grant without `scope` gets all of them.
    scopes: tuple[str, ...] = ()
    # A Google service account: its JWT bearer assertions carry Google's token URL as `aud` and no `sub`.
    service_account: bool = False
    # Subjects (other than itself) the client may name in `sub` of a JWT bearer assertion.
    allowed_subjects: tuple[str, ...] = ()
    # base64url SHA-256 and SHA-1 of the registered certificate's DER. When set, a private_key_jwt
    # assertion must name the certificate in its x5t#S256 header, as Entra ID requires. An x5t
    # header, when present, must match too.
    certificate_sha256: str | None = None
    certificate_sha1: str | None = None
    # When set, the only `aud` accepted in a private_key_jwt assertion, as Auth0 accepts only its
    # tenant URL. Otherwise the token URL and the issuer are accepted.
    assertion_audience: str | None = None


@dataclass(frozen=True)
class ScriptedResponse:
    """A response the token endpoint sends instead of handling the next request.

    With `pass_through` the request waits `delay_seconds` and is then handled normally. With
    `reset_connection` the server waits `delay_seconds` and drops the connection with a TCP reset.
    """

    status: int = 503
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    pass_through: bool = False
    reset_connection: bool = False

    @classmethod
    def too_many_requests(cls, retry_after_seconds: int = 1) -> ScriptedResponse:
        return cls(
            status=429,
            body={
                "error": "temporarily_unavailable",
                "error_description": f"Too many token requests; retry after {retry_after_seconds} seconds.",
            },
            headers={"Retry-After": str(retry_after_seconds)},
        )

    @classmethod
    def unavailable(cls, retry_after_seconds: int | None = None) -> ScriptedResponse:
        headers = {"Retry-After": str(retry_after_seconds)} if retry_after_seconds is not None else {}
        body = {"error": "temporarily_unavailable", "error_description": "The token service is unavailable."}
        return cls(status=503, body=body, headers=headers)

    @classmethod
    def delay(cls, seconds: float) -> ScriptedResponse:
        return cls(delay_seconds=seconds, pass_through=True)

    @classmethod
    def connection_reset(cls) -> ScriptedResponse:
        return cls(status=0, reset_connection=True)


@dataclass(frozen=True)
class TokenRequestRecord:
    """One request the token endpoint handled, for tests to inspect."""

    client_id: str | None
    grant_type: str | None
    client_auth_method: str | None
    status: int
    error: str | None


class OAuthServer:
    """The authorization server app; call `serve(tls)` to put it on the network."""

    def __init__(self, *, default_token_lifetime_seconds: int = 3600) -> None:
        self.default_token_lifetime_seconds = default_token_lifetime_seconds
        self.issuer = ""  # set by `serve`, because the port is known only once the socket is bound
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._key_id = uuid.uuid4().hex
        self._clients: dict[str, OAuthClient] = {}
        self._lock = threading.Lock()
        self._used_assertion_ids: dict[tuple[str, str], float] = {}
        self._revoked_token_ids: set[str] = set()
        self._scripted: list[tuple[str | None, ScriptedResponse]] = []
        self.grant_counts: Counter[str] = Counter()
        self.token_requests: list[TokenRequestRecord] = []
        self.issued_tokens: list[str] = []  # every access token issued, for leak scans
        # (client id, claims) of every assertion with a valid signature, reused or not, in arrival order.
        self.assertions: list[tuple[str, dict[str, Any]]] = []

        self._router = Router()
        self._router.add("POST", "/token", self._token)
        self._router.add("GET", "/.well-known/openid-configuration", self._metadata)
        self._router.add("GET", "/.well-known/oauth-authorization-server", self._metadata)
        self._router.add("GET", "/jwks", self._jwks)
        for method in ("GET", "POST"):
            self._router.add(method, "/api", self._protected_resource)
            self._router.add(method, "/api/{resource}", self._protected_resource)

    # -- network -----------------------------------------------------------------------------

    def serve(self, tls: TLSFiles | None, *, port: int = 0) -> SandboxServer:
        """Bind a `SandboxServer` for this app, set `issuer` to its URL and start it."""
        server = SandboxServer(self, tls, name="oauth", port=port)
        self.issuer = server.url
        return server.start()

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    def handle(self, request: Request) -> Response:
        return self._router.handle(request)

    # -- client registry ---------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        secondary_secret: str | None = None,
        public_key_pem: str | None = None,
        token_lifetime_seconds: int | None = None,
        scopes: Iterable[str] = (),
        service_account: bool = False,
        allowed_subjects: Iterable[str] = (),
        certificate_pem: str | None = None,
        assertion_audience: str | None = None,
    ) -> OAuthClient:
        """Register a client. With `certificate_pem` and no `public_key_pem`, the certificate's key is used."""
        certificate_sha256 = certificate_sha1 = None
        if certificate_pem is not None:
            certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
            der = certificate.public_bytes(serialization.Encoding.DER)
            certificate_sha256 = _base64url(hashlib.sha256(der).digest())
            certificate_sha1 = _base64url(hashlib.sha1(der, usedforsecurity=False).digest())
            if public_key_pem is None:
                public_key_pem = (
                    certificate.public_key()
                    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                    .decode("ascii")
                )
        client = OAuthClient(
            client_id=client_id,
            secrets=[value for value in (secret, secondary_secret) if value],
            public_key_pem=public_key_pem,
            token_lifetime_seconds=token_lifetime_seconds or self.default_token_lifetime_seconds,
            scopes=tuple(scopes),
            service_account=service_account,
            allowed_subjects=tuple(allowed_subjects),
            certificate_sha256=certificate_sha256,
            certificate_sha1=certificate_sha1,
            assertion_audience=assertion_audience,
        )
        if public_key_pem is not None:
            serialization.load_pem_public_key(public_key_pem.encode("ascii"))  # fail now on a bad key
        with self._lock:
            self._clients[client_id] = client
        return client

    def client(self, client_id: str) -> OAuthClient:
        return self._clients[client_id]

    def add_secret(self, client_id: str, secret: str) -> None:
        """Make `secret` valid for the client; at most two secrets stay valid, the oldest is dropped."""
        with self._lock:
            client = self._clients[client_id]
            client.secrets = [*client.secrets, secret][-2:]

    def revoke_secret(self, client_id: str, secret: str) -> None:
        """Stop accepting `secret`; the client's other secret, if any, stays valid."""
        with self._lock:
            client = self._clients[client_id]
            client.secrets = [value for value in client.secrets if value != secret]

    def set_token_lifetime(self, client_id: str, seconds: int) -> None:
        with self._lock:
            self._clients[client_id].token_lifetime_seconds = seconds

    # -- tokens in process -------------------------------------------------------------------

    def introspect(self, token: str) -> dict[str, Any] | None:
        """Return the claims of an active access token, or None if it is invalid, expired or revoked."""
        try:
            claims = jwt.decode(
                token,
                self._signing_key.public_key(),
                algorithms=[ACCESS_TOKEN_ALGORITHM],
                issuer=self.issuer,
                options={"require": ["exp", "jti", "iss"], "verify_aud": False},
            )
        except jwt.PyJWTError as err:
            log.debug("Access token rejected: %s", err)
            return None
        if claims["jti"] in self._revoked_token_ids:
            log.debug("Access token %s was revoked", claims["jti"])
            return None
        return claims

    def is_active(self, token: str) -> bool:
        return self.introspect(token) is not None

    def revoke(self, token: str) -> None:
        """Revoke an access token this server issued; `is_active` returns False for it from now on."""
        claims = jwt.decode(token, options={"verify_signature": False})
        with self._lock:
            self._revoked_token_ids.add(claims["jti"])

    def grants_issued(self, client_id: str) -> int:
        return self.grant_counts[client_id]

    # -- fault hook ---------------------------------------------------------------------------

    def script(self, *responses: ScriptedResponse, client_id: str | None = None) -> None:
        """Queue `responses` for the next token requests (of `client_id` only, when given), in order."""
        with self._lock:
            self._scripted.extend((client_id, response) for response in responses)

    def clear_script(self) -> None:
        with self._lock:
            self._scripted.clear()

    def _next_scripted(self, client_id: str | None) -> ScriptedResponse | None:
        with self._lock:
            for index, (wanted_client, response) in enumerate(self._scripted):
                if wanted_client is None or wanted_client == client_id:
                    del self._scripted[index]
                    return response
        return None

    # -- endpoints ----------------------------------------------------------------------------

    def _metadata(self, request: Request) -> Response:
        # RFC 8414 section 2; the OpenID discovery document carries the same fields.
        return Response.json(
            200,
            {
                "issuer": self.issuer,
                "token_endpoint": self.token_url,
                "jwks_uri": f"{self.issuer}/jwks",
                "grant_types_supported": [CLIENT_CREDENTIALS, JWT_BEARER],
                "token_endpoint_auth_methods_supported": [CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, PRIVATE_KEY_JWT],
                "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
                "response_types_supported": ["token"],
                "scopes_supported": sorted({scope for client in self._clients.values() for scope in client.scopes}),
            },
        )

    def _jwks(self, request: Request) -> Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._signing_key.public_key()))
        jwk.update({"kid": self._key_id, "use": "sig", "alg": ACCESS_TOKEN_ALGORITHM})
        return Response.json(200, {"keys": [jwk]})

    def _protected_resource(self, request: Request) -> Response:
        """Return the caller's token claims: a protected API for clients that need one to call."""
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 section 3.1: a request without a token gets the challenge with no error code.
            return Response.json(401, {"error": "missing_token"}, {"WWW-Authenticate": 'Bearer realm="m2m-sandbox"'})
        claims = self.introspect(token.strip())
        if claims is None:
            log.info("Protected API request with an invalid, expired or revoked token rejected")
            challenge = 'Bearer realm="m2m-sandbox", error="invalid_token"'
            return Response.json(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})
        return Response.json(
            200,
            {
                "client_id": claims["client_id"],
                "sub": claims["sub"],
                "scope": claims.get("scope", ""),
                "exp": claims["exp"],
                "method": request.method,
                "path": request.path,
            },
        )

    def _token(self, request: Request) -> Response:
        claimed_client = _claimed_client_id(request)
        scripted = self._next_scripted(claimed_client)
        if scripted is not None:
            if scripted.delay_seconds:
                time.sleep(scripted.delay_seconds)
            if scripted.reset_connection:
                self._record(claimed_client, request, None, 0, "connection_reset")
                raise ConnectionReset
            if not scripted.pass_through:
                self._record(claimed_client, request, None, scripted.status, (scripted.body or {}).get("error"))
                return Response.json(scripted.status, dict(scripted.body or {}), {**_NO_STORE, **scripted.headers})

        auth_method: str | None = None
        try:
            form = _token_form(request)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise OAuthError("invalid_request", "Missing grant_type.")
            if grant_type not in (CLIENT_CREDENTIALS, JWT_BEARER):
                raise OAuthError("unsupported_grant_type", f"Grant type {grant_type!r} is not supported.")
            auth_method, client = self._authenticate_client(request, form)
            if grant_type == CLIENT_CREDENTIALS:
                if client is None:
                    # RFC 6749 section 4.4: the client credentials grant is for confidential clients only.
                    raise _invalid_client("Client authentication is required.", challenge=True)
                subject = client.client_id
            else:
                client, subject = self._check_jwt_bearer_assertion(form, client)
            scopes = _granted_scopes(client, form.get("scope"))
            body = self._issue(client, subject, scopes, form)
        except OAuthError as err:
            self._record(claimed_client, request, auth_method, err.status, err.error)
            log.info("Token request from %s rejected: %s", claimed_client, err)
            return err.response()
        self._record(client.client_id, request, auth_method, 200, None)
        return Response.json(200, body, _NO_STORE)

    def _record(
        self, client_id: str | None, request: Request, auth_method: str | None, status: int, error: str | None
    ) -> None:
        try:
            grant_type = request.form().get("grant_type")
        except UnicodeDecodeError:
            grant_type = None
        with self._lock:
            self.token_requests.append(TokenRequestRecord(client_id, grant_type, auth_method, status, error))

    # -- client authentication ----------------------------------------------------------------

    def _authenticate_client(self, request: Request, form: dict[str, str]) -> tuple[str | None, OAuthClient | None]:
        """Authenticate the client with the one method the request uses; (None, None) if it uses none."""
        authorization = request.headers.get("Authorization", "")
        methods = []
        if authorization.lower().startswith("basic "):
            methods.append(CLIENT_SECRET_BASIC)
        if "client_secret" in form:
            methods.append(CLIENT_SECRET_POST)
        if "client_assertion" in form or "client_assertion_type" in form:
            methods.append(PRIVATE_KEY_JWT)
        if len(methods) > 1:
            # RFC 6749 section 2.3: a client must not use more than one authentication method per request.
            raise OAuthError("invalid_request", "More than one client authentication method was used.")
        if not methods:
            return None, None
        method = methods[0]
        if method == CLIENT_SECRET_BASIC:
            return method, self._authenticate_basic(authorization, form)
        if method == CLIENT_SECRET_POST:
            return method, self._authenticate_post(form)
        return method, self._authenticate_private_key_jwt(form)

    def _check_secret(self, client_id: str, secret: str, *, challenge: bool) -> OAuthClient:
        client = self._clients.get(client_id)
        # Compare against every valid secret in constant time, so timing does not reveal which one matched.
        matches = [hmac.compare_digest(secret.encode(), valid.encode()) for valid in (client.secrets if client else [])]
        if client is None or not any(matches):
            raise _invalid_client("Client authentication failed.", challenge=challenge)
        return client

    def _authenticate_basic(self, authorization: str, form: dict[str, str]) -> OAuthClient:
        encoded = authorization.split(" ", 1)[1].strip()
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as err:
            raise _invalid_client("The Basic credentials are not valid base64 of UTF-8 text.", challenge=True) from err
        if ":" not in decoded:
            raise _invalid_client("The Basic credentials have no ':' separator.", challenge=True)
        raw_id, raw_secret = decoded.split(":", 1)
        # RFC 6749 section 2.3.1: the client id and secret are form-urlencoded before base64 encoding,
        # so they are decoded again here ('+' is a space, '%3A' a colon).
        client_id = unquote_plus(raw_id)
        secret = unquote_plus(raw_secret)
        if "client_id" in form and form["client_id"] != client_id:
            raise OAuthError("invalid_request", "client_id in the body does not match the Basic credentials.")
        return self._check_secret(client_id, secret, challenge=True)

    def _authenticate_post(self, form: dict[str, str]) -> OAuthClient:
        client_id = form.get("client_id")
        if not client_id:
            raise OAuthError("invalid_request", "client_secret was sent without client_id.")
        return self._check_secret(client_id, form["client_secret"], challenge=False)

    def _authenticate_private_key_jwt(self, form: dict[str, str]) -> OAuthClient:
        # RFC 7523 section 2.2 and section 3: the assertion authenticates the client at the token endpoint.
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}.")
        assertion = form.get("client_assertion")
        if not assertion:
            raise OAuthError("invalid_request", "Missing client_assertion.")
        issuer = _unverified_claim(assertion, "iss", "invalid_client")
        client = self._clients.get(issuer) if isinstance(issuer, str) else None
        if client is None or client.public_key_pem is None:
            raise _invalid_client("Unknown client or no public key registered for private_key_jwt.", challenge=False)
        if "client_id" in form and form["client_id"] != client.client_id:
            raise OAuthError("invalid_request", "client_id does not match the assertion's iss.")
        _check_certificate_thumbprints(assertion, client)
        audiences = [client.assertion_audience] if client.assertion_audience else [self.token_url, self.issuer]
        try:
            claims = self._verify_assertion(assertion, client, audiences=audiences)
        except jwt.PyJWTError as err:
            raise _invalid_client(f"Invalid client assertion: {err}.", challenge=False) from err
        # RFC 7523 section 3: for client authentication, iss and sub are both the client id.
        if claims.get("sub") != client.client_id:
            raise _invalid_client("The client assertion's sub must equal its iss (the client id).", challenge=False)
        return client

    # -- assertions ---------------------------------------------------------------------------

    def _verify_assertion(self, assertion: str, client: OAuthClient, *, audiences: list[str]) -> dict[str, Any]:
        """Check signature, iss, aud, exp, nbf, iat and jti of an assertion; raise jwt.PyJWTError if invalid."""
        assert client.public_key_pem is not None
        claims = jwt.decode(
            assertion,
            client.public_key_pem,
            algorithms=ASSERTION_ALGORITHMS,
            audience=audiences,
            issuer=client.client_id,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["iss", "aud", "exp"]},
        )
        with self._lock:
            self.assertions.append((client.client_id, dict(claims)))
        now = time.time()
        if claims["exp"] - claims.get("iat", now) > MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
            raise jwt.InvalidTokenError(f"assertion lifetime exceeds {MAX_ASSERTION_LIFETIME_SECONDS} seconds")
        jti = claims.get("jti")
        if jti is not None or not client.service_account:
            # RFC 7523 section 3 lets the server reject a reused jti, and this one rejects every reuse.
            # jti is required except from Google service accounts, because google-auth sends none.
            if not isinstance(jti, str) or not jti:
                raise jwt.MissingRequiredClaimError("jti")
            self._remember_assertion_id(client.client_id, jti, claims["exp"], now)
        return claims

    def _remember_assertion_id(self, client_id: str, jti: str, expires_at: float, now: float) -> None:
        with self._lock:
            # Forget ids whose assertions have expired: those assertions are rejected by exp anyway.
            for key, seen_expiry in list(self._used_assertion_ids.items()):
                if seen_expiry + CLOCK_SKEW_SECONDS < now:
                    del self._used_assertion_ids[key]
            if (client_id, jti) in self._used_assertion_ids:
                raise jwt.InvalidTokenError(f"jti {jti!r} was already used")
            self._used_assertion_ids[(client_id, jti)] = expires_at

    def _check_jwt_bearer_assertion(
        self, form: dict[str, str], authenticated: OAuthClient | None
    ) -> tuple[OAuthClient, str]:
        """Check the grant's assertion (RFC 7523 section 2.1 and 3.1); return the client and the subject."""
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "Missing assertion.")
        issuer = _unverified_claim(assertion, "iss", "invalid_grant")
        client = self._clients.get(issuer) if isinstance(issuer, str) else None
        if client is None or client.public_key_pem is None:
            raise OAuthError("invalid_grant", "The assertion's issuer is not a registered client with a public key.")
        if authenticated is not None and authenticated.client_id != client.client_id:
            raise OAuthError("invalid_grant", "The assertion's issuer is not the authenticated client.")
        audiences = [self.token_url, self.issuer]
        if client.service_account:
            # google-auth always sets aud to Google's token URL, whatever token_uri the key file names.
            audiences.append(GOOGLE_TOKEN_URL)
        try:
            claims = self._verify_assertion(assertion, client, audiences=audiences)
        except jwt.PyJWTError as err:
            # RFC 7523 section 3.1: the error for an invalid assertion is invalid_grant.
            raise OAuthError("invalid_grant", f"Invalid assertion: {err}.") from err
        subject = claims.get("sub")
        if subject is None:
            # RFC 7523 section 3 requires sub; Google service accounts leave it out to mean themselves.
            if not client.service_account:
                raise OAuthError("invalid_grant", "The assertion has no sub claim.")
            subject = client.client_id
        if subject != client.client_id and subject not in client.allowed_subjects:
            raise OAuthError("invalid_grant", f"The client may not act for subject {subject!r}.")
        return client, subject

    # -- issuing ------------------------------------------------------------------------------

    def _issue(self, client: OAuthClient, subject: str, scopes: list[str], form: dict[str, str]) -> dict[str, Any]:
        now = int(time.time())
        lifetime = client.token_lifetime_seconds
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "client_id": client.client_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
            "scope": " ".join(scopes),
        }
        # RFC 8707 `resource` and the common `audience` parameter both name the token's audience.
        audience = form.get("resource") or form.get("audience")
        if audience:
            claims["aud"] = audience
        token = jwt.encode(claims, self._signing_key, algorithm=ACCESS_TOKEN_ALGORITHM, headers={"kid": self._key_id})
        with self._lock:
            self.grant_counts[client.client_id] += 1
            self.issued_tokens.append(token)
        log.info("Issued an access token to %s for %s seconds", client.client_id, lifetime)
        # RFC 6749 section 5.1.
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        if scopes:
            body["scope"] = " ".join(scopes)
        return body


def _invalid_client(description: str, *, challenge: bool) -> OAuthError:
    """Build an invalid_client error; `challenge` is for a client that used Basic or sent no credentials."""
    if challenge:
        # RFC 6749 section 5.2: a client that tried the Authorization header gets 401 with WWW-Authenticate.
        return OAuthError(
            "invalid_client", description, status=401, headers={"WWW-Authenticate": 'Basic realm="m2m-sandbox"'}
        )
    # Other methods get 400: a 401 must carry WWW-Authenticate (RFC 9110 section 15.5.2), and no
    # HTTP authentication scheme covers credentials in the body.
    return OAuthError("invalid_client", description, status=400)


def _token_form(request: Request) -> dict[str, str]:
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        # RFC 6749 section 4.4.2: parameters are sent form-urlencoded in the body.
        raise OAuthError("invalid_request", "The body must be application/x-www-form-urlencoded.")
    try:
        repeated = request.form_repeats()
        form = request.form()
    except UnicodeDecodeError as err:
        raise OAuthError("invalid_request", "The body is not valid UTF-8.") from err
    if repeated:
        # RFC 6749 section 3.2: request parameters must not be included more than once.
        raise OAuthError("invalid_request", f"Parameters sent more than once: {', '.join(sorted(repeated))}.")
    return form


def _granted_scopes(client: OAuthClient, requested: str | None) -> list[str]:
    if not requested:
        return list(client.scopes)
    scopes = requested.split()
    unknown = [scope for scope in scopes if scope not in client.scopes]
    if unknown:
        raise OAuthError("invalid_scope", f"Scopes not allowed for this client: {' '.join(unknown)}.")
    return scopes


def _base64url(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_certificate_thumbprints(assertion: str, client: OAuthClient) -> None:
    """Require the x5t#S256 header (and x5t, when sent) to name the client's registered certificate.

    RFC 7515 sections 4.1.7 and 4.1.8 define both thumbprints. Entra ID finds the certificate by them.
    """
    if client.certificate_sha256 is None:
        return
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as err:
        raise _invalid_client(f"The client assertion has no readable header: {err}.", challenge=False) from err
    if header.get("x5t#S256") != client.certificate_sha256:
        raise _invalid_client(
            "The client assertion's x5t#S256 header does not name a certificate registered for the client.",
            challenge=False,
        )
    if "x5t" in header and header["x5t"] != client.certificate_sha1:
        raise _invalid_client(
            "The client assertion's x5t header does not name a certificate registered for the client.",
            challenge=False,
        )


def _unverified_claim(assertion: str, claim: str, error: str) -> Any:
    try:
        return jwt.decode(assertion, options={"verify_signature": False}).get(claim)
    except jwt.PyJWTError as err:
        raise OAuthError(error, f"The assertion is not a well-formed JWT: {err}.") from err


def _claimed_client_id(request: Request) -> str | None:
    """Return the client id a token request names, before any check, to match scripted responses."""
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization.split(" ", 1)[1].strip()).decode("utf-8")
            return unquote_plus(decoded.split(":", 1)[0])
        except (binascii.Error, UnicodeDecodeError):
            return None
    try:
        form = request.form()
    except UnicodeDecodeError:
        return None
    if form.get("client_id"):
        return form["client_id"]
    assertion = form.get("client_assertion") or form.get("assertion")
    if assertion:
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        return issuer if isinstance(issuer, str) else None
    return None


def generate_rsa_key() -> tuple[str, str]:
    """Return a new 2048-bit RSA key pair as (private key PKCS#8 PEM, public key PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem
