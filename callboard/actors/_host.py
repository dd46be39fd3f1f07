"""``ActorHost``: the Thespian actor that hosts one callboard actor in its process.

A thin shell: it turns Thespian deliveries into :class:`ActorRuntime` calls and gives the
runtime a port to send through. Every callboard worker process runs this class; which
user class it hosts arrives in the first message (:class:`~callboard._control.InitActor`).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from thespian.actors import (
    Actor as ThespianActor,
)
from thespian.actors import (
    ActorExitRequest,
    ChildActorExited,
    DeadEnvelope,
    PoisonMessage,
    WakeupMessage,
)

from callboard import _lifeline
from callboard._control import (
    Booting,
    BreakersReply,
    BreakersRequest,
    DirectoryUpdate,
    Exiting,
    InitActor,
    Probe,
    ProbeAck,
    Shutdown,
    Started,
    StartRefused,
)
from callboard.actors._runtime import ActorRuntime, error_frame, load_actor_class
from callboard.bus._events import BreakerEvent
from callboard.errors import NO_SUCH_ACTOR, InvalidMessage
from callboard.messages import decode_envelope
from callboard.observability import logging as cblog
from callboard.observability import metrics as cbmetrics
from callboard.observability.resilience import ResilienceObserver

__all__ = ["ActorHost", "process_setup"]

_LEAVE_NOW = "callboard.leave"
LINGER_S = 0.5
"""How long a process that left on its own stays to refuse (with an answer) what still
arrives at its old address, while its supervisor already runs the replacement."""


def process_setup(actor_id: str, settings: Any) -> Any:
    """Per-process observability setup after fork: metrics files, log fields, title."""
    if settings.in_process:
        # Shared process: respect the host application's structlog setup if it has one.
        import structlog

        if not structlog.is_configured():
            cblog.configure_logging(settings.log_level, settings.log_file or None)
        return cblog.get_logger(actor=actor_id, system=settings.system_name)
    if settings.metrics_dir:
        cbmetrics.enable_multiprocess(settings.metrics_dir)
    cblog.configure_logging(
        settings.log_level, settings.log_file or None,
        actor=actor_id, pid=os.getpid(), system=settings.system_name,
    )  # fmt: skip
    try:
        import setproctitle

        setproctitle.setproctitle(f"callboard[{settings.system_name}] {actor_id}")
    except ImportError:  # optional: only makes `ps` output readable
        pass
    return cblog.get_logger()


class _Hooks:
    __slots__ = ("_id", "_log", "_m")

    def __init__(self, actor_id: str, log: Any) -> None:
        self._id = actor_id
        self._m = cbmetrics.actor_metrics()
        self._log = log

    def handled(self, message_type: str, seconds: float) -> None:
        self._m.handled(self._id, message_type, seconds)

    def error(self, message_type: str, code: str) -> None:
        self._m.error(self._id, message_type, code)

    def invalid(self, reason: str, detail: str) -> None:
        self._m.invalid(self._id, reason)

    def dropped(self, why: str, message_type: str) -> None:
        self._m.dead_letter(self._id)
        self._log.debug("message_dropped", why=why, message_type=message_type)


class ActorHost(ThespianActor):  # type: ignore[misc]
    """Thespian actor class of every callboard worker process."""

    def __init__(self) -> None:
        super().__init__()
        self._rt: ActorRuntime | None = None
        self._parent: Any = None
        self._id = "?"
        self._log: Any = None
        self._system_events = False

    # Port --------------------------------------------------------------------------------

    def call_later(self, delay: float, key: str) -> None:
        self.wakeupAfter(dt.timedelta(seconds=max(0.0, delay)), payload=key)

    def leave(self, reason: str, detail: str) -> None:
        # Thespian drops whatever reaches a process in its last moments, unanswered. So the
        # parent hears at once (and starts the replacement), while this process lingers,
        # refusing with an answer (``no_such_actor``: resend elsewhere) what still arrives
        # at its old address, until everyone has learned the new one.
        if self._parent is not None:
            self.send(self._parent, Exiting(self._id, reason, detail))
        self.wakeupAfter(dt.timedelta(seconds=LINGER_S), payload=_LEAVE_NOW)

    # Thespian entry point ----------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        # Nothing may escape: Thespian would retry the message, then bounce it as a
        # PoisonMessage and keep a possibly broken actor alive. A bug here is a crash.
        try:
            self._on_message(msg, sender)
        except Exception as exc:
            if self._log is not None:
                self._log.exception("runtime_failure", error=f"{type(exc).__name__}: {exc}")
            if self._rt is not None and self._rt.state != "exiting":
                self._rt.state = "exiting"
                self.leave("error", f"runtime failure: {type(exc).__name__}: {exc}")

    def _on_message(self, msg: Any, sender: Any) -> None:
        rt = self._rt
        if isinstance(msg, bytes) and rt is not None:
            rt.on_frame(msg, sender)
        elif isinstance(msg, Probe):
            self.send(sender, ProbeAck(self._id, msg.seq))  # only between handlers: liveness
        elif isinstance(msg, WakeupMessage):
            if msg.payload == _LEAVE_NOW:
                self.send(self.myAddress, ActorExitRequest())
            elif rt is not None and isinstance(msg.payload, str):
                rt.on_timer(msg.payload)
        elif isinstance(msg, BreakersRequest):
            self.send(sender, self._breakers(msg))
        elif isinstance(msg, DirectoryUpdate):
            if rt is not None:
                rt.on_directory(msg.entries, msg.removed)
        elif isinstance(msg, InitActor):
            self._init(msg, sender)
        elif isinstance(msg, Shutdown):
            if rt is not None:
                rt.shutdown("shutdown")
            if msg.linger:
                self.leave("shutdown", "asked by its supervisor")
            else:
                if self._parent is not None:
                    self.send(self._parent, Exiting(self._id, "shutdown", ""))
                self.send(self.myAddress, ActorExitRequest())
        elif isinstance(msg, ActorExitRequest):
            if rt is not None:
                rt.shutdown("shutdown")
        elif isinstance(msg, DeadEnvelope) and rt is not None and _sink(rt) is not None:
            sink = _sink(rt)
            assert sink is not None
            sink(msg.deadAddress, msg.deadMessage)
        elif isinstance(msg, ChildActorExited | DeadEnvelope | PoisonMessage):
            if self._log is not None:
                self._log.warning("undeliverable", kind=type(msg).__name__)
        elif rt is not None:
            rt.on_frame(msg, sender)  # not bytes: the runtime answers invalid_message
        elif isinstance(msg, bytes):
            # Not anyone yet: a sender with a stale address that the kernel has just
            # handed to this new process. Refuse, so it re-resolves the name.
            self._refuse_unborn(msg, sender)

    def _forward_event(self, name: str, fields: dict[str, Any]) -> None:
        """Breaker transitions become ``system.breaker.state_changed`` events."""
        rt = self._rt
        if name != "breaker_state_changed" or rt is None or not self._system_events:
            return
        if "bus" in rt.directory:
            rt.messaging.publish("system.breaker.state_changed", BreakerEvent(
                route=fields["route"], caller=fields["caller"], target=fields["target"],
                old=fields["old"], new=fields["new"], reason=fields["reason"]))  # fmt: skip

    def _breakers(self, req: BreakersRequest) -> BreakersReply:
        rt = self._rt
        if rt is None:
            return BreakersReply(self._id, [], "not_running", req.ref)
        if req.force is not None:
            target, state = req.force
            if state not in ("open", "closed"):
                return BreakersReply(self._id, [], f"invalid state {state!r}", req.ref)
            try:
                rt.routes.force(target, "open" if state == "open" else "closed")
            except LookupError as exc:
                return BreakersReply(self._id, [], str(exc), req.ref)
        return BreakersReply(self._id, rt.routes.breakers(), None, req.ref)

    def _refuse_unborn(self, frame: bytes, sender: Any) -> None:
        try:
            env = decode_envelope(frame)
        except InvalidMessage:
            env = None
        if env is None or env.kind == "ask":
            text = "this process does not host that actor (yet)"
            self.send(sender, error_frame(env, "?", NO_SUCH_ACTOR, text))

    def _init(self, msg: InitActor, sender: Any) -> None:
        if self._rt is not None:
            return
        self._parent = sender
        self._id = msg.id
        self._system_events = msg.settings.system_events
        if not msg.settings.in_process:
            if msg.top_level:  # the root died: take the whole system (admin, logger) along
                _lifeline.watch([os.getppid()], lambda _pid: _lifeline.kill_own_group())
            else:
                _lifeline.die_with_parent()
        self.send(sender, Booting(msg.id, os.getpid()))
        try:
            self._log = process_setup(msg.id, msg.settings)
            rt = ActorRuntime(
                msg.id,
                load_actor_class(msg.actor),
                msg.args,
                self,
                msg.directory,
                max_frame_bytes=msg.settings.max_frame_bytes,
                ask_timeout=msg.settings.ask_timeout,
                hooks=_Hooks(msg.id, self._log),
                logger=self._log,
                policies=msg.settings.policies,
                on_policy_event=ResilienceObserver(self._log, forward=self._forward_event),
            )
            self._rt = rt
            rt.start()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if self._log is not None:
                self._log.error("start_failed", error=reason)
            self.send(sender, StartRefused(msg.id, reason, msg.id))
            self.send(self.myAddress, ActorExitRequest())
            if self._rt is not None:
                self._rt.state = "exiting"
            return
        if _sink(rt) is not None:
            self.handleDeadLetters()  # Thespian forwards what it could not deliver: keep it
        cbmetrics.actor_metrics().started(msg.id)
        self._log.info("actor_started", actor_class=msg.actor)
        self.send(sender, Started(msg.id, os.getpid()))
        rt.leave_if_requested()  # the actor called self.stop() in on_start


def _sink(rt: ActorRuntime) -> Any:
    """The hosted actor's ``on_dead_letter`` if it collects the system's dead letters."""
    if rt.actor is not None and getattr(rt.actor, "wants_dead_letters", False):
        return getattr(rt.actor, "on_dead_letter", None)
    return None
