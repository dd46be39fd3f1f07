"""``ActorRuntime``: hosts one :class:`~callboard.Actor` behind a transport-neutral port.

This is the envelope path, a chain of small steps: decode -> validate -> route (reply or
request) -> check target and deadline -> decode payload -> dispatch -> reply. It knows
nothing of Thespian: the shell (``_host.ActorHost``) hands it frames and timer ticks and
gives it a :class:`Port` to send through, so the whole path is unit-testable in-process.
"""

from __future__ import annotations

import functools
import importlib
import time
import traceback
from collections.abc import Callable, Generator, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from callboard import errors
from callboard._control import is_stopped
from callboard.actors._actor import Actor
from callboard.actors._messaging import Messaging
from callboard.actors._tasks import Future, Task
from callboard.errors import (
    AskTimeout,
    BusinessError,
    InvalidMessage,
    NoSuchActor,
    RemoteError,
)
from callboard.messages import (
    Envelope,
    ErrorReply,
    Kind,
    Message,
    child_traceparent,
    decode_envelope,
    decode_payload,
    encode,
    new_id,
    peek_id,
)
from callboard.messages._degraded import is_degraded, mark_degraded
from callboard.messages._errors import Nothing
from callboard.observability import logging as cblog
from callboard.resilience import (
    Attempt,
    Backoff,
    CallResult,
    Effect,
    Outcome,
    Policy,
    Queue,
    Route,
    RouteTable,
    guarded_call,
)
from callboard.resilience._routes import EventSink

__all__ = ["ActorRuntime", "Hooks", "Port", "error_frame", "load_actor_class", "reply_value"]

Address = Any
RESTARTING = "restarting"
NOT_RUNNING = "not_running"


class Port(Protocol):
    """What the runtime needs from its transport shell."""

    def send(self, address: Address, frame: bytes) -> None:
        """Queue ``frame`` for ``address`` (an opaque transport address)."""

    def call_later(self, delay: float, key: str) -> None:
        """Call ``runtime.on_timer(key)`` after ``delay`` seconds."""

    def leave(self, reason: str, detail: str) -> None:
        """Tell the parent why, then end this actor after queued sends go out."""


class Hooks(Protocol):
    """Observability callbacks (metrics and logs); the shell wires the real ones."""

    def handled(self, message_type: str, seconds: float) -> None: ...
    def error(self, message_type: str, code: str) -> None: ...
    def invalid(self, reason: str, detail: str) -> None: ...
    def dropped(self, why: str, message_type: str) -> None: ...


class _NoHooks:
    def handled(self, message_type: str, seconds: float) -> None:
        pass

    def error(self, message_type: str, code: str) -> None:
        pass

    def invalid(self, reason: str, detail: str) -> None:
        pass

    def dropped(self, why: str, message_type: str) -> None:
        pass


def load_actor_class(path: str) -> type[Actor]:
    """Import ``"pkg.module:Class"`` and check it is an :class:`Actor` subclass."""
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise TypeError(f"{path} is not a callboard.Actor subclass")
    return cls


def reply_value(env: Envelope) -> Any:
    """Turn a decoded reply/error envelope into the asker's result, or raise. A reply
    flagged ``degraded`` yields a message marked so (see ``callboard.is_degraded``)."""
    if env.kind == "error":
        err = ErrorReply.from_wire(env.version, env.payload)
        assert isinstance(err, ErrorReply)
        raise RemoteError(err.code, err.message, err.details)
    msg = decode_payload(env)
    if isinstance(msg, Nothing):
        return None
    if env.degraded:
        mark_degraded(msg)
    return msg


class ActorRuntime:
    """One hosted actor: its handler dispatch, in-flight requests, timers and exit.

    States: ``new`` -> ``running`` (after :meth:`start`) -> ``exiting``. Requests arriving
    when not running are refused unprocessed with ``no_such_actor`` (the sender may resend
    to the actor's next incarnation) or counted as dropped (tells); requests still in
    flight when the actor exits are answered with ``stopping``.
    """

    def __init__(
        self,
        actor_id: str,
        actor_cls: type[Actor],
        args: dict[str, Any],
        port: Port,
        directory: dict[str, Address | None],
        *,
        max_frame_bytes: int,
        ask_timeout: float,
        hooks: Hooks | None = None,
        logger: Any = None,
        clock: Callable[[], float] = time.time,
        policies: Mapping[str, Policy] | None = None,
        on_policy_event: EventSink | None = None,
    ) -> None:
        self.id = actor_id
        self.state = "new"
        self.directory = dict(directory)
        self._cls = actor_cls
        self._raw_args = args
        self._port = port
        self._max = max_frame_bytes
        self._ask_timeout = ask_timeout
        self._hooks: Hooks = hooks or _NoHooks()
        self._log = logger
        self._clock = clock
        # request id -> (future, type, id of the request whose handler asked, if any)
        self._pending: dict[str, tuple[Future[Any], str, str | None]] = {}
        # Requests whose handler used a degraded answer: their replies are flagged too.
        self._tainted: set[str] = set()
        self.routes = RouteTable(actor_id, policies or {}, clock=clock, on_event=on_policy_event)
        self.messaging = Messaging(self)
        self.current_sender: Address = None
        """The transport address of the sender of the message being dispatched."""
        self._timers: dict[str, Callable[[], object]] = {}
        self._tasks: dict[int, tuple[Task, Envelope, Address]] = {}
        self._current: Envelope | None = None  # the envelope whose handler code is running
        self._stop_reason: str | None = None
        self._stop_by: Envelope | None = None
        self.actor: Actor | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Instantiate the actor, validate its args, run ``on_start``; raise on failure."""
        actor = self._cls.__new__(self._cls)
        actor.id = self.id
        actor._runtime = self
        actor.log = self._log
        if self._cls.Args is not None:
            try:
                actor.args = self._cls.Args.model_validate(self._raw_args)
            except ValidationError as exc:
                raise ValueError(f"invalid args: {exc}") from None
        else:
            actor.args = dict(self._raw_args)
        actor.__init__()  # type: ignore[misc]
        self._cls.handlers()  # resolve annotations now: a bad handler is a failed start
        self._cls.consumers()
        self.actor = actor
        actor.on_start()
        self.messaging.start()  # register as a consumer of the queues it consumes
        self.state = "running"

    def shutdown(self, reason: str = "shutdown") -> None:
        """The supervisor asked us to stop: fail in-flight work, run ``on_stop``."""
        if self.state == "exiting":
            return
        self.state = "exiting"
        self._abort_inflight()
        self._run_on_stop(reason)

    # -- inbound --------------------------------------------------------------------------

    def on_frame(self, frame: Any, sender: Address) -> None:
        """Handle one inbound frame from ``sender``; never raises."""
        try:
            env = decode_envelope(frame, self._max)
        except InvalidMessage as exc:
            self._reject(exc, sender, causation_id=peek_id(frame), expects_reply=True)
            return
        if env.kind == "reply" or env.kind == "error":
            self._on_reply(env)
            return
        if self.state != "running":
            # Refused before any processing, so the sender may safely resend elsewhere:
            # this process no longer hosts the actor.
            self._refuse(env, sender, errors.NO_SUCH_ACTOR, f"{self.id} is leaving this process")
            return
        if env.target is not None and env.target != self.id:
            # A stale address now reused by another actor: say so, so the sender re-resolves.
            self._refuse(env, sender, errors.NO_SUCH_ACTOR, f"this is {self.id}, not {env.target}")
            return
        if env.deadline is not None and env.deadline < self._clock():
            self._hooks.dropped("expired", env.type)  # the asker has given up already
            return
        try:
            msg = decode_payload(env)
        except InvalidMessage as exc:
            self._reject(exc, sender, env.id, env.kind == "ask", env)
            return
        self._dispatch(env, msg, sender)

    def on_timer(self, key: str) -> None:
        fn = self._timers.pop(key, None)
        if fn is not None:
            fn()

    def on_directory(self, entries: dict[str, Address | None], removed: tuple[str, ...]) -> None:
        missing = object()
        changed = [n for n, a in entries.items() if self.directory.get(n, missing) != a]
        changed += [n for n in removed if n in self.directory]
        self.directory.update(entries)
        for name in removed:
            self.directory.pop(name, None)
        if not changed or self.state != "running" or self.actor is None:
            return
        self.messaging.on_directory(changed)
        try:
            self.actor.on_directory(changed)
        except Exception as exc:  # a hook, like a handler: let it crash
            self._crash(_hook_envelope(self.id, "on_directory"), None, exc)

    # -- dispatch -------------------------------------------------------------------------

    def _dispatch(self, env: Envelope, msg: Message, sender: Address) -> None:
        actor = self.actor
        assert actor is not None
        self.current_sender = sender
        found = self._cls.handler_for(type(msg))
        if found is None and self.messaging.delivers(msg):
            self.messaging.on_delivery(env, msg, sender)
            return
        if found is None:
            exc = InvalidMessage("unhandled", f"{self.id} has no handler for {env.type}")
            self._reject(exc, sender, env.id, env.kind == "ask", env)
            return
        fn, is_async = found
        started = time.perf_counter()
        if is_async:
            task = Task(
                fn(actor, msg),
                lambda value, exc: self._task_done(task, value, exc, started),
                context=env,
                on_step=self._enter_task,
            )
            self._tasks[id(task)] = (task, env, sender)
            task.start()
            return
        self._enter(env)
        try:
            result = fn(actor, msg)
        except BaseException as exc:
            self._enter(None)
            self._finish(env, sender, None, exc, started)
        else:
            self._enter(None)
            self._finish(env, sender, result, None, started)

    def run_handler(
        self, env: Envelope, msg: Message, fn: Callable[..., Any], is_async: bool,
        done: Callable[[BaseException | None], None],
    ) -> None:  # fmt: skip
        """Run a handler for a message that is not a request (an event, a queued job):
        ``done(None)`` when it returned, ``done(business_error)`` when it raised one. Any
        other exception crashes the actor (``done`` is not called: the work was not done).
        """
        actor = self.actor
        assert actor is not None
        started = time.perf_counter()

        def settle(exc: BaseException | None) -> None:
            elapsed = time.perf_counter() - started
            if exc is None or isinstance(exc, BusinessError):
                self._hooks.handled(env.type, elapsed)
                if exc is not None:
                    self._hooks.error(env.type, exc.code)
                done(exc)
                self.leave_if_requested(env)
            elif not isinstance(exc, _Aborted):
                self._crash(env, None, exc)

        if is_async:

            def finished(_value: Any, exc: BaseException | None) -> None:
                self._tasks.pop(id(task), None)
                settle(exc)

            task = Task(fn(actor, msg), finished, context=env, on_step=self._enter_task)
            self._tasks[id(task)] = (task, env, None)
            task.start()
            return
        self._enter(env)
        try:
            fn(actor, msg)
        except BaseException as exc:
            self._enter(None)
            settle(exc)
        else:
            self._enter(None)
            settle(None)

    def send_to(self, address: Address, target: str, msg: Message) -> None:
        """A tell straight to a transport address (a peer recorded when it registered)."""
        env = self._outgoing("tell", target, msg, None, self._current)
        self._port.send(address, encode(env, self._max))

    def _enter_task(self, task: Task, entering: bool) -> None:
        self._enter(task.context if entering else None)

    def _enter(self, env: Envelope | None) -> None:
        """Handler code of ``env`` runs now (``None``: it stopped): its deadline and ids
        apply to outgoing requests, and its correlation id to every log line."""
        self._current = env
        if env is None:
            cblog.unbind_context("correlation_id", "message_type")
        else:
            cblog.bind_context(correlation_id=env.correlation_id, message_type=env.type)

    def _task_done(self, task: Task, value: Any, exc: BaseException | None, started: float) -> None:
        entry = self._tasks.pop(id(task), None)
        if entry is None:
            return
        _, env, sender = entry
        self._finish(env, sender, value, exc, started)

    def _finish(
        self, env: Envelope, sender: Address, value: Any, exc: BaseException | None, started: float
    ) -> None:
        elapsed = time.perf_counter() - started
        if exc is None:
            if value is not None and not isinstance(value, Message):
                exc = TypeError(
                    f"handler for {env.type} returned {type(value).__name__}, not a Message"
                )
            else:
                self._hooks.handled(env.type, elapsed)
                if self._log is not None:
                    self._log.debug(
                        "handled", message_type=env.type, correlation_id=env.correlation_id,
                        kind=env.kind, seconds=round(elapsed, 6),
                    )  # fmt: skip
                if env.kind == "ask":
                    self._reply(env, sender, value if value is not None else Nothing())
                self._tainted.discard(env.id)
                self.leave_if_requested(env)
                return
        self._tainted.discard(env.id)
        if isinstance(exc, BusinessError):
            self._hooks.handled(env.type, elapsed)
            self._hooks.error(env.type, exc.code)
            if env.kind == "ask":
                self._send_error(env, sender, exc.code, str(exc), exc.details)
            self.leave_if_requested(env)
            return
        if isinstance(exc, _Aborted):
            return  # the actor is exiting and the asker has been told already
        self._crash(env, sender, exc)

    def _crash(self, env: Envelope, sender: Address, exc: BaseException) -> None:
        """Let it crash: answer the asker, tell the parent why, leave."""
        self._hooks.error(env.type, errors.CRASHED)
        detail = f"{type(exc).__name__}: {exc}"
        if self._log is not None:
            self._log.error(
                "handler_crashed",
                message_type=env.type,
                correlation_id=env.correlation_id,
                error=detail,
                traceback="".join(traceback.format_exception(exc)),
            )
        leaving = self.state != "exiting"
        if leaving:
            # The parent hears first, so that by the time the asker reacts to the error
            # reply the supervisor already lists this actor as restarting.
            self.state = "exiting"
            self._port.leave("error", detail)
        if env.kind == "ask":
            self._send_error(
                env, sender, errors.CRASHED, str(exc) or type(exc).__name__,
                {"exception": type(exc).__name__, "actor": self.id},
            )  # fmt: skip
        if leaving:
            self._abort_inflight()
            self._run_on_stop("error")

    def remaining(self) -> float | None:
        cur = self._current
        if cur is None or cur.deadline is None:
            return None
        return cur.deadline - self._clock()

    def request_stop(self, reason: str) -> None:
        if reason not in ("normal", "shutdown"):
            raise ValueError("an actor stops itself with reason 'normal' or 'shutdown'")
        self._stop_reason = reason
        self._stop_by = self._current  # leave when *this* handler returns, not another one
        if self._current is None and self.state == "running":
            self.leave_if_requested()  # called outside a handler (e.g. in on_start): leave now

    def leave_if_requested(self, finished: Envelope | None = None) -> None:
        """Leave if ``stop()`` was called outside a handler, or by the handler of
        ``finished`` (the message whose handler just returned)."""
        if self._stop_reason is None or self.state != "running":
            return
        if self._stop_by is not None and self._stop_by is not finished:
            return
        reason = self._stop_reason
        self.state = "exiting"
        self._abort_inflight()
        self._run_on_stop(reason)
        self._port.leave(reason, "")

    def _run_on_stop(self, reason: str) -> None:
        if self.actor is None:
            return
        try:
            self.actor.on_stop(reason)
        except Exception as exc:  # on_stop failing must not stop the exit
            if self._log is not None:
                self._log.error("on_stop_failed", error=f"{type(exc).__name__}: {exc}")

    def _abort_inflight(self) -> None:
        for task, env, sender in list(self._tasks.values()):
            if env.kind == "ask":
                self._send_error(env, sender, errors.STOPPING, f"{self.id} is stopping")
            task.cancel(_Aborted())
        self._tasks.clear()
        pending, self._pending = list(self._pending.values()), {}
        for fut, _, _ in pending:
            fut.set_exception(_Aborted())  # guarded calls abandon here; none starts anew
        self._timers.clear()
        self._tainted.clear()

    # -- outbound -------------------------------------------------------------------------

    def _resolve(self, target: str) -> Address:
        if target not in self.directory:
            raise NoSuchActor(target)
        address = self.directory[target]
        if address is None:
            raise RemoteError(RESTARTING, f"{target} is restarting", {"actor": target})
        if is_stopped(address):
            raise RemoteError(NOT_RUNNING, f"{target} is not running", {"actor": target})
        return address

    def _outgoing(
        self, kind: Kind, target: str, msg: Message, deadline: float | None,
        cur: Envelope | None = None, attempt: int = 1,
    ) -> Envelope:  # fmt: skip
        """A new request envelope on behalf of ``cur`` (the request whose handler sends
        it): its ids, trace and priority are inherited, its deadline is never later."""
        if cur is not None and cur.deadline is not None:
            deadline = cur.deadline if deadline is None else min(deadline, cur.deadline)
        msg_id = new_id()
        return Envelope.model_construct(
            kind=kind,
            id=msg_id,
            type=msg.type_name,
            version=msg.version,
            correlation_id=(cur.correlation_id or cur.id) if cur is not None else msg_id,
            causation_id=cur.id if cur is not None else None,
            deadline=deadline,
            priority=cur.priority if cur is not None else 0,
            traceparent=child_traceparent(cur.traceparent if cur is not None else None),
            principal=cur.principal if cur is not None else None,
            attempt=attempt,
            target=target,
            sender=self.id,
            payload=msg,
        )

    def ask(self, target: str, msg: Message, timeout: float | None) -> Future[Any]:
        """Send ``msg`` to ``target``; the future resolves with the reply or the error.

        Raises :class:`NoSuchActor` at once for a name not in the tree. With a policy
        for the route (``[policies]``), the request goes through it: bulkhead, retries,
        breaker, per-attempt timeout, fallback (:mod:`callboard.resilience._call`)."""
        cur = self._current
        timeout = self._ask_timeout if timeout is None else timeout
        deadline = self._clock() + timeout
        if cur is not None and cur.deadline is not None:
            deadline = min(deadline, cur.deadline)
        route = self.routes.route(target)
        if route is None:
            return self._attempt(target, msg, deadline, 1, cur)
        if target not in self.directory:
            raise NoSuchActor(target)
        fut: Future[Any] = Future()
        call = guarded_call(route, new_id(), type(msg).idempotent, deadline, msg.reply_type)
        _GuardedAsk(self, route, call, fut, msg, cur).step(None)
        return fut

    def _attempt(
        self, target: str, msg: Message, deadline: float, attempt: int, cur: Envelope | None
    ) -> Future[Any]:
        """One plain request: send, and resolve on the reply or at ``deadline``."""
        fut: Future[Any] = Future()
        try:
            address = self._resolve(target)
            env = self._outgoing("ask", target, msg, deadline, cur, attempt)
            frame = encode(env, self._max)
        except (NoSuchActor, RemoteError, InvalidMessage) as exc:
            if isinstance(exc, NoSuchActor) and attempt == 1 and target not in self.directory:
                raise
            fut.set_exception(exc)
            return fut
        assert env.deadline is not None
        self._pending[env.id] = (fut, env.type, cur.id if cur is not None else None)
        self._port.send(address, frame)
        key = "ask:" + env.id
        self._timers[key] = lambda: self._expire(env.id, target)
        self._port.call_later(max(0.0, env.deadline - self._clock()), key)
        return fut

    def taint(self, request: Envelope | None) -> None:
        """The handler of ``request`` used a degraded answer: flag its reply degraded
        (if it is still running: an answer nobody awaited leaves no mark)."""
        if request is not None and request.kind == "ask" and self._running(request.id):
            self._tainted.add(request.id)

    def _running(self, request_id: str) -> bool:
        return any(env.id == request_id for _, env, _ in self._tasks.values())

    def _expire(self, request_id: str, target: str) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            entry[0].set_exception(AskTimeout(f"no reply from {target} before the deadline"))

    def tell(self, target: str, msg: Message) -> None:
        address = self._resolve(target)
        env = self._outgoing("tell", target, msg, None, self._current)
        self._port.send(address, encode(env, self._max))

    def schedule(self, delay_s: float, msg: Message) -> None:
        key = "sched:" + new_id()
        env = self._outgoing("tell", self.id, msg, None, self._current)
        env.deadline = None  # a timer outlives the request that set it: no inherited deadline

        def deliver() -> None:
            if self.state == "running":
                self._dispatch(env, msg, None)

        self._timers[key] = deliver
        self._port.call_later(delay_s, key)

    def sleep(self, delay_s: float) -> Future[None]:
        fut: Future[None] = Future()
        key = "sleep:" + new_id()
        self._timers[key] = lambda: fut.set_result(None)
        self._port.call_later(delay_s, key)
        return fut

    def _on_reply(self, env: Envelope) -> None:
        entry = self._pending.pop(env.causation_id or "", None)
        if entry is None:
            self._hooks.dropped("late_reply", env.type)  # its asker timed out already
            return
        self._timers.pop("ask:" + (env.causation_id or ""), None)
        fut, _, asked_for = entry
        if env.degraded and asked_for is not None and self._running(asked_for):
            self._tainted.add(asked_for)
        try:
            fut.set_result(reply_value(env))
        except (RemoteError, InvalidMessage) as exc:
            fut.set_exception(exc)

    def _reply(self, req: Envelope, sender: Address, msg: Message) -> None:
        env = Envelope.model_construct(
            kind="reply", id=new_id(), type=msg.type_name, version=msg.version,
            correlation_id=req.correlation_id, causation_id=req.id, deadline=None,
            priority=req.priority, traceparent=req.traceparent, principal=req.principal,
            attempt=1, target=req.sender, sender=self.id, payload=msg,
            degraded=req.id in self._tainted or is_degraded(msg),
        )  # fmt: skip
        try:
            frame = encode(env, self._max)
        except InvalidMessage as exc:  # e.g. the reply is too big: tell the asker why
            self._send_error(req, sender, exc.code, exc.message, exc.details)
            return
        if sender is not None:
            self._port.send(sender, frame)

    def _send_error(
        self, req: Envelope | None, sender: Address, code: str, text: str,
        details: dict[str, Any] | None = None, causation_id: str | None = None,
    ) -> None:  # fmt: skip
        if sender is not None:
            self._port.send(
                sender, error_frame(req, self.id, code, text, details, causation_id, self._max)
            )

    def _refuse(self, env: Envelope, sender: Address, code: str, text: str) -> None:
        self._hooks.dropped(code, env.type)
        if env.kind == "ask":
            self._send_error(env, sender, code, text, {"actor": self.id})

    def _reject(
        self, exc: InvalidMessage, sender: Address, causation_id: str | None,
        expects_reply: bool, env: Envelope | None = None,
    ) -> None:  # fmt: skip
        """Bad input: count it, log it, and tell the sender (never crash, never go silent)."""
        self._hooks.invalid(exc.reason, exc.message)
        if self._log is not None:
            self._log.warning(
                "invalid_message", reason=exc.reason, error=exc.message,
                message_type=env.type if env else None, sender=env.sender if env else None,
            )  # fmt: skip
        if expects_reply:
            self._send_error(env, sender, exc.code, exc.message, exc.details, causation_id)


def error_frame(
    req: Envelope | None, sender_id: str, code: str, text: str,
    details: dict[str, Any] | None = None, causation_id: str | None = None,
    max_bytes: int | None = None,
) -> bytes:  # fmt: skip
    """An encoded ``error`` envelope answering ``req`` (or the frame id ``causation_id``)."""
    err = ErrorReply(code=code, message=text, details=details or {})
    env = Envelope.model_construct(
        kind="error", id=new_id(), type=err.type_name, version=err.version,
        correlation_id=req.correlation_id if req else None,
        causation_id=req.id if req else causation_id, deadline=None,
        priority=req.priority if req else 0, traceparent=req.traceparent if req else None,
        principal=None, attempt=1, target=req.sender if req else None, sender=sender_id,
        payload=err,
    )  # fmt: skip
    try:
        return encode(env, max_bytes)
    except InvalidMessage:  # details too large to send: send the bare code instead
        env.payload = ErrorReply(code=code, message=text[:1000])
        return encode(env)


class _Aborted(Exception):
    """Thrown into in-flight handler coroutines when the actor exits."""


def _hook_envelope(actor_id: str, hook: str) -> Envelope:
    """A stand-in envelope for code that runs outside any message (a lifecycle hook)."""
    return Envelope.model_construct(
        kind="tell", id=new_id(), type=f"<{hook}>", version=1, correlation_id=None,
        causation_id=None, deadline=None, priority=0, traceparent=None, principal=None,
        attempt=1, target=actor_id, sender=None, payload=None,
    )  # fmt: skip


class _GuardedAsk:
    """Drives one :func:`~callboard.resilience.guarded_call` inside an actor: attempts are
    plain asks, back-offs and bulkhead waits are timers, so the mailbox keeps flowing."""

    __slots__ = ("_call", "_cur", "_fut", "_msg", "_route", "_rt")

    def __init__(
        self, rt: ActorRuntime, route: Route, call: Generator[Effect, Any, CallResult],
        fut: Future[Any], msg: Message, cur: Envelope | None,
    ) -> None:  # fmt: skip
        self._rt = rt
        self._route = route
        self._call = call
        self._fut = fut
        self._msg = msg
        self._cur = cur

    def step(self, value: Any) -> None:
        rt = self._rt
        if rt.state == "exiting":  # e.g. woken from a bulkhead queue during the exit
            self._call.close()
            self._fut.set_exception(_Aborted())
            return
        while True:
            try:
                effect = self._call.send(value)
            except StopIteration as stop:
                self._finish(stop.value)
                return
            if isinstance(effect, Attempt):
                started = time.monotonic()
                deadline = effect.deadline if effect.deadline is not None else rt._clock()
                try:
                    attempt = rt._attempt(effect.target, self._msg, deadline, effect.number,
                                          self._cur)  # fmt: skip
                except NoSuchActor as exc:  # e.g. a substitute that is not in the tree
                    value = Outcome(error=exc)
                    continue
                if attempt.done():
                    value = self._outcome(attempt, started)
                    if value is None:
                        return
                    continue
                attempt.add_done_callback(functools.partial(self._resume, started=started))
                return
            if isinstance(effect, Backoff):
                rt.sleep(effect.seconds).add_done_callback(lambda _f: self.step(None))
                return
            assert isinstance(effect, Queue)
            self._wait_admission(effect)
            return

    def _resume(self, attempt: Future[Any], *, started: float) -> None:
        outcome = self._outcome(attempt, started)
        if outcome is not None:
            self.step(outcome)

    def _outcome(self, attempt: Future[Any], started: float) -> Outcome | None:
        seconds = time.monotonic() - started
        exc = attempt.exception()
        if isinstance(exc, _Aborted):  # the actor is exiting: abandon the call
            self._call.close()
            self._fut.set_exception(exc)
            return None
        if exc is not None:
            return Outcome(error=exc, seconds=seconds)
        return Outcome(value=attempt.result(), seconds=seconds)

    def _wait_admission(self, effect: Queue) -> None:
        rt = self._rt
        decided = Future[bool]()
        decided.add_done_callback(lambda f: self.step(f.result()))
        self._route.when_admitted(effect.request_id, lambda: decided.set_result(True))
        if effect.deadline is not None and not decided.done():
            key = "queue:" + effect.request_id

            def expire() -> None:
                if not decided.done():
                    self._route.give_up_waiting(effect.request_id)
                    decided.set_result(False)

            rt._timers[key] = expire
            rt._port.call_later(max(0.0, effect.deadline - rt._clock()), key)

    def _finish(self, result: CallResult) -> None:
        if result.error is not None:
            self._fut.set_exception(result.error)
            return
        if result.degraded:
            mark_degraded(result.value)
            self._rt.taint(self._cur)
        elif is_degraded(result.value):
            self._rt.taint(self._cur)
        self._fut.set_result(result.value)
