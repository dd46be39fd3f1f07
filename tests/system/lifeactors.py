"""Actors for the liveness and no-orphan tests."""

from __future__ import annotations

import os
import time
from typing import ClassVar

from callboard import Actor, Message, handler


class WhoAmI(Message):
    type_name: ClassVar[str] = "test.life.WhoAmI"


class Me(Message):
    type_name: ClassVar[str] = "test.life.Me"
    pid: int


class Busy(Message):
    """Keep the handler busy (no await) for ``seconds``."""

    type_name: ClassVar[str] = "test.life.Busy"
    seconds: float


class Hang(Message):
    type_name: ClassVar[str] = "test.life.Hang"


class Worker(Actor):
    @handler
    def who(self, msg: WhoAmI) -> Me:
        return Me(pid=os.getpid())

    @handler
    def busy(self, msg: Busy) -> Me:
        end = time.monotonic() + msg.seconds
        while time.monotonic() < end:  # CPU-bound on purpose: the mailbox is blocked
            pass
        return Me(pid=os.getpid())

    @handler
    def hang(self, msg: Hang) -> None:
        while True:
            pass
