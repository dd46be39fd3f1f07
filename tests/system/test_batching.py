"""The batched send path on real processes: per-sender order, nothing lost, and what a
killed receiver never got is reported as dead letters (or refused to the sender)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamactors import Stream

from conftest import StartSystem


def records(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    out = []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line still being written is not read yet
    for line in complete.splitlines():
        producer, seq, pid = line.split()
        out.append((producer, int(seq), int(pid)))
    return out


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    give_up = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.02)


def producers(tmp_path: Path, n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"p{i}", "actor": "streamactors:Producer",
         "args": {"target": "sink", "refused_file": str(tmp_path / f"refused-p{i}.txt")}}
        for i in range(n)
    ]  # fmt: skip


def test_two_producers_streaming_in_many_turns_keep_their_order_and_lose_nothing(
    start_system: StartSystem, tmp_path: Path
) -> None:
    out = tmp_path / "sink.txt"
    n = 3000
    system = start_system([
        {"id": "sink", "actor": "streamactors:Sink", "args": {"out": str(out)}},
        *producers(tmp_path, 2),
    ])  # fmt: skip
    for name, per_turn in (("p0", 100), ("p1", 7)):  # big batches and small ones at once
        system.tell(name, Stream(start=0, count=n, per_turn=per_turn))
    wait_until("every item handled", lambda: len(records(out)) == 2 * n)
    got = records(out)
    for name in ("p0", "p1"):
        seqs = [seq for producer, seq, _ in got if producer == name]
        assert seqs == list(range(n)), f"{name}: out of order or missing"
    assert not list(tmp_path.glob("refused-*.txt"))


def test_a_receiver_killed_mid_stream_loses_nothing_silently(
    start_system: StartSystem, tmp_path: Path
) -> None:
    """What the dead process never got comes back as dead letters (Thespian could not
    deliver it) or was refused to the producer at send time (the name was restarting);
    what it had received but not yet handled died with it: that can only be the batches
    waiting in its mailbox at the kill, one contiguous run right after the last item it
    handled. (Messages that must survive a crash belong on a durable queue.)"""
    out = tmp_path / "sink.txt"
    n = 30_000
    system = start_system([
        {"id": "sink", "actor": "streamactors:Sink", "args": {"out": str(out)},
         "backoff": {"min": 0.3, "max": 0.3, "jitter": 0.0}},
        *producers(tmp_path, 1),
    ], bus={"enabled": True})  # fmt: skip
    system.tell("p0", Stream(start=0, count=n, per_turn=10))
    wait_until("the stream under way", lambda: out.exists() and out.stat().st_size > 0)
    victim = system.kill("sink")
    wait_until("the sink back", lambda: system.directory().get("sink") not in (None, victim))

    def accounted() -> set[int]:
        seen = {seq for _, seq, _ in records(out)}
        refused_file = tmp_path / "refused-p0.txt"
        refused = {int(x) for x in refused_file.read_text().split()} if (
            refused_file.exists()) else set()  # fmt: skip
        dead = {d["data"]["seq"] for d in system.dead_letters("dead_letters", limit=10_000)
                if d["type"] == "test.stream.Item"}  # fmt: skip
        return seen | refused | dead

    wait_until("the last item handled",
               lambda: max((s for _, s, _ in records(out)), default=0) == n - 1, 60)
    got = records(out)
    before = sorted(seq for _, seq, pid in got if pid == victim)
    after = sorted(seq for _, seq, pid in got if pid != victim)
    assert before and after, "the kill did not land mid-stream"
    assert before == list(range(len(before))), "the first incarnation saw a gap"
    assert after == sorted(after) and after[-1] == n - 1

    def only_the_mailbox() -> bool:  # dead letters arrive through Thespian's admin: poll
        missing = sorted(set(range(n)) - accounted())
        return not missing or (missing == list(range(missing[0], missing[-1] + 1))
                               and missing[0] == before[-1] + 1)  # fmt: skip

    wait_until("every item accounted for but the killed mailbox", only_the_mailbox, 15)
    missing = sorted(set(range(n)) - accounted())
    dead = system.dead_letters("dead_letters", limit=10_000)
    print(f"\nkilled mid-stream: handled {len(before)} before and {len(after)} after the "
          f"kill, {len(dead)} dead letters, {len(missing)} lost in the killed mailbox")
    for letter in dead:
        assert letter["reason"] == "undeliverable" and letter["data"]["producer"] == "p0"


def test_a_fast_producer_is_slowed_by_a_slow_consumer(
    start_system: StartSystem, tmp_path: Path
) -> None:
    """Flow control: the producer could send 20,000 items in a second or two; the sink
    takes 2 ms each. The transport only takes so many unacknowledged batches before the
    producer has to wait, so what it has sent stays within a bounded distance of what the
    sink has handled, instead of piling up in the sink's mailbox."""
    out, progress = tmp_path / "sink.txt", tmp_path / "progress.txt"
    n = 20_000
    system = start_system([
        {"id": "sink", "actor": "streamactors:Sink", "args": {"out": str(out), "delay_s": 0.002}},
        {"id": "p0", "actor": "streamactors:Producer",
         "args": {"target": "sink", "refused_file": str(tmp_path / "refused.txt"),
                  "progress_file": str(progress)}},
    ])  # fmt: skip
    system.tell("p0", Stream(start=0, count=n, per_turn=1))

    def gaps() -> tuple[int, int]:
        handled = len(records(out))
        sent = int(progress.read_text() or 0) if progress.exists() else 0
        return sent, handled

    wait_until("the sink busy for a while", lambda: gaps()[1] >= 600, 30)
    worst = 0
    for _ in range(20):  # sampled over about a second of steady streaming
        sent, handled = gaps()
        worst = max(worst, sent - handled)
        time.sleep(0.05)  # sampling interval of a measurement, not synchronisation
    sent, handled = gaps()
    print(f"\nflow control: sent {sent}, handled {handled}, worst lead {worst} items")
    assert sent < n, "the producer was not slowed at all"
    # 256 unacknowledged transmits (callboard's limit) of one item each, plus those in
    # the process of being sent and handled: far below the 20,000 it could have sent.
    assert worst <= 1500, worst
