"""``Route`` and ``RouteTable``: which policy applies to which caller, lazily built route
state, events, breaker admin, bulkhead admission helpers, static replies, counts."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pytest
from pydantic import Field
from resilience_fakes import START, Event, FakeClock, pol, route_of
from resilience_fakes import breaker_state as state
from resilience_fakes import route_table as table

from callboard.messages import Message
from callboard.resilience import HOST, BreakerState, BulkheadFull, Route, RouteTable, route_name


class RoutesReply(Message):
    type_name: ClassVar[str] = "test.routes.Reply"
    scores: list[float] = Field(default_factory=list)


class RoutesOther(Message):
    type_name: ClassVar[str] = "test.routes.Other"
    label: str = ""


BREAKER: dict[str, Any] = {
    "size": 4, "min_calls": 2, "failure_rate": 0.5, "open_s": 2.0, "open_max_s": 8.0,
}  # fmt: skip


def bulkhead_route(max_concurrent: int = 1, queue: int = 2) -> tuple[Route, FakeClock]:
    clock = FakeClock()
    policy = pol(bulkhead={"max_concurrent": max_concurrent, "queue": queue})
    t = table("a", {"b": policy}, clock=clock)
    return route_of(t, "b"), clock


# --- which policy applies ----------------------------------------------------------------


def test_route_name() -> None:
    assert route_name("a", "b") == "a->b"
    assert route_name(HOST, "b") == "host->b"


def test_no_policy_means_no_route() -> None:
    t = table("a", {"other": pol(timeout=1.0)})
    assert t.route("b") is None
    assert t.route("b") is None  # remembered, still none
    assert t.routes() == []
    assert t.breakers() == []


def test_an_empty_policy_table_has_no_routes() -> None:
    assert table(HOST, {}).route("b") is None


def test_a_target_policy_applies_to_every_caller() -> None:
    policies = {"b": pol(timeout=0.5)}
    for caller in ("a", "c", HOST):
        route = route_of(table(caller, policies), "b")
        assert route.policy.timeout == 0.5
        assert (route.caller, route.target, route.name) == (caller, "b", f"{caller}->b")


def test_a_route_override_applies_only_to_its_caller() -> None:
    policies = {
        "b": pol(timeout=0.5, retry={"max_attempts": 4}),
        "a->b": pol(timeout=0.25),
    }
    mine = route_of(table("a", policies), "b")
    assert mine.policy.timeout == 0.25
    assert mine.retry is not None and mine.retry.config.max_attempts == 4  # inherited
    theirs = route_of(table("c", policies), "b")
    assert theirs.policy.timeout == 0.5


def test_a_route_policy_alone_applies_only_to_its_caller() -> None:
    policies = {"a->b": pol(timeout=0.25)}
    assert route_of(table("a", policies), "b").policy.timeout == 0.25
    assert table("c", policies).route("b") is None
    assert table(HOST, policies).route("b") is None


def test_the_host_caller_takes_host_route_overrides() -> None:
    policies = {"b": pol(timeout=0.5), "host->b": pol(timeout=0.125), "a->b": pol(timeout=2.0)}
    host = route_of(table(HOST, policies), "b")
    assert host.policy.timeout == 0.125
    assert (host.caller, host.name) == ("host", "host->b")
    assert route_of(table("a", policies), "b").policy.timeout == 2.0
    assert route_of(table("c", policies), "b").policy.timeout == 0.5


def test_routes_are_built_on_first_use_and_then_reused() -> None:
    t = table("a", {"b": pol(timeout=0.5), "c": pol(timeout=0.5)})
    assert t.routes() == []
    first = t.route("b")
    assert first is not None and t.route("b") is first
    assert t.routes() == [first]


def test_route_state_follows_the_policy() -> None:
    t = table(
        "a",
        {
            "full": pol(
                timeout=0.5,
                retry={"max_attempts": 2},
                breaker=BREAKER,
                fallback={"mode": "last_good"},
                bulkhead={"max_concurrent": 3, "queue": 1},
            ),
            "bare": pol(timeout=0.5),
        },
    )
    full = route_of(t, "full")
    assert full.breaker is not None and full.breaker.route == "a->full"
    assert full.retry is not None and full.bulkhead is not None
    assert full.fallback is not None and full.fallback.mode == "last_good"
    bare = route_of(t, "bare")
    assert (bare.breaker, bare.retry, bare.bulkhead, bare.fallback) == (None, None, None, None)


def test_concurrent_first_use_builds_one_route() -> None:
    t = table("a", {"b": pol(breaker=BREAKER)})
    barrier = threading.Barrier(8)
    got: list[Route | None] = []
    lock = threading.Lock()

    def use() -> None:
        barrier.wait()
        route = t.route("b")
        with lock:
            got.append(route)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=10)
    assert len(got) == 8 and got[0] is not None
    assert all(r is got[0] for r in got)
    assert len(t.routes()) == 1


# --- breakers and force ------------------------------------------------------------------


def test_breakers_lists_only_used_routes_with_a_breaker() -> None:
    t = table(
        "a",
        {"b": pol(breaker=BREAKER), "c": pol(timeout=1.0), "d": pol(breaker=BREAKER)},
    )
    assert t.breakers() == []
    t.route("b")
    t.route("c")
    t.route("nothing")
    [snap] = t.breakers()
    assert (snap["route"], snap["caller"], snap["target"]) == ("a->b", "a", "b")
    assert snap["state"] == "closed" and snap["forced"] is False
    assert snap["counts"]["calls"] == 0


def test_force_opens_and_closes_a_breaker() -> None:
    events: list[Event] = []
    t = table("a", {"b": pol(breaker=BREAKER)}, events=events)
    snap = t.force("b", "open")  # builds the route on the way
    assert (snap["route"], snap["state"], snap["forced"]) == ("a->b", "open", True)
    assert snap["next_trial_s"] is None
    assert [s["route"] for s in t.breakers()] == ["a->b"]
    closed = t.force("b", "closed")
    assert (closed["state"], closed["forced"]) == ("closed", False)
    assert events == [
        ("breaker_state_changed", {"route": "a->b", "caller": "a", "target": "b",
                                   "old": "closed", "new": "open", "reason": "forced"}),
        ("breaker_state_changed", {"route": "a->b", "caller": "a", "target": "b",
                                   "old": "open", "new": "closed", "reason": "forced"}),
    ]  # fmt: skip


def test_force_without_a_breaker_raises_lookup_error() -> None:
    t = table("a", {"c": pol(timeout=1.0)})
    with pytest.raises(LookupError, match="a->c"):
        t.force("c", "open")
    with pytest.raises(LookupError, match="a->unknown"):
        t.force("unknown", "open")
    assert t.breakers() == []


def test_the_breaker_runs_on_the_monotonic_clock() -> None:
    wall, mono = FakeClock(), FakeClock(0.0)
    route = route_of(table("a", {"b": pol(breaker=BREAKER)}, clock=wall, monotonic=mono), "b")
    assert route.clock is wall
    assert route.breaker is not None
    for _ in range(2):
        route.breaker.acquire().failure("crashed")
    assert state(route) is BreakerState.OPEN
    wall.advance(100.0)
    assert state(route) is BreakerState.OPEN  # wall time does not count
    mono.advance(2.0)
    assert state(route) is BreakerState.HALF_OPEN


# --- events and counts -------------------------------------------------------------------


def test_events_carry_route_caller_and_target() -> None:
    events: list[Event] = []
    route = route_of(table("a", {"b": pol(timeout=1.0)}, events=events), "b")
    route.event("retry", attempt=2, code="timeout")
    assert events == [
        ("retry", {"route": "a->b", "caller": "a", "target": "b", "attempt": 2,
                   "code": "timeout"})
    ]  # fmt: skip


def test_without_an_event_sink_events_go_nowhere() -> None:
    t = RouteTable("a", {"b": pol(breaker=BREAKER)}, clock=FakeClock(), monotonic=FakeClock())
    route = route_of(t, "b")
    route.event("retry", attempt=2)
    assert t.force("b", "open")["state"] == "open"


def test_counts_start_at_zero_and_snapshot_copies_them() -> None:
    route = route_of(table("a", {"b": pol(timeout=1.0)}), "b")
    assert route.counts == {
        "calls": 0, "ok": 0, "failed": 0, "business_errors": 0, "retries": 0,
        "degraded": 0, "bulkhead_rejected": 0,
    }  # fmt: skip
    route.count("calls")
    route.count("retries", 3)
    snap = route.snapshot()
    assert snap == {
        "route": "a->b", "caller": "a", "target": "b",
        "counts": {"calls": 1, "ok": 0, "failed": 0, "business_errors": 0, "retries": 3,
                   "degraded": 0, "bulkhead_rejected": 0},
    }  # fmt: skip
    snap["counts"]["calls"] = 99
    assert route.counts["calls"] == 1


def test_snapshot_includes_the_bulkhead() -> None:
    route, _ = bulkhead_route(max_concurrent=1, queue=1)
    route.enter("r1", None)
    route.enter("r2", None)
    assert route.snapshot()["bulkhead"] == {"in_flight": 1, "queued": 1, "rejected_total": 0}


def test_failure_codes_versus_business_codes() -> None:
    route = route_of(
        table("a", {"b": pol(retry={"on": ["timeout", "gpu_busy"]}, breaker=BREAKER)}), "b"
    )
    for code in ("timeout", "crashed", "restarting", "unavailable", "circuit_open",
                 "bulkhead_full", "no_such_actor", "gpu_busy"):  # fmt: skip
        assert route.is_failure(code), code
    assert not route.is_failure("no_acceptable_solution")


def test_fallback_codes_default_and_override() -> None:
    default = route_of(table("a", {"b": pol(fallback={"mode": "last_good"})}), "b")
    assert {"timeout", "crashed", "circuit_open", "bulkhead_full"} <= default.fallback_codes
    assert "no_acceptable_solution" not in default.fallback_codes
    narrow = route_of(
        table("a", {"b": pol(fallback={"mode": "last_good", "on": ["timeout"]})}), "b"
    )
    assert narrow.fallback_codes == frozenset({"timeout"})


# --- answers: static and last good -------------------------------------------------------


def static_route(**fallback: Any) -> Route:
    return route_of(table("a", {"b": pol(fallback={"mode": "static", **fallback})}), "b")


def test_static_reply_builds_the_named_type() -> None:
    route = static_route(reply={"scores": [0.5]}, type="test.routes.Reply")
    reply = route.static_reply("test.routes.Other")  # fallback.type wins
    assert reply == RoutesReply(scores=[0.5])


def test_static_reply_falls_back_to_the_reply_type() -> None:
    route = static_route(reply={"label": "cached"})
    assert route.static_reply("test.routes.Other") == RoutesOther(label="cached")


def test_static_reply_is_a_fresh_copy_each_time() -> None:
    route = static_route(reply={"scores": [0.5]}, type="test.routes.Reply")
    first = route.static_reply(None)
    first.scores.append(1.0)
    second = route.static_reply(None)
    assert second is not first and second.scores == [0.5]


def test_static_reply_follows_a_changing_reply_type() -> None:
    route = static_route(reply={})
    assert isinstance(route.static_reply("test.routes.Reply"), RoutesReply)
    assert isinstance(route.static_reply("test.routes.Other"), RoutesOther)


@pytest.mark.parametrize(
    ("fallback", "reply_type", "match"),
    [
        ({"reply": {"scores": []}}, None, "names no message type"),
        ({"reply": {"scores": []}, "type": "test.routes.Missing"}, None, "unknown"),
        ({"reply": {"scores": "x"}, "type": "test.routes.Reply"}, None, "scores"),
        ({"reply": {"nope": 1}}, "test.routes.Reply", "nope"),
    ],
)
def test_static_reply_raises_value_error_when_it_cannot_build(
    fallback: dict[str, Any], reply_type: str | None, match: str
) -> None:
    route = static_route(**fallback)
    with pytest.raises(ValueError, match=match):
        route.static_reply(reply_type)


def test_remember_keeps_the_last_value_only_for_last_good() -> None:
    lg = route_of(table("a", {"b": pol(fallback={"mode": "last_good"})}), "b")
    assert lg.last_good is None
    lg.remember(RoutesOther(label="one"))
    lg.remember(RoutesOther(label="two"))
    assert lg.last_good == RoutesOther(label="two")
    for fallback in ({"mode": "error"}, {"mode": "static", "reply": {}}):
        other = route_of(table("a", {"b": pol(fallback=fallback)}), "b")
        other.remember("x")
        assert other.last_good is None
    plain = route_of(table("a", {"b": pol(timeout=1.0)}), "b")
    plain.remember("x")
    assert plain.last_good is None


# --- bulkhead admission helpers ----------------------------------------------------------


def test_enter_admits_queues_and_then_rejects() -> None:
    route, _ = bulkhead_route(max_concurrent=1, queue=1)
    assert route.enter("r1", None) == "admitted"
    assert route.enter("r2", START + 1.0) == "queued"
    with pytest.raises(BulkheadFull) as info:
        route.enter("r3", START + 1.0)
    assert info.value.code == "bulkhead_full"


def test_when_admitted_wakes_at_once_for_a_request_in_flight() -> None:
    route, _ = bulkhead_route()
    route.enter("r1", None)
    woken: list[str] = []
    route.when_admitted("r1", lambda: woken.append("r1"))
    assert woken == ["r1"]


def test_leave_wakes_queued_requests_in_order() -> None:
    route, _ = bulkhead_route(max_concurrent=1, queue=2)
    route.enter("r1", None)
    route.enter("r2", None)
    route.enter("r3", None)
    woken: list[str] = []
    route.when_admitted("r2", lambda: woken.append("r2"))
    route.when_admitted("r3", lambda: woken.append("r3"))
    assert woken == []
    route.leave("r1")
    assert woken == ["r2"]
    assert route.snapshot()["bulkhead"] == {"in_flight": 1, "queued": 1, "rejected_total": 0}
    route.leave("r2")
    assert woken == ["r2", "r3"]
    route.leave("r3")
    assert woken == ["r2", "r3"]  # each waiter is woken once
    assert route.snapshot()["bulkhead"]["in_flight"] == 0


def test_leave_skips_a_queued_request_whose_deadline_passed() -> None:
    route, clock = bulkhead_route(max_concurrent=1, queue=2)
    route.enter("r1", None)
    route.enter("r2", START + 1.0)
    route.enter("r3", START + 8.0)
    woken: list[str] = []
    route.when_admitted("r2", lambda: woken.append("r2"))
    route.when_admitted("r3", lambda: woken.append("r3"))
    clock.advance(1.0)  # r2's deadline: it is never admitted
    route.leave("r1")
    assert woken == ["r3"]
    assert route.snapshot()["bulkhead"] == {"in_flight": 1, "queued": 0, "rejected_total": 0}


def test_give_up_waiting_drops_a_queued_request_and_its_waiter() -> None:
    route, _ = bulkhead_route(max_concurrent=1, queue=1)
    route.enter("r1", None)
    route.enter("r2", START + 1.0)
    woken: list[str] = []
    route.when_admitted("r2", lambda: woken.append("r2"))
    route.give_up_waiting("r2")
    assert route.snapshot()["bulkhead"] == {"in_flight": 1, "queued": 0, "rejected_total": 0}
    route.leave("r1")
    assert woken == []
    assert route.snapshot()["bulkhead"]["in_flight"] == 0


def test_give_up_waiting_just_after_admission_frees_the_slot() -> None:
    # The slot came free, and the waiter's own timer fired before it could act on it.
    route, _ = bulkhead_route(max_concurrent=1, queue=1)
    route.enter("r1", None)
    route.enter("r2", START + 1.0)
    route.leave("r1")  # r2 holds the slot now (nobody registered a waiter yet)
    assert route.snapshot()["bulkhead"] == {"in_flight": 1, "queued": 0, "rejected_total": 0}
    route.give_up_waiting("r2")
    assert route.snapshot()["bulkhead"]["in_flight"] == 0
    assert route.enter("r3", None) == "admitted"


def test_give_up_waiting_on_a_slot_lets_the_next_queued_request_in() -> None:
    route, _ = bulkhead_route(max_concurrent=1, queue=2)
    route.enter("r1", None)
    route.enter("r2", START + 1.0)
    route.enter("r3", None)
    woken: list[str] = []
    route.when_admitted("r3", lambda: woken.append("r3"))
    route.leave("r1")  # r2 admitted
    route.give_up_waiting("r2")  # ... but its caller gave up: r3 gets the slot
    assert woken == ["r3"]
    assert route.snapshot()["bulkhead"] == {"in_flight": 1, "queued": 0, "rejected_total": 0}


def test_give_up_waiting_on_an_unknown_request_is_a_no_op() -> None:
    route, _ = bulkhead_route()
    route.enter("r1", None)
    route.give_up_waiting("never-entered")
    assert route.snapshot()["bulkhead"]["in_flight"] == 1
