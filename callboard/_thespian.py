"""Everything callboard needs to know about Thespian in one place.

Thespian is the transport and process manager; these are the settings and corrections
the runtime applies before the admin process forks (its children inherit them):

* sockets bind to the configured address (Thespian binds every interface and unpickles
  what arrives, so loopback is the only safe default);
* Thespian's own log goes to a file per system instead of a shared ``$TMPDIR`` file;
* the system base is chosen from ``[system] transport``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BASES",
    "apply_bind",
    "capabilities",
    "kill_group",
    "port_in_use",
    "processes_in_group",
]

BASES = {"tcp": "multiprocTCPBase", "local": "simpleSystemBase"}

_bind: str | None = None
_patched = False


TRANSMIT_RETRY_S = 0.1
"""Thespian waits 35 s (times the attempt number) before resending a message whose
connection closed before its acknowledgement, e.g. because the peer was just SIGKILLed.
On one host a closed connection means a dead peer: retry soon, so the resend meets a
refused connection and the sender learns at once that the target is dead."""


MAX_QUEUED_TRANSMITS = 256
"""Thespian's default (950) lets a sender queue hundreds of transmits, and every new one
scans that queue (about 370 messages/s one at a time between two actors). callboard
sends one batch per destination per turn, so a deep queue means slow receivers: at this
depth the sender stops taking new work and drains (Thespian's "tx-only mode") until the
queue is down to QUEUED_TRANSMIT_UNBLOCK. That is the backpressure a fast producer
feels: it is slowed, its receivers' backlogs stay bounded. Not lower: a process that
fans out to many peers at once (the root broadcasting a directory change, the bus) must
not enter that mode in normal operation, where two such processes could wait on each
other."""
QUEUED_TRANSMIT_UNBLOCK = 128
DROP_TRANSMITS_LEVEL = 1 << 30
"""Never: past its drop level Thespian fails new transmits outright (the message is
lost); callboard prefers the producer to wait (above)."""


def tune_transport() -> None:
    """Transport settings callboard sets itself (inherited by the forked admin and actors).

    Module constants, not environment variables: Thespian reads those once, at import,
    which may have happened in the host application before callboard ran."""
    from thespian.system.transport import TransmitIntent, asyncTransportBase

    asyncTransportBase.MAX_QUEUED_TRANSMITS = MAX_QUEUED_TRANSMITS
    asyncTransportBase.QUEUE_TRANSMIT_UNBLOCK_THRESHOLD = QUEUED_TRANSMIT_UNBLOCK
    asyncTransportBase.DROP_TRANSMITS_LEVEL = DROP_TRANSMITS_LEVEL
    _keep_wakeups_while_draining()

    defaults = TransmitIntent.__init__.__defaults__
    if defaults is not None and isinstance(defaults[-1], dt.timedelta):
        TransmitIntent.__init__.__defaults__ = (
            *defaults[:-1], dt.timedelta(seconds=TRANSMIT_RETRY_S),
        )  # fmt: skip


_wakeups_patched = False


def _keep_wakeups_while_draining() -> None:
    """Thespian loses a wakeup that falls due while the actor drains its transmit queue
    ("tx-only mode": ``_drain_tx_queue_if_needed`` runs the transport with
    ``TransmitOnly`` and throws away the wakeup that run hands back). Keep due wakeups
    queued instead; the next normal pass delivers them. (Without this, a producer that
    outpaces its receivers could lose its own timers: deadlines, sleeps, schedules.)"""
    global _wakeups_patched
    if _wakeups_patched:
        return
    from thespian.system.transport import TransmitOnly
    from thespian.system.transport.wakeupTransportBase import wakeupTransportBase

    original = wakeupTransportBase._deliver_wakeups

    def _deliver_wakeups(self: Any, incomingHandler: Any) -> Any:
        if incomingHandler is TransmitOnly or isinstance(incomingHandler, TransmitOnly):
            return None
        return original(self, incomingHandler)

    wakeupTransportBase._deliver_wakeups = _deliver_wakeups
    _wakeups_patched = True


def apply_bind(address: str) -> None:
    """Make every Thespian socket created from now on (in this process and its forks) bind
    ``address`` and advertise it. ``0.0.0.0`` or ``""`` restores Thespian's all-interfaces
    behaviour (multi-host; only on a trusted network)."""
    global _bind, _patched
    all_interfaces = address in ("", "0.0.0.0")
    _bind = None if all_interfaces else address
    if not all_interfaces:
        os.environ["THESPIAN_BASE_IPADDR"] = address
    if _patched:
        return
    from thespian.system.transport import IPBase

    original = IPBase.IPActorAddress.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _bind is not None:
            self.bindname = (_bind, self.bindname[1])

    IPBase.IPActorAddress.__init__ = __init__
    _patched = True


@contextlib.contextmanager
def shutdown_wait(seconds: float) -> Iterator[None]:
    """Bound how long ``ActorSystem.shutdown()`` waits for the admin (Thespian: 10 s).

    Used once callboard has already stopped the whole tree in order: what remains (admin,
    logger, an idle root) is then reaped by process group instead of waited for."""
    from thespian.system import systemBase

    old = systemBase.MAX_SYSTEM_SHUTDOWN_DELAY
    systemBase.MAX_SYSTEM_SHUTDOWN_DELAY = dt.timedelta(seconds=seconds)
    try:
        yield
    finally:
        systemBase.MAX_SYSTEM_SHUTDOWN_DELAY = old


def capabilities(transport: str, admin_port: int) -> dict[str, Any]:
    if transport == "tcp":
        return {"Admin Port": admin_port}
    return {}


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on (or holds) ``host:port``; Thespian would attach to it.

    Connections of a previous run lingering in TIME_WAIT do not count (the probe binds
    with SO_REUSEADDR, as the real listeners do): a restart may reuse its ports at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_in_group(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes whose process group is ``pgid``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.info["pid"]) == pgid:
                found.append(proc.info["pid"])
        except (ProcessLookupError, psutil.Error, PermissionError):
            continue
    return found


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as dead)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def kill_group(pgid: int) -> None:
    """SIGKILL a whole actor system: the admin ``setsid()``s, so it owns one process group.

    Refuses to signal our own group (that would kill the host application)."""
    if pgid <= 1 or pgid == os.getpgid(0):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
