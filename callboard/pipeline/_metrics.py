"""Business metrics of the pipeline (spec §8.1): decisions, acceptance, reward, stage time.

Created on first use in the actor process that records them, after the runtime switched
prometheus-client to multiprocess mode, so one exposition covers every process.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from prometheus_client import Counter, Histogram

__all__ = ["business_event", "pipeline_metrics"]


class _PipelineMetrics:
    def __init__(self) -> None:
        self.decisions = Counter(
            "callboard_decisions_total", "Decisions made, by outcome.", ["outcome"], registry=None
        )
        self.candidates = Counter(
            "callboard_candidates_total",
            "Candidates generated, by verdict (accepted/rejected).",
            ["verdict"],
            registry=None,
        )
        self.reward = Histogram(
            "callboard_reward_score",
            "Reward scores given to candidates.",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=None,
        )
        self.stage_seconds = Histogram(
            "callboard_stage_seconds",
            "Time spent per pipeline stage.",
            ["stage"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=None,
        )


@cache
def pipeline_metrics() -> _PipelineMetrics:
    return _PipelineMetrics()


def business_event(actor: Any, event: str, **fields: Any) -> None:
    """Log ``event`` and, when the system runs a bus, publish it on ``business.<event>``
    (best effort: a bus that is restarting costs the event, logged, never the request)."""
    actor.log.info(event, **fields)
    if "bus" not in actor._runtime.directory:
        return
    from callboard.errors import CallboardError, RemoteError
    from callboard.pipeline._messages import BusinessEvent

    try:
        actor.publish(f"business.{event}", BusinessEvent(event=event, fields=fields))
    except (CallboardError, RemoteError) as exc:
        actor.log.warning("business_event_not_published", business_event=event, error=str(exc))
