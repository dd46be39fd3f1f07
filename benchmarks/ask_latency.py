"""Ask round-trip latency: callboard vs raw Thespian vs a raw multiprocessing.Pipe.

Run from the repository root::

    .venv/bin/python benchmarks/ask_latency.py [--n 3000] > /tmp/ask.json

Prints exactly one JSON object on stdout (progress goes to stderr) and exits 0 (1 with an
``"error"`` key in the JSON if the benchmark itself failed). Do not capture the output
through a pipe that waits for EOF from every writer: Thespian's admin daemonizes and
inherits the starter's file descriptors (this program points their stdout at stderr, see
``_common.json_stdout``, but stderr is still theirs until they exit).

Figures (all on Thespian's ``multiprocTCPBase``, loopback only):

``callboard``            ``System.ask("echo", Ping(n=i))`` to ``callboard.actors.examples:Echo``
``raw_thespian``         ``ActorSystem.ask(addr, payload)`` to a plain Thespian actor echoing
                         bytes of the same size as callboard's encoded request frame
``raw_thespian_external_context``  the same, through ``ExternalContext(external_clone())``,
                         the endpoint kind ``System.ask`` uses (informative; not the goal)
``raw_pipe``             bytes echoed by a second process over ``multiprocessing.Pipe``:
                         the floor of any cross-process round trip on this machine
``callboard_8_threads``  8 threads sharing one ``System``, each doing N/8 asks at once

The goal: callboard's p50 at most 1.3x raw Thespian's.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import io
import multiprocessing
import os
import platform
import pstats
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from _common import (
    PGID_QUERY,
    RawEcho,
    emit,
    free_admin_port,
    json_stdout,
    kill_leftovers,
    progress,
    summarize,
)
from thespian.actors import ActorSystem, ExternalContext

from callboard import System
from callboard import _thespian as cb_thespian
from callboard.actors.examples import Ping, Pong
from callboard.messages import Envelope, child_traceparent, encode, new_id

GOAL_RATIO_P50 = 1.3
ASK_TIMEOUT = 2.0
WARMUP = 200
ROUNDS = 30
THREADS = 8
MAX_CONSECUTIVE_ERRORS = 20

AskFn = Callable[[int], bool]
"""One timed round trip for call number ``i``; returns whether the reply was right."""


# -- the three echo paths --------------------------------------------------------------------


def _pipe_echo(conn: Connection) -> None:
    """Child process of the pipe floor: echo every frame until an empty one."""
    while True:
        data = conn.recv_bytes()
        if not data:
            break
        conn.send_bytes(data)
    conn.close()


def callboard_frame_size(n: int) -> int:
    """Bytes of the request frame ``System.ask("echo", Ping(n=n))`` puts on the wire."""
    msg_id = new_id()
    env = Envelope.model_construct(
        kind="ask", id=msg_id, type=Ping.type_name, version=Ping.version,
        correlation_id=msg_id, causation_id=None, deadline=time.time() + ASK_TIMEOUT,
        priority=0, traceparent=child_traceparent(None), principal=None, attempt=1,
        target="echo", sender=None, payload=Ping(n=n),
    )  # fmt: skip
    return len(encode(env))


class BlockFailed(RuntimeError):
    """Too many asks in a row failed: the system under test is gone, stop measuring."""


def run_block(ask: AskFn, start: int, count: int) -> tuple[list[float], int, float]:
    """``count`` timed calls; returns (latencies in s, errors, wall seconds).

    A failed or wrong reply counts as an error and is left out of the latencies; after
    ``MAX_CONSECUTIVE_ERRORS`` in a row the block gives up with :class:`BlockFailed`."""
    lat: list[float] = []
    errors = 0
    streak = 0
    clock = time.perf_counter
    wall0 = clock()
    for i in range(start, start + count):
        t0 = clock()
        try:
            ok = ask(i)
            problem = "" if ok else "no reply or a wrong one"
        except Exception as exc:
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        t1 = clock()
        if ok:
            lat.append(t1 - t0)
            streak = 0
            continue
        errors += 1
        streak += 1
        if errors <= 5:
            progress(f"ask {i} failed: {problem}")
        if streak >= MAX_CONSECUTIVE_ERRORS:
            raise BlockFailed(f"{streak} asks in a row failed, the last with {problem}")
    return lat, errors, clock() - wall0


class Series:
    """The timed results of one system across all rounds."""

    def __init__(self) -> None:
        self.lat: list[float] = []
        self.errors = 0
        self.wall = 0.0

    def add(self, block: tuple[list[float], int, float]) -> None:
        self.lat.extend(block[0])
        self.errors += block[1]
        self.wall += block[2]

    def summary(self) -> dict[str, Any]:
        return summarize(self.lat, self.wall, self.errors)


# -- concurrency ------------------------------------------------------------------------------


def run_threads(system: System, n: int, threads: int) -> dict[str, Any]:
    """``threads`` threads share ``system``; each warms up, then all start together."""
    per = max(1, n // threads)
    warm = max(1, WARMUP // threads)
    barrier = threading.Barrier(threads + 1)
    results: list[tuple[list[float], int, float]] = []
    lock = threading.Lock()

    def ask(i: int) -> bool:
        reply = system.ask("echo", Ping(n=i), timeout=ASK_TIMEOUT)
        return isinstance(reply, Pong) and reply.n == i

    failures: list[str] = []

    def worker(k: int) -> None:
        base = 1_000_000 * (k + 1)
        try:
            run_block(ask, base, warm)  # each thread gets its own Thespian endpoint here
        except BlockFailed as exc:
            failures.append(str(exc))
        barrier.wait()
        try:
            block = run_block(ask, base + warm, per)
        except BlockFailed as exc:
            failures.append(str(exc))
            return
        with lock:
            results.append(block)

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    if failures:
        raise BlockFailed(f"{len(failures)} of {threads} threads failed: {failures[0]}")
    lat = [x for block in results for x in block[0]]
    out = summarize(lat, wall, sum(block[1] for block in results))
    out["threads"] = threads
    out["asks_per_thread"] = per
    return out


# -- optional client-side profile -------------------------------------------------------------


def profile_callboard(system: System, count: int, top: int = 25) -> None:
    """cProfile ``count`` callboard asks in this (the client) process; report to stderr."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(count):
        system.ask("echo", Ping(n=i), timeout=ASK_TIMEOUT)
    prof.disable()
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        progress(f"client-side profile of {count} callboard asks, by {key}:\n{buf.getvalue()}")
    # callboard's own functions only (its package directory), by cumulative time: what
    # System.ask spends outside the Thespian ask it wraps.
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(r"[/\\]callboard[/\\]", top)
    progress(f"callboard functions only, by cumulative:\n{buf.getvalue()}")


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=3000, help="timed asks per system (default 3000)")
    p.add_argument(
        "--rounds", type=int, default=ROUNDS,
        help=f"interleaved blocks per path (default {ROUNDS}, at most N)",
    )  # fmt: skip
    p.add_argument(
        "--profile", type=int, default=0, metavar="K",
        help="after the timed runs, cProfile K callboard asks client-side (stderr)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        p.error("--n and --rounds must be at least 1")
    args.rounds = min(args.rounds, args.n)
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwind through the finally blocks: stop both systems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n: int = args.n
    json_stdout()
    signal.signal(signal.SIGTERM, _on_sigterm)

    # Both systems listen on, and advertise, loopback only: the setting callboard applies
    # in System.start (process-wide, inherited by every later fork). Applying it up front
    # makes the raw system identical whichever starts first, and keeps Thespian from
    # probing for a public address.
    cb_thespian.apply_bind("127.0.0.1")

    result: dict[str, Any] = {
        "benchmark": "ask_latency",
        "n": n,
        "python": platform.python_version(),
        "thespian": importlib.metadata.version("thespian"),
        "callboard_version": importlib.metadata.version("callboard"),
        "transport": "tcp (multiprocTCPBase, 127.0.0.1)",
        "cpus": os.cpu_count(),
    }
    system: System | None = None
    asys: Any = None
    raw_ctx: Any = None
    cb_pgid: int | None = None
    raw_pgid: int | None = None
    pipe_proc: Any = None
    parent_conn: Connection | None = None
    leftovers = {"callboard": 0, "raw_thespian": 0, "raw_pipe": 0}
    rc = 0
    try:
        payload = os.urandom(callboard_frame_size(n))
        result["payload_bytes"] = len(payload)

        # (c) the floor, forked first, before any Thespian socket exists to inherit.
        ctx = multiprocessing.get_context("fork")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        pipe_proc = ctx.Process(target=_pipe_echo, args=(child_conn,), daemon=True)
        pipe_proc.start()
        child_conn.close()

        # (a) callboard and (b) raw Thespian, both up for the whole run on their own ports.
        cb_port = free_admin_port()
        raw_port = free_admin_port(exclude=[cb_port])
        progress(f"starting callboard on admin port {cb_port}")
        system = System.start(
            {
                "system": {"admin_port": cb_port, "log_level": "warning"},
                "supervisor": {
                    "children": [{"id": "echo", "actor": "callboard.actors.examples:Echo"}]
                },
            }
        )
        cb_pgid = system.pgid
        progress(f"starting raw Thespian on admin port {raw_port}")
        asys = ActorSystem("multiprocTCPBase", {"Admin Port": raw_port}, transientUnique=True)
        raw_addr = asys.createActor(RawEcho)
        pgid_reply = asys.ask(raw_addr, PGID_QUERY, ASK_TIMEOUT)
        raw_pgid = pgid_reply if isinstance(pgid_reply, int) else None
        result["process_groups"] = {"callboard": cb_pgid, "raw_thespian": raw_pgid}

        cb_system = system
        raw_sys = asys
        pipe = parent_conn

        def ask_callboard(i: int) -> bool:
            msg = Ping(n=i)
            reply = cb_system.ask("echo", msg, timeout=ASK_TIMEOUT)
            return isinstance(reply, Pong) and reply.n == i

        def ask_raw(i: int) -> bool:
            return bool(raw_sys.ask(raw_addr, payload, ASK_TIMEOUT) == payload)

        # What System.ask uses underneath: an ExternalContext on an external_clone() of
        # the system (one per calling thread), not the ActorSystem's own endpoint.
        raw_ctx = ExternalContext(asys._systemBase.external_clone())

        def ask_raw_ctx(i: int) -> bool:
            return bool(raw_ctx.ask(raw_addr, payload, ASK_TIMEOUT) == payload)

        def ask_pipe(i: int) -> bool:
            pipe.send_bytes(payload)
            return pipe.recv_bytes() == payload

        paths: dict[str, AskFn] = {
            "callboard": ask_callboard,
            "raw_thespian": ask_raw,
            "raw_thespian_external_context": ask_raw_ctx,
            "raw_pipe": ask_pipe,
        }
        for name, fn in paths.items():
            progress(f"warm-up: {WARMUP} asks on {name}")
            _, errors, _ = run_block(fn, -WARMUP, WARMUP)
            if errors:
                progress(f"warm-up on {name}: {errors} errors")

        # Interleaved rounds: the three paths take turns in blocks of N/rounds, the order
        # rotating each round, with both actor systems up the whole time. On a small
        # shared machine the background load (other processes, CPU frequency, page cache)
        # drifts over seconds; running A entirely, then B, would charge that drift to
        # whichever ran during the bad stretch and skew the ratio. Alternating spreads
        # it evenly, and a system idling while the other runs costs nothing (its
        # processes block in select). The blocks must be short next to the drift: on the
        # 2-core dev machine under a load average of 3, 3 rounds of 1000 asks (about 1 s
        # each) gave p50 ratios anywhere from 0.84 to 1.45 run to run, 15-60 rounds gave
        # 1.11-1.26; hence 30 rounds (blocks of 100 asks, ~60 ms) by default.
        series = {name: Series() for name in paths}
        sizes = [n // args.rounds + (1 if r < n % args.rounds else 0) for r in range(args.rounds)]
        names = list(paths)
        start = 0
        for r, size in enumerate(sizes):
            order = names[r % len(names) :] + names[: r % len(names)]
            progress(f"round {r + 1}/{args.rounds}: {size} asks each on {', '.join(order)}")
            for name in order:
                series[name].add(run_block(paths[name], start, size))
            start += size
        for name in names:
            result[name] = series[name].summary()

        # (d) callboard under concurrency: 8 threads, one System.
        progress(f"{THREADS} threads x {max(1, n // THREADS)} asks on one callboard System")
        result["callboard_8_threads"] = run_threads(system, n, THREADS)

        cb, raw = result["callboard"], result["raw_thespian"]
        ratio = cb["p50_ms"] / raw["p50_ms"]
        result["ratio_p50_callboard_vs_raw_thespian"] = round(ratio, 3)
        result["ratio_p99_callboard_vs_raw_thespian"] = round(cb["p99_ms"] / raw["p99_ms"], 3)
        result["overhead_p50_ms"] = round(cb["p50_ms"] - raw["p50_ms"], 4)
        result["ratio_p50_callboard_vs_raw_thespian_external_context"] = round(
            cb["p50_ms"] / result["raw_thespian_external_context"]["p50_ms"], 3
        )
        result["goal_ratio_p50"] = GOAL_RATIO_P50
        result["goal_met"] = ratio <= GOAL_RATIO_P50

        if args.profile > 0:
            profile_callboard(system, args.profile)
    except BaseException as exc:  # report, then clean up; the JSON is still printed
        result["error"] = f"{type(exc).__name__}: {exc}"
        progress(f"benchmark failed: {result['error']}")
        rc = 1
    finally:
        if system is not None:
            progress("stopping callboard")
            system.stop()
        leftovers["callboard"] = kill_leftovers(cb_pgid)
        if raw_ctx is not None:
            with contextlib.suppress(Exception):
                raw_ctx.exit_clone()
        if asys is not None:
            progress("shutting raw Thespian down")
            with contextlib.suppress(Exception):
                asys.shutdown()
        leftovers["raw_thespian"] = kill_leftovers(raw_pgid)
        if parent_conn is not None:
            with contextlib.suppress(OSError):
                parent_conn.send_bytes(b"")
            parent_conn.close()
        if pipe_proc is not None:
            pipe_proc.join(2.0)
            if pipe_proc.is_alive():
                leftovers["raw_pipe"] = 1
                pipe_proc.kill()
                pipe_proc.join(2.0)
        result["leftover_processes"] = sum(leftovers.values())
        result["leftover_by_system"] = leftovers
        emit(result)
    return rc


if __name__ == "__main__":
    sys.exit(main())
