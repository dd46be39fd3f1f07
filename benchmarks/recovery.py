"""Recovery time: how long an actor is unavailable after it dies or hangs.

Run from the repository root::

    .venv/bin/python benchmarks/recovery.py [--kills 50] [--hangs 5] > /tmp/recovery.json

Prints exactly one JSON object on stdout (progress goes to stderr) and exits 0 (1 with an
``"error"`` key in the JSON if the benchmark itself failed). As with ``ask_latency.py``,
send stdout to a file rather than a pipe you wait on (Thespian's admin daemonizes).

Figures (all on Thespian's ``multiprocTCPBase``, loopback only):

``callboard_kill_to_answer_ms``     SIGKILL of worker ``w`` (a child of a one_for_one root)
                                    until ``System.ask("w", Where())`` is answered by the
                                    replacement process (polling with 5 ms asks)
``raw_thespian_kill_to_answer_ms``  the floor: SIGKILL of a raw Thespian child until its raw
                                    Thespian parent, on ``ChildActorExited``, has created a
                                    new child and the host has heard that child's first reply
``hang``                            worker ``h`` with a liveness probe is told to spin forever;
                                    from that tell until the root shows a new ``h`` and until
                                    that replacement answers; plus a check that a handler
                                    that is slow but shorter than the probe timeout is not
                                    killed
``plain_ask_after_kill``            SIGKILL of ``w``, 100 ms pause (the replacement runs by
                                    then), then one ordinary ask with a 0.5 s timeout: what a
                                    caller that does not poll experiences

The two kill series are interleaved (alternating which goes first) with both actor
systems up the whole time, so background drift on a shared machine hits both alike. The
goal: callboard's p99 kill -> answer at most 50 ms."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from _common import (
    emit,
    exit_on_sigterm,
    free_admin_port,
    json_stdout,
    kill_leftovers,
    percentile,
    progress,
)
from recovery_actors import ARM, PGID_QUERY, Block, Hang, Here, RawParent, Where
from thespian.actors import ActorSystem

from callboard import AskTimeout, NoSuchActor, RemoteError, SupervisorError, System
from callboard import _thespian as cb_thespian

GOAL_P99_MS = 50.0
KILLS = 50
HANGS = 5
PLAIN_ASKS = 10
LIVENESS_INTERVAL = 0.1
LIVENESS_TIMEOUT = 0.2
POLL_TIMEOUT = 0.005
"""Seconds each polling ask waits. It bounds the resolution of the figures: the first
poll after a kill usually times out (see ``plain_ask_after_kill``), and while ``h`` hangs
every poll goes to the stuck process and times out."""
POLL_SLEEP = 0.001
"""Pause after a refused poll (``restarting``, a dead address), so that the poller does
not flood the root supervisor with directory look-ups while it is restarting the child."""
PLAIN_DELAY = 0.1
PLAIN_TIMEOUT = 0.5
SLOW_RUNS = 5
SLOW_FRACTION = 0.75
"""The slow-handler check blocks ``h`` for this fraction of its liveness timeout."""
RECOVERY_LIMIT = 10.0
"""A replacement that has not answered after this many seconds fails the benchmark."""
RETRY_CODES = frozenset({"restarting", "no_such_actor"})


class NoRecovery(RuntimeError):
    """No replacement answered within RECOVERY_LIMIT: stop measuring."""


# -- callboard ---------------------------------------------------------------------------------


def callboard_config(port: int, interval: float, timeout: float) -> dict[str, Any]:
    return {
        "system": {"admin_port": port, "log_level": "warning"},
        "supervisor": {
            "strategy": "one_for_one",
            "intensity": 1000,  # never give up during the benchmark
            "period": 1.0,
            "children": [
                {"id": "w", "actor": "recovery_actors:Worker"},
                {
                    "id": "h",
                    "actor": "recovery_actors:Worker",
                    "liveness": {"interval": interval, "timeout": timeout},
                },
            ],
        },
    }


def pid_of(system: System, name: str) -> int:
    reply = system.ask(name, Where(), timeout=2.0)
    if not isinstance(reply, Here):
        raise RuntimeError(f"{name} answered {reply!r}, not Here")
    return reply.pid


def wait_for_replacement(
    system: System, name: str, old_pid: int, t0: float, outcomes: Counter[str]
) -> tuple[float, int]:
    """Poll ``name`` until a process other than ``old_pid`` answers; return the seconds
    since ``t0`` (perf_counter) and the new pid. Counts every refused poll in ``outcomes``."""
    clock = time.perf_counter
    while True:
        if clock() - t0 > RECOVERY_LIMIT:
            raise NoRecovery(f"{name}: no replacement answered within {RECOVERY_LIMIT}s")
        try:
            reply = system.ask(name, Where(), timeout=POLL_TIMEOUT)
        except RemoteError as exc:
            if exc.code in RETRY_CODES:
                outcomes[exc.code] += 1
            else:  # not expected: keep polling, but report it
                outcomes[f"unexpected:{exc.code}"] += 1
            time.sleep(POLL_SLEEP)
            continue
        except AskTimeout:
            outcomes["ask_timeout"] += 1
            continue
        except NoSuchActor:
            outcomes["no_such_actor"] += 1
            time.sleep(POLL_SLEEP)
            continue
        elapsed = clock() - t0
        if isinstance(reply, Here) and reply.pid != old_pid:
            return elapsed, reply.pid
        outcomes["answer_from_old_pid" if isinstance(reply, Here) else "wrong_reply"] += 1


def callboard_kill(system: System, outcomes: Counter[str]) -> float:
    old = pid_of(system, "w")
    t0 = time.perf_counter()
    os.kill(old, signal.SIGKILL)
    elapsed, _ = wait_for_replacement(system, "w", old, t0, outcomes)
    return elapsed


def callboard_hang(system: System, outcomes: Counter[str]) -> tuple[float, float]:
    """Tell ``h`` to spin forever; return the seconds from that tell until the root shows
    a new ``h`` running, and until that replacement answers an ask.

    The stuck process itself is not polled: asks to it pile up Thespian transmits that
    all fail at once when it is killed, and such a late failure cuts short whatever call
    runs on the endpoint at that moment (a directory look-up then fails the System for
    good, see benchmarks/README.md). The root's ``which_children`` is watched instead."""
    old = pid_of(system, "h")
    clock = time.perf_counter
    t0 = clock()
    system.tell("h", Hang())
    while True:
        if clock() - t0 > RECOVERY_LIMIT:
            raise NoRecovery(f"h: not restarted within {RECOVERY_LIMIT}s")
        try:
            rows = system.which_children("root", timeout=1.0)
        except (AskTimeout, SupervisorError) as exc:
            outcomes[f"which_children:{type(exc).__name__}"] += 1
            continue
        row = next(r for r in rows if r["id"] == "h")
        if row["status"] == "running" and row["pid"] not in (None, old):
            break
        time.sleep(POLL_SLEEP)
    restarted = clock() - t0
    answered, _ = wait_for_replacement(system, "h", old, t0, outcomes)
    return restarted, answered


def plain_ask_after_kill(system: System, outcomes: Counter[str]) -> float | str:
    """What a caller that does not poll sees: SIGKILL ``w``, wait PLAIN_DELAY (the
    replacement is running by then), then one ask with PLAIN_TIMEOUT. Returns the seconds
    that ask took, or the name of the error it raised."""
    old = pid_of(system, "w")
    os.kill(old, signal.SIGKILL)
    time.sleep(PLAIN_DELAY)
    t0 = time.perf_counter()
    try:
        reply = system.ask("w", Where(), timeout=PLAIN_TIMEOUT)
    except RemoteError as exc:
        outcome: float | str = f"RemoteError:{exc.code}"
    except Exception as exc:
        outcome = type(exc).__name__
    else:
        ok = isinstance(reply, Here) and reply.pid != old
        outcome = time.perf_counter() - t0 if ok else "wrong_reply"
    wait_for_replacement(system, "w", old, time.perf_counter(), outcomes)  # settle
    return outcome


def slow_handler_survives(system: System, seconds: float) -> bool:
    """Block ``h`` for ``seconds`` (less than its liveness timeout); True if the same
    process answers afterwards, i.e. the liveness probe did not kill it."""
    before = pid_of(system, "h")
    reply = system.ask("h", Block(seconds=seconds), timeout=seconds + 2.0)
    time.sleep(0.3)  # a kill would happen within one probe cycle after the block
    return isinstance(reply, Here) and reply.pid == before and pid_of(system, "h") == before


# -- raw Thespian --------------------------------------------------------------------------------


class RawBaseline:
    """A raw Thespian system with one :class:`RawParent` and its child."""

    def __init__(self, port: int) -> None:
        self.asys: Any = ActorSystem("multiprocTCPBase", {"Admin Port": port}, transientUnique=True)
        self.parent = self.asys.createActor(RawParent)
        pgid = self.asys.ask(self.parent, PGID_QUERY, 5.0)
        self.pgid: int | None = pgid if isinstance(pgid, int) else None
        self.child_pid = self._expect_child(self.asys.ask(self.parent, ARM, 5.0), None)

    @staticmethod
    def _expect_child(reply: Any, old: int | None) -> int:
        if not (isinstance(reply, tuple) and reply[0] == "child" and reply[1] != old):
            raise RuntimeError(f"raw parent answered {reply!r}")
        return int(reply[1])

    def kill(self) -> float:
        """SIGKILL the child; seconds until the parent reports the new child's pid."""
        old = self.child_pid
        t0 = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        while True:
            remaining = RECOVERY_LIMIT - (time.perf_counter() - t0)
            if remaining <= 0:
                raise NoRecovery(f"raw Thespian: no new child within {RECOVERY_LIMIT}s")
            reply = self.asys.listen(remaining)
            if isinstance(reply, tuple) and reply[0] == "child" and reply[1] != old:
                elapsed = time.perf_counter() - t0
                self.child_pid = int(reply[1])
                return elapsed

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.asys.shutdown()


# -- figures -------------------------------------------------------------------------------------


def stats_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000.0 for s in seconds]
    return {
        "count": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2) if ms else None,
        "min": round(min(ms), 2) if ms else None,
        "mean": round(sum(ms) / len(ms), 2) if ms else None,
    }


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kills", type=int, default=KILLS, help=f"kills per system ({KILLS})")
    p.add_argument("--hangs", type=int, default=HANGS, help=f"hang detections ({HANGS})")
    p.add_argument(
        "--plain-asks", type=int, default=PLAIN_ASKS,
        help=f"kills followed by one plain ask each ({PLAIN_ASKS}; up to {PLAIN_TIMEOUT}s each)",
    )  # fmt: skip
    p.add_argument(
        "--interval", type=float, default=LIVENESS_INTERVAL,
        help=f"liveness interval of h, seconds ({LIVENESS_INTERVAL})",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=float, default=LIVENESS_TIMEOUT,
        help=f"liveness timeout of h, seconds ({LIVENESS_TIMEOUT})",
    )  # fmt: skip
    args = p.parse_args(argv)
    if min(args.hangs, args.plain_asks) < 0 or args.kills < 1:
        p.error("--kills must be >= 1, --hangs and --plain-asks >= 0")
    if args.interval <= 0 or args.timeout <= 0:
        p.error("--interval and --timeout must be > 0")
    return args


def low_admin_port(exclude: Sequence[int] = ()) -> int:
    """A free admin port below 32768 (``free_admin_port`` also offers 61000-65535)."""
    for _ in range(20):
        port = free_admin_port(exclude=range(32768, 65536))
        if port not in exclude:
            return port
    raise RuntimeError("no free admin port below 32768")


def run_kills(
    system: System, raw: RawBaseline, kills: int, rng: random.Random, result: dict[str, Any]
) -> None:
    """Interleaved kills: the two systems alternate which goes first."""
    cb_times: list[float] = []
    raw_times: list[float] = []
    outcomes: Counter[str] = Counter()
    for i in range(kills):
        order = ("callboard", "raw") if i % 2 == 0 else ("raw", "callboard")
        for which in order:
            time.sleep(rng.uniform(0.02, 0.05))  # let the previous restart settle
            if which == "callboard":
                cb_times.append(callboard_kill(system, outcomes))
            else:
                raw_times.append(raw.kill())
        if (i + 1) % 10 == 0:
            progress(
                f"kill {i + 1}/{kills}: callboard {cb_times[-1] * 1000:.1f} ms, "
                f"raw Thespian {raw_times[-1] * 1000:.1f} ms"
            )
    cb, floor = stats_ms(cb_times), stats_ms(raw_times)
    result["callboard_kill_to_answer_ms"] = cb
    result["raw_thespian_kill_to_answer_ms"] = floor
    result["callboard_minus_raw_p50_ms"] = round(cb["p50"] - floor["p50"], 2)
    result["callboard_refused_polls"] = dict(outcomes)
    result["goal_p99_ms"] = GOAL_P99_MS
    result["goal_met"] = cb["p99"] <= GOAL_P99_MS


def run_plain_asks(system: System, runs: int) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    answered: list[float] = []
    failed: Counter[str] = Counter()
    for i in range(runs):
        time.sleep(0.05)
        outcome = plain_ask_after_kill(system, outcomes)
        if isinstance(outcome, float):
            answered.append(outcome)
        else:
            failed[outcome] += 1
        progress(f"plain ask after kill {i + 1}/{runs}: {outcome}")
    return {
        "runs": runs,
        "delay_after_kill_ms": PLAIN_DELAY * 1000,
        "ask_timeout_s": PLAIN_TIMEOUT,
        "answered": len(answered),
        "failed": dict(failed),
        "answered_ms": stats_ms(answered) if answered else None,
    }


def run_hangs(system: System, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Tell h to spin; its liveness probe must notice, SIGKILL and restart it."""
    bound = args.interval + args.timeout
    cycle = max(args.interval, args.timeout)  # a probe is sent only after the last check
    block = SLOW_FRACTION * args.timeout
    survived = sum(slow_handler_survives(system, block) for _ in range(SLOW_RUNS))
    progress(f"slow handler ({block:.3f} s): survived {survived}/{SLOW_RUNS}")
    restarted: list[float] = []
    times: list[float] = []
    outcomes: Counter[str] = Counter()
    for i in range(args.hangs):
        time.sleep(rng.uniform(0.0, cycle) + 0.05)  # a random phase against the probes
        up, answered = callboard_hang(system, outcomes)
        restarted.append(up)
        times.append(answered)
        progress(f"hang {i + 1}/{args.hangs}: restarted {up * 1000:.1f} ms, "
                 f"answered {answered * 1000:.1f} ms")  # fmt: skip
    hang: dict[str, Any] = {
        "runs": len(times),
        "liveness": {"interval_s": args.interval, "timeout_s": args.timeout},
        "bound_ms": round(bound * 1000, 1),
        "probe_worst_case_ms": round((cycle + args.timeout) * 1000, 1),
        "tell_to_answer_ms": [round(t * 1000, 1) for t in times],
        "tell_to_restarted_ms": [round(t * 1000, 1) for t in restarted],
        "refused_polls": dict(outcomes),
        "slow_handler": {"block_ms": round(block * 1000, 1), "runs": SLOW_RUNS,
                         "not_killed": survived},
    }  # fmt: skip
    if times:
        hs = stats_ms(times)
        hang["p50_ms"], hang["max_ms"] = hs["p50"], hs["max"]
        hang["within_bound_plus_100ms"] = all(t <= bound + 0.1 for t in times)
    return hang


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    json_stdout()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    # Both systems loopback only, as callboard's System.start sets it (see ask_latency.py).
    cb_thespian.apply_bind("127.0.0.1")
    rng = random.Random()

    result: dict[str, Any] = {
        "benchmark": "recovery",
        "kills": args.kills,
        "python": platform.python_version(),
        "thespian": importlib.metadata.version("thespian"),
        "callboard_version": importlib.metadata.version("callboard"),
        "transport": "tcp (multiprocTCPBase, 127.0.0.1)",
        "cpus": os.cpu_count(),
        "poll": {
            "ask_timeout_ms": POLL_TIMEOUT * 1000,
            "sleep_after_refusal_ms": POLL_SLEEP * 1000,
        },
    }
    system: System | None = None
    raw: RawBaseline | None = None
    cb_pgid: int | None = None
    raw_pgid: int | None = None
    leftovers = {"callboard": 0, "raw_thespian": 0}
    rc = 0
    try:
        cb_port = low_admin_port()
        raw_port = low_admin_port(exclude=[cb_port])
        result["admin_ports"] = {"callboard": cb_port, "raw_thespian": raw_port}
        progress(f"starting callboard on admin port {cb_port}")
        system = System.start(callboard_config(cb_port, args.interval, args.timeout))
        cb_pgid = system.pgid
        progress(f"starting raw Thespian on admin port {raw_port}")
        raw = RawBaseline(raw_port)
        raw_pgid = raw.pgid
        result["process_groups"] = {"callboard": cb_pgid, "raw_thespian": raw_pgid}
        for _ in range(20):  # warm-up: every endpoint and connection exists before timing
            pid_of(system, "w")
            pid_of(system, "h")

        run_kills(system, raw, args.kills, rng, result)
        result["hang"] = run_hangs(system, args, rng)
        result["plain_ask_after_kill"] = run_plain_asks(system, args.plain_asks)
    except BaseException as exc:  # report, then clean up; the JSON is still printed
        result["error"] = f"{type(exc).__name__}: {exc}"
        progress(f"benchmark failed: {result['error']}")
        rc = 1
    finally:
        if system is not None:
            progress("stopping callboard")
            system.stop()
        leftovers["callboard"] = kill_leftovers(cb_pgid)
        if raw is not None:
            progress("shutting raw Thespian down")
            raw.shutdown()
        leftovers["raw_thespian"] = kill_leftovers(raw_pgid)
        result["leftover_processes"] = sum(leftovers.values())
        result["leftover_by_system"] = leftovers
        emit(result)
    return rc


if __name__ == "__main__":
    sys.exit(main())
