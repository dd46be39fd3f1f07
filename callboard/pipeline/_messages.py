"""The reasoning pipeline's messages (spec §3.1): the contract between its five actors.

Data flow::

    host/admin -> ReasoningEngine --Query-->  KnowledgeBase        (domain knowledge)
                  ReasoningEngine --Sample--> RejectionSampling    (solution context)
                  RejectionSampling --Score--> RewardModel --Scores--> RejectionSampling
                  RejectionSampling --Selected--> ReasoningEngine --Record--> DecisionSupport
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from callboard.errors import BusinessError
from callboard.messages import Message

__all__ = [
    "BusinessEvent",
    "Candidate",
    "CandidateRecord",
    "Decision",
    "DecisionPath",
    "Delete",
    "Deleted",
    "GetDecision",
    "GetItems",
    "Items",
    "KnowledgeItem",
    "NoAcceptableSolution",
    "Put",
    "PutResult",
    "Query",
    "QueryResult",
    "Record",
    "Sample",
    "SamplingStats",
    "Score",
    "ScoredItem",
    "Scores",
    "Selected",
    "SolutionContext",
    "Solve",
]

_P = "callboard.pipeline."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- knowledge --------------------------------------------------------------------------------


class KnowledgeItem(_Model):
    """One piece of domain knowledge. ``refs`` names other items it builds on (resolved
    into the solution context: data enrichment, spec §3.2)."""

    id: str = Field(min_length=1, max_length=200)
    kind: Literal["fact", "rule", "document"] = "fact"
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    source: str = ""
    refs: list[str] = Field(default_factory=list)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class ScoredItem(_Model):
    item: KnowledgeItem
    score: float
    """BM25 relevance (higher is better)."""


class Put(Message):
    """Insert or replace items (by id). -> :class:`PutResult`."""

    type_name: ClassVar[str] = _P + "Put"
    reply_type: ClassVar[str | None] = _P + "PutResult"
    items: list[KnowledgeItem]


class PutResult(Message):
    type_name: ClassVar[str] = _P + "PutResult"
    created: int
    updated: int


class Delete(Message):
    """-> :class:`Deleted` (how many existed)."""

    type_name: ClassVar[str] = _P + "Delete"
    reply_type: ClassVar[str | None] = _P + "Deleted"
    ids: list[str]


class Deleted(Message):
    type_name: ClassVar[str] = _P + "Deleted"
    count: int


class GetItems(Message):
    """-> :class:`Items` (those found, in the order asked)."""

    type_name: ClassVar[str] = _P + "GetItems"
    reply_type: ClassVar[str | None] = _P + "Items"
    ids: list[str]


class Items(Message):
    type_name: ClassVar[str] = _P + "Items"
    items: list[KnowledgeItem]


class Query(Message):
    """Full-text search (SQLite FTS5, BM25). ``filters``: ``kind`` (str or list),
    ``tags`` (items having any of them), ``source``. -> :class:`QueryResult`."""

    type_name: ClassVar[str] = _P + "Query"
    reply_type: ClassVar[str | None] = _P + "QueryResult"
    idempotent: ClassVar[bool] = True
    text: str
    k: int = Field(5, ge=1, le=100)
    filters: dict[str, Any] = Field(default_factory=dict)


class QueryResult(Message):
    type_name: ClassVar[str] = _P + "QueryResult"
    items: list[ScoredItem]


# -- sampling -----------------------------------------------------------------------------------


class SolutionContext(_Model):
    """What the engine hands to sampling: the problem, its constraints, the knowledge
    retrieved for it, and the items those reference (resolved)."""

    problem: str
    constraints: dict[str, Any] = Field(default_factory=dict)
    items: list[ScoredItem] = Field(default_factory=list)
    references: list[KnowledgeItem] = Field(default_factory=list)


class Candidate(_Model):
    """A proposed solution. ``evidence``: ids of the knowledge items it rests on."""

    text: str
    evidence: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class CandidateRecord(_Model):
    candidate: Candidate
    score: float
    accepted: bool
    round: int
    reason: str = ""
    """Why it was rejected (below threshold), empty if accepted."""


class SamplingStats(_Model):
    generated: int
    accepted: int
    rounds: int
    rejection_rate: float


class Sample(Message):
    """Engine -> RejectionSampling: find an acceptable candidate. -> :class:`Selected`,
    or the business error ``no_acceptable_solution``."""

    type_name: ClassVar[str] = _P + "Sample"
    reply_type: ClassVar[str | None] = _P + "Selected"
    context: SolutionContext
    seed: int | None = None


class Selected(Message):
    type_name: ClassVar[str] = _P + "Selected"
    best: Candidate
    score: float
    records: list[CandidateRecord]
    stats: SamplingStats
    degraded: bool = False
    """True when the answer is second best: see ``degraded_reason``."""
    degraded_reason: str = ""
    """``below_threshold`` (nothing met the threshold; the best one was returned anyway)
    and/or ``fallback_scores`` (some scores came from the reward model's fallback)."""


class Score(Message):
    """RejectionSampling -> RewardModel. -> :class:`Scores` (one per candidate, 0..1)."""

    type_name: ClassVar[str] = _P + "Score"
    reply_type: ClassVar[str | None] = _P + "Scores"
    idempotent: ClassVar[bool] = True
    context: SolutionContext
    candidates: list[Candidate]


class Scores(Message):
    type_name: ClassVar[str] = _P + "Scores"
    scores: list[float]


# -- decisions ----------------------------------------------------------------------------------


class DecisionPath(_Model):
    """How a decision was reached: the knowledge used, every candidate with its score,
    rejections and why, sampling statistics, and the time spent per hop (ms)."""

    knowledge: list[ScoredItem] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    candidates: list[CandidateRecord] = Field(default_factory=list)
    stats: SamplingStats | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class Decision(Message):
    type_name: ClassVar[str] = _P + "Decision"
    id: str
    problem: str
    recommendation: str
    confidence: float
    degraded: bool = False
    degraded_reason: str = ""
    path: DecisionPath = Field(default_factory=DecisionPath)
    created_at: dt.datetime | None = None


class Solve(Message):
    """Host -> ReasoningEngine: decide. -> :class:`Decision`; business errors:
    ``no_acceptable_solution``, ``no_knowledge`` (nothing relevant found)."""

    type_name: ClassVar[str] = _P + "Solve"
    reply_type: ClassVar[str | None] = _P + "Decision"
    problem: str = Field(min_length=1, max_length=10_000)
    constraints: dict[str, Any] = Field(default_factory=dict)
    k: int = Field(5, ge=1, le=50)
    seed: int | None = None


class Record(Message):
    """Engine -> DecisionSupport: build and persist the decision. -> :class:`Decision`."""

    type_name: ClassVar[str] = _P + "Record"
    reply_type: ClassVar[str | None] = _P + "Decision"
    problem: str
    selected: Selected
    context: SolutionContext
    timings_ms: dict[str, float] = Field(default_factory=dict)
    seed: int | None = None


class GetDecision(Message):
    """-> :class:`Decision`; business error ``decision_not_found``."""

    type_name: ClassVar[str] = _P + "GetDecision"
    reply_type: ClassVar[str | None] = _P + "Decision"
    idempotent: ClassVar[bool] = True
    id: str


# -- business events ----------------------------------------------------------------------------


class BusinessEvent(Message):
    """Published on ``business.<event>`` when the bus runs: ``decision_point``,
    ``solution_generated``, ``quality_evaluated``, ``process_completed`` (the same fields
    as the log line of that name)."""

    type_name: ClassVar[str] = _P + "BusinessEvent"
    event: str
    fields: dict[str, Any] = Field(default_factory=dict)


# -- business errors ----------------------------------------------------------------------------


class NoAcceptableSolution(BusinessError):
    """No candidate reached the threshold within ``max_rounds`` (code
    ``no_acceptable_solution``); ``details`` carries the sampling statistics."""
