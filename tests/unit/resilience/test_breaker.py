"""The circuit breaker state machine, driven by a fake clock (no sleeps, no threads)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from callboard.errors import CallboardError
from callboard.resilience import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    Permit,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Transition = tuple[str, BreakerState, BreakerState, str]


def make(**overrides: Any) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    settings_: dict[str, Any] = {
        "window": "count",
        "size": 10,
        "min_calls": 4,
        "failure_rate": 0.5,
        "slow_call_s": 1.0,
        "slow_call_rate": 0.8,
        "open_s": 2.0,
        "open_max_s": 10.0,
        "half_open_calls": 1,
        "success_threshold": 1,
        "half_open_max_s": 5.0,
    }
    settings_.update(overrides)
    clock = FakeClock()
    breaker = CircuitBreaker("a->b", BreakerConfig(**settings_), clock)
    events: list[Transition] = []
    breaker.add_listener(lambda *event: events.append(event))
    return breaker, clock, events


def ok(breaker: CircuitBreaker, n: int = 1, duration_s: float = 0.01) -> None:
    for _ in range(n):
        breaker.acquire().success(duration_s)


def fail(breaker: CircuitBreaker, n: int = 1, code: str = "timeout") -> None:
    for _ in range(n):
        breaker.acquire().failure(code, 0.01)


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.config.min_calls)
    assert breaker.state is OPEN


def guarded_call(breaker: CircuitBreaker, fn: Any) -> Any:
    """What the actor layer does: ask for a permit, run, report."""
    permit = breaker.acquire()
    try:
        result = fn()
    except RuntimeError:
        permit.failure("crashed", 0.01)
        raise
    permit.success(0.01)
    return result


# -- config ----------------------------------------------------------------------------


def test_config_defaults_match_the_documented_toml() -> None:
    cfg = BreakerConfig()
    assert (cfg.window, cfg.size, cfg.min_calls, cfg.failure_rate) == ("count", 20, 10, 0.5)
    assert (cfg.slow_call_s, cfg.slow_call_rate, cfg.open_s, cfg.open_max_s) == (
        0.3,
        0.8,
        1.0,
        30.0,
    )
    assert (cfg.half_open_calls, cfg.success_threshold, cfg.half_open_max_s) == (1, 1, 5.0)
    assert "timeout" in cfg.failure_codes and "crashed" in cfg.failure_codes


@pytest.mark.parametrize(
    "bad",
    [
        {"window": "sliding"},
        {"size": 0},
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"slow_call_rate": 0.0},
        {"open_s": 5.0, "open_max_s": 1.0},
        {"half_open_calls": 0},
        {"success_threshold": 0},
        {"min_calls": 30, "size": 20},
        {"unknown_key": 1},
    ],
)
def test_config_rejects_invalid_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BreakerConfig(**bad)


def test_time_window_allows_min_calls_above_size() -> None:
    BreakerConfig(window="time", size=5, min_calls=100)


# -- closed: counting and tripping ------------------------------------------------------


def test_counts_calls_and_success_resets_nothing_while_closed() -> None:
    breaker, _, events = make()
    ok(breaker, 3)
    fail(breaker, 1)
    snap = breaker.snapshot()
    assert snap["state"] == "closed"
    assert snap["calls_in_window"] == 4
    assert snap["failures_in_window"] == 1
    assert snap["failure_rate"] == pytest.approx(0.25)
    assert events == []


def test_does_not_trip_before_min_calls_even_at_full_failure_rate() -> None:
    breaker, _, events = make(min_calls=4)
    fail(breaker, 3)
    assert breaker.state is CLOSED
    fail(breaker, 1)
    assert breaker.state is OPEN
    assert events == [("a->b", CLOSED, OPEN, "failure_rate")]


def test_trips_exactly_at_the_failure_rate_threshold() -> None:
    breaker, _, _ = make(min_calls=4, failure_rate=0.5)
    ok(breaker, 3)
    fail(breaker, 2)  # 2/5 = 0.4
    assert breaker.state is CLOSED
    fail(breaker, 1)  # 3/6 = 0.5
    assert breaker.state is OPEN


def test_count_window_forgets_calls_beyond_its_size() -> None:
    breaker, _, _ = make(size=4, min_calls=4, failure_rate=0.5)
    fail(breaker, 1)
    ok(breaker, 4)  # the failure has slid out
    assert breaker.snapshot()["calls_in_window"] == 4
    assert breaker.snapshot()["failures_in_window"] == 0
    fail(breaker, 1)  # 1/4
    assert breaker.state is CLOSED
    fail(breaker, 1)  # 2/4
    assert breaker.state is OPEN


def test_time_window_forgets_old_calls() -> None:
    breaker, clock, _ = make(window="time", size=10, min_calls=4)
    fail(breaker, 3)
    clock.advance(10.0)  # those three are now out of the window
    assert breaker.snapshot()["calls_in_window"] == 0
    fail(breaker, 1)
    assert breaker.state is CLOSED
    ok(breaker, 3)
    assert breaker.snapshot()["calls_in_window"] == 4
    assert breaker.state is CLOSED
    clock.advance(5.0)
    fail(breaker, 1)  # 2 of 5 within the last 10 s
    assert breaker.state is CLOSED
    fail(breaker, 1)  # 3 of 6
    assert breaker.state is OPEN


def test_business_errors_count_as_successes() -> None:
    breaker, _, _ = make(min_calls=4)
    fail(breaker, 10, code="no_acceptable_candidate")
    assert breaker.state is CLOSED
    assert breaker.snapshot()["failures_in_window"] == 0
    assert breaker.snapshot()["calls_in_window"] == 10


def test_failure_codes_are_configurable() -> None:
    breaker, _, _ = make(min_calls=2, failure_codes=["overloaded"])
    fail(breaker, 5, code="timeout")
    assert breaker.state is CLOSED
    fail(breaker, 5, code="overloaded")
    assert breaker.state is OPEN


def test_slow_calls_trip_by_slow_call_rate() -> None:
    breaker, _, events = make(min_calls=5, slow_call_s=1.0, slow_call_rate=0.8)
    ok(breaker, 1, duration_s=0.1)
    ok(breaker, 3, duration_s=1.5)
    ok(breaker, 1, duration_s=1.0)  # exactly slow_call_s is not slow
    assert breaker.state is CLOSED  # 3/5 slow
    assert breaker.snapshot()["slow_call_rate"] == pytest.approx(0.6)
    ok(breaker, 3, duration_s=2.0)  # 6/8 = 0.75
    assert breaker.state is CLOSED
    ok(breaker, 2, duration_s=2.0)  # 8/10 = 0.8
    assert breaker.state is OPEN
    assert events[-1][3] == "slow_call_rate"


def test_release_does_not_count() -> None:
    breaker, _, _ = make()
    for _ in range(10):
        breaker.acquire().release()
    assert breaker.snapshot()["calls_in_window"] == 0


def test_a_permit_completes_once() -> None:
    breaker, _, _ = make(min_calls=4)
    permit = breaker.acquire()
    permit.failure("timeout")
    permit.failure("timeout")
    permit.success()
    permit.release()
    assert permit.done
    assert breaker.snapshot()["calls_in_window"] == 1


# -- open -------------------------------------------------------------------------------


def test_open_rejects_without_running_the_call() -> None:
    breaker, clock, _ = make(open_s=2.0)
    trip(breaker)
    clock.advance(0.5)
    ran: list[int] = []
    with pytest.raises(CircuitOpen) as info:
        guarded_call(breaker, lambda: ran.append(1))
    assert ran == []
    err = info.value
    assert isinstance(err, CallboardError)
    assert err.code == "circuit_open"
    assert err.route == "a->b"
    assert err.state is OPEN
    assert err.retry_at == pytest.approx(1.5)
    assert err.details["retry_at"] == pytest.approx(1.5)


def test_one_trial_after_the_wait_and_close_on_success() -> None:
    breaker, clock, events = make(open_s=2.0)
    trip(breaker)
    clock.advance(1.999)
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    clock.advance(0.001)
    trial = breaker.acquire()
    assert trial.trial
    assert breaker.state is HALF_OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire()  # the single trial slot is taken
    assert info.value.state is HALF_OPEN
    assert info.value.retry_at == 0.0
    trial.success(0.01)
    assert breaker.state is CLOSED
    assert breaker.snapshot()["calls_in_window"] == 0  # window reset on close
    assert [e[1:] for e in events] == [
        (CLOSED, OPEN, "failure_rate"),
        (OPEN, HALF_OPEN, "open_wait_elapsed"),
        (HALF_OPEN, CLOSED, "trials_succeeded"),
    ]


def test_success_threshold_needs_n_trial_successes() -> None:
    breaker, clock, _ = make(open_s=1.0, success_threshold=3)
    trip(breaker)
    clock.advance(1.0)
    for _ in range(2):
        breaker.acquire().success(0.01)
        assert breaker.state is HALF_OPEN
    breaker.acquire().success(0.01)
    assert breaker.state is CLOSED


def test_reopen_on_trial_failure_doubles_the_wait_up_to_the_cap() -> None:
    breaker, clock, events = make(open_s=2.0, open_max_s=5.0)
    trip(breaker)
    waits = []
    for _ in range(4):
        wait = breaker.snapshot()["next_trial_s"]
        waits.append(wait)
        clock.advance(wait)
        breaker.acquire().failure("timeout", 0.01)
        assert breaker.state is OPEN
    assert waits == [2.0, 4.0, 5.0, 5.0]
    assert events[2][1:] == (HALF_OPEN, OPEN, "trial_failed")
    assert breaker.snapshot()["opened_count"] == 5
    # closing resets the wait to open_s
    clock.advance(5.0)
    breaker.acquire().success(0.01)
    assert breaker.state is CLOSED
    trip(breaker)
    assert breaker.snapshot()["next_trial_s"] == 2.0


def test_slow_trial_reopens() -> None:
    breaker, clock, events = make(open_s=1.0, slow_call_s=1.0)
    trip(breaker)
    clock.advance(1.0)
    breaker.acquire().success(3.0)
    assert breaker.state is OPEN
    assert events[-1][3] == "trial_slow"


def test_business_error_trial_closes() -> None:
    breaker, clock, _ = make(open_s=1.0)
    trip(breaker)
    clock.advance(1.0)
    breaker.acquire().failure("invalid_candidate", 0.01)
    assert breaker.state is CLOSED


def test_released_trial_frees_the_slot_without_deciding() -> None:
    breaker, clock, _ = make(open_s=1.0)
    trip(breaker)
    clock.advance(1.0)
    breaker.acquire().release()
    assert breaker.state is HALF_OPEN
    breaker.acquire().success(0.01)
    assert breaker.state is CLOSED


def test_half_open_max_s_sends_it_back_to_open() -> None:
    breaker, clock, events = make(open_s=1.0, half_open_max_s=5.0)
    trip(breaker)
    clock.advance(1.0)
    stuck = breaker.acquire()  # a trial that never answers
    clock.advance(4.9)
    assert breaker.state is HALF_OPEN
    clock.advance(0.1)
    assert breaker.state is OPEN
    assert events[-1][1:] == (HALF_OPEN, OPEN, "half_open_timeout")
    assert breaker.snapshot()["next_trial_s"] == 2.0  # a reopen doubles the wait
    stuck.success(0.01)  # late: ignored
    assert breaker.state is OPEN


def test_stale_permit_from_closed_cannot_decide_half_open() -> None:
    breaker, clock, _ = make(open_s=1.0)
    early = breaker.acquire()
    trip(breaker)
    clock.advance(1.0)
    trial = breaker.acquire()
    early.failure("timeout")  # started while closed: ignored
    assert breaker.state is HALF_OPEN
    trial.success(0.01)
    assert breaker.state is CLOSED


def test_exactly_one_trial_when_five_callers_acquire_at_once() -> None:
    breaker, clock, _ = make(open_s=1.0, half_open_calls=1)
    trip(breaker)
    clock.advance(1.0)
    permits: list[Permit] = []
    rejected: list[CircuitOpen] = []
    for _ in range(5):
        try:
            permits.append(breaker.acquire())
        except CircuitOpen as exc:
            rejected.append(exc)
    assert len(permits) == 1 and len(rejected) == 4
    assert all(r.state is HALF_OPEN for r in rejected)
    assert breaker.snapshot()["trials_in_flight"] == 1


def test_half_open_calls_allows_that_many_trials_at_once() -> None:
    breaker, clock, _ = make(open_s=1.0, half_open_calls=3, success_threshold=3)
    trip(breaker)
    clock.advance(1.0)
    permits = [breaker.acquire() for _ in range(3)]
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    permits[0].success(0.01)
    extra = breaker.acquire()  # the freed slot
    permits[1].success(0.01)
    permits[2].failure("crashed", 0.01)
    assert breaker.state is OPEN
    extra.success(0.01)  # stale after the reopen
    assert breaker.state is OPEN


# -- listeners, force, snapshot ---------------------------------------------------------


def test_listeners_are_called_in_registration_and_transition_order() -> None:
    breaker, clock, _ = make(open_s=1.0)
    calls: list[tuple[str, str, str]] = []
    breaker.add_listener(lambda route, old, new, reason: calls.append(("first", old, new)))
    breaker.add_listener(lambda route, old, new, reason: calls.append(("second", old, new)))
    trip(breaker)
    clock.advance(1.0)
    breaker.acquire().success(0.01)
    assert calls == [
        ("first", CLOSED, OPEN),
        ("second", CLOSED, OPEN),
        ("first", OPEN, HALF_OPEN),
        ("second", OPEN, HALF_OPEN),
        ("first", HALF_OPEN, CLOSED),
        ("second", HALF_OPEN, CLOSED),
    ]


def test_force_open_holds_until_forced_closed() -> None:
    breaker, clock, events = make(open_s=1.0)
    breaker.force("open")
    assert events == [("a->b", CLOSED, OPEN, "forced")]
    clock.advance(1000.0)
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire()
    assert info.value.retry_at is None
    snap = breaker.snapshot()
    assert snap["state"] == "open" and snap["forced"] is True and snap["next_trial_s"] is None
    breaker.force("closed")
    assert breaker.state is CLOSED
    assert events[-1] == ("a->b", OPEN, CLOSED, "forced")
    assert not breaker.snapshot()["forced"]
    ok(breaker)


def test_force_closed_resets_and_the_breaker_can_trip_again() -> None:
    breaker, clock, _ = make(open_s=2.0)
    trip(breaker)
    clock.advance(2.0)
    breaker.acquire().failure("timeout")  # wait now 4.0
    breaker.force(BreakerState.CLOSED)
    assert breaker.snapshot()["calls_in_window"] == 0
    trip(breaker)
    assert breaker.snapshot()["next_trial_s"] == 2.0


def test_force_rejects_half_open() -> None:
    breaker, _, _ = make()
    with pytest.raises(ValueError):
        breaker.force(BreakerState.HALF_OPEN)


def test_snapshot_contents() -> None:
    breaker, clock, _ = make(min_calls=4, slow_call_s=1.0)
    ok(breaker, 1, duration_s=2.0)
    ok(breaker, 1)
    fail(breaker, 1)
    snap = breaker.snapshot()
    assert snap == {
        "route": "a->b",
        "state": "closed",
        "forced": False,
        "failure_rate": pytest.approx(1 / 3),
        "slow_call_rate": pytest.approx(1 / 3),
        "calls_in_window": 3,
        "failures_in_window": 1,
        "slow_calls_in_window": 1,
        "next_trial_s": 0.0,
        "open_wait_s": 2.0,
        "opened_count": 0,
        "trials_in_flight": 0,
        "trial_successes": 0,
    }
    fail(breaker, 1)
    clock.advance(0.5)
    snap = breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["next_trial_s"] == pytest.approx(1.5)
    assert snap["opened_count"] == 1


def test_defaults_use_a_real_monotonic_clock() -> None:
    breaker = CircuitBreaker("x")
    breaker.acquire().success(0.01)
    assert breaker.snapshot()["calls_in_window"] == 1


# -- property ---------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.just(0.0)),
        st.tuples(
            st.sampled_from(["success", "slow", "failure", "business", "release"]),
            st.integers(min_value=0, max_value=10).map(float),
        ),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=8.0)),
        st.tuples(st.sampled_from(["force_open", "force_closed"]), st.just(0.0)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=ops,
    half_open_calls=st.integers(min_value=1, max_value=3),
    success_threshold=st.integers(min_value=1, max_value=3),
)
def test_invariants_under_arbitrary_sequences(
    ops: list[tuple[str, float]], half_open_calls: int, success_threshold: int
) -> None:
    breaker, clock, events = make(
        min_calls=2,
        size=5,
        half_open_calls=half_open_calls,
        success_threshold=success_threshold,
    )
    outstanding: list[Permit] = []
    for op, arg in ops:
        if op == "acquire":
            try:
                outstanding.append(breaker.acquire())
            except CircuitOpen as exc:
                assert exc.state in (OPEN, HALF_OPEN)
        elif op == "advance":
            clock.advance(arg)
        elif op == "force_open":
            breaker.force("open")
        elif op == "force_closed":
            breaker.force("closed")
        elif outstanding:
            permit = outstanding.pop(int(arg) % len(outstanding))
            if op == "success":
                permit.success(0.01)
            elif op == "slow":
                permit.success(5.0)
            elif op == "failure":
                permit.failure("timeout", 0.01)
            elif op == "business":
                permit.failure("bad_input", 0.01)
            else:
                permit.release()
        snap = breaker.snapshot()
        assert breaker.state in (CLOSED, OPEN, HALF_OPEN)
        assert 0 <= snap["trials_in_flight"] <= half_open_calls
        assert snap["calls_in_window"] <= 5
        assert 0.0 <= snap["failure_rate"] <= 1.0
        nxt = snap["next_trial_s"]
        assert nxt is None or 0.0 <= nxt <= 10.0
        assert snap["open_wait_s"] <= 10.0
    # transitions chain: each one starts where the previous ended
    for before, after in itertools.pairwise(events):
        assert before[2] is after[1]
        assert before[1] is not before[2]
