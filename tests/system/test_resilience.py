"""Resilience policies on real processes: retries, breakers, fallbacks, forced breakers.

The pipeline drill: RejectionSampling calls a RewardModel whose FlakyScorer is switched
(through its control file) from healthy to failing-and-slow and back. The breaker of
``rejection_sampling->reward_model`` must open, decisions must come back degraded from
the substitute reward model, the breaker must half-open and close once the plug-in has
recovered, and no request may outlive its deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import pytest
from resactors import Answer, Lookup
from test_pipeline import QUESTION, pipeline_children

from callboard import NoSuchActor, NoSuchBreaker, System, is_degraded
from callboard.observability.metrics import parse_exposition
from callboard.pipeline import Decision, Solve
from callboard.resilience import CircuitOpen

from conftest import StartSystem, read_log

ROUTE = "rejection_sampling->reward_model"
SOLVE_TIMEOUT = 3.0
# How late a reply may come back after its deadline: scheduling and one hop of transport
# on a busy 2-core machine. Far below any timeout or backoff in play, so a request that
# waited for another attempt past its deadline would still be caught.
DEADLINE_SLACK = 0.25


def drill_children(control: Path) -> list[dict[str, Any]]:
    children = pipeline_children()
    for child in children[0]["supervisor"]["children"]:
        if child["id"] == "reward_model":
            child["args"] = {
                "scorer": "callboard.pipeline.plugins:FlakyScorer",
                "scorer_options": {"mode": "error", "control": str(control), "seed": 3},
            }
    backup = {"id": "reward_model_backup", "actor": "callboard.pipeline.reward_model:RewardModel"}
    return [backup, *children]


DRILL_POLICIES: dict[str, Any] = {
    ROUTE: {
        "timeout": 0.3,
        "retry": {"max_attempts": 2, "backoff": "fixed", "base": 0.01, "max": 0.01,
                  "on": ["timeout", "unavailable", "crashed", "restarting"]},
        "breaker": {"window": "count", "size": 10, "min_calls": 4, "failure_rate": 0.5,
                    "slow_call_s": 0.25, "slow_call_rate": 0.8, "open_s": 0.5,
                    "open_max_s": 2.0, "half_open_calls": 1, "success_threshold": 2,
                    "half_open_max_s": 5.0},
        "fallback": {"mode": "substitute", "target": "reward_model_backup"},
    },
}  # fmt: skip


class Drill:
    """Solves from the host, timing each against its deadline and tallying outcomes."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.counts: Tally[str] = Tally()
        self.late: list[float] = []

    def solve(self, seed: int) -> Decision | None:
        self.counts["requests"] += 1
        started = time.monotonic()
        try:
            decision = self.system.ask(
                "reasoning_engine", Solve(problem=QUESTION, seed=seed), timeout=SOLVE_TIMEOUT
            )
        except Exception as exc:
            self.counts["failed"] += 1
            self.counts[f"failed:{type(exc).__name__}"] += 1
            decision = None
        elapsed = time.monotonic() - started
        if elapsed > SOLVE_TIMEOUT + DEADLINE_SLACK:
            self.late.append(elapsed)
        if decision is not None:
            assert isinstance(decision, Decision)
            degraded = decision.degraded and "fallback_scores" in decision.degraded_reason
            # The business field and the wire flag agree.
            assert is_degraded(decision) == degraded
            self.counts["degraded" if degraded else "ok"] += 1
        return decision

    def until(self, done: Any, what: str, limit_s: float = 30.0) -> int:
        """Solve until ``done()`` holds; bounded by ``limit_s`` of wall time."""
        give_up = time.monotonic() + limit_s
        n = 0
        while not done():
            assert time.monotonic() < give_up, f"{what}: not reached in {limit_s}s ({n} solves)"
            self.solve(seed=n)
            n += 1
        return n


def breaker(system: System, route: str = ROUTE) -> dict[str, Any]:
    (found,) = [b for b in system.breakers() if b["route"] == route]
    return found


def set_faults(control: Path, **faults: float) -> None:
    tmp = control.with_suffix(".tmp")
    tmp.write_text(json.dumps(faults))
    tmp.replace(control)  # atomic: the scorer never reads half a file


def test_breaker_opens_decisions_degrade_then_it_half_opens_and_closes(
    start_system: StartSystem, tmp_path: Path
) -> None:
    control = tmp_path / "faults.json"
    set_faults(control, fail_rate=0.0, delay_s=0.0)
    system = start_system(drill_children(control), policies=DRILL_POLICIES)
    drill = Drill(system)

    # Healthy: plain decisions, a closed breaker that has counted the calls.
    for seed in range(3):
        decision = drill.solve(seed)
        assert decision is not None and not decision.degraded
    state = breaker(system)
    assert state["state"] == "closed" and state["calls_in_window"] >= 3
    assert state["caller"] == "rejection_sampling" and state["target"] == "reward_model"

    # Failing half the time and slower than the attempt timeout: the breaker opens and
    # the substitute reward model answers, flagged degraded all the way to the host.
    set_faults(control, fail_rate=0.5, delay_s=0.35)
    drill.until(lambda: breaker(system)["state"] == "open", "breaker open")
    opened = breaker(system)
    assert opened["opened_count"] == 1 and opened["next_trial_s"] is not None
    decision = drill.solve(seed=100)
    assert decision is not None and decision.degraded and is_degraded(decision)
    assert "fallback_scores" in decision.degraded_reason
    assert drill.counts["degraded"] >= 1

    # Recovered: after the open wait a trial goes through, then two successes close it.
    set_faults(control, fail_rate=0.0, delay_s=0.0)
    drill.until(lambda: breaker(system)["state"] == "closed", "breaker closed")
    decision = drill.solve(seed=200)
    assert decision is not None and not decision.degraded and not is_degraded(decision)

    print(f"\nresilience drill counts: {dict(drill.counts)}")
    assert drill.counts["failed"] == 0, dict(drill.counts)
    assert drill.counts["requests"] == drill.counts["ok"] + drill.counts["degraded"]
    assert not drill.late, f"requests outlived their deadline: {drill.late}"

    # The breaker's story, as logged by RejectionSampling's process, in order.
    changes = [
        (e["old"], e["new"], e["reason"])
        for e in read_log(tmp_path)
        if e.get("event") == "breaker_state_changed" and e.get("route") == ROUTE
    ]
    states = [new for _, new, _ in changes]
    assert states[0] == "open" and states[-1] == "closed", changes
    assert ("open", "half_open", "open_wait_elapsed") in changes
    assert ("half_open", "closed", "trials_succeeded") in changes
    assert changes[0][2] in ("failure_rate", "slow_call_rate")
    fallbacks = [e for e in read_log(tmp_path) if e.get("event") == "fallback"]
    assert fallbacks and all(e["route"] == ROUTE for e in fallbacks)
    assert {e["mode"] for e in fallbacks} == {"substitute"}
    metrics = parse_exposition(system.metrics())
    assert metrics[("callboard_degraded_replies_total", frozenset({("route", ROUTE)}))] >= 1
    opened_key = frozenset({("route", ROUTE), ("state", "open")})
    assert metrics[("callboard_breaker_transitions_total", opened_key)] == 1


def test_an_admin_forces_a_breaker_open_and_closed(
    start_system: StartSystem, tmp_path: Path
) -> None:
    control = tmp_path / "faults.json"
    set_faults(control, fail_rate=0.0)
    system = start_system(drill_children(control), policies=DRILL_POLICIES)
    drill = Drill(system)
    assert drill.solve(seed=1) is not None

    (changed,) = system.set_breaker(ROUTE, "open")
    assert changed["state"] == "open" and changed["forced"] and changed["next_trial_s"] is None
    for seed in range(3):  # held open: every decision comes from the substitute
        decision = drill.solve(seed)
        assert decision is not None and decision.degraded
    state = breaker(system)
    assert state["state"] == "open" and state["forced"]

    (changed,) = system.set_breaker("reward_model", "closed")  # every caller's breaker
    assert changed["state"] == "closed" and not changed["forced"]
    decision = drill.solve(seed=9)
    assert decision is not None and not decision.degraded

    with pytest.raises(NoSuchBreaker):
        system.set_breaker("reasoning_engine->knowledge_base", "open")  # no breaker policy
    with pytest.raises(NoSuchActor):
        system.set_breaker("nobody->reward_model", "open")
    with pytest.raises(ValueError):
        system.set_breaker(ROUTE, "half_open")
    assert drill.counts["failed"] == 0 and not drill.late


def backend(name: str, **args: Any) -> dict[str, Any]:
    return {"id": name, "actor": "resactors:Backend", "args": {"name": name, **args}}


def test_host_calls_retry_through_a_restart_then_fall_back_to_a_static_reply(
    start_system: StartSystem, tmp_path: Path
) -> None:
    switch = tmp_path / "primary.off"
    policies = {
        "primary": {
            "timeout": 0.5,
            "retry": {"max_attempts": 8, "backoff": "exponential", "base": 0.05, "max": 0.4,
                      "on": ["restarting", "crashed", "unavailable", "timeout"]},
            "fallback": {"mode": "static", "reply": {"value": "", "source": "static"}},
        },
    }  # fmt: skip
    # Restarts wait 0.3 s, so after a kill the name answers "restarting" for a while.
    child = {**backend("primary", fail_file=str(switch)),
             "backoff": {"min": 0.3, "max": 0.3, "jitter": 0.0}}  # fmt: skip
    system = start_system([child], policies=policies)
    first = system.ask("primary", Lookup(key="a"), timeout=5)
    assert isinstance(first, Answer) and first.source == "primary" and not is_degraded(first)

    # Killed: the name is "restarting" for a moment; retries bridge the gap.
    system.kill("primary")
    second = system.ask("primary", Lookup(key="b"), timeout=5)
    assert isinstance(second, Answer) and second.source == "primary"
    assert second.pid != first.pid and not is_degraded(second)
    route = system.routes.route("primary")
    assert route is not None and route.counts["retries"] >= 1

    # Switched off: every attempt is refused as unavailable; the static reply answers.
    switch.touch()
    started = time.monotonic()
    third = system.ask("primary", Lookup(key="c"), timeout=2)
    assert time.monotonic() - started < 2 + DEADLINE_SLACK
    assert isinstance(third, Answer) and third.source == "static" and is_degraded(third)
    switch.unlink()
    fourth = system.ask("primary", Lookup(key="d"), timeout=5)
    assert fourth.source == "primary" and not is_degraded(fourth)

    metrics = parse_exposition(system.metrics())
    used = frozenset({("route", "host->primary"), ("mode", "static"), ("result", "ok")})
    assert metrics[("callboard_fallbacks_total", used)] == 1
    retried = frozenset({("route", "host->primary"), ("code", "unavailable")})
    assert metrics[("callboard_retries_total", retried)] >= 1
    host_route = frozenset({("route", "host->primary")})
    assert metrics[("callboard_degraded_replies_total", host_route)] == 1
    # The actors' own metrics are still there, in the same exposition.
    assert any(name == "callboard_messages_handled_total" for name, _ in metrics)
    events = [e for e in read_log(tmp_path) if e.get("event") == "retries_stopped"]
    assert events == [] or all(e["route"] == "host->primary" for e in events)


def test_a_host_breaker_fails_fast_while_open(start_system: StartSystem, tmp_path: Path) -> None:
    switch = tmp_path / "primary.off"
    switch.touch()
    policies = {
        "host->primary": {
            "breaker": {"size": 4, "min_calls": 4, "failure_rate": 0.5, "open_s": 30.0,
                        "open_max_s": 60.0, "failure_codes": ["unavailable"]},
        },
    }  # fmt: skip
    system = start_system([backend("primary", fail_file=str(switch))], policies=policies)
    codes = []
    for i in range(6):
        try:
            system.ask("primary", Lookup(key=str(i)), timeout=2)
        except Exception as exc:
            codes.append(getattr(exc, "code", type(exc).__name__))
    assert codes == ["unavailable"] * 4 + ["circuit_open"] * 2
    with pytest.raises(CircuitOpen) as info:
        system.ask("primary", Lookup(key="x"), timeout=2)
    assert info.value.retry_at is not None and 0 < info.value.retry_at <= 30.0
    (state,) = [b for b in system.breakers() if b["route"] == "host->primary"]
    assert state["state"] == "open" and state["counts"]["failed"] == 7
