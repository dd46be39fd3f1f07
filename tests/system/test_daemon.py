"""The daemon (`callboard run`) as a real subprocess, driven by the real admin client."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from callboard._thespian import processes_in_group

from conftest import kill_leftovers, pick_port

HERE = Path(__file__).resolve().parent

CONFIG = """
[system]
admin_port = {admin_port}
log_level = "info"

[daemon]
state_dir = "{state}"
api_port = {api_port}
{tokens}

[supervisor]
strategy = "one_for_one"
intensity = {intensity}
period = 5

[[supervisor.children]]
id = "echo"
actor = "callboard.actors.examples:Echo"

[[supervisor.children]]
id = "counter"
actor = "sysactors:Counter"
shutdown = {counter_shutdown}

[[supervisor.children]]
id = "pool"
[supervisor.children.supervisor]
strategy = "simple_one_for_one"
[[supervisor.children.supervisor.children]]
id = "job"
actor = "sysactors:Counter"
restart = "transient"
"""

VIEWER = """
[[daemon.tokens]]
id = "root-admin"
role = "admin"
secret_file = "admin.secret"

[[daemon.tokens]]
id = "ci-viewer"
role = "viewer"
secret_file = "viewer.secret"
"""


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    state: Path
    out: Path
    err: Path
    admin_port: int
    api_port: int
    info: dict[str, object] = field(default_factory=dict)

    def cli(self, *args: str, token_file: Path | None = None) -> tuple[int, str, str]:
        cmd = [sys.executable, "-m", "callboard", "admin", "--state-dir", str(self.state)]
        if token_file is not None:
            cmd += ["--token-file", str(token_file)]
        # The client starts no actor system, so capturing its output cannot hang.
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=_env())
        return done.returncode, done.stdout, done.stderr

    def pgid(self) -> int:
        return int(self.info["pgid"])  # type: ignore[call-overload]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


def _wait_ready(d: Daemon, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "callboard ready:" in d.out.read_text():
            d.info = json.loads((d.state / "daemon.json").read_text())
            return
        if d.proc.poll() is not None:
            pytest.fail(f"daemon exited {d.proc.returncode}:\n{d.err.read_text()[-3000:]}")
        time.sleep(0.02)  # polling the daemon's stdout file for its ready line
    pytest.fail("daemon never printed its ready line")


def start_daemon(
    tmp_path: Path, name: str = "d", *, tokens: str = "", intensity: int = 3,
    counter_shutdown: str = "5.0", admin_port: int | None = None, api_port: int | None = None,
    wait: bool = True,
) -> Daemon:  # fmt: skip
    state = tmp_path / f"{name}-state"
    state.mkdir(exist_ok=True)
    if tokens:
        for secret_name, secret in (
            ("admin.secret", "s3cret-admin"),
            ("viewer.secret", "s3cret-viewer"),
        ):
            (state / secret_name).write_text(secret + "\n")
    admin_port = admin_port or pick_port()
    api_port = api_port or pick_port()
    config = tmp_path / f"{name}.toml"
    config.write_text(
        CONFIG.format(
            admin_port=admin_port, api_port=api_port, state=state, tokens=tokens,
            intensity=intensity, counter_shutdown=counter_shutdown,
        )
    )  # fmt: skip
    return launch_daemon(config, state, admin_port, api_port, name, wait=wait)


def launch_daemon(
    config: Path, state: Path, admin_port: int, api_port: int, name: str, *, wait: bool = True
) -> Daemon:
    """``callboard run --config config`` in a new session, its stdout and stderr in
    ``name.out`` and ``name.err`` beside ``config``; ``wait``: until its ready line."""
    out, err = config.parent / f"{name}.out", config.parent / f"{name}.err"
    # Files, not pipes: the daemon's actor processes inherit its stdout/stderr.
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callboard", "run", "--config", str(config)],
            stdout=fo, stderr=fe, env=_env(), start_new_session=True,
        )  # fmt: skip
    d = Daemon(proc, state, out, err, admin_port, api_port)
    if wait:
        _wait_ready(d)
    return d


def stop_daemon(d: Daemon, sig: int = signal.SIGTERM) -> int:
    if d.proc.poll() is None:
        d.proc.send_signal(sig)
    try:
        return d.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(d.proc.pid, signal.SIGKILL)  # the session we created for it
        d.proc.wait()
        raise


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons started by a test; at teardown each is stopped and the test FAILS if any
    process of its actor system survives."""
    started: list[Daemon] = []
    yield started
    leaks = []
    for d in started:
        stop_daemon(d)
        pgid = int(d.info["pgid"]) if d.info.get("pgid") else None  # type: ignore[call-overload]
        alive = kill_leftovers(d.admin_port, pgid)
        if alive:
            leaks.append(alive)
    if leaks:
        pytest.fail(f"processes left behind: {leaks}")


def wait_gone(pgid: int, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while processes_in_group(pgid):
        if time.monotonic() - start > timeout:
            pytest.fail(f"processes of group {pgid} still alive: {processes_in_group(pgid)}")
        time.sleep(0.01)  # polling the process table
    return time.monotonic() - start


# -- tests ---------------------------------------------------------------------------------


def test_ready_line_state_files_and_a_generated_0600_token(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start_daemon(tmp_path)
    daemons.append(d)
    assert d.info["url"] == f"http://127.0.0.1:{d.api_port}"
    assert int(d.info["pid"]) == d.proc.pid  # type: ignore[call-overload]
    token = d.state / "admin.token"
    assert d.info["token_file"] == str(token)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert (d.state / "callboard.pid").read_text().strip() == str(d.proc.pid)
    rc, out, err = d.cli("--json", "status")
    assert rc == 0, err
    status = json.loads(out)
    assert status["running"] == 3 and status["failed"] is None  # echo, counter, pool
    lines = [json.loads(line) for line in d.err.read_text().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "daemon_ready" for e in lines)


def test_every_admin_subcommand_against_the_real_daemon(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start_daemon(tmp_path)
    daemons.append(d)

    def ok(*args: str) -> str:
        rc, out, err = d.cli(*args)
        assert rc == 0, f"{args}: rc={rc} {err}"
        return out

    assert "running" in ok("status")
    tree = ok("tree")
    assert "root" in tree and "├──" in tree and "echo" in tree and "pool" in tree
    assert json.loads(ok("--json", "tree"))["id"] == "root"
    rows = json.loads(ok("--json", "children", "root"))
    assert [r["id"] for r in rows] == ["echo", "counter", "pool"]
    assert "counter" in ok("children", "root")
    assert json.loads(ok("--json", "count", "root")) == {
        "specs": 3, "active": 3, "supervisors": 1, "workers": 2,
    }  # fmt: skip
    assert json.loads(ok("--json", "spec", "root", "echo"))["actor"] == (
        "callboard.actors.examples:Echo"
    )
    reply = json.loads(ok("--json", "ask", "echo", "callboard.examples.Ping", '{"n": 41}'))
    assert reply == {"type": "callboard.examples.Pong", "payload": {"n": 41}}
    ok("tell", "counter", "test.sys.Incr", '{"by": 5}')
    count = json.loads(ok("--json", "ask", "counter", "test.sys.Get", "{}"))
    assert count["payload"]["value"] == 5
    job = json.loads(ok("--json", "start-child", "pool", "--args", '{"start": 7}'))["id"]
    assert json.loads(ok("--json", "ask", job, "test.sys.Get", "{}"))["payload"]["value"] == 7
    ok("terminate", job)  # found under pool automatically
    before = count["payload"]["pid"]
    killed = json.loads(ok("--json", "kill", "counter"))["pid"]
    assert killed == before
    ok("terminate", "counter")
    ok("restart", "counter")
    after = json.loads(ok("--json", "ask", "counter", "test.sys.Get", "{}"))["payload"]["pid"]
    assert after != before
    ok("terminate", "counter")
    ok("delete", "counter")
    assert "counter" not in [r["id"] for r in json.loads(ok("--json", "children", "root"))]
    assert "callboard_messages_handled_total" in ok("metrics")
    ok("stop")
    assert d.proc.wait(timeout=60) == 0


def test_auth_401_403_and_400(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start_daemon(tmp_path, tokens=VIEWER)
    daemons.append(d)
    admin, viewer = d.state / "admin.secret", d.state / "viewer.secret"
    assert not (d.state / "admin.token").exists()  # configured tokens: none generated
    bad = tmp_path / "bad.token"
    bad.write_text("not-a-token\n")
    rc, _, err = d.cli("status", token_file=bad)
    assert rc == 3 and "401" in err
    rc, out, _ = d.cli("--json", "status", token_file=viewer)
    assert rc == 0 and json.loads(out)["failed"] is None
    rc, _, err = d.cli("restart", "echo", token_file=viewer)
    assert rc == 3 and "403" in err
    rc, _, err = d.cli("ask", "echo", "callboard.examples.Ping", '{"n": "many"}', token_file=admin)
    assert rc == 1 and "400" in err and "n" in err
    rc, _, err = d.cli("ask", "echo", "no.such.Type", "{}", token_file=admin)
    assert rc == 1 and "400" in err
    audit = [json.loads(line) for line in (d.state / "audit.log").read_text().splitlines()]
    outcomes = {(a["token_id"], a["action"], a["outcome"]) for a in audit}
    assert (None, "status", "unauthorized") in outcomes
    assert ("ci-viewer", "status", "ok") in outcomes
    assert ("ci-viewer", "restart_child", "denied") in outcomes
    text = (d.state / "audit.log").read_text()
    assert "s3cret" not in text and "not-a-token" not in text  # secrets never logged


def test_refuses_ports_in_use(tmp_path: Path, daemons: list[Daemon]) -> None:
    first = start_daemon(tmp_path, "first")
    daemons.append(first)
    second = start_daemon(tmp_path, "second", admin_port=first.admin_port, wait=False)
    assert second.proc.wait(timeout=60) == 1
    assert "already in use" in second.err.read_text()
    third = start_daemon(tmp_path, "third", api_port=first.api_port, wait=False)
    assert third.proc.wait(timeout=60) == 1
    assert "already in use" in third.err.read_text()
    rc, out, _ = first.cli("--json", "status")  # the first one is untouched
    assert rc == 0 and json.loads(out)["failed"] is None


def test_sigterm_stops_gracefully_and_leaves_nothing(tmp_path: Path) -> None:
    d = start_daemon(tmp_path)
    pgid = d.pgid()
    assert stop_daemon(d, signal.SIGTERM) == 0
    wait_gone(pgid)
    assert not (d.state / "daemon.json").exists()
    assert not (d.state / "callboard.pid").exists()
    events = [
        json.loads(line)["event"] for line in d.err.read_text().splitlines() if line.startswith("{")
    ]
    assert "daemon_stopped" in events


def test_a_second_signal_kills_everything(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, counter_shutdown="30.0")
    pgid = d.pgid()
    rc, _, err = d.cli("tell", "counter", "test.sys.Spin", "{}")  # hangs: stop will wait 30 s
    assert rc == 0, err
    d.proc.send_signal(signal.SIGTERM)
    while "daemon_stopping" not in d.err.read_text():
        assert d.proc.poll() is None
        time.sleep(0.01)  # waiting for the graceful stop to begin
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(timeout=30) == 3
    wait_gone(pgid)


def test_sigkill_of_the_daemon_takes_every_actor_process(tmp_path: Path) -> None:
    d = start_daemon(tmp_path)
    pgid = d.pgid()
    assert len(processes_in_group(pgid)) >= 6
    d.proc.kill()
    d.proc.wait()
    elapsed = wait_gone(pgid)
    print(f"every actor process gone {elapsed * 1000:.0f} ms after the daemon was SIGKILLed")


def test_the_daemon_exits_non_zero_when_the_root_gives_up(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, intensity=0)
    pgid = d.pgid()
    rc, _, _ = d.cli("ask", "counter", "test.sys.Fail", '{"how": "crash"}')
    assert rc == 1  # the actor crashed: an error reply
    assert d.proc.wait(timeout=60) == 1
    assert "gave up" in d.err.read_text()
    wait_gone(pgid)
