"""A client for the daemon's admin HTTP API (standard library only).

Two halves:

- **Discovery** (:func:`discover`): where the API is and which token to present, from
  explicit arguments, the ``CALLBOARD_ADMIN_URL`` / ``CALLBOARD_ADMIN_TOKEN_FILE``
  environment variables, or the daemon's state directory (its ``daemon.json`` and
  ``admin.token``).
- **Calls** (:class:`AdminClient`): one method per API endpoint, returning the decoded
  JSON. Failures raise a subclass of :class:`AdminClientError`:
  :class:`DiscoveryError` and :class:`Unreachable` (nothing was answered),
  :class:`AuthError` (401/403), :class:`ApiError` (any other error reply) and
  :class:`ProtocolError` (a reply that breaks the API contract).

The client never follows redirects (they would carry the bearer token to wherever they
point) and ignores ``http_proxy``-style environment variables (the token goes straight to
the daemon, never through a proxy).

>>> client = AdminClient("http://127.0.0.1:8765", "secret")
>>> client.url
'http://127.0.0.1:8765'
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "DAEMON_FILE",
    "ENV_TOKEN_FILE",
    "ENV_URL",
    "TOKEN_FILE",
    "AdminClient",
    "AdminClientError",
    "ApiError",
    "AuthError",
    "DiscoveryError",
    "Endpoint",
    "ProtocolError",
    "Reply",
    "Unreachable",
    "discover",
    "find_parent",
    "read_token",
    "resolve_state_dir",
]

ENV_URL = "CALLBOARD_ADMIN_URL"
ENV_TOKEN_FILE = "CALLBOARD_ADMIN_TOKEN_FILE"
_ENV_STATE_DIR = "CALLBOARD_DAEMON__STATE_DIR"
DAEMON_FILE = "daemon.json"
"""Written by the daemon into its state dir: ``{"url", "pid", "token_file"}``."""
TOKEN_FILE = "admin.token"
"""The token the daemon generates into its state dir when no tokens are configured."""

DEFAULT_TIMEOUT = 30.0
_ERROR_TEXT_LIMIT = 300

_T = TypeVar("_T")


# --- errors ------------------------------------------------------------------------------


class AdminClientError(Exception):
    """Anything that keeps an admin call from succeeding."""


class DiscoveryError(AdminClientError):
    """No URL or no usable token: the message says where we looked and what to pass."""


class Unreachable(AdminClientError):
    """No answer: connection refused, unknown host, TLS failure, timeout, broken reply."""


class ProtocolError(AdminClientError):
    """The daemon answered, but not as the API contract says (e.g. not JSON)."""


class ApiError(AdminClientError):
    """An error reply: HTTP ``status`` and the body's ``error`` object."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class AuthError(ApiError):
    """401 (the token was not accepted) or 403 (its role may not do this)."""


# --- discovery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where the admin API is, which token file to use, and where each came from."""

    url: str
    token_file: Path
    url_source: str
    """``--url``, ``$CALLBOARD_ADMIN_URL`` or the ``daemon.json`` path."""
    token_source: str
    state_dir: Path | None = None
    """Set when the state dir was consulted."""
    pid: int | None = None
    """The daemon's pid, from ``daemon.json`` (when the URL came from there)."""


def resolve_state_dir(
    state_dir: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The daemon's state dir: ``state_dir``, else ``[daemon] state_dir`` of the ``config``
    file (environment overrides applied, ``CALLBOARD_DAEMON__STATE_DIR`` included), else
    ``CALLBOARD_DAEMON__STATE_DIR``, else the default. ``~`` is expanded.

    Raises :class:`~callboard.errors.ConfigError` if ``config`` does not load.
    """
    from callboard.config import load_config

    env = os.environ if env is None else env
    if state_dir is not None:
        chosen = os.fspath(state_dir)
    elif config is not None:
        chosen = load_config(config, env=env).daemon.state_dir
    else:
        # The same parsing as the daemon's, but only this one variable: an unrelated bad
        # override must not stop the client from finding the daemon.
        only = {k: v for k, v in env.items() if k.upper() == _ENV_STATE_DIR}
        chosen = load_config({}, env=only).daemon.state_dir
    return Path(os.path.expanduser(chosen))


def discover(
    *,
    url: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Endpoint:
    """Find the admin API. URL and token file are each taken from the first of: the
    argument, the environment (``CALLBOARD_ADMIN_URL`` / ``CALLBOARD_ADMIN_TOKEN_FILE``),
    the state dir (see :func:`resolve_state_dir`): ``daemon.json``'s ``url`` and
    ``token_file``, the latter falling back to ``<state dir>/admin.token``.

    The state dir is read only if something is still missing. Raises
    :class:`DiscoveryError` (or ``ConfigError`` for a ``config`` that does not load).
    """
    env = os.environ if env is None else env
    url_source = token_source = ""
    if url:
        url_source = "--url"
    elif env.get(ENV_URL):
        url, url_source = env[ENV_URL], f"${ENV_URL}"
    token_path: Path | None = None
    if token_file:
        token_path, token_source = Path(token_file), "--token-file"
    elif env.get(ENV_TOKEN_FILE):
        token_path, token_source = Path(env[ENV_TOKEN_FILE]), f"${ENV_TOKEN_FILE}"
    if url and token_path is not None:
        return Endpoint(_check_url(url, url_source), token_path, url_source, token_source)

    sdir = resolve_state_dir(state_dir, config, env)
    info, info_path = _read_daemon_file(sdir)
    pid: int | None = None
    if not url:
        if info is None:
            raise DiscoveryError(
                f"no {DAEMON_FILE} in {sdir}: is the daemon running (callboard run)? "
                "Pass --url, or --state-dir / --config for the daemon's state dir"
            )
        found = info.get("url")
        if not isinstance(found, str) or not found:
            raise DiscoveryError(f"{info_path} has no url; pass --url")
        url, url_source = found, str(info_path)
        raw_pid = info.get("pid")
        pid = raw_pid if isinstance(raw_pid, int) and not isinstance(raw_pid, bool) else None
    if token_path is None:
        candidates: list[tuple[Path, str]] = []
        named = info.get("token_file") if info is not None else None
        if isinstance(named, str) and named:
            candidates.append((sdir / os.path.expanduser(named), str(info_path)))
        candidates.append((sdir / TOKEN_FILE, str(sdir)))
        for path, source in candidates:
            if path.is_file():
                token_path, token_source = path, source
                break
        else:
            looked = ", ".join(str(p) for p, _ in candidates)
            raise DiscoveryError(
                f"no token file found in {sdir} (looked for {looked}); pass --token-file "
                f"or set {ENV_TOKEN_FILE}"
            )
    return Endpoint(_check_url(url, url_source), token_path, url_source, token_source, sdir, pid)


def _read_daemon_file(sdir: Path) -> tuple[dict[str, Any] | None, Path]:
    path = sdir / DAEMON_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, path
    except OSError as exc:
        raise DiscoveryError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DiscoveryError(f"{path} is not valid JSON ({exc}); pass --url") from None
    if not isinstance(data, dict):
        raise DiscoveryError(f"{path} is not a JSON object; pass --url")
    return data, path


def _check_url(url: str, source: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DiscoveryError(
            f"invalid admin API URL {url!r} (from {source}): expected http://HOST:PORT "
            "or https://HOST:PORT"
        )
    return url.rstrip("/")


def read_token(path: Path, source: str = "") -> str:
    """The secret in token file ``path`` (whitespace stripped). Raises
    :class:`DiscoveryError` if it is missing, unreadable or empty."""
    origin = f" (from {source})" if source else ""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DiscoveryError(
            f"token file {path}{origin} does not exist; pass --token-file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DiscoveryError(f"cannot read token file {path}{origin}: {reason}") from None
    if not secret:
        raise DiscoveryError(f"token file {path}{origin} is empty; pass --token-file")
    return secret


def find_parent(tree: Mapping[str, Any], child_id: str) -> str | None:
    """The id of the supervisor whose direct child is ``child_id`` in a ``GET /v1/tree``
    node, or ``None`` if no node has that id (or it is the root)."""
    for child in tree.get("children") or []:
        if not isinstance(child, Mapping):
            continue
        if child.get("id") == child_id:
            parent = tree.get("id")
            return parent if isinstance(parent, str) else None
        found = find_parent(child, child_id)
        if found is not None:
            return found
    return None


# --- calls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A successful HTTP reply."""

    status: int
    content_type: str
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The decoded JSON body (``{}`` for an empty body, e.g. a bare 202)."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ProtocolError(
                f"the daemon's reply (HTTP {self.status}) is not JSON: {exc}"
            ) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn every 3xx into an error instead of re-sending the token elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class AdminClient:
    """Calls to one daemon's admin API at ``url`` with bearer ``token``.

    ``timeout`` is how long each call waits for the reply (seconds); methods that make the
    daemon wait longer take their own. For ``https`` URLs, ``cacert`` is a PEM file to
    verify the daemon's certificate against (default: the system's CAs), and ``insecure``
    skips verification altogether.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cacert: str | os.PathLike[str] | None = None,
        insecure: bool = False,
    ) -> None:
        self.url = _check_url(url, "the url argument")
        self.timeout = timeout
        self._token = token
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({}),
            _NoRedirect(),
        ]
        if self.url.startswith("https:"):
            handlers.append(urllib.request.HTTPSHandler(context=_ssl_context(cacert, insecure)))
        self._opener = urllib.request.build_opener(*handlers)

    # -- transport ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        auth: bool = True,
        accept: str = "application/json",
    ) -> Reply:
        """Send one request (``body`` JSON-encoded unless ``None``) and return the reply.

        Raises :class:`Unreachable`, :class:`AuthError` or :class:`ApiError`.
        """
        from callboard import __version__

        headers = {"Accept": accept, "User-Agent": f"callboard-admin/{__version__}"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth and self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        wait = self.timeout if timeout is None else timeout
        try:
            with self._opener.open(req, timeout=wait) as resp:
                return Reply(resp.status, resp.headers.get_content_type(), resp.read())
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                exc.close()
            raise _error_from(exc.code, exc.headers, body) from None
        except urllib.error.URLError as exc:
            raise Unreachable(self._unreachable(exc.reason, wait)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(self._unreachable(exc, wait)) from None

    def _unreachable(self, reason: object, wait: float) -> str:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return (
                f"cannot connect to {self.url}: TLS certificate verification failed "
                f"({reason.verify_message or reason}); pass --cacert FILE with the "
                "daemon's certificate (or --insecure to skip verification)"
            )
        if isinstance(reason, TimeoutError):
            return f"no reply from {self.url} within {wait:g} s; pass --timeout to wait longer"
        if isinstance(reason, OSError) and reason.strerror:
            text = reason.strerror
        else:
            text = str(reason) or type(reason).__name__
        return f"cannot connect to {self.url}: {text}"

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request(method, path, body, **kw).json()

    def _object(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        value = self._json(method, path, body, **kw)
        if not isinstance(value, dict):
            raise ProtocolError(f"{method} {path}: expected a JSON object, got {_kind(value)}")
        return value

    def _list(self, method: str, path: str) -> list[Any]:
        value = self._json(method, path)
        if not isinstance(value, list):
            raise ProtocolError(f"{method} {path}: expected a JSON list, got {_kind(value)}")
        return value

    # -- endpoints ------------------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        """``GET /healthz`` (no token needed)."""
        return self._object("GET", "/healthz", auth=False)

    def readyz(self) -> dict[str, Any]:
        return self._object("GET", "/readyz")

    def status(self) -> dict[str, Any]:
        return self._object("GET", "/v1/status")

    def tree(self) -> dict[str, Any]:
        return self._object("GET", "/v1/tree")

    def children(self, sup: str) -> list[Any]:
        return self._list("GET", f"/v1/supervisors/{_seg(sup)}/children")

    def count(self, sup: str) -> dict[str, Any]:
        return self._object("GET", f"/v1/supervisors/{_seg(sup)}/count")

    def spec(self, sup: str, child_id: str) -> dict[str, Any]:
        return self._object("GET", f"/v1/supervisors/{_seg(sup)}/children/{_seg(child_id)}")

    def start_child(
        self,
        sup: str,
        spec: Mapping[str, Any] | None = None,
        *,
        args: Mapping[str, Any] | None = None,
        child_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Either a full child ``spec``, or ``args`` (and optionally ``child_id``) for a
        simple_one_for_one supervisor. Returns ``{"id": ...}``."""
        if (spec is None) == (args is None):
            raise ValueError("give either spec or args")
        if spec is not None and child_id is not None:
            raise ValueError("child_id goes with args; put the id in the spec")
        body: dict[str, Any] = {"spec": dict(spec)} if spec is not None else {"args": args}
        if child_id is not None:
            body["id"] = child_id
        path = f"/v1/supervisors/{_seg(sup)}/children"
        return self._object("POST", path, body, timeout=timeout)

    def terminate(self, sup: str, child_id: str, timeout: float | None = None) -> dict[str, Any]:
        path = f"/v1/supervisors/{_seg(sup)}/children/{_seg(child_id)}/terminate"
        return self._object("POST", path, timeout=timeout)

    def restart(self, sup: str, child_id: str, timeout: float | None = None) -> dict[str, Any]:
        path = f"/v1/supervisors/{_seg(sup)}/children/{_seg(child_id)}/restart"
        return self._object("POST", path, timeout=timeout)

    def delete(self, sup: str, child_id: str, timeout: float | None = None) -> dict[str, Any]:
        path = f"/v1/supervisors/{_seg(sup)}/children/{_seg(child_id)}"
        return self._object("DELETE", path, timeout=timeout)

    def ask(
        self,
        name: str,
        type_name: str,
        payload: Any,
        timeout: float = 5.0,
        http_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Ask actor ``name``; the daemon waits up to ``timeout`` s for the reply and the
        HTTP call waits ``http_timeout`` (default: ``timeout`` + 10 s). Returns
        ``{"type", "payload"}``."""
        body = {"type": type_name, "payload": payload, "timeout": timeout}
        wait = timeout + 10.0 if http_timeout is None else http_timeout
        return self._object("POST", f"/v1/actors/{_seg(name)}/ask", body, timeout=wait)

    def tell(self, name: str, type_name: str, payload: Any) -> dict[str, Any]:
        body = {"type": type_name, "payload": payload}
        return self._object("POST", f"/v1/actors/{_seg(name)}/tell", body)

    def kill(self, name: str) -> dict[str, Any]:
        """SIGKILL actor ``name``'s process. Returns ``{"pid": ...}``."""
        return self._object("POST", f"/v1/actors/{_seg(name)}/kill")

    def breakers(self) -> list[Any]:
        """Every circuit breaker's snapshot (``GET /v1/breakers``'s ``breakers``)."""
        value = self._object("GET", "/v1/breakers").get("breakers")
        if not isinstance(value, list):
            raise ProtocolError(f"GET /v1/breakers: expected a breakers list, got {_kind(value)}")
        return value

    def set_breaker(self, route: str, state: str) -> list[Any]:
        """Force the breakers of ``route`` (``caller->target``, or ``target`` for every
        caller) ``"open"`` or ``"closed"``. Returns the snapshots of those changed."""
        value = self._object("POST", "/v1/breakers", {"route": route, "state": state})
        changed = value.get("changed")
        if not isinstance(changed, list):
            raise ProtocolError(f"POST /v1/breakers: expected a changed list, got {_kind(changed)}")
        return changed

    def queue_stats(self, name: str) -> dict[str, Any]:
        """Queue ``name``'s depth, consumers and totals (``GET /v1/queues/{name}``'s
        ``stats``)."""
        return self._member("GET", f"/v1/queues/{_seg(name)}", "stats", dict)

    def dead_letters(self, name: str, limit: int = 100, offset: int = 0) -> list[Any]:
        """Up to ``limit`` dead letters of queue ``name``, oldest first, from ``offset``."""
        query = urllib.parse.urlencode({"limit": limit, "offset": offset})
        path = f"/v1/queues/{_seg(name)}/dead-letters?{query}"
        return self._member("GET", path, "dead_letters", list)

    def replay_dead_letters(self, name: str, ids: list[str] | None = None) -> int:
        """Put dead letters of queue ``name`` (``ids``, or all) back on it; how many."""
        path = f"/v1/queues/{_seg(name)}/dead-letters/replay"
        return self._member("POST", path, "replayed", int, {"ids": ids})

    def purge_dead_letters(self, name: str, ids: list[str] | None = None) -> int:
        """Delete dead letters of queue ``name`` (``ids``, or all) for good; how many."""
        path = f"/v1/queues/{_seg(name)}/dead-letters/purge"
        return self._member("POST", path, "purged", int, {"ids": ids})

    def enqueue(
        self,
        name: str,
        type_name: str,
        data: Any,
        priority: int = 0,
        msg_id: str | None = None,
    ) -> str:
        """Put message ``type_name`` with fields ``data`` on queue ``name`` (priority 0-9,
        9 first; ``msg_id``: the idempotency key). Returns the message's id."""
        body = {"type": type_name, "data": data, "priority": priority, "id": msg_id}
        return self._member("POST", f"/v1/queues/{_seg(name)}/messages", "id", str, body)

    def bus_stats(self) -> dict[str, Any]:
        """The event bus's published count and subscriptions (``GET /v1/bus``'s ``stats``)."""
        return self._member("GET", "/v1/bus", "stats", dict)

    def publish(self, topic: str, type_name: str, data: Any) -> int:
        """Publish event ``type_name`` with fields ``data`` on ``topic``; returns how many
        subscriptions it reached."""
        body = {"topic": topic, "type": type_name, "data": data}
        return self._member("POST", "/v1/bus/publish", "subscribers", int, body)

    def _member(self, method: str, path: str, key: str, kind: type[_T], body: Any = None) -> _T:
        """The reply object's ``key``, which must be a ``kind``."""
        value = self._object(method, path, body).get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            noun = {dict: "an object", list: "a list", int: "an integer", str: "a string"}
            raise ProtocolError(
                f"{method} {path}: expected {noun.get(kind, kind.__name__)} under {key!r}, "
                f"got {_kind(value)}"
            )
        return value

    def stop(self) -> dict[str, Any]:
        """Ask the daemon to stop (it answers 202 and stops afterwards)."""
        return self._object("POST", "/v1/stop")

    def metrics(self) -> str:
        """The Prometheus text exposition."""
        return self.request("GET", "/metrics", accept="text/plain").text

    def messages(self) -> list[Any]:
        """The registered message types, ``[{name, version, schema}, ...]`` (also accepted
        wrapped as ``{"messages": [...]}``)."""
        value = self._json("GET", "/v1/messages")
        if isinstance(value, dict) and isinstance(value.get("messages"), list):
            value = value["messages"]
        if not isinstance(value, list):
            raise ProtocolError(f"GET /v1/messages: expected a JSON list, got {_kind(value)}")
        return value

    def find_supervisor(self, child_id: str) -> str | None:
        """The supervisor of ``child_id`` according to the tree, or ``None``."""
        return find_parent(self.tree(), child_id)


def _seg(value: str) -> str:
    """One URL path segment: everything but unreserved characters percent-encoded."""
    return urllib.parse.quote(value, safe="")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _ssl_context(cacert: str | os.PathLike[str] | None, insecure: bool) -> ssl.SSLContext:
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=os.fspath(cacert) if cacert else None)
    except (OSError, ssl.SSLError) as exc:
        raise DiscoveryError(f"cannot load --cacert {cacert}: {exc}") from None


def _error_from(status: int, headers: Any, body: bytes) -> ApiError:
    """The exception for an error reply, from the contract's ``{"error": {...}}`` body or,
    failing that (a proxy's HTML page, an empty body), the status line."""
    code, message, details = f"http_{status}", "", None
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
        details = error.get("details")
    if not message:
        text = body.decode("utf-8", errors="replace").strip() if data is None else ""
        reason = http.client.responses.get(status, "error")
        message = f"{reason}: {text[:_ERROR_TEXT_LIMIT]}" if text else reason
    if 300 <= status < 400:
        location = headers.get("Location") if headers is not None else None
        code = "redirect"
        message = (
            f"the admin API redirected to {location or '(no Location)'}; redirects are not "
            "followed (they would carry the token): pass the final URL with --url"
        )
    cls = AuthError if status in (401, 403) else ApiError
    return cls(status, code, message, details)
