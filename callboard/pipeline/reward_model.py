"""``RewardModel``: scores candidate solutions with a pluggable :class:`Scorer`.

The actor is a thin shell: it loads the scorer named in its ``args`` at start and checks
what the scorer returns. A scorer that returns the wrong number of scores or a non-finite
one has a bug: the handler raises and the actor crashes (its supervisor restarts it).
Finite values are clamped to [0, 1], and each is observed in the ``callboard_reward_score``
histogram.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callboard.actors import Actor, handler
from callboard.pipeline._messages import Score, Scores
from callboard.pipeline._metrics import pipeline_metrics
from callboard.pipeline._plugins import Scorer, load_plugin

__all__ = ["RewardModel", "checked_scores"]


def checked_scores(values: Sequence[Any], expected: int) -> list[float]:
    """``values`` as floats clamped to [0, 1]; ``ValueError`` if there are not ``expected``
    of them or one is not a finite number."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValueError(f"the scorer returned {type(values).__name__}, not a list of floats")
    if len(values) != expected:
        raise ValueError(f"the scorer returned {len(values)} scores for {expected} candidates")
    out: list[float] = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"score {i} is {value!r}, not a number")
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"score {i} is {f!r}, not finite")
        out.append(min(1.0, max(0.0, f)))
    return out


class RewardModel(Actor):
    """Answers :class:`Score` with :class:`Scores` (one per candidate, in [0, 1])."""

    class Args(BaseModel):
        model_config = ConfigDict(extra="forbid")

        scorer: str = "callboard.pipeline.plugins:CoverageScorer"
        """Import path ``"package.module:Class"`` of a :class:`Scorer`."""
        scorer_options: dict[str, Any] = Field(default_factory=dict)
        """Keyword arguments for the scorer's constructor."""

    scorer: Scorer

    def on_start(self) -> None:
        scorer = load_plugin(self.args.scorer, self.args.scorer_options)
        if not isinstance(scorer, Scorer):
            raise TypeError(f"{self.args.scorer} is not a Scorer (no score method)")
        self.scorer = scorer

    @handler
    def score(self, msg: Score) -> Scores:
        values = self.scorer.score(msg.context, list(msg.candidates))
        scores = checked_scores(values, len(msg.candidates))
        reward = pipeline_metrics().reward
        for value in scores:
            reward.observe(value)
        return Scores(scores=scores)
