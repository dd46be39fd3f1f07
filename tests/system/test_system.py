"""The embedding API on the tcp transport, with every actor in its own process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from callboard import AskTimeout, NoSuchActor, RemoteError, StartFailed, System, SystemNotRunning
from callboard.actors.examples import Ping, Pong, Relay
from callboard.observability.metrics import parse_exposition

from conftest import StartSystem, read_log, system_processes
from sysactors import (
    AskVia,
    Big,
    Count,
    Fail,
    Get,
    HowLong,
    Incr,
    Park,
    Release,
    Released,
)

COUNTER = "sysactors:Counter"
ECHO = "callboard.actors.examples:Echo"


def ask_through_restart(system: System, target: str, msg: object) -> object:
    """Ask, retrying while ``target`` is listed as restarting (the documented fast failure)."""
    for _ in range(2000):
        try:
            return system.ask(target, msg, timeout=5)  # type: ignore[arg-type]
        except RemoteError as exc:
            if exc.code != "restarting":
                raise
    raise AssertionError(f"{target} never came back")


def test_ask_tell_and_relay_between_processes(start_system: StartSystem) -> None:
    system = start_system([{"id": "echo", "actor": ECHO}, {"id": "c", "actor": COUNTER}])
    assert system.ask("echo", Ping(n=41), timeout=2) == Pong(n=41)
    # Relay: echo's async handler asks "c"... no: asks itself by name would deadlock-free too;
    # ask through the other echo-speaking actor to cross a process boundary.
    system.tell("c", Incr(by=5))
    system.tell("c", Incr(by=2))
    count = system.ask("c", Get(), timeout=2)
    assert isinstance(count, Count) and count.value == 7  # tells are handled in order
    pids = system.directory()
    assert count.pid == pids["c"] and pids["c"] != pids["echo"]


def test_async_handler_does_not_block_the_mailbox(start_system: StartSystem) -> None:
    system = start_system(
        [{"id": "gate", "actor": "sysactors:Gate"}, {"id": "caller", "actor": "sysactors:Caller"}]
    )
    with ThreadPoolExecutor(2) as pool:
        # caller awaits gate, which parks the request until released.
        pending = pool.submit(system.ask, "caller", AskVia(target="gate", timeout=20), 20)
        # Meanwhile the caller still answers other messages...
        assert system.ask("caller", Get(), timeout=5).value == -1
        # ...and once the gate opens the parked request completes.
        parked: list[str] = []
        while not parked:  # wait until the caller's request has reached the gate
            parked = system.ask("gate", Release(), timeout=5).tags
        assert parked == ["via"]
        assert pending.result(timeout=20).result == "ok"


def test_relay_example_crosses_processes(start_system: StartSystem) -> None:
    system = start_system([{"id": "echo", "actor": ECHO}, {"id": "echo2", "actor": ECHO}])
    assert system.ask("echo2", Relay(n=9, via="echo"), timeout=2) == Pong(n=9)


def test_outgoing_request_inherits_the_sooner_deadline(start_system: StartSystem) -> None:
    system = start_system(
        [{"id": "gate", "actor": "sysactors:Gate"}, {"id": "caller", "actor": "sysactors:Caller"}]
    )
    # The caller asks the gate with timeout=30, but its own request has ~2 s left: the
    # gate must see at most that, not 30 s.
    reply = system.ask("caller", HowLong(), timeout=2.0)
    assert reply.seconds is not None and 0 < reply.seconds <= 2.0
    # And a direct ask carries its own deadline.
    direct = system.ask("gate", HowLong(), timeout=7.0)
    assert direct.seconds is not None and 2.0 < direct.seconds <= 7.0


def test_inner_ask_times_out_and_the_handler_sees_it(start_system: StartSystem) -> None:
    system = start_system(
        [{"id": "gate", "actor": "sysactors:Gate"}, {"id": "caller", "actor": "sysactors:Caller"}]
    )
    outcome = system.ask("caller", AskVia(target="gate", timeout=0.2), timeout=5)
    assert outcome.result == "AskTimeout"
    outcome = system.ask("caller", AskVia(target="nobody", timeout=0.2), timeout=5)
    assert outcome.result == "NoSuchActor"


def test_ask_timeout_and_unknown_name(start_system: StartSystem) -> None:
    system = start_system([{"id": "gate", "actor": "sysactors:Gate"}])
    with pytest.raises(AskTimeout):
        system.ask("gate", Park(tag="forever"), timeout=0.3)
    # An unknown name fails at once with NoSuchActor, not a timeout, even with a long one.
    with pytest.raises(NoSuchActor) as info:
        system.ask("nobody", Park(), timeout=600)
    assert info.value.name == "nobody"
    with pytest.raises(NoSuchActor):
        system.tell("nobody", Park())
    # The late reply to the timed-out ask must not be taken as the answer to a later one.
    assert system.ask("gate", Release(), timeout=2).tags == ["forever"]
    assert system.ask("gate", Release(), timeout=2) == Released(tags=[])


def test_business_error_keeps_state_crash_restarts(start_system: StartSystem) -> None:
    system = start_system([{"id": "c", "actor": COUNTER, "args": {"start": 10}}])
    first = system.ask("c", Incr(), timeout=2)
    with pytest.raises(RemoteError) as info:
        system.ask("c", Fail(how="business"), timeout=2)
    assert (info.value.code, info.value.message, info.value.details) == (
        "out_of_stock", "none left", {"sku": "x"}
    )  # fmt: skip
    same = system.ask("c", Incr(), timeout=2)
    assert (same.value, same.pid) == (12, first.pid)  # state and process kept

    with pytest.raises(RemoteError) as info:
        system.ask("c", Fail(how="crash"), timeout=2)
    assert info.value.code == "crashed" and info.value.message == "boom"
    fresh = ask_through_restart(system, "c", Get())  # restarted by the root supervisor
    assert fresh.pid != first.pid and fresh.value == 10  # new process, fresh state

    with pytest.raises(RemoteError) as info:
        system.ask("c", Fail(how="bad_return"), timeout=2)
    assert info.value.code == "crashed"


def test_many_host_threads_ask_at_once(start_system: StartSystem) -> None:
    system = start_system([{"id": "echo", "actor": ECHO}, {"id": "echo2", "actor": ECHO}])
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(40):
                n = k * 1000 + i
                target = "echo" if i % 2 else "echo2"
                assert system.ask(target, Ping(n=n), timeout=5) == Pong(n=n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_invalid_input_gets_typed_errors_and_is_counted(start_system: StartSystem) -> None:
    system = start_system([{"id": "c", "actor": COUNTER}], max_frame_bytes=4096)
    before = system.ask("c", Incr(), timeout=2)
    # The sender learns at once that a frame is too big to send.
    from callboard import InvalidMessage

    with pytest.raises(InvalidMessage) as sent:
        system.ask("c", Big(blob=b"x" * 5000), timeout=2)
    assert sent.value.reason == "oversized"

    # Raw frames through Thespian, the way a foreign or buggy sender would arrive.
    from callboard.messages import Envelope, encode, new_id

    def frame(**overrides: object) -> bytes:
        fields: dict[str, object] = {
            "kind": "ask", "id": new_id(), "type": "test.sys.Incr", "version": 1,
            "target": "c", "payload": {"by": 1},
        }  # fmt: skip
        fields.update(overrides)
        return encode(Envelope(**fields))  # type: ignore[arg-type]

    cases = {
        "malformed": b"\x93garbage",
        "unknown_type": frame(type="test.sys.Nope"),
        "bad_version": frame(version=9),
        "invalid_fields": frame(payload={"by": "many"}),
        "unhandled": frame(type="callboard.examples.Ping", payload={"n": 1}),
        "oversized": frame(type="test.sys.Big", payload={"blob": b"y" * 5000}),
        "not_a_message": {"a": "dict"},
    }
    address = system._resolve("c", system._asys)
    for reason, raw in cases.items():
        answer = system._asys.ask(address, raw, 5)
        from callboard._control import frames_of
        from callboard.messages import decode_envelope

        (frame,) = frames_of(answer)  # actors send what a turn produced as one batch
        env = decode_envelope(frame)
        assert env.kind == "error", reason
        assert env.payload["code"] == "invalid_message", reason
        assert env.payload["details"]["reason"] == reason
    after = system.ask("c", Incr(), timeout=2)
    assert (after.pid, after.value) == (before.pid, 2)  # never crashed, state intact

    samples = parse_exposition(system.metrics())
    counted = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "callboard_invalid_messages_total" and dict(labels).get("actor") == "c"
    }
    assert counted == {reason: 1.0 for reason in cases}


def test_stop_kills_a_hung_actor_and_leaves_nothing(
    start_system: StartSystem, tmp_path: Path
) -> None:
    system = start_system(
        [
            {"id": "c", "actor": COUNTER, "shutdown": 0.5},
            {"id": "echo", "actor": ECHO, "shutdown": 1.0},
        ]
    )
    from sysactors import Spin

    system.tell("c", Spin())
    assert system.ask("echo", Ping(n=1), timeout=2) == Pong(n=1)
    pgid = system.pgid
    port = system.admin_port
    system.stop()
    assert system_processes(port, pgid) == []
    events = [(e.get("event"), e.get("child")) for e in read_log(tmp_path)]
    # The hung one was SIGKILLed after its shutdown time; the healthy one stopped itself.
    assert ("shutdown_timeout", "c") in events
    assert ("shutdown_timeout", "echo") not in events
    assert events.index(("child_stopped", "echo")) < events.index(("child_stopped", "c"))
    with pytest.raises(SystemNotRunning):
        system.ask("echo", Ping(n=1))


def test_on_stop_runs_with_reason_on_stop(start_system: StartSystem, tmp_path: Path) -> None:
    stop_file = tmp_path / "stopped.txt"
    system = start_system([{"id": "c", "actor": COUNTER, "args": {"stop_file": str(stop_file)}}])
    pid = system.ask("c", Get(), timeout=2).pid
    system.stop()
    assert stop_file.read_text() == f"shutdown {pid}"


def test_sockets_listen_on_loopback_only(start_system: StartSystem) -> None:
    system = start_system([{"id": "echo", "actor": ECHO}])
    assert system.pgid is not None
    pids = set(system_processes(system.admin_port, system.pgid))
    listening = [
        c.laddr
        for c in psutil.net_connections("inet")
        if c.pid in pids and c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)
    ]
    assert listening, "expected the admin and actors to listen"
    assert {addr.ip for addr in listening} == {"127.0.0.1"}


def test_failed_start_names_the_child_and_leaves_nothing(start_system: StartSystem) -> None:
    with pytest.raises(StartFailed) as info:
        start_system([{"id": "echo", "actor": ECHO}, {"id": "bad", "actor": "sysactors:BadStart"}])
    assert info.value.child == "bad" and "cannot open the thing" in info.value.reason
    with pytest.raises(StartFailed) as info:
        start_system([{"id": "typed", "actor": "sysactors:Typed", "args": {"size": "big"}}])
    assert info.value.child == "typed" and "size" in info.value.reason
    with pytest.raises(StartFailed) as info:
        start_system([{"id": "ghost", "actor": "sysactors:NoSuchClass"}])
    assert info.value.child == "ghost"
    # teardown checks that none of the three systems left a process


def test_refuses_an_admin_port_in_use(start_system: StartSystem) -> None:
    first = start_system([{"id": "echo", "actor": ECHO}])
    with pytest.raises(StartFailed) as info:
        System.start({"system": {"admin_port": first.admin_port}})
    assert "already in use" in info.value.reason
    assert first.ask("echo", Ping(n=3), timeout=2) == Pong(n=3)  # the first one is untouched


def test_context_manager_and_default_config(port: int) -> None:
    import os

    os.environ["CALLBOARD_SYSTEM__ADMIN_PORT"] = str(port)
    try:
        with System.start() as system:  # the embedded default: one Echo actor
            assert system.ask("echo", Ping(n=5), timeout=2) == Pong(n=5)
            pgid = system.pgid
    finally:
        del os.environ["CALLBOARD_SYSTEM__ADMIN_PORT"]
    assert system_processes(port, pgid) == []


def test_metrics_cover_every_actor_process_and_logs_are_json(
    start_system: StartSystem, tmp_path: Path
) -> None:
    system = start_system(
        [{"id": "echo", "actor": ECHO}, {"id": "c", "actor": COUNTER}], log_level="debug"
    )
    for i in range(3):
        system.ask("echo", Ping(n=i), timeout=2)
    system.tell("c", Incr())
    system.ask("c", Get(), timeout=2)
    with pytest.raises(RemoteError):
        system.ask("c", Fail(how="business"), timeout=2)
    samples = parse_exposition(system.metrics())

    def value(name: str, **labels: str) -> float:
        return sum(
            v
            for (n, lab), v in samples.items()
            if n == name and labels.items() <= dict(lab).items()
        )

    assert value("callboard_messages_handled_total", actor="echo") == 3
    assert value("callboard_messages_handled_total", actor="c", message_type="test.sys.Incr") == 1
    assert value("callboard_handler_errors_total", actor="c", code="out_of_stock") == 1
    assert value("callboard_handler_seconds_count", actor="echo") == 3
    pids = system.directory()
    system.stop()
    handled = [e for e in read_log(tmp_path) if e.get("event") == "handled"]
    echo_lines = [e for e in handled if e["actor"] == "echo"]
    assert len(echo_lines) == 3
    for line in echo_lines:
        assert line["pid"] == pids["echo"]
        assert line["message_type"] == "callboard.examples.Ping"
        assert line["correlation_id"] and line["level"] == "debug" and line["timestamp"]
