"""Actors and messages for the child-administration system tests (imported by path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from callboard import Actor, Message, handler


class Who(Message):
    type_name: ClassVar[str] = "test.adm.Who"


class Info(Message):
    type_name: ClassVar[str] = "test.adm.Info"
    pid: int
    tag: str
    n: int


class Crash(Message):
    type_name: ClassVar[str] = "test.adm.Crash"


class Quit(Message):
    """Stop on purpose (``normal`` or ``shutdown``) once the handler returns."""

    type_name: ClassVar[str] = "test.adm.Quit"
    reason: str = "normal"


class SpinForever(Message):
    """Write ``flag`` (so the test knows the handler runs), then never return."""

    type_name: ClassVar[str] = "test.adm.SpinForever"
    flag: str


class Worker(Actor):
    """Reports its args and pid; crashes, quits or hangs on demand.

    ``marker``: while that file exists, ``on_start`` fails, so every (re)start of this
    actor fails until the test removes it. ``stop_file``: ``on_stop`` writes
    ``"<reason> <pid>"`` there, proving that it ran.
    """

    class Args(BaseModel):
        tag: str = ""
        n: int = 0
        marker: str = ""
        stop_file: str = ""

    def on_start(self) -> None:
        if self.args.marker and Path(self.args.marker).exists():
            raise RuntimeError(f"marker {self.args.marker} is present")

    def on_stop(self, reason: str) -> None:
        if self.args.stop_file:
            Path(self.args.stop_file).write_text(f"{reason} {os.getpid()}")

    @handler
    def who(self, msg: Who) -> Info:
        return Info(pid=os.getpid(), tag=self.args.tag, n=self.args.n)

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("crash on request")

    @handler
    def quit(self, msg: Quit) -> None:
        self.stop(msg.reason)

    @handler
    def spin_forever(self, msg: SpinForever) -> None:
        Path(msg.flag).write_text(str(os.getpid()))
        while True:  # a hung handler: only SIGKILL ends it
            pass
