"""ActorRuntime driven in-process: a fake Port, fake Hooks and a fake clock, no Thespian
(the Port, the clock and the harness base live in ``runtime_fakes.py``).

Timers never run on their own: the fake port records ``call_later`` keys and each test
fires them by calling ``runtime.on_timer(key)``, so every interleaving is explicit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack
import pytest
from pydantic import BaseModel
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
    envelope,
)

from callboard.actors import Actor, handler
from callboard.actors._runtime import ActorRuntime, reply_value
from callboard.errors import AskTimeout, BusinessError, NoSuchActor, RemoteError
from callboard.messages import (
    WIRE_VERSION,
    Envelope,
    Message,
    encode,
    new_id,
)

SELF_ADDR = "addr:svc"
THIRD = "third"
THIRD_ADDR = "addr:third"
MAX_FRAME = 4096
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# --- messages ----------------------------------------------------------------------------


class Echo(Message):
    type_name: ClassVar[str] = "test.runtime.Echo"
    n: int


class Echoed(Message):
    type_name: ClassVar[str] = "test.runtime.Echoed"
    n: int


class Nop(Message):
    type_name: ClassVar[str] = "test.runtime.Nop"


class Count(Message):
    type_name: ClassVar[str] = "test.runtime.Count"


class Counted(Message):
    type_name: ClassVar[str] = "test.runtime.Counted"
    total: int


class Fail(Message):
    type_name: ClassVar[str] = "test.runtime.Fail"
    explicit: bool = False


class Crash(Message):
    type_name: ClassVar[str] = "test.runtime.Crash"


class BadReturn(Message):
    type_name: ClassVar[str] = "test.runtime.BadReturn"


class Orphan(Message):
    """Registered, but the test actor has no handler for it."""

    type_name: ClassVar[str] = "test.runtime.Orphan"


class Blob(Message):
    type_name: ClassVar[str] = "test.runtime.Blob"
    data: str


class Relay(Message):
    """Ask ``target`` for an Echo of ``n``; report what happened."""

    type_name: ClassVar[str] = "test.runtime.Relay"
    target: str
    n: int = 0
    timeout: float | None = None


class TwoAsks(Message):
    type_name: ClassVar[str] = "test.runtime.TwoAsks"
    first: str
    second: str


class Later(Message):
    type_name: ClassVar[str] = "test.runtime.Later"
    delay: float
    n: int


class Nap(Message):
    type_name: ClassVar[str] = "test.runtime.Nap"
    delay: float


class StopMe(Message):
    type_name: ClassVar[str] = "test.runtime.StopMe"
    reason: str = "normal"


class AsyncStop(Message):
    type_name: ClassVar[str] = "test.runtime.AsyncStop"
    target: str


class Big(Message):
    """Reply with a frame over the size limit, or raise with huge details."""

    type_name: ClassVar[str] = "test.runtime.Big"
    as_error: bool = False


class AsyncCrash(Message):
    type_name: ClassVar[str] = "test.runtime.AsyncCrash"
    target: str


class LaterRelay(Message):
    """Schedule a Relay to ``target`` after ``delay``."""

    type_name: ClassVar[str] = "test.runtime.LaterRelay"
    delay: float
    target: str


class Outcome(Message):
    type_name: ClassVar[str] = "test.runtime.Outcome"
    text: str
    n: int = 0


# --- actors ------------------------------------------------------------------------------


class OutOfStock(BusinessError):
    """Default code: snake_case of the class name."""


class Refused(BusinessError):
    code: ClassVar[str] = "refused_by_policy"


class Service(Actor):
    def __init__(self) -> None:
        self.count = 0
        self.seen: list[int] = []
        self.stopped: list[str] = []
        self.started = False

    def on_start(self) -> None:
        self.started = True

    def on_stop(self, reason: str) -> None:
        self.stopped.append(reason)

    @handler
    def echo(self, msg: Echo) -> Echoed:
        self.seen.append(msg.n)
        return Echoed(n=msg.n)

    @handler
    def nop(self, msg: Nop) -> None:
        return None

    @handler
    def count_(self, msg: Count) -> Counted:
        self.count += 1
        return Counted(total=self.count)

    @handler
    def fail(self, msg: Fail) -> None:
        self.count += 100  # state changes made before the error are kept
        if msg.explicit:
            raise Refused("not allowed", {"rule": 7})
        raise OutOfStock("none left", {"sku": "A-1", "left": 0})

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("kaboom")

    @handler
    def bad_return(self, msg: BadReturn) -> Any:
        return 42

    @handler
    def blob(self, msg: Blob) -> None:
        pass

    @handler
    async def relay(self, msg: Relay) -> Outcome:
        try:
            reply = await self.ask(msg.target, Echo(n=msg.n), timeout=msg.timeout)
        except AskTimeout as exc:
            return Outcome(text=f"timeout: {exc}")
        except RemoteError as exc:
            return Outcome(text=f"remote: {exc.code}")
        except NoSuchActor as exc:
            return Outcome(text=f"no such actor: {exc.name}")
        if reply is None:
            return Outcome(text="none")
        return Outcome(text="ok", n=reply.n)

    @handler
    async def two_asks(self, msg: TwoAsks) -> Outcome:
        first = self.ask(msg.first, Echo(n=1))
        second = self.ask(msg.second, Echo(n=2))
        r2 = await second  # awaited in reverse order of sending
        r1 = await first
        return Outcome(text=f"{r1.n},{r2.n}", n=r1.n * 10 + r2.n)

    @handler
    def later(self, msg: Later) -> None:
        self.schedule(msg.delay, Echo(n=msg.n))

    @handler
    async def nap(self, msg: Nap) -> Outcome:
        await self.sleep(msg.delay)
        return Outcome(text="rested")

    @handler
    def stop_me(self, msg: StopMe) -> Outcome:
        try:
            self.stop(msg.reason)
        except ValueError as exc:
            return Outcome(text=f"refused: {exc}")
        return Outcome(text="bye")

    @handler
    def big(self, msg: Big) -> Blob:
        if msg.as_error:
            raise OutOfStock("huge details", {"blob": "y" * MAX_FRAME})
        return Blob(data="x" * MAX_FRAME)

    @handler
    async def async_crash(self, msg: AsyncCrash) -> None:
        await self.ask(msg.target, Echo(n=0))
        raise KeyError("after await")

    @handler
    def later_relay(self, msg: LaterRelay) -> None:
        self.schedule(msg.delay, Relay(target=msg.target))

    @handler
    async def async_stop(self, msg: AsyncStop) -> Outcome:
        self.stop()
        reply = await self.ask(msg.target, Echo(n=5))
        return Outcome(text="bye", n=reply.n)


class WithArgs(Actor):
    class Args(BaseModel):
        size: int
        label: str = "default"

    @handler
    def echo(self, msg: Echo) -> Echoed:
        return Echoed(n=msg.n * self.args.size)


class PlainArgs(Actor):
    pass


class FailsToStart(Actor):
    def on_start(self) -> None:
        raise RuntimeError("cannot start")


# --- fakes -------------------------------------------------------------------------------


class Hooks:
    """Implements the ``Hooks`` protocol, recording every call."""

    def __init__(self) -> None:
        self.handled_types: list[str] = []
        self.errors: list[tuple[str, str]] = []
        self.invalids: list[tuple[str, str]] = []
        self.drops: list[tuple[str, str]] = []

    def handled(self, message_type: str, seconds: float) -> None:
        assert seconds >= 0
        self.handled_types.append(message_type)

    def error(self, message_type: str, code: str) -> None:
        self.errors.append((message_type, code))

    def invalid(self, reason: str, detail: str) -> None:
        assert detail
        self.invalids.append((reason, detail))

    def dropped(self, why: str, message_type: str) -> None:
        self.drops.append((why, message_type))


# --- harness -----------------------------------------------------------------------------


@dataclass
class Harness(RuntimeHarness):
    hooks: Hooks

    error_details: ClassVar[dict[str, Any]] = {"k": 1}

    @property
    def actor(self) -> Any:
        assert self.rt.actor is not None
        return self.rt.actor

    def replies(self, address: Any = CLIENT) -> list[Envelope]:
        return self.port.take(address)

    def only_reply(self, address: Any = CLIENT) -> Envelope:
        envs = self.replies(address)
        assert len(envs) == 1, envs
        return envs[0]

    def result(self, req_id: str, address: Any = CLIENT) -> Any:
        """The asker's view of the single reply to ``req_id``: a value, or RemoteError raised."""
        env = self.only_reply(address)
        assert env.kind in ("reply", "error")
        assert env.causation_id == req_id
        return reply_value(env)

    def error(self, req_id: str | None, address: Any = CLIENT) -> RemoteError:
        env = self.only_reply(address)
        assert env.kind == "error"
        assert env.causation_id == req_id
        with pytest.raises(RemoteError) as info:
            reply_value(env)
        return info.value

    def fire(self, prefix: str) -> None:
        _, key = self.port.timer(prefix)
        self.rt.on_timer(key)


def make(
    actor_cls: type[Actor] = Service, args: dict[str, Any] | None = None, *, start: bool = True
) -> Harness:
    port, hooks, clock = FakePort(), Hooks(), FakeClock()
    rt = ActorRuntime(
        SELF,
        actor_cls,
        args or {},
        port,
        {SELF: SELF_ADDR, OTHER: OTHER_ADDR, THIRD: THIRD_ADDR, GONE: None},
        max_frame_bytes=MAX_FRAME,
        ask_timeout=ASK_TIMEOUT,
        hooks=hooks,
        clock=clock,
    )
    if start:
        rt.start()
    return Harness(rt, port, clock, hooks)


@pytest.fixture
def h() -> Iterator[Harness]:
    yield make()


# The code an ask gets when it reaches an actor that is not running (before start, or
# after it began to exit). The brief specified ``stopping``; the runtime is being changed
# concurrently to answer ``no_such_actor`` ("this process no longer hosts the actor", so
# the sender may resend elsewhere). Both mean "refused unprocessed"; what matters here is
# that the ask is answered at once, never handled, and counted as dropped.
REFUSED_WHEN_NOT_RUNNING = {"stopping", "no_such_actor"}


def assert_refused(h: Harness, req: str) -> None:
    """``req`` was answered with a refusal and never reached a handler."""
    handled = list(h.hooks.handled_types)
    err = h.error(req)
    assert err.code in REFUSED_WHEN_NOT_RUNNING
    assert err.details == {"actor": SELF}
    assert h.hooks.drops[-1] == (err.code, Echo.type_name)
    assert h.hooks.handled_types == handled


def assert_running(h: Harness) -> None:
    """The actor still answers, and never left."""
    assert h.rt.state == "running"
    assert h.port.leaves == []
    req = h.ask(Echo(n=99))
    assert h.result(req) == Echoed(n=99)


def raw_frame(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)  # type: ignore[no-any-return]


def raw_ask(
    type_: str, payload: Any, *, version: int = 1, wire: int = WIRE_VERSION, msg_id: str = "r-1",
    priority: int = 0,
) -> bytes:  # fmt: skip
    return raw_frame(
        wire, "ask", msg_id, type_, version, None, None, None, priority, None, None, 1, SELF,
        "client", payload,
    )  # fmt: skip


# --- lifecycle ---------------------------------------------------------------------------


def test_start_runs_on_start_and_sets_running() -> None:
    h = make(start=False)
    assert h.rt.state == "new"
    h.rt.start()
    assert h.rt.state == "running"
    assert h.actor.started is True
    assert h.actor.id == SELF


def test_args_model_validated() -> None:
    h = make(WithArgs, {"size": "3"})
    assert isinstance(h.actor.args, WithArgs.Args)
    assert h.actor.args.size == 3
    assert h.actor.args.label == "default"
    req = h.ask(Echo(n=2))
    assert h.result(req) == Echoed(n=6)


@pytest.mark.parametrize("args", [{}, {"size": "many"}, {"label": "no size"}])
def test_invalid_args_fail_start(args: dict[str, Any]) -> None:
    h = make(WithArgs, args, start=False)
    with pytest.raises(ValueError, match="invalid args"):
        h.rt.start()
    assert h.rt.state == "new"
    assert h.rt.actor is None


def test_args_extra_keys_follow_the_model_config() -> None:
    h = make(WithArgs, {"size": 1, "unknown": 2})  # pydantic's default: extra keys ignored
    assert h.actor.args.size == 1


def test_without_args_model_args_is_a_dict_copy() -> None:
    raw = {"anything": [1, 2]}
    h = make(PlainArgs, raw)
    assert h.actor.args == raw
    assert h.actor.args is not raw


def test_on_start_raising_propagates() -> None:
    h = make(FailsToStart, start=False)
    with pytest.raises(RuntimeError, match="cannot start"):
        h.rt.start()
    assert h.rt.state != "running"


def test_frames_before_start_are_refused() -> None:
    h = make(start=False)
    req = h.ask(Echo(n=1))
    assert_refused(h, req)


# --- ask / tell --------------------------------------------------------------------------


def test_ask_gets_reply(h: Harness) -> None:
    req = h.ask(Echo(n=5), correlation_id="conv-1", traceparent=TRACEPARENT, priority=3)
    env = h.only_reply()
    assert env.kind == "reply"
    assert env.causation_id == req
    assert env.correlation_id == "conv-1"
    assert env.traceparent == TRACEPARENT
    assert env.priority == 3
    assert env.sender == SELF
    assert env.target == "client"
    assert env.type == Echoed.type_name
    assert reply_value(env) == Echoed(n=5)
    assert h.hooks.handled_types == [Echo.type_name]
    assert h.hooks.errors == []


def test_ask_returning_none_replies_nothing(h: Harness) -> None:
    req = h.ask(Nop())
    env = h.only_reply()
    assert env.kind == "reply"
    assert env.type == "callboard.Nothing"
    assert env.causation_id == req
    assert reply_value(env) is None


def test_tell_gets_no_reply(h: Harness) -> None:
    h.tell(Echo(n=3))
    h.tell(Nop())
    assert h.port.sent == []
    assert h.actor.seen == [3]
    assert h.hooks.handled_types == [Echo.type_name, Nop.type_name]


def test_state_is_kept_between_messages(h: Harness) -> None:
    for expected in (1, 2, 3):
        req = h.ask(Count())
        assert h.result(req) == Counted(total=expected)


# --- business errors ---------------------------------------------------------------------


def test_business_error_default_code(h: Harness) -> None:
    assert OutOfStock.code == "out_of_stock"
    req = h.ask(Fail())
    err = h.error(req)
    assert err.code == "out_of_stock"
    assert err.message == "none left"
    assert err.details == {"sku": "A-1", "left": 0}
    assert h.hooks.errors == [(Fail.type_name, "out_of_stock")]
    assert h.hooks.handled_types == [Fail.type_name]
    assert h.actor.stopped == []
    # state kept, including the change made before raising; the actor carries on
    req = h.ask(Count())
    assert h.result(req) == Counted(total=101)
    assert_running(h)


def test_business_error_explicit_code(h: Harness) -> None:
    req = h.ask(Fail(explicit=True))
    err = h.error(req)
    assert err.code == "refused_by_policy"
    assert err.message == "not allowed"
    assert err.details == {"rule": 7}
    assert_running(h)


def test_business_error_on_tell_sends_nothing(h: Harness) -> None:
    h.tell(Fail())
    assert h.port.sent == []
    assert h.hooks.errors == [(Fail.type_name, "out_of_stock")]
    assert_running(h)


# --- crashes -----------------------------------------------------------------------------


def test_unexpected_exception_crashes(h: Harness) -> None:
    req = h.ask(Crash())
    err = h.error(req)
    assert err.code == "crashed"
    assert err.message == "kaboom"
    assert err.details == {"exception": "RuntimeError", "actor": SELF}
    assert h.port.leaves == [("error", "RuntimeError: kaboom")]
    assert h.actor.stopped == ["error"]
    assert h.rt.state == "exiting"
    assert h.hooks.errors == [(Crash.type_name, "crashed")]

    later = h.ask(Echo(n=1))
    assert_refused(h, later)
    assert h.actor.seen == []
    assert h.port.leaves == [("error", "RuntimeError: kaboom")]  # left once only


def test_crash_on_tell_leaves_without_reply(h: Harness) -> None:
    h.tell(Crash())
    assert h.port.sent == []
    assert h.port.leaves == [("error", "RuntimeError: kaboom")]
    assert h.actor.stopped == ["error"]


def test_handler_returning_non_message_crashes(h: Harness) -> None:
    req = h.ask(BadReturn())
    err = h.error(req)
    assert err.code == "crashed"
    assert err.details["exception"] == "TypeError"
    assert "int" in err.message
    assert h.port.leaves[0][0] == "error"
    assert h.actor.stopped == ["error"]


def test_crash_answers_other_inflight_asks_with_stopping(h: Harness) -> None:
    relay = h.ask(Relay(target=OTHER, n=1), sender="addr:relayer")
    out = h.request()
    crash = h.ask(Crash())
    assert h.error(crash).code == "crashed"
    assert h.error(relay, "addr:relayer").code == "stopping"
    h.reply_to(out, Echoed(n=1))  # arrives after the exit: dropped, answered nobody
    assert h.port.take("addr:relayer") == []
    assert ("late_reply", Echoed.type_name) in h.hooks.drops


# --- invalid input -----------------------------------------------------------------------


def check_invalid(h: Harness, reason: str, causation: str | None) -> RemoteError:
    err = h.error(causation)
    assert err.code == "invalid_message"
    assert err.details["reason"] == reason
    assert [r for r, _ in h.hooks.invalids] == [reason]
    assert h.actor.stopped == []
    assert_running(h)
    return err


def test_garbage_bytes(h: Harness) -> None:
    h.rt.on_frame(b"\xc1\xc1 definitely not msgpack", CLIENT)
    check_invalid(h, "malformed", None)


def test_msgpack_that_is_not_an_envelope(h: Harness) -> None:
    h.rt.on_frame(msgpack.packb({"hello": "world"}), CLIENT)
    check_invalid(h, "malformed", None)


def test_invalid_envelope_header(h: Harness) -> None:
    h.rt.on_frame(raw_ask(Echo.type_name, {"n": 1}, priority=42, msg_id="hdr-1"), CLIENT)
    err = check_invalid(h, "malformed", "hdr-1")
    assert err.details["errors"][0]["loc"] == ["priority"]


def test_non_bytes_object(h: Harness) -> None:
    h.rt.on_frame({"not": "bytes"}, CLIENT)
    check_invalid(h, "not_a_message", None)


def test_unknown_type(h: Harness) -> None:
    h.rt.on_frame(raw_ask("test.runtime.NoSuchType", {}, msg_id="u-1"), CLIENT)
    check_invalid(h, "unknown_type", "u-1")


def test_bad_wire_version(h: Harness) -> None:
    h.rt.on_frame(raw_ask(Echo.type_name, {"n": 1}, wire=WIRE_VERSION + 1, msg_id="w-1"), CLIENT)
    check_invalid(h, "bad_version", "w-1")


def test_bad_message_version(h: Harness) -> None:
    h.rt.on_frame(raw_ask(Echo.type_name, {"n": 1}, version=Echo.version + 1, msg_id="v-1"), CLIENT)
    err = check_invalid(h, "bad_version", "v-1")
    assert err.details["supported"] == Echo.version


def test_invalid_fields(h: Harness) -> None:
    h.rt.on_frame(raw_ask(Echo.type_name, {"n": "not a number"}, msg_id="f-1"), CLIENT)
    err = check_invalid(h, "invalid_fields", "f-1")
    assert err.details["errors"][0]["loc"] == ["n"]


def test_oversized(h: Harness) -> None:
    frame = encode(
        envelope(kind="ask", id="big-1", type=Blob.type_name, target=SELF,
                 payload=Blob(data="x" * MAX_FRAME))
    )  # fmt: skip
    h.rt.on_frame(frame, CLIENT)
    err = check_invalid(h, "oversized", "big-1")  # the id is still read from the frame
    assert err.details["limit"] == MAX_FRAME
    assert err.details["size"] == len(frame)


def test_no_handler_for_type(h: Harness) -> None:
    req = h.ask(Orphan())
    check_invalid(h, "unhandled", req)


def test_invalid_tell_is_counted_but_not_answered(h: Harness) -> None:
    h.tell(Orphan())
    frame = raw_ask(Echo.type_name, {"n": "x"})
    items = msgpack.unpackb(frame)
    items[1] = "tell"
    h.rt.on_frame(msgpack.packb(items), CLIENT)
    assert h.port.sent == []
    assert [r for r, _ in h.hooks.invalids] == ["unhandled", "invalid_fields"]
    assert_running(h)


# --- routing checks ----------------------------------------------------------------------


def test_expired_deadline_dropped(h: Harness) -> None:
    h.ask(Echo(n=1), deadline=NOW - 0.001)
    h.tell(Echo(n=2), deadline=NOW - 5)
    assert h.port.sent == []
    assert h.actor.seen == []
    assert h.hooks.drops == [("expired", Echo.type_name)] * 2
    assert_running(h)


def test_future_deadline_is_handled(h: Harness) -> None:
    req = h.ask(Echo(n=1), deadline=NOW + 0.001)
    assert h.result(req) == Echoed(n=1)


def test_target_name_mismatch(h: Harness) -> None:
    req = h.ask(Echo(n=1), target="someone-else")
    err = h.error(req)
    assert err.code == "no_such_actor"
    assert err.details == {"actor": SELF}
    assert h.actor.seen == []
    assert h.hooks.drops == [("no_such_actor", Echo.type_name)]
    assert_running(h)


def test_no_target_is_accepted(h: Harness) -> None:
    req = h.ask(Echo(n=4), target=None)
    assert h.result(req) == Echoed(n=4)


# --- async handlers: ask -----------------------------------------------------------------


def test_async_ask_request_envelope_inherits_context(h: Harness) -> None:
    req = h.ask(
        Relay(target=OTHER, n=7, timeout=3.0), deadline=NOW + 30, correlation_id="conv-9",
        traceparent=TRACEPARENT, principal="alice", priority=4,
    )  # fmt: skip
    out = h.request(OTHER_ADDR)
    assert out.type == Echo.type_name
    assert out.target == OTHER
    assert out.sender == SELF
    assert out.deadline == pytest.approx(NOW + 3.0)  # own timeout is sooner
    assert out.correlation_id == "conv-9"
    assert out.causation_id == req
    assert out.principal == "alice"
    assert out.priority == 4
    assert out.traceparent is not None
    assert out.traceparent[3:35] == TRACEPARENT[3:35]  # same trace
    assert out.traceparent != TRACEPARENT  # new span
    assert out.id != req
    delay, key = h.port.timer("ask:")
    assert key == "ask:" + out.id
    assert delay == pytest.approx(3.0)


def test_async_ask_deadline_capped_by_incoming_deadline(h: Harness) -> None:
    h.ask(Relay(target=OTHER, timeout=60.0), deadline=NOW + 2)
    out = h.request()
    assert out.deadline == pytest.approx(NOW + 2)
    assert h.port.timer("ask:")[0] == pytest.approx(2.0)


def test_async_ask_default_timeout_without_incoming_deadline(h: Harness) -> None:
    req = h.ask(Relay(target=OTHER))
    out = h.request()
    assert out.deadline == pytest.approx(NOW + ASK_TIMEOUT)
    assert out.correlation_id == req  # the request's id starts the conversation


def test_async_ask_from_a_tell(h: Harness) -> None:
    tell = h.tell(Relay(target=OTHER, n=3))
    out = h.request()
    assert out.causation_id == tell
    h.reply_to(out, Echoed(n=3))
    assert h.port.sent == []  # a tell is never answered


def test_async_ask_roundtrip_without_blocking_mailbox(h: Harness) -> None:
    req = h.ask(Relay(target=OTHER, n=7))
    out = h.request()
    assert h.replies() == []  # still waiting

    # the mailbox keeps flowing while the handler waits
    other = h.ask(Echo(n=1))
    assert h.result(other) == Echoed(n=1)
    counted = h.ask(Count())
    assert h.result(counted) == Counted(total=1)

    h.reply_to(out, Echoed(n=7))
    assert h.result(req) == Outcome(text="ok", n=7)
    assert h.hooks.handled_types.count(Relay.type_name) == 1

    # the reply cancelled the timeout: firing the stale timer changes nothing
    h.fire("ask:")
    assert h.port.sent == []
    assert h.hooks.drops == []


def test_async_ask_nothing_reply_is_none(h: Harness) -> None:
    from callboard.messages._errors import Nothing

    req = h.ask(Relay(target=OTHER))
    h.reply_to(h.request(), Nothing())
    assert h.result(req) == Outcome(text="none")


def test_async_ask_error_reply_raises_remote_error(h: Harness) -> None:
    req = h.ask(Relay(target=OTHER))
    h.error_to(h.request(), "out_of_stock")
    assert h.result(req) == Outcome(text="remote: out_of_stock")
    assert_running(h)


def test_async_ask_timeout(h: Harness) -> None:
    req = h.ask(Relay(target=OTHER, timeout=1.5))
    out = h.request()
    h.clock.now += 1.5
    h.fire("ask:")
    result = h.result(req)
    assert isinstance(result, Outcome)
    assert result.text.startswith("timeout: ")
    assert OTHER in result.text

    h.reply_to(out, Echoed(n=0))  # too late
    assert h.hooks.drops == [("late_reply", Echoed.type_name)]
    assert h.replies() == []
    assert_running(h)


def test_async_ask_unknown_name_raises_at_once(h: Harness) -> None:
    req = h.ask(Relay(target="nobody"))
    assert h.result(req) == Outcome(text="no such actor: nobody")
    assert h.port.timers == []


def test_ask_unknown_name_raises_directly(h: Harness) -> None:
    with pytest.raises(NoSuchActor):
        h.rt.ask("nobody", Echo(n=1), None)


def test_async_ask_restarting_name_is_remote_error(h: Harness) -> None:
    req = h.ask(Relay(target=GONE))
    assert h.result(req) == Outcome(text="remote: restarting")
    assert h.port.timers == []


def test_ask_restarting_name_future_holds_details(h: Harness) -> None:
    fut = h.rt.ask(GONE, Echo(n=1), None)
    assert fut.done()
    exc = fut.exception()
    assert isinstance(exc, RemoteError)
    assert exc.code == "restarting"
    assert exc.details == {"actor": GONE}


def test_directory_update_changes_routing(h: Harness) -> None:
    h.rt.on_directory({GONE: "addr:gone-v2"}, ("nobody",))
    h.ask(Relay(target=GONE))
    assert h.request("addr:gone-v2").target == GONE
    h.rt.on_directory({}, (OTHER,))
    req = h.ask(Relay(target=OTHER))
    assert h.result(req) == Outcome(text=f"no such actor: {OTHER}")


def test_two_concurrent_asks_awaited_in_reverse_order(h: Harness) -> None:
    req = h.ask(TwoAsks(first=OTHER, second=THIRD))
    to_other = h.request(OTHER_ADDR)
    to_third = h.request(THIRD_ADDR)
    assert to_other.payload == {"n": 1}
    assert to_third.payload == {"n": 2}
    assert len([k for _, k in h.port.timers if k.startswith("ask:")]) == 2

    h.reply_to(to_other, Echoed(n=1), from_addr=OTHER_ADDR)  # the one awaited second
    assert h.replies() == []
    h.reply_to(to_third, Echoed(n=2), from_addr=THIRD_ADDR)
    assert h.result(req) == Outcome(text="1,2", n=12)


def test_two_concurrent_asks_replies_in_awaited_order(h: Harness) -> None:
    req = h.ask(TwoAsks(first=OTHER, second=THIRD))
    to_other = h.request(OTHER_ADDR)
    to_third = h.request(THIRD_ADDR)
    h.reply_to(to_third, Echoed(n=2), from_addr=THIRD_ADDR)
    assert h.replies() == []
    h.reply_to(to_other, Echoed(n=1), from_addr=OTHER_ADDR)
    assert h.result(req) == Outcome(text="1,2", n=12)


def test_interleaved_async_handlers_keep_their_own_context(h: Harness) -> None:
    a = h.ask(Relay(target=OTHER, n=1), correlation_id="conv-a", sender="addr:a")
    out_a = h.request(OTHER_ADDR)
    b = h.ask(Relay(target=OTHER, n=2), correlation_id="conv-b", sender="addr:b")
    out_b = h.request(OTHER_ADDR)
    assert (out_a.correlation_id, out_a.causation_id) == ("conv-a", a)
    assert (out_b.correlation_id, out_b.causation_id) == ("conv-b", b)
    h.reply_to(out_b, Echoed(n=2))
    h.reply_to(out_a, Echoed(n=1))
    assert h.result(a, "addr:a") == Outcome(text="ok", n=1)
    assert h.result(b, "addr:b") == Outcome(text="ok", n=2)


def test_reply_with_unknown_causation_is_dropped(h: Harness) -> None:
    env = envelope(kind="reply", id=new_id(), type=Echoed.type_name, causation_id="never-sent",
                   payload=Echoed(n=1))  # fmt: skip
    h.rt.on_frame(encode(env), OTHER_ADDR)
    assert h.hooks.drops == [("late_reply", Echoed.type_name)]
    assert_running(h)


# --- schedule / sleep --------------------------------------------------------------------


def test_schedule_delivers_when_timer_fires(h: Harness) -> None:
    req = h.ask(Later(delay=2.5, n=8))
    assert h.result(req) is None
    delay, _ = h.port.timer("sched:")
    assert delay == 2.5
    assert h.actor.seen == []
    h.fire("sched:")
    assert h.actor.seen == [8]
    assert h.port.sent == []  # delivered as a tell: nobody to answer


def test_schedule_not_delivered_after_exit(h: Harness) -> None:
    h.ask(Later(delay=1.0, n=8))
    h.rt.shutdown()
    h.fire("sched:")
    assert h.actor.seen == []


def test_sleep_resumes_when_timer_fires(h: Harness) -> None:
    req = h.ask(Nap(delay=0.25))
    delay, _ = h.port.timer("sleep:")
    assert delay == 0.25
    assert h.replies() == []
    h.fire("sleep:")
    assert h.result(req) == Outcome(text="rested")


def test_unknown_timer_key_is_ignored(h: Harness) -> None:
    h.rt.on_timer("sleep:not-a-timer")
    assert_running(h)


# --- stopping ----------------------------------------------------------------------------


def test_stop_inside_handler_leaves_after_reply(h: Harness) -> None:
    req = h.ask(StopMe())
    assert h.port.events == [f"send:{CLIENT}", "leave:normal"]
    assert h.result(req) == Outcome(text="bye")
    assert h.port.leaves == [("normal", "")]
    assert h.actor.stopped == ["normal"]
    assert h.rt.state == "exiting"
    later = h.ask(Echo(n=1))
    assert_refused(h, later)


def test_stop_with_shutdown_reason(h: Harness) -> None:
    h.tell(StopMe(reason="shutdown"))
    assert h.port.leaves == [("shutdown", "")]
    assert h.actor.stopped == ["shutdown"]


@pytest.mark.parametrize("reason", ["error", "killed", "bogus"])
def test_stop_with_bad_reason_raises(h: Harness, reason: str) -> None:
    req = h.ask(StopMe(reason=reason))
    result = h.result(req)
    assert result.text.startswith("refused: ")
    assert "normal" in result.text
    with pytest.raises(ValueError):
        h.rt.request_stop(reason)
    assert_running(h)


def test_stop_in_async_handler_waits_for_it_to_finish(h: Harness) -> None:
    req = h.ask(AsyncStop(target=OTHER))
    out = h.request()
    assert h.port.leaves == []
    h.reply_to(out, Echoed(n=5))
    assert h.result(req) == Outcome(text="bye", n=5)
    assert h.port.leaves == [("normal", "")]
    assert h.actor.stopped == ["normal"]


def test_shutdown_answers_inflight_asks_with_stopping(h: Harness) -> None:
    relay = h.ask(Relay(target=OTHER), sender="addr:a")
    out = h.request()
    nap = h.ask(Nap(delay=5), sender="addr:b")
    h.tell(Relay(target=THIRD))
    h.request(THIRD_ADDR)

    h.rt.shutdown()
    assert h.rt.state == "exiting"
    assert h.error(relay, "addr:a").code == "stopping"
    assert h.error(nap, "addr:b").code == "stopping"
    assert h.port.sent == []  # the in-flight tell is not answered
    assert h.actor.stopped == ["shutdown"]
    assert h.port.leaves == []  # the shell ends the actor; the runtime only cleans up

    h.reply_to(out, Echoed(n=0))
    h.fire("sleep:")
    assert h.port.sent == []
    assert ("late_reply", Echoed.type_name) in h.hooks.drops

    later = h.ask(Echo(n=1))
    assert_refused(h, later)
    h.rt.shutdown()  # idempotent
    assert h.actor.stopped == ["shutdown"]


def test_on_stop_failure_does_not_prevent_exit() -> None:
    class BadStop(Service):
        def on_stop(self, reason: str) -> None:
            raise RuntimeError("cleanup failed")

    h = make(BadStop)
    h.ask(StopMe())
    assert h.port.leaves == [("normal", "")]
    assert h.rt.state == "exiting"


# --- replies that cannot be sent -----------------------------------------------------------


def test_oversized_reply_becomes_invalid_message_error(h: Harness) -> None:
    req = h.ask(Big())
    err = h.error(req)
    assert err.code == "invalid_message"
    assert err.details["reason"] == "oversized"
    assert err.details["limit"] == MAX_FRAME
    assert_running(h)


def test_business_error_with_oversized_details_sends_bare_code(h: Harness) -> None:
    req = h.ask(Big(as_error=True))
    err = h.error(req)
    assert err.code == "out_of_stock"
    assert err.message == "huge details"
    assert err.details == {}
    assert_running(h)


def test_async_handler_crash_after_await(h: Harness) -> None:
    req = h.ask(AsyncCrash(target=OTHER))
    h.reply_to(h.request(), Echoed(n=0))
    err = h.error(req)
    assert err.code == "crashed"
    assert err.details == {"exception": "KeyError", "actor": SELF}
    assert h.port.leaves == [("error", "KeyError: 'after await'")]
    assert h.actor.stopped == ["error"]


# --- suspected bugs ----------------------------------------------------------------------


def test_scheduled_message_does_not_inherit_an_expired_deadline(h: Harness) -> None:
    h.ask(LaterRelay(delay=5.0, target=OTHER), deadline=NOW + 1)
    h.clock.now += 5.0
    h.fire("sched:")
    out = h.request()
    assert out.deadline is not None
    assert out.deadline > h.clock.now  # actual: NOW + 1, i.e. 4 s in the past
    assert h.port.timer("ask:")[0] > 0  # actual: 0.0, the ask times out immediately


def test_stop_in_async_handler_is_not_triggered_by_another_message(h: Harness) -> None:
    stopper = h.ask(AsyncStop(target=OTHER), sender="addr:a")
    out = h.request()
    other = h.ask(Echo(n=1), sender="addr:b")
    assert h.result(other, "addr:b") == Echoed(n=1)
    assert h.port.leaves == []  # actual: [("normal", "")] already
    h.reply_to(out, Echoed(n=5))
    assert h.result(stopper, "addr:a") == Outcome(text="bye", n=5)  # actual: "stopping"
    assert h.port.leaves == [("normal", "")]
