"""The bulkhead: admission, FIFO queueing, rejection, expiry, cancel, invariants."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from callboard.errors import CallboardError
from callboard.resilience import Bulkhead, BulkheadConfig, BulkheadFull


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(max_concurrent: int = 2, queue: int = 2) -> tuple[Bulkhead, Clock]:
    clock = Clock()
    return Bulkhead(BulkheadConfig(max_concurrent=max_concurrent, queue=queue), clock), clock


# --- config -----------------------------------------------------------------------------


def test_config_as_users_write_it() -> None:
    cfg = BulkheadConfig.model_validate({"max_concurrent": 32, "queue": 64})
    assert (cfg.max_concurrent, cfg.queue) == (32, 64)


@pytest.mark.parametrize(
    "bad", [{"max_concurrent": 0}, {"queue": -1}, {"max_concurrent": 1.5}, {"size": 3}]
)
def test_config_rejects_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BulkheadConfig.model_validate(bad)


# --- transitions ------------------------------------------------------------------------


def test_admits_up_to_the_limit_then_queues_then_rejects() -> None:
    b, _ = make(2, 2)
    assert [b.try_enter(r) for r in "abcd"] == ["admitted", "admitted", "queued", "queued"]
    with pytest.raises(BulkheadFull) as exc:
        b.try_enter("e")
    assert exc.value.code == "bulkhead_full"
    assert exc.value.request_id == "e"
    assert isinstance(exc.value, CallboardError)
    s = b.snapshot()
    assert (s.in_flight, s.queued, s.rejected_total, s.admitted_total) == (2, 2, 1, 2)


def test_queue_zero_rejects_at_once() -> None:
    b, _ = make(1, 0)
    assert b.try_enter("a") == "admitted"
    with pytest.raises(BulkheadFull):
        b.try_enter("b")


def test_leave_admits_in_fifo_order() -> None:
    b, _ = make(1, 3)
    b.try_enter("a")
    for r in "bcd":
        assert b.try_enter(r) == "queued"
    assert b.leave("a") == ["b"]
    assert b.leave("b") == ["c"]
    assert b.leave("c") == ["d"]
    assert b.leave("d") == []
    assert b.snapshot().admitted_total == 4
    assert b.try_enter("e") == "admitted"


def test_leave_frees_a_slot_without_queue() -> None:
    b, _ = make(1, 0)
    b.try_enter("a")
    assert b.leave("a") == []
    assert b.try_enter("b") == "admitted"


def test_leave_unknown_raises() -> None:
    b, _ = make()
    with pytest.raises(KeyError):
        b.leave("ghost")


def test_leave_of_queued_request_raises() -> None:
    b, _ = make(1, 1)
    b.try_enter("a")
    b.try_enter("b")
    with pytest.raises(KeyError):
        b.leave("b")


def test_duplicate_request_id_rejected() -> None:
    b, _ = make(1, 1)
    b.try_enter("a")
    with pytest.raises(ValueError):
        b.try_enter("a")
    b.try_enter("b")
    with pytest.raises(ValueError):
        b.try_enter("b")


def test_expired_queued_requests_are_dropped_not_admitted() -> None:
    b, clock = make(1, 3)
    b.try_enter("a")
    b.try_enter("b", deadline=1.0)
    b.try_enter("c", deadline=5.0)
    b.try_enter("d")
    clock.now = 1.0  # b's deadline has passed (deadline reached counts as passed)
    assert b.leave("a") == ["c"]
    assert b.expired() == ["b"]
    assert b.expired() == []  # reported once
    assert b.state("b") is None
    assert b.snapshot().expired_total == 1


def test_expired_reports_without_a_leave() -> None:
    b, clock = make(1, 2)
    b.try_enter("a")
    b.try_enter("b", deadline=2.0)
    b.try_enter("c", deadline=3.0)
    clock.now = 2.5
    assert b.expired() == ["b"]
    assert b.state("c") == "queued"
    clock.now = 3.0
    assert b.expired() == ["c"]
    assert b.snapshot().queued == 0


def test_expired_entries_make_room_in_the_queue() -> None:
    b, clock = make(1, 1)
    b.try_enter("a")
    b.try_enter("b", deadline=1.0)
    clock.now = 1.5
    assert b.try_enter("c") == "queued"  # b dropped, its place reused
    assert b.expired() == ["b"]


def test_request_that_must_wait_past_its_deadline_is_rejected() -> None:
    b, clock = make(1, 5)
    clock.now = 10.0
    assert b.try_enter("a", deadline=9.0) == "admitted"  # a free slot: caller's concern
    with pytest.raises(BulkheadFull):
        b.try_enter("b", deadline=10.0)
    assert b.snapshot().rejected_total == 1


def test_all_queued_expired_frees_slot_for_no_one() -> None:
    b, clock = make(1, 2)
    b.try_enter("a")
    b.try_enter("b", deadline=1.0)
    b.try_enter("c", deadline=1.0)
    clock.now = 2.0
    assert b.leave("a") == []
    assert b.expired() == ["b", "c"]
    assert b.try_enter("d") == "admitted"


def test_cancel_removes_a_queued_request() -> None:
    b, _ = make(1, 2)
    b.try_enter("a")
    b.try_enter("b")
    b.try_enter("c")
    assert b.cancel("b") is True
    assert b.cancel("b") is False
    assert b.cancel("a") is False  # in flight: leaves through leave()
    assert b.cancel("ghost") is False
    assert b.leave("a") == ["c"]
    assert b.snapshot().cancelled_total == 1


def test_state() -> None:
    b, _ = make(1, 1)
    b.try_enter("a")
    b.try_enter("b")
    assert (b.state("a"), b.state("b"), b.state("c")) == ("in_flight", "queued", None)


# --- property ---------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), st.one_of(st.none(), st.floats(0, 10))),
        st.tuples(st.just("leave"), st.integers(0, 1000)),
        st.tuples(st.just("cancel"), st.integers(0, 1000)),
        st.tuples(st.just("tick"), st.floats(0, 3)),
        st.tuples(st.just("expired"), st.none()),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(max_concurrent=st.integers(1, 4), queue=st.integers(0, 4), steps=ops)
def test_invariants_hold_under_random_operations(
    max_concurrent: int, queue: int, steps: list[tuple[str, float | int | None]]
) -> None:
    b, clock = make(max_concurrent, queue)
    in_flight: set[str] = set()
    waiting: deque[tuple[str, float | None]] = deque()  # reference model of the queue
    gone: set[str] = set()  # expired, cancelled or rejected
    entered = rejected = cancelled = admitted = expired = 0
    next_id = 0

    for op, arg in steps:
        if op == "enter":
            rid = f"r{next_id}"
            next_id += 1
            entered += 1
            deadline = None if arg is None else clock.now + float(arg)
            try:
                result = b.try_enter(rid, deadline)
            except BulkheadFull:
                rejected += 1
                gone.add(rid)
                live = [w for w in waiting if w[1] is None or clock.now < w[1]]
                assert len(in_flight) == max_concurrent
                assert len(live) >= queue or (deadline is not None and clock.now >= deadline)
            else:
                if result == "admitted":
                    assert not waiting or all(
                        w[1] is not None and clock.now >= w[1] for w in waiting
                    )
                    in_flight.add(rid)
                    admitted += 1
                else:
                    assert len(in_flight) == max_concurrent
                    waiting.append((rid, deadline))
        elif op == "leave" and in_flight:
            rid = sorted(in_flight)[int(arg or 0) % len(in_flight)]
            in_flight.remove(rid)
            now_admitted = b.leave(rid)
            # FIFO: the admitted ids are the earliest live waiters, in order
            expected: list[str] = []
            while waiting and len(expected) < 1:
                wid, wdl = waiting.popleft()
                if wdl is not None and clock.now >= wdl:
                    gone.add(wid)
                    continue
                expected.append(wid)
            assert now_admitted == expected
            in_flight.update(now_admitted)
            admitted += len(now_admitted)
        elif op == "cancel" and waiting:
            wid, _ = waiting[int(arg or 0) % len(waiting)]
            if b.cancel(wid):
                cancelled += 1
                waiting = deque(w for w in waiting if w[0] != wid)
                gone.add(wid)
            else:  # already dropped by expiry inside the bulkhead
                assert b.state(wid) is None
                waiting = deque(w for w in waiting if w[0] != wid)
                gone.add(wid)
        elif op == "tick":
            clock.now += float(arg or 0)
        elif op == "expired":
            dropped = b.expired()
            expired += len(dropped)
            for rid in dropped:
                assert rid not in in_flight
            waiting = deque(w for w in waiting if w[0] not in set(dropped))
            gone.update(dropped)

        s = b.snapshot()
        assert 0 <= s.in_flight <= max_concurrent
        assert 0 <= s.queued <= queue
        assert s.in_flight == len(in_flight)
        assert in_flight == {f"r{i}" for i in range(next_id) if b.state(f"r{i}") == "in_flight"}
        if s.queued:
            assert s.in_flight == max_concurrent  # nobody waits while a slot is free
        assert s.admitted_total == admitted
        assert s.rejected_total == rejected
        assert s.cancelled_total == cancelled
        for rid in gone:
            assert b.state(rid) is None
        # every request entered is accounted for exactly once
        assert (
            s.admitted_total + s.rejected_total + s.cancelled_total + s.expired_total + s.queued
            == entered
        )

    expired += len(b.expired())
    assert expired == b.snapshot().expired_total
