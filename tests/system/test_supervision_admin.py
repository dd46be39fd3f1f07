"""Child administration on real processes, ported from OTP's ``supervisor_SUITE``.

child_adm, simple_one_for_one administration, hanging_restart_loop, sup_stop_timeout /
brutal_kill, the tree view and restart backoff, each on the tcp transport with every
actor in its own OS process. Waiting is always a bounded poll for a condition; the
teardown fixture fails a test that leaves any process of its system behind.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from admactors import Crash, Info, Quit, SpinForever, Who

from callboard import NoSuchActor, RemoteError, StartFailed, System
from callboard.errors import SupervisorError

from conftest import StartSystem, read_log
from sysactors import Count, Fail, Get

COUNTER = "sysactors:Counter"
WORKER = "admactors:Worker"
BAD_START = "sysactors:BadStart"

T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------


def wait_until(cond: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    """Poll ``cond`` until it returns something truthy (a bound, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int) -> None:
    wait_until(lambda: not alive(pid), f"process {pid} to end")


@contextmanager
def sup_error(reason: str) -> Iterator[None]:
    with pytest.raises(SupervisorError) as info:
        yield
    assert info.value.reason == reason, info.value


def row(system: System, sup: str, cid: str) -> dict[str, Any] | None:
    return next((r for r in system.which_children(sup) if r["id"] == cid), None)


def ids(system: System, sup: str) -> list[str]:
    return [r["id"] for r in system.which_children(sup)]


def ask_ready(system: System, name: str, msg: Any) -> Any:
    """Ask ``name``, retrying while it is listed as restarting."""

    def attempt() -> Any:
        try:
            return system.ask(name, msg, timeout=5)
        except RemoteError as exc:
            if exc.code != "restarting":
                raise
            return None

    return wait_until(attempt, f"{name} to answer")


def ask_new(system: System, name: str, msg: Any) -> Any:
    """Ask a child that start_child/restart_child has just (re)started: its name must
    resolve as soon as the call has returned, nested supervisors included."""
    return system.ask(name, msg, timeout=5)


def events(tmp_path: Path, event: str, child: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in read_log(tmp_path)
        if e.get("event") == event and (child is None or e.get("child") == child)
    ]


def stamp(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


# -- child_adm -------------------------------------------------------------------------------

TREE = [
    {"id": "c", "actor": COUNTER},
    {"id": "sub", "supervisor": {"children": [{"id": "w", "actor": COUNTER}]}},
]


@pytest.mark.parametrize(
    ("sup", "own", "elsewhere"), [("root", "c", "w"), ("sub", "w", "c")], ids=["root", "nested"]
)
def test_child_adm(start_system: StartSystem, sup: str, own: str, elsewhere: str) -> None:
    """OTP child_adm: which/count_children, get_childspec, start/terminate/restart/delete
    child, on the root and on a nested one_for_one supervisor."""
    system = start_system(TREE)
    initial = ["c", "sub"] if sup == "root" else ["w"]
    sups = 1 if sup == "root" else 0

    def counts(specs: int, active: int, workers: int) -> dict[str, int]:
        return {"specs": specs, "active": active, "supervisors": sups, "workers": workers}

    n = len(initial)
    rows = system.which_children(sup)
    assert [r["id"] for r in rows] == initial
    assert {r["status"] for r in rows} == {"running"}
    assert system.count_children(sup) == counts(n, n, n - sups)

    spec = system.get_childspec(sup, own)
    assert (spec["id"], spec["actor"], spec["restart"], spec["shutdown"]) == (
        own, COUNTER, "permanent", 5.0,
    )  # fmt: skip
    with sup_error("not_found"):
        system.get_childspec(sup, "nope")

    # start_child with a full spec: the id comes back and the new actor answers.
    extra = {"id": "extra", "actor": COUNTER, "args": {"start": 7}}
    assert system.start_child(sup, extra) == "extra"
    first = ask_new(system, "extra", Get())
    assert isinstance(first, Count) and first.value == 7
    extra_row = row(system, sup, "extra")
    assert extra_row is not None
    assert (extra_row["status"], extra_row["pid"], extra_row["type"]) == (
        "running", first.pid, "worker",
    )  # fmt: skip
    assert ids(system, sup) == [*initial, "extra"]
    assert system.count_children(sup) == counts(n + 1, n + 1, n + 1 - sups)
    assert system.get_childspec(sup, "extra")["args"] == {"start": 7}
    assert system.directory()["extra"] == first.pid

    with sup_error("already_started"):
        system.start_child(sup, extra)
    with sup_error("already_started"):
        system.start_child(sup, {"id": own, "actor": COUNTER})
    with sup_error("already_present"):  # a name used under another supervisor
        system.start_child(sup, {"id": elsewhere, "actor": COUNTER})
    with sup_error("already_present"):  # the supervisor's own name
        system.start_child(sup, {"id": sup, "actor": COUNTER})

    for bad in (
        {"id": "x"},  # neither actor nor supervisor
        {"id": "x", "actor": COUNTER, "supervisor": {"children": []}},  # both
        {"id": "not an id", "actor": COUNTER},
        {"id": "x", "actor": COUNTER, "restart": "sometimes"},
        {"id": "x", "actor": COUNTER, "shutdown": -1},
        {"id": "x", "actor": COUNTER, "bogus": 1},
        {"actor": COUNTER},  # no id
    ):
        with sup_error("invalid_child_spec"):
            system.start_child(sup, bad)
    with sup_error("invalid_child_spec"):
        system.start_child(sup, None)

    # A child whose on_start raises: StartFailed names it, and its spec is not kept.
    with pytest.raises(StartFailed) as failed:
        system.start_child(sup, {"id": "bad", "actor": BAD_START})
    assert failed.value.child == "bad"
    assert "cannot open the thing" in failed.value.reason
    with sup_error("not_found"):
        system.get_childspec(sup, "bad")
    assert "bad" not in system.directory()
    assert ids(system, sup) == [*initial, "extra"]
    assert system.count_children(sup) == counts(n + 1, n + 1, n + 1 - sups)

    # terminate_child: the process ends, the spec stays with status stopped.
    system.terminate_child(sup, "extra")
    wait_gone(first.pid)
    extra_row = row(system, sup, "extra")
    assert extra_row is not None
    assert (extra_row["status"], extra_row["pid"]) == ("stopped", None)
    assert system.get_childspec(sup, "extra")["args"] == {"start": 7}
    assert system.directory()["extra"] is None
    with pytest.raises(RemoteError) as refused:
        system.ask("extra", Get(), timeout=5)
    assert refused.value.code == "not_running"
    assert system.count_children(sup) == counts(n + 1, n, n + 1 - sups)
    system.terminate_child(sup, "extra")  # OTP: terminating a terminated child is ok
    with sup_error("not_found"):
        system.terminate_child(sup, "nope")
    with sup_error("already_present"):
        system.start_child(sup, extra)

    # restart_child: a terminated child comes back in a new process, with fresh state.
    system.restart_child(sup, "extra")
    second = ask_new(system, "extra", Get())
    assert second.value == 7 and second.pid != first.pid
    extra_row = row(system, sup, "extra")
    assert extra_row is not None and (extra_row["status"], extra_row["pid"]) == (
        "running", second.pid,
    )  # fmt: skip
    for cid in ("extra", own):
        with sup_error("running"):
            system.restart_child(sup, cid)
    with sup_error("not_found"):
        system.restart_child(sup, "nope")

    # delete_child: only a terminated child's spec can be deleted.
    for cid in ("extra", own):
        with sup_error("running"):
            system.delete_child(sup, cid)
    system.terminate_child(sup, "extra")
    wait_gone(second.pid)
    system.delete_child(sup, "extra")
    assert ids(system, sup) == initial
    with sup_error("not_found"):
        system.get_childspec(sup, "extra")
    assert "extra" not in system.directory()
    assert system.count_children(sup) == counts(n, n, n - sups)
    for op in (system.delete_child, system.restart_child, system.terminate_child):
        with sup_error("not_found"):
            op(sup, "extra")
    # Once deleted, the id is free again.
    assert system.start_child(sup, extra) == "extra"
    assert ask_new(system, "extra", Get()).value == 7

    # A temporary child's spec goes with it when it is terminated.
    assert system.start_child(sup, {"id": "tmp", "actor": COUNTER, "restart": "temporary"})
    tmp_pid = ask_new(system, "tmp", Get()).pid
    system.terminate_child(sup, "tmp")
    wait_gone(tmp_pid)
    assert "tmp" not in ids(system, sup)
    with sup_error("not_found"):
        system.get_childspec(sup, "tmp")
    assert "tmp" not in system.directory()

    # The supervisor's other children were never disturbed.
    assert [r["restarts"] for r in system.which_children(sup) if r["id"] in initial] == [0] * n


def test_start_child_refuses_the_root_id_below_the_root(start_system: StartSystem) -> None:
    """Ids are unique in the whole tree, the root's included (docs/configuration.md; the
    config loader rejects a child named 'root' with duplicate_child_name). Regression: it
    was accepted, and the root supervisor then looped forever on the next name change."""
    system = start_system([{"id": "sub", "supervisor": {"children": []}}])
    with sup_error("already_present"):
        system.start_child("sub", {"id": "root", "actor": COUNTER})
    assert "root" not in system.directory()


def test_start_child_refuses_a_subtree_reusing_a_name(start_system: StartSystem) -> None:
    """Every id inside a started subtree is checked too. Regression: only the subtree's
    own id was, and an inner child took a live name over in the directory."""
    system = start_system([{"id": "c", "actor": COUNTER}])
    original = system.ask("c", Get(), timeout=5).pid
    for inner in (
        [{"id": "c", "actor": COUNTER}],  # a name in use elsewhere
        [{"id": "x", "actor": COUNTER}, {"id": "x", "actor": COUNTER}],  # twice in itself
        [{"id": "sub2", "actor": COUNTER}],  # the subtree's own id
    ):
        with sup_error("already_present"):
            system.start_child("root", {"id": "sub2", "supervisor": {"children": inner}})
    assert ids(system, "root") == ["c"]
    assert system.directory() == {"c": original}
    assert system.ask("c", Get(), timeout=5).pid == original


def test_admin_calls_on_a_worker_are_not_a_supervisor(start_system: StartSystem) -> None:
    """Every supervisor call addressed to a worker fails with not_a_supervisor."""
    system = start_system(TREE)
    calls: list[Callable[[], object]] = [
        lambda: system.which_children("w"),
        lambda: system.count_children("c"),
        lambda: system.get_childspec("c", "w"),
        lambda: system.start_child("w", {"id": "x", "actor": COUNTER}),
        lambda: system.terminate_child("c", "w"),
        lambda: system.restart_child("c", "w"),
        lambda: system.delete_child("c", "w"),
    ]
    for call in calls:
        with sup_error("not_a_supervisor"):
            call()
    assert ids(system, "root") == ["c", "sub"] and ids(system, "sub") == ["w"]
    assert system.ask("w", Get(), timeout=5).value == 0  # and the worker is unharmed


@pytest.mark.parametrize("how", ["terminate_and_restart", "killed"])
def test_admin_calls_reach_a_restarted_supervisor(start_system: StartSystem, how: str) -> None:
    """Regression: System._admin reused the cached address of the old process, and every
    call to the restarted supervisor raised AskTimeout at once."""
    system = start_system(TREE)
    assert ids(system, "sub") == ["w"]  # the System now knows where "sub" lives
    old = system.directory()["sub"]
    assert old is not None
    if how == "killed":
        os.kill(old, signal.SIGKILL)  # root restarts it (permanent), w comes back with it
    else:
        system.terminate_child("root", "sub")
        system.restart_child("root", "sub")
    wait_until(lambda: system.directory()["sub"] not in (None, old), "sub to be back")
    wait_until(lambda: system.directory()["w"] is not None, "w to be back")
    assert ids(system, "sub") == ["w"]
    assert system.count_children("sub")["active"] == 1


# -- simple_one_for_one --------------------------------------------------------------------


def pool(sup_id: str, restart: str = "permanent") -> dict[str, Any]:
    template = {
        "id": f"{sup_id}-job",
        "actor": WORKER,
        "restart": restart,
        "args": {"tag": "tmpl", "n": 1},
    }
    return {"id": sup_id, "supervisor": {"strategy": "simple_one_for_one", "children": [template]}}


def test_simple_one_for_one_administration(start_system: StartSystem) -> None:
    """start_child merges args into the template, ids default to <sup>-<n>; restart and
    delete do not apply; terminate_child forgets the child."""
    system = start_system([pool("pool")])
    assert system.which_children("pool") == []  # nothing is started with the supervisor
    assert system.count_children("pool") == {
        "specs": 0, "active": 0, "supervisors": 0, "workers": 0,
    }  # fmt: skip

    # args are merged into the template's; the actor sees the result.
    first = system.start_child("pool", args={"n": 5})
    assert first == "pool-1"
    info = ask_new(system, first, Who())
    assert isinstance(info, Info) and (info.tag, info.n) == ("tmpl", 5)
    named = system.start_child("pool", args={"tag": "mine"}, child_id="mine")
    assert named == "mine"
    mine = ask_new(system, "mine", Who())
    assert (mine.tag, mine.n) == ("mine", 1)
    plain = system.start_child("pool")
    assert plain.startswith("pool-") and plain not in (first, named)
    assert ask_new(system, plain, Who()).n == 1  # the template's args unchanged

    assert ids(system, "pool") == [first, "mine", plain]
    assert system.count_children("pool") == {
        "specs": 3, "active": 3, "supervisors": 0, "workers": 3,
    }  # fmt: skip
    spec = system.get_childspec("pool", "mine")
    assert (spec["id"], spec["actor"], spec["args"]) == ("mine", WORKER, {"tag": "mine", "n": 1})
    with sup_error("already_started"):
        system.start_child("pool", child_id="mine")
    with sup_error("already_present"):  # the pool's own name
        system.start_child("pool", child_id="pool")
    with sup_error("invalid_child_spec"):  # args the template's spec cannot take
        system.start_child("pool", child_id="bad id")

    for op in (system.restart_child, system.delete_child):
        with sup_error("simple_one_for_one"):
            op("pool", "mine")
    with sup_error("not_found"):
        system.terminate_child("pool", "nope")

    # terminate_child ends the process and forgets the child.
    pid = system.ask("mine", Who(), timeout=5).pid
    system.terminate_child("pool", "mine")
    wait_gone(pid)
    assert ids(system, "pool") == [first, plain]
    assert "mine" not in system.directory()
    with sup_error("not_found"):
        system.get_childspec("pool", "mine")
    # ...so its id can be used again.
    assert system.start_child("pool", child_id="mine") == "mine"
    assert ask_new(system, "mine", Who()).pid != pid


@pytest.mark.parametrize("sup", ["pool", "sub"])
def test_a_started_child_is_addressable_at_once(start_system: StartSystem, sup: str) -> None:
    """Once start_child has returned the id, asking that id reaches the child (what the
    docs' own example does). Four threads, 20 children each."""
    system = start_system([pool("pool", "temporary"), {"id": "sub", "supervisor": {}}])
    missed: list[str] = []

    def run(thread: int) -> None:
        for i in range(20):
            cid = f"j{thread}-{i}"
            if sup == "pool":
                system.start_child("pool", child_id=cid)
            else:
                system.start_child("sub", {"id": cid, "actor": WORKER, "restart": "temporary"})
            try:
                system.ask(cid, Who(), timeout=5)
            except NoSuchActor:
                missed.append(cid)
            system.terminate_child(sup, cid)

    with ThreadPoolExecutor(4) as threads:
        list(threads.map(run, range(4)))
    assert missed == []


def test_dynamic_children_follow_their_restart_type(start_system: StartSystem) -> None:
    """A crashed permanent dynamic child is restarted under its id; a transient one is
    restarted after a crash and removed after a normal exit."""
    system = start_system([pool("perm"), pool("trans", restart="transient")])

    # permanent: a crashed dynamic child comes back under the same id, in a new process.
    cid = system.start_child("perm")
    old = ask_new(system, cid, Who()).pid
    with pytest.raises(RemoteError) as info:
        system.ask(cid, Crash(), timeout=5)
    assert info.value.code == "crashed"
    new = wait_until(
        lambda: (p := ask_ready(system, cid, Who()).pid) != old and p, f"{cid} to restart"
    )
    wait_gone(old)
    assert ids(system, "perm") == [cid]
    restarted = row(system, "perm", cid)
    assert restarted is not None
    assert (restarted["pid"], restarted["restarts"], restarted["last_exit_reason"]) == (
        new, 1, "error",
    )  # fmt: skip

    # transient: a crash is restarted, a normal exit removes the child.
    cid = system.start_child("trans")
    old = ask_new(system, cid, Who()).pid
    with pytest.raises(RemoteError):
        system.ask(cid, Crash(), timeout=5)
    wait_until(lambda: ask_ready(system, cid, Who()).pid != old, f"{cid} to restart")
    pid = system.ask(cid, Who(), timeout=5).pid
    system.ask(cid, Quit(reason="normal"), timeout=5)
    wait_until(lambda: cid not in ids(system, "trans"), f"{cid} to be removed")
    wait_gone(pid)
    assert cid not in system.directory()
    assert system.count_children("trans")["specs"] == 0


def test_dynamic_children_die_with_their_supervisor(
    start_system: StartSystem, tmp_path: Path
) -> None:
    """Eight dynamic children end with their pool: when the parent terminates the pool,
    and when the system stops."""
    system = start_system([pool("pool"), pool("other")])
    many = 8

    def fill(sup: str) -> dict[str, int]:
        started = [system.start_child(sup) for _ in range(many)]
        return {cid: ask_new(system, cid, Who()).pid for cid in started}

    pids = fill("pool")
    assert len(set(pids.values())) == many
    pool_pid = system.directory()["pool"]
    assert pool_pid is not None

    # The pool supervisor terminated by its parent takes every dynamic child with it.
    system.terminate_child("root", "pool")
    for pid in [*pids.values(), pool_pid]:
        wait_gone(pid)
    assert row(system, "root", "pool")["status"] == "stopped"  # type: ignore[index]
    assert not set(pids) & set(system.directory())
    stopped = {e["child"] for e in events(tmp_path, "child_stopped") if e["actor"] == "pool"}
    assert stopped == set(pids)
    # Restarted, it starts empty: dynamic children are not part of its spec (OTP).
    system.restart_child("root", "pool")
    assert system.which_children("pool") == []

    # The whole system stopping ends them too (teardown also checks nothing is left).
    others = fill("other")
    system.stop()
    for pid in others.values():
        wait_gone(pid)
    stopped = {e["child"] for e in events(tmp_path, "child_stopped") if e["actor"] == "other"}
    assert stopped == set(others)


# -- hanging_restart_loop -------------------------------------------------------------------


def test_hanging_restart_loop(start_system: StartSystem, tmp_path: Path) -> None:
    """A child whose every restart fails: administration still works while it is
    ``restarting``, terminate_child ends the loop, and the system still stops."""
    marker = tmp_path / "refuse-to-start"
    stop_file = tmp_path / "sibling-stopped"
    backoff = {"min": 0.2, "max": 0.2, "jitter": 0.0}
    flaky = {"id": "flaky", "actor": WORKER, "args": {"marker": str(marker)}, "backoff": backoff}
    sibling = {"id": "probe", "actor": WORKER, "args": {"stop_file": str(stop_file)},
               "backoff": backoff}  # fmt: skip
    system = start_system([flaky, sibling], supervisor={"intensity": 1000, "period": 1})
    first = system.ask("flaky", Who(), timeout=5).pid

    marker.touch()
    with pytest.raises(RemoteError):
        system.ask("flaky", Crash(), timeout=5)
    wait_until(lambda: len(events(tmp_path, "restart_failed", "flaky")) >= 2, "failed restarts")
    wait_until(lambda: row(system, "root", "flaky")["status"] == "restarting", "restarting")  # type: ignore[index]
    wait_until(lambda: system.tree()["children"][0]["status"] == "restarting", "restarting in tree")
    assert system.directory()["flaky"] is None
    assert "marker" in events(tmp_path, "restart_failed", "flaky")[0]["error"]

    # Administration gets in between the attempts.
    with sup_error("already_present"):
        system.start_child("root", flaky)
    with sup_error("restarting"):
        system.restart_child("root", "flaky")
    with sup_error("restarting"):
        system.delete_child("root", "flaky")
    assert system.count_children("root")["active"] == 1

    system.terminate_child("root", "flaky")
    stopped = row(system, "root", "flaky")
    assert stopped is not None and (stopped["status"], stopped["pid"]) == ("stopped", None)
    attempts = len(events(tmp_path, "restart_failed", "flaky"))
    # No attempt follows. A restart of the sibling, scheduled now with the same backoff,
    # runs after any attempt of flaky's that was still pending at the terminate.
    probe_pid = system.ask("probe", Who(), timeout=5).pid
    with pytest.raises(RemoteError):
        system.ask("probe", Crash(), timeout=5)
    wait_until(lambda: events(tmp_path, "child_restarted", "probe"), "the sibling's restart")
    assert ask_ready(system, "probe", Who()).pid != probe_pid
    assert len(events(tmp_path, "restart_failed", "flaky")) == attempts
    assert row(system, "root", "flaky")["status"] == "stopped"  # type: ignore[index]
    assert not alive(first)

    # With the cause gone, restart_child succeeds.
    marker.unlink()
    system.restart_child("root", "flaky")
    assert system.ask("flaky", Who(), timeout=5).pid != first
    assert row(system, "root", "flaky")["status"] == "running"  # type: ignore[index]

    # Back in the loop, the system still stops in order: the sibling's on_stop runs.
    marker.touch()
    with pytest.raises(RemoteError):
        system.ask("flaky", Crash(), timeout=5)
    before = len(events(tmp_path, "restart_failed", "flaky"))
    wait_until(lambda: len(events(tmp_path, "restart_failed", "flaky")) > before, "a failure")
    probe_pid = system.ask("probe", Who(), timeout=5).pid
    system.stop()
    assert stop_file.read_text() == f"shutdown {probe_pid}"
    stopped_event = events(tmp_path, "child_stopped", "probe")[-1]
    failures = events(tmp_path, "restart_failed", "flaky")
    assert stamp(failures[-1]) < stamp(stopped_event)


# -- sup_stop_timeout / brutal_kill ---------------------------------------------------------


def test_shutdown_timeout_and_brutal_kill(start_system: StartSystem, tmp_path: Path) -> None:
    """OTP sup_stop_timeout / brutal_kill, through terminate_child."""
    spin_flag = tmp_path / "spinning"
    files = {name: tmp_path / f"{name}.stopped" for name in ("spin", "bk", "nice")}
    system = start_system(
        [
            {"id": "spin", "actor": WORKER, "shutdown": 0.5,
             "args": {"stop_file": str(files["spin"])}},
            {"id": "bk", "actor": COUNTER, "shutdown": "brutal_kill",
             "args": {"stop_file": str(files["bk"])}},
            {"id": "nice", "actor": COUNTER, "args": {"stop_file": str(files["nice"])}},
        ]
    )  # fmt: skip
    pids = {name: system.directory()[name] for name in files}

    # A child stuck in a handler ignores the shutdown request: SIGKILL after 0.5 s.
    system.tell("spin", SpinForever(flag=str(spin_flag)))
    wait_until(spin_flag.exists, "the spin handler to run")
    asked = time.monotonic()
    system.terminate_child("root", "spin")
    assert time.monotonic() - asked >= 0.5  # it was given its shutdown time first
    assert not alive(pids["spin"])
    timeouts = events(tmp_path, "shutdown_timeout")
    assert [(e["child"], e["after_s"]) for e in timeouts] == [("spin", 0.5)]
    assert not files["spin"].exists()  # killed: its on_stop never ran

    # brutal_kill: killed at once, on_stop does not run, no shutdown_timeout either.
    system.terminate_child("root", "bk")
    wait_gone(pids["bk"])
    assert not files["bk"].exists()

    # A normal child stops itself: on_stop runs with reason shutdown.
    system.terminate_child("root", "nice")
    wait_gone(pids["nice"])
    assert files["nice"].read_text() == f"shutdown {pids['nice']}"

    assert [e["child"] for e in events(tmp_path, "shutdown_timeout")] == ["spin"]
    assert [e["child"] for e in events(tmp_path, "child_stopped")] == ["spin", "bk", "nice"]
    assert {r["id"]: r["status"] for r in system.which_children("root")} == {
        "spin": "stopped", "bk": "stopped", "nice": "stopped",
    }  # fmt: skip
    # And each comes back on request.
    for name in files:
        system.restart_child("root", name)
    assert all(system.directory()[name] not in (None, pids[name]) for name in files)


# -- tree ----------------------------------------------------------------------------------


def test_tree_shows_the_nested_shape(start_system: StartSystem) -> None:
    """system.tree() of a 3-level tree: shape, types, strategies, pids, statuses, and the
    restart counts and exit reason after a crash."""
    system = start_system(
        [
            {"id": "a", "actor": COUNTER},
            {"id": "mid", "supervisor": {"strategy": "one_for_all", "children": [
                {"id": "b", "actor": COUNTER},
                {"id": "leaf", "supervisor": {"strategy": "rest_for_one", "children": [
                    {"id": "c", "actor": COUNTER},
                    {"id": "d", "actor": COUNTER},
                ]}},
            ]}},
        ]
    )  # fmt: skip

    def flat(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
        found = {}
        for child in node["children"]:
            found[child["id"]] = child
            if child["type"] == "supervisor":
                found.update(flat(child))
        return found

    tree = system.tree()
    assert (tree["id"], tree["type"], tree["strategy"], tree["status"]) == (
        "root", "supervisor", "one_for_one", "running",
    )  # fmt: skip
    shape = [
        (n["id"], n["type"], [(m["id"], m["type"], [k["id"] for k in m.get("children", [])])
                              for m in n.get("children", [])])
        for n in tree["children"]
    ]  # fmt: skip
    assert shape == [
        ("a", "worker", []),
        ("mid", "supervisor", [("b", "worker", []), ("leaf", "supervisor", ["c", "d"])]),
    ]
    nodes = flat(tree)
    assert (nodes["mid"]["strategy"], nodes["leaf"]["strategy"]) == ("one_for_all", "rest_for_one")
    assert all("strategy" not in nodes[w] and "children" not in nodes[w] for w in "abcd")
    directory = system.directory()
    assert {name: node["pid"] for name, node in nodes.items()} == directory
    assert len(set(directory.values())) == 6 and tree["pid"] not in directory.values()
    for name in "abcd":
        assert system.ask(name, Get(), timeout=5).pid == directory[name]
    for node in [tree, *nodes.values()]:
        assert node["status"] == "running" and node["restarts"] == 0
        assert node["last_exit_reason"] is None and node["uptime_s"] >= 0

    # A crash of c (rest_for_one: c and d restart) shows in the counts, the reason and
    # the pids; the rest of the tree is untouched.
    with pytest.raises(RemoteError):
        system.ask("c", Fail(how="crash"), timeout=5)
    wait_until(
        lambda: (
            {n["status"] for n in flat(system.tree()).values()} == {"running"}
            and flat(system.tree())["c"]["restarts"] == 1
        ),
        "c to be restarted",
    )
    after = flat(system.tree())
    assert (after["c"]["restarts"], after["c"]["last_exit_reason"]) == (1, "error")
    assert after["c"]["pid"] != nodes["c"]["pid"] and after["d"]["pid"] != nodes["d"]["pid"]
    assert after["d"]["restarts"] == 1
    for name in ("a", "mid", "b", "leaf"):
        assert (after[name]["pid"], after[name]["restarts"]) == (nodes[name]["pid"], 0)
    assert {name: node["pid"] for name, node in after.items()} == system.directory()
    assert all(node["uptime_s"] >= 0 for node in after.values())


# -- backoff -------------------------------------------------------------------------------


def test_backoff_delays_the_restart(start_system: StartSystem, tmp_path: Path) -> None:
    """With backoff min = max = 0.3 s the crashed child shows as restarting, then comes
    back; the runtime's own log puts >= 0.3 s between its exit and its new start."""
    delay = 0.3
    system = start_system(
        [
            {"id": "slow", "actor": WORKER,
             "backoff": {"min": delay, "max": delay, "jitter": 0.0}},
        ]
    )  # fmt: skip
    for round_ in (1, 2):
        old = system.ask("slow", Who(), timeout=5).pid
        with pytest.raises(RemoteError) as info:
            system.ask("slow", Crash(), timeout=5)
        assert info.value.code == "crashed"
        slow = row(system, "root", "slow")
        assert slow is not None and (slow["status"], slow["pid"]) == ("restarting", None)
        with pytest.raises(RemoteError) as info:
            system.ask("slow", Who(), timeout=5)
        assert info.value.code == "restarting"
        new = ask_ready(system, "slow", Who()).pid
        assert new != old
        slow = row(system, "root", "slow")
        assert slow is not None
        assert (slow["status"], slow["pid"], slow["restarts"]) == ("running", new, round_)

    exited = events(tmp_path, "child_exited", "slow")
    started = [e for e in events(tmp_path, "child_started", "slow") if e["actor"] == "root"]
    assert len(exited) == 2 and len(started) == 3
    for crash, back in zip(exited, started[1:], strict=True):
        gap = (stamp(back) - stamp(crash)).total_seconds()
        assert gap >= delay - 0.01, gap  # timers may round: a lower bound only
