"""Beyond OTP: stuck children are detected and replaced; no process is ever orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from lifeactors import Busy, Hang, Me, WhoAmI

from callboard import AskTimeout, RemoteError, System, SystemFailed
from callboard._thespian import processes_in_group

from conftest import StartSystem, pick_port, read_log, system_processes

WORKER = "lifeactors:Worker"


def pid_of(system: System, name: str) -> int:
    """The pid of ``name`` once it answers (it may be restarting)."""
    for _ in range(3000):
        try:
            reply = system.ask(name, WhoAmI(), timeout=5)
            assert isinstance(reply, Me)
            return reply.pid
        except RemoteError as exc:
            if exc.code not in ("restarting", "stopping"):
                raise
    raise AssertionError(f"{name} never answered")


def new_pid_of(system: System, name: str, old: int) -> int:
    for _ in range(3000):
        pid = pid_of(system, name)
        if pid != old:
            return pid
    raise AssertionError(f"{name} was not replaced")


def wait_gone(pids: list[int], limit_s: float = 10.0) -> float:
    """Seconds until none of ``pids`` is alive (zombies count as gone); fails after limit."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return time.monotonic() - start
        time.sleep(0.005)  # polling the process table; the condition is what we wait for
    raise AssertionError(f"still alive after {limit_s}s: {[p for p in pids if _alive(p)]}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


# -- liveness -------------------------------------------------------------------------------


def test_a_stuck_handler_is_detected_killed_and_replaced(
    start_system: StartSystem, tmp_path: Path
) -> None:
    system = start_system(
        [{"id": "w", "actor": WORKER, "liveness": {"interval": 0.1, "timeout": 0.3}}]
    )
    old = pid_of(system, "w")
    system.tell("w", Hang())
    new = new_pid_of(system, "w", old)
    assert not _alive(old)
    events = read_log(tmp_path)
    assert any(e.get("event") == "liveness_timeout" and e.get("child") == "w" for e in events)
    exits = [e["reason"] for e in events if e.get("event") == "child_exited" and e["child"] == "w"]
    assert exits == ["timeout"]
    assert pid_of(system, "w") == new


def test_a_stopped_process_counts_as_stuck(start_system: StartSystem, tmp_path: Path) -> None:
    system = start_system(
        [{"id": "w", "actor": WORKER, "liveness": {"interval": 0.1, "timeout": 0.3}}]
    )
    old = pid_of(system, "w")
    os.kill(old, signal.SIGSTOP)
    new_pid_of(system, "w", old)
    exits = [e["reason"] for e in read_log(tmp_path) if e.get("event") == "child_exited"]
    assert exits == ["timeout"]


def test_slow_but_within_its_bound_is_not_killed(start_system: StartSystem, tmp_path: Path) -> None:
    system = start_system(
        [{"id": "w", "actor": WORKER, "liveness": {"interval": 0.1, "timeout": 2.0}}]
    )
    old = pid_of(system, "w")
    for _ in range(3):  # each busy spell blocks probes for 0.5 s, well inside the 2 s bound
        assert system.ask("w", Busy(seconds=0.5), timeout=10) == Me(pid=old)
    assert pid_of(system, "w") == old
    assert not [e for e in read_log(tmp_path) if e.get("event") == "liveness_timeout"]


# -- no orphans -------------------------------------------------------------------------------


def test_sigkill_of_a_supervisor_takes_its_subtree_and_it_is_restarted(
    start_system: StartSystem,
) -> None:
    system = start_system(
        [
            {"id": "top", "actor": WORKER},
            {
                "id": "mid",
                "supervisor": {
                    "children": [
                        {"id": "a", "actor": WORKER},
                        {
                            "id": "inner",
                            "supervisor": {"children": [{"id": "b", "actor": WORKER}]},
                        },
                    ]
                },
            },
        ]
    )
    tree = system.directory()
    mid = tree["mid"]
    assert mid is not None
    below = descendants(mid)
    assert {tree["a"], tree["inner"], tree["b"]} <= set(below)
    os.kill(mid, signal.SIGKILL)
    elapsed = wait_gone(below)
    print(f"subtree of a SIGKILLed supervisor gone after {elapsed * 1000:.1f} ms")
    # The root restarts the supervisor, which starts a fresh subtree.
    new_b = new_pid_of(system, "b", tree["b"])  # type: ignore[arg-type]
    assert new_b not in below
    assert pid_of(system, "top") == tree["top"]  # one_for_one: the sibling is untouched


def test_sigkill_of_a_leaf_leaves_no_orphan(start_system: StartSystem) -> None:
    system = start_system([{"id": "w", "actor": WORKER}])
    old = pid_of(system, "w")
    os.kill(old, signal.SIGKILL)
    new_pid_of(system, "w", old)
    assert system.pgid is not None
    live = set(processes_in_group(system.pgid))
    assert old not in live


def test_sigkill_of_the_root_takes_the_whole_system(start_system: StartSystem) -> None:
    system = start_system(
        [
            {"id": "w", "actor": WORKER},
            {"id": "s", "supervisor": {"children": [{"id": "x", "actor": WORKER}]}},
        ]
    )
    assert system.pgid is not None
    everything = processes_in_group(system.pgid)
    root = system.tree()["pid"]
    assert root in everything and len(everything) >= 6  # admin, logger, root, w, s, x
    os.kill(root, signal.SIGKILL)
    elapsed = wait_gone(everything)
    print(f"whole system gone {elapsed * 1000:.1f} ms after the root was SIGKILLed")
    with pytest.raises((SystemFailed, AskTimeout)):
        system.ask("w", WhoAmI(), timeout=2)


def test_sigkill_of_the_thespian_admin_takes_the_whole_system(start_system: StartSystem) -> None:
    system = start_system([{"id": "w", "actor": WORKER}])
    assert system.pgid is not None
    everything = processes_in_group(system.pgid)
    root = system.tree()["pid"]
    admin = psutil.Process(root).ppid()
    assert admin in everything
    os.kill(admin, signal.SIGKILL)
    elapsed = wait_gone(everything)
    print(f"whole system gone {elapsed * 1000:.1f} ms after the admin was SIGKILLed")


HOST_SCRIPT = """
import sys, time
from callboard import System
system = System.start({"system": {"admin_port": int(sys.argv[1]), "log_level": "warning"},
    "supervisor": {"children": [
        {"id": "w", "actor": "callboard.actors.examples:Echo"},
        {"id": "s", "supervisor": {"children": [
            {"id": "x", "actor": "callboard.actors.examples:Echo"}]}}]}})
open(sys.argv[2], "w").write(str(system.pgid))
time.sleep(600)  # the test SIGKILLs this host process
"""


def test_the_system_dies_with_its_host_process(tmp_path: Path) -> None:
    port = pick_port()
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    marker = tmp_path / "pgid"
    log = (tmp_path / "host.out").open("w")
    host = subprocess.Popen(
        [sys.executable, str(script), str(port), str(marker)], stdout=log, stderr=log
    )
    try:
        for _ in range(2000):
            if marker.exists() and marker.read_text():
                break
            if host.poll() is not None:
                pytest.fail((tmp_path / "host.out").read_text())
            time.sleep(0.01)  # waiting for the host to report it is up
        pgid = int(marker.read_text())
        everything = processes_in_group(pgid)
        assert len(everything) >= 5
        host.kill()
        host.wait()
        elapsed = wait_gone(everything)
        print(f"whole system gone {elapsed * 1000:.1f} ms after its host was SIGKILLed")
        assert system_processes(port, pgid) == []
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        log.close()
