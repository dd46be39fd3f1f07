"""Actors for test_queue_durability: a queue consumer that leaves a durable trail.

:class:`Recorder` consumes :class:`Job` from queue ``jobs`` and appends one line
``"<seq> <pid>\\n"`` per processed message to a file of its own process
(``<out_dir>/<actor id>-<pid>.log``). The line is written with a single ``os.write`` on
an ``O_APPEND`` descriptor before the handler returns: returning is what acknowledges
the message, and a ``write`` that returned is in the kernel's page cache, so a SIGKILL
of the process afterwards cannot lose it. A line therefore proves "processed"; an
acknowledgement always comes after its line.
"""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import BaseModel

from callboard import Actor, Message, consumer

PREFETCH = 20


class Job(Message):
    type_name: ClassVar[str] = "test.durable.Job"
    seq: int


class Recorder(Actor):
    class Args(BaseModel):
        out_dir: str

    _fd: int = -1

    def on_start(self) -> None:
        path = os.path.join(self.args.out_dir, f"{self.id}-{os.getpid()}.log")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pid = os.getpid()

    def on_stop(self, reason: str) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @consumer("jobs", prefetch=PREFETCH)
    def work(self, job: Job) -> None:
        os.write(self._fd, f"{job.seq} {self._pid}\n".encode())
