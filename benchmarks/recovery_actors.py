"""Actors of ``recovery.py``: a callboard worker that says which process it is (and can
hang on demand), and the raw Thespian parent/child pair of the baseline.

Imported by its top-level name ``recovery_actors`` (``recovery.py`` puts this folder on
``sys.path`` first), so callboard specs say ``"recovery_actors:Worker"`` and Thespian
finds ``recovery_actors.RawParent`` in its forked processes: with the fork start method
the module is already in their ``sys.modules``.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from thespian.actors import Actor as ThespianActor
from thespian.actors import ChildActorExited

from callboard import Actor, Message, handler

__all__ = [
    "ARM",
    "PGID_QUERY",
    "PID_QUERY",
    "Block",
    "Hang",
    "Here",
    "RawChild",
    "RawParent",
    "Where",
    "Worker",
]

# -- callboard -------------------------------------------------------------------------------


class Where(Message):
    """Asks a :class:`Worker` which process it runs in."""

    type_name: ClassVar[str] = "bench.recovery.Where"


class Here(Message):
    type_name: ClassVar[str] = "bench.recovery.Here"
    pid: int


class Hang(Message):
    """Makes a :class:`Worker` spin forever in its handler (only SIGKILL ends it)."""

    type_name: ClassVar[str] = "bench.recovery.Hang"


class Block(Message):
    """Makes a :class:`Worker` block its process for ``seconds``, then answer :class:`Here`."""

    type_name: ClassVar[str] = "bench.recovery.Block"
    seconds: float


class Worker(Actor):
    """Answers :class:`Where` with its pid; :class:`Block` is slow; :class:`Hang` never
    returns."""

    @handler
    def where(self, msg: Where) -> Here:
        return Here(pid=os.getpid())

    @handler
    def block(self, msg: Block) -> Here:
        time.sleep(msg.seconds)  # slow, but not stuck: probes are answered afterwards
        return Here(pid=os.getpid())

    @handler
    def hang(self, msg: Hang) -> None:
        while True:  # a stuck handler: the process is alive but takes no messages
            pass


# -- raw Thespian baseline ------------------------------------------------------------------

ARM = "arm"
"""To :class:`RawParent`: remember the sender as the one to tell about replacements, and
answer ``("child", pid)`` with the current child's pid (creating the child at first)."""
PID_QUERY = "pid?"
PGID_QUERY = "pgid?"


class RawChild(ThespianActor):  # type: ignore[misc]
    """Answers :data:`PID_QUERY` with its pid."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if msg == PID_QUERY:
            self.send(sender, os.getpid())


class RawParent(ThespianActor):  # type: ignore[misc]
    """The floor of recovery on Thespian alone: on ``ChildActorExited`` of its child it
    creates a new one at once, asks it its pid, and reports ``("child", pid)`` to the
    armed reporter when the new child answers. No callboard code anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self._child: Any = None
        self._child_pid: int | None = None
        self._reporter: Any = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ChildActorExited):
            if msg.childAddress == self._child:
                self._spawn()
        elif isinstance(msg, int) and sender == self._child:
            self._child_pid = msg
            if self._reporter is not None:
                self.send(self._reporter, ("child", msg))
        elif msg == ARM:
            self._reporter = sender
            if self._child is None:
                self._spawn()  # the answer goes out when the child reports its pid
            elif self._child_pid is not None:
                self.send(sender, ("child", self._child_pid))
        elif msg == PGID_QUERY:
            self.send(sender, os.getpgid(0))

    def _spawn(self) -> None:
        self._child_pid = None
        self._child = self.createActor(RawChild)
        self.send(self._child, PID_QUERY)
