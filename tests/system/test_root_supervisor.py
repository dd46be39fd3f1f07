"""What the root supervisor does in the foundation: ordered start, restarts, giving up."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from callboard import RemoteError, SystemFailed

from conftest import StartSystem, read_log
from sysactors import Arm, Fail, Get, StopMe

COUNTER = "sysactors:Counter"


def wait_running(system, name: str):  # type: ignore[no-untyped-def]
    """Ask ``name`` until it answers: a restart is fast but not instantaneous."""
    for _ in range(2000):
        try:
            return system.ask(name, Get(), timeout=5)
        except RemoteError as exc:
            if exc.code != "restarting":
                raise
    raise AssertionError(f"{name} never came back")


def test_children_start_in_order_and_stop_in_reverse(
    start_system: StartSystem, tmp_path: Path
) -> None:
    ids = ["a", "b", "c", "d"]
    system = start_system([{"id": i, "actor": COUNTER} for i in ids])
    system.stop()
    events = read_log(tmp_path)
    started = [e["child"] for e in events if e.get("event") == "child_started"]
    stopped = [e["child"] for e in events if e.get("event") == "child_stopped"]
    assert started == ids
    assert stopped == list(reversed(ids))


def test_killed_child_is_restarted_with_reason_killed(
    start_system: StartSystem, tmp_path: Path
) -> None:
    import os

    system = start_system([{"id": "c", "actor": COUNTER}])
    old = system.ask("c", Get(), timeout=2).pid
    os.kill(old, signal.SIGKILL)
    new = old
    for _ in range(200):  # until the name resolves to the replacement
        new = wait_running(system, "c").pid
        if new != old:
            break
    assert new != old, "c was not replaced"
    exits = [e for e in read_log(tmp_path) if e.get("event") == "child_exited"]
    assert [(e["child"], e["reason"]) for e in exits] == [("c", "killed")]


def test_restart_types_on_a_normal_exit(start_system: StartSystem, tmp_path: Path) -> None:
    system = start_system(
        [
            {"id": "perm", "actor": COUNTER, "restart": "permanent"},
            {"id": "trans", "actor": COUNTER, "restart": "transient"},
            {"id": "temp", "actor": COUNTER, "restart": "temporary"},
        ]
    )
    pids = {name: system.ask(name, Get(), timeout=2).pid for name in ("perm", "trans", "temp")}
    for name in pids:
        system.ask(name, StopMe(reason="normal"), timeout=2)
    assert wait_running(system, "perm").pid != pids["perm"]  # permanent: always restarted
    directory = system.directory()
    assert directory["trans"] is None  # transient: a normal exit is final, the spec stays
    assert "temp" not in directory  # temporary: never restarted, its spec is dropped
    reasons = {
        e["child"]: e["reason"] for e in read_log(tmp_path) if e.get("event") == "child_exited"
    }
    assert reasons == {"perm": "normal", "trans": "normal", "temp": "normal"}


def test_scheduled_message_arrives(start_system: StartSystem) -> None:
    system = start_system([{"id": "c", "actor": COUNTER}])
    system.tell("c", Arm(delay=0.05))
    value = system.ask("c", Get(), timeout=2).value
    while value < 1000:  # Get reports 1000 per tick received
        value = system.ask("c", Get(), timeout=2).value
    assert value == 1000


def test_too_many_restarts_fail_the_system(start_system: StartSystem, tmp_path: Path) -> None:
    system = start_system(
        [{"id": "c", "actor": COUNTER}, {"id": "other", "actor": COUNTER}],
        supervisor={"intensity": 2, "period": 30},
    )
    crashes = 0
    with pytest.raises(SystemFailed) as info:
        while True:
            try:
                system.ask("c", Fail(how="crash"), timeout=5)
            except RemoteError as exc:
                assert exc.code in ("crashed", "restarting")
                crashes += exc.code == "crashed"
    assert crashes == 3  # the third restart within the period exceeds intensity 2
    assert "reached_max_restart_intensity" in info.value.reason
    with pytest.raises(SystemFailed):  # and on every call after
        system.ask("other", Get(), timeout=2)
    events = [e.get("event") for e in read_log(tmp_path)]
    assert "restart_intensity_exceeded" in events
