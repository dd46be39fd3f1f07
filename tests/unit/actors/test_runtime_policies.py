"""ActorRuntime with resilience policies on its routes, driven in-process.

Same fakes as ``test_runtime.py`` (from ``runtime_fakes.py``): a fake Port records sends
and ``call_later`` keys, a fake clock drives deadlines, and every timer (ask deadlines,
retry back-offs ``sleep:``, bulkhead queue waits ``queue:``) is fired by hand through
``runtime.on_timer(key)``.

The circuit breaker measures its open wait on the real ``time.monotonic``: the breakers
below use a huge ``open_s`` so that never matters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from runtime_fakes import (
    ASK_TIMEOUT,
    CLIENT,
    GONE,
    NOW,
    OTHER,
    OTHER_ADDR,
    SELF,
    FakeClock,
    FakePort,
    RuntimeHarness,
)

from callboard.actors import Actor, handler
from callboard.actors._runtime import ActorRuntime, reply_value
from callboard.errors import AskTimeout, NoSuchActor, RemoteError
from callboard.messages import (
    Envelope,
    Message,
    decode_envelope,
    is_degraded,
)
from callboard.resilience import Policy

SUB = "spare"
SUB_ADDR = "addr:spare"
ROUTE = f"{SELF}->{OTHER}"
MAX_FRAME = 65536

RETRY: dict[str, Any] = {
    "max_attempts": 3,
    "backoff": "fixed",
    "base": 0.05,
    "max": 0.05,
    "on": ["timeout", "restarting", "unavailable"],
}
# Trips after two failures in a row and stays open (real monotonic clock) for the test.
BREAKER: dict[str, Any] = {"min_calls": 2, "size": 2, "open_s": 1000.0, "open_max_s": 1000.0}


# --- messages ----------------------------------------------------------------------------


class Ping(Message):
    """Idempotent: retry policies may send it again."""

    type_name: ClassVar[str] = "test.rtpol.Ping"
    idempotent: ClassVar[bool] = True
    reply_type: ClassVar[str | None] = "test.rtpol.Pong"
    n: int


class Pong(Message):
    type_name: ClassVar[str] = "test.rtpol.Pong"
    n: int


class Alt(Message):
    """A reply type named by ``fallback.type`` (not the request's ``reply_type``)."""

    type_name: ClassVar[str] = "test.rtpol.Alt"
    n: int
    note: str = ""


class Write(Message):
    """Not idempotent: never retried."""

    type_name: ClassVar[str] = "test.rtpol.Write"
    reply_type: ClassVar[str | None] = "test.rtpol.Pong"
    n: int


class Call(Message):
    """Ask ``target`` for a Ping (or a Write) of ``n``; report what came back."""

    type_name: ClassVar[str] = "test.rtpol.Call"
    target: str = OTHER
    n: int = 0
    write: bool = False
    timeout: float | None = None


class Hello(Message):
    type_name: ClassVar[str] = "test.rtpol.Hello"


class Boom(Message):
    type_name: ClassVar[str] = "test.rtpol.Boom"


class Report(Message):
    type_name: ClassVar[str] = "test.rtpol.Report"
    text: str
    n: int = 0
    marked: bool = False  # is_degraded(reply) inside the handler
    got_type: str = ""  # the reply's type_name
    error_type: str = ""  # the class of the exception the handler saw


class Caller(Actor):
    def __init__(self) -> None:
        self.got: list[Any] = []
        self.stopped: list[str] = []

    def on_stop(self, reason: str) -> None:
        self.stopped.append(reason)

    @handler
    async def call(self, msg: Call) -> Report:
        req: Message = Write(n=msg.n) if msg.write else Ping(n=msg.n)
        try:
            reply = await self.ask(msg.target, req, timeout=msg.timeout)
        except AskTimeout as exc:
            return Report(text="timeout", error_type=type(exc).__name__)
        except RemoteError as exc:
            return Report(text=f"remote: {exc.code}", error_type=type(exc).__name__)
        self.got.append(reply)
        return Report(text="ok", n=reply.n, marked=is_degraded(reply), got_type=reply.type_name)

    @handler
    def hello(self, msg: Hello) -> Report:
        return Report(text="hi")

    @handler
    def boom(self, msg: Boom) -> None:
        raise RuntimeError("boom")


# --- harness -----------------------------------------------------------------------------


Event = tuple[str, dict[str, Any]]


@dataclass
class Harness(RuntimeHarness):
    events: list[Event]

    @property
    def actor(self) -> Caller:
        assert isinstance(self.rt.actor, Caller)
        return self.rt.actor

    def nothing_sent(self) -> None:
        assert self.port.sent == [], [decode_envelope(f) for _, f in self.port.sent]

    def no_request(self) -> None:
        """No request went out (answers to askers may have)."""
        asks = [e for e in (decode_envelope(f) for _, f in self.port.sent) if e.kind == "ask"]
        assert asks == []

    def answer(self, req_id: str, address: Any = CLIENT) -> Envelope:
        """The one reply (or error) sent to the asker of ``req_id``."""
        envs = self.port.take(address)
        assert len(envs) == 1, envs
        assert envs[0].causation_id == req_id
        return envs[0]

    def report(self, req_id: str, address: Any = CLIENT) -> tuple[Report, bool]:
        """The handler's Report for ``req_id`` and its reply envelope's ``degraded`` flag."""
        env = self.answer(req_id, address)
        assert env.kind == "reply", env
        value = reply_value(env)
        assert isinstance(value, Report)
        return value, env.degraded

    def fire(self, prefix: str) -> float:
        """Fire the one timer armed with ``prefix``; return its delay."""
        delay, key = self.port.take_timer(prefix)
        self.rt.on_timer(key)
        return delay

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for n, fields in self.events if n == name]


def make(policies: dict[str, dict[str, Any]] | None = None) -> Harness:
    port, clock = FakePort(), FakeClock()
    events: list[Event] = []
    rt = ActorRuntime(
        SELF,
        Caller,
        {},
        port,
        {SELF: "addr:svc", OTHER: OTHER_ADDR, SUB: SUB_ADDR, GONE: None},
        max_frame_bytes=MAX_FRAME,
        ask_timeout=ASK_TIMEOUT,
        clock=clock,
        policies={k: Policy.model_validate(v) for k, v in (policies or {}).items()},
        on_policy_event=lambda name, fields: events.append((name, fields)),
    )
    rt.start()
    return Harness(rt, port, clock, events)


@pytest.fixture
def plain() -> Iterator[Harness]:
    yield make()


# --- no policy ---------------------------------------------------------------------------


def test_without_policy_one_plain_attempt(plain: Harness) -> None:
    h = plain
    req = h.ask(Call(n=3), correlation_id="conv-1")
    out = h.request()
    assert out.attempt == 1
    assert out.type == Ping.type_name
    assert out.payload == {"n": 3}
    assert (out.correlation_id, out.causation_id) == ("conv-1", req)
    assert out.deadline == pytest.approx(NOW + ASK_TIMEOUT)
    assert h.rt.routes.route(OTHER) is None
    h.error_to(out, "unavailable")
    assert h.report(req) == (Report(text="remote: unavailable", error_type="RemoteError"), False)
    assert h.port.armed("sleep:") == []
    h.nothing_sent()
    assert h.events == []


def test_policy_for_this_route_applies() -> None:
    h = make({ROUTE: {"retry": RETRY}})
    req = h.ask(Call(n=1))
    h.error_to(h.request(), "unavailable")
    h.fire("sleep:")
    h.reply_to(h.request(), Pong(n=1))
    assert h.report(req)[0].n == 1


def test_policy_of_another_caller_does_not_apply() -> None:
    h = make({f"someone->{OTHER}": {"retry": RETRY}})
    assert h.rt.routes.route(OTHER) is None
    req = h.ask(Call(n=1))
    h.error_to(h.request(), "unavailable")
    assert h.report(req)[0].text == "remote: unavailable"
    assert h.port.armed("sleep:") == []


# --- retry -------------------------------------------------------------------------------


def test_retry_after_unavailable_sends_attempt_two() -> None:
    h = make({OTHER: {"retry": RETRY}})
    req = h.ask(Call(n=4), correlation_id="conv-7", deadline=NOW + 30)
    first = h.request()
    assert first.attempt == 1
    h.error_to(first, "unavailable")

    h.nothing_sent()  # waiting in back-off: neither a new attempt nor an answer yet
    assert h.fire("sleep:") == pytest.approx(0.05)
    second = h.request()
    assert second.attempt == 2
    assert second.correlation_id == first.correlation_id == "conv-7"
    assert second.causation_id == first.causation_id == req
    assert second.id != first.id
    assert (second.type, second.payload, second.target) == (Ping.type_name, {"n": 4}, OTHER)
    assert second.deadline == pytest.approx(NOW + ASK_TIMEOUT)

    h.reply_to(second, Pong(n=4))
    report, degraded = h.report(req)
    assert report == Report(text="ok", n=4, got_type=Pong.type_name)
    assert degraded is False
    counts = h.rt.routes.route(OTHER).snapshot()["counts"]  # type: ignore[union-attr]
    assert (counts["calls"], counts["retries"], counts["ok"]) == (1, 1, 1)


def test_retry_gives_up_after_max_attempts() -> None:
    h = make({OTHER: {"retry": RETRY}})
    req = h.ask(Call(n=1))
    for attempt in (1, 2, 3):
        out = h.request()
        assert out.attempt == attempt
        h.error_to(out, "unavailable")
        if attempt < 3:
            h.fire("sleep:")
    assert h.port.armed("sleep:") == []
    assert h.report(req) == (Report(text="remote: unavailable", error_type="RemoteError"), False)
    stopped = h.named("retries_stopped")
    assert [(e["reason"], e["attempts"], e["code"]) for e in stopped] == [
        ("attempts_exhausted", 3, "unavailable")
    ]


def test_retry_of_restarting_target_reaches_its_next_incarnation() -> None:
    h = make({GONE: {"retry": RETRY}})
    req = h.ask(Call(target=GONE, n=2))
    h.nothing_sent()  # "restarting" at once: no envelope, a back-off instead
    h.rt.on_directory({GONE: "addr:gone-2"}, ())
    h.fire("sleep:")
    out = h.request("addr:gone-2")
    assert (out.attempt, out.target) == (2, GONE)
    h.reply_to(out, Pong(n=2), from_addr="addr:gone-2")
    assert h.report(req) == (Report(text="ok", n=2, got_type=Pong.type_name), False)


def test_attempt_timeout_is_retried_and_a_late_reply_is_dropped() -> None:
    h = make({OTHER: {"timeout": 0.2, "retry": RETRY}})
    req = h.ask(Call(n=5))
    first = h.request()
    assert first.deadline == pytest.approx(NOW + 0.2)
    h.clock.now += 0.2
    delay, key = h.port.take_timer("ask:")
    assert key == "ask:" + first.id
    assert delay == pytest.approx(0.2)
    h.rt.on_timer(key)

    h.clock.now += 0.05
    h.fire("sleep:")
    second = h.request()
    assert second.attempt == 2
    assert second.deadline == pytest.approx(NOW + 0.25 + 0.2)  # a fresh per-attempt timeout

    h.reply_to(first, Pong(n=-1))  # attempt 1 answers too late: ignored
    h.nothing_sent()
    h.reply_to(second, Pong(n=5))
    assert h.report(req)[0] == Report(text="ok", n=5, got_type=Pong.type_name)


def test_no_retry_when_the_backoff_would_end_past_the_deadline() -> None:
    h = make({OTHER: {"retry": RETRY}})
    req = h.ask(Call(n=1), deadline=NOW + 0.03)  # the back-off is 0.05 s
    h.error_to(h.request(), "unavailable")
    assert h.port.armed("sleep:") == []
    assert h.report(req)[0].text == "remote: unavailable"
    assert [e["reason"] for e in h.named("retries_stopped")] == ["deadline"]


def test_unknown_target_with_a_policy_raises_at_once() -> None:
    h = make({"nobody": {"retry": RETRY}})
    with pytest.raises(NoSuchActor):
        h.rt.ask("nobody", Ping(n=1), None)
    h.nothing_sent()
    assert h.port.timers == []


def test_non_idempotent_message_is_not_retried() -> None:
    h = make({OTHER: {"retry": RETRY}})
    req = h.ask(Call(n=1, write=True))
    out = h.request()
    assert (out.type, out.attempt) == (Write.type_name, 1)
    h.error_to(out, "unavailable")
    assert h.report(req) == (Report(text="remote: unavailable", error_type="RemoteError"), False)
    assert h.port.armed("sleep:") == []
    h.nothing_sent()
    assert h.named("retry") == []
    assert [e["reason"] for e in h.named("retries_stopped")] == ["not_idempotent"]


# --- per-attempt timeout -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_deadline", "expected"),
    [(NOW + 30, NOW + 0.2), (NOW + 0.1, NOW + 0.1), (None, NOW + 0.2)],
)
def test_attempt_deadline_is_the_sooner_of_request_deadline_and_policy_timeout(
    request_deadline: float | None, expected: float
) -> None:
    h = make({OTHER: {"timeout": 0.2}})
    h.ask(Call(n=1), deadline=request_deadline)
    out = h.request()
    assert out.deadline == pytest.approx(expected)
    delay, key = h.port.take_timer("ask:")
    assert key == "ask:" + out.id
    assert delay == pytest.approx(expected - NOW)


def test_attempt_timeout_without_retry_reaches_the_handler() -> None:
    h = make({OTHER: {"timeout": 0.2}})
    req = h.ask(Call(n=1))
    h.request()
    h.clock.now += 0.2
    h.fire("ask:")
    assert h.report(req) == (Report(text="timeout", error_type="AskTimeout"), False)


# --- fallbacks ---------------------------------------------------------------------------


def test_static_fallback_after_retries_are_exhausted() -> None:
    h = make(
        {
            OTHER: {
                "retry": {**RETRY, "max_attempts": 2},
                "fallback": {"mode": "static", "reply": {"n": -1}},
            }
        }
    )
    req = h.ask(Call(n=8))
    h.error_to(h.request(), "unavailable")
    h.fire("sleep:")
    second = h.request()
    assert second.attempt == 2
    h.error_to(second, "unavailable")

    report, degraded = h.report(req)
    assert report == Report(text="ok", n=-1, marked=True, got_type=Pong.type_name)
    assert degraded is True
    h.nothing_sent()
    counts = h.rt.routes.route(OTHER).snapshot()["counts"]  # type: ignore[union-attr]
    assert (counts["degraded"], counts["retries"]) == (1, 1)


def test_static_fallback_with_its_own_type_and_no_retry() -> None:
    h = make(
        {
            OTHER: {
                "fallback": {"mode": "static", "type": Alt.type_name,
                             "reply": {"n": -2, "note": "cached"}},
            }
        }
    )  # fmt: skip
    req = h.ask(Call(n=8))
    h.error_to(h.request(), "crashed")
    report, degraded = h.report(req)
    assert report == Report(text="ok", n=-2, marked=True, got_type=Alt.type_name)
    assert degraded is True
    assert h.actor.got == [Alt(n=-2, note="cached")]

    # Each fallback answer is a fresh object: changing one does not change the next.
    h.actor.got[0].n = 99
    req2 = h.ask(Call(n=8))
    h.error_to(h.request(), "crashed")
    assert h.report(req2)[0].n == -2


def test_static_fallback_does_not_answer_business_errors() -> None:
    h = make({OTHER: {"fallback": {"mode": "static", "reply": {"n": -1}}}})
    req = h.ask(Call(n=1))
    h.error_to(h.request(), "out_of_stock")
    assert h.report(req) == (Report(text="remote: out_of_stock", error_type="RemoteError"), False)
    assert h.named("fallback") == []


def test_substitute_fallback_asks_the_substitute() -> None:
    h = make({OTHER: {"timeout": 0.2, "fallback": {"mode": "substitute", "target": SUB}}})
    req = h.ask(Call(n=6), correlation_id="conv-s", deadline=NOW + 5)
    first = h.request()
    h.error_to(first, "unavailable")

    sub = h.request(SUB_ADDR)
    assert (sub.target, sub.attempt, sub.type) == (SUB, 1, Ping.type_name)
    assert sub.payload == {"n": 6}
    assert (sub.correlation_id, sub.causation_id) == ("conv-s", req)
    assert sub.deadline == pytest.approx(NOW + 5)  # the request's whole budget
    h.nothing_sent()

    h.reply_to(sub, Pong(n=60), from_addr=SUB_ADDR)
    report, degraded = h.report(req)
    assert report == Report(text="ok", n=60, marked=True, got_type=Pong.type_name)
    assert degraded is True


def test_substitute_failing_too_gives_the_original_error() -> None:
    h = make({OTHER: {"fallback": {"mode": "substitute", "target": SUB}}})
    req = h.ask(Call(n=6))
    h.error_to(h.request(), "unavailable")
    h.error_to(h.request(SUB_ADDR), "crashed", from_addr=SUB_ADDR)
    assert h.report(req) == (Report(text="remote: unavailable", error_type="RemoteError"), False)
    [fb] = h.named("fallback")
    assert (fb["mode"], fb["ok"]) == ("substitute", False)


def test_substitute_not_degraded_when_configured_so() -> None:
    h = make({OTHER: {"fallback": {"mode": "substitute", "target": SUB, "degraded": False}}})
    req = h.ask(Call(n=6))
    h.error_to(h.request(), "unavailable")
    h.reply_to(h.request(SUB_ADDR), Pong(n=60), from_addr=SUB_ADDR)
    assert h.report(req) == (Report(text="ok", n=60, got_type=Pong.type_name), False)


def test_substitute_not_in_the_tree_gives_the_original_error() -> None:
    h = make({OTHER: {"fallback": {"mode": "substitute", "target": "nobody"}}})
    req = h.ask(Call(n=6))
    h.error_to(h.request(), "unavailable")
    assert h.report(req)[0].text == "remote: unavailable"
    h.nothing_sent()


def test_last_good_fallback_answers_with_a_marked_copy() -> None:
    h = make({OTHER: {"fallback": {"mode": "last_good"}}})
    none_yet = h.ask(Call(n=1))
    h.error_to(h.request(), "unavailable")
    assert h.report(none_yet) == (
        Report(text="remote: unavailable", error_type="RemoteError"),
        False,
    )

    good = h.ask(Call(n=2))
    h.reply_to(h.request(), Pong(n=2))
    assert h.report(good) == (Report(text="ok", n=2, got_type=Pong.type_name), False)

    stale = h.ask(Call(n=3))
    h.error_to(h.request(), "timeout")
    assert h.report(stale) == (Report(text="ok", n=2, marked=True, got_type=Pong.type_name), True)
    first, second = h.actor.got
    assert first == second == Pong(n=2)
    assert first is not second
    assert not is_degraded(first)  # the earlier, genuine answer is not marked after the fact


# --- taint -------------------------------------------------------------------------------


def test_degraded_reply_from_downstream_taints_the_handlers_reply(plain: Harness) -> None:
    h = plain
    req = h.ask(Call(n=1))
    h.reply_to(h.request(), Pong(n=1), degraded=True)
    assert h.report(req) == (Report(text="ok", n=1, marked=True, got_type=Pong.type_name), True)

    later = h.ask(Call(n=2))
    h.reply_to(h.request(), Pong(n=2))
    assert h.report(later) == (Report(text="ok", n=2, got_type=Pong.type_name), False)
    hello = h.ask(Hello())
    assert h.report(hello) == (Report(text="hi"), False)


def test_taint_stays_with_the_request_that_used_the_degraded_answer(plain: Harness) -> None:
    h = plain
    a = h.ask(Call(n=1), sender="addr:a")
    to_a = h.request()
    b = h.ask(Call(n=2), sender="addr:b")
    to_b = h.request()
    h.reply_to(to_b, Pong(n=2), degraded=True)
    hello = h.ask(Hello())  # handled while a still waits
    h.reply_to(to_a, Pong(n=1))
    assert h.report(b, "addr:b")[1] is True
    assert h.report(a, "addr:a")[1] is False
    assert h.report(hello)[1] is False


def test_business_error_is_neither_answered_by_fallback_nor_tainted() -> None:
    h = make({OTHER: {"fallback": {"mode": "static", "reply": {"n": -1}}}})
    req = h.ask(Call(n=1, target=SUB))  # no policy to SUB: a plain route
    h.reply_to(h.request(SUB_ADDR), Pong(n=1), degraded=True, from_addr=SUB_ADDR)
    assert h.report(req)[1] is True
    req2 = h.ask(Call(n=2))
    h.error_to(h.request(), "out_of_stock")  # business error: no fallback, no taint
    assert h.report(req2) == (Report(text="remote: out_of_stock", error_type="RemoteError"), False)


# --- circuit breaker ---------------------------------------------------------------------


def _trip(h: Harness, times: int = 2) -> None:
    for _ in range(times):
        req = h.ask(Call(n=0))
        h.error_to(h.request(), "unavailable")
        h.answer(req)


def test_open_breaker_refuses_without_sending() -> None:
    h = make({OTHER: {"breaker": BREAKER}})
    _trip(h)
    [snap] = h.rt.routes.breakers()
    assert (snap["route"], snap["state"], snap["caller"], snap["target"]) == (
        ROUTE,
        "open",
        SELF,
        OTHER,
    )

    req = h.ask(Call(n=1))
    h.no_request()
    report, degraded = h.report(req)
    assert report == Report(text="remote: circuit_open", error_type="CircuitOpen")
    assert degraded is False

    h.rt.routes.force(OTHER, "closed")
    assert h.rt.routes.breakers()[0]["state"] == "closed"
    again = h.ask(Call(n=2))
    h.reply_to(h.request(), Pong(n=2))
    assert h.report(again) == (Report(text="ok", n=2, got_type=Pong.type_name), False)


def test_open_breaker_arms_no_ask_timer() -> None:
    h = make({OTHER: {"breaker": BREAKER}})
    _trip(h)
    before = len(h.port.armed("ask:"))
    h.ask(Call(n=1))
    assert len(h.port.armed("ask:")) == before
    assert h.port.armed("sleep:") == []


def test_open_breaker_answers_with_the_fallback() -> None:
    h = make({OTHER: {"breaker": BREAKER, "fallback": {"mode": "static", "reply": {"n": -7}}}})
    for _ in range(2):  # each failure is answered by the fallback too
        req = h.ask(Call(n=0))
        h.error_to(h.request(), "unavailable")
        assert h.report(req)[1] is True
    assert h.rt.routes.breakers()[0]["state"] == "open"

    req = h.ask(Call(n=1))
    h.no_request()
    report, degraded = h.report(req)
    assert report == Report(text="ok", n=-7, marked=True, got_type=Pong.type_name)
    assert degraded is True
    codes = [e["code"] for e in h.named("fallback")]
    assert codes == ["unavailable", "unavailable", "circuit_open"]


def test_forced_open_breaker_refuses_before_any_call() -> None:
    h = make({OTHER: {"breaker": BREAKER}})
    snap = h.rt.routes.force(OTHER, "open")
    assert (snap["state"], snap["forced"]) == ("open", True)
    req = h.ask(Call(n=1))
    h.no_request()
    assert h.report(req)[0].text == "remote: circuit_open"


def test_retry_does_not_wait_for_a_breaker_that_opens_past_the_deadline() -> None:
    retry = {**RETRY, "max_attempts": 5, "on": ["unavailable", "circuit_open"]}
    h = make({OTHER: {"retry": retry, "breaker": BREAKER}})
    req = h.ask(Call(n=1))
    h.error_to(h.request(), "unavailable")
    h.fire("sleep:")
    h.error_to(h.request(), "unavailable")  # the breaker opens now
    h.fire("sleep:")  # attempt 3 is refused by the breaker: no use waiting 1000 s
    h.no_request()
    assert h.port.armed("sleep:") == []
    assert h.report(req)[0] == Report(text="remote: circuit_open", error_type="CircuitOpen")


# --- bulkhead ----------------------------------------------------------------------------


def test_bulkhead_queues_then_admits_then_rejects() -> None:
    h = make({OTHER: {"bulkhead": {"max_concurrent": 1, "queue": 1}}})
    a = h.ask(Call(n=1), sender="addr:a")
    to_a = h.request()
    b = h.ask(Call(n=2), sender="addr:b")
    h.nothing_sent()  # b waits for the slot
    assert len(h.port.armed("queue:")) == 1
    c = h.ask(Call(n=3), sender="addr:c")
    h.no_request()
    assert h.report(c, "addr:c") == (
        Report(text="remote: bulkhead_full", error_type="BulkheadFull"),
        False,
    )
    assert [e["route"] for e in h.named("bulkhead_rejected")] == [ROUTE]

    h.reply_to(to_a, Pong(n=1))  # a's slot frees: b goes out
    assert h.report(a, "addr:a")[0].n == 1
    to_b = h.request()
    assert (to_b.payload, to_b.attempt, to_b.causation_id) == ({"n": 2}, 1, b)
    h.reply_to(to_b, Pong(n=2))
    assert h.report(b, "addr:b")[0] == Report(text="ok", n=2, got_type=Pong.type_name)

    h.fire("queue:")  # b's stale wait timer: nothing happens
    h.nothing_sent()
    bulk = h.rt.routes.route(OTHER).snapshot()["bulkhead"]  # type: ignore[union-attr]
    assert bulk == {"in_flight": 0, "queued": 0, "rejected_total": 1}


def test_bulkhead_rejection_is_answered_by_the_fallback() -> None:
    h = make(
        {
            OTHER: {
                "bulkhead": {"max_concurrent": 1, "queue": 0},
                "fallback": {"mode": "static", "reply": {"n": -3}},
            }
        }
    )
    h.ask(Call(n=1), sender="addr:a")
    h.request()
    b = h.ask(Call(n=2), sender="addr:b")
    h.no_request()
    assert h.report(b, "addr:b") == (
        Report(text="ok", n=-3, marked=True, got_type=Pong.type_name),
        True,
    )
    [fb] = h.named("fallback")
    assert (fb["code"], fb["ok"]) == ("bulkhead_full", True)


def test_bulkhead_queue_wait_times_out_and_never_sends() -> None:
    h = make({OTHER: {"bulkhead": {"max_concurrent": 1, "queue": 1}}})
    a = h.ask(Call(n=1), sender="addr:a")
    to_a = h.request()
    b = h.ask(Call(n=2, timeout=1.0), sender="addr:b")
    h.clock.now += 1.0
    assert h.fire("queue:") == pytest.approx(1.0)
    assert h.report(b, "addr:b") == (Report(text="timeout", error_type="AskTimeout"), False)
    assert [e["route"] for e in h.named("bulkhead_timeout")] == [ROUTE]

    h.reply_to(to_a, Pong(n=1))
    assert h.report(a, "addr:a")[0].n == 1
    h.nothing_sent()  # b never goes out
    bulk = h.rt.routes.route(OTHER).snapshot()["bulkhead"]  # type: ignore[union-attr]
    assert (bulk["in_flight"], bulk["queued"]) == (0, 0)


def test_bulkhead_slot_is_held_across_retries() -> None:
    h = make({OTHER: {"retry": RETRY, "bulkhead": {"max_concurrent": 1, "queue": 1}}})
    a = h.ask(Call(n=1), sender="addr:a")
    h.error_to(h.request(), "unavailable")
    b = h.ask(Call(n=2), sender="addr:b")  # queued: a still holds the slot in back-off
    h.fire("sleep:")
    to_a = h.request()
    assert to_a.attempt == 2
    h.reply_to(to_a, Pong(n=1))
    assert h.report(a, "addr:a")[0].n == 1
    h.reply_to(h.request(), Pong(n=2))
    assert h.report(b, "addr:b")[0].n == 2


# --- actor exit --------------------------------------------------------------------------


def test_shutdown_during_backoff_answers_stopping_and_sends_nothing_later() -> None:
    h = make({OTHER: {"retry": RETRY}})
    req = h.ask(Call(n=1))
    h.error_to(h.request(), "unavailable")
    assert len(h.port.armed("sleep:")) == 1

    h.rt.shutdown()
    env = h.answer(req)
    assert env.kind == "error"
    with pytest.raises(RemoteError) as info:
        reply_value(env)
    assert info.value.code == "stopping"
    assert h.actor.stopped == ["shutdown"]

    h.fire("sleep:")  # the stale back-off timer
    h.nothing_sent()


def test_shutdown_during_a_guarded_attempt_frees_slot_and_permit() -> None:
    h = make({OTHER: {"breaker": BREAKER, "bulkhead": {"max_concurrent": 1, "queue": 0}}})
    req = h.ask(Call(n=1))
    out = h.request()
    h.rt.shutdown()
    assert h.answer(req).kind == "error"
    snap = h.rt.routes.route(OTHER).snapshot()  # type: ignore[union-attr]
    assert snap["bulkhead"]["in_flight"] == 0
    assert (snap["state"], snap["calls_in_window"]) == ("closed", 0)  # released, not counted
    h.reply_to(out, Pong(n=1))  # too late
    h.fire("ask:")
    h.nothing_sent()


# --- events ------------------------------------------------------------------------------


def test_policy_events_name_the_route() -> None:
    h = make(
        {
            OTHER: {
                "retry": {**RETRY, "max_attempts": 2},
                "breaker": BREAKER,
                "fallback": {"mode": "static", "reply": {"n": -1}},
            }
        }
    )
    req = h.ask(Call(n=1))
    h.error_to(h.request(), "unavailable")
    h.fire("sleep:")
    h.error_to(h.request(), "unavailable")  # second failure: the breaker opens
    assert h.report(req)[1] is True

    names = [name for name, _ in h.events]
    assert names == ["retry", "breaker_state_changed", "retries_stopped", "fallback"]
    for _, fields in h.events:
        assert (fields["route"], fields["caller"], fields["target"]) == (ROUTE, SELF, OTHER)
    [retry] = h.named("retry")
    assert (retry["attempt"], retry["delay_s"], retry["code"]) == (2, 0.05, "unavailable")
    [changed] = h.named("breaker_state_changed")
    assert (changed["old"], changed["new"], changed["reason"]) == ("closed", "open", "failure_rate")
    [fallback] = h.named("fallback")
    assert (fallback["mode"], fallback["ok"], fallback["degraded"], fallback["code"]) == (
        "static",
        True,
        True,
        "unavailable",
    )


def test_shutdown_with_a_queued_bulkhead_request_sends_nothing() -> None:
    h = make({OTHER: {"bulkhead": {"max_concurrent": 1, "queue": 1}}})
    a = h.ask(Call(n=1), sender="addr:a")
    h.request()
    b = h.ask(Call(n=2), sender="addr:b")
    h.no_request()

    h.rt.shutdown()  # a's attempt is abandoned, which frees its slot: b must not go out
    assert h.answer(a, "addr:a").kind == "error"
    assert h.answer(b, "addr:b").kind == "error"
    h.nothing_sent()
    h.fire("queue:")
    h.nothing_sent()


def test_crash_with_a_queued_bulkhead_request_sends_nothing() -> None:
    h = make({OTHER: {"bulkhead": {"max_concurrent": 1, "queue": 1}}})
    a = h.ask(Call(n=1), sender="addr:a")
    h.request()
    b = h.ask(Call(n=2), sender="addr:b")

    boom = h.ask(Boom(), sender="addr:boom")  # on_frame never raises, whatever happens
    assert h.answer(boom, "addr:boom").kind == "error"
    assert h.port.leaves == [("error", "RuntimeError: boom")]
    assert h.answer(a, "addr:a").kind == "error"
    assert h.answer(b, "addr:b").kind == "error"
    h.nothing_sent()
    assert h.actor.stopped == ["error"]
