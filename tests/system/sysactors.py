"""Actors and messages the system tests run in real processes (imported by path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from callboard import Actor, BusinessError, Future, Message, handler


class Get(Message):
    type_name: ClassVar[str] = "test.sys.Get"


class Count(Message):
    type_name: ClassVar[str] = "test.sys.Count"
    value: int
    pid: int


class Incr(Message):
    type_name: ClassVar[str] = "test.sys.Incr"
    by: int = 1


class Fail(Message):
    type_name: ClassVar[str] = "test.sys.Fail"
    how: str  # "business" | "crash" | "bad_return"


class Spin(Message):
    type_name: ClassVar[str] = "test.sys.Spin"


class Park(Message):
    """Answered only when a later Release arrives."""

    type_name: ClassVar[str] = "test.sys.Park"
    tag: str = ""


class Release(Message):
    type_name: ClassVar[str] = "test.sys.Release"


class Released(Message):
    type_name: ClassVar[str] = "test.sys.Released"
    tags: list[str]


class AskVia(Message):
    """Ask ``target`` a Park (with ``timeout``) and report how it went."""

    type_name: ClassVar[str] = "test.sys.AskVia"
    target: str
    timeout: float


class Outcome(Message):
    type_name: ClassVar[str] = "test.sys.Outcome"
    result: str
    remaining_seen: float | None = None


class HowLong(Message):
    type_name: ClassVar[str] = "test.sys.HowLong"


class Remaining(Message):
    type_name: ClassVar[str] = "test.sys.Remaining"
    seconds: float | None


class Arm(Message):
    type_name: ClassVar[str] = "test.sys.Arm"
    delay: float


class Tick(Message):
    type_name: ClassVar[str] = "test.sys.Tick"


class StopMe(Message):
    type_name: ClassVar[str] = "test.sys.StopMe"
    reason: str = "normal"


class Big(Message):
    type_name: ClassVar[str] = "test.sys.Big"
    blob: bytes


class OutOfStock(BusinessError):
    """Business outcome: code defaults to ``out_of_stock``."""


class Counter(Actor):
    """Counts Incr; answers Get with its count and pid; fails on demand."""

    class Args(BaseModel):
        start: int = 0
        stop_file: str = ""

    def on_start(self) -> None:
        self.value = self.args.start
        self.ticks = 0

    def on_stop(self, reason: str) -> None:
        if self.args.stop_file:
            Path(self.args.stop_file).write_text(f"{reason} {os.getpid()}")

    @handler
    def incr(self, msg: Incr) -> Count:
        self.value += msg.by
        return Count(value=self.value, pid=os.getpid())

    @handler
    def get(self, msg: Get) -> Count:
        return Count(value=self.value + 1000 * self.ticks, pid=os.getpid())

    @handler
    def fail(self, msg: Fail) -> Count:
        if msg.how == "business":
            raise OutOfStock("none left", {"sku": "x"})
        if msg.how == "crash":
            raise RuntimeError("boom")
        return 42  # type: ignore[return-value]  # a bug on purpose: not a Message

    @handler
    def spin(self, msg: Spin) -> None:
        while True:  # a hung handler: only SIGKILL ends it
            pass

    @handler
    def arm(self, msg: Arm) -> None:
        self.schedule(msg.delay, Tick())

    @handler
    def tick(self, msg: Tick) -> None:
        self.ticks += 1

    @handler
    def stop_me(self, msg: StopMe) -> None:
        self.stop(msg.reason)

    @handler
    def big(self, msg: Big) -> Big:
        return msg


class Gate(Actor):
    """Parks every Park request until a Release answers all of them."""

    def on_start(self) -> None:
        self.parked: list[tuple[str, Future[None]]] = []

    @handler
    async def park(self, msg: Park) -> Released:
        gate: Future[None] = Future()
        self.parked.append((msg.tag, gate))
        await gate
        return Released(tags=[msg.tag])

    @handler
    def release(self, msg: Release) -> Released:
        parked, self.parked = self.parked, []
        for _, gate in parked:
            gate.set_result(None)
        return Released(tags=[tag for tag, _ in parked])

    @handler
    def how_long(self, msg: HowLong) -> Remaining:
        return Remaining(seconds=self.remaining())


class Caller(Actor):
    """Asks other actors from an async handler and reports the outcome."""

    @handler
    async def ask_via(self, msg: AskVia) -> Outcome:
        try:
            await self.ask(msg.target, Park(tag="via"), timeout=msg.timeout)
        except Exception as exc:
            return Outcome(result=type(exc).__name__)
        return Outcome(result="ok")

    @handler
    async def how_long(self, msg: HowLong) -> Remaining:
        reply: Remaining = await self.ask("gate", HowLong(), timeout=30.0)
        return reply

    @handler
    def get(self, msg: Get) -> Count:
        return Count(value=-1, pid=os.getpid())


class BadStart(Actor):
    def on_start(self) -> None:
        raise RuntimeError("cannot open the thing")


class Typed(Actor):
    class Args(BaseModel):
        size: int
