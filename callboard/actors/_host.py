"""``ActorHost``: the Thespian actor that hosts one callboard actor in its process.

A thin shell: it turns Thespian deliveries into :class:`ActorRuntime` calls and gives the
runtime a port to send through. Every callboard worker process runs this class; which
user class it hosts arrives in the first message (:class:`~callboard._control.InitActor`).
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import itertools
import os
import time
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
    BATCH_TAG,
    Booting,
    BreakersReply,
    BreakersRequest,
    DirectoryUpdate,
    Exiting,
    FrameBatch,
    InitActor,
    Probe,
    ProbeAck,
    Shutdown,
    Started,
    StartRefused,
    frames_of,
)
from callboard.actors._ordering import GAP_WAIT_S, InOrder
from callboard.actors._runtime import ActorRuntime, error_frame, load_actor_class
from callboard.bus._events import BreakerEvent
from callboard.errors import NO_SUCH_ACTOR, InvalidMessage
from callboard.messages import decode_envelope, new_id
from callboard.observability import logging as cblog
from callboard.observability import metrics as cbmetrics
from callboard.observability.resilience import ResilienceObserver

__all__ = ["ActorHost", "process_setup"]

_LEAVE_NOW = "callboard.leave"
_GAP = "callboard.gap:"
_TIMERS = "callboard.timers"
BATCH_MAX_FRAMES = 512
BATCH_MAX_BYTES = 1 << 20
"""A turn's frames for one destination are flushed early at this count or size, so a
handler that sends a great deal streams it instead of building one huge message."""
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
        # Frames sent during this turn, per destination: str(address) -> (address, frames,
        # bytes). Thespian addresses are not hashable, their str() is stable.
        self._outbox: dict[str, tuple[Any, list[bytes], list[int]]] = {}
        self._out_seq: dict[str, int] = {}
        self._epoch = new_id()
        self._in_order: dict[str, InOrder] = {}
        self._timer_heap: list[tuple[float, int, str]] = []
        self._timer_seq = itertools.count()
        self._armed: float | None = None  # when the one Thespian wakeup is due

    # Port --------------------------------------------------------------------------------

    def send(self, targetAddr: Any, msg: Any) -> None:
        """Envelope frames wait in the outbox until the end of the turn (or a size bound)
        and go as one :class:`FrameBatch` per destination; anything else (control
        messages) goes at once, after what the outbox holds, so order is kept."""
        if isinstance(msg, bytes):
            key = str(targetAddr)
            entry = self._outbox.get(key)
            if entry is None:
                entry = self._outbox[key] = (targetAddr, [], [0])
            entry[1].append(msg)
            entry[2][0] += len(msg)
            if len(entry[1]) >= BATCH_MAX_FRAMES or entry[2][0] >= BATCH_MAX_BYTES:
                self._flush(key)
            return
        self._flush_all()
        super().send(targetAddr, msg)

    def _flush(self, key: str) -> None:
        address, frames, _ = self._outbox.pop(key)
        seq = self._out_seq.get(key, 0) + 1
        self._out_seq[key] = seq
        super().send(address, (BATCH_TAG, self._epoch, seq, tuple(frames)))

    def _flush_all(self) -> None:
        for key in list(self._outbox):
            self._flush(key)

    def call_later(self, delay: float, key: str) -> None:
        """Timers live in one heap per process behind a single Thespian wakeup: Thespian
        keeps its wakeups in a list it re-sorts on every insert and never cancels, so one
        wakeup per ask (most of them answered long before they fall due) made every
        later ask slower."""
        due = time.monotonic() + max(0.0, delay)
        heapq.heappush(self._timer_heap, (due, next(self._timer_seq), key))
        if self._armed is None or due < self._armed - 0.0005:
            self._arm(due)

    def _arm(self, due: float) -> None:
        self._armed = due
        self.wakeupAfter(dt.timedelta(seconds=max(0.0, due - time.monotonic())),
                         payload=_TIMERS)  # fmt: skip

    def _run_timers(self) -> None:
        self._armed = None
        heap = self._timer_heap
        while heap and heap[0][0] <= time.monotonic() + 0.0005:
            _, _, key = heapq.heappop(heap)
            if self._rt is not None:
                self._rt.on_timer(key)  # a cancelled timer (e.g. answered ask) is a no-op
        if heap and self._armed is None:
            self._arm(heap[0][0])

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
        finally:
            if self._outbox:
                self._flush_all()  # the end of the turn: what it sent goes out now

    def _on_message(self, msg: Any, sender: Any) -> None:
        rt = self._rt
        batch = FrameBatch.of(msg) if type(msg) is tuple else None
        if batch is not None:
            self._on_batch(batch, sender)
        elif isinstance(msg, bytes) and rt is not None:
            rt.on_frame(msg, sender)
        elif isinstance(msg, Probe):
            self.send(sender, ProbeAck(self._id, msg.seq))  # only between handlers: liveness
        elif isinstance(msg, WakeupMessage):
            if msg.payload == _TIMERS:
                self._run_timers()
            elif isinstance(msg.payload, str) and msg.payload.startswith(_GAP):
                self._gap_timeout(msg.payload[len(_GAP):])
            elif msg.payload == _LEAVE_NOW:
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
            frames = frames_of(msg.deadMessage)
            for frame in frames or (msg.deadMessage,):
                sink(msg.deadAddress, frame)
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

    def _on_batch(self, batch: FrameBatch, sender: Any) -> None:
        """Frames from one sender, in the order it sent them (batches it sent earlier
        that the transport has not delivered yet are waited for, up to GAP_WAIT_S)."""
        key = str(sender)
        order = self._in_order.get(key)
        if order is None:  # the first batch seen from it: start there
            order = self._in_order[key] = InOrder()
            order.epoch, order.next = batch.epoch, batch.seq
        run = functools.partial(self._frames, batch.frames, sender)
        for each in order.offer(batch.epoch, batch.seq, run):
            each()
        if order.waiting:
            self.wakeupAfter(dt.timedelta(seconds=GAP_WAIT_S), payload=f"{_GAP}{key}")

    def _gap_timeout(self, key: str) -> None:
        order = self._in_order.get(key)
        if order is None or not order.waiting:
            return
        if self._log is not None:
            self._log.warning("batch_gap", sender=key, missing=order.next, held=order.waiting)
        for each in order.skip_gap():
            each()

    def _frames(self, frames: tuple[bytes, ...], sender: Any) -> None:
        rt = self._rt
        for frame in frames:
            if rt is not None:
                rt.on_frame(frame, sender)
            else:
                self._refuse_unborn(frame, sender)

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
