"""Actors of ``queues.py``: the queue consumer, the fan-out subscribers and publisher, and
the raw Thespian pair of the baseline.

Imported by its top-level name ``_queue_actors`` (``queues.py`` puts this folder on
``sys.path`` first), so callboard specs say ``"_queue_actors:Sink"`` and Thespian finds
``_queue_actors.RawSink`` in its forked processes: with the fork start method the module
is already in their ``sys.modules``.

Every recorder keeps what it saw in memory (sequence numbers, latencies, the arrival time
of the last message) and hands it over when asked :class:`Collect`; nothing is written
anywhere while the clock runs.

The consumer's prefetch is a class-definition argument (``@consumer(queue, prefetch)``),
so :class:`Sink` is built on first access from the environment variable
``CALLBOARD_BENCH_PREFETCH`` (``queues.py`` sets it from ``--prefetch`` before the system
starts; forked actor processes inherit both the variable and, usually, the class).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from pydantic import BaseModel, Field
from thespian.actors import Actor as ThespianActor

from callboard import Actor, Message, consumer, handler

__all__ = [
    "DEFAULT_PREFETCH",
    "PGID_QUERY",
    "PREFETCH_ENV",
    "QUEUES",
    "SETTINGS_QUERY",
    "Burst",
    "Collect",
    "Collected",
    "Fan",
    "Job",
    "Pub",
    "RawSink",
    "RawSource",
    "Reset",
    "Sent",
    "Tick",
    "transport_settings",
]

PREFETCH_ENV = "CALLBOARD_BENCH_PREFETCH"
DEFAULT_PREFETCH = 500
QUEUES = ("mem", "durable", "durable_always")
"""The queues :class:`Sink` consumes: in memory, SQLite with fsync normal, with always."""
PGID_QUERY = "pgid?"
SETTINGS_QUERY = "settings?"


def transport_settings() -> dict[str, Any]:
    """Thespian's transmit queue limits as this process has them (callboard's
    ``tune_transport`` changes them in the process that starts a callboard system, and
    every process forked from it after that)."""
    from thespian.system.transport import asyncTransportBase as atb

    return {
        "MAX_PENDING_TRANSMITS": atb.MAX_PENDING_TRANSMITS,
        "MAX_QUEUED_TRANSMITS": atb.MAX_QUEUED_TRANSMITS,
        "QUEUE_TRANSMIT_UNBLOCK_THRESHOLD": atb.QUEUE_TRANSMIT_UNBLOCK_THRESHOLD,
        "DROP_TRANSMITS_LEVEL": atb.DROP_TRANSMITS_LEVEL,
    }


# -- messages --------------------------------------------------------------------------------


class Job(Message):
    """What the host enqueues: its sequence number and ``time.time()`` when it was made."""

    type_name: ClassVar[str] = "bench.queues.Job"
    seq: int
    at: float


class Tick(Message):
    """The fan-out event: sequence number and ``time.time()`` when it was published."""

    type_name: ClassVar[str] = "bench.queues.Tick"
    seq: int
    at: float


class Reset(Message):
    """Forget everything recorded so far (before each timed part)."""

    type_name: ClassVar[str] = "bench.queues.Reset"


class Collect(Message):
    """What was recorded since the last :class:`Reset`; ``full=False``: the count only."""

    type_name: ClassVar[str] = "bench.queues.Collect"
    full: bool = True


class Collected(Message):
    type_name: ClassVar[str] = "bench.queues.Collected"
    count: int
    first_at: float | None = None
    """``time.time()`` when the first message was handled."""
    last_at: float | None = None
    """``time.time()`` when the last message was handled."""
    seqs: list[int] = Field(default_factory=list)
    """Sequence numbers in the order handled."""
    latencies_ms: list[float] = Field(default_factory=list)
    """Per message: handled at minus ``at`` (the producer's clock, the same host)."""
    batches: list[int] = Field(default_factory=list)
    """How many messages each delivery carried (a queue's ``Deliveries``, the bus's
    ``Events``), from the batch id each handled message's envelope names as its cause."""


class Burst(Message):
    """Ask :class:`Pub` to publish ``n`` :class:`Tick` events on ``topic`` in a row."""

    type_name: ClassVar[str] = "bench.queues.Burst"
    n: int
    topic: str


class Sent(Message):
    type_name: ClassVar[str] = "bench.queues.Sent"
    n: int
    started: float
    finished: float


# -- recorders -----------------------------------------------------------------------------


class _Recorder:
    """The in-memory record shared by the consumer and the subscribers."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.latencies_ms: list[float] = []
        self.batches: list[int] = []
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._batch: str | None = None

    def got(self, seq: int, at: float, batch: str | None = None) -> None:
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.seqs.append(seq)
        self.latencies_ms.append((now - at) * 1000.0)
        if batch is not None:
            if batch == self._batch:
                self.batches[-1] += 1
            else:
                self._batch = batch
                self.batches.append(1)

    def collected(self, full: bool) -> Collected:
        if not full:
            return Collected(count=len(self.seqs), last_at=self.last_at)
        return Collected(
            count=len(self.seqs), first_at=self.first_at, last_at=self.last_at,
            seqs=self.seqs, latencies_ms=self.latencies_ms, batches=self.batches,
        )  # fmt: skip


def _make_sink(prefetch: int) -> type[Actor]:
    class Sink(Actor):
        """Consumes every queue of :data:`QUEUES` with ``prefetch``; records each job."""

        def on_start(self) -> None:
            self.rec = _Recorder()

        def _job(self, job: Job) -> None:
            # The runtime hands each item of a Deliveries batch to the consumer with an
            # envelope whose causation id is the batch's id: consecutive items with the
            # same one arrived in one delivery (a read of the runtime's private state,
            # for this measurement only).
            current = self._runtime._current
            self.rec.got(job.seq, job.at, current.causation_id if current else None)

        @consumer("mem", prefetch=prefetch)
        def on_mem(self, job: Job) -> None:
            self._job(job)

        @consumer("durable", prefetch=prefetch)
        def on_durable(self, job: Job) -> None:
            self._job(job)

        @consumer("durable_always", prefetch=prefetch)
        def on_durable_always(self, job: Job) -> None:
            self._job(job)

        @handler
        def on_reset(self, msg: Reset) -> None:
            self.rec = _Recorder()

        @handler
        def on_collect(self, msg: Collect) -> Collected:
            return self.rec.collected(msg.full)

    Sink.__qualname__ = "Sink"
    return Sink


def __getattr__(name: str) -> Any:
    """``Sink`` is built on first access, with the prefetch of the environment."""
    if name == "Sink":
        sink = _make_sink(int(os.environ.get(PREFETCH_ENV, DEFAULT_PREFETCH)))
        globals()["Sink"] = sink
        return sink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Fan(Actor):
    """A fan-out subscriber: subscribes to ``args.pattern``, records every :class:`Tick`."""

    class Args(BaseModel):
        pattern: str = "bench.#"
        buffer: int | None = None

    def on_start(self) -> None:
        self.rec = _Recorder()
        self.subscribe(self.args.pattern, buffer=self.args.buffer)

    @handler
    def on_tick(self, tick: Tick) -> None:
        current = self._runtime._current  # see Sink._job: the Events batch's id
        self.rec.got(tick.seq, tick.at, current.causation_id if current else None)

    @handler
    def on_reset(self, msg: Reset) -> None:
        self.rec = _Recorder()

    @handler
    def on_collect(self, msg: Collect) -> Collected:
        return self.rec.collected(msg.full)


class Pub(Actor):
    """Publishes a :class:`Burst` of events with ``self.publish`` (one tell each)."""

    @handler
    def on_burst(self, msg: Burst) -> Sent:
        started = time.time()
        for i in range(msg.n):
            self.publish(msg.topic, Tick(seq=i, at=time.time()))
        return Sent(n=msg.n, started=started, finished=time.time())


# -- raw Thespian (the baseline) -------------------------------------------------------------


class RawSink(ThespianActor):  # type: ignore[misc]
    """A plain Thespian actor recording ``("job", seq, at, pad)`` tells, also in lists.

    ``"reset"`` forgets, ``"collect"`` answers ``(count, first_at, last_at, seqs,
    latencies_ms)``, ``"count"`` answers the count, :data:`PGID_QUERY` the process group."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rec = _Recorder()

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, tuple):
            self.rec.got(msg[1], msg[2])
        elif isinstance(msg, list):
            for one in msg:
                self.rec.got(one[1], one[2])
        elif msg == "reset":
            self.rec = _Recorder()
        elif msg == "count":
            self.send(sender, len(self.rec.seqs))
        elif msg == "collect":
            r = self.rec
            self.send(sender, (len(r.seqs), r.first_at, r.last_at, r.seqs, r.latencies_ms))
        elif msg == PGID_QUERY:
            self.send(sender, os.getpgid(0))


class RawSource(ThespianActor):  # type: ignore[misc]
    """Sends a burst of tells to other raw actors, as :class:`Pub` publishes to the bus.

    ``("burst", n, targets, pad, batch)``: for ``i`` in ``range(n)`` send ``("job", i, at,
    pad)`` to every target (``batch`` > 1: lists of that many, one tell per list); then
    answers ``("sent", started, finished)``. :data:`SETTINGS_QUERY`: the Thespian transport
    limits of its process (:func:`transport_settings`)."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if msg == SETTINGS_QUERY:
            self.send(sender, transport_settings())
            return
        if not (isinstance(msg, tuple) and msg and msg[0] == "burst"):
            return
        _, n, targets, pad, batch = msg
        started = time.time()
        if batch <= 1:
            for i in range(n):
                one = ("job", i, time.time(), pad)
                for target in targets:
                    self.send(target, one)
        else:
            for lo in range(0, n, batch):
                chunk = [("job", i, time.time(), pad) for i in range(lo, min(n, lo + batch))]
                for target in targets:
                    self.send(target, chunk)
        self.send(sender, ("sent", started, time.time()))
