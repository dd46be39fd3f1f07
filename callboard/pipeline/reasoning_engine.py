"""ReasoningEngine: turns a problem into a decision by orchestrating the other four.

``Solve`` -> query the KnowledgeBase -> resolve the items' references (data enrichment)
-> ask RejectionSampling for a selected solution -> hand the decision path to
DecisionSupport -> return the Decision. Every hop is a request carrying the caller's
deadline (an inner timeout is only ever shorter).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callboard.actors import Actor, handler
from callboard.errors import AskTimeout, BusinessError, RemoteError
from callboard.messages import Message
from callboard.pipeline._messages import (
    Decision,
    GetItems,
    Items,
    Query,
    QueryResult,
    Record,
    Sample,
    Selected,
    SolutionContext,
    Solve,
)
from callboard.pipeline._metrics import business_event, pipeline_metrics

__all__ = ["NoKnowledge", "ReasoningEngine", "StageFailed"]

# Codes that mean "the stage could not answer", as opposed to a business outcome.
_INFRA = {"crashed", "restarting", "stopping", "not_running", "no_such_actor", "invalid_message"}


class NoKnowledge(BusinessError):
    """Nothing in the knowledge base matches the problem (code ``no_knowledge``)."""


class StageFailed(BusinessError):
    """A pipeline stage timed out or was unavailable (code ``stage_failed``); ``details``
    name the stage and the cause. Retries and fallbacks (resilience policies) sit above."""


class _Relayed(BusinessError):
    """A downstream business error passed on to the caller with its own code."""

    def __init__(self, err: RemoteError) -> None:
        super().__init__(err.message, err.details)
        setattr(self, "code", err.code)  # noqa: B010  (the code is per instance here)


class ReasoningEngine(Actor):
    class Args(BaseModel):
        model_config = ConfigDict(extra="forbid")

        knowledge_base: str = "knowledge_base"
        rejection_sampling: str = "rejection_sampling"
        decision_support: str = "decision_support"
        query_timeout: float = Field(1.0, gt=0)
        sample_timeout: float = Field(5.0, gt=0)
        record_timeout: float = Field(1.0, gt=0)
        resolve_references: bool = True

    async def _hop(
        self, timings: dict[str, float], stage: str, target: str, msg: Message, timeout: float
    ) -> Any:
        started = time.perf_counter()
        try:
            return await self.ask(target, msg, timeout=timeout)
        except AskTimeout as exc:
            raise StageFailed(f"{stage} timed out", {"stage": stage, "cause": "timeout"}) from exc
        except RemoteError as exc:
            if exc.code in _INFRA:
                raise StageFailed(
                    f"{stage} unavailable: {exc.code}", {"stage": stage, "cause": exc.code}
                ) from exc
            raise _Relayed(exc) from exc
        finally:
            timings[stage] = round((time.perf_counter() - started) * 1000, 3)
            pipeline_metrics().stage_seconds.labels(stage).observe(time.perf_counter() - started)

    @handler
    async def solve(self, msg: Solve) -> Decision:
        started = time.perf_counter()
        timings: dict[str, float] = {}  # per request: solves interleave at every await
        args = self.args
        try:
            found: QueryResult = await self._hop(
                timings, "knowledge_base", args.knowledge_base,
                Query(text=msg.problem, k=msg.k, filters=msg.constraints.get("filters", {})),
                args.query_timeout,
            )  # fmt: skip
            if not found.items:
                raise NoKnowledge("no knowledge matches the problem", {"problem": msg.problem})
            context = SolutionContext(
                problem=msg.problem, constraints=msg.constraints, items=found.items
            )
            if args.resolve_references:
                context.references = await self._references(context, timings)
            business_event(
                self, "decision_point", problem=msg.problem[:200], knowledge=len(found.items),
                references=len(context.references),
            )  # fmt: skip
            selected: Selected = await self._hop(
                timings, "rejection_sampling", args.rejection_sampling,
                Sample(context=context, seed=msg.seed), args.sample_timeout,
            )  # fmt: skip
            timings["reasoning_engine"] = round((time.perf_counter() - started) * 1000, 3)
            decision: Decision = await self._hop(
                timings, "decision_support", args.decision_support,
                Record(problem=msg.problem, selected=selected, context=context,
                       timings_ms=dict(timings), seed=msg.seed),
                args.record_timeout,
            )  # fmt: skip
            decision.path.timings_ms.update(timings)  # add the decision_support hop itself
        except BusinessError as exc:
            pipeline_metrics().decisions.labels(exc.code).inc()
            business_event(self, "process_completed", outcome=exc.code)
            raise
        outcome = "degraded" if decision.degraded else "ok"
        pipeline_metrics().decisions.labels(outcome).inc()
        business_event(
            self, "process_completed", outcome=outcome, decision=decision.id,
            confidence=decision.confidence, ms=round((time.perf_counter() - started) * 1000, 3),
        )  # fmt: skip
        return decision

    async def _references(self, context: SolutionContext, timings: dict[str, float]) -> list[Any]:
        """Data enrichment: the items the retrieved ones refer to, fetched once."""
        have = {scored.item.id for scored in context.items}
        wanted = [r for scored in context.items for r in scored.item.refs if r not in have]
        wanted = list(dict.fromkeys(wanted))
        if not wanted:
            return []
        got: Items = await self._hop(
            timings,
            "references",
            self.args.knowledge_base,
            GetItems(ids=wanted),
            self.args.query_timeout,
        )
        return list(got.items)
