"""Message throughput: one-way actor->actor messages/s and request/reply round trips/s,
callboard vs raw Thespian (default and tuned) vs a raw ``multiprocessing.Pipe``.

Run from the repository root::

    .venv/bin/python benchmarks/throughput.py [--n 20000] [--raw-n 5000] > /tmp/throughput.json

Prints exactly one JSON object on stdout (progress goes to stderr) and exits 0 (1 with an
``"error"`` key in the JSON if the benchmark itself failed). Do not capture the output
through a pipe that waits for EOF from every writer (see ``_common.json_stdout``).

Everything is measured in the same run, on Thespian's ``multiprocTCPBase`` (loopback):

``one_way``
    ``raw_thespian_default`` / ``raw_thespian_tuned``: a Thespian actor calls ``self.send()``
    N times in one ``receiveMessage`` to a counter actor, each variant in a fresh Python
    subprocess (Thespian reads its transport settings from the environment once, at
    import, and callboard patches them in-process), default settings vs
    ``THESPIAN_MAX_QUEUED_TRANSMITS=20`` with ``THESPIAN_QUEUED_TRANSMIT_UNBLOCK_THRESHOLD=10``
    (and, informative, ``raw_thespian_callboard_settings``: the limits callboard sets).
    ``callboard_one_turn`` / ``callboard_streamed``: a callboard actor tells a consumer
    actor N numbered messages, all in one handler turn, or ``--per-turn`` per turn (it
    schedules itself the next turn); ``--rounds`` times each, the median reported, the
    rounds interleaved with the raw variants. ``raw_pipe``: the same number of frames
    through a ``multiprocessing.Pipe`` to another process.
    Rate = N / (first send -> last arrival); ``order_ok``: every message arrived, once,
    in the order sent (the receiver checks the sequence numbers).
``request_reply``
    ``callboard_actor_k1`` / ``_k32``: an actor keeps k asks in flight to
    ``callboard.actors.examples:Echo``; ``callboard_system_ask``: ``System.ask`` from one
    thread; ``raw_pipe``: a frame echoed by another process. Round trips per second.

Goal: callboard at least 10,000 one-way messages/s (both shapes) and at least 25x raw
Thespian's default, with per-sender order intact.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from _common import (
    cpu_snapshot,
    emit,
    exit_on_sigterm,
    free_admin_port,
    json_stdout,
    kill_leftovers,
    progress,
)
from throughput_actors import (
    EXPECT,
    GO,
    RESULT,
    Blast,
    Drive,
    Driven,
    Expect,
    Produced,
    RawCounter,
    RawSender,
    Ready,
    Report,
    Seq,
    SeqCheck,
    Tally,
)

from callboard import AskTimeout, System
from callboard import _thespian as cb_thespian
from callboard.actors.examples import Ping, Pong
from callboard.messages import Envelope, child_traceparent, encode, new_id

GOAL_ONE_WAY_PER_S = 10_000
GOAL_RATIO_VS_RAW_DEFAULT = 25
BIND = "127.0.0.1"
POLL_S = 0.05
"""How often the host asks a receiver how far it has come (the rate is computed from the
receiver's own arrival times, so this only adds wall time after the last arrival)."""

THESPIAN_TX_VARS = (
    "THESPIAN_MAX_QUEUED_TRANSMITS",
    "THESPIAN_QUEUED_TRANSMIT_UNBLOCK_THRESHOLD",
    "THESPIAN_DROP_TRANSMITS_LEVEL",
    "THESPIAN_MAX_PENDING_TRANSMITS",
)
RAW_VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    # The tuning the design notes measured at ~1,700 msg/s. The unblock threshold has to
    # come down with the queue limit: with only THESPIAN_MAX_QUEUED_TRANSMITS=20 the
    # threshold stays 780, the "tx-only" drain loop (while queued > threshold) never runs,
    # and past DROP_TRANSMITS_LEVEL (20 + 100) Thespian drops transmits.
    "tuned": {
        "THESPIAN_MAX_QUEUED_TRANSMITS": "20",
        "THESPIAN_QUEUED_TRANSMIT_UNBLOCK_THRESHOLD": "10",
    },
    # Informative: the queue limits callboard's tune_transport sets (callboard._thespian),
    # on raw Thespian. Shows what the limits alone do, without callboard's batching.
    "callboard_settings": {
        "THESPIAN_MAX_QUEUED_TRANSMITS": str(cb_thespian.MAX_QUEUED_TRANSMITS),
        "THESPIAN_QUEUED_TRANSMIT_UNBLOCK_THRESHOLD": str(cb_thespian.QUEUED_TRANSMIT_UNBLOCK),
        "THESPIAN_DROP_TRANSMITS_LEVEL": str(cb_thespian.DROP_TRANSMITS_LEVEL),
    },
}

# -- small helpers ------------------------------------------------------------------------------


def cpu_report(
    before: Mapping[str, float], after: Mapping[str, float], count: int, wall_s: float
) -> dict[str, Any]:
    """CPU per 1000 messages (ms) and the busy fraction (CPU / wall) of each process.

    /proc counts in clock ticks (10 ms here), so short windows are coarse."""
    per_k: dict[str, float] = {}
    busy: dict[str, float] = {}
    for name in after:
        used = after[name] - before.get(name, 0.0)
        per_k[name] = round(used * 1000 * 1000 / max(1, count), 2)
        busy[name] = round(used / wall_s, 2) if wall_s > 0 else 0.0
    return {
        "cpu_ms_per_1000": dict(sorted(per_k.items(), key=lambda kv: -kv[1])),
        "cpu_ms_per_1000_total": round(sum(per_k.values()), 2),
        "busy_fraction": dict(sorted(busy.items(), key=lambda kv: -kv[1])),
    }


def seq_frame_size() -> int:
    """Bytes of the frame one callboard ``tell(consumer, Seq(...))`` puts on the wire (the
    payload size used by the raw baselines, so every path moves about as many bytes)."""
    msg_id = new_id()
    env = Envelope.model_construct(
        kind="tell", id=msg_id, type=Seq.type_name, version=Seq.version,
        correlation_id=msg_id, causation_id=None, deadline=None, priority=0,
        traceparent=child_traceparent(None), principal=None, attempt=1, target="consumer",
        sender="producer", payload=Seq(run=1, i=12_345),
    )  # fmt: skip
    return len(encode(env))


def one_way_figures(
    n: int, received: Mapping[str, Any], first_send: float, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The common shape of every one-way result."""
    count = int(received.get("count", 0))
    distinct = int(received.get("distinct", 0))
    out_of_order = int(received.get("out_of_order", 0))
    last = float(received.get("last_arrival", 0.0))
    seconds = last - first_send if count else 0.0
    order_ok = count == n and distinct == n and out_of_order == 0
    return {
        "n": n,
        "msgs_per_s": round(count / seconds, 1) if seconds > 0 else 0.0,
        "seconds": round(seconds, 4),
        "received": count,
        "lost": n - distinct,
        "duplicates": count - distinct,
        "out_of_order": out_of_order,
        "order_ok": order_ok,
        **extra,
    }


def median_round(figs: list[dict[str, Any]]) -> dict[str, Any]:
    """One shape over its rounds: the figures of the median round by rate, with every
    round's rate and order check, and ``order_ok`` only if every round kept order."""
    ranked = sorted(figs, key=lambda f: float(f["msgs_per_s"]))
    out = dict(ranked[(len(ranked) - 1) // 2])  # the lower median for an even count
    out["rounds_msgs_per_s"] = [f["msgs_per_s"] for f in figs]
    out["rounds_order_ok"] = [bool(f["order_ok"]) for f in figs]
    out["lost_all_rounds"] = sum(int(f["lost"]) for f in figs)
    out["out_of_order_all_rounds"] = sum(int(f["out_of_order"]) for f in figs)
    out["order_ok"] = all(out["rounds_order_ok"])
    return out


# -- raw multiprocessing.Pipe -------------------------------------------------------------------


def _pipe_child(conn: Connection) -> None:
    """Child process of the pipe floor: ``("one_way", n)`` receives n frames and answers
    the order check; ``("echo", n)`` echoes n frames; ``("stop",)`` ends."""
    while True:
        cmd = conn.recv()
        if cmd[0] == "one_way":
            check = SeqCheck(cmd[1])
            for _ in range(cmd[1]):
                data = conn.recv_bytes()
                check.arrived(int.from_bytes(data[:8], "little"))
            conn.send(check.as_dict())
        elif cmd[0] == "echo":
            for _ in range(cmd[1]):
                conn.send_bytes(conn.recv_bytes())
        else:
            break
    conn.close()


def pipe_one_way(conn: Connection, n: int, size: int) -> dict[str, Any]:
    body = os.urandom(max(0, size - 8))
    frames = [i.to_bytes(8, "little") + body for i in range(n)]
    conn.send(("one_way", n))
    t0 = time.monotonic()
    for frame in frames:
        conn.send_bytes(frame)
    received = conn.recv()
    return one_way_figures(n, received, t0, {})


def pipe_round_trips(conn: Connection, n: int, size: int) -> dict[str, Any]:
    frame = os.urandom(size)
    conn.send(("echo", n))
    wrong = 0
    t0 = time.perf_counter()
    for _ in range(n):
        conn.send_bytes(frame)
        if conn.recv_bytes() != frame:
            wrong += 1
    wall = time.perf_counter() - t0
    return {"n": n, "round_trips_per_s": round(n / wall, 1), "seconds": round(wall, 4),
            "wrong": wrong}  # fmt: skip


# -- raw Thespian, in a subprocess ----------------------------------------------------------------


def raw_child(args: argparse.Namespace) -> int:
    """``--raw-child NAME``: measure raw Thespian one-way throughput with whatever transport
    settings this process's environment holds; write the JSON to ``--result-file``."""
    from thespian.actors import ActorSystem

    cb_thespian.apply_bind(BIND)  # loopback only, as callboard binds; no transport tuning
    out: dict[str, Any] = {"variant": args.raw_child, "env": {
        k: os.environ[k] for k in THESPIAN_TX_VARS if k in os.environ}}  # fmt: skip
    path: str = args.result_file

    def save() -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, path)

    asys: Any = None
    pgid: int | None = None
    payload = os.urandom(args.payload_bytes)
    try:
        asys = ActorSystem("multiprocTCPBase", {"Admin Port": args.admin_port},
                           transientUnique=True)  # fmt: skip
        counter = asys.createActor(RawCounter)
        sender = asys.createActor(RawSender)
        hello = asys.ask(counter, (EXPECT, 0), 10.0)
        if not isinstance(hello, dict):
            raise RuntimeError(f"the raw counter did not answer: {hello!r}")
        pgid = int(hello["pgid"])
        out["pgid"] = pgid
        save()  # the parent can clean the group up even if this process dies
        sender_info = asys.ask(sender, (RESULT,), 10.0)
        names = {int(hello["pid"]): "counter", int(sender_info["pid"]): "sender"}

        def run(n: int) -> dict[str, Any]:
            asys.ask(counter, (EXPECT, n), 10.0)
            before = cpu_snapshot(names, pgid, "host")
            asys.tell(sender, (GO, counter, n, payload))
            received = poll_until(
                lambda: asys.ask(counter, (RESULT,), 5.0), n, args.stall, f"raw {args.raw_child}"
            )
            sent = asys.ask(sender, (RESULT,), 30.0)
            after = cpu_snapshot(names, pgid, "host")
            if not isinstance(sent, dict):
                raise RuntimeError(f"the raw sender did not report: {sent!r}")
            extra = {
                "send_loop_s": round(sent["send_loop_done"] - sent["first_send"], 4)
                if sent["send_loop_done"] else None,
                "thespian_settings": {k: v for k, v in sent.items() if k.startswith(("max_",
                                      "queue_", "drop_"))},
            }  # fmt: skip
            fig = one_way_figures(n, received, sent["first_send"], extra)
            fig["cpu"] = cpu_report(before, after, n, fig["seconds"])
            return fig

        if args.warmup > 0:
            run(args.warmup)
        out["result"] = run(args.n)
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if asys is not None:
            with contextlib.suppress(Exception):
                asys.shutdown()
        out["leftover_processes"] = kill_leftovers(pgid)
        save()
    return 0 if "error" not in out else 1


def run_raw_variant(
    name: str, n: int, warmup: int, payload_bytes: int, port: int, stall: float,
    base_env: Mapping[str, str],
) -> tuple[dict[str, Any], int]:  # fmt: skip
    """Run one raw Thespian variant in a fresh interpreter, with the environment this
    program started with (not what ``System.start`` added since) plus the variant's
    settings; returns (its figures, how many processes had to be killed)."""
    env = {k: v for k, v in base_env.items() if k not in THESPIAN_TX_VARS}
    env.update(RAW_VARIANTS[name])
    with tempfile.TemporaryDirectory(prefix="cb-throughput-") as tmp:
        env["THESPLOG_FILE"] = os.path.join(tmp, "thespian.log")  # its own, not callboard's
        path = os.path.join(tmp, "result.json")
        cmd = [
            sys.executable, os.path.abspath(__file__), "--raw-child", name,
            "--n", str(n), "--warmup", str(warmup), "--payload-bytes", str(payload_bytes),
            "--admin-port", str(port), "--stall", str(stall), "--result-file", path,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        # At worst 100 msg/s plus start-up; the child gives up itself after a stall.
        limit = 60.0 + (n + warmup) / 100.0
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
        out: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                out = json.load(f)
    leftovers = int(out.get("leftover_processes", 0))
    leftovers += kill_leftovers(out.get("pgid"))  # whatever the child could not reap
    if proc.returncode != 0 and "error" not in out:
        out["error"] = f"the raw {name} subprocess exited with {proc.returncode}"
    return out, leftovers


# -- callboard ------------------------------------------------------------------------------------


def poll_until(tally: Callable[[], Any], n: int, stall_s: float, what: str) -> Mapping[str, Any]:
    """Ask the receiver how far it is until all ``n`` arrived or nothing new arrived for
    ``stall_s`` seconds (lost messages); returns its last answer as a mapping."""
    last: Mapping[str, Any] = {}
    seen = -1
    changed = time.monotonic()
    while True:
        time.sleep(POLL_S)
        try:
            reply = tally()
        except AskTimeout:
            reply = None
        if reply is not None:
            last = reply if isinstance(reply, Mapping) else reply.model_dump()
        count = int(last.get("count", 0))
        if count >= n:
            return last
        now = time.monotonic()
        if count != seen:
            seen, changed = count, now
        elif now - changed > stall_s:
            progress(f"{what}: {count} of {n} arrived, nothing more for {stall_s:.0f} s")
            return last


class Callboard:
    """The callboard system under test and the runs made on it."""

    def __init__(self, system: System, stall_s: float) -> None:
        self.system = system
        self.stall = stall_s
        self.run_id = 0
        self.names: dict[int, str] = {
            pid: name for name, pid in system.directory().items() if pid is not None
        }
        if system.root_pid is not None:
            self.names[system.root_pid] = "root"

    def one_way(self, n: int, per_turn: int, via_tell: bool = False) -> dict[str, Any]:
        system = self.system
        self.run_id += 1
        run = self.run_id
        ready = system.ask("consumer", Expect(run=run, n=n), timeout=10.0)
        if not isinstance(ready, Ready):
            raise RuntimeError(f"the consumer answered {ready!r}")
        before = cpu_snapshot(self.names, system.pgid, "host")
        blast = Blast(run=run, n=n, per_turn=per_turn, target="consumer", via_tell=via_tell)
        system.tell("producer", blast)
        received = poll_until(
            lambda: system.ask("consumer", Tally(run=run), timeout=5.0), n, self.stall,
            f"callboard per_turn={per_turn}",
        )  # fmt: skip
        produced = system.ask("producer", Report(run=run), timeout=30.0)
        after = cpu_snapshot(self.names, system.pgid, "host")
        if not isinstance(produced, Produced) or produced.run != run:
            raise RuntimeError(f"the producer answered {produced!r}")
        extra = {
            "per_turn": min(per_turn, n),
            "next_turn_by": "tell to itself" if via_tell else "schedule(0)",
            "turns": produced.turns,
            "send_turns_s": round(produced.last_send - produced.first_send, 4)
            if produced.last_send else None,
            "frames_per_batch_expected": min(per_turn, n, 512),
            "other_runs": received.get("other_runs", 0),
        }  # fmt: skip
        fig = one_way_figures(n, received, produced.first_send, extra)
        fig["cpu"] = cpu_report(before, after, n, fig["seconds"])
        return fig

    def drive(self, k: int, n: int, ask_timeout: float) -> dict[str, Any]:
        """``n`` round trips with ``k`` in flight, by the pinger kept for this ``k`` (each
        ask leaves a Thespian wakeup behind in its process for ``ask_timeout``: a pinger
        of its own keeps one run's from weighing on the next)."""
        before = cpu_snapshot(self.names, self.system.pgid, "host")
        drive = Drive(k=k, n=n, target="echo", timeout=ask_timeout)
        reply = self.system.ask(pinger_name(k), drive, timeout=30.0 + n / 50.0)
        after = cpu_snapshot(self.names, self.system.pgid, "host")
        if not isinstance(reply, Driven):
            raise RuntimeError(f"the pinger answered {reply!r}")
        wall = reply.t1 - reply.t0
        out: dict[str, Any] = {
            "k": k, "n": n, "ok": reply.ok, "errors": reply.errors, "wrong": reply.wrong,
            "round_trips_per_s": round(reply.ok / wall, 1) if wall > 0 else 0.0,
            "seconds": round(wall, 4),
            "ask_timeout_s": ask_timeout,
        }  # fmt: skip
        half = n // 2
        if reply.t_half and half and reply.t1 > reply.t_half > reply.t0:
            first = half / (reply.t_half - reply.t0)
            second = (n - half) / (reply.t1 - reply.t_half)
            out["first_half_per_s"] = round(first, 1)
            out["second_half_per_s"] = round(second, 1)
        if reply.first_error:
            out["first_error"] = reply.first_error
        out["cpu"] = cpu_report(before, after, n, wall)
        return out

    def system_asks(self, n: int) -> dict[str, Any]:
        system = self.system
        ok = errors = 0
        t0 = time.perf_counter()
        for i in range(n):
            try:
                reply = system.ask("echo", Ping(n=i), timeout=2.0)
            except Exception:
                errors += 1
                continue
            ok += isinstance(reply, Pong) and reply.n == i
        wall = time.perf_counter() - t0
        return {"threads": 1, "n": n, "ok": ok, "errors": errors,
                "round_trips_per_s": round(ok / wall, 1), "seconds": round(wall, 4)}  # fmt: skip


def pinger_name(k: int) -> str:
    return f"pinger{k}"


def callboard_config(port: int, inflight: list[int]) -> dict[str, Any]:
    pingers = [{"id": pinger_name(k), "actor": "throughput_actors:Pinger"}
               for k in sorted(set(inflight))]  # fmt: skip
    return {
        "system": {"admin_port": port, "log_level": "warning"},
        "supervisor": {
            "children": [
                {"id": "consumer", "actor": "throughput_actors:Consumer"},
                {"id": "producer", "actor": "throughput_actors:Producer"},
                {"id": "echo", "actor": "callboard.actors.examples:Echo"},
                *pingers,
            ]
        },
    }


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--n", type=int, default=20_000, help="callboard one-way messages per shape (default 20000)"
    )
    p.add_argument(
        "--per-turn",
        type=int,
        default=100,
        help="messages per producer turn in the streamed shape (default 100)",
    )
    p.add_argument(
        "--continue-by",
        choices=("schedule", "tell"),
        default="schedule",
        help="how the streaming producer gives itself its next turn (default schedule)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="timed runs of each callboard shape, interleaved with the raw ones (default 3)",
    )
    p.add_argument(
        "--raw-n",
        type=int,
        default=5_000,
        help="raw Thespian one-way messages per variant (default 5000)",
    )
    p.add_argument(
        "--rr-n",
        type=int,
        default=3_000,
        help="actor round trips per in-flight setting (default 3000)",
    )
    p.add_argument(
        "--inflight",
        type=str,
        default="1,32",
        help="asks kept in flight by the pinger, comma-separated (default 1,32)",
    )
    p.add_argument(
        "--ask-timeout",
        type=float,
        default=5.0,
        help="the pinger's ask timeout, s (default 5, callboard's default)",
    )
    p.add_argument(
        "--ask-n",
        type=int,
        default=1_000,
        help="System.ask round trips from one thread (default 1000)",
    )
    p.add_argument(
        "--pipe-n",
        type=int,
        default=20_000,
        help="raw Pipe frames one way and round trips (default 20000)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="untimed messages before each timed run (default 200)",
    )
    p.add_argument(
        "--stall",
        type=float,
        default=10.0,
        help="give a run up after this many seconds without a new arrival",
    )
    p.add_argument(
        "--skip-raw",
        action="store_true",
        help="do not measure raw Thespian (no ratio, goal_met false)",
    )
    # the raw Thespian subprocess (internal)
    p.add_argument("--raw-child", choices=sorted(RAW_VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--admin-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--payload-bytes", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=str, default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.inflight = [int(k) for k in str(args.inflight).split(",") if k.strip()]
    except ValueError:
        p.error("--inflight takes comma-separated integers")
    if min(args.n, args.per_turn, args.rounds, args.raw_n, args.rr_n, args.ask_n, args.pipe_n) < 1:
        p.error("sizes must be at least 1")
    if not args.inflight or min(args.inflight) < 1 or args.warmup < 0 or args.ask_timeout <= 0:
        p.error("--inflight values must be at least 1, --warmup at least 0, --ask-timeout > 0")
    if args.raw_child and not (args.admin_port and args.result_file):
        p.error("--raw-child needs --admin-port and --result-file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.raw_child:
        return raw_child(args)
    base_env = dict(os.environ)
    json_stdout()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    started = time.monotonic()

    result: dict[str, Any] = {
        "benchmark": "throughput",
        "python": platform.python_version(),
        "thespian": importlib.metadata.version("thespian"),
        "callboard_version": importlib.metadata.version("callboard"),
        "transport": "tcp (multiprocTCPBase, 127.0.0.1)",
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "sizes": {
            "callboard_one_way_n": args.n,
            "per_turn": args.per_turn,
            "rounds": args.rounds,
            "continue_by": args.continue_by,
            "raw_thespian_n": args.raw_n,
            "request_reply_n": args.rr_n,
            "inflight": args.inflight,
            "ask_timeout_s": args.ask_timeout,
            "system_ask_n": args.ask_n,
            "pipe_n": args.pipe_n,
            "warmup": args.warmup,
        },
    }
    one_way: dict[str, Any] = {}
    request_reply: dict[str, Any] = {}
    result["one_way"] = one_way
    result["request_reply"] = request_reply
    leftovers = {"callboard": 0, **{f"raw_thespian_{v}": 0 for v in RAW_VARIANTS},
                 "raw_pipe": 0}  # fmt: skip
    system: System | None = None
    cb_pgid: int | None = None
    pipe_proc: Any = None
    parent_conn: Connection | None = None
    rc = 0
    try:
        size = seq_frame_size()
        result["payload_bytes"] = size

        # The floor, forked first, before any Thespian socket exists to inherit.
        ctx = multiprocessing.get_context("fork")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        pipe_proc = ctx.Process(target=_pipe_child, args=(child_conn,), daemon=True)
        pipe_proc.start()
        child_conn.close()
        progress(f"raw pipe: {args.pipe_n} frames of {size} bytes one way, then round trips")
        pipe_one_way(parent_conn, min(args.warmup, args.pipe_n), size)
        one_way["raw_pipe"] = pipe_one_way(parent_conn, args.pipe_n, size)
        request_reply["raw_pipe"] = pipe_round_trips(parent_conn, args.pipe_n, size)

        cb_port = free_admin_port()
        progress(f"starting callboard on admin port {cb_port}")
        # Loopback, and callboard's own transport tuning (System.start applies both).
        system = System.start(callboard_config(cb_port, args.inflight))
        cb_pgid = system.pgid
        result["process_group"] = cb_pgid
        cb = Callboard(system, args.stall)
        via_tell = args.continue_by == "tell"
        if args.warmup:
            cb.one_way(args.warmup, args.per_turn, via_tell)
            for k in args.inflight:
                cb.drive(k, min(args.warmup, 50), args.ask_timeout)

        # Rounds: the callboard shapes run once per round, and one raw Thespian variant
        # after each round (the callboard system idles meanwhile, its processes blocked in
        # select), so that background load drifting over the run is spread over both
        # sides of the ratio instead of landing on one of them.
        raw_names = [] if args.skip_raw else list(RAW_VARIANTS)
        rounds: dict[str, list[dict[str, Any]]] = {"callboard_one_turn": [],
                                                   "callboard_streamed": []}  # fmt: skip
        used_ports = [cb_port]
        for r in range(max(args.rounds, len(raw_names))):
            if r < args.rounds:
                progress(f"round {r + 1}: callboard one-way, {args.n} tells in one turn, "
                         f"then in turns of {args.per_turn}")  # fmt: skip
                rounds["callboard_one_turn"].append(cb.one_way(args.n, args.n))
                rounds["callboard_streamed"].append(cb.one_way(args.n, args.per_turn, via_tell))
            if r < len(raw_names):
                name = raw_names[r]
                port = free_admin_port(exclude=used_ports)
                used_ports.append(port)
                progress(f"raw Thespian {name}: {args.raw_n} sends in one receiveMessage "
                         f"(subprocess, admin port {port})")  # fmt: skip
                out, left = run_raw_variant(name, args.raw_n, args.warmup, size, port,
                                            args.stall, base_env)  # fmt: skip
                leftovers[f"raw_thespian_{name}"] = left
                fig = out.get("result", {})
                fig["env"] = out.get("env", {})
                if "error" in out:
                    fig["error"] = out["error"]
                    progress(f"raw Thespian {name} failed: {out['error']}")
                one_way[f"raw_thespian_{name}"] = fig
        for shape, figs in rounds.items():
            one_way[shape] = median_round(figs)

        for k in args.inflight:
            progress(f"callboard request/reply: {args.rr_n} round trips, {k} in flight")
            request_reply[f"callboard_actor_k{k}"] = cb.drive(k, args.rr_n, args.ask_timeout)
        progress(f"callboard System.ask: {args.ask_n} round trips from one thread")
        cb.system_asks(min(args.warmup, args.ask_n))
        request_reply["callboard_system_ask"] = cb.system_asks(args.ask_n)

        shapes = ("callboard_one_turn", "callboard_streamed")
        cb_rate = min(one_way[s]["msgs_per_s"] for s in shapes)
        result["callboard_one_way_per_s"] = cb_rate
        raw_default = one_way.get("raw_thespian_default", {}).get("msgs_per_s") or 0.0
        raw_tuned = one_way.get("raw_thespian_tuned", {}).get("msgs_per_s") or 0.0
        ratio = cb_rate / raw_default if raw_default else None
        result["ratio_vs_raw_default"] = round(ratio, 1) if ratio else None
        result["ratio_vs_raw_tuned"] = round(cb_rate / raw_tuned, 1) if raw_tuned else None
        result["ratio_vs_raw_pipe"] = round(cb_rate / one_way["raw_pipe"]["msgs_per_s"], 3)
        result["order_ok"] = {name: bool(fig.get("order_ok")) for name, fig in one_way.items()}
        result["goal_one_way_per_s"] = GOAL_ONE_WAY_PER_S
        result["goal_ratio_vs_raw_default"] = GOAL_RATIO_VS_RAW_DEFAULT
        result["goal_met"] = bool(
            cb_rate >= GOAL_ONE_WAY_PER_S
            and ratio is not None and ratio >= GOAL_RATIO_VS_RAW_DEFAULT
            and all(one_way[s]["order_ok"] for s in shapes)
        )  # fmt: skip
    except BaseException as exc:  # report, then clean up; the JSON is still printed
        result["error"] = f"{type(exc).__name__}: {exc}"
        progress(f"benchmark failed: {result['error']}")
        rc = 1
    finally:
        if system is not None:
            progress("stopping callboard")
            with contextlib.suppress(Exception):
                system.stop()
        leftovers["callboard"] = kill_leftovers(cb_pgid)
        if parent_conn is not None:
            with contextlib.suppress(OSError):
                parent_conn.send(("stop",))
            parent_conn.close()
        if pipe_proc is not None:
            pipe_proc.join(2.0)
            if pipe_proc.is_alive():
                leftovers["raw_pipe"] = 1
                pipe_proc.kill()
                pipe_proc.join(2.0)
        result["leftover_processes"] = sum(leftovers.values())
        result["leftover_by_system"] = leftovers
        result["wall_s"] = round(time.monotonic() - started, 1)
        emit(result)
    return rc


if __name__ == "__main__":
    sys.exit(main())
