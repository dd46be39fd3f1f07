"""Actors of ``throughput.py``: callboard producer, consumer and pinger, and the raw Thespian
sender and counter of the baselines.

Imported by its top-level name ``throughput_actors`` (``throughput.py`` puts this folder on
``sys.path`` first), so callboard specs say ``"throughput_actors:Producer"`` and Thespian
finds ``throughput_actors.RawSender`` in its forked processes: with the fork start method
the module is already in their ``sys.modules``.

Every time here is ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on
the host), so a send time taken in one process and an arrival time taken in another can be
subtracted.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from thespian.actors import Actor as ThespianActor

from callboard import Actor, AskTimeout, Future, Message, RemoteError, handler
from callboard.actors.examples import Ping, Pong

__all__ = [
    "Blast",
    "Consumer",
    "Continue",
    "Drive",
    "Driven",
    "Expect",
    "Pinger",
    "Produced",
    "Producer",
    "RawCounter",
    "RawSender",
    "Ready",
    "Report",
    "Seq",
    "SeqCheck",
    "Tallied",
    "Tally",
]


# -- order check, shared by every receiver ----------------------------------------------------


class SeqCheck:
    """Arrival bookkeeping of one run of ``n`` numbered messages (0 .. n-1): how many came,
    how many distinct, how many broke the order, and the first and last arrival times."""

    __slots__ = ("count", "distinct", "first", "last", "n", "next", "out_of_order", "seen")

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.distinct = 0
        self.out_of_order = 0
        self.next = 0
        self.first = 0.0
        self.last = 0.0
        self.seen = bytearray(max(0, n))

    def arrived(self, i: int) -> None:
        now = time.monotonic()
        if self.count == 0:
            self.first = now
        self.last = now
        self.count += 1
        if i != self.next:
            self.out_of_order += 1
        self.next = i + 1
        if 0 <= i < self.n and not self.seen[i]:
            self.seen[i] = 1
            self.distinct += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "count": self.count,
            "distinct": self.distinct,
            "out_of_order": self.out_of_order,
            "first_arrival": self.first,
            "last_arrival": self.last,
        }


# -- callboard --------------------------------------------------------------------------------


class Seq(Message):
    """One numbered one-way message of run ``run``."""

    type_name: ClassVar[str] = "bench.throughput.Seq"
    run: int
    i: int


class Expect(Message):
    """To :class:`Consumer` (ask): start counting run ``run`` of ``n`` messages."""

    type_name: ClassVar[str] = "bench.throughput.Expect"
    run: int
    n: int


class Ready(Message):
    type_name: ClassVar[str] = "bench.throughput.Ready"
    pid: int


class Tally(Message):
    """To :class:`Consumer` (ask): how far run ``run`` has come."""

    type_name: ClassVar[str] = "bench.throughput.Tally"
    run: int


class Tallied(Message):
    type_name: ClassVar[str] = "bench.throughput.Tallied"
    run: int
    n: int
    count: int
    distinct: int
    out_of_order: int
    other_runs: int
    first_arrival: float
    last_arrival: float


class Consumer(Actor):
    """Counts :class:`Seq` messages of the current run and checks their order."""

    def __init__(self) -> None:
        self._run = -1
        self._check = SeqCheck(0)
        self._other = 0

    @handler
    def expect(self, msg: Expect) -> Ready:
        self._run = msg.run
        self._check = SeqCheck(msg.n)
        self._other = 0
        return Ready(pid=os.getpid())

    @handler
    def seq(self, msg: Seq) -> None:
        if msg.run == self._run:
            self._check.arrived(msg.i)
        else:
            self._other += 1

    @handler
    def tally(self, msg: Tally) -> Tallied:
        c = self._check
        return Tallied(
            run=self._run, n=c.n, count=c.count, distinct=c.distinct,
            out_of_order=c.out_of_order, other_runs=self._other,
            first_arrival=c.first, last_arrival=c.last,
        )  # fmt: skip


class Blast(Message):
    """To :class:`Producer` (tell): send ``n`` :class:`Seq` to ``target``, ``per_turn`` per
    handler turn (``per_turn >= n``: all in this one turn); the rest follow in turns the
    producer gives itself, by ``schedule(0, Continue)`` or, with ``via_tell``, by telling
    itself ``Continue``."""

    type_name: ClassVar[str] = "bench.throughput.Blast"
    run: int
    n: int
    per_turn: int
    target: str
    via_tell: bool = False


class Continue(Message):
    """The producer's own next turn of run ``run``."""

    type_name: ClassVar[str] = "bench.throughput.Continue"
    run: int


class Report(Message):
    """To :class:`Producer` (ask): when did run ``run`` start and finish sending."""

    type_name: ClassVar[str] = "bench.throughput.Report"
    run: int


class Produced(Message):
    type_name: ClassVar[str] = "bench.throughput.Produced"
    run: int
    sent: int
    turns: int
    first_send: float
    last_send: float
    """When the handler turn that sent the last message returned (its frames are flushed
    to the transport at the end of that turn)."""


class Producer(Actor):
    """Sends numbered tells to a consumer, all in one turn or in turns of ``per_turn``."""

    def __init__(self) -> None:
        self._job: Blast | None = None
        self._next = 0
        self._turns = 0
        self._t0 = 0.0
        self._t1 = 0.0

    @handler
    def blast(self, msg: Blast) -> None:
        self._job = msg
        self._next = 0
        self._turns = 0
        self._t1 = 0.0
        self._t0 = time.monotonic()
        self._turn()

    @handler
    def more(self, msg: Continue) -> None:
        if self._job is not None and msg.run == self._job.run:
            self._turn()

    def _turn(self) -> None:
        job = self._job
        assert job is not None
        start = self._next
        stop = min(job.n, start + max(1, job.per_turn))
        run, target, tell = job.run, job.target, self.tell
        for i in range(start, stop):
            tell(target, Seq(run=run, i=i))
        self._next = stop
        self._turns += 1
        if stop < job.n and job.via_tell:
            self.tell(self.id, Continue(run=run))
        elif stop < job.n:
            self.schedule(0.0, Continue(run=run))
        else:
            self._t1 = time.monotonic()

    @handler
    def report(self, msg: Report) -> Produced:
        job = self._job
        run = job.run if job is not None else -1
        return Produced(run=run, sent=self._next, turns=self._turns, first_send=self._t0,
                        last_send=self._t1)  # fmt: skip


class Drive(Message):
    """To :class:`Pinger` (ask): ``n`` round trips to ``target`` (an Echo), ``k`` asks in
    flight at a time."""

    type_name: ClassVar[str] = "bench.throughput.Drive"
    k: int
    n: int
    target: str
    timeout: float = 5.0


class Driven(Message):
    type_name: ClassVar[str] = "bench.throughput.Driven"
    ok: int
    errors: int
    wrong: int
    t0: float
    t1: float
    t_half: float
    """When the ``n // 2``-th answer came: the two halves' rates show whether the run slowed
    down as it went."""
    first_error: str = ""


MAX_DRIVE_ERRORS = 20


class Pinger(Actor):
    """Keeps ``k`` :class:`~callboard.actors.examples.Ping` asks in flight to an echo: each
    reply launches the next ask, until ``n`` have been answered."""

    @handler
    async def drive(self, msg: Drive) -> Driven:
        done: Future[None] = Future()
        launched = 0
        answered = 0
        ok = errors = wrong = 0
        first_error = ""
        t_half = 0.0

        def launch() -> None:
            nonlocal launched
            i = launched
            launched += 1
            self.ask(msg.target, Ping(n=i), timeout=msg.timeout).add_done_callback(
                lambda f: finished(f, i)
            )

        def finished(f: Future[Any], i: int) -> None:
            nonlocal answered, ok, errors, wrong, first_error, t_half
            answered += 1
            if answered == msg.n // 2:
                t_half = time.monotonic()
            exc = f.exception()
            if exc is not None:
                errors += 1
                if not first_error:
                    first_error = f"{type(exc).__name__}: {exc}"
            else:
                reply = f.result()
                if isinstance(reply, Pong) and reply.n == i:
                    ok += 1
                else:
                    wrong += 1
            if errors > MAX_DRIVE_ERRORS:  # the echo is gone: stop (and never recurse deep)
                done.set_result(None)
            elif launched < msg.n:
                launch()
            elif answered == msg.n:
                done.set_result(None)

        t0 = time.monotonic()
        for _ in range(min(msg.k, msg.n)):
            launch()
        if msg.n <= 0:
            done.set_result(None)
        try:
            await done
        except (AskTimeout, RemoteError) as exc:  # not expected: done never fails
            first_error = first_error or f"{type(exc).__name__}: {exc}"
        return Driven(ok=ok, errors=errors, wrong=wrong, t0=t0, t1=time.monotonic(),
                      t_half=t_half, first_error=first_error)  # fmt: skip


# -- raw Thespian baseline --------------------------------------------------------------------

EXPECT = "expect"
"""To :class:`RawCounter`: ``(EXPECT, n)`` starts a run of ``n``; answered with its pid."""
RESULT = "result"
"""To either raw actor: ``(RESULT,)`` answers its figures (a dict)."""
GO = "go"
"""To :class:`RawSender`: ``(GO, counter_address, n, payload)``."""


class RawCounter(ThespianActor):  # type: ignore[misc]
    """Receives ``(i, payload)`` tuples and checks that ``i`` counts up from 0."""

    def __init__(self) -> None:
        super().__init__()
        self._check = SeqCheck(0)

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if type(msg) is tuple and len(msg) == 2 and type(msg[0]) is int:
            self._check.arrived(msg[0])
        elif type(msg) is tuple and msg and msg[0] == EXPECT:
            self._check = SeqCheck(int(msg[1]))
            self.send(sender, {"pid": os.getpid(), "pgid": os.getpgid(0)})
        elif type(msg) is tuple and msg and msg[0] == RESULT:
            self.send(sender, self._check.as_dict())


class RawSender(ThespianActor):  # type: ignore[misc]
    """On ``GO``: calls ``self.send()`` ``n`` times in this one ``receiveMessage``."""

    def __init__(self) -> None:
        super().__init__()
        self._t0 = 0.0
        self._t1 = 0.0
        self._n = 0

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if type(msg) is tuple and msg and msg[0] == GO:
            _, target, n, payload = msg
            self._n = n
            self._t1 = 0.0
            self._t0 = time.monotonic()
            send = self.send
            for i in range(n):
                send(target, (i, payload))
            self._t1 = time.monotonic()
        elif type(msg) is tuple and msg and msg[0] == RESULT:
            from thespian.system.transport import asyncTransportBase as atb

            self.send(sender, {
                "pid": os.getpid(),
                "first_send": self._t0,
                "send_loop_done": self._t1,
                "n": self._n,
                "max_queued_transmits": atb.MAX_QUEUED_TRANSMITS,
                "queue_transmit_unblock_threshold": atb.QUEUE_TRANSMIT_UNBLOCK_THRESHOLD,
                "drop_transmits_level": atb.DROP_TRANSMITS_LEVEL,
                "max_pending_transmits": atb.MAX_PENDING_TRANSMITS,
            })  # fmt: skip
