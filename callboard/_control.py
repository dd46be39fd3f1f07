"""Control-plane messages between the runtime's own processes (System, supervisors, hosts).

They carry Thespian ``ActorAddress`` objects, which only Thespian's own (pickle) framing
can move, so they are not user messages and never cross the msgpack wire. User data
always travels as msgpack envelope bytes; see :mod:`callboard.messages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from callboard.config import SupervisorFlags

Address = Any  # a Thespian ActorAddress; opaque to everything but the transport shell

STOPPED = "stopped"
"""Directory value of a name whose actor is in the tree but stopped for good (terminated,
not restarted, or its supervisor gave up); ``None`` means restarting (back soon)."""


def routable(address: Address | None) -> bool:
    """Whether a directory value is an address a message can be sent to."""
    return address is not None and not is_stopped(address)


def is_stopped(address: Address | None) -> bool:
    """Whether a directory value is the STOPPED marker (addresses are never this str)."""
    return isinstance(address, str) and address == STOPPED


@dataclass(frozen=True)
class ActorSettings:
    """What every hosted actor needs to know about its system."""

    max_frame_bytes: int
    ask_timeout: float
    log_level: str = "info"
    log_file: str = ""
    metrics_dir: str = ""
    system_name: str = ""
    in_process: bool = False
    """Local transport: actors share the host's process, so leave its logging, metrics and
    process title alone (and never signal it)."""
    start_timeout: float = 10.0
    system_events: bool = False
    """The bus runs and wants ``system.*`` events."""
    policies: dict[str, Any] = field(default_factory=dict)
    """``[policies]``: name -> :class:`~callboard.resilience.Policy` (routes from here)."""


@dataclass(frozen=True)
class InitActor:
    """Supervisor -> new host: become actor ``id`` of class ``actor``."""

    id: str
    actor: str
    args: dict[str, Any]
    parent: str
    directory: dict[str, Address | None]
    settings: ActorSettings
    top_level: bool = False
    """A child of the root: if the root dies, take the whole system down (no orphans)."""


@dataclass(frozen=True)
class InitSupervisor:
    """Parent (or System, for the root) -> new supervisor process: supervise ``flags``."""

    id: str
    flags: SupervisorFlags
    parent: str | None
    root: Address | None
    directory: dict[str, Address | None]
    settings: ActorSettings
    top_level: bool = False
    host_pid: int | None = None
    root_id: str = "root"
    """Root only: the host application's pid; the system dies with it."""


@dataclass(frozen=True)
class Booting:
    """Child -> supervisor, before it starts: the pid to SIGKILL if the start hangs."""

    id: str
    pid: int


@dataclass(frozen=True)
class Started:
    """Child -> supervisor: running (a worker's ``on_start`` returned; a supervisor's
    children all started)."""

    id: str
    pid: int
    pgid: int = 0


@dataclass(frozen=True)
class StartRefused:
    """Child -> supervisor: it could not start (import, args, ``on_start``, its children).

    ``child`` names the child that failed: the sender itself, or for a supervisor the
    deepest child of its subtree that failed."""

    id: str
    reason: str
    child: str = ""


@dataclass(frozen=True)
class Exiting:
    """Child -> supervisor, when it leaves on its own: why (Thespian won't say). The
    supervisor answers with an exit request once it has stopped routing to the child."""

    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Shutdown:
    """Supervisor -> child: stop (a supervisor: stop your children in order first), tell
    the supervisor with ``Exiting("shutdown")``, then leave. ``linger``: stay a moment to
    refuse, with an answer, what still arrives (the rest of the system goes on)."""

    linger: bool = False


@dataclass(frozen=True)
class DirectoryUpdate:
    """Root -> every process of the tree: names whose address changed (``None``: not
    routable now, e.g. restarting) and names gone for good."""

    entries: dict[str, Address | None]
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamesChanged:
    """Supervisor -> root: its own children's names changed.

    ``down``: child supervisors whose whole subtree is not routable now; ``gone``: child
    supervisors whose subtree is gone for good (names removed)."""

    owner: str
    entries: dict[str, Address | None]
    removed: tuple[str, ...] = ()
    down: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    halted: tuple[str, ...] = ()
    """Child supervisors whose subtree is stopped for good (names kept, marked STOPPED)."""


@dataclass(frozen=True)
class Probe:
    """Supervisor -> child: liveness check; answered between messages, so a stuck
    handler cannot answer."""

    seq: int


@dataclass(frozen=True)
class ProbeAck:
    id: str
    seq: int


@dataclass(frozen=True)
class AdminRequest:
    """System -> supervisor: ``op`` is which_children, count_children, start_child,
    terminate_child, restart_child, delete_child, get_childspec or tree."""

    op: str
    args: dict[str, Any] = field(default_factory=dict)
    ref: int = 0


@dataclass(frozen=True)
class AdminReply:
    value: Any = None
    error: str | None = None
    """A :class:`~callboard.errors.SupervisorError` reason, or ``start_failed``."""
    detail: str = ""
    ref: int = 0


@dataclass(frozen=True)
class StopTree:
    """System -> root: stop every child in reverse start order, then answer."""


@dataclass(frozen=True)
class TreeStopped:
    pass


@dataclass(frozen=True)
class GetDirectory:
    """System -> root: the current name table, and whether the root has given up."""


@dataclass(frozen=True)
class DirectoryReply:
    directory: dict[str, Address | None]
    failed: str | None = None


@dataclass(frozen=True)
class BreakersRequest:
    """System -> worker: your circuit breakers (snapshots). With ``force`` = ``(target,
    state)``: first force the breaker of the route to ``target`` open or closed."""

    force: tuple[str, str] | None = None
    ref: int = 0


@dataclass(frozen=True)
class BreakersReply:
    actor: str
    breakers: list[dict[str, Any]]
    error: str | None = None
    ref: int = 0


BATCH_TAG = "callboard.batch/1"


class FrameBatch(NamedTuple):
    """Envelope frames from one actor process to one receiver, in the order sent.

    What an actor sends during one turn (one message handled) to one destination travels
    as one transport message: Thespian acknowledges every transport message before the
    next to the same target goes, so one message of many frames costs about what one
    frame does. ``epoch`` names the sending process; ``seq`` numbers its batches to this
    receiver from 1, so the receiver restores the order if the transport changed it.

    On the wire it is a plain tuple led by :data:`BATCH_TAG` (a named tuple would be
    pickled by reference to this class, several times slower on every hop)."""

    tag: str
    epoch: str
    seq: int
    frames: tuple[bytes, ...]

    @staticmethod
    def of(message: Any) -> FrameBatch | None:
        """The batch ``message`` is, if it is one."""
        if type(message) is tuple and len(message) == 4 and message[0] == BATCH_TAG:
            return FrameBatch(*message)
        return None

    def wire(self) -> tuple[str, str, int, tuple[bytes, ...]]:
        return (BATCH_TAG, self.epoch, self.seq, self.frames)


def frames_of(message: Any) -> tuple[bytes, ...]:
    """The envelope frames a transport message carries (none if it is not user data)."""
    if isinstance(message, bytes):
        return (message,)
    batch = FrameBatch.of(message)
    return batch.frames if batch is not None else ()
