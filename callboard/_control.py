"""Control-plane messages between the runtime's own processes (System, supervisors, hosts).

They carry Thespian ``ActorAddress`` objects, which only Thespian's own (pickle) framing
can move, so they are not user messages and never cross the msgpack wire. User data
always travels as msgpack envelope bytes; see :mod:`callboard.messages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from callboard.config import SupervisorSpec

Address = Any  # a Thespian ActorAddress; opaque to everything but the transport shell


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
    process title alone."""


@dataclass(frozen=True)
class InitActor:
    """Supervisor -> new host: become actor ``id`` of class ``actor``."""

    id: str
    actor: str
    args: dict[str, Any]
    parent: str
    directory: dict[str, Address | None]
    settings: ActorSettings


@dataclass(frozen=True)
class Booting:
    """Host -> supervisor, before ``on_start`` runs: the pid to SIGKILL if the start hangs."""

    id: str
    pid: int


@dataclass(frozen=True)
class Started:
    """Host -> supervisor: ``on_start`` returned; the actor takes messages."""

    id: str
    pid: int


@dataclass(frozen=True)
class StartRefused:
    """Host -> supervisor: the actor could not start (import, args, or ``on_start``)."""

    id: str
    reason: str


@dataclass(frozen=True)
class Exiting:
    """Host -> supervisor, just before a host leaves on its own: why (Thespian won't say)."""

    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class DirectoryUpdate:
    """Supervisor -> hosts: names whose address changed (``None``: restarting)."""

    entries: dict[str, Address | None]
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class StartTree:
    """System -> root supervisor: start the configured children in order."""

    spec: SupervisorSpec
    settings: ActorSettings
    start_timeout: float


@dataclass(frozen=True)
class TreeStarted:
    directory: dict[str, Address | None]
    pgid: int
    pids: dict[str, int]


@dataclass(frozen=True)
class TreeStartFailed:
    child: str
    reason: str


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
    pids: dict[str, int] = field(default_factory=dict)
