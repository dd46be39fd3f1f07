"""Helpers shared by the benchmark programs in this folder.

A benchmark is a program, not a test: it prints exactly one JSON object on stdout and
everything else (progress, Thespian's noise) on stderr. :func:`json_stdout` makes that
hold even for processes the benchmark forks: Thespian's daemonized admin and actors
inherit the starter's file descriptors, so fd 1 is pointed at stderr for them and the
JSON goes to a private duplicate of the original stdout.

The raw Thespian actor used as a baseline lives here too, at module top level, so the
forked Thespian admin can import it by its ``"module.Class"`` name (Thespian passes the
class by name and imports it in the child; with the fork start method this module is
already in the child's ``sys.modules``).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from thespian.actors import Actor

if TYPE_CHECKING:
    from callboard import System

HERE = os.path.dirname(os.path.abspath(__file__))
"""This folder. It is put on ``sys.path`` on import (if missing), before any actor system
forks: the forked actor processes import the actor modules here by their top-level names."""
if HERE not in sys.path:
    sys.path.insert(0, HERE)

__all__ = [
    "HERE",
    "PGID_QUERY",
    "RawEcho",
    "actor_pids",
    "cpu_seconds",
    "cpu_snapshot",
    "emit",
    "exit_on_sigterm",
    "free_admin_port",
    "json_stdout",
    "kill_leftovers",
    "percentile",
    "processes_in_group",
    "progress",
    "summarize",
]

# The usual Linux ephemeral range: outgoing connections (Thespian's own, and everyone
# else's on this host) take ports from it, so an admin port there could be grabbed at any
# moment. The live range from /proc is avoided as well when it differs.
_EPHEMERAL = (32768, 60999)
_CANDIDATES: tuple[int, ...] = (*range(20000, 32768), *range(61000, 65536))

PGID_QUERY = "pgid?"
"""Ask :class:`RawEcho` this string and it answers its process group id (an int)."""


class RawEcho(Actor):  # type: ignore[misc]
    """A plain Thespian actor: answers bytes with the same bytes (the baseline)."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, bytes):
            self.send(sender, msg)
        elif msg == PGID_QUERY:
            self.send(sender, os.getpgid(0))


# -- ports ---------------------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return _EPHEMERAL


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens on any address


def free_admin_port(exclude: Sequence[int] = ()) -> int:
    """A TCP port that binds on 127.0.0.1 now, outside the ephemeral range (32768-60999
    and the host's live range), and not in ``exclude``."""
    low, high = _ephemeral_range()

    def allowed(p: int) -> bool:
        ephemeral = _EPHEMERAL[0] <= p <= _EPHEMERAL[1] or low <= p <= high
        return not ephemeral and p not in exclude

    candidates = [p for p in _CANDIDATES if allowed(p)]
    rng = random.Random()
    for port in rng.sample(candidates, min(200, len(candidates))):
        if _port_free(port):
            return port
    raise RuntimeError("no free admin port found outside the ephemeral range")


# -- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks
    (numpy's default method). ``values`` need not be sorted; empty gives NaN."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * min(max(q, 0.0), 100.0) / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (rank - lo))


def summarize(latencies_s: Sequence[float], wall_s: float, errors: int = 0) -> dict[str, Any]:
    """Latency figures in milliseconds plus throughput over ``wall_s`` seconds.

    Raises ValueError when there is no successful call to summarize."""
    if not latencies_s or wall_s <= 0:
        raise ValueError(f"nothing to summarize: {len(latencies_s)} calls, {errors} errors")
    ms = [x * 1000.0 for x in latencies_s]
    return {
        "count": len(ms),
        "errors": errors,
        "p50_ms": round(percentile(ms, 50), 4),
        "p90_ms": round(percentile(ms, 90), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "max_ms": round(max(ms), 4),
        "mean_ms": round(sum(ms) / len(ms), 4),
        "asks_per_s": round(len(ms) / wall_s, 1),
    }


# -- output --------------------------------------------------------------------------------

_json_fd: int | None = None


def json_stdout() -> None:
    """Keep the real stdout for the one JSON object and send everything else, including
    what forked children (Thespian's admin, actors) write to fd 1, to stderr. Call it
    before anything forks."""
    global _json_fd
    if _json_fd is not None:
        return
    sys.stdout.flush()
    _json_fd = os.dup(1)
    os.dup2(2, 1)


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None: strict JSON has no such numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def emit(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one strict JSON line on the real stdout."""
    data = (json.dumps(_finite(obj), allow_nan=False, default=str) + "\n").encode()
    if _json_fd is None:
        sys.stdout.write(data.decode())
        sys.stdout.flush()
        return
    view = memoryview(data)
    while view:
        view = view[os.write(_json_fd, view) :]


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- leftovers -----------------------------------------------------------------------------


def processes_in_group(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes whose process group is ``pgid`` (Linux /proc)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the fields after it follow the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 3 or fields[0] == "Z":
            continue
        if int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def kill_leftovers(pgid: int | None, grace_s: float = 2.0) -> int:
    """Wait up to ``grace_s`` for the group ``pgid`` to empty, then SIGKILL what is left.

    Returns how many processes had to be killed. Never signals our own process group."""
    if pgid is None or pgid <= 1 or pgid == os.getpgid(0):
        return 0
    deadline = time.monotonic() + grace_s
    while processes_in_group(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = processes_in_group(pgid)
    if left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + 2.0
        while processes_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.01)
    return len(left)


def exit_on_sigterm(signum: int, frame: Any) -> NoReturn:
    """SIGTERM handler: raise SystemExit so the ``finally`` blocks run (stop the systems,
    kill leftovers, print the JSON)."""
    raise SystemExit(128 + signum)


# -- CPU per process -----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / _TICK


def actor_pids(system: System) -> dict[int, str]:
    """The actor name of each pid of ``system`` (its root supervisor as ``root``)."""
    names = {pid: name for name, pid in system.directory().items() if pid is not None}
    if system.root_pid is not None:
        names[system.root_pid] = "root"
    return names


def cpu_snapshot(names: Mapping[int, str], pgid: int | None, own: str) -> dict[str, float]:
    """CPU seconds so far of every process of the group ``pgid``, summed by name (pids not
    in ``names`` count as ``other``: Thespian's admin and logger, idle actors), and of this
    process (as ``own``)."""
    out: dict[str, float] = {}
    for pid in processes_in_group(pgid) if pgid else []:
        cpu = cpu_seconds(pid)
        if cpu is not None:
            name = names.get(pid, "other")
            out[name] = out.get(name, 0.0) + cpu
    times = os.times()
    out[own] = times.user + times.system
    return out
