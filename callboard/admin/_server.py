"""``AdminServer``: the daemon's authenticated JSON admin API over HTTP(S), stdlib only.

::

    server = AdminServer(system, tokens, AuditLog(state / "audit.log"), "127.0.0.1", 0)
    server.start()                  # binds (OSError if the port is taken), serves in a thread
    print(server.url)               # http://127.0.0.1:<the port picked>
    ...
    server.close()

Each request runs in its own thread (``ThreadingHTTPServer``): route, authenticate
(``Authorization: Bearer <secret>``), authorize (the role table of
:mod:`callboard.security`), read the body (at most 1 MiB), call the endpoint, write one
audit line and one ``admin_request`` log line, answer. Every failure is answered with the
JSON error shape of :mod:`callboard.admin._errors`; nothing drops the connection.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from callboard.admin._errors import ApiError, from_exception, status_code
from callboard.admin._routes import JSON_TYPE, Call, Reply, resolve
from callboard.observability.logging import get_logger
from callboard.security import ACTIONS, AuditLog, TokenStore, allowed

if TYPE_CHECKING:
    from types import TracebackType

    from callboard.system import System

__all__ = ["MAX_BODY_BYTES", "AdminServer"]

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted; a larger one is answered 413."""

_DRAIN_LIMIT = 16 * MAX_BODY_BYTES  # an unwanted body larger than this: just close
_IDLE_TIMEOUT = 30.0  # seconds a connection may stay silent (slow or idle clients)
_POLL_INTERVAL = 0.1  # how fast close() stops the accept loop


class AdminServer:
    """Serve the admin API of ``system`` on ``host``:``port`` (0: a free port).

    ``tokens`` authenticates requests, ``audit`` records each one (except ``/healthz``).
    With ``tls_cert`` and ``tls_key`` (PEM files) it serves HTTPS. ``on_stop`` is called,
    in a thread of its own, once the answer to ``POST /v1/stop`` has been sent; without
    it, that request stops ``system`` itself.
    """

    def __init__(
        self, system: System, tokens: TokenStore, audit: AuditLog, host: str, port: int,
        tls_cert: str = "", tls_key: str = "", on_stop: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("give both tls_cert and tls_key, or neither")
        self.system = system
        self.tokens = tokens
        self.audit = audit
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.on_stop = on_stop
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def url(self) -> str:
        """``http(s)://host:port`` with the port actually bound; ``RuntimeError`` before
        :meth:`start`."""
        if self._url is None:
            raise RuntimeError("the admin server is not started")
        return self._url

    def start(self) -> None:
        """Bind and serve in a daemon thread. Raises ``OSError`` if the port is taken or
        the certificate or key cannot be loaded (``ssl.SSLError`` is an ``OSError``)."""
        with self._lock:
            if self._httpd is not None:
                raise RuntimeError("the admin server is already started")
            context = _tls_context(self.tls_cert, self.tls_key) if self.tls else None
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            httpd = _HTTPServer((self.host, self.port), family, self)
            if context is not None:
                # The handshake happens in the connection's own thread (see _Handler.setup),
                # so a slow or silent client cannot stall the accept loop.
                httpd.socket = context.wrap_socket(
                    httpd.socket, server_side=True, do_handshake_on_connect=False
                )
            self.port = int(httpd.server_address[1])
            host = f"[{self.host}]" if ":" in self.host else self.host
            self._url = f"{'https' if context else 'http'}://{host}:{self.port}"
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"callboard-admin:{self.port}", daemon=True,
            )  # fmt: skip
            self._thread.start()
        log = get_logger()
        log.info("admin_api_started", url=self._url, tls=self.tls)
        if context is None and not _loopback(self.host):
            log.warning(
                "admin_api_plaintext",
                url=self._url,
                hint="bearer tokens cross the network in clear text: set tls_cert and tls_key",
            )

    def close(self) -> None:
        """Stop accepting and close the socket (idempotent). Requests already running
        finish in their (daemon) threads; their system calls then see a stopped system."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        get_logger().info("admin_api_stopped", url=self._url)

    def __enter__(self) -> AdminServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() must not wait for idle keep-alive connections
    allow_reuse_address = True  # rebinding right after a restart (TIME_WAIT) is fine...
    allow_reuse_port = False  # ...sharing the port with a live listener is not
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], family: int, admin: AdminServer) -> None:
        self.address_family = family
        self.admin = admin
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve our own name (socket.getfqdn): a DNS
        # round trip that can hang the start; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection that failed outside a request: TLS handshake, reset, timeout.
        exc = sys.exc_info()[1]
        get_logger().info(
            "admin_connection_error", client=_peer(client_address), error=_describe(exc)
        )


@dataclass
class _Exchange:
    """What the audit and log lines say about one request."""

    method: str
    path: str
    remote: str
    audited: bool = True
    token_id: str | None = None
    role: str | None = None
    action: str = "unknown"
    outcome: str = ""
    status: int = 0
    fields: dict[str, Any] = field(default_factory=lambda: {"target": None})


class _Handler(BaseHTTPRequestHandler):
    server_version = "callboard-admin"
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answer garbage with a status line, not HTTP/0.9
    timeout = _IDLE_TIMEOUT

    _unread = 0  # bytes of request body not read (yet)

    # -- connection ---------------------------------------------------------------------------

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def handle_one_request(self) -> None:
        self._unread = 0
        super().handle_one_request()

    def version_string(self) -> str:
        return self.server_version  # no Python version for whoever probes the port

    def log_message(self, format: str, *args: Any) -> None:
        """http.server's own stderr lines: replaced by the ``admin_request`` log event."""

    @property
    def _admin(self) -> AdminServer:
        return cast(_HTTPServer, self.server).admin

    # -- one request --------------------------------------------------------------------------

    def _serve(self) -> None:
        started = time.monotonic()
        admin = self._admin
        path = urlsplit(self.path).path or "/"
        ex = _Exchange(self.command, path, _peer(self.client_address))
        reply: Reply | None = None
        try:
            reply = self._process(admin, ex)
            status, data = reply.status, _render(reply)
            ctype, headers = reply.content_type, reply.headers
            ex.outcome = "ok"
        except Exception as exc:
            reply = None
            err = from_exception(exc)
            if err.status == 500:
                get_logger().error(
                    "admin_internal_error", method=ex.method, path=path, action=ex.action,
                    exc_info=exc,
                )  # fmt: skip
            status, data, ctype, headers = err.status, _json(err.body()), JSON_TYPE, err.headers
            ex.outcome = ex.outcome or f"error:{err.code}"
        ex.status = status
        self._record(admin, ex, started)
        self._write(status, data, ctype, headers)
        if reply is not None and reply.after is not None:
            threading.Thread(
                target=_run_after, args=(reply.after,), name="callboard-admin-after"
            ).start()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _process(self, admin: AdminServer, ex: _Exchange) -> Reply:
        self._unread = self._declared_length()
        res = resolve(self.command, ex.path)
        route = res.route
        if route is not None:
            ex.action = route.action or "public"
            if route.target is not None:
                ex.fields["target"] = route.target.format(**res.params)
        token = None
        if res.public:
            ex.audited = False
        else:
            presented = self._bearer()
            token = admin.tokens.authenticate(presented)
            if token is None:
                ex.outcome = "unauthorized"
                challenge = 'Bearer realm="callboard"'
                if presented is not None:
                    challenge += ', error="invalid_token"'
                raise ApiError(
                    401, "unauthorized",
                    "a valid token is required: Authorization: Bearer <secret>"
                    if presented is None else "the token is not valid",
                    headers={"WWW-Authenticate": challenge},
                )  # fmt: skip
            ex.token_id, ex.role = token.id, token.role
        if route is None:
            if res.allowed:
                raise ApiError(
                    405, "method_not_allowed", f"{self.command} is not allowed on {ex.path}",
                    {"allowed": res.allowed}, headers={"Allow": ", ".join(res.allowed)},
                )  # fmt: skip
            raise ApiError(404, "not_found", f"no endpoint {ex.path}")
        if token is not None and route.action is not None and not allowed(token.role, route.action):
            ex.outcome = "denied"
            need = ACTIONS.get(route.action)
            raise ApiError(
                403, "forbidden", f"role {token.role!r} may not {route.action} (needs {need})",
                {"action": route.action, "role": token.role, "required": need},
            )  # fmt: skip
        raw = self._read_body()
        body = _json_object(raw) if route.has_body else {}
        call = Call(admin.system, res.params, body, admin.url, admin.on_stop, ex.fields,
                    urlsplit(self.path).query)
        return route.endpoint(call)

    def _bearer(self) -> str | None:
        value = self.headers.get("Authorization")
        if value is None:
            return None
        scheme, _, secret = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            return ""  # presented, but not a bearer token: invalid
        return secret.strip()

    # -- bodies -------------------------------------------------------------------------------

    def _declared_length(self) -> int:
        """The body's announced size (-1: unknown, chunked or malformed)."""
        if self.headers.get("Transfer-Encoding") is not None:
            return -1
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        raw = raw.strip()
        return int(raw) if re.fullmatch(r"[0-9]{1,18}", raw) else -1

    def _read_body(self) -> bytes:
        n = self._unread
        if n < 0:
            if self.headers.get("Transfer-Encoding") is not None:
                raise ApiError(
                    411, "length_required",
                    "send the body with a Content-Length (chunked bodies are not supported)",
                )  # fmt: skip
            raise ApiError(400, "bad_request", "invalid Content-Length header")
        if n > MAX_BODY_BYTES:
            raise ApiError(
                413, "payload_too_large",
                f"the request body is {n} bytes; the limit is {MAX_BODY_BYTES}",
                {"limit": MAX_BODY_BYTES, "length": n},
            )  # fmt: skip
        data = self.rfile.read(n) if n else b""
        self._unread = 0
        if len(data) < n:
            self.close_connection = True
            raise ApiError(400, "bad_request", "the request body ended early")
        return data

    def _discard_body(self) -> None:
        """Read and drop a body the request was not served with, so the connection stays
        usable, and so closing it does not reset it under the client's feet (a TCP reset
        can destroy the answer before the client has read it)."""
        n, self._unread = self._unread, 0
        if n == 0:
            return
        if n < 0 or n > _DRAIN_LIMIT:
            self.close_connection = True
            return
        if n > MAX_BODY_BYTES:
            self.close_connection = True
        while n > 0:
            chunk = self.rfile.read(min(n, 65536))
            if not chunk:
                self.close_connection = True
                return
            n -= len(chunk)

    # -- answers ------------------------------------------------------------------------------

    def _write(self, status: int, data: bytes, ctype: str, headers: dict[str, str]) -> None:
        linger = self._unread > MAX_BODY_BYTES or self._unread < 0
        try:
            if not linger:
                self._discard_body()
            else:
                self.close_connection = True
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in headers.items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
            if linger:  # let the client finish sending before we close (no reset)
                self._discard_body()
        except OSError as exc:
            self.close_connection = True
            get_logger().info(
                "admin_connection_error", client=_peer(self.client_address), error=_describe(exc)
            )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (malformed request line or headers, unknown method):
        the same JSON shape, audited and logged like any request."""
        started = time.monotonic()
        self.close_connection = True
        err = ApiError(code, status_code(code), message or explain or "bad request")
        path = urlsplit(getattr(self, "path", "") or "").path
        ex = _Exchange(
            getattr(self, "command", None) or "", path, _peer(self.client_address),
            outcome=f"error:{err.code}", status=code,
        )  # fmt: skip
        self._record(self._admin, ex, started)
        self._unread = 0
        self._write(code, _json(err.body()), JSON_TYPE, {})

    def _record(self, admin: AdminServer, ex: _Exchange, started: float) -> None:
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        log = get_logger()
        if ex.audited:
            try:
                admin.audit.record(
                    token_id=ex.token_id, role=ex.role, action=ex.action, outcome=ex.outcome,
                    status=ex.status, method=ex.method, path=ex.path, remote=ex.remote,
                    **ex.fields,
                )  # fmt: skip
            except Exception as exc:  # the answer still goes out; the log says what is missing
                log.error("admin_audit_failed", path=ex.path, error=_describe(exc))
        emit = log.debug if not ex.audited and ex.status < 400 else log.info
        emit(
            "admin_request", method=ex.method, path=ex.path, status=ex.status,
            token_id=ex.token_id, action=ex.action, outcome=ex.outcome, duration_ms=duration_ms,
        )  # fmt: skip


def _json(value: Any) -> bytes:
    return (json.dumps(value, default=str) + "\n").encode()


def _render(reply: Reply) -> bytes:
    return reply.raw if reply.raw is not None else _json(reply.body)


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"the body is not valid JSON: {exc.msg}",
            {"line": exc.lineno, "column": exc.colno},
        ) from None  # fmt: skip
    except (ValueError, RecursionError):  # not UTF-8/16/32, or nested too deep
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(
            400, "invalid_request", "the body must be a JSON object",
            {"errors": [{"loc": [], "msg": "must be a JSON object", "type": "dict_type"}]},
        )  # fmt: skip
    return value


def _run_after(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as exc:
        get_logger().error("admin_after_failed", error=_describe(exc), exc_info=exc)


def _peer(address: Any) -> str:
    try:
        return f"{address[0]}:{address[1]}"
    except (TypeError, IndexError):
        return str(address)


def _describe(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
