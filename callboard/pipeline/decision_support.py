"""DecisionSupport: builds the Decision from the selected solution and persists it."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid

from pydantic import BaseModel, ConfigDict

from callboard.actors import Actor, handler
from callboard.errors import BusinessError
from callboard.pipeline._messages import Decision, DecisionPath, GetDecision, Record

__all__ = ["DecisionNotFound", "DecisionStore", "DecisionSupport", "build_decision"]


class DecisionNotFound(BusinessError):
    """No decision with that id (code ``decision_not_found``)."""


def build_decision(record: Record, decision_id: str, now: dt.datetime) -> Decision:
    """The decision and its path: knowledge used, every candidate with its score and
    verdict, sampling statistics, time per hop. Pure: the same record gives the same
    decision (but for ``id`` and ``created_at``)."""
    selected = record.selected
    stats = selected.stats
    # Confidence: the winning reward, discounted when most candidates were rejected
    # (a lucky pick among poor ones is less certain than a clear winner).
    acceptance = stats.accepted / stats.generated if stats.generated else 0.0
    confidence = round(selected.score * (0.75 + 0.25 * acceptance), 4)
    if selected.degraded:
        confidence = round(confidence * 0.5, 4)
    path = DecisionPath(
        knowledge=record.context.items,
        references=[item.id for item in record.context.references],
        candidates=selected.records,
        stats=stats,
        timings_ms=record.timings_ms,
    )
    return Decision(
        id=decision_id, problem=record.problem, recommendation=selected.best.text,
        confidence=confidence, degraded=selected.degraded,
        degraded_reason=selected.degraded_reason, path=path, created_at=now,
    )  # fmt: skip


class DecisionStore:
    """Decisions in SQLite (WAL for files), by id."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS decisions ("
            " id TEXT PRIMARY KEY, created_at TEXT NOT NULL, problem TEXT NOT NULL,"
            " body TEXT NOT NULL)"
        )

    def save(self, decision: Decision) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?)",
            (
                decision.id,
                (decision.created_at or dt.datetime.now(dt.UTC)).isoformat(),
                decision.problem,
                decision.model_dump_json(),
            ),
        )

    def get(self, decision_id: str) -> Decision | None:
        row = self._db.execute("SELECT body FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        return Decision.model_validate(json.loads(row[0])) if row else None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class DecisionSupport(Actor):
    """Turns a selected solution into a :class:`Decision`, persists it, answers
    :class:`GetDecision`."""

    class Args(BaseModel):
        model_config = ConfigDict(extra="forbid")

        db_path: str = ":memory:"

    def on_start(self) -> None:
        self.store = DecisionStore(self.args.db_path)

    def on_stop(self, reason: str) -> None:
        self.store.close()

    @handler
    def record(self, msg: Record) -> Decision:
        decision = build_decision(msg, uuid.uuid4().hex, dt.datetime.now(dt.UTC))
        self.store.save(decision)
        return decision

    @handler
    def get(self, msg: GetDecision) -> Decision:
        found = self.store.get(msg.id)
        if found is None:
            raise DecisionNotFound(f"no decision {msg.id!r}", {"id": msg.id})
        return found
