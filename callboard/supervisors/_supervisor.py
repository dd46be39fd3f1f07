"""``SupervisorActor``: the Thespian actor that starts, watches, restarts and stops children.

Decisions come from :mod:`callboard.supervisors._policy`; this shell carries them out,
with OTP's ``supervisor`` as the contract (strategies, restart types, intensity, shutdown
order, significant children, child administration). Operations that change the children
(start the tree, handle an exit, restart attempts, administration, stop) run one at a time
from a queue, each as a coroutine that awaits replies and timers as messages, so the
mailbox keeps flowing: status queries, the tree and liveness probes are answered while a
slow child is being stopped, and administration requests get in between restart attempts.

The root supervisor (id ``root``) also owns the name directory of the whole tree.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage

from callboard import _lifeline, _thespian
from callboard._control import (
    STOPPED,
    ActorSettings,
    AdminReply,
    AdminRequest,
    Booting,
    DirectoryReply,
    DirectoryUpdate,
    Exiting,
    GetDirectory,
    InitActor,
    InitSupervisor,
    NamesChanged,
    Probe,
    ProbeAck,
    Shutdown,
    Started,
    StartRefused,
    StopTree,
    TreeStopped,
    frames_of,
    routable,
)
from callboard.actors._host import LINGER_S, ActorHost, process_setup
from callboard.actors._messaging import BUS, event_item
from callboard.actors._runtime import error_frame
from callboard.actors._tasks import Future, Task
from callboard.bus._events import HealthEvent, SupervisorEvent
from callboard.bus._protocol import Publish
from callboard.config import ChildSpec, SupervisorFlags
from callboard.errors import INVALID_MESSAGE, InvalidMessage
from callboard.messages import Envelope, Message, decode_envelope, encode, new_id
from callboard.observability import metrics as cbmetrics
from callboard.supervisors._policy import (
    RestartIntensity,
    auto_shutdown_triggered,
    backoff_delay,
    restart_plan,
    should_restart,
)

__all__ = ["SupervisorActor"]

_TREE_TIMEOUT_S = 2.0
_SWEEP_S = 1.0
_ASKED = "asked by its supervisor"


class _StartError(Exception):
    def __init__(self, child: str, reason: str) -> None:
        super().__init__(reason)
        self.child = child
        self.reason = reason


@dataclass
class _Child:
    spec: ChildSpec
    address: Any = None
    pid: int | None = None
    status: str = "stopped"  # starting | running | restarting | stopping | stopped
    restarts: int = 0
    last_exit_reason: str | None = None
    started_at: float | None = None
    told_reason: tuple[str, str] | None = None
    starting: Future[Any] | None = None
    exited: Future[str] | None = None
    backoff_attempt: int = 0
    incarnation: int = 0
    probe_seq: int = 0
    acked_seq: int = 0
    pending_restart: str | None = None
    linger: bool = False  # the current stop lets the process linger (see Shutdown)
    restart_reason: str = "unknown"  # the exit that caused the pending restart (metrics)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def is_supervisor(self) -> bool:
        return self.spec.supervisor is not None

    def node(self) -> dict[str, Any]:
        """This child's row in ``which_children`` and ``tree``."""
        running = self.status == "running" and self.started_at is not None
        node: dict[str, Any] = {
            "id": self.id,
            "type": "supervisor" if self.is_supervisor else "worker",
            "pid": self.pid if self.status in ("running", "stopping") else None,
            "status": self.status,
            "restarts": self.restarts,
            "last_exit_reason": self.last_exit_reason,
            "uptime_s": round(time.time() - self.started_at, 3) if running else None,  # type: ignore[operator]
            "restart": self.spec.restart,
            "significant": self.spec.significant,
        }
        if self.spec.supervisor is not None:
            node["strategy"] = self.spec.supervisor.strategy
            node["children"] = []
        return node


class SupervisorActor(ThespianActor):  # type: ignore[misc]
    """Every callboard supervisor process, the root included."""

    def __init__(self) -> None:
        super().__init__()
        self._id = "?"
        self._root_id = "root"
        self._flags: SupervisorFlags | None = None
        self._settings: ActorSettings | None = None
        self._parent_addr: Any = None
        self._root_addr: Any = None
        self._is_root = False
        self._dir: dict[str, Any] = {}
        self._owner: dict[str, str] = {}  # root only: name -> id of its supervisor
        self._children: list[_Child] = []
        self._intensity: RestartIntensity | None = None
        self._ops: deque[Callable[[], Coroutine[Any, Any, None]]] = deque()
        self._busy = False
        self._timers: dict[str, Callable[[], object]] = {}
        self._seq = 0
        self._refs: dict[int, Future[Any]] = {}
        self._lingering: list[tuple[int, Any, int | None]] = []  # (token, address, pid)
        self._linger_waits: dict[int, Future[None]] = {}
        self._simple_seq = 0
        self._started_at = time.time()
        self.failed: str | None = None
        self._stopping = False
        self._left = False
        self._log: Any = None
        self._rng = random.Random()

    # -- Thespian entry point --------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        try:
            self._on_message(msg, sender)
        except Exception as exc:  # a supervisor bug must be loud, not a silent retry
            if self._log is not None:
                self._log.exception("supervisor_failure", error=f"{type(exc).__name__}: {exc}")

    def _on_message(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, WakeupMessage):
            fn = self._timers.pop(msg.payload, None) if isinstance(msg.payload, str) else None
            if fn is not None:
                fn()
        elif isinstance(msg, ProbeAck):
            child = self._child(msg.id, sender)
            if child is not None:
                child.acked_seq = max(child.acked_seq, msg.seq)
        elif isinstance(msg, Probe):
            self.send(sender, ProbeAck(self._id, msg.seq))
        elif isinstance(msg, Booting | Started | StartRefused):
            child = self._child(msg.id, sender)
            if child is not None:
                if isinstance(msg, Booting):
                    child.pid = msg.pid
                elif child.starting is not None:
                    child.starting.set_result(msg)
        elif isinstance(msg, Exiting):
            self._on_exiting(msg, sender)
        elif isinstance(msg, ChildActorExited):
            self._on_child_exited(msg.childAddress)
        elif isinstance(msg, DirectoryUpdate):
            self._dir.update(msg.entries)
            for name in msg.removed:
                self._dir.pop(name, None)
        elif isinstance(msg, NamesChanged):
            if self._is_root:
                self._apply_names(
                    msg.owner, msg.entries, msg.removed, msg.down, msg.gone, msg.halted
                )
        elif isinstance(msg, AdminReply):
            fut = self._refs.pop(msg.ref, None)
            if fut is not None:
                fut.set_result(msg)
        elif isinstance(msg, AdminRequest):
            self._admin(msg, sender)
        elif isinstance(msg, GetDirectory):
            self.send(sender, DirectoryReply(dict(self._dir), self.failed))
        elif isinstance(msg, InitSupervisor):
            self._init(msg, sender)
        elif isinstance(msg, StopTree):
            self._stopping = True
            self._enqueue(lambda: self._stop_tree(sender))
        elif isinstance(msg, Shutdown):
            self._stopping = True
            self._enqueue(lambda: self._leave("shutdown", _ASKED))
        elif frames_of(msg):
            for frame in frames_of(msg):
                self._refuse_user_message(frame, sender)
        # ActorExitRequest: Thespian ends us after this; our children were stopped already.

    # -- startup ---------------------------------------------------------------------------

    def _init(self, msg: InitSupervisor, sender: Any) -> None:
        if self._flags is not None:
            return
        self._id = msg.id
        self._root_id = msg.root_id
        self._flags = msg.flags
        self._settings = msg.settings
        self._parent_addr = sender
        self._is_root = msg.root is None
        self._root_addr = self.myAddress if self._is_root else msg.root
        self._dir = dict(msg.directory)
        self._intensity = RestartIntensity(msg.flags.intensity, msg.flags.period)
        self._log = process_setup(msg.id, msg.settings).bind(role="supervisor")
        if not msg.settings.in_process:
            if self._is_root:
                # The system dies with the host application or with Thespian's admin.
                _lifeline.watch([msg.host_pid or 0, os.getppid()], self._lifeline_cut)
            elif msg.top_level:
                _lifeline.watch([os.getppid()], self._lifeline_cut)
            else:
                _lifeline.die_with_parent()
        if not self._is_root:
            self.send(sender, Booting(msg.id, os.getpid()))
        if not msg.settings.in_process:
            self._after(_SWEEP_S, self._periodic_sweep)
        self._enqueue(self._start_all)

    def _lifeline_cut(self, pid: int) -> None:
        if self._log is not None:
            self._log.critical("lifeline_cut", dead_pid=pid, action="killing the whole system")
        _lifeline.kill_own_group()

    async def _start_all(self) -> None:
        assert self._flags is not None
        specs = [] if self._flags.strategy == "simple_one_for_one" else self._flags.children
        for spec in specs:
            child = _Child(spec)
            self._children.append(child)
            try:
                await self._start_child(child)
            except _StartError as exc:
                self._children.remove(child)
                for started in reversed(self._children):
                    await self._stop_child(started)
                self._children.clear()
                self.send(self._parent_addr, StartRefused(self._id, exc.reason, exc.child))
                return
        self.send(self._parent_addr, Started(self._id, os.getpid(), os.getpgid(0)))

    def _start_budget(self, spec: ChildSpec) -> float:
        """How long a child may take to confirm: a supervisor starts its whole subtree."""
        assert self._settings is not None
        return self._settings.start_timeout * max(1, _count_workers(spec)) + 1.0

    async def _start_child(self, child: _Child) -> None:
        """Create the child's process and wait until it confirms it runs; raise _StartError."""
        assert self._settings is not None
        if child.is_supervisor:
            address = self.createActor(SupervisorActor)
            assert child.spec.supervisor is not None
            init: Any = InitSupervisor(
                child.id, child.spec.supervisor, self._id, self._root_addr, dict(self._dir),
                self._settings, top_level=self._is_root, root_id=self._root_id,
            )  # fmt: skip
        else:
            address = self.createActor(ActorHost)
            assert child.spec.actor is not None
            init = InitActor(
                child.id, child.spec.actor, child.spec.args, self._id, dict(self._dir),
                self._settings, top_level=self._is_root,
            )  # fmt: skip
        child.address = address
        child.pid = None
        child.told_reason = None
        child.status = "starting"
        child.incarnation += 1
        fut: Future[Any] = Future()
        child.starting = fut
        self.send(address, init)
        timer = self._after(
            self._start_budget(child.spec),
            lambda: fut.set_exception(_StartError(child.id, "no start confirmation in time")),
        )
        try:
            outcome = await fut
            if isinstance(outcome, StartRefused):
                raise _StartError(outcome.child or child.id, outcome.reason)
        except _StartError:
            child.starting = None
            self._cancel(timer)
            await self._kill_unstarted(child)
            raise
        self._cancel(timer)
        child.starting = None
        child.status = "running"
        child.started_at = time.time()
        self._log.info("child_started", child=child.id, child_pid=child.pid)
        self._event("child_started", child.id, pid=child.pid, restarts=child.restarts)
        self._names({child.id: address})
        if child.spec.liveness is not None:
            self._arm_probe(child, child.spec.liveness.interval)

    async def _kill_unstarted(self, child: _Child) -> None:
        """A child that failed to start: make sure its process is gone before moving on."""
        if child.address is None:
            child.status = "stopped"
            return
        exited: Future[str] = Future()
        child.exited = exited
        if not self._sigkill(child):
            self.send(child.address, ActorExitRequest())
        timer = self._after(2.0, lambda: exited.set_result("lost"))
        await exited
        self._cancel(timer)
        child.exited = None
        child.address = None
        child.status = "stopped"

    # -- exits -------------------------------------------------------------------------------

    def _on_exiting(self, msg: Exiting, sender: Any) -> None:
        child = self._child(msg.id, sender)
        if child is None:
            return
        if child.exited is not None:  # we are stopping it, and it has stopped
            if child.linger:
                # It runs no user code any more and lingers to refuse stragglers: stopped.
                self._seq += 1
                token = self._seq
                self._lingering.append((token, sender, child.pid))
                self._after(LINGER_S + 2.0, self._force_end(token))
                child.exited.set_result("shutdown")
            else:
                self.send(sender, ActorExitRequest())
            return
        child.told_reason = (msg.reason, msg.detail)
        if child.status != "running":
            return
        # It left on its own and runs no user code any more: it is gone for supervision
        # purposes. The process lingers a moment refusing stragglers (see
        # ActorHost.leave); we watch that it does end.
        self._seq += 1
        token = self._seq
        self._lingering.append((token, sender, child.pid))
        self._after(LINGER_S + 2.0, lambda: self._end_lingering(token, force=True))
        self._child_gone(child)

    async def _end_all_lingering(self) -> None:
        """End children still lingering after leaving, and wait for their exit notices:
        Thespian will not let a parent exit while it believes a child lives (and does not
        always notice a SIGKILLed one), so they are asked to go, and killed only late."""
        waits: list[tuple[int, Future[None]]] = []
        for token, address, _ in list(self._lingering):
            gone: Future[None] = Future()
            self._linger_waits[token] = gone
            self.send(address, ActorExitRequest())
            waits.append((token, gone))
        for token, gone in waits:
            timer = self._after(2.0, self._force_end(token))
            await gone
            self._cancel(timer)

    def _force_end(self, token: int) -> Callable[[], None]:
        return lambda: self._end_lingering(token, force=True)

    def _end_lingering(self, token: int, force: bool) -> None:
        for entry in self._lingering:
            if entry[0] == token:
                self._lingering.remove(entry)
                pid = entry[2]
                if force and pid and pid != os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)  # it should have ended by now
                break
        waiter = self._linger_waits.pop(token, None)
        if waiter is not None:
            waiter.set_result(None)

    def _on_child_exited(self, address: Any) -> None:
        for token, lingering, _ in self._lingering:
            if lingering == address:
                self._end_lingering(token, force=False)  # a lingering process ended
                return
        child = next(
            (c for c in self._children if c.address is not None and c.address == address), None
        )
        if child is not None:
            self._child_gone(child)
        # else: Thespian sends two notices for a graceful exit; the first one counted.
        self._sweep()  # siblings that died at the same moment may go unreported

    def _sweep(self) -> None:
        """Treat children whose process is dead as exited, notice or not.

        Thespian can lose the exit notice of a child that dies while it is handling
        another child's exit (it reaps both but reports one), so the process table has
        the last word: on every exit notice and on a periodic timer."""
        if self._settings is None or self._settings.in_process:
            return
        for child in list(self._children):
            if child.address is not None and child.pid and not _thespian.pid_alive(child.pid):
                self._child_gone(child)

    def _periodic_sweep(self) -> None:
        self._sweep()
        self._after(_SWEEP_S, self._periodic_sweep)

    def _child_gone(self, child: _Child) -> None:
        """The child's process ended (or left for good): decide what happens next."""
        child.address = None
        if child.exited is not None:  # we were stopping it: the stopper takes it from here
            child.exited.set_result("shutdown")
            return
        if child.starting is not None:  # died while starting
            reason = child.told_reason[1] if child.told_reason else "exited while starting"
            child.starting.set_exception(_StartError(child.id, reason))
            return
        reason, detail = child.told_reason or ("killed", "")
        child.told_reason = None
        child.status = "stopped"
        child.last_exit_reason = reason
        self._log.warning("child_exited", child=child.id, reason=reason, detail=detail)
        self._event("child_exited", child.id, reason=reason, detail=detail[:1000])
        self._names({child.id: None}, down=(child.id,) if child.is_supervisor else ())
        if self._stopping or self.failed:
            return
        self._enqueue(lambda: self._handle_exit(child, reason))

    async def _handle_exit(self, child: _Child, reason: str) -> None:
        assert self._flags is not None and self._intensity is not None
        if child not in self._children or child.status != "stopped":
            return
        if self._stopping or self.failed:
            return
        flags = self._flags
        if child.spec.significant:
            left = sum(
                1 for c in self._children
                if c is not child and c.spec.significant and c.status != "stopped"
            )  # fmt: skip
            if auto_shutdown_triggered(flags.auto_shutdown, reason, child.spec.restart, left):
                if child.spec.restart == "temporary":
                    self._drop(child)
                why = f"auto_shutdown ({flags.auto_shutdown}): significant child {child.id} exited"
                await self._leave("shutdown", why)
                return
        if not should_restart(child.spec.restart, reason):
            if child.spec.restart == "temporary" or flags.strategy == "simple_one_for_one":
                self._drop(child)
            else:
                self._halt_names(child)
            return
        if not self._intensity.record():
            await self._give_up(child, reason)
            return
        terminate, restart = restart_plan(flags.strategy, [c.id for c in self._children], child.id)
        for cid in terminate:
            other = self._find(cid)
            if other is None:
                continue
            if other.status in ("running", "starting"):
                again = other.spec.restart != "temporary"
                await self._stop_child(other, linger=True, restarting=again)
                other.last_exit_reason = "shutdown"
                other.restart_reason = "shutdown"
            if other.spec.restart == "temporary":
                self._drop(other)  # OTP: terminated temporary bystanders are not restarted
        ids = [cid for cid in restart if self._find(cid) is not None]
        child.restart_reason = reason
        for cid in ids:
            c = self._find(cid)
            assert c is not None
            c.status = "restarting"
            self._names({cid: None}, down=(cid,) if c.is_supervisor else ())
        self._schedule_restart(ids, self._backoff(child))

    def _backoff(self, child: _Child, failed_start: bool = False) -> float:
        """The delay before the next restart of ``child``; the exponent resets only when
        the child had been running for ``reset_after`` (not after a failed start)."""
        backoff = child.spec.backoff
        if backoff is None:
            return 0.0
        ran = time.time() - child.started_at if child.started_at else 0.0
        if not failed_start and ran >= backoff.reset_after:
            child.backoff_attempt = 0
        delay = backoff_delay(
            child.backoff_attempt, backoff.min, backoff.max, backoff.jitter, self._rng.random
        )
        child.backoff_attempt += 1
        return delay

    def _schedule_restart(self, ids: list[str], delay: float) -> None:
        """Restart ``ids`` in order after ``delay``, as a queued operation of its own, so
        administration requests get in between attempts."""
        key = self._after(delay, lambda: self._enqueue(lambda: self._restart(ids)))
        for cid in ids:
            c = self._find(cid)
            if c is not None:
                c.pending_restart = key

    async def _restart(self, ids: list[str]) -> None:
        assert self._intensity is not None
        for i, cid in enumerate(ids):
            child = self._find(cid)
            if child is None or child.status != "restarting" or child.pending_restart is None:
                continue  # terminated or deleted meanwhile
            if self._stopping or self.failed:
                return
            child.pending_restart = None
            try:
                await self._start_child(child)
            except _StartError as exc:
                child.status = "restarting"
                child.last_exit_reason = "error"
                self._names({cid: None})
                self._log.error("restart_failed", child=cid, error=exc.reason)
                if not self._intensity.record():
                    await self._give_up(child, "error")
                    return
                self._schedule_restart(ids[i:], self._backoff(child, failed_start=True))
                return
            child.restarts += 1
            reason = child.restart_reason
            cbmetrics.actor_metrics().restart(self._id, cid, reason)
            self._log.info("child_restarted", child=cid, restarts=child.restarts, reason=reason)
            self._event("child_restarted", cid, reason=reason, restarts=child.restarts,
                        pid=child.pid)  # fmt: skip

    def _event(self, name: str, child: str, **fields: Any) -> None:
        """Publish a system event (``system.supervisor.<name>``, or ``system.health.*``
        for ``unresponsive``) if the bus runs; best effort, never waits."""
        settings = self._settings
        bus = self._dir.get(BUS)
        if settings is None or not settings.system_events or not routable(bus):
            return
        if name == "unresponsive":
            topic = "system.health.unresponsive"
            event: Message = HealthEvent(actor=child, check="liveness",
                                         detail=str(fields.get("detail", "")))  # fmt: skip
        else:
            topic = f"system.supervisor.{name}"
            event = SupervisorEvent(supervisor=self._id, child=child, event=name, **fields)
        try:
            frame = encode(Envelope.model_construct(
                kind="tell", id=new_id(), type=Publish.type_name, version=1,
                correlation_id=None, causation_id=None, deadline=None, priority=0,
                traceparent=None, principal=None, attempt=1, target=BUS, sender=self._id,
                payload=Publish(event=event_item(topic, event, None)),
            ))  # fmt: skip
            self.send(bus, frame)
        except Exception as exc:  # an event must never disturb supervision
            self._log.warning("system_event_failed", topic=topic, error=str(exc))

    async def _give_up(self, child: _Child, reason: str) -> None:
        assert self._flags is not None
        why = (
            f"reached_max_restart_intensity: more than {self._flags.intensity} restarts in "
            f"{self._flags.period}s (last: {child.id} exited with {reason})"
        )
        self._log.critical("restart_intensity_exceeded", reason=why)
        self._event("intensity_exceeded", child.id, reason=why)
        await self._leave("shutdown", why)

    async def _leave(self, reason: str, why: str) -> None:
        """Terminate every child (reverse start order), then exit with ``reason``: the
        parent applies its own policy (escalation). The root instead marks the system
        failed (or shut down) and stays to answer with that reason."""
        self._stopping = True
        await self._stop_all()
        log = self._log.info if why == _ASKED else self._log.warning
        log("supervisor_shutdown", reason=reason, why=why)
        if self._is_root:
            self.failed = why
            return
        self._left = True
        self.send(self._parent_addr, Exiting(self._id, reason, why))
        self._after(LINGER_S, lambda: self.send(self.myAddress, ActorExitRequest()))

    # -- stopping ----------------------------------------------------------------------------

    async def _stop_tree(self, reply_to: Any) -> None:
        await self._stop_all()
        self.send(reply_to, TreeStopped())

    async def _stop_all(self) -> None:
        assert self._flags is not None
        await self._end_all_lingering()
        if self._flags.strategy == "simple_one_for_one":
            # OTP: dynamic children are terminated in parallel (no order among them).
            waits = [self._stop_child(c) for c in self._children]
            tasks = [_spawn(w) for w in waits]
            for t in tasks:
                await t
            return
        for child in reversed(self._children):
            await self._stop_child(child)

    async def _stop_child(
        self, child: _Child, linger: bool = False, restarting: bool = False
    ) -> None:
        """Shutdown request, wait up to the child's ``shutdown`` time, then SIGKILL.

        ``linger``: the system goes on (a restart, ``terminate_child``), so a worker stays a
        moment after stopping to refuse, with an answer, what still arrives for it.
        ``restarting``: it will be started again right after (a restart strategy), so
        callers are told ``restarting``, not ``not_running``."""
        if child.pending_restart is not None:
            self._cancel(child.pending_restart)
            child.pending_restart = None
        if child.address is None:
            if child.status != "stopped":
                child.status = "stopped"
                self._halt_names(child)
            return
        exited: Future[str] = Future()
        child.exited = exited
        child.status = "stopping"
        if restarting:
            self._names({child.id: None}, down=(child.id,) if child.is_supervisor else ())
        else:
            self._halt_names(child)
        shutdown = child.spec.shutdown
        timers: list[str] = []
        child.linger = linger and not child.is_supervisor
        if shutdown == "brutal_kill":
            self._sigkill(child)
        else:
            self.send(child.address, Shutdown(linger=child.linger))
            if shutdown != "infinity":
                seconds = float(shutdown)

                def overrun() -> None:
                    self._log.warning("shutdown_timeout", child=child.id, after_s=seconds)
                    self._sigkill(child)

                timers.append(self._after(seconds, overrun))
        if shutdown != "infinity":
            # Backstop: a SIGKILLed process is reported within milliseconds; never wait
            # forever on a notice that Thespian lost.
            grace = 2.0 + (0.0 if shutdown == "brutal_kill" else float(shutdown))
            timers.append(self._after(grace, lambda: exited.set_result("lost")))
        await exited
        for key in timers:
            self._cancel(key)
        child.exited = None
        child.linger = False
        child.address = None
        child.status = "stopped"
        self._log.info("child_stopped", child=child.id)

    def _sigkill(self, child: _Child) -> bool:
        if child.pid and child.pid != os.getpid():  # local transport: never kill the host
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            return True
        return False

    # -- liveness ----------------------------------------------------------------------------

    def _arm_probe(self, child: _Child, delay: float) -> None:
        inc = child.incarnation
        self._after(delay, lambda: self._probe(child, inc))

    def _probe(self, child: _Child, inc: int) -> None:
        liveness = child.spec.liveness
        if liveness is None or child.incarnation != inc or child.status != "running":
            return
        child.probe_seq += 1
        seq = child.probe_seq
        self.send(child.address, Probe(seq))
        self._arm_probe(child, liveness.interval)  # probes go out every interval regardless

        def check() -> None:
            if child.incarnation != inc or child.status != "running":
                return
            if child.acked_seq >= seq:
                return
            self._log.error("liveness_timeout", child=child.id, timeout_s=liveness.timeout)
            self._event("unresponsive", child.id, detail=f"no answer in {liveness.timeout}s")
            child.told_reason = ("timeout", f"no liveness answer within {liveness.timeout}s")
            self._names({child.id: None})
            self._sigkill(child)

        self._after(liveness.timeout, check)

    # -- names -------------------------------------------------------------------------------

    def _halt_names(self, child: _Child) -> None:
        """Mark ``child`` (and a supervisor child's subtree) stopped for good."""
        self._names({child.id: STOPPED}, halted=(child.id,) if child.is_supervisor else ())

    def _names(
        self, entries: dict[str, Any], removed: tuple[str, ...] = (),
        down: tuple[str, ...] = (), gone: tuple[str, ...] = (), halted: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """Report our children's name changes to the root (which tells everyone)."""
        if self._is_root:
            self._apply_names(self._id, entries, removed, down, gone, halted)
            return
        self._dir.update(entries)
        for name in removed:
            self._dir.pop(name, None)
        if self._root_addr is not None:
            self.send(self._root_addr, NamesChanged(self._id, entries, removed, down, gone, halted))

    def _apply_names(
        self, owner: str, entries: dict[str, Any], removed: tuple[str, ...],
        down: tuple[str, ...], gone: tuple[str, ...], halted: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """Root: update the directory and push the change to every process of the tree."""
        changed: dict[str, Any] = {}
        dropped: list[str] = []
        for name, address in entries.items():
            self._dir[name] = address
            self._owner[name] = owner
            changed[name] = address
        for marker, sups in ((None, down), (STOPPED, halted)):
            for sup in sups:
                for name in self._descendants(sup):
                    if self._dir.get(name, marker) != marker:
                        self._dir[name] = marker
                        changed[name] = marker
        for sup in (*gone, *removed):
            for name in self._descendants(sup):
                self._dir.pop(name, None)
                self._owner.pop(name, None)
                dropped.append(name)
        for name in removed:
            self._dir.pop(name, None)
            self._owner.pop(name, None)
            dropped.append(name)
        if not changed and not dropped:
            return
        update = DirectoryUpdate(changed, tuple(dropped))
        for address in list(self._dir.values()):
            if routable(address):
                self.send(address, update)

    def _descendants(self, sup: str) -> list[str]:
        """Root: every name below supervisor ``sup`` (not ``sup`` itself)."""
        found: list[str] = []
        seen = {sup}
        frontier = {sup}
        while frontier:
            below = [n for n, o in self._owner.items() if o in frontier and n not in seen]
            found.extend(below)
            seen.update(below)
            frontier = set(below)
        return found

    def _drop(self, child: _Child) -> None:
        """Forget a child spec (temporary children, deleted specs, dynamic children)."""
        if child in self._children:
            self._children.remove(child)
        self._names({}, removed=(child.id,))

    # -- administration ----------------------------------------------------------------------

    def _admin(self, req: AdminRequest, sender: Any) -> None:
        def answer(value: Any = None, error: str | None = None, detail: str = "") -> None:
            self.send(sender, AdminReply(value, error, detail, req.ref))

        op, args = req.op, req.args
        if self._left:
            answer(error="gone", detail=f"{self._id} has left; look it up again")
            return
        if op == "which_children":
            answer([c.node() for c in self._children])
        elif op == "count_children":
            sups = sum(1 for c in self._children if c.is_supervisor)
            answer({
                "specs": len(self._children),
                "active": sum(1 for c in self._children if c.status == "running"),
                "supervisors": sups,
                "workers": len(self._children) - sups,
            })  # fmt: skip
        elif op == "get_childspec":
            child = self._find(str(args.get("id")))
            if child is None:
                answer(error="not_found", detail=f"no child {args.get('id')!r}")
            else:
                answer(child.spec.model_dump(mode="json"))
        elif op == "tree":
            _spawn(self._tree(answer))
        elif op == "sync":
            answer(None)  # a barrier: earlier NamesChanged from the asker are applied
        elif op in ("start_child", "terminate_child", "restart_child", "delete_child"):
            self._enqueue(lambda: self._admin_op(op, args, answer))
        else:
            answer(error="badarg", detail=f"unknown administration call {op!r}")

    async def _names_settled(self) -> None:
        """Wait until the root has applied our name changes so far, so that whoever we
        answer next can resolve the names at once (the root handles our messages in
        order: a round trip after them is a barrier)."""
        if self._is_root or self._root_addr is None:
            return
        fut: Future[Any] = Future()
        self._seq += 1
        ref = self._seq
        self._refs[ref] = fut
        self.send(self._root_addr, AdminRequest("sync", {}, ref))
        key = self._after(_TREE_TIMEOUT_S, _resolver(fut))
        await fut
        self._cancel(key)

    async def _admin_op(self, op: str, args: dict[str, Any], answer: Callable[..., None]) -> None:
        assert self._flags is not None
        simple = self._flags.strategy == "simple_one_for_one"
        if op == "start_child":
            await self._admin_start(args, answer)
            return
        cid = str(args.get("id"))
        child = self._find(cid)
        if child is None:
            answer(error="not_found", detail=f"{self._id} has no child {cid!r}")
            return
        if op == "terminate_child":
            await self._stop_child(child, linger=True)
            child.last_exit_reason = "shutdown"
            if simple or child.spec.restart == "temporary":
                self._drop(child)
            await self._names_settled()
            answer(None)
            return
        if simple:
            answer(error="simple_one_for_one", detail=f"{op} does not apply to dynamic children")
        elif child.status in ("running", "starting", "stopping"):
            answer(error="running", detail=f"{cid} is running")
        elif child.status == "restarting":
            answer(error="restarting", detail=f"{cid} is being restarted")
        elif op == "delete_child":
            self._drop(child)
            await self._names_settled()
            answer(None)
        else:  # restart_child
            try:
                await self._start_child(child)
            except _StartError as exc:
                answer(error="start_failed", detail=exc.reason, value=exc.child)
                return
            await self._names_settled()
            answer({"id": cid, "pid": child.pid})

    async def _admin_start(self, args: dict[str, Any], answer: Callable[..., None]) -> None:
        assert self._flags is not None
        if self._stopping or self.failed:
            answer(error="shutdown", detail=f"{self._id} is shutting down")
            return
        try:
            if self._flags.strategy == "simple_one_for_one":
                if args.get("spec"):
                    answer(
                        error="invalid_child_spec",
                        detail="a simple_one_for_one supervisor starts its template: give args",
                    )
                    return
                template = self._flags.children[0]
                self._simple_seq += 1
                cid = str(args.get("id") or f"{self._id}-{self._simple_seq}")
                extra = dict(args.get("args") or {})
                spec = ChildSpec.model_validate(
                    {**template.model_dump(), "id": cid, "args": {**template.args, **extra}}
                )
            else:
                spec = ChildSpec.model_validate(args.get("spec") or {})
        except ValidationError as exc:
            answer(error="invalid_child_spec", detail=str(exc))
            return
        existing = self._find(spec.id)
        if existing is not None:
            if existing.status == "running":
                answer(error="already_started", detail=f"{spec.id} is running")
            else:
                answer(error="already_present", detail=f"{spec.id} is present, not running")
            return
        taken = set(self._dir) | {self._id, self._root_id} | {c.id for c in self._children}
        new_ids = [spec.id] + (
            [c.id for _, c in spec.supervisor.walk()] if spec.supervisor is not None else []
        )
        clash = next((i for i in new_ids if i in taken), None)
        if clash is None and len(set(new_ids)) != len(new_ids):
            clash = next(i for i in new_ids if new_ids.count(i) > 1)
        if clash is not None:
            answer(error="already_present", detail=f"{clash!r} is used elsewhere in the tree")
            return
        child = _Child(spec)
        self._children.append(child)
        try:
            await self._start_child(child)
        except _StartError as exc:
            self._children.remove(child)
            answer(error="start_failed", detail=exc.reason, value=exc.child)
            return
        await self._names_settled()
        answer({"id": spec.id, "pid": child.pid})

    async def _tree(self, answer: Callable[..., None]) -> None:
        assert self._flags is not None
        nodes: list[dict[str, Any]] = []
        waits: list[tuple[dict[str, Any], Future[Any], str]] = []
        for child in self._children:
            node = child.node()
            nodes.append(node)
            if child.is_supervisor and child.status == "running" and child.address is not None:
                fut: Future[Any] = Future()
                self._seq += 1
                ref = self._seq
                self._refs[ref] = fut
                self.send(child.address, AdminRequest("tree", {}, ref))
                key = self._after(_TREE_TIMEOUT_S, _resolver(fut))
                waits.append((node, fut, key))
        for node, fut, key in waits:
            reply = await fut
            self._cancel(key)
            if isinstance(reply, AdminReply) and isinstance(reply.value, dict):
                node["children"] = reply.value.get("children", [])
            else:
                node["unresponsive"] = True
        answer({
            "id": self._id,
            "type": "supervisor",
            "strategy": self._flags.strategy,
            "pid": os.getpid(),
            "status": "failed" if self.failed else ("stopping" if self._stopping else "running"),
            "restarts": 0,
            "last_exit_reason": self.failed,
            "uptime_s": round(time.time() - self._started_at, 3),
            "children": nodes,
        })  # fmt: skip

    # -- helpers -----------------------------------------------------------------------------

    def _refuse_user_message(self, frame: bytes, sender: Any) -> None:
        """Supervisors take no user messages: answer the asker, never go silent."""
        try:
            env = decode_envelope(frame)
        except InvalidMessage:
            env = None
        if env is not None and env.kind in ("reply", "error", "tell"):
            return
        text = f"{self._id} is a supervisor; it takes no messages"
        details = {"reason": "unhandled", "actor": self._id}
        self.send(sender, error_frame(env, self._id, INVALID_MESSAGE, text, details))

    def _child(self, child_id: str, sender: Any) -> _Child | None:
        """The child that sent a notice: by id, and only from its current process."""
        for c in self._children:
            if c.id == child_id and c.address is not None and c.address == sender:
                return c
        return None

    def _find(self, child_id: str) -> _Child | None:
        return next((c for c in self._children if c.id == child_id), None)

    def _enqueue(self, op: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._ops.append(op)
        if not self._busy:
            self._run_next()

    def _run_next(self) -> None:
        while self._ops and not self._busy:
            op = self._ops.popleft()
            self._busy = True
            Task(op(), self._op_done).start()

    def _op_done(self, _value: Any, exc: BaseException | None) -> None:
        if exc is not None and self._log is not None:
            self._log.error("supervisor_op_failed", error=f"{type(exc).__name__}: {exc}")
        self._busy = False
        self._run_next()

    def _after(self, delay: float, fn: Callable[[], object]) -> str:
        self._seq += 1
        key = f"t{self._seq}"
        self._timers[key] = fn
        self.wakeupAfter(dt.timedelta(seconds=max(0.0, delay)), payload=key)
        return key

    def _cancel(self, key: str) -> None:
        self._timers.pop(key, None)


def _spawn(coro: Coroutine[Any, Any, Any]) -> Future[Any]:
    """Run ``coro`` as its own task (outside the operation queue); a future of its end."""
    done: Future[Any] = Future()

    def finished(value: Any, exc: BaseException | None) -> None:
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(value)

    Task(coro, finished).start()
    return done


def _resolver(fut: Future[Any]) -> Callable[[], object]:
    return lambda: fut.set_result(None)


def _count_workers(spec: ChildSpec) -> int:
    if spec.supervisor is None:
        return 1
    return sum(_count_workers(c) for c in spec.supervisor.children)
