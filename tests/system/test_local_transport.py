"""The same actor semantics on the local transport (Thespian simpleSystemBase, one process)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from callboard import InvalidMessage, NoSuchActor, RemoteError, System
from callboard.actors.examples import Ping, Pong, Relay

from sysactors import AskVia, Big, Fail, Get, HowLong, Incr


@pytest.fixture
def local() -> Iterator[System]:
    config = {
        "system": {"transport": "local", "log_level": "error", "max_frame_bytes": 2048},
        "supervisor": {
            "children": [
                {"id": "echo", "actor": "callboard.actors.examples:Echo"},
                {"id": "echo2", "actor": "callboard.actors.examples:Echo"},
                {"id": "c", "actor": "sysactors:Counter", "args": {"start": 5}},
                {"id": "gate", "actor": "sysactors:Gate"},
                {"id": "caller", "actor": "sysactors:Caller"},
            ]
        },
    }
    with System.start(config) as system:
        yield system
    assert not system.running


def test_everything_runs_in_the_host_process(local: System) -> None:
    assert set(local.directory().values()) == {os.getpid()}
    assert local.pgid is None  # nothing to reap, and never our own group


def test_ask_relay_and_tell(local: System) -> None:
    assert local.ask("echo", Ping(n=1)) == Pong(n=1)
    assert local.ask("echo2", Relay(n=2, via="echo")) == Pong(n=2)
    local.tell("c", Incr(by=3))
    assert local.ask("c", Get()).value == 8


def test_errors_and_restart(local: System) -> None:
    with pytest.raises(RemoteError) as info:
        local.ask("c", Fail(how="business"))
    assert info.value.code == "out_of_stock"
    with pytest.raises(RemoteError) as info:
        local.ask("c", Fail(how="crash"))
    assert info.value.code == "crashed"
    # The restart happens while the host waits in ask; the fresh actor starts from Args.
    for _ in range(100):
        try:
            assert local.ask("c", Get()).value == 5
            break
        except RemoteError as exc:
            assert exc.code == "restarting"
    else:
        pytest.fail("c never came back")
    with pytest.raises(NoSuchActor):
        local.ask("nobody", Get())


def test_deadlines_and_timeouts(local: System) -> None:
    assert local.ask("caller", AskVia(target="gate", timeout=0.1), timeout=5).result == "AskTimeout"
    seen = local.ask("caller", HowLong(), timeout=1.5).seconds
    assert seen is not None and 0 < seen <= 1.5


def test_messages_are_encoded_even_in_one_process(local: System) -> None:
    with pytest.raises(InvalidMessage) as info:
        local.ask("c", Big(blob=b"x" * 4096))
    assert info.value.reason == "oversized"
