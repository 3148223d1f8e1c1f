"""A small threaded HTTPS server for the sandbox's protocol emulators.

Each emulator is an `App`: a plain object whose `handle(request)` returns a `Response`. This module
owns sockets, TLS, HTTP/1.1 framing and routing, so the emulators stay about their protocol.
The server binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from airflow_provider_m2m.sandbox.tls import TLSFiles

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    """One HTTP request as an emulator receives it. `params` contains the route's named groups."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def query_value(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        """Decode an application/x-www-form-urlencoded body; a repeated parameter keeps its first value."""
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {name: values[0] for name, values in parsed.items()}

    def form_repeats(self) -> list[str]:
        """Names of form parameters sent more than once (RFC 6749 section 3.2 forbids that)."""
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return [name for name, values in parsed.items() if len(values) > 1]


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode("utf-8"), merged)

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": f"{content_type};charset=UTF-8"})


class ConnectionReset(Exception):
    """Raised by an App to drop the connection with a TCP reset instead of sending a response.

    Tests use it to inject the network fault a client sees when a proxy or load balancer kills
    the connection mid-request.
    """


class App(Protocol):
    def handle(self, request: Request) -> Response: ...


Handler = Callable[[Request], Response]


class Router:
    """Dispatch requests by method and path pattern; patterns use `{name}` for one path segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/"))
        self._routes.append((method.upper(), re.compile(f"^{regex}/?$"), handler))

    def handle(self, request: Request) -> Response:
        path_matched = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                request.params = match.groupdict()
                return handler(request)
        if path_matched:
            return Response.json(405, {"error": "method_not_allowed", "method": request.method})
        return Response.json(404, {"error": "not_found", "path": request.path})


def _handler_class(app: App, name: str) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"m2m-sandbox-{name}"

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers=self.headers,
                body=body,
            )
            try:
                response = app.handle(request)
            except ConnectionReset:
                self._reset()
                return
            except Exception:
                log.exception("%s sandbox failed on %s %s", name, self.command, split.path)
                response = Response.json(500, {"error": "server_error"})
            self.send_response(response.status)
            for header, value in response.headers.items():
                self.send_header(header, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def _reset(self) -> None:
            # SO_LINGER on with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            log.info("%s sandbox reset the connection of %s %s, as a test requested", name, self.command, self.path)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s sandbox: " + format, name, *args)

    return _Handler


class _TLSServer(ThreadingHTTPServer):
    """Threaded server that does the TLS handshake in the connection's own thread, so one slow
    client cannot stall `accept` for the others."""

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls_socket = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            log.debug("TLS handshake with %s failed: %s", client_address, err)
            return
        try:
            super().finish_request(tls_socket, client_address)
        finally:
            tls_socket.close()


class SandboxServer:
    """Serve one `App` over HTTPS on 127.0.0.1 in a background thread."""

    def __init__(self, app: App, tls: TLSFiles | None, *, name: str, port: int = 0) -> None:
        self.name = name
        self._httpd = _TLSServer((LOOPBACK, port), _handler_class(app, name))
        self.scheme = "http"
        if tls is not None:
            self._httpd.ssl_context = tls.server_context()
            self.scheme = "https"
        # `stop` waits up to one poll interval for serve_forever to notice the shutdown. A short
        # interval matters because the default 0.5 s adds up over a suite that starts a server per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{name}", daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        log.info("%s sandbox listening on %s", self.name, self.url)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
