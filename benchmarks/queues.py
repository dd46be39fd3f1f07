"""Queue and bus throughput: enqueue -> consume and pub/sub fan-out vs raw Thespian and a Pipe.

Run from the repository root::

    .venv/bin/python benchmarks/queues.py [--n 20000] [--fanout-n 200] > /tmp/queues.json

Prints exactly one JSON object on stdout (progress goes to stderr) and exits 0 (1 with an
``"error"`` key in the JSON if the benchmark itself failed). Do not capture the output
through a pipe that waits for EOF from every writer (see ``_common.json_stdout``).

The system under test runs on the tcp transport (one process per actor, loopback only)
with three queues, ``mem`` (in memory), ``durable`` (SQLite in a temporary folder, fsync
``normal``) and ``durable_always`` (fsync ``always``), the bus, one consumer ``sink``
(``@consumer(queue, prefetch=P)`` for each queue, in ``_queue_actors``) and, for the
fan-out, a publisher ``pub`` and S subscribers ``fan0..`` on ``bench.#``.

``queues.<queue>.batched``  the host enqueues N ``Job(seq, at)`` with ``enqueue_many`` in
                            batches of B, one batch after the other; the consumer records
                            ``now - at`` per job and when it handled the last one
``queues.<queue>.single``   the same with ``enqueue``: one ask per message
``fanout.actor_publish``    ``pub`` publishes N events in a row with ``self.publish`` (one
                            tell each), triggered by one ask; S subscribers record them
``fanout.host_publish``     the host publishes N events with ``System.publish`` (one ask each)
``baselines``               the same shapes with no callboard: raw Thespian one-way tells
                            (one by one and in lists of B), raw Thespian asks, a raw
                            Thespian fan-out to S actors, a ``multiprocessing.Pipe`` (one by
                            one and in lists of B), and the queue stores alone, in this
                            process (``enqueue_many`` / ``lease`` / ``ack``, no transport)

Throughput is N / (first enqueue -> last message handled). Every part checks that each
sequence number was handled exactly once (and, for the bus, in order by every
subscriber). Goals (on ``batched``): at least 5,000 msgs/s in memory and 2,000 msgs/s
durable (fsync ``normal``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import itertools
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Literal

import msgpack
from _common import (
    HERE,
    RawEcho,
    actor_pids,
    cpu_snapshot,
    emit,
    exit_on_sigterm,
    free_admin_port,
    json_stdout,
    kill_leftovers,
    percentile,
    progress,
)
from _queue_actors import (
    DEFAULT_PREFETCH,
    PGID_QUERY,
    PREFETCH_ENV,
    SETTINGS_QUERY,
    Burst,
    Collect,
    Collected,
    Job,
    RawSink,
    RawSource,
    Reset,
    Sent,
    Tick,
)
from thespian.actors import ActorSystem

from callboard import AskTimeout, System
from callboard import _thespian as cb_thespian
from callboard.messages import Message, new_id
from callboard.queues._store import (
    MemoryStore,
    NewMessage,
    QueueStore,
    SqliteStore,
    StoreLimits,
)

GOAL_MEMORY_MSGS_PER_S = 5000.0
GOAL_DURABLE_MSGS_PER_S = 2000.0
ASK_TIMEOUT = 30.0
POLL_S = 0.02
STALL_S = 15.0
"""A part whose consumers handled nothing new for this long is reported incomplete."""
WARMUP = 200
PAD_BYTES = 40
"""Bytes of padding in each raw message: about what a ``Job``'s fields weigh in msgpack
plus the queue item's id; the raw baselines carry (tag, seq, at, pad)."""
QUEUES = {"memory": "mem", "durable": "durable", "durable_fsync_always": "durable_always"}


# -- small helpers ---------------------------------------------------------------------------


def latency_ms(values_ms: Sequence[float]) -> dict[str, Any]:
    if not values_ms:
        return {"count": 0}
    return {
        "count": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 3),
        "p90_ms": round(percentile(values_ms, 90), 3),
        "p99_ms": round(percentile(values_ms, 99), 3),
        "max_ms": round(max(values_ms), 3),
        "mean_ms": round(sum(values_ms) / len(values_ms), 3),
    }


def batch_stats(sizes: Sequence[int]) -> dict[str, Any]:
    """How many messages each delivery carried."""
    if not sizes:
        return {"deliveries": 0}
    return {
        "deliveries": len(sizes),
        "mean": round(sum(sizes) / len(sizes), 1),
        "p50": percentile(sizes, 50),
        "min": min(sizes),
        "max": max(sizes),
    }


def exactly_once(seqs: Sequence[int], n: int) -> dict[str, Any]:
    """Duplicates, missing and out-of-order sequence numbers of ``range(n)``."""
    counts = Counter(seqs)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    missing = sum(1 for i in range(n) if i not in counts)
    unexpected = sum(1 for s in counts if not 0 <= s < n)
    inversions = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(seqs)) if b < a]
    return {
        "handled": len(seqs),
        "duplicates": duplicates,
        "missing": missing,
        "unexpected": unexpected,
        "out_of_order": len(inversions),
        "out_of_order_examples": [
            {"position": i + 1, "after": a, "came": b} for i, a, b in inversions[:5]
        ],
        "exactly_once": duplicates == 0 and missing == 0 and unexpected == 0,
    }


def wait_for(count: Callable[[], int], n: int, max_wait: float) -> tuple[int, bool]:
    """Poll ``count()`` until it reaches ``n``; give up after ``STALL_S`` without progress
    or ``max_wait`` in all. Returns (last count, complete)."""
    start = last_change = time.monotonic()
    seen = -1
    while True:
        got = count()
        now = time.monotonic()
        if got >= n:
            return got, True
        if got != seen:
            seen, last_change = got, now
        if now - last_change > STALL_S or now - start > max_wait:
            return got, False
        time.sleep(POLL_S)


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when callboard/ has changes), if git says."""
    root = os.path.dirname(HERE)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "callboard"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def rate(n: int, seconds: float | None) -> float | None:
    return round(n / seconds, 1) if seconds and seconds > 0 else None


# -- CPU per process (as pipeline.py) ----------------------------------------------------------


class CpuMeter:
    """CPU seconds of every process of a system, by actor name (``root``; ``other`` for
    Thespian's admin and logger; ``client`` for this process), between two snapshots."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.names: dict[int, str] = {}

    def refresh_names(self) -> None:
        self.names = actor_pids(self.system)

    def snapshot(self) -> dict[str, float]:
        return cpu_snapshot(self.names, self.system.pgid, "client")

    @staticmethod
    def report(
        before: dict[str, float], after: dict[str, float], messages: int, wall_s: float
    ) -> dict[str, Any]:
        """CPU ms per 1000 messages and busy fraction (CPU / wall) of each process that
        used at least 1% of the wall time, busiest first."""
        used = {k: after[k] - before.get(k, 0.0) for k in after}
        busy = {k: v / wall_s for k, v in used.items() if wall_s > 0 and v / wall_s >= 0.01}
        order = sorted(busy, key=lambda k: -busy[k])
        total = sum(used.values())
        return {
            "busy_fraction": {k: round(busy[k], 2) for k in order},
            "busy_fraction_total": round(total / wall_s, 2) if wall_s > 0 else None,
            "cpu_ms_per_1000_msgs": {k: round(used[k] * 1e6 / max(1, messages), 1) for k in order},
            "cpu_ms_per_1000_msgs_total": round(total * 1e6 / max(1, messages), 1),
        }


# -- callboard: queues ----------------------------------------------------------------------------


def system_config(args: argparse.Namespace, port: int, tmp: str) -> dict[str, Any]:
    longest = max(args.n, args.always_n, args.single_n, WARMUP)
    room = longest + args.batch  # never full: the producer is not held back by max_length
    queue = {"max_length": room}
    bus: dict[str, Any] = {
        "enabled": True,
        "buffer": max(1000, args.fanout_n, args.host_publish_n) + 100,
    }
    if args.bus_window:
        bus["window"] = args.bus_window
    fans = [{"id": f"fan{i}", "actor": "_queue_actors:Fan"} for i in range(args.subscribers)]
    return {
        "system": {"admin_port": port, "log_level": "warning"},
        "queues": {
            "mem": {**queue, "durable": False},
            "durable": {**queue, "durable": True, "fsync": "normal",
                        "path": os.path.join(tmp, "durable.sqlite")},
            "durable_always": {**queue, "durable": True, "fsync": "always",
                               "path": os.path.join(tmp, "durable_always.sqlite")},
        },
        "bus": bus,
        "supervisor": {"children": [
            {"id": "sink", "actor": "_queue_actors:Sink"},
            {"id": "pub", "actor": "_queue_actors:Pub"},
            *fans,
        ]},
    }  # fmt: skip


def collect(system: System, name: str, full: bool = True) -> Collected:
    reply = system.ask(name, Collect(full=full), timeout=ASK_TIMEOUT)
    assert isinstance(reply, Collected), reply
    return reply


def queue_part(
    system: System, cpu: CpuMeter, queue: str, n: int, batch: int, max_wait: float,
) -> dict[str, Any]:  # fmt: skip
    """N jobs through ``queue``: ``batch`` > 1 with ``enqueue_many``, 1 with ``enqueue``."""
    system.ask("sink", Reset(), timeout=ASK_TIMEOUT)
    calls_ms: list[float] = []
    clock = time.perf_counter
    cpu_before = cpu.snapshot()
    t0 = time.time()
    if batch > 1:
        for lo in range(0, n, batch):
            jobs: list[Message] = [
                Job(seq=i, at=time.time()) for i in range(lo, min(n, lo + batch))
            ]
            c0 = clock()
            system.enqueue_many(queue, jobs, timeout=ASK_TIMEOUT)
            calls_ms.append((clock() - c0) * 1000)
    else:
        for i in range(n):
            job = Job(seq=i, at=time.time())
            c0 = clock()
            system.enqueue(queue, job, timeout=ASK_TIMEOUT)
            calls_ms.append((clock() - c0) * 1000)
    produced = time.time() - t0
    _, complete = wait_for(lambda: collect(system, "sink", False).count, n, max_wait)
    cpu_after = cpu.snapshot()
    got = collect(system, "sink")
    wall = (got.last_at - t0) if got.last_at else None
    stats = system.queue_stats(queue, timeout=ASK_TIMEOUT)
    return {
        "messages": n,
        "batch": batch,
        "complete": complete,
        "msgs_per_s": rate(got.count, wall),
        "wall_s": round(wall, 3) if wall else None,
        "producer_msgs_per_s": rate(n, produced),
        "enqueue_call_ms": {k: v for k, v in latency_ms(calls_ms).items() if k != "count"},
        "latency": latency_ms(got.latencies_ms),
        "correctness": exactly_once(got.seqs, n),
        "deliveries_to_consumer": batch_stats(got.batches),
        "queue_after": {k: stats.get(k) for k in ("ready", "in_flight", "redelivered_total",
                                                  "dead_letters", "duplicates_total")},
        "cpu": CpuMeter.report(cpu_before, cpu_after, n, wall or produced),
    }  # fmt: skip


# -- callboard: fan-out ---------------------------------------------------------------------------


def fanout_part(
    system: System, cpu: CpuMeter, subs: list[str], n: int, host: bool, max_wait: float
) -> dict[str, Any]:
    """N events to every subscriber: published by ``pub`` in a burst, or by the host."""
    for name in subs:
        system.ask(name, Reset(), timeout=ASK_TIMEOUT)
    before_stats = system.bus_stats(timeout=ASK_TIMEOUT)["subscriptions"]
    out: dict[str, Any] = {"events": n, "subscribers": len(subs)}
    calls_ms: list[float] = []
    cpu_before = cpu.snapshot()
    t0 = time.time()
    if host:
        for i in range(n):
            c0 = time.perf_counter()
            system.publish("bench.host", Tick(seq=i, at=time.time()), timeout=ASK_TIMEOUT)
            calls_ms.append((time.perf_counter() - c0) * 1000)
        out["publish_call_ms"] = {k: v for k, v in latency_ms(calls_ms).items() if k != "count"}
        out["publisher_events_per_s"] = rate(n, time.time() - t0)
    else:
        try:
            sent = system.ask("pub", Burst(n=n, topic="bench.actor"), timeout=max_wait)
            assert isinstance(sent, Sent), sent
            out["publish_loop_s"] = round(sent.finished - sent.started, 3)
            out["burst_reply_after_s"] = round(time.time() - t0, 3)
        except AskTimeout:
            out["burst_reply_after_s"] = None  # the reply queued behind the publishes
    total = n * len(subs)

    def delivered() -> int:
        return sum(collect(system, name, False).count for name in subs)

    left = max(STALL_S, max_wait - (time.time() - t0))  # one budget for the whole part
    handled, complete = wait_for(delivered, total, left)
    cpu_after = cpu.snapshot()
    got = [collect(system, name) for name in subs]
    last = max((g.last_at for g in got if g.last_at), default=None)
    wall = (last - t0) if last else None
    lat = [x for g in got for x in g.latencies_ms]
    checks = [exactly_once(g.seqs, n) for g in got]
    in_order = sum(1 for g in got if g.seqs == list(range(n)))
    disorder = {
        name: c["out_of_order_examples"]
        for name, c in zip(subs, checks, strict=True)
        if c["out_of_order"]
    }
    after_stats = system.bus_stats(timeout=ASK_TIMEOUT)["subscriptions"]
    lost = {
        k: sum(after_stats[s][k] - before_stats.get(s, {}).get(k, 0) for s in after_stats
               if after_stats[s].get("subscriber") in subs)
        for k in ("dropped", "lost", "rejected", "dead_lettered")
    }  # fmt: skip
    out.update({
        "complete": complete,
        "delivered": handled,
        "delivered_per_s": rate(handled, wall),
        "events_per_s": rate(n, wall),
        "wall_s": round(wall, 3) if wall else None,
        "latency": latency_ms(lat),
        "subscribers_got_all_in_order": f"{in_order}/{len(subs)}",
        "duplicates": sum(c["duplicates"] for c in checks),
        "missing": sum(c["missing"] for c in checks),
        "out_of_order": disorder,
        "bus_losses": lost,
        "deliveries_to_each_subscriber": batch_stats([b for g in got for b in g.batches]),
        "cpu": CpuMeter.report(cpu_before, cpu_after, total, wall or 1.0),
    })  # fmt: skip
    return out


# -- baselines: raw Thespian ---------------------------------------------------------------------


class RawThespian:
    """A plain Thespian system on its own admin port: a source, S sinks, an echo."""

    def __init__(self, port: int) -> None:
        self.asys = ActorSystem("multiprocTCPBase", {"Admin Port": port}, transientUnique=True)
        self.pgid: int | None = None
        self.sinks: list[Any] = []

    def start(self, sinks: int) -> None:
        self.source = self.asys.createActor(RawSource)
        self.sinks = [self.asys.createActor(RawSink) for _ in range(sinks)]
        self.echo = self.asys.createActor(RawEcho)
        pgid = self.asys.ask(self.echo, PGID_QUERY, ASK_TIMEOUT)
        self.pgid = pgid if isinstance(pgid, int) else None

    def settings(self) -> Any:
        return self.asys.ask(self.source, SETTINGS_QUERY, ASK_TIMEOUT)

    def count(self, sink: Any) -> int:
        got = self.asys.ask(sink, "count", ASK_TIMEOUT)
        if not isinstance(got, int):
            raise RuntimeError(f"raw sink answered {got!r} to count")
        return got

    def tells(self, n: int, sinks: int, batch: int, max_wait: float) -> dict[str, Any]:
        """``n`` messages from the source to each of the first ``sinks`` sinks."""
        targets = self.sinks[:sinks]
        for sink in targets:
            self.asys.tell(sink, "reset")
        for sink in targets:
            self.count(sink)  # the reset has landed
        pad = os.urandom(PAD_BYTES)
        t0 = time.time()
        reply = self.asys.ask(self.source, ("burst", n, targets, pad, batch), max_wait)
        sent_s = reply[2] - reply[1] if isinstance(reply, tuple) else None
        total = n * len(targets)
        handled, complete = wait_for(lambda: sum(self.count(s) for s in targets), total,
                                     max_wait)  # fmt: skip
        got = [self.asys.ask(s, "collect", ASK_TIMEOUT) for s in targets]
        last = max((g[2] for g in got if g[2]), default=None)
        wall = (last - t0) if last else None
        in_order = sum(1 for g in got if g[3] == list(range(n)))
        return {
            "messages": n, "sinks": len(targets), "batch": batch, "complete": complete,
            "msgs_per_s": rate(handled, wall), "wall_s": round(wall, 3) if wall else None,
            "send_loop_s": round(sent_s, 3) if sent_s is not None else None,
            "latency": latency_ms([x for g in got for x in g[4]]),
            "sinks_got_all_in_order": f"{in_order}/{len(targets)}",
        }  # fmt: skip

    def asks(self, n: int) -> dict[str, Any]:
        pad = os.urandom(PAD_BYTES)
        lat: list[float] = []
        t0 = time.perf_counter()
        for _ in range(n):
            c0 = time.perf_counter()
            if self.asys.ask(self.echo, pad, ASK_TIMEOUT) != pad:
                raise RuntimeError("raw echo answered something else")
            lat.append((time.perf_counter() - c0) * 1000)
        return {"asks": n, "asks_per_s": rate(n, time.perf_counter() - t0),
                "latency": latency_ms(lat)}  # fmt: skip

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.asys.shutdown()


# -- baselines: a raw pipe ------------------------------------------------------------------------


def _pipe_sink(conn: Connection) -> None:
    """Child process of the pipe baseline: records (tag, seq, at, pad) tuples, or lists of
    them; answers ``"collect"`` with (count, last_at, latencies_ms, seqs); ends on None."""
    seqs: list[int] = []
    lat: list[float] = []
    last: float | None = None
    while True:
        msg = conn.recv()
        if msg is None:
            break
        if msg == "collect":
            conn.send((len(seqs), last, lat, seqs))
            seqs, lat, last = [], [], None
            continue
        for one in msg if isinstance(msg, list) else (msg,):
            last = time.time()
            seqs.append(one[1])
            lat.append((last - one[2]) * 1000)
    conn.close()


def pipe_part(conn: Connection, n: int, batch: int) -> dict[str, Any]:
    pad = os.urandom(PAD_BYTES)
    t0 = time.time()
    if batch > 1:
        for lo in range(0, n, batch):
            conn.send([("job", i, time.time(), pad) for i in range(lo, min(n, lo + batch))])
    else:
        for i in range(n):
            conn.send(("job", i, time.time(), pad))
    conn.send("collect")
    count, last, lat, seqs = conn.recv()
    wall = (last - t0) if last else None
    return {
        "messages": n, "batch": batch, "msgs_per_s": rate(count, wall),
        "wall_s": round(wall, 3) if wall else None, "latency": latency_ms(lat),
        "in_order": seqs == list(range(n)),
    }  # fmt: skip


# -- baselines: the stores alone ------------------------------------------------------------------


def store_part(store: QueueStore, n: int, batch: int, prefetch: int) -> dict[str, Any]:
    """What the queue actor asks of its store for N messages, in this process: per batch
    of B an ``enqueue_many``, then ``lease`` (up to P at a time) and ``ack`` until empty.
    Payloads are msgpack'd ``Job`` fields, as the actor stores them."""
    clock = time.perf_counter
    spent = {"enqueue_many": 0.0, "lease": 0.0, "ack": 0.0}
    calls = {"enqueue_many": 0, "lease": 0, "ack": 0}
    type_name, version = Job.type_name, Job.version
    for lo in range(0, n, batch):
        items = [
            NewMessage(new_id(), type_name, version,
                       msgpack.packb({"seq": i, "at": time.time()}), 0, None)
            for i in range(lo, min(n, lo + batch))
        ]  # fmt: skip
        c0 = clock()
        store.enqueue_many(items, time.time())
        spent["enqueue_many"] += clock() - c0
        calls["enqueue_many"] += 1
        while True:
            c0 = clock()
            leased = store.lease("sink", prefetch, time.time(), 30.0)
            spent["lease"] += clock() - c0
            calls["lease"] += 1
            if not leased:
                break
            c0 = clock()
            store.ack("sink", [d.msg_id for d in leased], time.time())
            spent["ack"] += clock() - c0
            calls["ack"] += 1
    total = sum(spent.values())
    return {
        "messages": n,
        "msgs_per_s": rate(n, total),
        "ms_per_1000_msgs": {k: round(v * 1e6 / n, 2) for k, v in spent.items()},
        "ms_per_call": {k: round(spent[k] * 1000 / max(1, calls[k]), 3) for k in spent},
    }


def store_baselines(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    limits = StoreLimits(max_length=args.n + args.batch, max_deliveries=5,
                         dedupe_window_s=300.0)  # fmt: skip
    out: dict[str, Any] = {}
    mem = MemoryStore(limits)
    out["memory"] = store_part(mem, args.n, args.batch, args.prefetch)
    runs: tuple[tuple[Literal["normal", "always"], int], ...] = (
        ("normal", args.n), ("always", args.always_n),
    )  # fmt: skip
    for fsync, n in runs:
        path = os.path.join(tmp, f"store_only_{fsync}.sqlite")
        sql = SqliteStore(path, limits, fsync=fsync)
        try:
            out[f"sqlite_fsync_{fsync}"] = store_part(sql, n, args.batch, args.prefetch)
        finally:
            sql.close()
    return out


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add = p.add_argument
    add(
        "--n",
        type=int,
        default=20000,
        help="jobs per batched part, memory and durable "
        "(default 20000); also the raw pipe, batched raw tells and store-only sizes",
    )
    add(
        "--always-n",
        type=int,
        default=5000,
        help="jobs through the fsync=always queue (default 5000)",
    )
    add(
        "--single-n",
        type=int,
        default=1500,
        help="jobs per single-enqueue part (default 1500; a third of it for fsync=always)",
    )
    add("--batch", type=int, default=500, help="jobs per enqueue_many (default 500)")
    add(
        "--prefetch",
        type=int,
        default=DEFAULT_PREFETCH,
        help=f"the consumer's prefetch (default {DEFAULT_PREFETCH})",
    )
    add("--fanout-n", type=int, default=200, help="events per fan-out part (default 200)")
    add("--host-publish-n", type=int, default=200, help="events the host publishes (default 200)")
    add("--subscribers", type=int, default=10, help="fan-out subscribers (default 10)")
    add("--bus-window", type=int, default=0, help="[bus] window (default: the config's)")
    add(
        "--raw-tells-n", type=int, default=1000, help="one-by-one raw Thespian tells (default 1000)"
    )
    add("--raw-asks-n", type=int, default=1500, help="raw Thespian asks (default 1500)")
    add(
        "--max-wait",
        type=float,
        default=60.0,
        help="seconds any part may take before it is reported incomplete (default 60)",
    )
    args = p.parse_args(argv)
    for name in ("n", "always_n", "single_n", "batch", "prefetch", "fanout_n",
                 "host_publish_n", "subscribers", "raw_tells_n", "raw_asks_n"):  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    json_stdout()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    os.environ[PREFETCH_ENV] = str(args.prefetch)  # before Sink is first built (forks too)
    cb_thespian.apply_bind("127.0.0.1")

    result: dict[str, Any] = {
        "benchmark": "queues",
        "python": platform.python_version(),
        "thespian": importlib.metadata.version("thespian"),
        "callboard_version": importlib.metadata.version("callboard"),
        "transport": "tcp (multiprocTCPBase, 127.0.0.1)",
        "commit": git_commit(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "n": args.n,
            "always_n": args.always_n,
            "single_n": args.single_n,
            "batch": args.batch,
            "prefetch": args.prefetch,
            "fanout_n": args.fanout_n,
            "host_publish_n": args.host_publish_n,
            "subscribers": args.subscribers,
            "bus_window": args.bus_window or 64,
            "raw_tells_n": args.raw_tells_n,
        },
        "goal_memory_msgs_per_s": GOAL_MEMORY_MSGS_PER_S,
        "goal_durable_msgs_per_s": GOAL_DURABLE_MSGS_PER_S,
    }
    tmp = tempfile.mkdtemp(prefix="callboard-bench-queues-")
    system: System | None = None
    raw: RawThespian | None = None
    cb_pgid: int | None = None
    pipe_proc: Any = None
    parent_conn: Connection | None = None
    leftovers = {"callboard": 0, "raw_thespian": 0, "raw_pipe": 0}
    started = time.monotonic()
    rc = 0
    try:
        # The pipe's child first, before any Thespian socket exists to inherit.
        ctx = multiprocessing.get_context("fork")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        pipe_proc = ctx.Process(target=_pipe_sink, args=(child_conn,), daemon=True)
        pipe_proc.start()
        child_conn.close()

        # Raw Thespian next, before callboard: System.start tunes Thespian's transmit queue
        # limits in this process (tune_transport), and every process forked from it after
        # that inherits them. Started first, the raw system's admin and actors keep
        # Thespian's defaults (checked: raw_thespian_transport_settings).
        raw_port = free_admin_port()
        progress(f"starting raw Thespian on admin port {raw_port}")
        raw = RawThespian(raw_port)
        raw.start(args.subscribers)
        result["raw_thespian_transport_settings"] = raw.settings()

        cb_port = free_admin_port(exclude=[raw_port])
        progress(f"starting callboard on admin port {cb_port} (prefetch {args.prefetch})")
        system = System.start(system_config(args, cb_port, tmp))
        cb_pgid = system.pgid
        cpu = CpuMeter(system)
        cpu.refresh_names()
        subs = [f"fan{i}" for i in range(args.subscribers)]

        progress(f"warm-up: {WARMUP} jobs through each queue, a burst of 10 events")
        for queue in QUEUES.values():
            queue_part(system, cpu, queue, WARMUP, min(args.batch, 50), args.max_wait)
        fanout_part(system, cpu, subs, 10, False, args.max_wait)

        queues: dict[str, Any] = {}
        sizes = {"memory": args.n, "durable": args.n, "durable_fsync_always": args.always_n}
        for label, queue in QUEUES.items():
            part: dict[str, Any] = {}
            progress(f"{label}: {sizes[label]} jobs, enqueue_many x {args.batch}")
            part["batched"] = queue_part(system, cpu, queue, sizes[label], args.batch,
                                         args.max_wait)  # fmt: skip
            single = args.single_n if queue != "durable_always" else max(1, args.single_n // 3)
            progress(f"{label}: {single} jobs, one enqueue each")
            part["single"] = queue_part(system, cpu, queue, single, 1, args.max_wait)
            queues[label] = part
        result["queues"] = queues

        fanout: dict[str, Any] = {}
        progress(f"fan-out: pub publishes {args.fanout_n} events to {len(subs)} subscribers")
        fanout["actor_publish"] = fanout_part(system, cpu, subs, args.fanout_n, False,
                                              args.max_wait)  # fmt: skip
        progress(f"fan-out: the host publishes {args.host_publish_n} events")
        fanout["host_publish"] = fanout_part(system, cpu, subs, args.host_publish_n, True,
                                             args.max_wait)  # fmt: skip
        result["fanout"] = fanout

        baselines: dict[str, Any] = {}
        raw.tells(10, len(raw.sinks), 1, args.max_wait)  # warm-up: every connection open
        raw.asks(WARMUP)
        progress(f"raw Thespian: {args.raw_tells_n} one-way tells one by one")
        baselines["raw_thespian_tells"] = raw.tells(args.raw_tells_n, 1, 1, args.max_wait)
        progress(f"raw Thespian: {args.n} one-way tells in lists of {args.batch}")
        baselines["raw_thespian_tells_batched"] = raw.tells(args.n, 1, args.batch,
                                                            args.max_wait)  # fmt: skip
        progress(f"raw Thespian: {args.raw_asks_n} asks")
        baselines["raw_thespian_asks"] = raw.asks(args.raw_asks_n)
        progress(f"raw Thespian: {args.fanout_n} tells to each of {len(raw.sinks)} actors")
        baselines["raw_thespian_fanout"] = raw.tells(args.fanout_n, len(raw.sinks), 1,
                                                     args.max_wait)  # fmt: skip
        window = args.bus_window or 64
        baselines["raw_thespian_fanout_batched"] = raw.tells(
            args.fanout_n, len(raw.sinks), window, args.max_wait)  # fmt: skip
        progress(f"raw pipe: {args.n} messages one by one and in lists of {args.batch}")
        baselines["raw_pipe"] = pipe_part(parent_conn, args.n, 1)
        baselines["raw_pipe_batched"] = pipe_part(parent_conn, args.n, args.batch)
        progress("the stores alone, in this process")
        baselines["store_only"] = store_baselines(args, tmp)
        result["baselines"] = baselines

        mem = queues["memory"]["batched"]["msgs_per_s"] or 0.0
        dur = queues["durable"]["batched"]["msgs_per_s"] or 0.0
        ok = all(
            p["complete"] and p["correctness"]["exactly_once"]
            for q in queues.values() for p in q.values()
        )  # fmt: skip
        fan_ok = all(
            p["complete"] and p["duplicates"] == 0 and p["missing"] == 0
            for p in fanout.values()
        )  # fmt: skip
        result["all_exactly_once"] = ok and fan_ok
        # Inversions: queue parts count them, fan-out parts count the subscribers that saw
        # at least one (each part's details name the positions).
        disorder: dict[str, int] = {
            f"queues.{label}.{kind}": p["correctness"]["out_of_order"]
            for label, q in queues.items() for kind, p in q.items()
            if p["correctness"]["out_of_order"]
        }  # fmt: skip
        disorder.update(
            {f"fanout.{k}": len(p["out_of_order"]) for k, p in fanout.items() if p["out_of_order"]}
        )
        result["out_of_order"] = disorder
        result["all_in_order"] = not disorder
        result["goal_memory_met"] = mem >= GOAL_MEMORY_MSGS_PER_S
        result["goal_durable_met"] = dur >= GOAL_DURABLE_MSGS_PER_S
        result["goal_met"] = bool(ok and mem >= GOAL_MEMORY_MSGS_PER_S
                                  and dur >= GOAL_DURABLE_MSGS_PER_S)  # fmt: skip
    except BaseException as exc:  # report, then clean up; the JSON is still printed
        result["error"] = f"{type(exc).__name__}: {exc}"
        progress(f"benchmark failed: {result['error']}")
        rc = 1
    finally:
        if system is not None:
            progress("stopping callboard")
            system.stop()
        leftovers["callboard"] = kill_leftovers(cb_pgid)
        if raw is not None:
            progress("shutting raw Thespian down")
            raw.shutdown()
            leftovers["raw_thespian"] = kill_leftovers(raw.pgid)
        if parent_conn is not None:
            with contextlib.suppress(OSError):
                parent_conn.send(None)
            parent_conn.close()
        if pipe_proc is not None:
            pipe_proc.join(2.0)
            if pipe_proc.is_alive():
                leftovers["raw_pipe"] = 1
                pipe_proc.kill()
                pipe_proc.join(2.0)
        shutil.rmtree(tmp, ignore_errors=True)
        result["leftover_processes"] = sum(leftovers.values())
        result["leftover_by_system"] = leftovers
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        emit(result)
    return rc


if __name__ == "__main__":
    sys.exit(main())
