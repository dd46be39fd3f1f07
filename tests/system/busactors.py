"""Actors and messages for the event bus system tests (``test_bus.py``), run in real
processes (imported by path, like ``sysactors``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from callboard import Actor, Future, Message, consumer, handler


class Order(Message):
    """The event most tests publish: ``seq`` says where it was in its publisher's order."""

    type_name: ClassVar[str] = "test.bus.Order"
    seq: int
    origin: str = ""
    tag: str = ""


class Purchase(Message):
    """A message for content-based routing (``[[routing]]`` rules look at its fields)."""

    type_name: ClassVar[str] = "test.bus.Purchase"
    id: int
    total: float
    region: str


class Other(Message):
    """A message no routing rule selects."""

    type_name: ClassVar[str] = "test.bus.Other"
    note: str = ""


class Got(BaseModel):
    """One event as a subscriber saw it."""

    topic: str
    seq: int
    origin: str
    tag: str


class GetSeen(Message):
    type_name: ClassVar[str] = "test.bus.GetSeen"


class Seen(Message):
    type_name: ClassVar[str] = "test.bus.Seen"
    pid: int
    items: list[Got]


class Burst(Message):
    """Ask the Publisher to publish ``n`` Orders (seq 0..n-1) on ``topic`` in one handler."""

    type_name: ClassVar[str] = "test.bus.Burst"
    topic: str
    n: int
    origin: str


class Release(Message):
    type_name: ClassVar[str] = "test.bus.Release"


class Released(Message):
    type_name: ClassVar[str] = "test.bus.Released"
    count: int


class Destinations(Message):
    type_name: ClassVar[str] = "test.bus.Destinations"
    items: list[str]


class Purchases(Message):
    type_name: ClassVar[str] = "test.bus.Purchases"
    items: list[dict[str, Any]]


class Recorder(Actor):
    """Subscribes to ``pattern`` at start and records every Order its subclass's handler
    gets, in the order they came."""

    class Args(BaseModel):
        pattern: str
        buffer: int | None = None
        overflow: str | None = None

    def on_start(self) -> None:
        self.seen: list[Got] = []
        self.subscribe(self.args.pattern, buffer=self.args.buffer, overflow=self.args.overflow)

    def record(self, event: Order) -> None:
        self.seen.append(Got(topic=self.current_topic() or "", seq=event.seq,
                             origin=event.origin, tag=event.tag))  # fmt: skip

    @handler
    def get_seen(self, msg: GetSeen) -> Seen:
        return Seen(pid=os.getpid(), items=list(self.seen))


class Collector(Recorder):
    """A plain subscriber: records each event at once."""

    @handler
    def on_order(self, event: Order) -> None:
        self.record(event)


class Sluggish(Recorder):
    """A slow subscriber: each event's handler parks (holding the bus's credit) until a
    Release; after that it handles events at once."""

    def on_start(self) -> None:
        self.parked: list[Future[None]] = []
        self.hold = True
        super().on_start()

    @handler
    async def on_order(self, event: Order) -> None:
        self.record(event)  # before the first await: current_topic() is this event's
        if self.hold:
            gate: Future[None] = Future()
            self.parked.append(gate)
            await gate

    @handler
    def release(self, msg: Release) -> Released:
        self.hold = False
        parked, self.parked = self.parked, []
        for gate in parked:
            gate.set_result(None)
        return Released(count=len(parked))


class Crashy(Recorder):
    """Crashes (RuntimeError) on an Order tagged ``boom``; re-subscribes in on_start."""

    @handler
    def on_order(self, event: Order) -> None:
        self.record(event)
        if event.tag == "boom":
            raise RuntimeError("boom on purpose")


class Publisher(Actor):
    """Publishes from inside an actor, and routes through the ``[[routing]]`` rules."""

    @handler
    def burst(self, msg: Burst) -> None:
        for seq in range(msg.n):
            self.publish(msg.topic, Order(seq=seq, origin=msg.origin))

    @handler
    async def dispatch(self, msg: Purchase | Other) -> Destinations:
        return Destinations(items=await self.route(msg))


class Auditor(Actor):
    """The durable subscription's consumer: appends ``<pid> <seq>`` per event to ``out``."""

    class Args(BaseModel):
        out: str

    @consumer("audit")
    def on_audit(self, event: Order) -> None:
        with Path(self.args.out).open("a") as f:
            f.write(f"{os.getpid()} {event.seq}\n")


class Ledger(Actor):
    """Consumes queue ``big_orders`` (fed by a routing rule) and remembers what came."""

    def on_start(self) -> None:
        self.got: list[dict[str, Any]] = []

    @consumer("big_orders")
    def on_big(self, p: Purchase) -> None:
        self.got.append(p.model_dump(mode="json"))

    @handler
    def get_seen(self, msg: GetSeen) -> Purchases:
        return Purchases(items=list(self.got))
