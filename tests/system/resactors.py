"""Actors and messages for the resilience system tests (imported by path)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from callboard import Actor, Message, Unavailable, handler


class Lookup(Message):
    type_name: ClassVar[str] = "test.res.Lookup"
    idempotent: ClassVar[bool] = True
    reply_type: ClassVar[str | None] = "test.res.Answer"
    key: str


class Answer(Message):
    type_name: ClassVar[str] = "test.res.Answer"
    value: str
    source: str
    pid: int = 0


class Backend(Actor):
    """Answers Lookup after ``delay_s``; fails with ``unavailable`` while ``fail_file``
    exists (a drill switch the test flips from outside)."""

    class Args(BaseModel):
        name: str
        delay_s: float = 0.0
        fail_file: str = ""

    @handler
    def lookup(self, msg: Lookup) -> Answer:
        if self.args.fail_file and Path(self.args.fail_file).exists():
            raise Unavailable(f"{self.args.name} is switched off")
        if self.args.delay_s:
            time.sleep(self.args.delay_s)
        return Answer(value=msg.key, source=self.args.name, pid=os.getpid())
