"""KnowledgeStore (SQLite + FTS5) driven directly, and the KnowledgeBase actor's handlers."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callboard.errors import BusinessError
from callboard.pipeline import (
    Delete,
    GetItems,
    KnowledgeItem,
    Put,
    Query,
)
from callboard.pipeline._kbstore import (
    IMPORT_BATCH,
    MAX_QUERY_WORDS,
    InvalidFilter,
    KnowledgeStore,
    LineError,
    fts_query,
    query_words,
    sample_domain_path,
)
from callboard.pipeline.knowledge_base import (
    InvalidQuery,
    KnowledgeBase,
    KnowledgeBaseBusy,
    seed_path,
)

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    """Each call returns the next minute after T0."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> dt.datetime:
        self.n += 1
        return T0 + dt.timedelta(minutes=self.n)


def item(id: str, title: str = "a title", text: str = "some text", **kw: Any) -> KnowledgeItem:
    return KnowledgeItem(id=id, title=title, text=text, **kw)


@pytest.fixture
def store() -> Iterator[KnowledgeStore]:
    s = KnowledgeStore(":memory:", clock=Clock())
    yield s
    s.close()


@pytest.fixture(scope="module")
def sample() -> Iterator[KnowledgeStore]:
    s = KnowledgeStore(":memory:")
    created, updated, errors = s.import_jsonl(sample_domain_path())
    assert (updated, errors) == (0, [])
    assert created == s.count()
    yield s
    s.close()


def ids(found: list[Any]) -> list[str]:
    return [s.item.id for s in found]


# --- put / get / delete ------------------------------------------------------------------


def test_put_creates_then_updates_keeping_created_at(store: KnowledgeStore) -> None:
    assert store.put([item("a"), item("b")]) == (2, 0)
    first = {i.id: i for i in store.get(["a", "b"])}
    assert first["a"].created_at == first["a"].updated_at == T0 + dt.timedelta(minutes=1)

    # Timestamps given by the caller are ignored: the store sets them.
    late = T0 + dt.timedelta(days=9)
    assert store.put([item("a", title="new title", created_at=late, updated_at=late)]) == (0, 1)
    (a,) = store.get(["a"])
    assert a.title == "new title"
    assert a.created_at == first["a"].created_at
    assert a.updated_at == T0 + dt.timedelta(minutes=3)
    assert store.count() == 2


def test_put_round_trips_every_field(store: KnowledgeStore) -> None:
    original = item(
        "x",
        kind="rule",
        title="Retry with backoff",
        text="Wait longer each time. Ünïcode is fine.",
        tags=["retries", "backoff"],
        source="handbook",
        refs=["y", "z"],
    )
    store.put([original])
    (got,) = store.get(["x"])
    assert got.model_dump(exclude={"created_at", "updated_at"}) == original.model_dump(
        exclude={"created_at", "updated_at"}
    )
    assert got.created_at is not None and got.created_at.tzinfo is not None


def test_same_id_twice_in_one_put(store: KnowledgeStore) -> None:
    assert store.put([item("a", title="one"), item("a", title="two")]) == (1, 1)
    assert [i.title for i in store.get(["a"])] == ["two"]


def test_get_returns_found_items_in_the_order_asked(store: KnowledgeStore) -> None:
    store.put([item(i) for i in "abcde"])
    assert [i.id for i in store.get(["d", "missing", "a", "c", "a"])] == ["d", "a", "c"]
    assert store.get([]) == []


def test_get_many_ids_beyond_the_parameter_limit(store: KnowledgeStore) -> None:
    wanted = [f"id-{n}" for n in range(1200)]
    store.put([item(i) for i in wanted])
    assert [i.id for i in store.get(reversed(wanted))] == wanted[::-1]
    assert store.delete(wanted) == 1200


def test_delete_counts_existing_and_removes_from_index(store: KnowledgeStore) -> None:
    store.put([item("a", title="circuit breaker"), item("b", title="circuit breaker too")])
    assert store.delete(["a", "a", "nope"]) == 1
    assert store.count() == 1
    assert ids(store.query("breaker")) == ["b"]
    assert store.delete([]) == 0


def test_update_reindexes(store: KnowledgeStore) -> None:
    store.put([item("a", title="caching")])
    store.put([item("a", title="queues")])
    assert store.query("caching") == []
    assert ids(store.query("queues")) == ["a"]


# --- query -------------------------------------------------------------------------------


def test_title_match_ranks_above_text_only_match(store: KnowledgeStore) -> None:
    store.put(
        [
            item("text-only", title="Operating notes", text="Sometimes a jitter is added."),
            item("in-title", title="Jitter", text="Spread retries out over time."),
        ]
    )
    found = store.query("jitter")
    assert ids(found) == ["in-title", "text-only"]
    assert found[0].score > found[1].score > 0


def test_more_matching_words_rank_higher(store: KnowledgeStore) -> None:
    store.put(
        [
            item("both", text="timeouts and deadlines"),
            item("one", text="timeouts only"),
            item("none", text="caches"),
        ]
    )
    assert ids(store.query("deadlines timeouts")) == ["both", "one"]


def test_query_matches_word_forms(store: KnowledgeStore) -> None:
    store.put([item("r", title="Retries", text="Retrying a call.")])
    assert ids(store.query("retry")) == ["r"]
    assert ids(store.query("RETRIED")) == ["r"]


def test_k_limits_results(store: KnowledgeStore) -> None:
    store.put([item(f"i{n}", text="backlog") for n in range(10)])
    assert len(store.query("backlog", k=3)) == 3
    assert len(store.query("backlog", k=50)) == 10
    with pytest.raises(ValueError):
        store.query("backlog", k=0)


def test_no_match_and_no_words_return_empty(store: KnowledgeStore) -> None:
    store.put([item("a", text="caching")])
    assert store.query("kubernetes") == []
    assert store.query("") == []
    assert store.query("   ?!*() ") == []
    assert store.query("how do I") == []  # stop words only


def test_filters(store: KnowledgeStore) -> None:
    store.put(
        [
            item("f1", kind="fact", text="pool", tags=["database"], source="a"),
            item("r1", kind="rule", text="pool", tags=["database", "capacity"], source="b"),
            item("d1", kind="document", text="pool", tags=["runbook"], source="a"),
        ]
    )

    def q(**filters: Any) -> set[str]:
        return set(ids(store.query("pool", k=10, filters=filters)))

    assert q() == {"f1", "r1", "d1"}
    assert q(kind="rule") == {"r1"}
    assert q(kind=["fact", "document"]) == {"f1", "d1"}
    assert q(tags=["capacity", "runbook"]) == {"r1", "d1"}
    assert q(tags="database") == {"f1", "r1"}
    assert q(source="a") == {"f1", "d1"}
    assert q(kind="fact", source="b") == set()
    assert q(kind=[]) == set()
    assert q(tags=[]) == set()
    assert q(kind=None) == {"f1", "r1", "d1"}  # None: no filter


@pytest.mark.parametrize(
    "filters",
    [{"colour": "red"}, {"kind": 3}, {"tags": [1, 2]}, {"source": ["a"]}, {"kind": {"a": 1}}],
)
def test_bad_filters_raise(store: KnowledgeStore, filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidFilter):
        store.query("x", filters=filters)


def test_query_words_strip_fts_syntax() -> None:
    # "and", "or" and "a" are stop words
    expected = ["x", "y", "near", "b", "col", "z", "w"]
    assert query_words('"AND" OR (x*) -y NEAR(a b) col:z ^w') == expected
    assert fts_query("Retry, retry RETRY failing_call") == '"retry" OR "failing" OR "call"'
    assert fts_query("") == ""
    assert len(query_words(" ".join(f"w{n}" for n in range(100)))) == MAX_QUERY_WORDS


HOSTILE = [
    *"\"*-()^+{}:;'\\_ \x00\u0301é🙂",
    *['""', "AND", "OR", "NOT", "NEAR", "--", "title:", "NEAR(", "x", "retry"],
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200) | st.lists(st.sampled_from(HOSTILE), max_size=20).map("".join))
def test_any_text_is_a_safe_query(sample: KnowledgeStore, text: str) -> None:
    found = sample.query(text, k=5)
    assert isinstance(found, list)
    assert all(s.score > 0 for s in found)
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)


@pytest.mark.parametrize(
    "text", ['"AND OR ( * -', "NOT", "a AND", 'retry" OR "*', "x NEAR/3 y", "((((", "col:"]
)
def test_hostile_queries_never_raise(sample: KnowledgeStore, text: str) -> None:
    assert isinstance(sample.query(text), list)


# --- import ------------------------------------------------------------------------------


def _jsonl(path: Path, lines: list[Any]) -> Path:
    def raw(line: Any) -> bytes:
        if isinstance(line, bytes):
            return line
        return (line if isinstance(line, str) else json.dumps(line)).encode()

    path.write_bytes(b"".join(raw(line) + b"\n" for line in lines))
    return path


def test_import_reports_bad_lines_and_imports_the_rest(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    path = _jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "title": "A", "text": "alpha"},
            "{not json",
            "",
            {"id": "b", "title": "B"},  # no text
            [1, 2],
            b"\xff\xfe",
            {"id": "c", "title": "C", "text": "gamma", "kind": "opinion"},
            {"id": "a", "title": "A2", "text": "alpha again"},
        ],
    )
    seen: list[int] = []
    created, updated, errors = store.import_jsonl(path, seen.append)
    assert (created, updated) == (1, 1)
    assert [e.line for e in errors] == [2, 4, 5, 6, 7]
    assert all(isinstance(e, LineError) for e in errors)
    assert "invalid JSON" in errors[0].error
    assert "text" in errors[1].error and "Field required" in errors[1].error
    assert "JSON object" in errors[2].error
    assert "UTF-8" in errors[3].error
    assert "kind" in errors[4].error
    assert seen == [8]
    assert [i.title for i in store.get(["a"])] == ["A2"]


def test_import_progress_per_batch(store: KnowledgeStore, tmp_path: Path) -> None:
    n = IMPORT_BATCH * 2 + 7
    path = _jsonl(
        tmp_path / "big.jsonl", [{"id": f"i{k}", "title": "t", "text": "x"} for k in range(n)]
    )
    seen: list[int] = []
    assert store.import_jsonl(path, seen.append) == (n, 0, [])
    assert seen == [IMPORT_BATCH, IMPORT_BATCH * 2, n]
    seen.clear()
    exact = _jsonl(
        tmp_path / "exact.jsonl",
        [{"id": f"e{k}", "title": "t", "text": "x"} for k in range(IMPORT_BATCH)],
    )
    store.import_jsonl(exact, seen.append)
    assert seen == [IMPORT_BATCH]  # no duplicate final report
    seen.clear()
    store.import_jsonl(_jsonl(tmp_path / "empty.jsonl", []), seen.append)
    assert seen == [0]


def test_import_missing_file_raises(store: KnowledgeStore, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        store.import_jsonl(tmp_path / "nope.jsonl")


# --- files -------------------------------------------------------------------------------


def test_file_db_uses_wal_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kb.sqlite"  # parent directory created
    with KnowledgeStore(path) as s:
        assert s.journal_mode() == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        s.put([item("a", title="persisted")])
    with KnowledgeStore(path) as s:
        assert ids(s.query("persisted")) == ["a"]


def test_memory_db_is_not_wal() -> None:
    with KnowledgeStore(":memory:") as s:
        assert s.journal_mode() == "memory"


def test_reader_not_blocked_by_open_write(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite"
    writer = KnowledgeStore(path)
    writer.put([item("a", title="visible")])
    writer.conn.execute("BEGIN IMMEDIATE")
    writer.conn.execute("UPDATE items SET title = 'hidden' WHERE id = 'a'")
    reader = KnowledgeStore(path, busy_timeout=0.1)
    try:
        assert [i.title for i in reader.get(["a"])] == ["visible"]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            reader.put([item("b")])
    finally:
        writer.conn.execute("ROLLBACK")
        reader.close()
        writer.close()


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        KnowledgeStore(path)


def test_closed_store_raises() -> None:
    s = KnowledgeStore(":memory:")
    s.close()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.count()


# --- the sample domain -------------------------------------------------------------------


def test_sample_domain_is_well_formed(sample: KnowledgeStore) -> None:
    all_ids = set(sample.ids())
    assert 40 <= len(all_ids) <= 60
    items = sample.get(sorted(all_ids))
    assert {i.kind for i in items} == {"fact", "rule", "document"}
    assert all(i.tags and i.source for i in items)
    dangling = {(i.id, r) for i in items for r in i.refs if r not in all_ids}
    assert dangling == set()
    assert any(i.kind == "rule" and i.refs for i in items)


@pytest.mark.parametrize(
    ("question", "tag"),
    [
        ("how should I retry a failing call", "retries"),
        ("database connections exhausted", "connection-pool"),
        ("the queue backlog keeps growing", "queues"),
        ("cache entry expired and the backend was overloaded", "caching"),
        ("what timeout should I set on remote calls", "timeouts"),
        ("which alerts should page the on-call engineer", "alerting"),
        ("a deploy broke production", "rollback"),
    ],
)
def test_sample_answers_questions(sample: KnowledgeStore, question: str, tag: str) -> None:
    found = sample.query(question, k=3)
    assert len(found) == 3
    assert all(tag in s.item.tags for s in found), [(s.item.id, s.item.tags) for s in found]


def test_retry_question_ranks_backoff_rule_first(sample: KnowledgeStore) -> None:
    found = sample.query("how should I retry a failing call", k=5)
    assert found[0].item.id == "rule-retry-backoff-jitter"
    assert "backoff" in found[0].item.tags


# --- the actor's handlers (called directly, no runtime) -----------------------------------


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def log(event: str, **kw: Any) -> None:
            self.events.append((level, event, kw))

        return log


def make_actor(**args: Any) -> tuple[KnowledgeBase, _Log]:
    actor = KnowledgeBase()
    actor.id = "knowledge_base"
    log = _Log()
    actor.log = log
    assert KnowledgeBase.Args is not None
    actor.args = KnowledgeBase.Args.model_validate(args)
    actor.on_start()
    return actor, log


def test_actor_seeds_the_sample_into_memory() -> None:
    actor, log = make_actor()
    try:
        result = actor.query(Query(text="how should I retry a failing call", k=3))
        assert result.items[0].item.id == "rule-retry-backoff-jitter"
        assert ("info", "kb_seeded") in [(lvl, ev) for lvl, ev, _ in log.events]
        (q,) = [kw for _, ev, kw in log.events if ev == "kb_query"]
        assert q["hits"] == 3 and q["k"] == 3 and "ms" in q and q["text"].startswith("how")
        assert actor.query(Query(text="zzzz")).items == []
    finally:
        actor.on_stop("shutdown")


def test_actor_put_get_delete_without_seed() -> None:
    actor, _ = make_actor(seed="")
    try:
        assert actor.query(Query(text="anything")).items == []
        res = actor.put(Put(items=[item("a", title="alpha"), item("b", title="beta")]))
        assert (res.created, res.updated) == (2, 0)
        assert [i.id for i in actor.get_items(GetItems(ids=["b", "x", "a"])).items] == ["b", "a"]
        assert actor.delete(Delete(ids=["a", "x"])).count == 1
    finally:
        actor.on_stop("shutdown")


def test_actor_bad_filter_is_a_business_error() -> None:
    actor, _ = make_actor(seed="")
    try:
        with pytest.raises(InvalidQuery) as err:
            actor.query(Query(text="x", filters={"colour": "red"}))
        assert isinstance(err.value, BusinessError)
        assert err.value.code == "invalid_query"
    finally:
        actor.on_stop("shutdown")


def test_actor_file_db_keeps_data_and_is_not_reseeded(tmp_path: Path) -> None:
    path = str(tmp_path / "kb.sqlite")
    actor, _ = make_actor(db_path=path)
    seeded = actor.store.count() if actor.store else 0
    actor.delete(Delete(ids=["rule-retry-backoff-jitter"]))
    actor.on_stop("shutdown")
    again, log = make_actor(db_path=path)  # a restart: not empty, so no reseeding
    try:
        assert again.store is not None and again.store.count() == seeded - 1
        assert "kb_seeded" not in [ev for _, ev, _ in log.events]
    finally:
        again.on_stop("shutdown")


def test_actor_seed_from_a_file_reports_bad_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "seed.jsonl", [{"id": "a", "title": "A", "text": "t"}, "oops"])
    actor, log = make_actor(seed=str(path))
    try:
        assert actor.store is not None and actor.store.count() == 1
        (warn,) = [kw for lvl, ev, kw in log.events if ev == "kb_seeded" and lvl == "warning"]
        assert warn["errors"] == 1 and warn["first_errors"][0].startswith("line 2:")
    finally:
        actor.on_stop("shutdown")


def test_actor_missing_seed_file_is_a_failed_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        make_actor(seed=str(tmp_path / "missing.jsonl"))


def test_actor_locked_db_is_a_business_error(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite"
    actor, _ = make_actor(db_path=str(path), seed="", busy_timeout=0.05)
    holder = KnowledgeStore(path)
    holder.conn.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(KnowledgeBaseBusy) as err:
            actor.put(Put(items=[item("a")]))
        assert err.value.code == "knowledge_base_busy"
        assert actor.query(Query(text="a")).items == []  # reads still work (WAL)
    finally:
        holder.conn.execute("ROLLBACK")
        holder.close()
        actor.on_stop("shutdown")


def test_seed_path() -> None:
    assert seed_path("") is None
    assert seed_path("sample") == sample_domain_path()
    assert seed_path("/x/y.jsonl") == Path("/x/y.jsonl")


def test_args_reject_unknown_keys() -> None:
    assert KnowledgeBase.Args is not None
    with pytest.raises(ValueError):
        KnowledgeBase.Args.model_validate({"dbpath": "x"})
