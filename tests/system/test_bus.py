"""The event bus end to end on the tcp transport: wildcard routing, ordering, slow and
crashing subscribers, host subscriptions, durable subscriptions, content-based routing
and bad input. Every subscriber is its own process (actors from ``busactors``).

Nothing here sleeps in place of synchronisation: tests poll an observable condition
(what a subscriber recorded, ``bus_stats``, the tree, a file) against a deadline.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from busactors import (
    Burst,
    Destinations,
    GetSeen,
    Order,
    Other,
    Purchase,
    Purchases,
    Release,
    Released,
    Seen,
)

from callboard import CallboardError, Message, RemoteError, System
from callboard._system_messaging import Subscription
from callboard.bus import InvalidTopic
from callboard.observability.metrics import parse_exposition

from conftest import StartSystem

T = TypeVar("T")

COLLECTOR = "busactors:Collector"


# -- helpers -------------------------------------------------------------------------------


def wait_for(
    what: str,
    check: Callable[[], T],
    until: Callable[[T], object] = bool,
    timeout: float = 10.0,
) -> T:
    """Poll ``check`` until ``until`` holds for what it returns (which is then returned),
    or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if until(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {got!r}")
        time.sleep(0.02)


def collector(actor_id: str, pattern: str, actor: str = COLLECTOR, **args: Any) -> dict[str, Any]:
    return {"id": actor_id, "actor": actor, "args": {"pattern": pattern, **args}}


def seen(system: System, actor_id: str) -> Seen:
    reply = system.ask(actor_id, GetSeen(), timeout=5)
    assert isinstance(reply, Seen)
    return reply


def seqs(system: System, actor_id: str) -> list[int]:
    return [g.seq for g in seen(system, actor_id).items]


def wait_seqs(system: System, actor_id: str, expected: list[int], timeout: float = 10.0) -> None:
    """Wait until ``actor_id`` has recorded (at least) as many events as ``expected``, then
    check they are exactly those (duplicates count). Not their order: that is what
    ``test_each_subscriber_gets_events_in_publication_order`` checks, so that a delivery
    order bug fails that test alone."""
    got = wait_for(
        f"{actor_id} to record {len(expected)} events",
        lambda: seqs(system, actor_id),
        lambda s: len(s) >= len(expected),
        timeout,
    )
    assert sorted(got) == sorted(expected)


def subscriptions(system: System) -> dict[str, dict[str, Any]]:
    subs: dict[str, dict[str, Any]] = system.bus_stats()["subscriptions"]
    return subs


def wait_subscribed(system: System, *sub_ids: str) -> None:
    """Actors subscribe with a tell from ``on_start``: wait until the bus has them all."""
    wait_for(f"subscriptions {sub_ids}", lambda: set(sub_ids) <= set(subscriptions(system)))


def drain(sub: Subscription, n: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
    """The next ``n`` events of a host subscription (fails if they do not all come)."""
    deadline = time.monotonic() + timeout
    out: list[tuple[str, Any]] = []
    while len(out) < n:
        left = deadline - time.monotonic()
        got = sub.get(max(left, 0.0)) if left > 0 else None
        if got is None:
            raise AssertionError(f"host subscription got {len(out)} of {n} events: {out[-3:]}")
        out.append(got)
    return out


# -- 1. wildcard routing -------------------------------------------------------------------

PATTERNS = {
    "star": "orders.*.created",
    "hash": "orders.#",
    "suffix": "#.created",
    "exact": "orders.eu",
}
TOPICS: dict[str, set[str]] = {  # topic -> the PATTERNS keys that match it
    "orders.eu.created": {"star", "hash", "suffix"},
    "orders.us.created": {"star", "hash", "suffix"},
    "orders.eu": {"hash", "exact"},
    "orders": {"hash"},  # '#' matches zero segments
    "orders.eu.created.late": {"hash"},
    "orders.eu.x.created": {"hash", "suffix"},  # '*' is exactly one segment
    "orders.eu.shipped": {"hash"},
    "created": {"suffix"},
    "invoices.eu.created": {"suffix"},
    "ordersx.eu.created": {"suffix"},
    "shipping.eu": set(),
    "eu.orders": set(),
}


def test_wildcard_patterns_get_exactly_the_matching_events(start_system: StartSystem) -> None:
    system = start_system(
        [collector(f"sub_{key}", pattern) for key, pattern in PATTERNS.items()],
        bus={"enabled": True, "system_events": False},  # so that "published" is ours only
    )
    wait_subscribed(system, *(f"sub_{key}:{pattern}" for key, pattern in PATTERNS.items()))
    hosts = {key: system.subscribe(pattern) for key, pattern in PATTERNS.items()}

    for seq, (topic, keys) in enumerate(TOPICS.items()):
        reached = system.publish(topic, Order(seq=seq, origin=topic))
        assert reached == 2 * len(keys), topic  # one actor and one host subscription each

    for key, pattern in PATTERNS.items():
        expected = [(t, i) for i, (t, keys) in enumerate(TOPICS.items()) if key in keys]
        wait_seqs(system, f"sub_{key}", [i for _, i in expected])
        assert sorted((g.seq, g.topic) for g in seen(system, f"sub_{key}").items) == sorted(
            (i, t) for t, i in expected
        )
        got = drain(hosts[key], len(expected))
        assert [(t, e.seq) for t, e in got] == expected, pattern
        assert all(isinstance(e, Order) and e.origin == t for t, e in got)
    # Nothing else is on its way: the bus offered each subscription exactly those events.
    stats = subscriptions(system)
    for key, pattern in PATTERNS.items():
        want = sum(key in keys for keys in TOPICS.values())
        assert stats[f"sub_{key}:{pattern}"]["offered"] == want
        assert stats[hosts[key].sub_id]["offered"] == want
    assert system.bus_stats()["published"] == len(TOPICS)


# -- 2. per-subscriber ordering ------------------------------------------------------------


def out_of_order(received: list[int]) -> list[tuple[int, int]]:
    """Adjacent pairs ``(a, b)`` of ``received`` where ``b`` does not follow ``a``."""
    return [(a, b) for a, b in pairwise(received) if b != a + 1]


def test_each_subscriber_gets_events_in_publication_order(start_system: StartSystem) -> None:
    n = 500
    system = start_system(
        [collector("ordered", "seq.#"), {"id": "publisher", "actor": "busactors:Publisher"}],
        bus={"enabled": True, "buffer": 4 * n},
    )
    wait_subscribed(system, "ordered:seq.#")
    host = system.subscribe("seq.#")

    # The actor publishes its 500 from one handler while the host publishes its own (each
    # publish() returns before the next: the bus gets them in this order).
    system.tell("publisher", Burst(topic="seq.actor", n=n, origin="actor"))
    for i in range(n):
        assert system.publish("seq.host", Order(seq=i, origin="host")) == 2

    # The host subscription (polled) shows the order the bus holds them in...
    got = drain(host, 2 * n, timeout=20)
    for origin in ("host", "actor"):
        mine = [(t, e.seq) for t, e in got if e.origin == origin]
        assert mine == [(f"seq.{origin}", i) for i in range(n)], origin
    # ... and the actor subscriber (pushed batches) must see the same.
    items = wait_for(
        "the actor subscriber to get 1000 events",
        lambda: seen(system, "ordered").items,
        lambda s: len(s) >= 2 * n,
        timeout=20,
    )
    assert len(items) == 2 * n
    for origin in ("host", "actor"):
        received = [g.seq for g in items if g.origin == origin]
        assert sorted(received) == list(range(n)), origin  # all there, once
        assert out_of_order(received) == [], f"{origin} events out of order"
        assert {g.topic for g in items if g.origin == origin} == {f"seq.{origin}"}
    assert host.dropped == 0
    assert all(s["dropped"] == 0 for s in subscriptions(system).values())


# -- 3. slow subscribers: the overflow policies --------------------------------------------

SLOW = "slow:flood.#"
FAST = "fast:flood.#"


def slow_and_fast(start_system: StartSystem, overflow: str) -> System:
    """A fast subscriber and a parked one (buffer 5, ``overflow``) on ``flood.#``; the bus
    window is 2, so the slow one holds 2 events in flight and 5 waiting before it is full."""
    system = start_system(
        [
            collector("slow", "flood.#", "busactors:Sluggish", buffer=5, overflow=overflow),
            collector("fast", "flood.#"),
        ],
        bus={"enabled": True, "window": 2},
    )
    wait_subscribed(system, SLOW, FAST)
    return system


def release(system: System, parked: int) -> None:
    reply = system.ask("slow", Release(), timeout=5)
    assert isinstance(reply, Released) and reply.count == parked


def test_drop_oldest_keeps_the_bus_going_and_counts_the_drops(start_system: StartSystem) -> None:
    system = slow_and_fast(start_system, "drop_oldest")
    host = system.subscribe("flood.#", buffer=5, overflow="drop_oldest")  # never polled yet
    for i in range(30):
        assert system.publish("flood.a", Order(seq=i)) == 3
    wait_seqs(system, "fast", list(range(30)))
    wait_seqs(system, "slow", [0, 1])  # parked on the two it was sent

    stats = subscriptions(system)
    slow = stats[SLOW]
    assert (slow["in_flight"], slow["depth"], slow["dropped"]) == (2, 5, 23)
    assert stats[FAST]["dropped"] == 0 and stats[FAST]["delivered"] == 30
    assert stats[host.sub_id]["dropped"] == 25

    # The host subscription kept the newest 5, and says how many it lost.
    assert [e.seq for _, e in drain(host, 5)] == [25, 26, 27, 28, 29]
    assert host.dropped == 25
    assert host.get(0.2) is None

    # Unblocked, the slow subscriber gets what its buffer kept, then later events.
    release(system, parked=2)
    wait_seqs(system, "slow", [0, 1, 25, 26, 27, 28, 29])
    for i in range(30, 33):
        assert system.publish("flood.b", Order(seq=i)) == 3
    wait_seqs(system, "slow", [0, 1, 25, 26, 27, 28, 29, 30, 31, 32])
    wait_seqs(system, "fast", list(range(33)))
    assert subscriptions(system)[SLOW]["dropped"] == 23


def test_reject_refuses_the_publisher_once_full(start_system: StartSystem) -> None:
    system = slow_and_fast(start_system, "reject")
    for i in range(7):  # 2 in flight + 5 waiting
        assert system.publish("flood.a", Order(seq=i)) == 2
    for i in (7, 8):
        with pytest.raises(RemoteError) as info:
            system.publish("flood.a", Order(seq=i))
        assert info.value.code == "subscriber_full"
        assert info.value.details["subscriptions"] == [SLOW]
    # The other subscriber got the refused events all the same.
    wait_seqs(system, "fast", list(range(9)))
    stats = subscriptions(system)[SLOW]
    assert (stats["in_flight"], stats["depth"], stats["rejected"]) == (2, 5, 2)

    release(system, parked=2)
    wait_seqs(system, "slow", list(range(7)))
    wait_for("the slow buffer to drain", lambda: subscriptions(system)[SLOW]["depth"] == 0)
    assert system.publish("flood.a", Order(seq=9)) == 2
    wait_seqs(system, "slow", [*range(7), 9])


def test_dead_letter_files_overflowed_events(start_system: StartSystem) -> None:
    system = slow_and_fast(start_system, "dead_letter")
    for i in range(12):
        assert system.publish("flood.a", Order(seq=i)) == 2
    wait_seqs(system, "fast", list(range(12)))
    assert subscriptions(system)[SLOW]["dead_lettered"] == 5

    letters = wait_for(
        "5 dead letters",
        lambda: system.dead_letters("dead_letters"),
        lambda d: len(d) >= 5,
    )
    assert len(letters) == 5
    assert sorted(d["data"]["seq"] for d in letters) == [7, 8, 9, 10, 11]
    assert {d["reason"] for d in letters} == {"subscriber_full"}
    assert {d["type"] for d in letters} == {Order.type_name}
    assert all(SLOW in d["detail"] for d in letters)

    release(system, parked=2)
    wait_seqs(system, "slow", list(range(7)))


# -- 4. a crashing subscriber --------------------------------------------------------------


def test_a_crashed_subscriber_is_restarted_and_gets_later_events(start_system: StartSystem) -> None:
    crashy = collector("crashy", "crash.#", "busactors:Crashy")
    crashy["backoff"] = {"min": 1.0, "max": 1.0, "jitter": 0.0}  # down for a second
    system = start_system([crashy, collector("steady", "crash.#")], bus={"enabled": True})
    sub_id = "crashy:crash.#"
    wait_subscribed(system, sub_id, "steady:crash.#")
    first_pid = seen(system, "crashy").pid
    bus_pid = system.directory()["bus"]

    assert system.publish("crash.ok", Order(seq=0)) == 2
    wait_seqs(system, "crashy", [0])
    assert system.publish("crash.boom", Order(seq=1, tag="boom")) == 2

    # The bus learns it is down (what it held is lost) and keeps what comes meanwhile.
    wait_for(
        "the bus to see crashy down",
        lambda: subscriptions(system)[sub_id],
        lambda s: not s["connected"] and s["lost"] >= 1 and s["in_flight"] == 0,
    )
    for i in (2, 3):
        assert system.publish("crash.meanwhile", Order(seq=i)) == 2
    assert subscriptions(system)[sub_id]["depth"] == 2
    wait_seqs(system, "steady", [0, 1, 2, 3])  # the bus serves the others all along

    def restarted() -> Seen | None:
        try:
            reply = system.ask("crashy", GetSeen(), timeout=2)
        except CallboardError:
            return None
        assert isinstance(reply, Seen)
        return reply if reply.pid != first_pid else None

    wait_for("crashy to restart", restarted)
    # It subscribed again in on_start: it gets what was published while it was down...
    wait_seqs(system, "crashy", [2, 3])
    # ... and what comes next.
    for i in (4, 5):
        assert system.publish("crash.ok", Order(seq=i)) == 2
    wait_seqs(system, "crashy", [2, 3, 4, 5])
    wait_seqs(system, "steady", [0, 1, 2, 3, 4, 5])

    (row,) = [c for c in system.which_children() if c["id"] == "crashy"]
    assert row["restarts"] == 1
    assert system.directory()["bus"] == bus_pid  # the bus itself never went down
    stats = subscriptions(system)[sub_id]
    assert stats["connected"] and stats["dropped"] == 0 and stats["depth"] == 0


# -- 5. host subscription with a callback --------------------------------------------------


def test_a_host_callback_runs_on_its_own_thread_until_closed(start_system: StartSystem) -> None:
    system = start_system([], bus={"enabled": True})
    got: list[tuple[str, int, str]] = []
    nine = threading.Event()

    def on_event(topic: str, event: Any) -> None:
        if event.tag == "bad":
            raise ValueError("a callback failing on purpose")
        got.append((topic, event.seq, threading.current_thread().name))
        if len(got) == 9:
            nine.set()

    sub = system.subscribe("cb.#", callback=on_event)
    for i in range(10):
        assert system.publish(f"cb.n{i}", Order(seq=i, tag="bad" if i == 4 else "")) == 1
    assert nine.wait(10), got
    assert [(t, s) for t, s, _ in got] == [(f"cb.n{i}", i) for i in range(10) if i != 4]
    threads = {name for *_, name in got}
    assert threads == {"callboard-sub-cb.#"} and threading.current_thread().name not in threads
    wait_for("the failed callback to be counted", lambda: sub.callback_errors == 1)

    sub.close()
    assert sub.closed
    assert not any(t.name == "callboard-sub-cb.#" for t in threading.enumerate())
    wait_for("the bus to forget it", lambda: sub.sub_id not in subscriptions(system))
    assert system.publish("cb.late", Order(seq=99)) == 0
    sub.close()  # again: a no-op
    assert sub.closed and len(got) == 9 and sub.get(0) is None

    # One left open is closed by System.stop, and its thread ends.
    left_open = system.subscribe("cb2.#", callback=on_event)
    system.stop()
    assert left_open.closed
    wait_for(
        "the callback thread to end",
        lambda: not any(t.name == "callboard-sub-cb2.#" for t in threading.enumerate()),
    )
    left_open.close()  # after stop: still fine


# -- 6. durable subscription ---------------------------------------------------------------


def test_a_durable_subscription_delivers_what_was_published_while_down(
    start_system: StartSystem, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    out = tmp_path / "audit.txt"
    out.touch()
    auditor = {
        "id": "auditor", "actor": "busactors:Auditor", "args": {"out": str(out)},
        # Restarted a second after it dies: long enough to publish while it is surely down.
        "backoff": {"min": 1.0, "max": 1.0, "jitter": 0.0},
    }  # fmt: skip
    system = start_system(
        [auditor],
        queues={"audit": {"durable": True, "path": str(tmp_path / "audit.sqlite")}},
        bus={"enabled": True, "durable": {"audit": {"pattern": "audit.#"}}},
    )

    def written() -> list[tuple[int, int]]:
        lines = out.read_text().split("\n")[:-1]  # the last piece may be being written
        return [(int(p), int(s)) for p, s in (line.split() for line in lines if line)]

    def wait_all(n: int) -> list[tuple[int, int]]:
        return wait_for(
            f"seqs 0..{n - 1} in the audit file",
            written,
            lambda w: {s for _, s in w} == set(range(n)),
            timeout=20,
        )

    for i in range(5):
        assert system.publish(f"audit.e{i % 2}", Order(seq=i)) == 1  # the durable one
    assert system.publish("other.e", Order(seq=-1)) == 0
    before = wait_all(5)
    (first_pid,) = {p for p, _ in before}

    assert system.kill("auditor") == first_pid
    for i in range(5, 10):  # before its supervisor noticed: sent to a dead consumer
        assert system.publish("audit.later", Order(seq=i)) == 1
    wait_for("the auditor to be down", lambda: system.directory()["auditor"] is None)
    for i in range(10, 25):  # while it waits for its restart: they wait in the queue
        assert system.publish("audit.later", Order(seq=i)) == 1
    assert system.directory()["auditor"] is None, "published while the consumer was down"
    after = wait_all(25)
    wait_for(
        "the audit queue to settle",
        lambda: system.queue_stats("audit"),
        lambda q: q["ready"] == 0 and q["in_flight"] == 0,
    )

    writers = {p for p, s in after if s >= 5}
    assert first_pid not in writers and len(writers) == 1
    counts = Counter(s for _, s in after)
    duplicates = {s: c - 1 for s, c in counts.items() if c > 1}
    record_property("audit_duplicates", sum(duplicates.values()))
    print(f"durable subscription: {len(after)} deliveries of 25 events, duplicates {duplicates}")
    assert sum(duplicates.values()) == len(after) - 25
    stats = system.queue_stats("audit")
    assert (stats["enqueued_total"], stats["acked_total"], stats["dead_letters"]) == (25, 25, 0)


# -- 7. content-based routing --------------------------------------------------------------

ROUTING: list[dict[str, Any]] = [
    {
        "match": {"type": Purchase.type_name, "where": {"total": {"gt": 1000}}},
        "to": ["queue:big_orders", "topic:purchases.big"],
    },
    {
        "match": {"type": "test.bus.*", "where": {"region": {"in": ["eu", "uk"]}}},
        "to": ["topic:purchases.europe"],
        "stop": True,
    },
    {"match": {"where": {"region": {"exists": True}}}, "to": ["topic:purchases.any"]},
]


def test_routing_rules_send_messages_to_queues_and_topics(start_system: StartSystem) -> None:
    system = start_system(
        [
            {"id": "ledger", "actor": "busactors:Ledger"},
            {"id": "publisher", "actor": "busactors:Publisher"},
        ],
        queues={"big_orders": {"durable": False}},
        routing=ROUTING,
    )
    host = system.subscribe("purchases.#")
    big_eu = Purchase(id=1, total=5000, region="eu")
    assert system.route(big_eu) == [
        "queue:big_orders", "topic:purchases.big", "topic:purchases.europe",
    ]  # fmt: skip
    assert system.route(Purchase(id=2, total=10, region="us")) == ["topic:purchases.any"]
    big_us = Purchase(id=3, total=1500, region="us")
    assert system.route(big_us) == [
        "queue:big_orders", "topic:purchases.big", "topic:purchases.any",
    ]  # fmt: skip
    assert system.route(Purchase(id=4, total=1000, region="fr")) == ["topic:purchases.any"]
    assert system.route(Other(note="no rule wants me")) == []
    # The same from inside an actor.
    reply = system.ask("publisher", Purchase(id=5, total=20, region="uk"), timeout=5)
    assert isinstance(reply, Destinations) and reply.items == ["topic:purchases.europe"]
    reply = system.ask("publisher", Other(), timeout=5)
    assert isinstance(reply, Destinations) and reply.items == []

    got = drain(host, 7)
    assert [(t, e.id) for t, e in got] == [
        ("purchases.big", 1), ("purchases.europe", 1), ("purchases.any", 2),
        ("purchases.big", 3), ("purchases.any", 3), ("purchases.any", 4),
        ("purchases.europe", 5),
    ]  # fmt: skip
    assert got[0][1] == big_eu and all(isinstance(e, Purchase) for _, e in got)
    assert host.get(0.2) is None

    def ledger() -> list[dict[str, Any]]:
        reply = system.ask("ledger", GetSeen(), timeout=5)
        assert isinstance(reply, Purchases)
        return reply.items

    items = wait_for("the ledger to consume 2", ledger, lambda x: len(x) >= 2)
    by_id = sorted(items, key=lambda p: int(p["id"]))
    assert by_id == [big_eu.model_dump(mode="json"), big_us.model_dump(mode="json")]
    assert system.queue_stats("big_orders")["enqueued_total"] == 2


# -- 8. bad input --------------------------------------------------------------------------

BAD_TOPICS = ["", "orders..eu", ".orders", "orders.", "orders.*", "orders.#", "a b", "x" * 300]
BAD_PATTERNS = ["", "orders..#", "orders.#x", "or*ders", "orders.", "a/b", "*." * 40 + "#"]


def test_invalid_topics_and_patterns_are_refused_at_once(start_system: StartSystem) -> None:
    system = start_system(
        [collector("sink", "ok.#")], bus={"enabled": True, "system_events": False}
    )
    wait_subscribed(system, "sink:ok.#")
    for topic in BAD_TOPICS:
        with pytest.raises(InvalidTopic) as info:
            system.publish(topic, Order(seq=0))
        assert isinstance(info.value, ValueError), topic
    for pattern in BAD_PATTERNS:
        with pytest.raises(InvalidTopic):
            system.subscribe(pattern)
    for bad in ({"overflow": "bogus"}, {"buffer": 0}):
        with pytest.raises(ValueError):
            system.subscribe("ok.#", **bad)
    # Refused here, before any request: the bus saw none of it.
    stats = system.bus_stats()
    assert stats["published"] == 0 and list(stats["subscriptions"]) == ["sink:ok.#"]


def test_an_event_the_subscriber_cannot_decode_is_counted_not_fatal(
    start_system: StartSystem,
) -> None:
    system = start_system([collector("sink", "ok.#")], bus={"enabled": True})
    wait_subscribed(system, "sink:ok.#")
    pid = seen(system, "sink").pid

    class Mystery(Message):
        """Defined after the system forked its processes: only the host knows it."""

        type_name: ClassVar[str] = "test.bus.Mystery"
        x: int

    assert system.publish("ok.mystery", Mystery(x=1)) == 1
    assert system.publish("ok.other", Other(note="known type, no handler")) == 1
    assert system.publish("ok.fine", Order(seq=7)) == 1
    wait_seqs(system, "sink", [7])
    assert seen(system, "sink").pid == pid

    def invalid() -> dict[str, float]:
        metrics = parse_exposition(system.metrics())
        out = {}
        for reason in ("unknown_type", "unhandled"):
            key = ("callboard_invalid_messages_total",
                   frozenset({("actor", "sink"), ("reason", reason)}))  # fmt: skip
            out[reason] = metrics.get(key, 0.0)
        return out if all(out.values()) else {}

    assert wait_for("the invalid events to be counted", invalid) == {
        "unknown_type": 1.0, "unhandled": 1.0,
    }  # fmt: skip
    # Their credit came back too: the subscription is not stuck.
    wait_for("all 3 acknowledged", lambda: subscriptions(system)["sink:ok.#"]["acked"] == 3)
    assert system.publish("ok.fine", Order(seq=8)) == 1
    wait_seqs(system, "sink", [7, 8])
