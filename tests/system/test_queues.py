"""Named queues end to end: every actor (queues, consumers, producers) in its own process
on the tcp transport. Consumers record what they handle in a file (``queueactors``); the
tests poll that file and ``queue_stats`` with a bounded deadline, never sleep blindly."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from queueactors import Job, Produce, Produced, Release, Released, TellAfterDeath

from callboard import AskTimeout, RemoteError, System

from conftest import StartSystem

T = TypeVar("T")

ECHO = "callboard.actors.examples:Echo"
SLACK_S = 1.0
"""How late a deadline-bound reply may come on a loaded 2-core machine."""


# -- helpers -------------------------------------------------------------------------------


def durable_queue(tmp_path: Path, **spec: Any) -> dict[str, Any]:
    return {"durable": True, "path": str(tmp_path / "queues" / "jobs.sqlite"), **spec}


def consumer(child_id: str, cls: str, out: Path, **args: Any) -> dict[str, Any]:
    return {"id": child_id, "actor": f"queueactors:{cls}", "args": {"out": str(out), **args}}


def events(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The complete lines a consumer has recorded so far (``kind``: only those events)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]  # the last piece may be a line being written
    found = [json.loads(line) for line in lines if line]
    return [e for e in found if kind is None or e["event"] == kind]


def done(path: Path) -> list[int]:
    return [e["n"] for e in events(path, "done")]


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {got!r}")
        time.sleep(0.02)


def stats_when(system: System, what: str, pred: Callable[[dict[str, Any]], bool],
               timeout: float = 10.0) -> dict[str, Any]:  # fmt: skip
    """The first ``queue_stats("jobs")`` satisfying ``pred``."""

    def check() -> dict[str, Any] | None:
        stats = system.queue_stats("jobs", timeout=5)
        return stats if pred(stats) else None

    return wait_for(what, check, timeout)


# -- ordering and flow control ---------------------------------------------------------------


def test_priority_first_then_fifo_within_a_priority(
    start_system: StartSystem, tmp_path: Path
) -> None:
    out = tmp_path / "rec.jsonl"
    system = start_system([], queues={"jobs": durable_queue(tmp_path)})
    priorities = [0, 5, 9, 5, 0, 9, 3, 9, 0, 5, 3, 1]
    for n, p in enumerate(priorities):
        system.enqueue("jobs", Job(n=n), priority=p)
    stats = system.queue_stats("jobs")
    assert stats["ready"] == len(priorities) and stats["in_flight"] == 0
    depth = {int(k): v for k, v in stats["depth_by_priority"].items()}
    assert depth == {p: priorities.count(p) for p in range(10)}

    # The consumer (prefetch 1) starts only now: it sees the whole queue at once.
    system.start_child("root", consumer("rec", "Recorder", out))
    wait_for("every job handled", lambda: len(done(out)) == len(priorities))
    expected = [n for n, _ in sorted(enumerate(priorities), key=lambda np: (-np[1], np[0]))]
    assert done(out) == expected
    # The record is written before the handler returns; its ack follows.
    stats = stats_when(system, "all acked", lambda s: s["acked_total"] == len(priorities))
    assert stats["ready"] == 0


def test_prefetch_caps_unacked_messages_per_consumer(
    start_system: StartSystem, tmp_path: Path
) -> None:
    out = tmp_path / "parker.jsonl"
    system = start_system(
        [consumer("parker", "Parker", out)], queues={"jobs": durable_queue(tmp_path)}
    )
    system.enqueue_many("jobs", [Job(n=n) for n in range(10)])

    stats = stats_when(system, "3 in flight", lambda s: s["in_flight"] == 3)
    assert stats["in_flight_by_consumer"] == {"parker": 3}
    assert stats["ready"] == 7
    assert stats["consumers"] == {"parker": {"prefetch": 3, "in_flight": 3}}
    # The consumer really holds three, parked, and was not sent a fourth.
    wait_for("3 parked handlers", lambda: len(events(out, "got")) == 3)
    stats = system.queue_stats("jobs")
    assert stats["in_flight_by_consumer"] == {"parker": 3} and stats["ready"] == 7
    reply = system.ask("parker", Release(), timeout=5)
    assert isinstance(reply, Released) and reply.count == 3

    wait_for("the rest flows", lambda: sorted(done(out)) == list(range(10)))
    stats = stats_when(system, "all acked", lambda s: s["acked_total"] == 10)
    assert stats["ready"] == 0 and stats["in_flight"] == 0 and stats["in_flight_by_consumer"] == {}
    assert len(events(out, "got")) == 10  # nothing was redelivered


# -- redelivery and dead letters -----------------------------------------------------------


def test_silent_consumer_past_visibility_timeout_gets_a_redelivery(
    start_system: StartSystem, tmp_path: Path
) -> None:
    out = tmp_path / "staller.jsonl"
    queue = durable_queue(tmp_path, visibility_timeout=0.5, max_deliveries=2)
    system = start_system(
        [consumer("staller", "Staller", out, stall_once=[1], stall_always=[2])],
        queues={"jobs": queue},
    )
    system.enqueue("jobs", Job(n=1))
    system.enqueue("jobs", Job(n=2))
    system.enqueue("jobs", Job(n=3))

    wait_for("job 1 handled on its second delivery", lambda: 1 in done(out), timeout=5)
    got_1 = [e for e in events(out, "got") if e["n"] == 1]
    assert [e["seen"] for e in got_1] == [1, 2]
    gap = got_1[1]["t"] - got_1[0]["t"]
    assert 0.4 <= gap <= 0.5 + SLACK_S, f"redelivered {gap:.3f}s after the first delivery"

    # Job 2 stays silent on every delivery: after max_deliveries=2 it is a dead letter
    # whose history shows both deliveries.
    dead = wait_for("job 2 dead-lettered", lambda: system.dead_letters("jobs"), timeout=5)
    assert len(dead) == 1
    letter = dead[0]
    assert letter["data"] == {"n": 2}
    assert letter["reason"] == "max_deliveries" and letter["detail"] == "lease expired"
    assert letter["deliveries"] == 2
    history = [h["event"] for h in letter["history"]]
    assert history == ["enqueued", "delivered", "expired", "delivered", "expired",
                       "dead_lettered"]  # fmt: skip
    assert all(h["consumer"] == "staller" for h in letter["history"][1:])

    stats = stats_when(system, "job 3 acked", lambda s: s["acked_total"] == 2)
    assert sorted(done(out)) == [1, 3]
    assert stats["expired_total"] == 3  # job 1 once, job 2 twice
    assert stats["redelivered_total"] == 2  # job 1's and job 2's second deliveries
    assert stats["dead_lettered_total"] == 1
    assert stats["ready"] == 0 and stats["in_flight"] == 0
    assert len(events(out, "start")) == 1  # silence is not a crash: no restart


def test_crashing_consumer_dead_letters_after_max_deliveries_then_replay_and_purge(
    start_system: StartSystem, tmp_path: Path
) -> None:
    out = tmp_path / "rec.jsonl"
    switch = tmp_path / "poisoned"
    switch.write_text("on")
    system = start_system(
        [consumer("rec", "Recorder", out, poison=[2, 5], switch=str(switch), fail="crash")],
        queues={"jobs": durable_queue(tmp_path, max_deliveries=2)},
        supervisor={"intensity": 10, "period": 10.0},
    )
    for n in range(1, 7):
        system.enqueue("jobs", Job(n=n))

    def both_dead() -> list[dict[str, Any]] | None:
        dead = system.dead_letters("jobs")
        return dead if len(dead) == 2 else None

    dead = wait_for("both poison jobs dead-lettered", both_dead, timeout=15)
    wait_for("the healthy jobs handled", lambda: sorted(done(out)) == [1, 3, 4, 6])
    assert sorted(d["data"]["n"] for d in dead) == [2, 5]
    for letter in dead:
        assert letter["reason"] == "max_deliveries"
        assert letter["deliveries"] == 2
        history = [h["event"] for h in letter["history"]]
        assert history.count("delivered") == 2 and history[-1] == "dead_lettered"
        assert history[0] == "enqueued"
    got = Counter(e["n"] for e in events(out, "got"))
    assert got[2] == 2 and got[5] == 2
    # Every crash restarted the consumer in a new process: 1 start + 4 restarts.
    starts = events(out, "start")
    assert len(starts) == 5 and len({e["pid"] for e in starts}) == 5

    # Fixed: replay one of them, it is processed; purge the other.
    switch.unlink()
    by_n = {d["data"]["n"]: d["id"] for d in dead}
    assert system.replay_dead_letters("jobs", ids=[by_n[2]]) == 1
    wait_for("the replayed job handled", lambda: 2 in done(out))
    remaining = system.dead_letters("jobs")
    assert [d["id"] for d in remaining] == [by_n[5]]
    assert system.purge_dead_letters("jobs") == 1
    assert system.dead_letters("jobs") == []
    stats = stats_when(system, "replayed job acked", lambda s: s["acked_total"] == 5)
    assert stats["dead_letters"] == 0 and stats["replayed_total"] == 1
    assert stats["ready"] == 0 and stats["in_flight"] == 0
    assert 5 not in done(out)


def test_business_error_rejects_to_dead_letters_without_redelivery(
    start_system: StartSystem, tmp_path: Path
) -> None:
    out = tmp_path / "rec.jsonl"
    system = start_system(
        [consumer("rec", "Recorder", out, poison=[2], fail="reject")],
        queues={"jobs": durable_queue(tmp_path, max_deliveries=5)},
    )
    for n in (1, 2, 3):
        system.enqueue("jobs", Job(n=n))

    wait_for("jobs 1 and 3 handled", lambda: sorted(done(out)) == [1, 3])
    dead = wait_for("job 2 rejected", lambda: system.dead_letters("jobs"))
    assert len(dead) == 1
    letter = dead[0]
    assert letter["data"] == {"n": 2}
    assert letter["reason"] == "rejected"
    assert letter["detail"].startswith("unworkable"), letter["detail"]
    assert "job 2 cannot be done" in letter["detail"]
    assert letter["deliveries"] == 1
    assert [h["event"] for h in letter["history"]].count("delivered") == 1

    stats = stats_when(system, "jobs 1 and 3 acked", lambda s: s["acked_total"] == 2)
    assert stats["redelivered_total"] == 0
    assert stats["nacked_total"] == 1 and stats["dead_lettered_total"] == 1
    assert stats["ready"] == 0 and stats["in_flight"] == 0
    assert Counter(e["n"] for e in events(out, "got"))[2] == 1
    assert len(events(out, "start")) == 1  # a business error is no crash


# -- backpressure ----------------------------------------------------------------------------


def test_overflow_reject_refuses_at_once(start_system: StartSystem, tmp_path: Path) -> None:
    system = start_system(
        [], queues={"jobs": durable_queue(tmp_path, max_length=5, overflow="reject")}
    )
    for n in range(5):
        system.enqueue("jobs", Job(n=n))
    began = time.monotonic()
    with pytest.raises(RemoteError) as err:
        system.enqueue("jobs", Job(n=5), timeout=10)
    assert time.monotonic() - began < 2.0  # refused, not waited out
    assert err.value.code == "queue_full"
    assert err.value.details["accepted"] == [] and len(err.value.details["full"]) == 1

    # A batch: nothing fits, the error says which ids were stored (none) and which not.
    with pytest.raises(RemoteError) as err:
        system.enqueue_many("jobs", [Job(n=6), Job(n=7)])
    assert err.value.code == "queue_full" and len(err.value.details["full"]) == 2
    stats = system.queue_stats("jobs")
    assert stats["ready"] == 5 and stats["rejected_total"] == 3


def test_overflow_block_waits_for_room(start_system: StartSystem, tmp_path: Path) -> None:
    out = tmp_path / "parker.jsonl"
    system = start_system(
        [consumer("parker", "Parker", out)],
        queues={"jobs": durable_queue(tmp_path, max_length=3, overflow="block")},
    )
    for n in range(3):
        system.enqueue("jobs", Job(n=n))
    stats_when(system, "the queue full, all in flight", lambda s: s["in_flight"] == 3)

    with ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        blocked = pool.submit(system.enqueue, "jobs", Job(n=3), 0, None, 15.0)
        # The queue has seen the request (one refused attempt) and holds it.
        stats_when(system, "the enqueue blocked", lambda s: s["rejected_total"] >= 1)
        assert not blocked.done()
        assert system.ask("parker", Release(), timeout=5) == Released(count=3)
        msg_id = blocked.result(timeout=10)
        assert time.monotonic() - began < 10.0
    assert isinstance(msg_id, str) and msg_id
    wait_for("all four handled", lambda: sorted(done(out)) == [0, 1, 2, 3])
    stats = stats_when(system, "all acked", lambda s: s["acked_total"] == 4)
    assert stats["enqueued_total"] == 4


def test_overflow_block_gives_up_at_the_deadline(start_system: StartSystem, tmp_path: Path) -> None:
    system = start_system(
        [], queues={"jobs": durable_queue(tmp_path, max_length=1, overflow="block")}
    )
    system.enqueue("jobs", Job(n=0))
    timeout = 1.0
    began = time.monotonic()
    err: Exception | None = None
    try:
        system.enqueue("jobs", Job(n=1), timeout=timeout)
    except (RemoteError, AskTimeout) as exc:
        err = exc
    elapsed = time.monotonic() - began
    assert err is not None, "an enqueue into a full queue nobody drains succeeded"
    assert timeout - 0.05 <= elapsed <= timeout + SLACK_S, f"gave up after {elapsed:.3f}s"
    stats = system.queue_stats("jobs")
    assert stats["ready"] == 1 and stats["enqueued_total"] == 1
    # Documented (System.enqueue, QueueSpec.overflow, QueueFull): "block" past the
    # deadline raises RemoteError("queue_full"), like "reject".
    assert isinstance(err, RemoteError), f"expected RemoteError('queue_full'), got {err!r}"
    assert err.code == "queue_full"


# -- idempotence -------------------------------------------------------------------------------


def test_same_msg_id_is_enqueued_once(start_system: StartSystem, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    system = start_system(
        [consumer("rec", "Recorder", out), {"id": "producer", "actor": "queueactors:Producer"}],
        queues={"jobs": durable_queue(tmp_path)},
    )
    assert system.enqueue("jobs", Job(n=1), msg_id="order-1") == "order-1"
    assert system.enqueue("jobs", Job(n=1), msg_id="order-1") == "order-1"
    assert system.queue_stats("jobs")["duplicates_total"] == 1
    # From inside an actor, too.
    for _ in range(2):
        reply = system.ask("producer", Produce(n=2, msg_id="order-2"), timeout=5)
        assert reply == Produced(id="order-2")
    system.enqueue("jobs", Job(n=3))  # a sentinel: FIFO, so once it is done, so are the others

    wait_for("the sentinel handled", lambda: 3 in done(out))
    assert Counter(done(out)) == {1: 1, 2: 1, 3: 1}
    stats = stats_when(system, "all acked", lambda s: s["acked_total"] == 3)
    assert stats["duplicates_total"] == 2 and stats["enqueued_total"] == 3


# -- crashes of either side ------------------------------------------------------------------


def test_killed_consumer_gets_its_unacked_messages_back_quickly(
    start_system: StartSystem, tmp_path: Path
) -> None:
    out = tmp_path / "worker.jsonl"
    total = 60
    system = start_system(
        [consumer("worker", "Worker", out, work_s=0.1)],
        queues={"jobs": durable_queue(tmp_path, visibility_timeout=30.0)},
    )
    system.enqueue_many("jobs", [Job(n=n) for n in range(total)])
    wait_for("work under way", lambda: len(done(out)) >= 5)

    killed_pid = system.kill("worker")
    killed_at = time.monotonic()
    wait_for("every job handled", lambda: set(done(out)) == set(range(total)), timeout=15)
    took = time.monotonic() - killed_at
    assert took < 10.0, f"recovery took {took:.1f}s (visibility_timeout is 30s)"

    stats = stats_when(system, "nothing left", lambda s: s["ready"] == 0 and s["in_flight"] == 0)
    assert stats["released_total"] >= 1 and stats["redelivered_total"] >= 1
    assert stats["expired_total"] == 0 and stats["dead_letters"] == 0
    handled = Counter(done(out))
    duplicates = sum(c - 1 for c in handled.values())
    # Only what the dead process held unacked (at most its prefetch) can come twice.
    assert duplicates <= 5, handled
    pids = {e["pid"] for e in events(out, "done")}
    assert killed_pid in pids and len(pids) == 2
    print(f"consumer kill: recovered in {took:.2f}s, {duplicates} duplicate(s), "
          f"{stats['released_total']} released")  # fmt: skip


def test_killed_durable_queue_loses_nothing(start_system: StartSystem, tmp_path: Path) -> None:
    out = tmp_path / "parker.jsonl"
    total = 20
    system = start_system(
        [consumer("parker", "Parker", out)], queues={"jobs": durable_queue(tmp_path)}
    )
    system.enqueue_many("jobs", [Job(n=n) for n in range(total)])
    stats_when(system, "3 in flight", lambda s: s["in_flight"] == 3)
    wait_for("3 parked handlers", lambda: len(events(out, "got")) == 3)

    old_pid = system.kill("queue.jobs")
    wait_for("queue.jobs restarted",
             lambda: system.directory().get("queue.jobs") not in (None, old_pid))  # fmt: skip
    # Recovered from SQLite: what was in flight is ready again and the consumer, which
    # re-registered, gets three (redeliveries) while its old handlers are still parked.
    stats = stats_when(system, "the consumer re-registered",
                       lambda s: s["in_flight_by_consumer"] == {"parker": 3})  # fmt: skip
    assert stats["ready"] == total - 3 and stats["enqueued_total"] == total
    assert stats["released_total"] == 3 and stats["redelivered_total"] == 3

    system.ask("parker", Release(), timeout=5)
    wait_for("every job handled", lambda: set(done(out)) == set(range(total)), timeout=15)
    stats = stats_when(system, "nothing left", lambda s: s["ready"] == 0 and s["in_flight"] == 0)
    assert stats["dead_letters"] == 0
    assert len(events(out, "start")) == 1  # the consumer itself never restarted
    handled = Counter(done(out))
    # The three held across the restart ran twice (the old handlers, then the redelivery).
    assert sum(c - 1 for c in handled.values()) <= 3, handled


# -- Thespian's dead letters -------------------------------------------------------------------


def test_tell_to_a_killed_actor_lands_in_the_system_dead_letters(
    start_system: StartSystem, tmp_path: Path
) -> None:
    marker = tmp_path / "teller-waiting"
    system = start_system(
        [{"id": "victim", "actor": ECHO}, {"id": "teller", "actor": "queueactors:Teller"}],
        queues={"jobs": durable_queue(tmp_path)},
    )
    assert system.dead_letters("dead_letters") == []
    pid = system.directory()["victim"]
    assert pid is not None
    # The teller blocks in its handler until the victim's process is dead, then tells it:
    # its directory cannot have learned of the death yet, so the tell goes to the dead
    # address, and Thespian hands it to the dead-letter handler, queue.dead_letters.
    system.tell("teller", TellAfterDeath(target="victim", pid=pid, n=7, marker=str(marker)))
    wait_for("the teller waiting for the death", marker.exists)
    assert system.kill("victim") == pid

    dead = wait_for("the undeliverable tell", lambda: system.dead_letters("dead_letters"))
    assert len(dead) == 1
    letter = dead[0]
    assert letter["type"] == "test.queue.Job" and letter["data"] == {"n": 7}
    assert letter["reason"] == "undeliverable"
    assert letter["detail"].startswith("victim")
    assert system.queue_stats("dead_letters")["dead_letters"] == 1
