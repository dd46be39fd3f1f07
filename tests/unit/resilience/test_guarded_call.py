"""``guarded_call``: one call through a route's policies, driven by a fake clock.

The driver below plays the part of the actor runtime / ``System.ask``: it answers each
effect the generator yields (``Attempt`` from a scripted fake target, ``Backoff`` by
advancing the fake clock, ``Queue`` with a scripted admission). No sleeps, no threads.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from pydantic import Field
from resilience_fakes import START, Event, FakeClock, breaker_state, pol, route_of, route_table

from callboard.errors import AskTimeout, RemoteError
from callboard.messages import Message, is_degraded, mark_degraded
from callboard.resilience import (
    Attempt,
    Backoff,
    BreakerState,
    BulkheadFull,
    CallResult,
    CircuitOpen,
    Effect,
    Outcome,
    Queue,
    Route,
    RouteTable,
    guarded_call,
)


class GuardedReply(Message):
    type_name: ClassVar[str] = "test.guarded.Reply"
    scores: list[float] = Field(default_factory=list)


class GuardedOther(Message):
    type_name: ClassVar[str] = "test.guarded.Other"
    label: str = ""


Call = Generator[Effect, Any, CallResult]


@dataclass
class Step:
    """What the fake target does for one attempt: answer ``result`` (an exception is an
    error reply) after ``seconds`` of fake time."""

    result: Any
    seconds: float = 0.0


Script = Iterable[Any] | Callable[[Attempt], Any]


def crashed() -> RemoteError:
    return RemoteError("crashed", "the handler raised")


def business() -> RemoteError:
    return RemoteError("no_acceptable_solution", "nothing fits")


def late() -> AskTimeout:
    return AskTimeout("no reply in time")


@dataclass
class Driver:
    """Runs a guarded call to completion against scripted targets.

    ``primary`` and ``substitute`` hold the answers (values, exceptions or ``Step``s) in
    order, or a callable of the ``Attempt``; ``admit`` the answers to ``Queue`` effects.
    Every effect is recorded with the fake time it was handled at."""

    clock: FakeClock
    primary: Script = ()
    substitute: Script = ()
    admit: Iterable[bool] = ()
    route: Route | None = None
    attempts: list[tuple[Attempt, float]] = field(default_factory=list)
    backoffs: list[float] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._primary = self._source(self.primary)
        self._substitute = self._source(self.substitute)
        self._admit = iter(self.admit)

    @staticmethod
    def _source(script: Script) -> Callable[[Attempt], Any]:
        if callable(script):
            return script
        answers = iter(script)
        return lambda _attempt: next(answers)

    @property
    def numbers(self) -> list[int]:
        return [a.number for a, _ in self.attempts if not a.substitute]

    def answer(self, effect: Effect) -> Any:
        if isinstance(effect, Attempt):
            self.attempts.append((effect, self.clock.now))
            source = self._substitute if effect.substitute else self._primary
            step = source(effect)
            if not isinstance(step, Step):
                step = Step(step)
            self.clock.advance(step.seconds)
            if isinstance(step.result, BaseException):
                return Outcome(error=step.result, seconds=step.seconds)
            return Outcome(value=step.result, seconds=step.seconds)
        if isinstance(effect, Backoff):
            self.backoffs.append(effect.seconds)
            self.clock.advance(effect.seconds)
            return None
        assert isinstance(effect, Queue)
        self.queues.append(effect)
        admitted = next(self._admit)
        if not admitted and self.route is not None:
            self.route.give_up_waiting(effect.request_id)  # as both real drivers do
        return admitted

    def run(self, call: Call) -> CallResult:
        sent: Any = None
        while True:
            try:
                effect = call.send(sent)
            except StopIteration as stop:
                result: CallResult = stop.value
                return result
            sent = self.answer(effect)


@dataclass
class Setup:
    route: Route
    table: RouteTable
    clock: FakeClock
    events: list[Event]

    def state(self) -> BreakerState:
        return breaker_state(self.route)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [fields for n, fields in self.events if n == name]

    def driver(self, primary: Script = (), **kw: Any) -> Driver:
        return Driver(self.clock, primary, route=self.route, **kw)

    def call(
        self,
        request_id: str = "r1",
        *,
        idempotent: bool = True,
        deadline: float | None = START + 64.0,
        reply_type: str | None = None,
    ) -> Call:
        return guarded_call(self.route, request_id, idempotent, deadline, reply_type)


def setup(policy: dict[str, Any], *, seed: int = 7) -> Setup:
    clock = FakeClock()
    events: list[Event] = []
    table = route_table("a", {"b": pol(**policy)}, clock=clock, events=events, seed=seed)
    return Setup(route_of(table, "b"), table, clock, events)


def advance_to_attempt(call: Call) -> Attempt:
    effect = call.send(None)
    assert isinstance(effect, Attempt), effect
    return effect


def finish(call: Call, outcome: Outcome) -> CallResult:
    with pytest.raises(StopIteration) as stop:
        call.send(outcome)
    result: CallResult = stop.value.value
    return result


def retry(**kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "max_attempts": 3, "backoff": "fixed", "base": 0.125, "max": 0.125,
        "on": ["timeout", "crashed"],
    }  # fmt: skip
    cfg.update(kw)
    return cfg


BREAKER: dict[str, Any] = {
    "window": "count", "size": 4, "min_calls": 2, "failure_rate": 0.5, "open_s": 2.0,
    "open_max_s": 8.0, "half_open_calls": 1, "success_threshold": 1, "half_open_max_s": 4.0,
}  # fmt: skip


def trip(s: Setup) -> None:
    """Two failed calls: the breaker (``BREAKER``) opens."""
    for rid in ("trip1", "trip2"):
        s.driver([crashed()]).run(s.call(rid))
    assert s.state() is BreakerState.OPEN


# --- success, timeouts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deadline", "expected"),
    [
        (START + 2.0, START + 0.5),  # the per-attempt timeout is the nearer limit
        (START + 0.25, START + 0.25),  # the overall deadline is nearer
        (None, START + 0.5),  # no overall deadline: the timeout alone
    ],
)
def test_success_on_the_first_attempt(deadline: float | None, expected: float) -> None:
    s = setup({"timeout": 0.5})
    d = s.driver([Step("pong", 0.125)])
    result = d.run(s.call(deadline=deadline))
    assert result == CallResult("pong", None, False, "primary", 1)
    assert [a for a, _ in d.attempts] == [Attempt("b", 1, expected, False)]
    assert d.backoffs == [] and d.queues == []
    assert s.route.counts["calls"] == 1 and s.route.counts["ok"] == 1
    assert s.route.counts["failed"] == 0 and s.route.counts["retries"] == 0
    assert s.events == []


def test_without_a_timeout_the_attempt_gets_the_overall_deadline() -> None:
    s = setup({"retry": retry()})
    d = s.driver(["pong"])
    d.run(s.call(deadline=START + 3.0))
    assert d.attempts[0][0].deadline == START + 3.0


def test_the_attempt_timeout_is_measured_from_each_attempt_start() -> None:
    s = setup({"timeout": 0.5, "retry": retry()})
    d = s.driver([Step(late(), 0.5), Step("pong", 0.125)])
    result = d.run(s.call(deadline=START + 8.0))
    assert result.value == "pong" and result.attempts == 2
    # attempt 2 starts at START + 0.5 (attempt) + 0.125 (backoff)
    assert [a.deadline for a, _ in d.attempts] == [START + 0.5, START + 1.125]


# --- retry -------------------------------------------------------------------------------


def test_retries_a_retryable_code_until_success_with_fixed_backoff() -> None:
    s = setup({"retry": retry()})
    d = s.driver([crashed(), late(), "pong"])
    result = d.run(s.call())
    assert result == CallResult("pong", None, False, "primary", 3)
    assert d.numbers == [1, 2, 3]
    assert d.backoffs == [0.125, 0.125]
    assert s.names() == ["retry", "retry"]
    assert [(e["attempt"], e["code"], e["delay_s"]) for e in s.of("retry")] == [
        (2, "crashed", 0.125),
        (3, "timeout", 0.125),
    ]
    counts = s.route.counts
    assert (counts["calls"], counts["ok"], counts["retries"], counts["failed"]) == (1, 1, 2, 0)


def test_exponential_backoff_doubles_up_to_max() -> None:
    s = setup({"retry": retry(max_attempts=5, backoff="exponential", base=0.125, max=0.375)})
    d = s.driver([crashed(), crashed(), crashed(), crashed(), "pong"])
    result = d.run(s.call())
    assert result.value == "pong" and result.attempts == 5
    assert d.numbers == [1, 2, 3, 4, 5]
    assert d.backoffs == [0.125, 0.25, 0.375, 0.375]
    assert [e["delay_s"] for e in s.of("retry")] == d.backoffs


def test_exponential_jitter_backoff_stays_below_its_cap_and_is_seeded() -> None:
    def run(seed: int) -> list[float]:
        s = setup(
            {"retry": retry(max_attempts=4, backoff="exponential_jitter", base=0.25, max=1.0)},
            seed=seed,
        )
        d = s.driver([crashed(), crashed(), crashed(), "pong"])
        assert d.run(s.call()).value == "pong"
        return d.backoffs

    delays = run(3)
    assert len(delays) == 3
    for delay, cap in zip(delays, [0.25, 0.5, 1.0], strict=True):
        assert 0.0 <= delay < cap
    assert run(3) == delays  # the injected Random decides the jitter


def test_retries_exhausted_returns_the_last_error() -> None:
    s = setup({"retry": retry(max_attempts=2)})
    last = late()
    d = s.driver([crashed(), last])
    result = d.run(s.call())
    assert result == CallResult(None, last, False, "none", 2)
    assert d.numbers == [1, 2]
    assert s.names() == ["retry", "retries_stopped", "call_failed"]
    assert s.of("retries_stopped")[0] == {
        "route": "a->b", "caller": "a", "target": "b", "attempts": 2, "code": "timeout",
        "reason": "attempts_exhausted",
    }  # fmt: skip
    assert s.of("call_failed")[0]["attempts"] == 2
    assert s.route.counts["failed"] == 1 and s.route.counts["ok"] == 0


def test_no_retry_for_a_non_idempotent_message() -> None:
    s = setup({"retry": retry()})
    err = crashed()
    d = s.driver([err, "never"])
    result = d.run(s.call(idempotent=False))
    assert result == CallResult(None, err, False, "none", 1)
    assert d.numbers == [1] and d.backoffs == []
    assert s.names() == ["retries_stopped", "call_failed"]
    assert s.of("retries_stopped")[0]["reason"] == "not_idempotent"
    assert s.route.counts["retries"] == 0 and s.route.counts["failed"] == 1


def test_no_retry_for_a_business_code() -> None:
    s = setup({"retry": retry(on=["timeout", "crashed", "unavailable"])})
    err = business()
    d = s.driver([err, "never"])
    result = d.run(s.call())
    assert result.error is err and result.value is None
    assert (result.degraded, result.source, result.attempts) == (False, "none", 1)
    assert d.numbers == [1] and d.backoffs == []
    assert s.events == []  # not a failure: no retry, no retries_stopped, no call_failed
    counts = s.route.counts
    assert (counts["business_errors"], counts["failed"], counts["ok"]) == (1, 0, 0)


def test_no_attempt_starts_at_or_after_the_deadline() -> None:
    s = setup({"retry": retry(max_attempts=10, base=0.25, max=0.25)})
    d = s.driver(lambda _a: Step(crashed(), 0.25))
    deadline = START + 1.0
    result = d.run(s.call(deadline=deadline))
    # attempt 1: [0, .25), backoff .25, attempt 2: [.5, .75); .75 + .25 >= 1.0: stop
    assert [(a.number, t) for a, t in d.attempts] == [(1, START), (2, START + 0.5)]
    assert all(t < deadline for _, t in d.attempts)
    assert d.backoffs == [0.25]
    assert isinstance(result.error, RemoteError) and result.error.code == "crashed"
    assert s.names() == ["retry", "retries_stopped", "call_failed"]
    stopped = s.of("retries_stopped")[0]
    assert (stopped["reason"], stopped["attempts"], stopped["code"]) == ("deadline", 2, "crashed")


# --- circuit breaker ---------------------------------------------------------------------


def test_breaker_opens_and_then_refuses_without_an_attempt() -> None:
    s = setup({"breaker": BREAKER})
    trip(s)
    changes = s.of("breaker_state_changed")
    assert [(c["old"], c["new"], c["reason"]) for c in changes] == [
        ("closed", "open", "failure_rate")
    ]
    assert changes[0]["route"] == "a->b"
    d = s.driver(["never"])
    result = d.run(s.call("r3"))
    assert d.attempts == []
    assert isinstance(result.error, CircuitOpen)
    assert result.error.code == "circuit_open"
    assert result.error.retry_at == 2.0 and result.error.state is BreakerState.OPEN
    assert (result.value, result.degraded, result.source) == (None, False, "none")
    assert s.of("call_failed")[-1]["code"] == "circuit_open"
    assert s.route.counts["failed"] == 3


def test_retrying_circuit_open_waits_for_the_next_trial() -> None:
    s = setup({"breaker": BREAKER, "retry": retry(base=0.125, max=0.125, on=["circuit_open"])})
    trip(s)
    s.clock.advance(0.5)  # 1.5 s of the 2 s open wait remain
    d = s.driver(["pong"])
    result = d.run(s.call("r3", deadline=START + 64.0))
    assert d.backoffs == [1.5]  # max(backoff 0.125, retry_at 1.5)
    assert d.numbers == [2]  # attempt 1 was refused by the breaker
    assert result == CallResult("pong", None, False, "primary", 2)
    assert [(e["attempt"], e["code"], e["delay_s"]) for e in s.of("retry")] == [
        (2, "circuit_open", 1.5)
    ]
    changes = [(c["old"], c["new"], c["reason"]) for c in s.of("breaker_state_changed")]
    assert changes[1:] == [
        ("open", "half_open", "open_wait_elapsed"),
        ("half_open", "closed", "trials_succeeded"),
    ]


def test_retrying_circuit_open_gives_up_when_the_trial_is_after_the_deadline() -> None:
    s = setup({"breaker": BREAKER, "retry": retry(on=["circuit_open"])})
    trip(s)
    d = s.driver(["never"])
    result = d.run(s.call("r3", deadline=s.clock.now + 1.0))  # next trial in 2 s
    assert d.attempts == [] and d.backoffs == []
    assert isinstance(result.error, CircuitOpen)
    assert s.of("retry") == []


def test_half_open_lets_exactly_one_trial_through_and_success_closes() -> None:
    s = setup({"breaker": BREAKER})
    trip(s)
    s.clock.advance(2.0)
    trial = s.call("trial")
    assert advance_to_attempt(trial).number == 1
    assert s.state() is BreakerState.HALF_OPEN

    d = s.driver(["never"])
    refused = d.run(s.call("second"))
    assert d.attempts == []
    assert isinstance(refused.error, CircuitOpen)
    assert refused.error.retry_at == 0.0 and refused.error.state is BreakerState.HALF_OPEN

    assert finish(trial, Outcome(value="pong")).value == "pong"
    assert s.state() is BreakerState.CLOSED
    after = s.driver(["pong"])
    assert after.run(s.call("third")).value == "pong" and after.numbers == [1]


def test_forced_open_refuses_with_no_retry_time_and_no_retry() -> None:
    s = setup({"breaker": BREAKER, "retry": retry(on=["circuit_open", "crashed"])})
    snap = s.table.force("b", "open")
    assert snap["state"] == "open" and snap["forced"] is True
    d = s.driver(["never"])
    result = d.run(s.call())
    assert d.attempts == [] and d.backoffs == []
    assert isinstance(result.error, CircuitOpen) and result.error.retry_at is None
    assert s.of("retry") == []
    s.table.force("b", "closed")
    assert s.driver(["pong"]).run(s.call("r2")).value == "pong"


# --- fallback: static --------------------------------------------------------------------


def static(reply: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"mode": "static", "reply": reply, **kw}


def test_static_fallback_answers_with_the_named_type() -> None:
    s = setup({"fallback": static({"scores": [0.5]}, type="test.guarded.Reply")})
    d = s.driver([crashed()])
    result = d.run(s.call(reply_type="test.guarded.Other"))  # fallback.type wins
    assert isinstance(result.value, GuardedReply) and result.value.scores == [0.5]
    assert (result.error, result.degraded, result.source, result.attempts) == (
        None, True, "static", 1,
    )  # fmt: skip
    assert s.of("fallback") == [
        {"route": "a->b", "caller": "a", "target": "b", "mode": "static", "code": "crashed",
         "ok": True, "degraded": True}
    ]  # fmt: skip
    counts = s.route.counts
    assert (counts["degraded"], counts["failed"], counts["ok"]) == (1, 0, 0)


def test_static_fallback_uses_the_requests_reply_type() -> None:
    s = setup({"fallback": static({"label": "cached"})})
    result = s.driver([late()]).run(s.call(reply_type="test.guarded.Other"))
    assert result.value == GuardedOther(label="cached")
    assert result.degraded and result.source == "static"


def test_static_fallback_gives_each_call_a_fresh_copy() -> None:
    s = setup({"fallback": static({"scores": [0.5]}, type="test.guarded.Reply")})
    first = s.driver([crashed()]).run(s.call("r1")).value
    first.scores.append(9.0)
    second = s.driver([crashed()]).run(s.call("r2")).value
    assert second is not first
    assert second.scores == [0.5]


@pytest.mark.parametrize(
    ("fallback", "reply_type"),
    [
        (static({"scores": "not a list"}, type="test.guarded.Reply"), None),
        (static({"nope": 1}, type="test.guarded.Reply"), None),
        (static({"scores": []}, type="test.guarded.NoSuchType"), None),
        (static({"scores": []}), None),  # neither fallback.type nor reply_type
    ],
)
def test_an_invalid_static_reply_returns_the_original_error(
    fallback: dict[str, Any], reply_type: str | None
) -> None:
    s = setup({"fallback": fallback})
    err = crashed()
    result = s.driver([err]).run(s.call(reply_type=reply_type))
    assert result == CallResult(None, err, False, "none", 1)
    [event] = s.of("fallback")
    assert event["ok"] is False and event["mode"] == "static" and event["code"] == "crashed"
    assert event["why"]
    assert s.names() == ["fallback", "call_failed"]
    assert s.route.counts["failed"] == 1 and s.route.counts["degraded"] == 0


def test_static_fallback_answers_a_breaker_refusal() -> None:
    s = setup(
        {"breaker": BREAKER, "fallback": static({"scores": [0.0]}, type="test.guarded.Reply")}
    )
    for rid in ("trip1", "trip2"):
        s.driver([crashed()]).run(s.call(rid))  # both answered by the fallback
    d = s.driver(["never"])
    result = d.run(s.call("r3"))
    assert d.attempts == []
    assert result.value == GuardedReply(scores=[0.0]) and result.degraded
    assert s.of("fallback")[-1]["code"] == "circuit_open"


# --- fallback: last_good -----------------------------------------------------------------


def test_last_good_before_any_success_returns_the_original_error() -> None:
    s = setup({"fallback": {"mode": "last_good"}})
    err = crashed()
    result = s.driver([err]).run(s.call())
    assert result == CallResult(None, err, False, "none", 1)
    [event] = s.of("fallback")
    assert (event["mode"], event["ok"], event["code"]) == ("last_good", False, "crashed")
    assert s.route.counts["failed"] == 1


def test_last_good_answers_with_the_last_successful_reply() -> None:
    s = setup({"fallback": {"mode": "last_good"}})
    s.driver([GuardedReply(scores=[0.25])]).run(s.call("r1"))
    s.driver([GuardedReply(scores=[0.75])]).run(s.call("r2"))
    result = s.driver([late()]).run(s.call("r3"))
    assert result.value == GuardedReply(scores=[0.75])
    assert (result.error, result.degraded, result.source, result.attempts) == (
        None, True, "last_good", 1,
    )  # fmt: skip
    assert s.of("fallback")[-1] == {
        "route": "a->b", "caller": "a", "target": "b", "mode": "last_good", "code": "timeout",
        "ok": True, "degraded": True,
    }  # fmt: skip
    assert s.route.counts["ok"] == 2 and s.route.counts["degraded"] == 1


def test_a_last_good_answer_marked_degraded_leaves_the_earlier_reply_unmarked() -> None:
    # Both drivers mark a fallback's answer with ``mark_degraded(result.value)``. If the
    # last-good answer is the very object the earlier primary call returned, that healthy
    # reply becomes "degraded" after the fact. (The static fallback hands out copies.)
    s = setup({"fallback": {"mode": "last_good"}})
    healthy = s.driver([GuardedReply(scores=[0.5])]).run(s.call("r1")).value
    fallback = s.driver([late()]).run(s.call("r2"))
    assert fallback.value == healthy and fallback.degraded
    mark_degraded(fallback.value)  # what System.ask and the actor runtime do
    assert not is_degraded(healthy)


def test_mutating_a_last_good_answer_changes_neither_the_original_nor_later_answers() -> None:
    s = setup({"fallback": {"mode": "last_good"}})
    healthy = s.driver([GuardedReply(scores=[0.5])]).run(s.call("r1")).value
    fallback = s.driver([late()]).run(s.call("r2")).value
    fallback.scores.append(9.0)
    again = s.driver([late()]).run(s.call("r3")).value
    assert healthy.scores == [0.5]
    assert again.scores == [0.5]


# --- fallback: substitute ----------------------------------------------------------------


def substitute(**kw: Any) -> dict[str, Any]:
    return {"mode": "substitute", "target": "b_backup", **kw}


def test_substitute_is_asked_with_the_overall_deadline() -> None:
    s = setup({"timeout": 0.25, "fallback": substitute()})
    d = s.driver([Step(late(), 0.25)], substitute=["from backup"])
    deadline = START + 4.0
    result = d.run(s.call(deadline=deadline))
    assert [a for a, _ in d.attempts] == [
        Attempt("b", 1, START + 0.25, False),
        Attempt("b_backup", 1, deadline, True),
    ]
    assert result == CallResult("from backup", None, True, "substitute", 1)
    assert s.of("fallback")[0]["mode"] == "substitute" and s.of("fallback")[0]["ok"] is True
    assert s.route.counts["degraded"] == 1


def test_a_failing_substitute_returns_the_primarys_error() -> None:
    s = setup({"fallback": substitute()})
    primary = crashed()
    d = s.driver([primary], substitute=[late()])
    result = d.run(s.call())
    assert result == CallResult(None, primary, False, "none", 1)
    [event] = s.of("fallback")
    assert event["ok"] is False and "b_backup" in event["why"] and "timeout" in event["why"]
    assert s.of("call_failed")[0]["code"] == "crashed"


def test_no_substitute_attempt_once_the_deadline_has_passed() -> None:
    s = setup({"fallback": substitute()})
    primary = late()
    d = s.driver([Step(primary, 1.0)], substitute=["never"])
    result = d.run(s.call(deadline=START + 1.0))
    assert [a.substitute for a, _ in d.attempts] == [False]
    assert result.error is primary
    [event] = s.of("fallback")
    assert event["ok"] is False and event["why"] == "deadline passed"


def test_a_substitute_success_is_not_remembered_as_last_good() -> None:
    s = setup({"fallback": substitute()})
    s.driver([crashed()], substitute=["from backup"]).run(s.call())
    assert s.route.last_good is None


# --- fallback: which errors, degraded flag ------------------------------------------------


def test_fallback_does_not_answer_a_business_error() -> None:
    s = setup({"fallback": static({"scores": [0.0]}, type="test.guarded.Reply")})
    err = business()
    result = s.driver([err]).run(s.call())
    assert result == CallResult(None, err, False, "none", 1)
    assert s.events == []
    assert s.route.counts["business_errors"] == 1 and s.route.counts["degraded"] == 0


def test_fallback_answers_only_the_codes_in_on() -> None:
    s = setup({"fallback": static({"scores": [0.0]}, type="test.guarded.Reply", on=["timeout"])})
    err = crashed()
    result = s.driver([err]).run(s.call("r1"))
    assert result.error is err and s.of("fallback") == []
    answered = s.driver([late()]).run(s.call("r2"))
    assert answered.value == GuardedReply(scores=[0.0]) and answered.degraded


def test_error_mode_is_the_same_as_no_fallback() -> None:
    s = setup({"fallback": {"mode": "error"}})
    err = crashed()
    assert s.driver([err]).run(s.call()) == CallResult(None, err, False, "none", 1)
    assert s.names() == ["call_failed"]


def test_degraded_false_is_not_flagged() -> None:
    s = setup({"fallback": static({"scores": [0.0]}, type="test.guarded.Reply", degraded=False)})
    result = s.driver([crashed()]).run(s.call())
    assert result.value == GuardedReply(scores=[0.0])
    assert result.degraded is False and result.source == "static"
    assert s.of("fallback")[0]["degraded"] is False
    assert s.route.counts["ok"] == 1 and s.route.counts["degraded"] == 0


# --- bulkhead ----------------------------------------------------------------------------


def bulkhead_snapshot(s: Setup) -> dict[str, int]:
    snap: dict[str, int] = s.route.snapshot()["bulkhead"]
    return snap


def test_a_full_bulkhead_rejects_at_once() -> None:
    s = setup({"bulkhead": {"max_concurrent": 1, "queue": 0}})
    first = s.call("first")
    advance_to_attempt(first)
    d = s.driver(["never"])
    result = d.run(s.call("second"))
    assert d.attempts == []
    assert isinstance(result.error, BulkheadFull) and result.error.code == "bulkhead_full"
    assert (result.source, result.attempts) == ("none", 0)
    assert s.of("bulkhead_rejected") == [
        {"route": "a->b", "caller": "a", "target": "b", "in_flight": 1, "queued": 0}
    ]
    assert s.of("call_failed")[0]["code"] == "bulkhead_full"
    assert s.route.counts["bulkhead_rejected"] == 1 and s.route.counts["failed"] == 1
    assert finish(first, Outcome(value="pong")).value == "pong"
    assert bulkhead_snapshot(s) == {"in_flight": 0, "queued": 0, "rejected_total": 1}


def test_a_queued_call_proceeds_once_the_first_one_leaves() -> None:
    s = setup({"bulkhead": {"max_concurrent": 1, "queue": 1}})
    first = s.call("first")
    advance_to_attempt(first)
    second = s.call("second", deadline=START + 8.0)
    effect = second.send(None)
    assert effect == Queue("second", START + 8.0)
    woken: list[str] = []
    s.route.when_admitted("second", lambda: woken.append("second"))
    assert woken == [] and bulkhead_snapshot(s)["queued"] == 1
    finish(first, Outcome(value="one"))
    assert woken == ["second"]
    assert bulkhead_snapshot(s) == {"in_flight": 1, "queued": 0, "rejected_total": 0}
    assert second.send(True) == Attempt("b", 1, START + 8.0, False)
    assert finish(second, Outcome(value="two")) == CallResult("two", None, False, "primary", 1)
    assert bulkhead_snapshot(s)["in_flight"] == 0


def test_a_queued_call_that_times_out_fails_and_keeps_the_slot_count_right() -> None:
    s = setup({"bulkhead": {"max_concurrent": 1, "queue": 1}})
    first = s.call("first")
    advance_to_attempt(first)
    d = s.driver(["never"], admit=[False])
    result = d.run(s.call("second", deadline=START + 1.0))
    assert d.queues == [Queue("second", START + 1.0)] and d.attempts == []
    assert isinstance(result.error, AskTimeout)
    assert (result.value, result.degraded, result.source, result.attempts) == (
        None, False, "none", 0,
    )  # fmt: skip
    assert s.names() == ["bulkhead_timeout"]
    assert s.route.counts["failed"] == 1
    assert bulkhead_snapshot(s) == {"in_flight": 1, "queued": 0, "rejected_total": 0}
    finish(first, Outcome(value="one"))
    assert bulkhead_snapshot(s) == {"in_flight": 0, "queued": 0, "rejected_total": 0}
    # the slot really is free: the next call is admitted at once
    assert s.driver(["three"]).run(s.call("third")).value == "three"


def test_a_retry_takes_no_second_bulkhead_slot() -> None:
    s = setup({"bulkhead": {"max_concurrent": 1, "queue": 0}, "retry": retry()})
    seen: list[int] = []

    def target(_attempt: Attempt) -> Any:
        seen.append(bulkhead_snapshot(s)["in_flight"])
        return crashed() if len(seen) == 1 else "pong"

    result = s.driver(target).run(s.call())
    assert result.value == "pong" and result.attempts == 2
    assert seen == [1, 1]
    assert bulkhead_snapshot(s)["in_flight"] == 0


def test_closing_a_queued_call_gives_up_its_queue_place() -> None:
    # A driver that abandons the call while it waits for a slot (the host's thread is
    # interrupted, the generator is dropped) must not leave the request in the queue: it
    # would be admitted later and hold that slot for good.
    s = setup({"bulkhead": {"max_concurrent": 1, "queue": 1}})
    first = s.call("first")
    advance_to_attempt(first)
    second = s.call("second", deadline=None)
    assert isinstance(second.send(None), Queue)
    second.close()
    finish(first, Outcome(value="one"))
    assert bulkhead_snapshot(s)["in_flight"] == 0
    assert s.driver(["three"]).run(s.call("third")).value == "three"


# --- abandoning a call -------------------------------------------------------------------


def test_closing_mid_attempt_frees_the_half_open_trial() -> None:
    s = setup({"breaker": BREAKER})
    trip(s)
    s.clock.advance(2.0)
    trial = s.call("trial")
    advance_to_attempt(trial)
    refused = s.driver(["never"]).run(s.call("refused"))
    assert isinstance(refused.error, CircuitOpen)
    trial.close()
    assert s.route.breaker is not None
    assert s.route.breaker.snapshot()["trials_in_flight"] == 0
    assert s.state() is BreakerState.HALF_OPEN  # no outcome was counted
    d = s.driver(["pong"])
    assert d.run(s.call("next")).value == "pong" and d.numbers == [1]
    assert s.state() is BreakerState.CLOSED


def test_closing_mid_attempt_frees_the_bulkhead_slot() -> None:
    s = setup({"bulkhead": {"max_concurrent": 1, "queue": 0}, "breaker": BREAKER})
    call = s.call("abandoned")
    advance_to_attempt(call)
    assert bulkhead_snapshot(s)["in_flight"] == 1
    call.close()
    assert bulkhead_snapshot(s)["in_flight"] == 0
    assert s.driver(["pong"]).run(s.call("next")).value == "pong"
    assert s.route.breaker is not None
    assert s.route.breaker.snapshot()["calls_in_window"] == 1  # the abandoned one is not


def test_closing_during_a_backoff_frees_the_bulkhead_slot() -> None:
    s = setup({"bulkhead": {"max_concurrent": 1, "queue": 0}, "retry": retry()})
    call = s.call("abandoned")
    advance_to_attempt(call)
    assert call.send(Outcome(error=crashed())) == Backoff(0.125)
    call.close()
    assert bulkhead_snapshot(s)["in_flight"] == 0


# --- events ------------------------------------------------------------------------------


def test_every_event_names_route_caller_and_target() -> None:
    s = setup(
        {
            "breaker": BREAKER,
            "retry": retry(max_attempts=2),
            "fallback": {"mode": "last_good"},
            "bulkhead": {"max_concurrent": 1, "queue": 0},
        }
    )
    s.driver([crashed(), crashed()]).run(s.call("r1"))
    s.driver([crashed()]).run(s.call("r2", idempotent=False))
    refused = s.call("r3")
    with pytest.raises(StopIteration):
        refused.send(None)  # the breaker is open: no attempt, done at once
    assert {"retry", "retries_stopped", "fallback", "call_failed", "breaker_state_changed"} <= set(
        s.names()
    )
    for _name, fields in s.events:
        assert (fields["route"], fields["caller"], fields["target"]) == ("a->b", "a", "b")
