"""The admin API's endpoints: the route table and one function per endpoint.

Each route names the action of :mod:`callboard.security._roles` it performs (``None``: a
public route, no token and no audit line). An endpoint takes a :class:`Call` and returns
a :class:`Reply`, or raises: :class:`~callboard.admin._errors.ApiError` or one of the
runtime's exceptions, which the server turns into the JSON error shape.

An endpoint that takes query parameters reads ``Call.query``, the raw query string (the
route table matches the path only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

import callboard
from callboard.actors._messaging import BUS
from callboard.admin._errors import ApiError, pydantic_errors
from callboard.bus._topics import InvalidTopic, validate_topic
from callboard.config import ChildSpec
from callboard.config._messaging import QUEUE_NAME, queue_actor
from callboard.errors import InvalidMessage, NoSuchActor
from callboard.messages import Message, registered_types
from callboard.resilience import parse_route

if TYPE_CHECKING:
    from callboard.system import System

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "JSON_TYPE",
    "MAX_ASK_TIMEOUT",
    "METRICS_TYPE",
    "ROUTES",
    "Call",
    "Reply",
    "Resolved",
    "Route",
    "resolve",
]

JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_ASK_TIMEOUT = 5.0
MAX_ASK_TIMEOUT = 300.0


@dataclass
class Call:
    """One authorized request, as an endpoint sees it."""

    system: System
    params: dict[str, str]
    body: dict[str, Any]
    api_url: str
    on_stop: Callable[[], None] | None
    audit: dict[str, Any] = field(default_factory=dict)
    """``target`` and extra fields for the audit line; an endpoint may refine them."""
    query: str = ""
    """The request's query string, undecoded (``limit=10&offset=20``), without the ``?``."""


@dataclass
class Reply:
    """A successful answer: ``body`` as JSON, or ``raw`` bytes of ``content_type``.

    ``after`` runs once the response has been sent (``POST /v1/stop``).
    """

    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    after: Callable[[], None] | None = None


Endpoint = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    """Path segments; ``{name}`` captures one (percent-decoded) segment."""
    action: str | None
    endpoint: Endpoint
    target: str | None = None
    """Audit target, formatted with the captured segments (e.g. ``{sup}/{id}``)."""
    has_body: bool = False
    """Whether the endpoint reads a JSON object from the request body."""

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


@dataclass(frozen=True)
class Resolved:
    """What a request line maps to: the ``route`` and its captured ``params``, or else
    ``allowed``, the methods the path takes (empty: no such path). ``public``: the path
    is served without a token and without an audit line."""

    route: Route | None
    params: dict[str, str]
    allowed: list[str]
    public: bool


def resolve(method: str, path: str) -> Resolved:
    """Match ``method`` and ``path`` (percent-encoded, without the query) to a route."""
    segments = [unquote(s) for s in path.split("/")[1:]] if path.startswith("/") else []
    others: list[Route] = []
    for route in ROUTES:
        params = route.match(segments)
        if params is None:
            continue
        if route.method == method:
            return Resolved(route, params, [route.method], route.action is None)
        others.append(route)
    public = bool(others) and all(r.action is None for r in others)
    return Resolved(None, {}, sorted({r.method for r in others}), public)


# -- request bodies ------------------------------------------------------------------------

_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Send(_Body):
    """``POST /v1/actors/{name}/ask`` and ``/tell``."""

    type: str = Field(min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(None, ge=1)
    """The payload's schema version (default: the registered class's); older ones are
    upgraded like on the wire."""
    timeout: float = Field(DEFAULT_ASK_TIMEOUT, gt=0, le=MAX_ASK_TIMEOUT)


class _StartChild(_Body):
    """``POST /v1/supervisors/{sup}/children``."""

    spec: dict[str, Any] | None = None
    args: dict[str, Any] | None = None
    id: str | None = Field(None, pattern=_ID_PATTERN)

    @model_validator(mode="after")
    def _spec_or_args(self) -> _StartChild:
        if self.spec is not None and (self.args is not None or self.id is not None):
            raise ValueError(
                "give either spec (a full child spec) or args and an optional id "
                "(a simple_one_for_one supervisor), not both"
            )
        return self


class _SetBreaker(_Body):
    """``POST /v1/breakers``."""

    route: str = Field(min_length=1)
    """``caller->target`` (``host->target`` for the daemon's own calls) or ``target``."""
    state: Literal["open", "closed"]

    @field_validator("route")
    @classmethod
    def _route(cls, v: str) -> str:
        parse_route(v)  # ValueError("invalid_route: ...")
        return v


_MsgId = Annotated[str, Field(min_length=1, max_length=128)]
"""A queued message's id (the store's limit)."""
_MAX_IDS = 10_000
"""Most dead-letter ids one replay or purge request may name."""


class _DeadLetterIds(_Body):
    """``POST /v1/queues/{name}/dead-letters/replay`` and ``/purge``."""

    ids: list[_MsgId] | None = Field(max_length=_MAX_IDS)
    """Required: the dead letters' ids, or ``null`` for every one of them."""


class _Enqueue(_Body):
    """``POST /v1/queues/{name}/messages``."""

    type: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(None, ge=1)
    priority: int = Field(0, ge=0, le=9)
    id: _MsgId | None = None
    """The idempotency key (default: a fresh id); the same id again within the queue's
    ``dedupe_window`` is dropped as a duplicate."""


class _Publish(_Body):
    """``POST /v1/bus/publish``."""

    topic: str = Field(min_length=1)
    type: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(None, ge=1)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return validate_topic(v)  # InvalidTopic, a ValueError("invalid_topic: ...")


class _Page(_Body):
    """``GET /v1/queues/{name}/dead-letters``'s query parameters."""

    limit: int = Field(100, ge=1, le=10_000)
    offset: int = Field(0, ge=0)


_B = TypeVar("_B", bound=_Body)


def _parse(model: type[_B], body: dict[str, Any]) -> _B:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_request", f"invalid request body: {exc.error_count()} error(s)",
            {"errors": pydantic_errors(exc)},
        ) from None  # fmt: skip


def _query(model: type[_B], query: str) -> _B:
    """``query`` (``a=1&b=2``) validated by ``model``; errors are located under
    ``["query", <parameter>]``."""
    try:
        pairs = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                         max_num_fields=32)  # fmt: skip
    except ValueError as exc:
        raise ApiError(
            400, "invalid_request", f"invalid query string: {exc}",
            {"errors": [{"loc": ["query"], "msg": str(exc), "type": "value_error"}]},
        ) from None  # fmt: skip
    repeated = sorted(k for k, v in pairs.items() if len(v) > 1)
    if repeated:
        raise ApiError(
            400, "invalid_request", f"query parameter {repeated[0]!r} given more than once",
            {"errors": [{"loc": ["query", k], "msg": "given more than once", "type": "repeated"}
                        for k in repeated]},
        )  # fmt: skip
    try:
        return model.model_validate({k: v[0] for k, v in pairs.items()})
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_request", f"invalid query string: {exc.error_count()} error(s)",
            {"errors": pydantic_errors(exc, ("query",))},
        ) from None  # fmt: skip


def _message(
    type_name: str, version: int | None, fields: dict[str, Any], where: str = "payload"
) -> Message:
    """Message ``type_name`` with ``fields`` (the body's key ``where``), validated like an
    inbound wire message."""
    cls = registered_types().get(type_name)
    if cls is None:
        raise ApiError(
            400, "invalid_message", f"unknown message type {type_name!r}",
            {
                "reason": "unknown_type",
                "type": type_name,
                "errors": [
                    {"loc": ["type"], "msg": "unknown message type", "type": "unknown_type"}
                ],
            },
        )  # fmt: skip
    try:
        return cls.from_wire(cls.version if version is None else version, fields)
    except InvalidMessage as exc:
        details = dict(exc.details)
        if isinstance(details.get("errors"), list):  # locations from the body's root
            details["errors"] = [
                {**e, "loc": [where, *e.get("loc", [])]} for e in details["errors"]
            ]
        raise ApiError(400, exc.code, exc.message, details) from None


_QUEUE_NAME = re.compile(QUEUE_NAME)


def _queue(call: Call) -> str:
    """The path's queue name, checked (``[A-Za-z0-9_-]{1,64}``, as ``[queues]`` takes)."""
    name = call.params["name"]
    if not _QUEUE_NAME.fullmatch(name):
        msg = "a queue name is 1 to 64 letters, digits, '_' or '-'"
        raise ApiError(
            400, "invalid_request", f"invalid queue name {name!r}: {msg}",
            {"errors": [{"loc": ["path", "name"], "msg": msg, "type": "string_pattern_mismatch"}]},
        )  # fmt: skip
    return name


def _no_queue(name: str, exc: NoSuchActor) -> Exception:
    """``NoSuchActor("queue.<name>")`` as the 404 ``no_such_actor`` it maps to anyway,
    saying that it is the queue which is missing (another name: ``exc`` as it is)."""
    if exc.name != queue_actor(name):
        return exc
    return ApiError(
        404, "no_such_actor", f"no queue named {name!r} (no actor {exc.name!r}: is it declared "
        "under [queues]?)", {"actor": exc.name, "queue": name},
    )  # fmt: skip


def _no_bus(exc: NoSuchActor) -> Exception:
    if exc.name != BUS:
        return exc
    return ApiError(
        404, "no_such_actor", "no event bus (no actor 'bus'): enable it with [bus] enabled = true",
        {"actor": exc.name},
    )  # fmt: skip


# -- endpoints -----------------------------------------------------------------------------


def _healthz(call: Call) -> Reply:
    return Reply(200, {"ok": True})


def _readyz(call: Call) -> Reply:
    if not call.system.running:
        raise ApiError(503, "not_ready", "the actor system is not running")
    return Reply(200, {"ready": True})


def _status(call: Call) -> Reply:
    status = call.system.status()
    return Reply(200, {**status, "version": callboard.__version__, "api_url": call.api_url})


def _tree(call: Call) -> Reply:
    return Reply(200, call.system.tree())


def _which_children(call: Call) -> Reply:
    return Reply(200, call.system.which_children(call.params["sup"]))


def _count_children(call: Call) -> Reply:
    return Reply(200, call.system.count_children(call.params["sup"]))


def _get_childspec(call: Call) -> Reply:
    return Reply(200, call.system.get_childspec(call.params["sup"], call.params["id"]))


def _start_child(call: Call) -> Reply:
    sup = call.params["sup"]
    req = _parse(_StartChild, call.body)
    if req.spec is not None:
        try:
            spec = ChildSpec.model_validate(req.spec)
        except ValidationError as exc:
            raise ApiError(
                400, "invalid_child_spec", f"invalid child spec: {exc.error_count()} error(s)",
                {"reason": "invalid_child_spec", "errors": pydantic_errors(exc, ("spec",))},
            ) from None  # fmt: skip
        call.audit["target"] = f"{sup}/{spec.id}"
        child_id = call.system.start_child(sup, spec)
    else:
        if req.id is not None:
            call.audit["target"] = f"{sup}/{req.id}"
        child_id = call.system.start_child(sup, args=req.args or {}, child_id=req.id)
    call.audit["target"] = f"{sup}/{child_id}"
    location = f"/v1/supervisors/{sup}/children/{child_id}"
    return Reply(201, {"id": child_id}, headers={"Location": location})


def _terminate_child(call: Call) -> Reply:
    call.system.terminate_child(call.params["sup"], call.params["id"])
    return Reply(200, {"ok": True})


def _restart_child(call: Call) -> Reply:
    call.system.restart_child(call.params["sup"], call.params["id"])
    return Reply(200, {"ok": True})


def _delete_child(call: Call) -> Reply:
    call.system.delete_child(call.params["sup"], call.params["id"])
    return Reply(200, {"ok": True})


def _messages(call: Call) -> Reply:
    listed: list[dict[str, Any]] = []
    for name, cls in sorted(registered_types().items()):
        entry: dict[str, Any] = {"name": name, "version": cls.version}
        try:
            entry["schema"] = cls.model_json_schema()
        except Exception as exc:  # a field type without a JSON schema: list it anyway
            entry["schema"] = None
            entry["schema_error"] = f"{type(exc).__name__}: {exc}"
        listed.append(entry)
    return Reply(200, {"messages": listed})


def _ask(call: Call) -> Reply:
    req = _parse(_Send, call.body)
    call.audit["message_type"] = req.type
    msg = _message(req.type, req.version, req.payload)
    reply = call.system.ask(call.params["name"], msg, timeout=req.timeout)
    if reply is None:
        return Reply(200, {"type": None, "payload": None})
    return Reply(200, {"type": reply.type_name, "payload": reply.model_dump(mode="json")})


def _tell(call: Call) -> Reply:
    req = _parse(_Send, call.body)
    call.audit["message_type"] = req.type
    call.system.tell(call.params["name"], _message(req.type, req.version, req.payload))
    return Reply(202, {"accepted": True})


def _kill(call: Call) -> Reply:
    return Reply(200, {"pid": call.system.kill(call.params["name"])})


def _breakers(call: Call) -> Reply:
    return Reply(200, {"breakers": call.system.breakers()})


def _set_breaker(call: Call) -> Reply:
    req = _parse(_SetBreaker, call.body)
    call.audit["target"] = req.route
    call.audit["state"] = req.state
    try:
        changed = call.system.set_breaker(req.route, req.state)
    except ValueError as exc:
        raise ApiError(
            400, "invalid_request", str(exc),
            {"errors": [{"loc": [], "msg": str(exc), "type": "value_error"}]},
        ) from None  # fmt: skip
    return Reply(200, {"changed": changed})


def _queue_stats(call: Call) -> Reply:
    name = _queue(call)
    try:
        return Reply(200, {"stats": call.system.queue_stats(name)})
    except NoSuchActor as exc:
        raise _no_queue(name, exc) from None


def _dead_letters(call: Call) -> Reply:
    name = _queue(call)
    page = _query(_Page, call.query)
    try:
        items = call.system.dead_letters(name, limit=page.limit, offset=page.offset)
    except NoSuchActor as exc:
        raise _no_queue(name, exc) from None
    return Reply(200, {"dead_letters": items})


def _replay(call: Call) -> Reply:
    name = _queue(call)
    req = _parse(_DeadLetterIds, call.body)
    call.audit["all"] = req.ids is None
    try:
        return Reply(200, {"replayed": call.system.replay_dead_letters(name, req.ids)})
    except NoSuchActor as exc:
        raise _no_queue(name, exc) from None


def _purge(call: Call) -> Reply:
    name = _queue(call)
    req = _parse(_DeadLetterIds, call.body)
    call.audit["all"] = req.ids is None
    try:
        return Reply(200, {"purged": call.system.purge_dead_letters(name, req.ids)})
    except NoSuchActor as exc:
        raise _no_queue(name, exc) from None


def _enqueue(call: Call) -> Reply:
    name = _queue(call)
    req = _parse(_Enqueue, call.body)
    call.audit["message_type"] = req.type
    msg = _message(req.type, req.version, req.data, where="data")
    try:
        msg_id = call.system.enqueue(name, msg, priority=req.priority, msg_id=req.id)
    except NoSuchActor as exc:
        raise _no_queue(name, exc) from None
    return Reply(202, {"id": msg_id})


def _bus_stats(call: Call) -> Reply:
    try:
        return Reply(200, {"stats": call.system.bus_stats()})
    except NoSuchActor as exc:
        raise _no_bus(exc) from None


def _publish(call: Call) -> Reply:
    req = _parse(_Publish, call.body)
    call.audit["target"] = req.topic
    call.audit["message_type"] = req.type
    event = _message(req.type, req.version, req.data, where="data")
    try:
        count = call.system.publish(req.topic, event)
    except NoSuchActor as exc:
        raise _no_bus(exc) from None
    except InvalidTopic as exc:  # checked with the body already: a safety net
        raise ApiError(
            400, "invalid_request", str(exc),
            {"errors": [{"loc": ["topic"], "msg": str(exc), "type": "value_error"}]},
        ) from None  # fmt: skip
    return Reply(200, {"subscribers": count})


def _stop(call: Call) -> Reply:
    return Reply(202, {"stopping": True}, after=call.on_stop or call.system.stop)


def _metrics(call: Call) -> Reply:
    return Reply(200, raw=call.system.metrics(), content_type=METRICS_TYPE)


def _route(
    method: str, path: str, action: str | None, endpoint: Endpoint, target: str | None = None,
    has_body: bool = False,
) -> Route:  # fmt: skip
    return Route(method, tuple(path.split("/")[1:]), action, endpoint, target, has_body)


_SUP = "/v1/supervisors/{sup}"
_CHILD = _SUP + "/children/{id}"
_QUEUE = "/v1/queues/{name}"
_DLQ = _QUEUE + "/dead-letters"

ROUTES: tuple[Route, ...] = (
    _route("GET", "/healthz", None, _healthz),
    _route("GET", "/readyz", "health", _readyz),
    _route("GET", "/v1/status", "status", _status),
    _route("GET", "/v1/tree", "tree", _tree),
    _route("GET", _SUP + "/children", "which_children", _which_children, "{sup}"),
    _route("POST", _SUP + "/children", "start_child", _start_child, "{sup}", has_body=True),
    _route("GET", _SUP + "/count", "count_children", _count_children, "{sup}"),
    _route("GET", _CHILD, "get_childspec", _get_childspec, "{sup}/{id}"),
    _route("DELETE", _CHILD, "delete_child", _delete_child, "{sup}/{id}"),
    _route("POST", _CHILD + "/terminate", "terminate_child", _terminate_child, "{sup}/{id}"),
    _route("POST", _CHILD + "/restart", "restart_child", _restart_child, "{sup}/{id}"),
    _route("GET", "/v1/messages", "status", _messages),
    _route("POST", "/v1/actors/{name}/ask", "ask", _ask, "{name}", has_body=True),
    _route("POST", "/v1/actors/{name}/tell", "tell", _tell, "{name}", has_body=True),
    _route("POST", "/v1/actors/{name}/kill", "kill", _kill, "{name}"),
    _route("GET", "/v1/breakers", "breakers", _breakers),
    _route("POST", "/v1/breakers", "set_breaker", _set_breaker, has_body=True),
    _route("GET", _QUEUE, "queue_stats", _queue_stats, "{name}"),
    _route("GET", _DLQ, "dead_letters", _dead_letters, "{name}"),
    _route("POST", _DLQ + "/replay", "replay_dead_letters", _replay, "{name}", has_body=True),
    _route("POST", _DLQ + "/purge", "purge_dead_letters", _purge, "{name}", has_body=True),
    _route("POST", _QUEUE + "/messages", "enqueue", _enqueue, "{name}", has_body=True),
    _route("GET", "/v1/bus", "bus_stats", _bus_stats),
    _route("POST", "/v1/bus/publish", "publish", _publish, has_body=True),
    _route("POST", "/v1/stop", "stop", _stop),
    _route("GET", "/metrics", "metrics", _metrics),
)
