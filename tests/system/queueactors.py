"""Queue consumers and helpers the queue system tests run in real processes (imported by
path, like ``sysactors``).

Every consumer appends one JSON line per event to the file ``args.out`` (``start`` when
the actor starts, ``got`` when a handler is entered, ``done`` when it finished), so the
tests can observe across restarts what was handled, by which process and when.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import psutil
from pydantic import BaseModel

from callboard import Actor, BusinessError, Future, Message, consumer, handler


class Job(Message):
    type_name: ClassVar[str] = "test.queue.Job"
    n: int


class Release(Message):
    """Open a Parker: every parked job finishes, later ones do not park."""

    type_name: ClassVar[str] = "test.queue.Release"


class Released(Message):
    type_name: ClassVar[str] = "test.queue.Released"
    count: int


class Produce(Message):
    """Enqueue ``Job(n)`` on ``jobs`` from inside an actor, with ``msg_id``."""

    type_name: ClassVar[str] = "test.queue.Produce"
    n: int
    msg_id: str


class Produced(Message):
    type_name: ClassVar[str] = "test.queue.Produced"
    id: str


class TellAfterDeath(Message):
    """Block until process ``pid`` is dead, then tell ``target`` a Job: the directory
    cannot change while the handler runs, so the tell goes to the dead address."""

    type_name: ClassVar[str] = "test.queue.TellAfterDeath"
    target: str
    pid: int
    n: int
    marker: str


class Unworkable(BusinessError):
    """A job the consumer refuses on business grounds: code ``unworkable``."""


def record(out: str, event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields})
    with open(out, "a") as f:
        f.write(line + "\n")


class _Recording(Actor):
    class Args(BaseModel):
        out: str
        poison: list[int] = []
        """Jobs that fail, while ``switch`` exists (or always, without a switch)."""
        switch: str = ""
        fail: str = "crash"  # "crash" | "reject"

    def on_start(self) -> None:
        record(self.args.out, "start")

    def _poisoned(self, n: int) -> bool:
        if n not in self.args.poison:
            return False
        return not self.args.switch or Path(self.args.switch).exists()


class Recorder(_Recording):
    """One job at a time (prefetch 1): records the order jobs are handled in; fails the
    ``poison`` jobs by crashing (RuntimeError) or rejecting (a BusinessError)."""

    @consumer("jobs", prefetch=1)
    def work(self, job: Job) -> None:
        record(self.args.out, "got", n=job.n)
        if self._poisoned(job.n):
            if self.args.fail == "reject":
                raise Unworkable(f"job {job.n} cannot be done")
            raise RuntimeError(f"poison job {job.n}")
        record(self.args.out, "done", n=job.n)


class Parker(_Recording):
    """prefetch 3; every job parks until a Release arrives (and none parks after it)."""

    def on_start(self) -> None:
        super().on_start()
        self.open = False
        self.parked: list[Future[None]] = []

    @consumer("jobs", prefetch=3)
    async def work(self, job: Job) -> None:
        record(self.args.out, "got", n=job.n)
        if not self.open:
            gate: Future[None] = Future()
            self.parked.append(gate)
            await gate
        record(self.args.out, "done", n=job.n)

    @handler
    def release(self, msg: Release) -> Released:
        self.open = True
        parked, self.parked = self.parked, []
        for gate in parked:
            gate.set_result(None)
        return Released(count=len(parked))


class Staller(_Recording):
    """prefetch 2; stays silent (parks forever) on the first delivery of the jobs in
    ``stall_once`` and on every delivery of those in ``stall_always``."""

    class Args(_Recording.Args):
        stall_once: list[int] = []
        stall_always: list[int] = []

    def on_start(self) -> None:
        super().on_start()
        self.seen: dict[int, int] = {}
        self.forever: list[Future[None]] = []

    @consumer("jobs", prefetch=2)
    async def work(self, job: Job) -> None:
        self.seen[job.n] = seen = self.seen.get(job.n, 0) + 1
        record(self.args.out, "got", n=job.n, seen=seen)
        args = self.args
        if job.n in args.stall_always or (job.n in args.stall_once and seen == 1):
            never: Future[None] = Future()
            self.forever.append(never)
            await never
        record(self.args.out, "done", n=job.n, seen=seen)


class Worker(_Recording):
    """prefetch 5; each job takes ``work_s`` of (non-blocking) work."""

    class Args(_Recording.Args):
        work_s: float = 0.1

    @consumer("jobs", prefetch=5)
    async def work(self, job: Job) -> None:
        record(self.args.out, "got", n=job.n)
        await self.sleep(self.args.work_s)
        record(self.args.out, "done", n=job.n)


class Producer(Actor):
    """Enqueues from inside an actor."""

    @handler
    async def produce(self, msg: Produce) -> Produced:
        got = await self.enqueue("jobs", Job(n=msg.n), msg_id=msg.msg_id)
        return Produced(id=got)


class Teller(Actor):
    """Tells a peer right after the peer's process died (see TellAfterDeath)."""

    @handler
    def tell_after_death(self, msg: TellAfterDeath) -> None:
        Path(msg.marker).write_text(str(os.getpid()))
        give_up = time.monotonic() + 10.0
        while time.monotonic() < give_up:
            try:
                if psutil.Process(msg.pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.005)  # a bounded poll for the peer's death, in its own process
        else:
            raise RuntimeError(f"process {msg.pid} did not die")
        self.tell(msg.target, Job(n=msg.n))
