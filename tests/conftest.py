"""Shared fixtures: a private admin port per system, and a no-leftover-process check."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from callboard import System
from callboard._thespian import kill_group, processes_in_group

_used_ports: set[int] = set()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999), where actors bind theirs."""
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        if port not in _used_ports and _bindable(port):
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port found")


def system_processes(port: int, pgid: int | None) -> list[int]:
    """Live processes that belong to the system on ``port``: its process group, anything
    titled ``callboard[tcp:PORT]``, anything still listening on the admin port."""
    found: set[int] = set(processes_in_group(pgid)) if pgid else set()
    tag = f"callboard[tcp:{port}]"
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if tag in " ".join(proc.info["cmdline"] or ()):
                found.add(proc.info["pid"])
        except psutil.Error:
            continue
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                found.add(conn.pid)
    found.discard(os.getpid())
    return sorted(found)


def kill_leftovers(port: int, pgid: int | None) -> list[int]:
    """``system_processes(port, pgid)``, each SIGKILLed with its process group: what a
    stopped system left behind (empty if it left nothing)."""
    alive = system_processes(port, pgid)
    for pid in alive:
        try:
            kill_group(os.getpgid(pid))
        except ProcessLookupError:
            pass
    return alive


@pytest.fixture
def port() -> int:
    return pick_port()


StartSystem = Callable[..., System]


@pytest.fixture
def start_system(tmp_path: Path) -> Iterator[StartSystem]:
    """``start_system(children, supervisor=None, policies=None, *, queues=None, bus=None,
    routing=None, daemon=None, **system_keys)`` -> a running tcp System on its own port.

    ``supervisor`` holds the root's ``[supervisor]`` keys besides ``children``; each other
    top-level section goes by its own name; any further keyword is a ``[system]`` key.
    At teardown the system is stopped and the test FAILS if any of its processes is
    still alive (they are then SIGKILLed by process group, so later tests start clean).
    """
    started: list[tuple[int, System | None]] = []

    def start(
        children: list[dict[str, Any]], supervisor: dict[str, Any] | None = None,
        policies: dict[str, Any] | None = None, *, queues: dict[str, Any] | None = None,
        bus: dict[str, Any] | None = None, routing: list[dict[str, Any]] | None = None,
        daemon: dict[str, Any] | None = None, **system: Any,
    ) -> System:  # fmt: skip
        port = system.pop("admin_port", None) or pick_port()
        config = {
            "system": {
                "admin_port": port,
                "log_level": "info",
                "log_file": str(tmp_path / "actors.log"),
                **system,
            },
            "supervisor": {**(supervisor or {}), "children": children},
            "policies": policies or {},
            "queues": queues or {},
            "bus": bus or {},
            "routing": routing or [],
            "daemon": daemon or {},
        }
        started.append((port, None))
        sys_ = System.start(config)
        started[-1] = (port, sys_)
        return sys_

    yield start

    leaks: list[str] = []
    for port, sys_ in started:
        pgid = sys_.pgid if sys_ is not None else None
        if sys_ is not None:
            sys_.stop()
        alive = kill_leftovers(port, pgid)
        if alive:
            leaks.append(f"port {port}: pids {alive}")
    if leaks:
        pytest.fail("processes left behind after teardown: " + "; ".join(leaks))


def read_log(tmp_path: Path) -> list[dict[str, Any]]:
    import json

    path = tmp_path / "actors.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
