"""Durable queues under chaos, and across a daemon restart.

1. The acceptance drill: 10,000 messages through a durable (SQLite) queue while a chaos
   thread SIGKILLs the queue actor and its consumers. Nothing may be lost, nothing may be
   dead-lettered, and every duplicate processing must be a redelivery the queue counted.
2. A daemon (``callboard run``) stopped with SIGTERM and started again on the same
   queue file and state dir still holds what was enqueued (and still recognises the ids
   it stored).

Two tests here expose bugs and FAIL until they are fixed (see their docstrings):
``test_enqueue_many_sent_again_stores_the_batch_once`` and
``test_a_daemon_restarts_at_once_with_the_same_config``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from durableactors import PREFETCH, Job
from test_daemon import Daemon, launch_daemon, stop_daemon
from test_daemon import daemons as daemons  # the fixture (stops them, fails on leftovers)

from callboard import Message, System
from callboard.admin._client import AdminClient, read_token
from callboard.errors import AskTimeout, RemoteError
from callboard.queues._protocol import Enqueued, EnqueueMany, Item

from conftest import StartSystem, pick_port, system_processes

QUEUE = "jobs"
QUEUE_ACTOR = f"queue.{QUEUE}"
CONSUMERS = ("recorder-1", "recorder-2", "recorder-3")
TOTAL = 10_000
BATCH = 500
BACKLOG = 1_000
QUEUE_KILLS = 5
CONSUMER_KILLS = 10
VISIBILITY_TIMEOUT = 2.0
MAX_DELIVERIES = 50  # far more than any message can be in flight at a kill
SEED = int(os.environ.get("CALLBOARD_CHAOS_SEED", "20240611"))
WORK_DEADLINE_S = 120.0
# An ask to a queue killed while it handles the request gets no reply: it waits out its
# timeout. Short, so that the producer soon retries (a store takes ~50 ms per batch).
ENQUEUE_TIMEOUT = 2.0
# Errors of an ask to a queue that is being killed or restarted: safe to retry with the
# SAME item ids, since enqueueing is idempotent by id within the dedupe window.
RETRYABLE = frozenset({"restarting", "crashed", "stopping"})


def job_item(seq: int) -> Item:
    return Item(id=f"job-{seq:05d}", type=Job.type_name, version=Job.version, data={"seq": seq})


# -- the producer -------------------------------------------------------------------------


@dataclass
class ProducerLog:
    attempts: int = 0
    failed_attempts: int = 0
    resent_items: int = 0
    """Items sent again after a failed attempt (same ids)."""
    reported_duplicates: int = 0
    """Items a successful reply called ``duplicate``."""
    errors: Counter[str] = field(default_factory=Counter)


def enqueue_durably(system: System, items: list[Item], log: ProducerLog, deadline: float) -> None:
    """Enqueue ``items`` in one request, retrying the very same request (same ids) while
    the queue is down. ``System.enqueue_many`` cannot be used: it draws fresh ids on
    every call, so a retry after a lost reply would enqueue the batch twice."""
    while True:
        log.attempts += 1
        try:
            reply = system.ask(QUEUE_ACTOR, EnqueueMany(items=items), timeout=ENQUEUE_TIMEOUT)
        except (RemoteError, AskTimeout) as exc:
            code = exc.code if isinstance(exc, RemoteError) else "ask_timeout"
            if isinstance(exc, RemoteError) and code not in RETRYABLE:
                raise
            if time.monotonic() > deadline:
                raise
            log.failed_attempts += 1
            log.resent_items += len(items)
            log.errors[code] += 1
            time.sleep(0.05)  # backoff while the supervisor restarts the queue
            continue
        assert isinstance(reply, Enqueued)
        assert reply.ids == [i.id for i in items]
        assert set(reply.statuses) <= {"accepted", "duplicate"}, reply.statuses
        log.reported_duplicates += reply.statuses.count("duplicate")
        return


# -- the chaos driver ---------------------------------------------------------------------


@dataclass
class Kill:
    at: float
    target: str
    pid: int
    processed: int
    """Lines in the trail (processings) when the kill was sent."""


class Chaos(threading.Thread):
    """SIGKILLs ``targets`` in turn, at random points of the work: kill ``i`` waits until
    ``progress()`` (lines processed so far) reaches a random threshold, then for a short
    random pause. Keyed to progress rather than to the clock, the kills land while the
    work runs however fast or slow the machine is. A target that is restarting right now
    (no process to kill) is tried again after another short pause."""

    def __init__(
        self, system: System, targets: list[str], rng: random.Random,
        progress: Callable[[], int],
    ) -> None:  # fmt: skip
        super().__init__(name="chaos", daemon=True)
        self.system = system
        self.progress = progress
        self.rng = rng
        self.plan = sorted(rng.randrange(TOTAL // 50, TOTAL * 7 // 10) for _ in targets)
        self.targets = targets
        self.kills: list[Kill] = []
        self.skipped = 0
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            for target, threshold in zip(self.targets, self.plan, strict=True):
                while self.progress() < threshold:
                    if self.halt.wait(0.02):  # polling the consumers' files
                        return
                # A chaos driver, not synchronisation: random pauses are the point.
                while not self.halt.wait(self.rng.uniform(0.0, 0.2)):
                    try:
                        pid = self.system.kill(target)
                    except RemoteError as exc:
                        if exc.code not in ("not_running", "restarting"):
                            raise
                        self.skipped += 1
                        continue
                    self.kills.append(Kill(time.monotonic(), target, pid, self.progress()))
                    break
        except BaseException as exc:  # reported by the test
            self.error = exc


def count_lines(out_dir: Path) -> int:
    """Lines in the consumers' files: processings so far (duplicates included)."""
    return sum(path.read_bytes().count(b"\n") for path in out_dir.glob("*.log"))


# -- reading the consumers' trail ---------------------------------------------------------


def read_trail(out_dir: Path) -> tuple[Counter[int], dict[int, set[int]]]:
    """(seq -> times processed, seq -> pids that processed it). A torn last line (the
    writer was killed mid-write: never seen in practice) is ignored, not counted."""
    times: Counter[int] = Counter()
    pids: dict[int, set[int]] = {}
    for path in sorted(out_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                continue
            seq, pid = int(parts[0]), int(parts[1])
            times[seq] += 1
            pids.setdefault(seq, set()).add(pid)
    return times, pids


# -- test 1: the acceptance drill -----------------------------------------------------------


@pytest.mark.timeout(240)
def test_ten_thousand_messages_survive_kills_of_the_queue_and_its_consumers(
    tmp_path: Path, start_system: StartSystem
) -> None:
    out = tmp_path / "trail"
    out.mkdir()
    queues = {
        QUEUE: {
            "durable": True,
            "path": str(tmp_path / "jobs.sqlite"),
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "max_deliveries": MAX_DELIVERIES,
            "max_length": 2 * TOTAL,
        }
    }
    children = [
        {"id": name, "actor": "durableactors:Recorder", "args": {"out_dir": str(out)}}
        for name in CONSUMERS
    ]
    system = start_system(children, supervisor={"intensity": 100, "period": 10}, queues=queues)
    t0 = time.monotonic()

    rng = random.Random(SEED)
    targets = [QUEUE_ACTOR] * QUEUE_KILLS + [rng.choice(CONSUMERS) for _ in range(CONSUMER_KILLS)]
    rng.shuffle(targets)
    chaos = Chaos(system, targets, rng, lambda: count_lines(out))
    chaos.start()

    # The producer keeps at most BACKLOG messages ahead of the consumers (flow control on
    # the observable progress), so that enqueueing lasts as long as the work and the
    # queue's deaths hit producer requests too, not only deliveries and acks.
    producer = ProducerLog()
    give_up = time.monotonic() + WORK_DEADLINE_S
    for start in range(0, TOTAL, BATCH):
        while start - count_lines(out) > BACKLOG and time.monotonic() < give_up:
            time.sleep(0.01)  # polling the consumers' progress
        enqueue_durably(system, [job_item(s) for s in range(start, start + BATCH)], producer,
                        give_up)  # fmt: skip
    enqueued_s = time.monotonic() - t0

    # Bounded wait: every message processed, the chaos over, and the queue drained (no
    # ready or leased message left: nothing more will be delivered).
    stats: dict[str, Any] = {}
    times: Counter[int] = Counter()
    while True:
        times, _ = read_trail(out)
        done = len(times) == TOTAL and not chaos.is_alive()
        if done:
            try:
                stats = system.queue_stats(QUEUE, timeout=5.0)
            except (RemoteError, AskTimeout):
                stats = {}
            if stats and stats["ready"] == 0 and stats["in_flight"] == 0:
                break
        if time.monotonic() > give_up:
            chaos.halt.set()
            missing = sorted(set(range(TOTAL)) - set(times))
            pytest.fail(
                f"after {WORK_DEADLINE_S}s: {len(times)}/{TOTAL} processed, missing "
                f"{missing[:20]}..., chaos alive={chaos.is_alive()}, kills={len(chaos.kills)}, "
                f"stats={stats}"
            )
        time.sleep(0.2)  # polling the consumers' files and the queue's stats
    finished_s = time.monotonic() - t0
    chaos.join(10)
    assert chaos.error is None, f"chaos driver failed: {chaos.error!r}"

    # Read the trail BEFORE the final stats: every processing is one delivery (a lease),
    # and leases only grow, so the leases counted afterwards bound the lines read now.
    times, pids = read_trail(out)
    stats = system.queue_stats(QUEUE, timeout=5.0)
    dead = system.dead_letters(QUEUE, limit=100)

    processed = sum(times.values())
    duplicated = {seq: n for seq, n in times.items() if n > 1}
    extra = processed - len(times)  # processings beyond the first of each message
    kills_by_target = Counter(k.target for k in chaos.kills)
    cross_process = sum(1 for seq in duplicated if len(pids[seq]) > 1)
    summary = {
        "seed": SEED,
        "prefetch": PREFETCH,
        "processed_lines": processed,
        "distinct": len(times),
        "duplicated_messages": len(duplicated),
        "extra_processings": extra,
        "dup_across_processes": cross_process,
        "kills": dict(kills_by_target),
        "kill_retries_while_restarting": chaos.skipped,
        "processed_at_kills": [k.processed for k in chaos.kills],
        "enqueue_attempts": producer.attempts,
        "enqueue_failed_attempts": producer.failed_attempts,
        "enqueue_errors": dict(producer.errors),
        "enqueue_resent_items": producer.resent_items,
        "reported_duplicates": producer.reported_duplicates,
        "redelivered_total": stats["redelivered_total"],
        "released_total": stats["released_total"],
        "expired_total": stats["expired_total"],
        "duplicates_total": stats["duplicates_total"],
        "enqueued_total": stats["enqueued_total"],
        "acked_total": stats["acked_total"],
        "stale_acks_total": stats["stale_acks_total"],
        "enqueued_s": round(enqueued_s, 2),
        "drained_s": round(finished_s, 2),
    }
    print("\nqueue durability drill: " + json.dumps(summary, sort_keys=True))

    assert len(chaos.kills) == QUEUE_KILLS + CONSUMER_KILLS
    # The drill is only worth something if kills of both kinds hit work in progress.
    mid_work = {k.target == QUEUE_ACTOR for k in chaos.kills if k.processed < TOTAL * 9 // 10}
    assert mid_work == {True, False}, summary
    # None lost: every one of the 10,000 was processed at least once.
    assert set(times) == set(range(TOTAL))
    # None dead-lettered, and the queue is empty: each message was acked exactly once
    # (an ack deletes the message; a later ack of the same id is stale).
    assert dead == []
    assert stats["dead_letters"] == 0 and stats["dead_lettered_total"] == 0
    assert stats["ready"] == 0 and stats["in_flight"] == 0
    assert stats["acked_total"] == TOTAL
    # Idempotent enqueue: every id was stored exactly once, however often it was sent.
    assert stats["enqueued_total"] == TOTAL
    # Enqueue duplicates come only from sending an id again: a retry of ours, or the
    # runtime's own resend of an ask whose first target died (whose reply then says
    # "duplicate"). With neither, there can be none.
    assert stats["duplicates_total"] >= producer.reported_duplicates
    if producer.failed_attempts == 0 and producer.reported_duplicates == 0:
        assert stats["duplicates_total"] == 0
    # Duplicate processings are redeliveries. What is provable from outside: each line
    # in the trail is the handling of one delivery, and a message's first delivery is not
    # a redelivery, so the processings beyond each message's first cannot outnumber the
    # redeliveries the queue counted (a message in flight at a kill, or whose ack was
    # lost with a killed queue, is leased again with its delivery count > 1). Which
    # redelivery was a duplicate cannot be told: the handler does not see the count.
    assert extra <= stats["redelivered_total"], summary


def test_enqueue_many_sent_again_stores_the_batch_once(
    tmp_path: Path, start_system: StartSystem
) -> None:
    """A batch sent again with the same ids (e.g. after a lost reply) is stored once."""
    queues = {QUEUE: {"durable": True, "path": str(tmp_path / "once.sqlite")}}
    system = start_system(
        [{"id": "echo", "actor": "callboard.actors.examples:Echo"}], queues=queues
    )
    batch: list[Message] = [Job(seq=seq) for seq in range(3)]
    ids = [f"job-{n}" for n in range(3)]
    first = system.enqueue_many(QUEUE, batch, ids=ids)
    again = system.enqueue_many(QUEUE, batch, ids=ids)  # e.g. a retry after a lost reply
    assert first == again == ids
    stats = system.queue_stats(QUEUE)
    assert (stats["ready"], stats["duplicates_total"]) == (3, 3), (first, again, stats)


# -- test 2: a daemon restart keeps what was durable ------------------------------------------

DAEMON_CONFIG = """
[system]
admin_port = {admin_port}
log_level = "info"

[daemon]
state_dir = "{state}"
api_port = {api_port}

[queues.jobs]
durable = true
path = "{db}"

[supervisor]
strategy = "one_for_one"

[[supervisor.children]]
id = "echo"
actor = "callboard.actors.examples:Echo"
"""

KEPT = 50


def _client(state: Path) -> AdminClient:
    info = json.loads((state / "daemon.json").read_text())
    return AdminClient(info["url"], read_token(state / "admin.token"))


def _queue_stats(client: AdminClient) -> dict[str, Any]:
    reply = client.ask(QUEUE_ACTOR, "callboard.queues.GetQueueStats", {})
    assert reply["type"] == "callboard.queues.QueueStatsReply", reply
    stats: dict[str, Any] = reply["payload"]["stats"]
    return stats


def write_config(path: Path, admin_port: int, api_port: int, state: Path, db: Path) -> Path:
    path.write_text(
        DAEMON_CONFIG.format(admin_port=admin_port, api_port=api_port, state=state, db=db)
    )
    return path


@pytest.mark.timeout(180)
def test_a_daemon_restart_keeps_the_durable_queue(tmp_path: Path, daemons: list[Daemon]) -> None:
    state = tmp_path / "state"
    db = tmp_path / "queues" / "jobs.sqlite"
    admin_port, api_port = pick_port(), pick_port()
    config = write_config(tmp_path / "daemon.toml", admin_port, api_port, state, db)
    items = [job_item(seq).model_dump(mode="json") for seq in range(KEPT)]

    first = launch_daemon(config, state, admin_port, api_port, "run1")
    daemons.append(first)
    client = _client(state)
    # The admin API has no enqueue endpoint; its generic ask sends any registered
    # message, so the queue's own protocol message goes to queue.jobs directly.
    reply = client.ask(QUEUE_ACTOR, "callboard.queues.EnqueueMany", {"items": items})
    assert reply["type"] == "callboard.queues.Enqueued", reply
    assert reply["payload"]["statuses"] == ["accepted"] * KEPT
    before = _queue_stats(client)
    assert (before["ready"], before["enqueued_total"], before["durable"]) == (KEPT, KEPT, True)

    assert stop_daemon(first) == 0, first.err.read_text()[-3000:]
    assert system_processes(admin_port, first.pgid()) == []
    daemons.remove(first)
    assert db.exists()

    # The same config but for a fresh API port: restarting on the same one is refused
    # for as long as the first run's API connections sit in TIME_WAIT (see
    # test_a_daemon_restarts_at_once_with_the_same_config).
    api_port = pick_port()
    config = write_config(config, admin_port, api_port, state, db)
    second = launch_daemon(config, state, admin_port, api_port, "run2")
    daemons.append(second)
    client = _client(state)
    after = _queue_stats(client)
    assert after["ready"] == KEPT, after
    assert after["in_flight"] == 0 and after["dead_letters"] == 0
    assert after["enqueued_total"] == KEPT  # the totals are stored with the messages
    # The ids are remembered across the restart: sending them again stores nothing.
    again = client.ask(QUEUE_ACTOR, "callboard.queues.EnqueueMany", {"items": items})
    assert again["payload"]["statuses"] == ["duplicate"] * KEPT
    final = _queue_stats(client)
    assert final["ready"] == KEPT and final["duplicates_total"] == KEPT


@pytest.mark.timeout(180)
def test_a_daemon_restarts_at_once_with_the_same_config(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """After an admin API call, the API port lingers in TIME_WAIT; a restart with the same
    config must not mistake that for a port in use."""
    state = tmp_path / "state"
    admin_port, api_port = pick_port(), pick_port()
    config = write_config(
        tmp_path / "daemon.toml", admin_port, api_port, state, tmp_path / "jobs.sqlite"
    )
    first = launch_daemon(config, state, admin_port, api_port, "run1")
    daemons.append(first)
    _queue_stats(_client(state))  # one API call: its connection is closed by the server
    assert stop_daemon(first) == 0
    daemons.remove(first)

    second = launch_daemon(config, state, admin_port, api_port, "run2")
    daemons.append(second)
    assert _queue_stats(_client(state))["ready"] == 0
