"""``System``: start an actor tree from config, talk to it, stop it without leftovers.

::

    from callboard import System
    with System.start("config.toml") as system:     # path | dict | Config | None (default)
        reply = system.ask("echo", Ping(n=1), timeout=1.0)
        system.tell("echo", Ping(n=2))

Errors each call may raise:

``System.start``  :class:`ConfigError` (invalid config), :class:`StartFailed` (admin port in
                  use, a child failed to start: ``.child`` and ``.reason`` say which and why).
``ask``           :class:`NoSuchActor` (at once), :class:`AskTimeout`, :class:`RemoteError`
                  (``.code``: the handler's business code, ``crashed``, ``invalid_message``,
                  ``restarting``, ``stopping``), :class:`InvalidMessage` (the message cannot
                  be encoded or is over ``max_frame_bytes``), :class:`SystemFailed`,
                  :class:`SystemNotRunning`.
``tell``          the same as ``ask`` except timeouts and error replies: a tell is
                  fire-and-forget (at most once).
``stop``          nothing; it is idempotent and always leaves no process behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from prometheus_client import CollectorRegistry, generate_latest
from thespian.actors import ActorSystem, ExternalContext

from callboard import _thespian
from callboard._control import (
    ActorSettings,
    AdminReply,
    AdminRequest,
    BreakersReply,
    BreakersRequest,
    DirectoryReply,
    GetDirectory,
    InitSupervisor,
    Started,
    StartRefused,
    StopTree,
    frames_of,
    is_stopped,
    routable,
)
from callboard._services import services_spec
from callboard._system_messaging import MessagingAPI
from callboard.actors._runtime import reply_value
from callboard.config import ChildSpec, Config, load_config
from callboard.errors import (
    NO_SUCH_ACTOR,
    AskTimeout,
    CallboardError,
    InvalidMessage,
    NoSuchActor,
    NoSuchBreaker,
    RemoteError,
    StartFailed,
    SupervisorError,
    SystemFailed,
    SystemNotRunning,
)
from callboard.messages import (
    Envelope,
    Kind,
    Message,
    child_traceparent,
    decode_envelope,
    encode,
    mark_degraded,
    new_id,
)
from callboard.observability import logging as cblog
from callboard.observability import metrics as cbmetrics
from callboard.observability.resilience import ResilienceMetrics, ResilienceObserver
from callboard.resilience import (
    HOST,
    Attempt,
    Backoff,
    CallResult,
    Outcome,
    Queue,
    Route,
    RouteTable,
    guarded_call,
    parse_route,
)
from callboard.supervisors._supervisor import SupervisorActor

__all__ = ["System"]

_DEAD = object()  # the target address did not answer: re-resolve the name and resend
_CONTROL_TIMEOUT = 5.0
_LEAVING = frozenset({"crashed", "stopping"})


class System(MessagingAPI):
    """A running actor system. Create it with :meth:`start`; safe to use from many threads.

    Messaging (bus and queues, when configured): :meth:`publish`, :meth:`subscribe`,
    :meth:`route`, :meth:`enqueue`, :meth:`enqueue_many`, :meth:`queue_stats`,
    :meth:`dead_letters`, :meth:`replay_dead_letters`, :meth:`purge_dead_letters`,
    :meth:`bus_stats` (see :mod:`callboard._system_messaging`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.transport = config.system.transport
        self.admin_port = config.system.admin_port
        self.name = f"{self.transport}:{self.admin_port}" if self.transport == "tcp" else "local"
        self._asys: Any = None
        self._root: Any = None
        self._directory: dict[str, Any] = {}
        self._dir_lock = threading.Lock()
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._contexts: list[Any] = []
        self._ctx_lock = threading.Lock()
        self._local_lock = threading.RLock()
        self._state = "new"
        self._failed: str | None = None
        self.pgid: int | None = None
        self.root_pid: int | None = None
        self.started_at = 0.0
        self._workdir = Path(tempfile.mkdtemp(prefix="callboard-"))
        self.metrics_dir = self._workdir / "metrics"
        self.metrics_dir.mkdir()
        # The host's own routes: its metrics stay in this System's private registry (the
        # host application's prometheus setup is left alone) and join metrics().
        self._subscriptions = []
        self._registry = CollectorRegistry(auto_describe=True)
        self.routes = RouteTable(
            HOST, config.policies,
            on_event=ResilienceObserver(
                cblog.get_logger(actor=HOST, system=self.name), ResilienceMetrics(self._registry)
            ),
        )  # fmt: skip

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def start(
        cls, config: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None
    ) -> System:
        """Load ``config``, start the actor system and the supervision tree, and return once
        every child has confirmed it runs. On failure nothing is left running."""
        system = cls(load_config(config))
        try:
            system._boot()
        except BaseException:
            system.stop()
            raise
        return system

    def _boot(self) -> None:
        cfg = self.config.system
        if self.transport == "tcp":
            if _thespian.port_in_use(cfg.admin_port, cfg.bind or "127.0.0.1"):
                raise StartFailed(
                    "system",
                    f"admin port {cfg.admin_port} is already in use (Thespian would silently "
                    "attach to whatever listens there); choose another [system] admin_port",
                )
            _thespian.apply_bind(cfg.bind)
            _thespian.tune_transport()
            os.environ["THESPLOG_FILE"] = str(self._workdir / "thespian.log")
        self._asys = ActorSystem(
            _thespian.BASES[self.transport],
            _thespian.capabilities(self.transport, cfg.admin_port),
            logDefs=_THESPIAN_LOG_DEFS if self.transport == "tcp" else False,
            transientUnique=True,
        )
        self._state = "starting"
        self._root = self._asys.createActor(SupervisorActor)
        settings = ActorSettings(
            max_frame_bytes=cfg.max_frame_bytes,
            ask_timeout=cfg.ask_timeout,
            log_level=cfg.log_level,
            log_file=cfg.log_file,
            metrics_dir=str(self.metrics_dir) if self.transport == "tcp" else "",
            system_name=self.name,
            in_process=self.transport != "tcp",
            start_timeout=cfg.start_timeout,
            policies=dict(self.config.policies),
            system_events=self.config.bus_enabled and self.config.bus.system_events,
        )
        root = self.config.supervisor
        services = services_spec(self.config)
        if services is not None:  # the bus and the queues run first, under their own supervisor
            root = root.model_copy(update={"children": [services, *root.children]})
        init = InitSupervisor(
            root.id, root, None, None, {}, settings, host_pid=os.getpid(), root_id=root.id
        )
        budget = cfg.start_timeout * max(1, _count_workers(root.children)) + _CONTROL_TIMEOUT
        deadline = time.monotonic() + budget
        reply = self._asys.ask(self._root, init, budget)
        while not isinstance(reply, Started | StartRefused):
            remaining = deadline - time.monotonic()
            if reply is None or remaining <= 0:
                raise StartFailed(root.id, "no start confirmation from the root supervisor")
            reply = self._asys.listen(remaining)
        if isinstance(reply, StartRefused):
            raise StartFailed(reply.child or reply.id, reply.reason)
        self._directory = {}
        self.pgid = reply.pgid if self.transport == "tcp" else None
        self.root_pid = reply.pid if self.transport == "tcp" else None
        self._state = "running"
        self.started_at = time.time()
        _live_systems.add(self)

    def stop(self) -> None:
        """Stop every actor in reverse start order within its ``shutdown`` time (SIGKILL
        after it), shut Thespian down, and kill anything of this system still alive."""
        if self._state in ("stopped", "stopping"):
            return
        was = self._state
        self._state = "stopping"
        self._close_subscriptions()
        try:
            if self._asys is not None and self._root is not None and was in ("running", "starting"):
                with contextlib.suppress(Exception):
                    self._asys.ask(self._root, StopTree(), self._stop_budget())
        finally:
            try:
                for ctx in self._contexts:
                    with contextlib.suppress(Exception):
                        ctx.exit_clone()
                if self._asys is not None:
                    with contextlib.suppress(Exception), _thespian.shutdown_wait(2.0):
                        self._asys.shutdown()
            finally:
                self._reap()
                self._state = "stopped"
                _live_systems.discard(self)
                shutil.rmtree(self._workdir, ignore_errors=True)

    def _stop_budget(self) -> float:
        return _shutdown_budget(self.config.supervisor.children) + _CONTROL_TIMEOUT

    def _reap(self) -> None:
        """Last resort: whatever of our process group survived Thespian's shutdown dies."""
        if self.pgid is None:
            return
        deadline = time.monotonic() + 1.0
        while _thespian.processes_in_group(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.02)  # Thespian's own exits are in flight; give them a moment
        if _thespian.processes_in_group(self.pgid):
            _thespian.kill_group(self.pgid)
            deadline = time.monotonic() + 2.0
            while _thespian.processes_in_group(self.pgid) and time.monotonic() < deadline:
                time.sleep(0.01)

    def __enter__(self) -> System:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the system takes calls: started, not stopped, and the root has not given
        up (as far as this process has seen: :meth:`check` asks the root)."""
        return self._state == "running" and self._failed is None

    @property
    def failed(self) -> str | None:
        """Why the root supervisor gave up (or died), once a call has seen it; else None."""
        return self._failed

    # -- talking ------------------------------------------------------------------------------

    def ask(self, target: str, msg: Message, timeout: float | None = None) -> Any:
        """Send ``msg`` to the actor named ``target`` and wait for its reply (a Message, or
        ``None`` when the handler returned nothing). See the module docstring for errors.

        With a policy for the route ``host->target`` (``[policies]``), the request goes
        through it: bulkhead, retries with backoff, circuit breaker, per-attempt timeout,
        fallback; ``timeout`` bounds the whole call. A fallback's answer is marked
        degraded (``callboard.is_degraded(reply)``)."""
        self._check()
        timeout = self.config.system.ask_timeout if timeout is None else timeout
        deadline = time.time() + timeout
        route = self.routes.route(target)
        if route is None:
            return self._ask_once(target, msg, deadline, 1)
        if target not in self._directory:
            with self._context() as ctx:
                self._refresh(ctx)
            if target not in self._directory:
                raise NoSuchActor(target)
        call = guarded_call(route, new_id(), type(msg).idempotent, deadline, msg.reply_type)
        sent: Any = None
        while True:
            try:
                effect = call.send(sent)
            except StopIteration as stop:
                result: CallResult = stop.value
                break
            if isinstance(effect, Attempt):
                started = time.monotonic()
                try:
                    value = self._ask_once(
                        effect.target, msg, effect.deadline or deadline, effect.number
                    )
                except (RemoteError, AskTimeout, InvalidMessage, NoSuchActor) as exc:
                    sent = Outcome(error=exc, seconds=time.monotonic() - started)
                else:
                    sent = Outcome(value=value, seconds=time.monotonic() - started)
            elif isinstance(effect, Backoff):
                time.sleep(effect.seconds)  # the caller's own thread waits out the backoff
                sent = None
            else:
                sent = self._await_admission(route, effect)
        if result.error is not None:
            raise result.error
        if result.degraded:
            mark_degraded(result.value)
        return result.value

    @staticmethod
    def _await_admission(route: Route, effect: Queue) -> bool:
        admitted = threading.Event()
        route.when_admitted(effect.request_id, admitted.set)
        wait = None if effect.deadline is None else max(0.0, effect.deadline - time.time())
        if admitted.wait(wait):
            return True
        route.give_up_waiting(effect.request_id)
        return False

    def _ask_once(self, target: str, msg: Message, deadline: float, attempt: int) -> Any:
        env = self._envelope("ask", target, msg, deadline, attempt)
        frame = encode(env, self.config.system.max_frame_bytes)
        with self._context() as ctx:
            for resend in range(4):
                address = self._resolve(target, ctx, refresh=resend > 0)
                try:
                    result = self._exchange(ctx, address, frame, env.id, deadline)
                except RemoteError as exc:
                    if exc.code in _LEAVING:  # that process is going: look it up afresh
                        with self._dir_lock:
                            self._directory.pop(target, None)
                    raise
                if result is not _DEAD:
                    return result
                if time.time() >= deadline:
                    break
        raise AskTimeout(f"no reply from {target} before the deadline")

    def breakers(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every circuit breaker in the system: the host's and each running actor's, one
        per route used so far (``caller->target``), with ``state`` (closed / open /
        half_open), ``forced``, ``failure_rate``, ``slow_call_rate``, the window counts,
        ``next_trial_s`` (seconds until a trial is allowed; ``None`` when forced open),
        ``open_wait_s`` and the route's call ``counts``. Actors that do not answer within
        ``timeout`` are left out (and logged)."""
        self._check()
        found = self.routes.breakers()
        for name in self._running_workers():
            reply = self._breakers_of(name, None, timeout)
            if reply is not None:
                found.extend(reply.breakers)
        return sorted(found, key=lambda b: str(b["route"]))

    def set_breaker(self, route: str, state: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Force a breaker ``"open"`` (calls fail fast with ``circuit_open`` and no trial
        runs until it is closed again) or ``"closed"`` (a fresh window; it can trip again).

        ``route`` is ``"caller->target"`` (``host->target`` for the host's own calls) or
        just ``"target"``: every caller's breaker for that target. Returns the snapshots
        of the breakers changed. Raises ``ValueError`` (bad state or route),
        ``NoSuchActor`` (unknown caller), ``NoSuchBreaker`` (no breaker is configured for
        the route). A forced state lives in the caller's process: if that actor restarts,
        its breaker starts closed again."""
        if state not in ("open", "closed"):
            raise ValueError(f"a breaker can be forced 'open' or 'closed', not {state!r}")
        caller, target = parse_route(route)
        self._check()
        forced: Literal["open", "closed"] = "open" if state == "open" else "closed"
        changed: list[dict[str, Any]] = []
        errors: list[str] = []
        if caller in (None, HOST):
            try:
                changed.append(self.routes.force(target, forced))
            except LookupError as exc:
                errors.append(str(exc))
        if caller != HOST:
            names = self._running_workers()
            if caller is not None:
                if caller not in self._directory:
                    raise NoSuchActor(caller)
                names = [caller]
            for name in names:
                if name == target:
                    continue
                reply = self._breakers_of(name, (target, state), timeout)
                if reply is None:
                    errors.append(f"{name} did not answer")
                elif reply.error is not None:
                    errors.append(reply.error)
                else:
                    changed.extend(b for b in reply.breakers if b.get("target") == target)
        if not changed:
            raise NoSuchBreaker(route, "; ".join(errors))
        return changed

    def _running_workers(self) -> list[str]:
        names: list[str] = []

        def walk(node: dict[str, Any]) -> None:
            for child in node.get("children", []):
                if child["type"] == "worker" and child["status"] == "running":
                    names.append(child["id"])
                walk(child)

        walk(self.tree())
        return names

    def _breakers_of(
        self, name: str, force: tuple[str, str] | None, timeout: float
    ) -> BreakersReply | None:
        with self._context() as ctx:
            try:
                reply = self._control_ask(
                    ctx, lambda again: self._resolve(name, ctx, refresh=again),
                    BreakersRequest(force), BreakersReply, timeout,
                )  # fmt: skip
            except (RemoteError, NoSuchActor):
                return None
        return reply if isinstance(reply, BreakersReply) else None

    def tell(self, target: str, msg: Message) -> None:
        """Send ``msg`` to ``target`` without waiting (at most once)."""
        self._check()
        frame = encode(
            self._envelope("tell", target, msg, None), self.config.system.max_frame_bytes
        )
        with self._context() as ctx:
            ctx.tell(self._resolve(target, ctx), frame)

    def metrics(self) -> bytes:
        """Prometheus text exposition covering every actor process of this system, and
        the host's own resilience counters (routes ``host->...``)."""
        host = bytes(generate_latest(self._registry))
        if self.transport == "tcp":
            actors = cbmetrics.collect(self.metrics_dir)
        else:
            actors = bytes(generate_latest(cbmetrics.actor_metrics().registry))
        return cbmetrics.merge_expositions(actors, host)

    # -- supervision tree and child administration (OTP's supervisor calls) ----------------

    def tree(self, timeout: float = 10.0) -> dict[str, Any]:
        """The whole supervision tree as a JSON-able nested dict: for each node ``id``,
        ``type`` (worker/supervisor), ``strategy`` (supervisors), ``pid``, ``status``
        (running/restarting/stopped/...), ``restarts``, ``last_exit_reason``,
        ``uptime_s`` and ``children``."""
        return self._admin(self.config.supervisor.id, "tree", {}, timeout)  # type: ignore[no-any-return]

    def which_children(self, sup: str = "root", timeout: float = 10.0) -> list[dict[str, Any]]:
        """One row per child of supervisor ``sup`` (see :meth:`tree` for the fields)."""
        return self._admin(sup, "which_children", {}, timeout)  # type: ignore[no-any-return]

    def count_children(self, sup: str = "root", timeout: float = 10.0) -> dict[str, int]:
        """``{specs, active, supervisors, workers}`` of supervisor ``sup``, as in OTP."""
        return self._admin(sup, "count_children", {}, timeout)  # type: ignore[no-any-return]

    def get_childspec(self, sup: str, child_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The child spec of ``child_id``. Raises ``SupervisorError("not_found")``."""
        return self._admin(sup, "get_childspec", {"id": child_id}, timeout)  # type: ignore[no-any-return]

    def start_child(
        self, sup: str, spec: dict[str, Any] | ChildSpec | None = None, *,
        args: dict[str, Any] | None = None, child_id: str | None = None, timeout: float = 60.0,
    ) -> str:  # fmt: skip
        """Start a new child under ``sup`` and return its id once it runs.

        For a simple_one_for_one supervisor give ``args`` (merged into the template's
        args) and optionally ``child_id`` (default ``<sup>-<n>``); otherwise a full child
        ``spec``. Raises ``SupervisorError`` (``already_started``, ``already_present``,
        ``invalid_child_spec``) or ``StartFailed``.
        """
        if isinstance(spec, ChildSpec):
            spec = spec.model_dump(mode="json")
        payload = {"spec": spec, "args": args or {}, "id": child_id}
        result = self._admin(sup, "start_child", payload, timeout)
        return str(result["id"])

    def terminate_child(self, sup: str, child_id: str, timeout: float = 60.0) -> None:
        """Stop a child; its spec stays (unless temporary or dynamic). ``not_found``."""
        self._admin(sup, "terminate_child", {"id": child_id}, timeout)

    def restart_child(self, sup: str, child_id: str, timeout: float = 60.0) -> None:
        """Start a terminated child again. ``not_found``, ``running``, ``restarting``,
        ``simple_one_for_one``; ``StartFailed`` if it fails to start."""
        self._admin(sup, "restart_child", {"id": child_id}, timeout)

    def delete_child(self, sup: str, child_id: str, timeout: float = 60.0) -> None:
        """Forget a terminated child's spec. ``not_found``, ``running``, ``restarting``,
        ``simple_one_for_one``."""
        self._admin(sup, "delete_child", {"id": child_id}, timeout)

    def _admin(self, sup: str, op: str, args: dict[str, Any], timeout: float) -> Any:
        self._check()
        with self._context() as ctx:

            def locate(again: bool) -> Any:
                if sup == self.config.supervisor.id:
                    return self._root
                return self._resolve(sup, ctx, refresh=again)

            reply = self._control_ask(ctx, locate, AdminRequest(op, args), AdminReply, timeout)
        if isinstance(reply, _NotASupervisor):
            raise SupervisorError("not_a_supervisor", f"{sup} is a worker")
        if reply is None:
            raise AskTimeout(f"{sup} did not answer {op} within {timeout}s")
        assert isinstance(reply, AdminReply)
        if reply.error == "start_failed":
            raise StartFailed(str(reply.value or "?"), reply.detail)
        if reply.error is not None:
            raise SupervisorError(reply.error, reply.detail)
        return reply.value

    def check(self) -> None:
        """Raise ``SystemFailed`` if the root supervisor has given up or died (one round
        trip to the root); ``SystemNotRunning`` if stopped. For health monitors."""
        self._check()
        with self._context() as ctx:
            self._refresh(ctx)

    def status(self) -> dict[str, Any]:
        """A summary for operators: identity, uptime, and how many actors are in what state.

        ``failed`` is the root's reason once it gave up (the other fields then describe
        the last known tree). Raises only ``SystemNotRunning``."""
        if self._state != "running":
            raise SystemNotRunning(f"the system is {self._state}")
        counts = {"workers": 0, "supervisors": 0, "running": 0, "restarting": 0, "stopped": 0}
        failed = self._failed

        def walk(node: dict[str, Any]) -> None:
            for child in node.get("children", []):
                counts["supervisors" if child["type"] == "supervisor" else "workers"] += 1
                state = child["status"]
                counts[state if state in ("running", "restarting") else "stopped"] += 1
                walk(child)

        try:
            walk(self.tree())
        except SystemFailed as exc:
            failed = exc.reason
        return {
            "name": self.name,
            "transport": self.transport,
            "admin_port": self.admin_port if self.transport == "tcp" else None,
            "uptime_s": round(time.time() - self.started_at, 3),
            "host_pid": os.getpid(),
            "root_pid": self.root_pid,
            "failed": failed,
            **counts,
        }

    def kill(self, name: str) -> int:
        """SIGKILL the process of actor or supervisor ``name`` (a chaos drill: its
        supervisor sees exit reason ``killed``). Returns the pid killed. Raises
        ``NoSuchActor``, ``RemoteError("not_running")`` if it has no process now, and
        ``CallboardError`` on the local transport (actors share the host's process)."""
        if self.transport != "tcp":
            raise CallboardError("kill needs the tcp transport: local actors share this process")
        pids = self.directory()
        if name not in pids:
            raise NoSuchActor(name)
        pid = pids[name]
        if pid is None:
            raise RemoteError("not_running", f"{name} has no process now", {"actor": name})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    def directory(self) -> dict[str, int | None]:
        """Every name in the tree (workers and supervisors) -> its pid, ``None`` while it is
        not running; fresh from the supervisors."""
        found: dict[str, int | None] = {}

        def walk(node: dict[str, Any]) -> None:
            for child in node.get("children", []):
                found[child["id"]] = child["pid"] if child["status"] == "running" else None
                walk(child)

        walk(self.tree())
        return found

    # -- internals ------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._failed is not None:
            raise SystemFailed(self._failed)
        if self._state != "running":
            raise SystemNotRunning(f"the system is {self._state}")

    def _envelope(
        self, kind: Kind, target: str, msg: Message, deadline: float | None, attempt: int = 1
    ) -> Envelope:
        msg_id = new_id()
        return Envelope.model_construct(
            kind=kind, id=msg_id, type=msg.type_name, version=msg.version,
            correlation_id=msg_id, causation_id=None, deadline=deadline, priority=0,
            traceparent=child_traceparent(None), principal=None, attempt=attempt,
            target=target, sender=None, payload=msg, degraded=False,
        )  # fmt: skip

    @contextlib.contextmanager
    def _context(self) -> Iterator[Any]:
        """A Thespian endpoint for this thread's call: Thespian's are not thread-safe, so
        each concurrent caller borrows its own (created on demand, reused afterwards)."""
        if self.transport != "tcp":
            with self._local_lock:
                yield self._asys
            return
        try:
            ctx = self._idle.get_nowait()
        except queue.Empty:
            with self._ctx_lock:
                if self._state != "running":
                    raise SystemNotRunning(f"the system is {self._state}") from None
                ctx = ExternalContext(self._asys._systemBase.external_clone())
                self._contexts.append(ctx)
        try:
            yield ctx
        finally:
            self._idle.put(ctx)

    def _resolve(self, target: str, ctx: Any, refresh: bool = False) -> Any:
        if refresh or not routable(self._directory.get(target)):  # unknown/not running: ask again
            self._refresh(ctx)
        if target not in self._directory:
            raise NoSuchActor(target)
        address = self._directory[target]
        if address is None:
            raise RemoteError("restarting", f"{target} is restarting", {"actor": target})
        if is_stopped(address):  # terminated, or its supervisor gave up
            raise RemoteError("not_running", f"{target} is not running", {"actor": target})
        return address

    def _control_ask(self, ctx: Any, locate: Any, msg: Any, expect: type, timeout: float) -> Any:
        """Ask a runtime process (not a user actor) and wait for an answer of type ``expect``.

        ``locate(again)`` gives the address (``again``: look it up afresh). The endpoint is
        shared over time, so it may first deliver a late reply to an earlier, timed-out
        call (skipped). Thespian answers ``None`` early when the target is dead (or an
        older transmit on the endpoint failed): the name is looked up again and the
        request resent. Returns ``None`` on timeout, ``_NotASupervisor`` when a worker
        answered.
        """
        if not callable(locate):
            fixed = locate
            locate = lambda again: fixed  # noqa: E731
        deadline = time.monotonic() + timeout
        reply = ctx.ask(locate(False), msg, timeout)
        while not isinstance(reply, expect) or _gone(reply):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if any(_refuses_control(f) for f in frames_of(reply)):
                return _NotASupervisor()
            if reply is None or _gone(reply):  # dead, or a supervisor that has left
                reply = ctx.ask(locate(True), msg, remaining)
            else:
                reply = ctx.listen(remaining)
        return reply

    def _refresh(self, ctx: Any) -> DirectoryReply:
        if self.root_pid is not None and not _thespian.pid_alive(self.root_pid):
            self._failed = f"the root supervisor (pid {self.root_pid}) died"
            raise SystemFailed(self._failed)
        reply = self._control_ask(ctx, self._root, GetDirectory(), DirectoryReply, _CONTROL_TIMEOUT)
        if not isinstance(reply, DirectoryReply):
            self._failed = "the root supervisor does not answer"
            raise SystemFailed(self._failed)
        if reply.failed:
            self._failed = reply.failed
            raise SystemFailed(reply.failed)
        with self._dir_lock:
            self._directory = dict(reply.directory)
        return reply

    def _exchange(self, ctx: Any, address: Any, frame: bytes, req_id: str, deadline: float) -> Any:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise AskTimeout("the deadline passed before the request was sent")
        answer = ctx.ask(address, frame, remaining)
        while True:
            if answer is None:
                # Thespian answers None both on timeout and, quickly, for a dead address.
                return _DEAD if time.time() < deadline - 0.002 else _timeout()
            for frame in frames_of(answer):  # a reply may come in a batch with a late one
                env = decode_envelope(frame)
                if env.causation_id == req_id:
                    if env.kind == "error" and _error_code(env) == NO_SUCH_ACTOR:
                        return _DEAD
                    return reply_value(env)
            # A late reply to an earlier, timed-out call on this endpoint: skip it.
            remaining = deadline - time.time()
            if remaining <= 0:
                return _timeout()
            answer = ctx.listen(remaining)


def _count_workers(children: list[ChildSpec]) -> int:
    return sum(_count_workers(c.supervisor.children) if c.supervisor else 1 for c in children)


def _shutdown_budget(children: list[ChildSpec]) -> float:
    """Worst case of an orderly stop: every worker's shutdown time, in sequence."""
    total = 0.0
    for child in children:
        if child.supervisor is not None:
            total += _shutdown_budget(child.supervisor.children)
        elif child.shutdown == "infinity":
            return 24 * 3600.0
        elif isinstance(child.shutdown, float | int):
            total += float(child.shutdown)
    return total


def _gone(reply: Any) -> bool:
    return isinstance(reply, AdminReply) and reply.error == "gone"


class _NotASupervisor:
    """A worker answered a supervisor call (with an ``invalid_message`` error)."""


def _refuses_control(frame: bytes) -> bool:
    """Whether ``frame`` is a worker's refusal of a control message: an error reply that
    cites no request (the control message was no envelope)."""
    try:
        env = decode_envelope(frame)
    except Exception:
        return False
    return env.kind == "error" and env.causation_id is None


def _timeout() -> Any:
    raise AskTimeout("no reply before the deadline")


def _error_code(env: Envelope) -> str | None:
    payload = env.payload
    return payload.get("code") if isinstance(payload, dict) else None


# Thespian's stdlib logging (in its logger process): errors only; callboard logs itself.
_THESPIAN_LOG_DEFS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "ERROR"}},
    "root": {"level": "ERROR", "handlers": ["stderr"]},
}

_live_systems: weakref.WeakSet[System] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # A host that exits without stop() would otherwise leave the whole tree running:
    # Thespian's admin is a daemon in its own session.
    for system in list(_live_systems):
        with contextlib.suppress(Exception):
            system.stop()
