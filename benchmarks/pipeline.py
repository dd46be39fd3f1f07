"""Reasoning pipeline throughput and latency: ``Solve`` through five actors vs in-process.

Run from the repository root::

    .venv/bin/python benchmarks/pipeline.py [--n 300] [--concurrent-n 800] > /tmp/pipeline.json

Prints exactly one JSON object on stdout (progress goes to stderr) and exits 0 (1 with an
``"error"`` key in the JSON if the benchmark itself failed). Do not capture the output
through a pipe that waits for EOF from every writer (see ``_common.json_stdout``).

The system under test is the default config's ``pipeline`` subtree (a ``rest_for_one``
supervisor over knowledge_base, decision_support, reward_model, rejection_sampling and
reasoning_engine, each in its own process) on the tcp transport. Every request is
``system.ask("reasoning_engine", Solve(problem=Q, seed=i), timeout=5)`` with ``Q`` rotating
over ten questions of the shipped sample domain.

``sequential``           one client, N requests one after the other
``concurrent``           T threads sharing one ``System``, M requests in total
``in_process_baseline``  the same ``Solve`` computed with no actors at all: the store, the
                         sampler and the plug-ins called directly in this process, the
                         floor the actor version is compared with (interleaved in blocks
                         with ``sequential``, so background drift hits both alike)
``where_time_goes``      per hop, from the decisions' ``path.timings_ms`` (medians) and from
                         the engine's ``callboard_stage_seconds`` histogram (means)

``injected_failures``    the same pipeline with the reward model's scorer failing a
                         fraction (``--failure-rate``, default 20%) of its calls with the
                         transient ``unavailable`` error, run twice: ``protected`` with the
                         resilience policies below on ``rejection_sampling->reward_model``
                         (retry, breaker, substitute fallback to a second reward model) and
                         ``unprotected`` without policies, the baseline of what the
                         failures cost when nothing absorbs them. Sequential and with
                         ``--failure-threads`` clients.

Goals: p99 at most 100 ms and at least 200 requests/s (``goal_met`` per part); with
injected failures: client error rate below 0.1% and p99 under 100 ms (protected).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from _common import (
    actor_pids,
    cpu_snapshot,
    emit,
    exit_on_sigterm,
    free_admin_port,
    json_stdout,
    kill_leftovers,
    progress,
    summarize,
)

from callboard import AskTimeout, RemoteError, System
from callboard.config import load_config
from callboard.errors import BusinessError
from callboard.messages import Envelope, Message, child_traceparent, decode, encode, new_id
from callboard.observability.metrics import parse_exposition
from callboard.pipeline import (
    Decision,
    GetItems,
    Items,
    Query,
    QueryResult,
    Record,
    Sample,
    Score,
    Scores,
    Selected,
    SolutionContext,
    Solve,
)
from callboard.pipeline._kbstore import KnowledgeStore
from callboard.pipeline._plugins import load_plugin
from callboard.pipeline._sampling import RejectionSampler
from callboard.pipeline.decision_support import DecisionStore, build_decision
from callboard.pipeline.knowledge_base import KnowledgeBase, seed_path
from callboard.pipeline.reasoning_engine import NoKnowledge, ReasoningEngine
from callboard.pipeline.rejection_sampling import RejectionSampling
from callboard.pipeline.reward_model import RewardModel, checked_scores

GOAL_P99_MS = 100.0
GOAL_RPS = 200.0
GOAL_ERROR_RATE = 0.001
ASK_TIMEOUT = 5.0
ENGINE = "reasoning_engine"
HOPS = ("knowledge_base", "references", "rejection_sampling", "decision_support")
MAX_CONSECUTIVE_ERRORS = 20

QUESTIONS: tuple[str, ...] = (
    "How should I retry a failing call to a flaky downstream service?",
    "What timeout should I set on calls to a slow dependency?",
    "How do I size a database connection pool?",
    "Our queue backlog keeps growing: how do we drain it safely?",
    "How do we stop a cache stampede when the cache is cold?",
    "Error rates spiked after a deploy: should we roll back first?",
    "What should page the on-call engineer, and how do we alert on the SLO?",
    "How do we keep on-call load sustainable and hand over shifts?",
    "When should a circuit breaker open around a remote dependency?",
    "How much capacity headroom do we need for peak load?",
)


def question(i: int) -> str:
    return QUESTIONS[i % len(QUESTIONS)]


def pipeline_spec() -> dict[str, Any]:
    """The default config's ``pipeline`` subtree, as the system tests build it."""
    cfg = load_config(None, env={})
    (pipeline,) = [c for c in cfg.supervisor.children if c.id == "pipeline"]
    return pipeline.model_dump(mode="json", exclude_none=True)


def _child_args(spec: dict[str, Any], child_id: str) -> dict[str, Any]:
    for child in spec["supervisor"]["children"]:
        if child["id"] == child_id:
            return dict(child.get("args") or {})
    raise KeyError(f"no child {child_id!r} in the pipeline subtree")


# -- the in-process floor ---------------------------------------------------------------------


class InProcessPipeline:
    """What the five actors compute for a ``Solve``, as plain calls in this process.

    Same config (each actor's ``Args`` parsed from the same subtree), same store, same
    plug-ins, same sampler, same decision building and persisting: only the actors, the
    messages between them and the processes are missing."""

    def __init__(self, spec: dict[str, Any]) -> None:
        kb = KnowledgeBase.Args(**_child_args(spec, "knowledge_base"))
        self.engine = ReasoningEngine.Args(**_child_args(spec, "reasoning_engine"))
        self.sampling = RejectionSampling.Args(**_child_args(spec, "rejection_sampling"))
        reward = RewardModel.Args(**_child_args(spec, "reward_model"))
        ds_path = _child_args(spec, "decision_support").get("db_path", ":memory:")
        self.store = KnowledgeStore(kb.db_path, busy_timeout=kb.busy_timeout)
        path = seed_path(kb.seed)
        if path is not None and not self.store.count():
            self.store.import_jsonl(path)
        self.generator = load_plugin(self.sampling.generator, self.sampling.generator_options)
        self.scorer = load_plugin(reward.scorer, reward.scorer_options)
        self.decisions = DecisionStore(ds_path)

    def close(self) -> None:
        self.store.close()
        self.decisions.close()

    def solve(self, msg: Solve) -> Decision:
        found = self.store.query(msg.problem, msg.k, msg.constraints.get("filters", {}))
        if not found:
            raise NoKnowledge("no knowledge matches the problem", {"problem": msg.problem})
        context = SolutionContext(problem=msg.problem, constraints=msg.constraints, items=found)
        if self.engine.resolve_references:
            have = {s.item.id for s in found}
            wanted = list(dict.fromkeys(r for s in found for r in s.item.refs if r not in have))
            if wanted:
                context.references = self.store.get(wanted)
        args = self.sampling
        seed = msg.seed if msg.seed is not None else random.SystemRandom().getrandbits(63)
        rng = random.Random(seed)
        sampler = RejectionSampler(args.threshold, args.n, args.max_rounds, args.allow_degraded)
        selected = sampler.run(
            lambda k: self.generator.generate(context, k, rng),
            lambda cands: checked_scores(self.scorer.score(context, list(cands)), len(cands)),
        )
        record = Record(problem=msg.problem, selected=selected, context=context, seed=msg.seed)
        decision = build_decision(record, uuid.uuid4().hex, dt.datetime.now(dt.UTC))
        self.decisions.save(decision)
        return decision


def essence(d: Decision) -> tuple[Any, ...]:
    """What a seeded decision must reproduce, wherever it was computed."""
    return (
        d.recommendation,
        d.confidence,
        d.degraded,
        [(r.candidate.text, r.score, r.accepted) for r in d.path.candidates],
        [s.item.id for s in d.path.knowledge],
        d.path.references,
    )


# -- what the messages cost -------------------------------------------------------------------

# The messages the engine decodes (d) and encodes (e) for one Solve, in order.
ENGINE_CODEC: tuple[tuple[str, str], ...] = (
    ("Solve", "d"), ("Query", "e"), ("QueryResult", "d"), ("GetItems", "e"), ("Items", "d"),
    ("Sample", "e"), ("Selected", "d"), ("Record", "e"), ("Decision", "d"), ("Decision", "e"),
)  # fmt: skip


def hop_messages(floor: InProcessPipeline, msg: Solve) -> dict[str, Message]:
    """Every message one ``Solve`` puts on the wire, rebuilt from an in-process decision
    (same content, so the same size; a second ``Score``/``Scores`` per extra round)."""
    d = floor.solve(msg)
    refs = floor.store.get(d.path.references)
    context = SolutionContext(
        problem=msg.problem, constraints=msg.constraints, items=d.path.knowledge, references=refs
    )
    first = [r for r in d.path.candidates if r.round == 1]
    assert d.path.stats is not None
    best = max((r for r in d.path.candidates if r.accepted), key=lambda r: r.score)
    selected = Selected(
        best=best.candidate, score=best.score, records=d.path.candidates, stats=d.path.stats,
        degraded=d.degraded,
    )  # fmt: skip
    return {
        "Solve": msg,
        "Query": Query(text=msg.problem, k=msg.k),
        "QueryResult": QueryResult(items=d.path.knowledge),
        "GetItems": GetItems(ids=d.path.references),
        "Items": Items(items=refs),
        "Sample": Sample(context=context, seed=msg.seed),
        "Score": Score(context=context, candidates=[r.candidate for r in first]),
        "Scores": Scores(scores=[r.score for r in first]),
        "Selected": selected,
        "Record": Record(problem=msg.problem, selected=selected, context=context, seed=msg.seed),
        "Decision": d,
    }


def codec_costs(floor: InProcessPipeline, reps: int = 200) -> dict[str, Any]:
    """Frame bytes and median encode/decode microseconds of each message of one Solve
    (callboard's envelope, msgpack and pydantic; no transport), and what the engine
    spends on them per Solve."""
    costs: dict[str, dict[str, float]] = {}
    for name, payload in hop_messages(floor, Solve(problem=QUESTIONS[0], seed=0)).items():
        msg_id = new_id()
        env = Envelope.model_construct(
            kind="ask", id=msg_id, type=payload.type_name, version=payload.version,
            correlation_id=msg_id, causation_id=None, deadline=time.time() + ASK_TIMEOUT,
            priority=0, traceparent=child_traceparent(None), principal=None, attempt=1,
            target=ENGINE, sender=None, payload=payload,
        )  # fmt: skip
        enc: list[float] = []
        dec: list[float] = []
        frame = b""
        for _ in range(reps):
            t0 = time.perf_counter()
            frame = encode(env)
            t1 = time.perf_counter()
            decode(frame)
            t2 = time.perf_counter()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
        costs[name] = {
            "bytes": len(frame),
            "encode_us": round(statistics.median(enc) * 1e6, 1),
            "decode_us": round(statistics.median(dec) * 1e6, 1),
        }
    engine_us = sum(
        costs[name]["encode_us" if way == "e" else "decode_us"] for name, way in ENGINE_CODEC
    )
    return {
        "by_message": costs,
        "engine_codec_ms_per_solve": round(engine_us / 1000, 3),
        "engine_codec_sequence": [f"{way}:{name}" for name, way in ENGINE_CODEC],
    }


# -- timed calls ------------------------------------------------------------------------------

SolveFn = Callable[[Solve], Decision]


class Series:
    """Latencies, errors by code, and the decisions' hop timings of one path."""

    def __init__(self) -> None:
        self.lat: list[float] = []
        self.errors: Counter[str] = Counter()
        self.wall = 0.0
        self.timings: list[dict[str, float]] = []
        self.outside_engine_ms: list[float] = []
        self.rounds: list[int] = []
        self.client_cpu = 0.0
        """CPU seconds of the calling thread in :meth:`block` (not the in-process work
        of other series interleaved with it)."""
        self._streak = 0
        self.lock = threading.Lock()

    def call(self, fn: SolveFn, i: int) -> None:
        msg = Solve(problem=question(i), seed=i)
        t0 = time.perf_counter()
        code = ""
        decision: Decision | None = None
        try:
            decision = fn(msg)
        except RemoteError as exc:
            code = exc.code
        except BusinessError as exc:
            code = exc.code
        except AskTimeout:
            code = "AskTimeout"
        except Exception as exc:
            code = type(exc).__name__
        elapsed = time.perf_counter() - t0
        with self.lock:
            if decision is None:
                self.errors[code] += 1
                self._streak += 1
                if sum(self.errors.values()) <= 5:
                    progress(f"solve {i} failed: {code}")
                if self._streak >= MAX_CONSECUTIVE_ERRORS:
                    raise RuntimeError(f"{self._streak} solves in a row failed, the last: {code}")
                return
            self._streak = 0
            self.lat.append(elapsed)
            timings = decision.path.timings_ms
            if timings:
                self.timings.append(timings)
                if "reasoning_engine" in timings:
                    self.outside_engine_ms.append(elapsed * 1000 - timings["reasoning_engine"])
            if decision.path.stats is not None:
                self.rounds.append(decision.path.stats.rounds)

    def block(self, fn: SolveFn, start: int, count: int) -> None:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        for i in range(start, start + count):
            self.call(fn, i)
        self.wall += time.perf_counter() - t0
        self.client_cpu += time.thread_time() - cpu0

    def summary(self) -> dict[str, Any]:
        errors = sum(self.errors.values())
        out = summarize(self.lat, self.wall, errors)
        out["requests_per_s"] = out.pop("asks_per_s")
        out["errors_by_code"] = dict(sorted(self.errors.items()))
        return out

    def client_minus_engine(self) -> float | None:
        """Median ms of client latency minus the path's ``reasoning_engine`` time."""
        if not self.outside_engine_ms:
            return None
        return round(statistics.median(self.outside_engine_ms), 3)

    def hop_medians(self) -> dict[str, float | None]:
        """Median ms per ``path.timings_ms`` key (None: the key never appears)."""
        keys = [*HOPS, "reasoning_engine"]
        out: dict[str, float | None] = {}
        for key in keys:
            values = [t[key] for t in self.timings if key in t]
            out[key] = round(statistics.median(values), 3) if values else None
        return out


def with_goals(summary: dict[str, Any]) -> dict[str, Any]:
    summary["goal_p99_met"] = summary["p99_ms"] <= GOAL_P99_MS
    summary["goal_rps_met"] = summary["requests_per_s"] >= GOAL_RPS
    summary["goal_met"] = summary["goal_p99_met"] and summary["goal_rps_met"]
    return summary


# -- the engine's own view: callboard_stage_seconds -------------------------------------------


def stage_totals(system: System) -> dict[str, tuple[float, float]]:
    """``{stage: (seconds summed, observations)}`` from the engine's stage histogram."""
    samples = parse_exposition(system.metrics())
    out: dict[str, tuple[float, float]] = {}
    for (name, labels), value in samples.items():
        if name not in ("callboard_stage_seconds_sum", "callboard_stage_seconds_count"):
            continue
        stage = dict(labels).get("stage", "")
        total, count = out.get(stage, (0.0, 0.0))
        if name.endswith("_sum"):
            total += value
        else:
            count += value
        out[stage] = (total, count)
    return out


def stage_means_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float | None]:
    """Mean ms per stage over the observations made between two snapshots."""
    out: dict[str, float | None] = {}
    for stage in HOPS:
        s1, c1 = after.get(stage, (0.0, 0.0))
        s0, c0 = before.get(stage, (0.0, 0.0))
        out[stage] = round((s1 - s0) / (c1 - c0) * 1000, 3) if c1 > c0 else None
    return out


# -- CPU per process ---------------------------------------------------------------------------


def cpu_report(
    before: dict[str, float], after: dict[str, float], requests: int, wall_s: float
) -> dict[str, Any]:
    """CPU ms per request and the busy fraction (CPU / wall) of each process."""
    per_request: dict[str, float] = {}
    busy: dict[str, float] = {}
    for name in after:
        used = after[name] - before.get(name, 0.0)
        per_request[name] = round(used * 1000 / max(1, requests), 3)
        busy[name] = round(used / wall_s, 2) if wall_s > 0 else 0.0
    total = sum(per_request.values())
    return {
        "cpu_ms_per_request": dict(sorted(per_request.items(), key=lambda kv: -kv[1])),
        "cpu_ms_per_request_total": round(total, 3),
        "busy_fraction": dict(sorted(busy.items(), key=lambda kv: -kv[1])),
    }


# -- concurrency ------------------------------------------------------------------------------


def run_concurrent(system: System, total: int, threads: int, base: int) -> Series:
    """``threads`` threads share ``system``; each warms its own endpoint with two solves,
    then all start together and do ``total / threads`` requests each."""
    per = max(1, total // threads)
    series = Series()
    barrier = threading.Barrier(threads + 1)
    failures: list[str] = []

    def solve(msg: Solve) -> Decision:
        reply = system.ask(ENGINE, msg, timeout=ASK_TIMEOUT)
        if not isinstance(reply, Decision):
            raise TypeError(f"{ENGINE} answered {type(reply).__name__}")
        return reply

    def worker(k: int) -> None:
        start = base + k * (per + 2)
        try:
            for i in range(start, start + 2):
                solve(Solve(problem=question(i), seed=i))
        except Exception as exc:
            failures.append(f"warm-up: {type(exc).__name__}: {exc}")
        barrier.wait()
        try:
            for i in range(start + 2, start + 2 + per):
                series.call(solve, i)
        except Exception as exc:
            failures.append(str(exc))

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    series.wall = time.perf_counter() - t0
    for failure in failures[:3]:
        progress(f"concurrent client: {failure}")
    if any(not f.startswith("warm-up") for f in failures):
        raise RuntimeError(f"{len(failures)} of {threads} clients failed: {failures[0]}")
    return series


# -- injected failures -------------------------------------------------------------------------

DRILL_ROUTE = "rejection_sampling->reward_model"
DRILL_POLICIES: dict[str, Any] = {
    DRILL_ROUTE: {
        "timeout": 0.25,
        "retry": {"max_attempts": 3, "backoff": "exponential_jitter", "base": 0.002,
                  "max": 0.02, "on": ["timeout", "unavailable", "crashed", "restarting"]},
        "breaker": {"window": "count", "size": 50, "min_calls": 20, "failure_rate": 0.6,
                    "slow_call_s": 0.2, "slow_call_rate": 0.8, "open_s": 1.0,
                    "open_max_s": 30.0, "half_open_calls": 1, "success_threshold": 2},
        "fallback": {"mode": "substitute", "target": "reward_model_backup"},
    },
}  # fmt: skip


def drill_children(failure_rate: float) -> list[dict[str, Any]]:
    """The pipeline with a flaky reward model, and a healthy backup beside it."""
    spec = pipeline_spec()
    for child in spec["supervisor"]["children"]:
        if child["id"] == "reward_model":
            child["args"] = {
                "scorer": "callboard.pipeline.plugins:FlakyScorer",
                "scorer_options": {"fail_rate": failure_rate, "mode": "error", "seed": 11},
            }
    backup = {"id": "reward_model_backup", "actor": "callboard.pipeline.reward_model:RewardModel"}
    return [backup, spec]


class DrillSeries(Series):
    """A :class:`Series` that also counts degraded decisions (fallback scores)."""

    def __init__(self) -> None:
        super().__init__()
        self.degraded = 0
        self.ok = 0

    def call(self, fn: SolveFn, i: int) -> None:
        def counted(msg: Solve) -> Decision:
            decision = fn(msg)
            with self.lock:
                if "fallback_scores" in decision.degraded_reason:
                    self.degraded += 1
                else:
                    self.ok += 1
            return decision

        super().call(counted, i)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        errors = sum(self.errors.values())
        requests = self.ok + self.degraded + errors
        out["requests"] = requests
        out["ok"] = self.ok
        out["degraded"] = self.degraded
        out["failed"] = errors
        out["error_rate"] = round(errors / requests, 5) if requests else None
        out["degraded_rate"] = round(self.degraded / requests, 5) if requests else None
        return out


def drill_counters(system: System) -> dict[str, float]:
    """The route's retry, fallback and breaker counters from the system's metrics."""
    out: dict[str, float] = {}
    for (name, labels), value in parse_exposition(system.metrics()).items():
        label = dict(labels)
        if label.get("route") != DRILL_ROUTE:
            continue
        key = name.removeprefix("callboard_").removesuffix("_total")
        extra = ",".join(f"{k}={v}" for k, v in sorted(label.items()) if k != "route")
        out[f"{key}[{extra}]" if extra else key] = value
    return dict(sorted(out.items()))


def run_drill(args: argparse.Namespace, policies: dict[str, Any], base: int) -> dict[str, Any]:
    """Start the flaky pipeline with ``policies``, solve sequentially then concurrently."""
    port = free_admin_port()
    system = System.start(
        {
            "system": {"admin_port": port, "log_level": "error"},
            "supervisor": {"children": drill_children(args.failure_rate)},
            "policies": policies,
        }
    )
    pgid = system.pgid
    out: dict[str, Any] = {}
    try:
        cb = system

        def via_actors(msg: Solve) -> Decision:
            reply = cb.ask(ENGINE, msg, timeout=ASK_TIMEOUT)
            if not isinstance(reply, Decision):
                raise TypeError(f"{ENGINE} answered {type(reply).__name__}")
            return reply

        warm = DrillSeries()
        warm.block(via_actors, base - args.warmup, args.warmup)
        seq = DrillSeries()
        seq.block(via_actors, base, args.failure_n)
        out["sequential"] = drill_goals(seq.summary())
        conc = DrillSeries()
        per = max(1, args.failure_n // args.failure_threads)
        barrier = threading.Barrier(args.failure_threads + 1)

        def worker(k: int) -> None:
            barrier.wait()
            conc.block(via_actors, base + 100_000 + k * per, per)

        pool = [
            threading.Thread(target=worker, args=(k,), daemon=True)
            for k in range(args.failure_threads)
        ]
        for t in pool:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        conc.wall = time.perf_counter() - t0
        summary = conc.summary()
        summary["threads"] = args.failure_threads
        out["concurrent"] = drill_goals(summary)
        out["route_counters"] = drill_counters(system)
        out["breakers"] = [
            {k: b[k] for k in ("route", "state", "opened_count", "failure_rate")}
            for b in system.breakers()
        ]
    finally:
        system.stop()
        out["leftover_processes"] = kill_leftovers(pgid)
    return out


def failure_drill(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """``result["injected_failures"]``: protected and unprotected runs (see the top)."""
    if args.failure_rate <= 0:
        return
    progress(f"failure drill: {args.failure_rate:.0%} of reward model calls fail, protected")
    drill: dict[str, Any] = {"failure_rate": args.failure_rate, "requests": args.failure_n,
                             "policies": DRILL_POLICIES}  # fmt: skip
    result["injected_failures"] = drill
    drill["protected"] = run_drill(args, DRILL_POLICIES, base=2_000_000)
    progress("failure drill: unprotected (no policies)")
    drill["unprotected"] = run_drill(args, {}, base=2_000_000)
    protected = drill["protected"]
    drill["goal_met"] = protected["sequential"]["goal_met"] and protected["concurrent"]["goal_met"]
    if isinstance(result.get("goal_met"), dict):
        result["goal_met"]["injected_failures"] = drill["goal_met"]


def drill_goals(summary: dict[str, Any]) -> dict[str, Any]:
    summary["goal_error_rate_met"] = (summary["error_rate"] or 0.0) < GOAL_ERROR_RATE
    summary["goal_p99_met"] = summary["p99_ms"] <= GOAL_P99_MS
    summary["goal_met"] = summary["goal_error_rate_met"] and summary["goal_p99_met"]
    return summary


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="sequential requests (default 300)")
    p.add_argument(
        "--concurrent-n", type=int, default=800,
        help="requests in total by the concurrent clients (default 800)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up solves (default 50)")
    p.add_argument(
        "--rounds", type=int, default=10,
        help="blocks the sequential and baseline runs alternate in (default 10)",
    )  # fmt: skip
    p.add_argument(
        "--failure-rate", type=float, default=0.2,
        help="fraction of reward model calls that fail in the drill (default 0.2; 0 skips it)",
    )  # fmt: skip
    p.add_argument(
        "--failure-n", type=int, default=400,
        help="requests per part of the failure drill (default 400)",
    )  # fmt: skip
    p.add_argument(
        "--failure-threads", type=int, default=4,
        help="concurrent clients in the failure drill (default 4)",
    )  # fmt: skip
    p.add_argument(
        "--only-failures", action="store_true", help="run the failure drill only",
    )  # fmt: skip
    args = p.parse_args(argv)
    if not 0.0 <= args.failure_rate <= 1.0:
        p.error("--failure-rate must be within [0, 1]")
    if min(args.failure_n, args.failure_threads) < 1:
        p.error("--failure-n and --failure-threads must be >= 1")
    if min(args.n, args.concurrent_n, args.threads, args.rounds) < 1 or args.warmup < 0:
        p.error("--n, --concurrent-n, --threads and --rounds must be >= 1, --warmup >= 0")
    args.rounds = min(args.rounds, args.n)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    json_stdout()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    result: dict[str, Any] = {
        "benchmark": "pipeline",
        "n": args.n,
        "concurrent_n": args.concurrent_n,
        "threads": args.threads,
        "warmup": args.warmup,
        "questions": len(QUESTIONS),
        "ask_timeout_s": ASK_TIMEOUT,
        "python": platform.python_version(),
        "thespian": importlib.metadata.version("thespian"),
        "callboard_version": importlib.metadata.version("callboard"),
        "transport": "tcp (multiprocTCPBase, 127.0.0.1)",
        "cpus": os.cpu_count(),
        "goal_p99_ms": GOAL_P99_MS,
        "goal_rps": GOAL_RPS,
    }
    system: System | None = None
    pgid: int | None = None
    floor: InProcessPipeline | None = None
    rc = 0
    try:
        if args.only_failures:
            failure_drill(args, result)
            return rc
        spec = pipeline_spec()
        floor = InProcessPipeline(spec)
        port = free_admin_port()
        progress(f"starting the pipeline on admin port {port}")
        t0 = time.perf_counter()
        system = System.start(
            {
                "system": {"admin_port": port, "log_level": "warning"},
                "supervisor": {"children": [spec]},
            }
        )
        result["start_s"] = round(time.perf_counter() - t0, 3)
        pgid = system.pgid
        result["process_group"] = pgid
        cb = system

        def via_actors(msg: Solve) -> Decision:
            reply = cb.ask(ENGINE, msg, timeout=ASK_TIMEOUT)
            if not isinstance(reply, Decision):
                raise TypeError(f"{ENGINE} answered {type(reply).__name__}")
            return reply

        in_process = floor.solve

        progress(f"warm-up: {args.warmup} solves each, actors and in-process")
        warm = Series()
        warm.block(via_actors, -args.warmup, args.warmup)
        warm.block(in_process, -args.warmup, args.warmup)
        if warm.errors:
            progress(f"warm-up errors: {dict(warm.errors)}")

        # The same seeded Solve must give the same decision both ways, or the floor is
        # not computing what the actors compute.
        same = 0
        for s, q in enumerate(QUESTIONS):
            msg = Solve(problem=q, seed=s)
            same += essence(via_actors(msg)) == essence(in_process(msg))
        result["baseline_same_decisions"] = f"{same}/{len(QUESTIONS)}"

        # (a) one client, interleaved with the in-process floor in blocks.
        seq, base = Series(), Series()
        sizes = [args.n // args.rounds + (r < args.n % args.rounds) for r in range(args.rounds)]
        before = stage_totals(system)
        cpu_before = cpu_snapshot(actor_pids(system), pgid, "client")
        start = 0
        for r, size in enumerate(sizes):
            progress(f"round {r + 1}/{args.rounds}: {size} solves, actors and in-process")
            order = [(seq, via_actors), (base, in_process)]
            for series, fn in order if r % 2 == 0 else order[::-1]:
                series.block(fn, start, size)
            start += size
        cpu_after = cpu_snapshot(actor_pids(system), pgid, "client")
        cpu_after["client"] = cpu_before["client"] + seq.client_cpu  # not the floor's work
        after = stage_totals(system)
        result["sequential"] = with_goals(seq.summary())
        baseline = base.summary()
        result["in_process_baseline"] = baseline
        result["ratio_p50_actors_vs_in_process"] = round(
            result["sequential"]["p50_ms"] / baseline["p50_ms"], 2
        )
        result["overhead_p50_ms"] = round(result["sequential"]["p50_ms"] - baseline["p50_ms"], 3)
        seq_where: dict[str, Any] = {
            "path_timings_median_ms": seq.hop_medians(),
            "stage_seconds_mean_ms": stage_means_ms(before, after),
            "client_minus_engine_median_ms": seq.client_minus_engine(),
            "sampling_rounds_median": statistics.median(seq.rounds) if seq.rounds else None,
            **cpu_report(cpu_before, cpu_after, len(seq.lat), seq.wall),
        }

        # (b) T clients at once on one System.
        progress(f"{args.threads} clients x {args.concurrent_n // args.threads} solves at once")
        before = stage_totals(system)
        cpu_before = cpu_snapshot(actor_pids(system), pgid, "client")
        conc = run_concurrent(system, args.concurrent_n, args.threads, base=1_000_000)
        cpu_after = cpu_snapshot(actor_pids(system), pgid, "client")
        after = stage_totals(system)
        summary = conc.summary()
        summary["threads"] = args.threads
        summary["requests_per_thread"] = max(1, args.concurrent_n // args.threads)
        result["concurrent"] = with_goals(summary)
        result["where_time_goes"] = {
            "sequential": seq_where,
            "concurrent": {
                "path_timings_median_ms": conc.hop_medians(),
                "stage_seconds_mean_ms": stage_means_ms(before, after),
                "client_minus_engine_median_ms": conc.client_minus_engine(),
                **cpu_report(cpu_before, cpu_after, len(conc.lat), conc.wall),
            },
            "notes": (
                "path_timings_median_ms: medians of each decision's path.timings_ms; "
                "'reasoning_engine' is the engine's handler time up to the Record it sends "
                "decision_support, and the decision_support hop is never in the path (the "
                "timings are copied into the Record before that hop): null. "
                "stage_seconds_mean_ms: the engine's callboard_stage_seconds histogram over "
                "the same requests (means), which does include decision_support. "
                "client_minus_engine_median_ms: client latency minus the path's "
                "'reasoning_engine' per request: the decision_support hop plus the client's "
                "own round trip to the engine. cpu_ms_per_request: user+system CPU of each "
                "process (actors by name, root = root supervisor, other = Thespian's admin "
                "and logger, client = this process's asking threads) over the part, per "
                "successful request; busy_fraction: the same CPU over the part's wall time "
                "(1.0 = one core saturated; the machine has 'cpus' cores). message_codec: "
                "bytes and median encode/decode time of each message one Solve puts on the "
                "wire (callboard's codec only, measured in this process), and the sum of "
                "those the engine itself encodes or decodes per Solve."
            ),
        }
        progress("codec costs of one Solve's messages, in-process")
        result["where_time_goes"]["message_codec"] = codec_costs(floor)
        result["goal_met"] = {
            "sequential": result["sequential"]["goal_met"],
            "concurrent": result["concurrent"]["goal_met"],
        }
        system.stop()
        result["leftover_processes"] = kill_leftovers(pgid)
        system = None
        failure_drill(args, result)
    except BaseException as exc:  # report, then clean up; the JSON is still printed
        result["error"] = f"{type(exc).__name__}: {exc}"
        progress(f"benchmark failed: {result['error']}")
        rc = 1
    finally:
        if floor is not None:
            floor.close()
        if system is not None:
            progress("stopping the pipeline")
            system.stop()
        if system is not None or "leftover_processes" not in result:
            result["leftover_processes"] = kill_leftovers(pgid)
        emit(result)
    return rc


if __name__ == "__main__":
    sys.exit(main())
