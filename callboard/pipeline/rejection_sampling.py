"""``RejectionSampling``: generate candidates, have the reward model score them, keep the
best one that reaches the threshold.

A thin shell around :class:`~callboard.pipeline._sampling.RejectionSampler` (the loop,
unit-tested as plain code): the actor loads the :class:`Generator` named in its ``args``,
drives the loop, and asks the reward model (another actor) for the scores of each round.

Replies to :class:`Sample` with :class:`Selected`, or fails with the business errors

* ``no_acceptable_solution`` (:class:`NoAcceptableSolution`): nothing reached the
  threshold in ``max_rounds`` rounds (and ``allow_degraded`` is off), or the generator
  produced nothing; ``details`` has the stats (``generated``, ``accepted``, ``rounds``,
  ``rejection_rate``), ``threshold``, ``best_score`` and ``records``;
* ``stage_failed`` (:class:`ScoringFailed`): the reward model did not answer (timeout,
  crash, restarting, unknown name) and no degraded answer was allowed or possible;
  ``details`` has ``stage`` (``"reward_model"``), ``cause``, ``target``, ``round``,
  ``seed`` and the stats. The same code and shape as the engine's own stage failures.

Logs ``solution_generated`` and ``quality_evaluated`` per round and ``sampling_finished``
(with the seed) at info, ``scoring_failed`` at warning; counts candidates by verdict in
``callboard_candidates_total``.

A failing reward model is reported, not crashed on: under a ``rest_for_one`` supervisor
a crash here would also restart every stage started after this one.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callboard.actors import Actor, handler
from callboard.errors import AskTimeout, BusinessError, NoSuchActor, RemoteError
from callboard.messages import is_degraded
from callboard.pipeline._messages import Candidate, Sample, Score, Scores, Selected
from callboard.pipeline._metrics import business_event, pipeline_metrics
from callboard.pipeline._plugins import Generator, load_plugin
from callboard.pipeline._sampling import Done, RejectionSampler

__all__ = ["RejectionSampling", "ScoringFailed"]


class ScoringFailed(BusinessError):
    """The reward model could not score a round (code ``stage_failed``, like the
    engine's failures of a stage; ``details["stage"]`` is ``"reward_model"``)."""

    code = "stage_failed"


class RejectionSampling(Actor):
    """Answers :class:`Sample` with :class:`Selected`."""

    class Args(BaseModel):
        model_config = ConfigDict(extra="forbid")

        generator: str = "callboard.pipeline.plugins:EvidenceGenerator"
        """Import path ``"package.module:Class"`` of a :class:`Generator`."""
        generator_options: dict[str, Any] = Field(default_factory=dict)
        """Keyword arguments for the generator's constructor."""
        n: int = Field(6, ge=1)
        """Candidates asked of the generator per round."""
        threshold: float = Field(0.55, ge=0.0, le=1.0)
        """Minimum score for a candidate to be accepted."""
        max_rounds: int = Field(3, ge=1)
        """Rounds before giving up."""
        allow_degraded: bool = False
        """Return the best rejected candidate (``degraded=True``) instead of failing."""
        reward_model: str = "reward_model"
        """Name of the reward model actor to ask."""
        score_timeout: float = Field(1.0, gt=0.0)
        """Seconds to wait for each round's scores (never past the request's deadline)."""

    generator: Generator

    def on_start(self) -> None:
        generator = load_plugin(self.args.generator, self.args.generator_options)
        if not isinstance(generator, Generator):
            raise TypeError(f"{self.args.generator} is not a Generator (no generate method)")
        self.generator = generator

    @handler
    async def sample(self, msg: Sample) -> Selected:
        args = self.args
        seed = msg.seed if msg.seed is not None else random.SystemRandom().getrandbits(63)
        rng = random.Random(seed)
        context = msg.context
        sampler = RejectionSampler(args.threshold, args.n, args.max_rounds, args.allow_degraded)

        def generate(k: int) -> list[Candidate]:
            return self.generator.generate(context, k, rng)

        step = sampler.start(generate)
        fallback_rounds = 0  # rounds scored by the reward model's fallback (degraded)
        while not isinstance(step, Done):
            rnd = sampler.round
            business_event(
                self,
                "solution_generated",
                round=rnd,
                n=len(step),
                duplicates=sampler.duplicates,
                remaining_s=self.remaining(),
            )
            try:
                reply = await self.ask(
                    args.reward_model,
                    Score(context=context, candidates=step),
                    timeout=args.score_timeout,
                )
            except (AskTimeout, RemoteError, NoSuchActor) as exc:
                step = self._scoring_failed(sampler, exc, seed)
                break
            if not isinstance(reply, Scores):
                raise TypeError(f"{args.reward_model} answered {type(reply).__name__}, not Scores")
            if is_degraded(reply):
                fallback_rounds += 1
            step = sampler.add_scores(reply.scores)
            this_round = [r for r in sampler.records if r.round == rnd]
            accepted = sum(r.accepted for r in this_round)
            candidates = pipeline_metrics().candidates
            candidates.labels("accepted").inc(accepted)
            candidates.labels("rejected").inc(len(this_round) - accepted)
            business_event(
                self,
                "quality_evaluated",
                round=rnd,
                accepted=accepted,
                best_score=max((r.score for r in this_round), default=None),
                threshold=args.threshold,
            )
        if fallback_rounds and step.selected is not None:
            selected = step.selected
            selected.degraded = True
            reasons = [r for r in (selected.degraded_reason, "fallback_scores") if r]
            selected.degraded_reason = ",".join(reasons)
        self.log.info(
            "sampling_finished",
            seed=seed,
            selected=step.selected is not None,
            degraded=step.selected.degraded if step.selected is not None else False,
            score=step.selected.score if step.selected is not None else None,
            fallback_rounds=fallback_rounds,
            **step.stats.model_dump(),
        )
        return step.result()

    def _scoring_failed(self, sampler: RejectionSampler, exc: Exception, seed: int) -> Done:
        """A degraded :class:`Done` if allowed and something was scored; else raise."""
        cause = exc.code if isinstance(exc, RemoteError) else type(exc).__name__
        self.log.warning(
            "scoring_failed",
            round=sampler.round,
            cause=cause,
            error=str(exc),
            reward_model=self.args.reward_model,
        )
        if self.args.allow_degraded and sampler.records:
            return sampler.finish()
        raise ScoringFailed(
            f"reward_model unavailable: {cause} (round {sampler.round}: {exc})",
            {
                "stage": "reward_model",
                "cause": cause,
                "target": self.args.reward_model,
                "round": sampler.round,
                "seed": seed,
                **sampler.stats().model_dump(mode="json"),
            },
        )
