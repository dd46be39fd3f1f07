"""The queue store: ordering, leases, acks, nacks, expiry, dead letters, dedupe, limits,
durability across reopen, and MemoryStore/SqliteStore agreeing on random operation
sequences. Every test runs against both stores."""

from __future__ import annotations

import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from callboard.queues import (
    Delivery,
    HistoryEntry,
    MemoryStore,
    NewMessage,
    QueueStore,
    SqliteStore,
    StoreLimits,
    _store,
)

T = TypeVar("T")

LIMITS = StoreLimits(max_length=100, max_deliveries=3, dedupe_window_s=300.0)
VT = 30.0  # visibility timeout


class Stores:
    """Opens stores of one kind. ``reopen`` simulates the queue actor restarting: SQLite
    closes and reopens the same file; memory keeps the same object (its state would be
    gone in a real restart, but the store's own semantics are what is under test)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.opened: list[QueueStore] = []

    def open(self, limits: StoreLimits = LIMITS) -> QueueStore:
        store: QueueStore
        if self.kind == "memory":
            store = MemoryStore(limits)
        else:
            store = SqliteStore(self.path, limits, fsync="normal")
        self.opened.append(store)
        return store

    def reopen(self, store: QueueStore) -> QueueStore:
        if self.kind == "memory":
            return store
        store.close()
        return self.open(store.limits)


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    s = Stores(request.param, tmp_path / "queue.db")
    yield s
    for store in s.opened:
        store.close()


@pytest.fixture
def store(stores: Stores) -> QueueStore:
    return stores.open()


def put(
    store: QueueStore,
    msg_id: str,
    priority: int = 0,
    now: float = 0.0,
    headers: dict[str, str] | None = None,
) -> str:
    return store.enqueue(msg_id, "test.Msg", 1, msg_id.encode(), priority, headers, now)


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.msg_id for d in deliveries]


def events(history: list[HistoryEntry]) -> list[str]:
    return [h.event for h in history]


def drain(store: QueueStore, consumer: str = "c", now: float = 0.0) -> list[str]:
    return ids(store.lease(consumer, 1000, now, VT))


# --- ordering and leases -----------------------------------------------------------------


def test_highest_priority_first_fifo_within_priority(store: QueueStore) -> None:
    for msg_id, priority in [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0), ("f", 9)]:
        assert put(store, msg_id, priority) == "accepted"
    assert drain(store) == ["c", "f", "b", "d", "a", "e"]


def test_lease_hands_out_at_most_n(store: QueueStore) -> None:
    for i in range(5):
        put(store, f"m{i}")
    assert ids(store.lease("c", 2, 0.0, VT)) == ["m0", "m1"]
    assert store.lease("c", 0, 0.0, VT) == []
    assert store.lease("c", -1, 0.0, VT) == []
    assert ids(store.lease("c", 10, 0.0, VT)) == ["m2", "m3", "m4"]
    assert store.lease("c", 10, 0.0, VT) == []


def test_lease_delivery_and_in_flight_state(store: QueueStore) -> None:
    put(store, "a", 7, now=1.0, headers={"correlation_id": "x1"})
    [d] = store.lease("c1", 1, 2.0, 10.0)
    assert d == Delivery("a", "test.Msg", 1, b"a", 7, 1, {"correlation_id": "x1"}, 1.0)
    info = store.message("a")
    assert info is not None
    assert (info.state, info.consumer, info.lease_deadline, info.deliveries) == (
        "in_flight",
        "c1",
        12.0,
        1,
    )
    assert info.history == [
        HistoryEntry(1.0, "enqueued", None, ""),
        HistoryEntry(2.0, "delivered", "c1", ""),
    ]
    stats = store.stats()
    assert (stats.ready, stats.in_flight, stats.in_flight_by_consumer) == (0, 1, {"c1": 1})


def test_lease_rejects_bad_arguments(store: QueueStore) -> None:
    with pytest.raises(ValueError, match="consumer"):
        store.lease("", 1, 0.0, VT)
    with pytest.raises(ValueError, match="visibility_timeout"):
        store.lease("c", 1, 0.0, 0.0)


# --- ack -----------------------------------------------------------------------------------


def test_ack_removes(store: QueueStore) -> None:
    for i in range(3):
        put(store, f"m{i}")
    store.lease("c", 3, 0.0, VT)
    assert store.ack("c", ["m0", "m2"], 1.0) == 2
    assert store.message("m0") is None and store.message("m2") is None
    stats = store.stats()
    assert (stats.in_flight, stats.acked_total, stats.length) == (1, 2, 1)
    assert store.length() == 1


def test_stale_acks_are_ignored_and_counted(store: QueueStore) -> None:
    put(store, "a")
    put(store, "b")
    put(store, "r")
    store.lease("c1", 1, 0.0, VT)  # a
    store.lease("c2", 1, 0.0, VT)  # b
    # another consumer's lease, an unknown id, a ready message
    assert store.ack("c1", ["b", "nope", "r"], 1.0) == 0
    assert store.ack("c1", ["a", "a"], 1.0) == 1  # the repeat is stale
    assert store.ack("c1", ["a"], 1.0) == 0
    stats = store.stats()
    assert (stats.acked_total, stats.stale_acks_total) == (1, 5)
    assert store.message("b") is not None and store.message("r") is not None


# --- nack ----------------------------------------------------------------------------------


def test_nack_requeue_keeps_position_and_priority(store: QueueStore) -> None:
    for msg_id in ["a", "b", "c"]:
        put(store, msg_id, 3)
    assert ids(store.lease("w", 1, 0.0, VT)) == ["a"]
    put(store, "d", 3)
    put(store, "e", 2)
    assert store.nack("w", "a", 1.0, requeue=True, reason="busy") == "requeued"
    assert drain(store, now=2.0) == ["a", "b", "c", "d", "e"]
    info = store.message("a")
    assert info is not None and info.deliveries == 2 and info.priority == 3
    assert events(info.history) == ["enqueued", "delivered", "nacked", "delivered"]
    assert info.history[2] == HistoryEntry(1.0, "nacked", "w", "busy")
    assert store.stats().redelivered_total == 1


def test_nack_reject_dead_letters_with_reason_and_history(store: QueueStore) -> None:
    put(store, "a", 4, now=1.0, headers={"k": "v"})
    store.lease("w", 1, 2.0, VT)
    assert store.nack("w", "a", 3.0, False, "invalid", "field x missing") == "dead_lettered"
    assert store.message("a") is None
    [dl] = store.dead_letters()
    assert (dl.msg_id, dl.type, dl.version, dl.payload, dl.priority, dl.headers) == (
        "a",
        "test.Msg",
        1,
        b"a",
        4,
        {"k": "v"},
    )
    assert (dl.reason, dl.detail, dl.deliveries, dl.enqueued_at, dl.dead_at) == (
        "invalid",
        "field x missing",
        1,
        1.0,
        3.0,
    )
    assert dl.history == [
        HistoryEntry(1.0, "enqueued", None, ""),
        HistoryEntry(2.0, "delivered", "w", ""),
        HistoryEntry(3.0, "nacked", "w", "invalid: field x missing"),
        HistoryEntry(3.0, "dead_lettered", "w", "invalid"),
    ]
    stats = store.stats()
    assert (stats.dead_letters, stats.dead_lettered_total, stats.nacked_total) == (1, 1, 1)
    assert stats.length == 0


def test_nack_reject_without_reason_says_rejected(store: QueueStore) -> None:
    put(store, "a")
    store.lease("w", 1, 0.0, VT)
    assert store.nack("w", "a", 1.0, requeue=False) == "dead_lettered"
    assert store.dead_letters()[0].reason == "rejected"


def test_nack_stale(store: QueueStore) -> None:
    put(store, "a")
    assert store.nack("w", "a", 0.0) == "stale"  # ready, not leased
    store.lease("w", 1, 0.0, VT)
    assert store.nack("other", "a", 0.0) == "stale"
    assert store.nack("w", "unknown", 0.0) == "stale"
    stats = store.stats()
    assert (stats.stale_nacks_total, stats.nacked_total, stats.in_flight) == (3, 0, 1)


def test_max_deliveries_via_nack(store: QueueStore) -> None:
    put(store, "a")
    for attempt in range(1, 3):
        store.lease("w", 1, float(attempt), VT)
        assert store.nack("w", "a", float(attempt), reason="boom") == "requeued"
    store.lease("w", 1, 3.0, VT)
    assert store.nack("w", "a", 3.0, reason="boom") == "dead_lettered"
    [dl] = store.dead_letters()
    assert (dl.reason, dl.detail, dl.deliveries) == ("max_deliveries", "nacked: boom", 3)
    assert events(dl.history) == ["enqueued"] + ["delivered", "nacked"] * 3 + ["dead_lettered"]
    assert dl.history[-1] == HistoryEntry(3.0, "dead_lettered", "w", "max_deliveries")


# --- expiry --------------------------------------------------------------------------------


def test_expire_and_next_expiry(store: QueueStore) -> None:
    assert store.next_expiry() is None
    put(store, "a")
    put(store, "b")
    put(store, "c")
    store.lease("w", 1, 0.0, 10.0)  # a until 10
    store.lease("w", 1, 5.0, 10.0)  # b until 15
    assert store.next_expiry() == 10.0
    assert store.expire(9.999) == []
    assert store.expire(10.0) == ["a"]
    assert store.next_expiry() == 15.0
    info = store.message("a")
    assert info is not None and info.state == "ready" and info.consumer is None
    assert info.history[-1] == HistoryEntry(10.0, "expired", "w", "")
    # expired messages keep their place: a goes before c
    assert ids(store.lease("w2", 2, 11.0, 10.0)) == ["a", "c"]
    stats = store.stats()
    assert (stats.expired_total, stats.redelivered_total) == (1, 1)
    assert stats.in_flight_by_consumer == {"w": 1, "w2": 2}


def test_next_expiry_forgets_acked_leases(store: QueueStore) -> None:
    put(store, "a")
    put(store, "b")
    store.lease("w", 1, 0.0, 10.0)
    store.lease("w", 1, 0.0, 20.0)
    store.ack("w", ["a"], 1.0)
    assert store.next_expiry() == 20.0
    store.ack("w", ["b"], 1.0)
    assert store.next_expiry() is None
    assert store.expire(100.0) == []


def test_overdue_lease_can_be_acked_until_expired(store: QueueStore) -> None:
    put(store, "a")
    store.lease("w", 1, 0.0, 10.0)
    assert store.ack("w", ["a"], 50.0) == 1
    assert store.expire(50.0) == []


def test_max_deliveries_via_expire(store: QueueStore) -> None:
    put(store, "a")
    put(store, "b")
    for attempt in range(3):
        now = attempt * 100.0
        assert ids(store.lease("w", 1, now, 10.0)) == ["a"]
        assert store.expire(now + 10.0) == ["a"]
    assert drain(store, now=500.0) == ["b"]
    [dl] = store.dead_letters()
    assert (dl.msg_id, dl.reason, dl.detail, dl.deliveries, dl.dead_at) == (
        "a",
        "max_deliveries",
        "lease expired",
        3,
        210.0,
    )
    assert events(dl.history) == ["enqueued"] + ["delivered", "expired"] * 3 + ["dead_lettered"]
    stats = store.stats()
    assert (stats.expired_total, stats.dead_lettered_total, stats.redelivered_total) == (3, 1, 2)


def test_expire_handles_several_in_seq_order(store: QueueStore) -> None:
    for msg_id, priority in [("a", 1), ("b", 9), ("c", 5)]:
        put(store, msg_id, priority)
    store.lease("w", 1, 0.0, 30.0)  # b, deadline 30
    store.lease("w", 2, 5.0, 10.0)  # c, a, deadline 15
    assert store.expire(40.0) == ["a", "b", "c"]
    assert store.stats().ready == 3


# --- release and recover -------------------------------------------------------------------


def test_release_returns_a_dead_consumers_leases(store: QueueStore) -> None:
    for i in range(4):
        put(store, f"m{i}")
    store.lease("dead", 2, 0.0, VT)
    store.lease("alive", 1, 0.0, VT)
    assert store.release("dead", 1.0) == ["m0", "m1"]
    assert store.release("dead", 1.0) == []
    assert store.release("nobody", 1.0) == []
    info = store.message("m0")
    assert info is not None and info.state == "ready"
    assert info.history[-1] == HistoryEntry(1.0, "released", "dead", "")
    stats = store.stats()
    assert stats.in_flight_by_consumer == {"alive": 1}
    assert (stats.ready, stats.released_total) == (3, 2)
    assert drain(store, "x", 2.0) == ["m0", "m1", "m3"]


def test_release_applies_max_deliveries(stores: Stores) -> None:
    store = stores.open(StoreLimits(max_length=10, max_deliveries=1, dedupe_window_s=1.0))
    put(store, "a")
    store.lease("w", 1, 0.0, VT)
    assert store.release("w", 1.0) == ["a"]
    [dl] = store.dead_letters()
    assert (dl.reason, dl.detail) == ("max_deliveries", "consumer released")


def test_recover_after_reopen(stores: Stores) -> None:
    store = stores.open()
    for i in range(6):
        put(store, f"m{i}", priority=i % 2, now=1.0)
    store.lease("w1", 2, 2.0, VT)  # m1, m3
    store.lease("w2", 2, 2.0, VT)  # m5, m0
    store.ack("w1", ["m3"], 3.0)
    store.nack("w2", "m0", 3.0, requeue=False, reason="bad")
    put(store, "m1", now=4.0)  # duplicate, counted
    before = store.stats()

    store = stores.reopen(store)
    assert store.stats() == before  # totals, gauges and dead letters survive
    assert store.recover(10.0) == 2
    assert store.recover(10.0) == 0
    stats = store.stats()
    assert (stats.ready, stats.in_flight, stats.released_total) == (4, 0, 2)
    info = store.message("m1")
    assert info is not None and info.deliveries == 1
    assert info.history[-1] == HistoryEntry(10.0, "released", "w1", "queue restarted")
    assert [d.msg_id for d in store.dead_letters()] == ["m0"]
    # the dedupe window and the sequence counter survive too
    assert put(store, "m3", now=11.0) == "duplicate"
    assert put(store, "n1", priority=1, now=11.0) == "accepted"
    assert drain(store, now=12.0) == ["m1", "m5", "n1", "m2", "m4"]


def test_recover_applies_max_deliveries(stores: Stores) -> None:
    store = stores.open(StoreLimits(max_length=10, max_deliveries=1, dedupe_window_s=1.0))
    put(store, "a")
    put(store, "b")
    store.lease("w", 1, 0.0, VT)
    store = stores.reopen(store)
    assert store.recover(1.0) == 1
    [dl] = store.dead_letters()
    assert (dl.msg_id, dl.reason, dl.detail) == ("a", "max_deliveries", "queue restarted")


# --- dedupe and limits ---------------------------------------------------------------------


def test_duplicate_within_window_accepted_after(store: QueueStore) -> None:
    assert put(store, "a", now=0.0) == "accepted"
    assert put(store, "a", now=100.0) == "duplicate"  # still queued
    store.lease("w", 1, 100.0, VT)
    store.ack("w", ["a"], 101.0)
    assert put(store, "a", now=299.9) == "duplicate"  # acked, but within the window
    assert put(store, "a", now=300.0) == "accepted"  # the window has passed
    assert put(store, "a", now=301.0) == "duplicate"  # the window restarts
    stats = store.stats()
    assert (stats.enqueued_total, stats.duplicates_total) == (2, 3)
    assert drain(store, now=302.0) == ["a"]


def test_held_id_is_a_duplicate_after_the_window(store: QueueStore) -> None:
    put(store, "ready", now=0.0)
    put(store, "dead", now=0.0)
    store.lease("w", 1, 0.0, VT)  # ready
    store.lease("w", 1, 0.0, VT)  # dead
    store.nack("w", "ready", 0.0)
    store.nack("w", "dead", 0.0, requeue=False)
    assert put(store, "ready", now=1000.0) == "duplicate"
    assert put(store, "dead", now=1000.0) == "duplicate"
    store.purge_dead_letters(["dead"])
    assert put(store, "dead", now=1000.0) == "accepted"


def test_dead_lettered_within_window_is_a_duplicate(store: QueueStore) -> None:
    put(store, "a")
    store.lease("w", 1, 0.0, VT)
    store.nack("w", "a", 0.0, requeue=False)
    store.purge_dead_letters(None)
    assert put(store, "a", now=10.0) == "duplicate"


def test_dedupe_ids_are_pruned(stores: Stores) -> None:
    store = stores.open(StoreLimits(max_length=1000, max_deliveries=1, dedupe_window_s=10.0))
    store.enqueue_many([NewMessage(f"m{i}", "t", 1, b"") for i in range(50)], 0.0)
    drained = drain(store)
    assert store.ack("c", drained, 1.0) == 50
    assert store.stats().dedupe_ids == 50
    assert put(store, "late", now=9.0) == "accepted"
    assert store.stats().dedupe_ids == 51
    assert put(store, "later", now=10.0) == "accepted"  # prunes everything from t=0
    assert store.stats().dedupe_ids == 2


def test_full_when_max_length_reached(stores: Stores) -> None:
    store = stores.open(StoreLimits(max_length=2, max_deliveries=3, dedupe_window_s=300.0))
    assert put(store, "a") == "accepted"
    assert put(store, "b") == "accepted"
    store.lease("w", 1, 0.0, VT)  # in flight still counts
    assert put(store, "c") == "full"
    assert put(store, "a") == "duplicate"  # duplicate wins over full
    store.ack("w", ["a"], 1.0)
    assert put(store, "c", now=1.0) == "accepted"  # a rejected id is not remembered
    stats = store.stats()
    assert (stats.rejected_total, stats.duplicates_total, stats.enqueued_total) == (1, 1, 3)


def test_enqueue_many_and_batch_ack(stores: Stores) -> None:
    store = stores.open(StoreLimits(max_length=3, max_deliveries=3, dedupe_window_s=300.0))
    results = store.enqueue_many(
        [
            NewMessage("a", "t", 1, b"1", 2, {"h": "1"}),
            ("b", "t", 2, b"2", 9, None),  # a plain tuple is accepted too
            NewMessage("a", "t", 1, b"1"),  # repeated within the batch
            NewMessage("c", "t", 1, b"3"),
            NewMessage("d", "t", 1, b"4"),  # over max_length
        ],
        5.0,
    )
    assert results == ["accepted", "accepted", "duplicate", "accepted", "full"]
    assert store.enqueue_many([], 5.0) == []
    leased = store.lease("w", 10, 6.0, VT)
    assert [(d.msg_id, d.version, d.headers) for d in leased] == [
        ("b", 2, {}),
        ("a", 1, {"h": "1"}),
        ("c", 1, {}),
    ]
    assert store.ack("w", ["a", "b", "c", "x"], 7.0) == 3
    stats = store.stats()
    assert (stats.length, stats.acked_total, stats.stale_acks_total) == (0, 3, 1)


def test_invalid_input_changes_nothing(store: QueueStore) -> None:
    bad_batch: list[NewMessage] = [
        NewMessage("ok", "t", 1, b""),
        NewMessage("bad", "t", 1, b"", 10),
    ]
    with pytest.raises(ValueError, match="priority"):
        store.enqueue_many(bad_batch, 0.0)
    with pytest.raises(ValueError, match="msg_id"):
        store.enqueue("", "t", 1, b"", 0, None, 0.0)
    with pytest.raises(ValueError, match="payload"):
        store.enqueue("x", "t", 1, "text", 0, None, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headers"):
        store.enqueue("x", "t", 1, b"", 0, {"k": 1}, 0.0)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="priority"):
        store.enqueue("x", "t", 1, b"", -1, None, 0.0)
    with pytest.raises(ValueError, match="tuples"):
        store.enqueue_many([("x", "t", 1, b"")], 0.0)  # type: ignore[list-item]
    assert store.stats() == MemoryStore(LIMITS).stats()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_length": 0},
        {"max_deliveries": 0},
        {"dedupe_window_s": -1.0},
        {"dedupe_window_s": float("nan")},
        {"max_length": 1.5},
    ],
)
def test_limits_reject_invalid(bad: dict[str, float]) -> None:
    fields: dict[str, float] = {"max_length": 10, "max_deliveries": 1, "dedupe_window_s": 0.0}
    with pytest.raises(ValueError):
        StoreLimits(**{**fields, **bad})  # type: ignore[arg-type]


# --- dead letters --------------------------------------------------------------------------


def kill(store: QueueStore, msg_id: str, now: float = 0.0, priority: int = 0) -> None:
    put(store, msg_id, priority, now)
    leased = store.lease("w", 1, now, VT)
    assert ids(leased) == [msg_id], "the store must be otherwise empty"
    assert store.nack("w", msg_id, now, requeue=False) == "dead_lettered"


def test_replay_all(store: QueueStore) -> None:
    kill(store, "x", priority=5)
    kill(store, "y", priority=5)
    put(store, "newer", 5)
    assert store.replay(None, 10.0) == 2
    assert store.dead_letters() == []
    # replayed messages go to the back of their priority, in dead-letter order
    leased = store.lease("w", 10, 11.0, VT)
    assert ids(leased) == ["newer", "x", "y"]
    assert [(d.deliveries, d.enqueued_at) for d in leased[1:]] == [(1, 10.0), (1, 10.0)]
    info = store.message("x")
    assert info is not None
    assert events(info.history) == [
        "enqueued",
        "delivered",
        "nacked",
        "dead_lettered",
        "replayed",
        "delivered",
    ]
    assert info.history[4] == HistoryEntry(10.0, "replayed", None, "")
    assert store.stats().replayed_total == 2


def test_replay_by_ids_in_given_order_ignoring_max_length(stores: Stores) -> None:
    store = stores.open(StoreLimits(max_length=1, max_deliveries=3, dedupe_window_s=300.0))
    for msg_id in ["a", "b", "c"]:
        kill(store, msg_id)
    put(store, "live")
    assert store.replay(["c", "nope", "a", "c"], 1.0) == 2
    assert [d.msg_id for d in store.dead_letters()] == ["b"]
    assert store.stats().length == 3  # over max_length: an operator decided
    assert put(store, "more") == "full"
    assert drain(store, now=2.0) == ["live", "c", "a"]


def test_purge_dead_letters(store: QueueStore) -> None:
    for msg_id in ["a", "b", "c", "d"]:
        kill(store, msg_id)
    assert store.purge_dead_letters(["b", "zz", "b"]) == 1
    assert [d.msg_id for d in store.dead_letters()] == ["a", "c", "d"]
    assert store.purge_dead_letters([]) == 0
    assert store.purge_dead_letters(None) == 3
    assert store.dead_letters() == []
    assert store.stats().dead_lettered_total == 4


def test_dead_letters_pages_oldest_first(store: QueueStore) -> None:
    for i in range(5):
        kill(store, f"m{i}", now=float(i))
    assert [d.msg_id for d in store.dead_letters(limit=2)] == ["m0", "m1"]
    assert [d.msg_id for d in store.dead_letters(limit=2, offset=3)] == ["m3", "m4"]
    assert store.dead_letters(limit=0) == []
    assert store.dead_letters(offset=10) == []


def test_add_dead_letter(store: QueueStore) -> None:
    assert store.add_dead_letter(
        "u1", "test.Msg", 2, b"p", 3, {"target": "x"}, "undeliverable", "x was gone", 4.0
    )
    put(store, "live")
    assert not store.add_dead_letter("u1", "t", 1, b"", 0, None, "r", "", 5.0)
    assert not store.add_dead_letter("live", "t", 1, b"", 0, None, "r", "", 5.0)
    [dl] = store.dead_letters()
    assert (dl.msg_id, dl.version, dl.payload, dl.priority, dl.headers) == (
        "u1",
        2,
        b"p",
        3,
        {"target": "x"},
    )
    assert (dl.reason, dl.detail, dl.deliveries, dl.dead_at) == (
        "undeliverable",
        "x was gone",
        0,
        4.0,
    )
    assert dl.history == [HistoryEntry(4.0, "dead_lettered", None, "undeliverable")]
    assert store.stats().dead_lettered_total == 1
    assert store.replay(["u1"], 6.0) == 1
    assert drain(store, now=7.0) == ["u1", "live"]


def test_dead_letter_history_through_expiry_nack_and_release(store: QueueStore) -> None:
    put(store, "a", now=1.0)
    store.lease("w1", 1, 2.0, 5.0)
    store.expire(7.0)
    store.lease("w2", 1, 8.0, 5.0)
    store.nack("w2", "a", 9.0, reason="retry later")
    store.lease("w3", 1, 10.0, 5.0)
    store.release("w3", 11.0)
    [dl] = store.dead_letters()
    assert dl.history == [
        HistoryEntry(1.0, "enqueued", None, ""),
        HistoryEntry(2.0, "delivered", "w1", ""),
        HistoryEntry(7.0, "expired", "w1", ""),
        HistoryEntry(8.0, "delivered", "w2", ""),
        HistoryEntry(9.0, "nacked", "w2", "retry later"),
        HistoryEntry(10.0, "delivered", "w3", ""),
        HistoryEntry(11.0, "released", "w3", ""),
        HistoryEntry(11.0, "dead_lettered", "w3", "max_deliveries"),
    ]
    assert dl.as_dict()["history"][-1] == {
        "at": 11.0,
        "event": "dead_lettered",
        "consumer": "w3",
        "detail": "max_deliveries",
    }


# --- stats ---------------------------------------------------------------------------------


def test_stats_fields(store: QueueStore) -> None:
    for msg_id, priority in [("a", 9), ("b", 9), ("c", 1), ("d", 0), ("e", 0)]:
        put(store, msg_id, priority)
    put(store, "a")  # duplicate
    store.lease("w1", 1, 0.0, 10.0)  # a
    store.lease("w2", 2, 0.0, 10.0)  # b, c
    store.ack("w2", ["b", "zz"], 1.0)
    store.nack("w2", "c", 1.0, requeue=False)
    store.expire(10.0)  # a
    store.lease("w1", 1, 11.0, 10.0)  # a again
    stats = store.stats()
    assert stats.depth_by_priority == {0: 2, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0}
    assert stats.as_dict() == {
        "ready": 2,
        "in_flight": 1,
        "dead_letters": 1,
        "depth_by_priority": stats.depth_by_priority,
        "in_flight_by_consumer": {"w1": 1},
        "dedupe_ids": 5,
        "enqueued_total": 5,
        "acked_total": 1,
        "nacked_total": 1,
        "redelivered_total": 1,
        "expired_total": 1,
        "released_total": 0,
        "duplicates_total": 1,
        "rejected_total": 0,
        "dead_lettered_total": 1,
        "replayed_total": 0,
        "stale_acks_total": 1,
        "stale_nacks_total": 0,
        "length": 3,
    }


# --- SQLite specifics ----------------------------------------------------------------------


@pytest.mark.parametrize(("fsync", "level"), [("always", 2), ("normal", 1), ("off", 0)])
def test_sqlite_pragmas(tmp_path: Path, fsync: _store.FsyncMode, level: int) -> None:
    with SqliteStore(tmp_path / "q.db", LIMITS, fsync=fsync) as store:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert db.isolation_level is None


def test_sqlite_rejects_unknown_fsync(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        SqliteStore(tmp_path / "q.db", LIMITS, fsync="sometimes")  # type: ignore[arg-type]


def test_sqlite_failed_call_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(tmp_path / "q.db", LIMITS)
    put(store, "a")
    real = _store._history_line
    calls = 0

    def failing(*args: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("disk on fire")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_store, "_history_line", failing)
    batch = [NewMessage("b", "t", 1, b""), NewMessage("c", "t", 1, b"")]
    with pytest.raises(RuntimeError):
        store.enqueue_many(batch, 1.0)
    monkeypatch.undo()
    assert store.length() == 1 and store.message("b") is None
    assert store.stats().enqueued_total == 1
    assert store.enqueue_many(batch, 1.0) == ["accepted", "accepted"]
    store.close()
    with SqliteStore(tmp_path / "q.db", LIMITS) as again:
        assert again.length() == 3 and again.stats().enqueued_total == 3
        assert drain(again) == ["a", "b", "c"]


def test_sqlite_refuses_other_schema_versions(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "q.db", LIMITS).close()
    with sqlite3.connect(tmp_path / "q.db") as db:
        db.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    with pytest.raises(sqlite3.DatabaseError, match="schema 99"):
        SqliteStore(tmp_path / "q.db", LIMITS)


def test_close_is_idempotent(store: QueueStore) -> None:
    store.close()
    store.close()


# --- both stores agree ---------------------------------------------------------------------

IDS = [f"m{i}" for i in range(8)]  # few ids and consumers: settling often hits a lease
CONSUMERS = ["c1", "c2"]
SMALL = StoreLimits(max_length=4, max_deliveries=2, dedupe_window_s=10.0)
OUTCOMES = ["ack", "requeue", "reject"]


class Twins:
    """A MemoryStore and a SqliteStore driven alike; every result must be equal."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "twin.db"
        self.memory = MemoryStore(SMALL)
        self.sqlite = SqliteStore(self.path, SMALL, fsync="off")
        self.now = 0.0
        self.held: list[tuple[str, str]] = []  # (consumer, msg_id) leased, maybe stale now

    def both(self, op: Callable[[QueueStore], T]) -> T:
        expected = op(self.memory)
        actual = op(self.sqlite)
        assert actual == expected
        return expected

    def tick(self, dt: float, expire: bool) -> None:
        self.now += dt
        if expire:
            self.both(lambda s: s.expire(self.now))

    def enqueue(self, msg_id: str, priority: int, tagged: bool) -> None:
        headers = {"correlation_id": msg_id} if tagged else None
        payload = msg_id.encode()
        self.both(lambda s: s.enqueue(msg_id, "t", 1, payload, priority, headers, self.now))

    def enqueue_many(self, batch: list[tuple[str, int]]) -> None:
        items = [NewMessage(i, "t", 2, i.encode() * 2, p) for i, p in batch]
        self.both(lambda s: s.enqueue_many(items, self.now))

    def lease(self, consumer: str, n: int, vt: float) -> None:
        leased = self.both(lambda s: s.lease(consumer, n, self.now, vt))
        self.held += [(consumer, d.msg_id) for d in leased]

    def settle(self, pick: int, outcome: str, reason: str) -> None:
        """Settle one lease handed out before (stale if it was taken back meanwhile)."""
        if not self.held:
            return
        consumer, msg_id = self.held.pop(pick % len(self.held))
        self.settle_any(consumer, msg_id, outcome, reason)

    def settle_any(self, consumer: str, msg_id: str, outcome: str, reason: str) -> None:
        if outcome == "ack":
            self.both(lambda s: s.ack(consumer, [msg_id], self.now))
        else:
            requeue = outcome == "requeue"
            self.both(lambda s: s.nack(consumer, msg_id, self.now, requeue, reason, "why"))

    def release(self, consumer: str) -> None:
        self.both(lambda s: s.release(consumer, self.now))

    def recover(self) -> None:
        self.both(lambda s: s.recover(self.now))

    def replay(self, msg_ids: list[str] | None) -> None:
        self.both(lambda s: s.replay(msg_ids, self.now))

    def purge(self, msg_ids: list[str] | None) -> None:
        self.both(lambda s: s.purge_dead_letters(msg_ids))

    def add_dead_letter(self, msg_id: str, reason: str) -> None:
        headers = {"a": "b"}
        self.both(
            lambda s: s.add_dead_letter(
                msg_id, "t", 3, b"d", 4, headers, reason, "detail", self.now
            )
        )

    def reopen(self) -> None:
        self.sqlite.close()
        self.sqlite = SqliteStore(self.path, SMALL, fsync="off")

    def check(self) -> None:
        self.both(lambda s: s.stats())
        self.both(lambda s: s.length())
        self.both(lambda s: s.next_expiry())
        self.both(lambda s: s.dead_letters(limit=1000))
        self.both(lambda s: [s.message(i) for i in IDS])
        stats = self.memory.stats()
        assert stats.ready == sum(stats.depth_by_priority.values())
        assert stats.in_flight == sum(stats.in_flight_by_consumer.values())

    def close(self) -> None:
        self.sqlite.close()


ids_or_all = st.none() | st.lists(st.sampled_from(IDS), max_size=3)


class SameBehaviour(RuleBasedStateMachine):
    """Random operation sequences (shrunk on failure) give the same results in both stores."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="queue-store-"))
        self.twins = Twins(self.dir)

    @rule(dt=st.sampled_from([0.0, 1.0, 2.5, 10.0]), expire=st.booleans())
    def tick(self, dt: float, expire: bool) -> None:
        """Time passes (10.0 is exactly the dedupe window); the owner may expire leases."""
        self.twins.tick(dt, expire)

    @rule(msg_id=st.sampled_from(IDS), priority=st.integers(0, 9), tagged=st.booleans())
    def enqueue(self, msg_id: str, priority: int, tagged: bool) -> None:
        self.twins.enqueue(msg_id, priority, tagged)

    @rule(
        batch=st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 9)), min_size=1, max_size=5)
    )
    def enqueue_many(self, batch: list[tuple[str, int]]) -> None:
        self.twins.enqueue_many(batch)

    @rule(
        consumer=st.sampled_from(CONSUMERS),
        n=st.integers(1, 4),
        vt=st.sampled_from([1.0, 2.5, 10.0]),
    )
    def lease(self, consumer: str, n: int, vt: float) -> None:
        self.twins.lease(consumer, n, vt)

    @precondition(lambda self: self.twins.held)
    @rule(
        pick=st.integers(0, 100),
        outcome=st.sampled_from(OUTCOMES),
        reason=st.sampled_from(["", "boom"]),
    )
    def settle(self, pick: int, outcome: str, reason: str) -> None:
        self.twins.settle(pick, outcome, reason)

    @rule(
        consumer=st.sampled_from(CONSUMERS),
        msg_id=st.sampled_from(IDS),
        outcome=st.sampled_from(OUTCOMES),
    )
    def stray_settle(self, consumer: str, msg_id: str, outcome: str) -> None:
        """Settling whatever: mostly stale (not leased, or leased by the other consumer)."""
        self.twins.settle_any(consumer, msg_id, outcome, "stray")

    @rule(consumer=st.sampled_from(CONSUMERS))
    def release(self, consumer: str) -> None:
        self.twins.release(consumer)

    @rule()
    def recover(self) -> None:
        self.twins.recover()

    @rule(msg_ids=ids_or_all)
    def replay(self, msg_ids: list[str] | None) -> None:
        self.twins.replay(msg_ids)

    @rule(msg_ids=ids_or_all)
    def purge(self, msg_ids: list[str] | None) -> None:
        self.twins.purge(msg_ids)

    @rule(msg_id=st.sampled_from(IDS), reason=st.sampled_from(["undeliverable", "x"]))
    def add_dead_letter(self, msg_id: str, reason: str) -> None:
        self.twins.add_dead_letter(msg_id, reason)

    @rule()
    def reopen(self) -> None:
        self.twins.reopen()

    @invariant()
    def same_state(self) -> None:
        self.twins.check()

    def teardown(self) -> None:
        self.twins.close()
        shutil.rmtree(self.dir, ignore_errors=True)


SameBehaviour.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_memory_and_sqlite_agree = SameBehaviour.TestCase


@pytest.mark.parametrize("seed", range(8))
def test_memory_and_sqlite_agree_on_long_random_runs(seed: int, tmp_path: Path) -> None:
    """Long seeded walks weighted towards the busy path, which short hypothesis runs seldom
    reach deeply: many leases settled, redelivered, expired and dead-lettered."""
    rng = random.Random(seed)
    twins = Twins(tmp_path)
    ops: list[tuple[int, Callable[[], None]]] = [
        (6, lambda: twins.enqueue(rng.choice(IDS), rng.randrange(10), rng.random() < 0.3)),
        (2, lambda: twins.enqueue_many([(rng.choice(IDS), rng.randrange(3)) for _ in range(3)])),
        (6, lambda: twins.lease(rng.choice(CONSUMERS), rng.randint(1, 3), rng.choice([1.0, 4.0]))),
        (8, lambda: twins.settle(rng.randrange(100), rng.choice(OUTCOMES), rng.choice(["", "x"]))),
        (1, lambda: twins.settle_any(rng.choice(CONSUMERS), rng.choice(IDS), "ack", "")),
        (4, lambda: twins.tick(rng.choice([0.5, 1.0, 2.5]), rng.random() < 0.7)),
        (1, lambda: twins.release(rng.choice(CONSUMERS))),
        (1, twins.recover),
        (1, lambda: twins.replay(rng.choice([None, rng.sample(IDS, 2)]))),
        (1, lambda: twins.purge(rng.choice([None, rng.sample(IDS, 2)]))),
        (1, lambda: twins.add_dead_letter(rng.choice(IDS), "undeliverable")),
        (1, twins.reopen),
    ]
    weights = [w for w, _ in ops]
    try:
        for _ in range(400):
            rng.choices(ops, weights)[0][1]()
            twins.check()
        stats = twins.memory.stats()
        assert stats.acked_total and stats.redelivered_total and stats.dead_lettered_total
    finally:
        twins.close()


# --- micro-benchmark (prints, asserts nothing about speed) ---------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_micro_benchmark(kind: str, tmp_path: Path) -> None:
    """enqueue_many + lease + ack of 10,000 messages in batches of 100 (run with -s)."""
    n, batch = 10_000, 100
    limits = StoreLimits(max_length=n, max_deliveries=5, dedupe_window_s=300.0)
    store: QueueStore = (
        MemoryStore(limits) if kind == "memory" else SqliteStore(tmp_path / "b.db", limits)
    )
    items = [
        NewMessage(f"m{i}", "bench.Msg", 1, b"x" * 200, i % 10, {"correlation_id": str(i)})
        for i in range(n)
    ]
    start = time.perf_counter()
    for i in range(0, n, batch):
        store.enqueue_many(items[i : i + batch], 1.0)
    enqueued = time.perf_counter()
    acked = 0
    while leased := store.lease("bench", batch, 2.0, VT):
        acked += store.ack("bench", [d.msg_id for d in leased], 3.0)
    done = time.perf_counter()
    store.close()
    assert acked == n
    print(
        f"\n[queue store {kind}, fsync=normal] enqueue_many {n / (enqueued - start):,.0f}/s, "
        f"lease+ack {n / (done - enqueued):,.0f}/s, end to end {n / (done - start):,.0f} msgs/s"
    )
