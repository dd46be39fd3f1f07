"""KnowledgeBase: the pipeline's domain knowledge, an actor around :class:`KnowledgeStore`.

Handles :class:`Put`, :class:`Delete`, :class:`GetItems` and :class:`Query` (spec §3.1)
with plain store calls. See ``docs/knowledge-base.md``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from callboard.actors import Actor, handler
from callboard.errors import BusinessError
from callboard.pipeline._kbstore import InvalidFilter, KnowledgeStore, sample_domain_path
from callboard.pipeline._messages import (
    Delete,
    Deleted,
    GetItems,
    Items,
    Put,
    PutResult,
    Query,
    QueryResult,
)

__all__ = ["InvalidQuery", "KnowledgeBase", "KnowledgeBaseBusy", "seed_path"]

T = TypeVar("T")


class InvalidQuery(BusinessError):
    """A query's filters are unknown or of the wrong type (code ``invalid_query``)."""


class KnowledgeBaseBusy(BusinessError):
    """The database file stayed locked by another writer (e.g. a ``callboard kb import``)
    for longer than ``busy_timeout`` (code ``knowledge_base_busy``). Retry later."""


def seed_path(seed: str) -> Path | None:
    """What ``Args.seed`` loads: ``"sample"`` the shipped sample domain, ``""`` nothing,
    anything else a JSON Lines file."""
    if seed == "":
        return None
    if seed == "sample":
        return sample_domain_path()
    return Path(seed).expanduser()


class KnowledgeBase(Actor):
    """Stores :class:`~callboard.pipeline.KnowledgeItem` s and answers full-text queries."""

    class Args(BaseModel):
        model_config = ConfigDict(extra="forbid")

        db_path: str = ":memory:"
        """``":memory:"`` (gone when the actor stops) or a SQLite file (WAL), created if
        missing; a relative path is relative to the actor process's working directory."""
        seed: str = "sample"
        """Loaded on start when the store is empty: ``"sample"`` the shipped sample
        domain, ``""`` nothing, else the path of a ``.jsonl`` file."""
        busy_timeout: float = Field(5.0, ge=0)
        """Seconds a write waits for another connection's lock before
        ``knowledge_base_busy``."""

    store: KnowledgeStore | None = None

    def on_start(self) -> None:
        args: KnowledgeBase.Args = self.args
        self.store = KnowledgeStore(args.db_path, busy_timeout=args.busy_timeout)
        path = seed_path(args.seed)
        count = self.store.count()
        if path is None or count:
            self.log.info("kb_opened", db_path=args.db_path, items=count)
            return
        started = time.perf_counter()
        created, updated, errors = self.store.import_jsonl(path)
        log = self.log.warning if errors else self.log.info
        log(
            "kb_seeded",
            db_path=args.db_path,
            seed=str(path),
            created=created,
            updated=updated,
            errors=len(errors),
            first_errors=[f"line {e.line}: {e.error}" for e in errors[:5]],
            ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def on_stop(self, reason: str) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _call(self, fn: Callable[[KnowledgeStore], T]) -> T:
        if self.store is None:  # pragma: no cover - on_start always sets it
            raise RuntimeError("the knowledge base is not open")
        try:
            return fn(self.store)
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise KnowledgeBaseBusy(text, {"db_path": self.args.db_path}) from exc
            raise

    @handler
    def put(self, msg: Put) -> PutResult:
        created, updated = self._call(lambda store: store.put(msg.items))
        self.log.debug("kb_put", created=created, updated=updated)
        return PutResult(created=created, updated=updated)

    @handler
    def delete(self, msg: Delete) -> Deleted:
        return Deleted(count=self._call(lambda store: store.delete(msg.ids)))

    @handler
    def get_items(self, msg: GetItems) -> Items:
        return Items(items=self._call(lambda store: store.get(msg.ids)))

    @handler
    def query(self, msg: Query) -> QueryResult:
        started = time.perf_counter()
        try:
            found = self._call(lambda store: store.query(msg.text, msg.k, msg.filters))
        except InvalidFilter as exc:
            raise InvalidQuery(str(exc), {"filters": sorted(msg.filters)}) from exc
        self.log.debug(
            "kb_query",
            text=msg.text[:200],
            k=msg.k,
            filters=msg.filters,
            hits=len(found),
            ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return QueryResult(items=found)
