"""``SupervisorActor``: the Thespian actor that starts, watches, restarts and stops children.

Decisions come from :mod:`callboard.supervisors._policy`; this shell carries them out.
Operations (start the tree, handle an exit, stop the tree) run one at a time from a
queue, each as a coroutine that awaits replies and timers as messages, so the mailbox
keeps flowing (status queries are answered while a slow child is being stopped).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage

from callboard._control import (
    ActorSettings,
    Booting,
    DirectoryReply,
    DirectoryUpdate,
    Exiting,
    GetDirectory,
    InitActor,
    Started,
    StartRefused,
    StartTree,
    StopTree,
    TreeStarted,
    TreeStartFailed,
    TreeStopped,
)
from callboard.actors._host import ActorHost, process_setup
from callboard.actors._tasks import Future, Task
from callboard.config import ChildSpec, SupervisorSpec
from callboard.observability import metrics as cbmetrics
from callboard.supervisors._policy import RestartIntensity, should_restart

__all__ = ["SupervisorActor"]


class _StartError(Exception):
    pass


@dataclass
class _Child:
    spec: ChildSpec
    address: Any = None
    pid: int | None = None
    status: str = "stopped"  # running | restarting | stopped
    restarts: int = 0
    last_exit_reason: str | None = None
    started_at: float | None = None
    told_reason: tuple[str, str] | None = None  # from the child's Exiting notice
    starting: Future[Any] | None = None
    exited: Future[str] | None = None
    history: list[str] = field(default_factory=list)


class SupervisorActor(ThespianActor):  # type: ignore[misc]
    """The root supervisor (id ``root``): one_for_one over its configured children."""

    def __init__(self) -> None:
        super().__init__()
        self._spec: SupervisorSpec | None = None
        self._settings: ActorSettings | None = None
        self._start_timeout = 10.0
        self._children: list[_Child] = []
        self._intensity: RestartIntensity | None = None
        self._ops: deque[Callable[[], Coroutine[Any, Any, None]]] = deque()
        self._busy = False
        self._timers: dict[str, Callable[[], object]] = {}
        self._timer_seq = 0
        self.failed: str | None = None
        self._stopping = False
        self._log: Any = None

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
        elif isinstance(msg, Booting | Started | StartRefused):
            child = self._child(msg.id, sender)
            if child is not None:
                if isinstance(msg, Booting):
                    child.pid = msg.pid
                elif child.starting is not None:
                    child.starting.set_result(msg)
        elif isinstance(msg, Exiting):
            child = self._child(msg.id, sender)
            if child is not None:
                child.told_reason = (msg.reason, msg.detail)
                if child.status == "running" and child.exited is None:
                    self._broadcast({child.spec.id: None})  # leaving: no new requests
                self.send(sender, ActorExitRequest())  # now it may go
        elif isinstance(msg, ChildActorExited):
            self._on_child_exited(msg.childAddress)
        elif isinstance(msg, GetDirectory):
            self.send(sender, DirectoryReply(self.directory(), self.failed, self.pids()))
        elif isinstance(msg, StartTree):
            self._enqueue(lambda: self._start_tree(msg, sender))
        elif isinstance(msg, StopTree):
            self._stopping = True
            self._enqueue(lambda: self._stop_tree(sender))
        elif isinstance(msg, ActorExitRequest):
            pass  # Thespian ends us after this; our children get their own exit requests

    def _child(self, child_id: str, sender: Any) -> _Child | None:
        """The child that sent a notice: by id, and only from its current process."""
        for c in self._children:
            if c.spec.id == child_id and c.address is not None and c.address == sender:
                return c
        return None

    # -- views -------------------------------------------------------------------------------

    def directory(self) -> dict[str, Any]:
        return {
            c.spec.id: (c.address if c.status == "running" and c.told_reason is None else None)
            for c in self._children
        }

    def pids(self) -> dict[str, int]:
        return {c.spec.id: c.pid for c in self._children if c.pid and c.status == "running"}

    # -- operation queue and timers ---------------------------------------------------------

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
        self._timer_seq += 1
        key = f"t{self._timer_seq}"
        self._timers[key] = fn
        self.wakeupAfter(dt.timedelta(seconds=max(0.0, delay)), payload=key)
        return key

    def _cancel(self, key: str) -> None:
        self._timers.pop(key, None)

    # -- starting ----------------------------------------------------------------------------

    async def _start_tree(self, msg: StartTree, reply_to: Any) -> None:
        self._spec = msg.spec
        self._settings = msg.settings
        self._start_timeout = msg.start_timeout
        self._intensity = RestartIntensity(msg.spec.intensity, msg.spec.period)
        self._log = process_setup(msg.spec.id, msg.settings).bind(role="supervisor")
        for spec in msg.spec.children:
            child = _Child(spec)
            self._children.append(child)
            try:
                await self._start_child(child)
            except _StartError as exc:
                self._children.remove(child)
                for started in reversed(self._children):
                    await self._stop_child(started)
                self._children.clear()
                self.send(reply_to, TreeStartFailed(spec.id, str(exc)))
                return
        self.send(reply_to, TreeStarted(self.directory(), os.getpgid(0), self.pids()))

    async def _start_child(self, child: _Child) -> None:
        """Create the child's process and wait until it confirms it runs; raise _StartError."""
        assert self._settings is not None and self._spec is not None
        address = self.createActor(ActorHost)
        child.address = address
        child.pid = None
        child.told_reason = None
        fut: Future[Any] = Future()
        child.starting = fut
        self.send(
            address,
            InitActor(
                child.spec.id, child.spec.actor, child.spec.args, self._spec.id,
                self.directory(), self._settings,
            ),
        )  # fmt: skip
        timer = self._after(self._start_timeout, lambda: fut.set_exception(_StartError("timeout")))
        try:
            outcome = await fut
            if isinstance(outcome, StartRefused):
                raise _StartError(outcome.reason)
        except _StartError:
            child.starting = None
            self._cancel(timer)
            await self._kill_unstarted(child)
            raise
        self._cancel(timer)
        child.starting = None
        child.status = "running"
        child.started_at = time.time()
        self._log.info("child_started", child=child.spec.id, child_pid=child.pid)
        self._broadcast({child.spec.id: address})

    async def _kill_unstarted(self, child: _Child) -> None:
        """A child that failed to start: make sure its process is gone before moving on."""
        if child.address is None:
            child.address = None
            return
        exited: Future[str] = Future()
        child.exited = exited
        if child.pid and child.pid != os.getpid():
            self._sigkill(child)
        else:
            self.send(child.address, ActorExitRequest())
        timer = self._after(2.0, lambda: exited.set_result("timeout"))
        await exited
        self._cancel(timer)
        child.exited = None
        child.status = "stopped"

    # -- exits -------------------------------------------------------------------------------

    def _on_child_exited(self, address: Any) -> None:
        child = next(
            (c for c in self._children if c.address is not None and c.address == address), None
        )
        if child is None:
            return  # Thespian sends two notices for a graceful exit; the first one counted
        child.address = None
        if child.exited is not None:  # we were stopping it: the stopper takes it from here
            child.exited.set_result("shutdown")
            return
        if child.starting is not None:  # died while starting
            reason = child.told_reason[1] if child.told_reason else "exited while starting"
            child.starting.set_exception(_StartError(reason))
            return
        reason, detail = child.told_reason or ("killed", "")
        child.told_reason = None
        child.status = "stopped"
        child.last_exit_reason = reason
        child.history.append(reason)
        self._log.warning("child_exited", child=child.spec.id, reason=reason, detail=detail)
        if self._stopping or self.failed:
            return
        self._broadcast({child.spec.id: None})
        self._enqueue(lambda: self._handle_exit(child, reason))

    async def _handle_exit(self, child: _Child, reason: str) -> None:
        if child not in self._children or self._stopping or self.failed:
            return
        if not should_restart(child.spec.restart, reason):
            if child.spec.restart == "temporary":
                self._children.remove(child)
                self._broadcast({}, removed=(child.spec.id,))
            return
        assert self._intensity is not None and self._spec is not None
        while not self._stopping:
            if not self._intensity.record():
                await self._give_up(
                    f"reached_max_restart_intensity: more than {self._spec.intensity} restarts "
                    f"in {self._spec.period}s (last: {child.spec.id} exited with {reason})"
                )
                return
            child.status = "restarting"
            child.restarts += 1
            cbmetrics.actor_metrics().restart(self._spec.id, child.spec.id, reason)
            try:
                await self._start_child(child)
            except _StartError as exc:
                self._log.error("restart_failed", child=child.spec.id, error=str(exc))
                reason = "error"
                continue
            self._log.info("child_restarted", child=child.spec.id, restarts=child.restarts)
            return

    async def _give_up(self, why: str) -> None:
        self.failed = why
        self._log.critical("supervisor_gave_up", reason=why)
        for child in reversed(self._children):
            await self._stop_child(child)
        self._broadcast({c.spec.id: None for c in self._children})

    # -- stopping ----------------------------------------------------------------------------

    async def _stop_tree(self, reply_to: Any) -> None:
        for child in reversed(self._children):
            await self._stop_child(child)
        self.send(reply_to, TreeStopped())

    async def _stop_child(self, child: _Child) -> None:
        """Shutdown request, wait up to the child's ``shutdown`` time, then SIGKILL."""
        if child.address is None:
            child.status = "stopped"
            return
        exited: Future[str] = Future()
        child.exited = exited
        shutdown = child.spec.shutdown
        timers: list[str] = []
        if shutdown == "brutal_kill":
            self._sigkill(child)
        else:
            self.send(child.address, ActorExitRequest())
            if shutdown != "infinity":
                assert isinstance(shutdown, float | int)

                def overrun() -> None:
                    self._log.warning("shutdown_timeout", child=child.spec.id, after_s=shutdown)
                    self._sigkill(child)

                timers.append(self._after(float(shutdown), overrun))
        # Backstop: a SIGKILLed process is reported within milliseconds; never wait forever
        # on a notice that Thespian lost.
        if shutdown != "infinity":
            grace = 2.0 + (0.0 if shutdown == "brutal_kill" else float(shutdown))
            timers.append(self._after(grace, lambda: exited.set_result("lost")))
        await exited
        for key in timers:
            self._cancel(key)
        child.exited = None
        child.status = "stopped"
        child.last_exit_reason = "shutdown"
        child.address = None
        self._log.info("child_stopped", child=child.spec.id)

    def _sigkill(self, child: _Child) -> None:
        if child.pid and child.pid != os.getpid():  # local transport: never kill the host
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)

    def _broadcast(self, entries: dict[str, Any], removed: tuple[str, ...] = ()) -> None:
        update = DirectoryUpdate(entries, removed)
        for c in self._children:
            if c.address is not None and c.status == "running":
                self.send(c.address, update)
