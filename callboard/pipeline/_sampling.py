"""The rejection-sampling loop as plain code: no actors, no I/O, no clock.

The loop is a small state machine so that whoever drives it decides *how* candidates are
scored (the :class:`~callboard.pipeline.rejection_sampling.RejectionSampling` actor asks
the reward model, and awaits the reply; tests call a function)::

    sampler = RejectionSampler(threshold=0.6, n=4, max_rounds=3, allow_degraded=False)
    step = sampler.start(lambda k: generator.generate(context, k, rng))
    while not isinstance(step, Done):
        step = sampler.add_scores(score(step))        # one score per candidate, in order
    selected = step.result()                          # Selected, or raises NoAcceptableSolution

Rules:

* Each round asks the generator for ``n`` candidates. Candidates whose text (whitespace
  trimmed) was already seen, in this round or an earlier one, are dropped unscored; a round
  that yields nothing new costs a round but no scoring call.
* A candidate is accepted when ``score >= threshold``. A rejected one keeps the reason
  ``"score 0.41 below threshold 0.60"``.
* Sampling stops after the first round with at least one accepted candidate; the best
  accepted one wins. Ties go to the candidate generated first (earlier round, then earlier
  position in its round), so the result is deterministic.
* After ``max_rounds`` with nothing accepted: with ``allow_degraded`` the best candidate
  overall is returned with ``degraded=True``; otherwise :class:`NoAcceptableSolution` with
  the statistics (``generated``, ``accepted``, ``rounds``, ``rejection_rate``), the
  ``threshold``, the ``best_score`` and every record (``records``) in ``details``. If nothing
  at all was generated, it is always :class:`NoAcceptableSolution`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from callboard.pipeline._messages import (
    Candidate,
    CandidateRecord,
    NoAcceptableSolution,
    SamplingStats,
    Selected,
)

__all__ = ["Done", "GenerateFn", "RejectionSampler", "ScoreFn"]

GenerateFn = Callable[[int], Sequence[Candidate]]
"""``generate(k)``: up to ``k`` candidates (the driver closes over context and rng)."""

ScoreFn = Callable[[Sequence[Candidate]], Sequence[float]]
"""``score(candidates)``: one score per candidate, in order."""


@dataclass(frozen=True)
class Done:
    """The loop has finished: ``outcome`` is the :class:`Selected` reply or the
    :class:`NoAcceptableSolution` to raise."""

    outcome: Selected | NoAcceptableSolution
    stats: SamplingStats
    records: tuple[CandidateRecord, ...]

    @property
    def selected(self) -> Selected | None:
        return self.outcome if isinstance(self.outcome, Selected) else None

    def result(self) -> Selected:
        """The selection, or raise :class:`NoAcceptableSolution`."""
        if isinstance(self.outcome, NoAcceptableSolution):
            raise self.outcome
        return self.outcome


class RejectionSampler:
    """One sampling run (create a new one per request). See the module docstring."""

    def __init__(self, threshold: float, n: int, max_rounds: int, allow_degraded: bool) -> None:
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be within [0, 1], not {threshold!r}")
        if n < 1:
            raise ValueError(f"n must be >= 1, not {n!r}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, not {max_rounds!r}")
        self.threshold = threshold
        self.n = n
        self.max_rounds = max_rounds
        self.allow_degraded = allow_degraded
        self.round = 0
        """The round in progress (or last run), 1-based; 0 before :meth:`start`."""
        self.duplicates = 0
        """Candidates dropped because their text was seen before."""
        self._records: list[CandidateRecord] = []
        self._seen: set[str] = set()
        self._generate: GenerateFn | None = None
        self._pending: list[Candidate] | None = None
        self._done: Done | None = None
        self.last_batch_size = 0
        """New (deduplicated) candidates in the latest round."""

    # -- driving ----------------------------------------------------------------------------

    def start(self, generate: GenerateFn) -> list[Candidate] | Done:
        """Run round 1: the first batch to score (never empty), or :class:`Done` if no
        round produced anything new."""
        if self._generate is not None:
            raise RuntimeError("the sampler was already started")
        self._generate = generate
        return self._next_batch()

    def add_scores(self, scores: Sequence[float]) -> list[Candidate] | Done:
        """Record the scores of the pending batch: the next batch, or :class:`Done`.

        Raises ``ValueError`` for a wrong number of scores or a non-finite one (a scorer
        bug; the reward model already refuses those)."""
        batch = self._pending
        if batch is None:
            raise RuntimeError("no batch is waiting for scores")
        values = [float(s) for s in scores]
        if len(values) != len(batch):
            raise ValueError(f"{len(values)} scores for {len(batch)} candidates")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"non-finite score in {values!r}")
        self._pending = None
        accepted_now = 0
        for cand, value in zip(batch, values, strict=True):
            ok = value >= self.threshold
            accepted_now += ok
            reason = "" if ok else f"score {value:.2f} below threshold {self.threshold:.2f}"
            self._records.append(
                CandidateRecord(
                    candidate=cand, score=value, accepted=ok, round=self.round, reason=reason
                )
            )
        if accepted_now:
            return self._finish()
        return self._next_batch()

    def finish(self) -> Done:
        """Stop now with what has been scored (e.g. the scorer is unavailable or the
        deadline is near): degraded best effort if allowed, else no acceptable solution."""
        self._pending = None
        return self._finish()

    def run(self, generate: GenerateFn, score: ScoreFn) -> Selected:
        """Drive the whole loop with a synchronous ``score``; raises
        :class:`NoAcceptableSolution`."""
        step = self.start(generate)
        while not isinstance(step, Done):
            step = self.add_scores(score(step))
        return step.result()

    # -- state ------------------------------------------------------------------------------

    @property
    def records(self) -> list[CandidateRecord]:
        return list(self._records)

    @property
    def done(self) -> Done | None:
        return self._done

    def best_score(self) -> float | None:
        best = self._best(self._records)
        return best.score if best is not None else None

    def stats(self) -> SamplingStats:
        generated = len(self._records)
        accepted = sum(r.accepted for r in self._records)
        rate = (generated - accepted) / generated if generated else 0.0
        return SamplingStats(
            generated=generated, accepted=accepted, rounds=self.round, rejection_rate=rate
        )

    # -- internals --------------------------------------------------------------------------

    def _next_batch(self) -> list[Candidate] | Done:
        if self._done is not None:
            raise RuntimeError("sampling is finished")
        assert self._generate is not None
        while self.round < self.max_rounds:
            self.round += 1
            fresh: list[Candidate] = []
            for cand in list(self._generate(self.n))[: self.n]:
                key = cand.text.strip()
                if key in self._seen:
                    self.duplicates += 1
                    continue
                self._seen.add(key)
                fresh.append(cand)
            self.last_batch_size = len(fresh)
            if fresh:
                self._pending = fresh
                return fresh
        return self._finish()

    @staticmethod
    def _best(records: Sequence[CandidateRecord]) -> CandidateRecord | None:
        # max() keeps the first of equal maxima: records are in generation order.
        return max(records, key=lambda r: r.score, default=None)

    def _finish(self) -> Done:
        if self._done is not None:
            return self._done
        stats = self.stats()
        records = tuple(self._records)
        accepted = [r for r in records if r.accepted]
        outcome: Selected | NoAcceptableSolution
        if accepted:
            best = self._best(accepted)
            assert best is not None
            outcome = Selected(
                best=best.candidate, score=best.score, records=list(records), stats=stats
            )
        elif records and self.allow_degraded:
            best = self._best(records)
            assert best is not None
            outcome = Selected(
                best=best.candidate,
                score=best.score,
                records=list(records),
                stats=stats,
                degraded=True,
                degraded_reason="below_threshold",
            )
        else:
            outcome = self._no_acceptable(stats, records)
        self._done = Done(outcome=outcome, stats=stats, records=records)
        return self._done

    def _no_acceptable(
        self, stats: SamplingStats, records: tuple[CandidateRecord, ...]
    ) -> NoAcceptableSolution:
        best = self._best(records)
        if best is None:
            message = f"no candidates generated in {stats.rounds} round(s)"
        else:
            message = (
                f"no candidate reached the threshold {self.threshold:.2f} in "
                f"{stats.rounds} round(s); best score {best.score:.2f}"
            )
        details: dict[str, Any] = {
            **stats.model_dump(mode="json"),
            "threshold": self.threshold,
            "best_score": best.score if best is not None else None,
            "records": [r.model_dump(mode="json") for r in records],
        }
        return NoAcceptableSolution(message, details)
