"""The knowledge base's store: SQLite with an FTS5 index, BM25 ranking (plain Python).

The :class:`~callboard.pipeline.knowledge_base.KnowledgeBase` actor is a thin shell
around :class:`KnowledgeStore`; the ``callboard kb`` command opens the same file
directly. Everything here is synchronous and single-connection.

Layout: table ``items`` (one row per :class:`KnowledgeItem`, ``tags``/``refs`` as JSON)
and ``items_fts``, an external-content FTS5 table over ``title``, ``text`` and ``tags``
kept in sync by triggers, so the index changes in the same transaction as the rows.

Queries are never FTS5 syntax: :func:`fts_query` turns free text into quoted words
joined by ``OR``, so any input is safe to pass.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from pydantic import ValidationError

from callboard.pipeline._messages import KnowledgeItem, ScoredItem

__all__ = [
    "FILTER_KEYS",
    "FTS5Unavailable",
    "InvalidFilter",
    "KnowledgeStore",
    "LineError",
    "fts5_available",
    "fts_query",
    "query_words",
    "sample_domain_path",
]

SCHEMA_VERSION = 1
FILTER_KEYS = ("kind", "tags", "source")
"""The filters :meth:`KnowledgeStore.query` understands."""

TITLE_WEIGHT, TEXT_WEIGHT, TAGS_WEIGHT = 5.0, 1.0, 2.0
"""BM25 column weights: a match in the title counts five times one in the text."""

MAX_QUERY_WORDS = 32
"""Words beyond this many (after dropping stop words and duplicates) are ignored."""

IMPORT_BATCH = 500
"""Lines per transaction (and per progress callback) in :meth:`KnowledgeStore.import_jsonl`."""

_SQL_CHUNK = 500  # stays far below SQLite's limit on bound parameters

# Words too common to tell items apart: dropped from queries (a query of only these
# matches nothing rather than everything).
STOP_WORDS = frozenset(
    """a about an and are as at be by can could do does for from how i if in into is it
    its me my of on or our should so that the their then there these this to we what when
    where which who why will with would you your""".split()
)

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS items (
    seq         INTEGER PRIMARY KEY,  -- stable rowid for the FTS index (survives VACUUM)
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    text        TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    source      TEXT NOT NULL DEFAULT '',
    refs        TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_kind ON items(kind);
CREATE INDEX IF NOT EXISTS items_source ON items(source);
CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(
    title, text, tags,
    content='items', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS items_ai AFTER INSERT ON items BEGIN
    INSERT INTO items_fts(rowid, title, text, tags)
        VALUES (new.seq, new.title, new.text, new.tags);
END;
CREATE TRIGGER IF NOT EXISTS items_ad AFTER DELETE ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, text, tags)
        VALUES ('delete', old.seq, old.title, old.text, old.tags);
END;
CREATE TRIGGER IF NOT EXISTS items_au AFTER UPDATE ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, text, tags)
        VALUES ('delete', old.seq, old.title, old.text, old.tags);
    INSERT INTO items_fts(rowid, title, text, tags)
        VALUES (new.seq, new.title, new.text, new.tags);
END;
PRAGMA user_version = {SCHEMA_VERSION};
"""

_COLUMNS = "id, kind, title, text, tags, source, refs, created_at, updated_at"


class FTS5Unavailable(RuntimeError):
    """This Python's ``sqlite3`` was built without the FTS5 extension."""


class InvalidFilter(ValueError):
    """A query filter the store does not understand, or of the wrong type."""


class LineError(NamedTuple):
    """An input line :meth:`KnowledgeStore.import_jsonl` could not import (1-based)."""

    line: int
    error: str


def sample_domain_path() -> Path:
    """The shipped sample domain: operating services reliably (JSON Lines)."""
    ref = resources.files("callboard.pipeline").joinpath("data", "sample_domain.jsonl")
    return Path(str(ref))


@cache
def fts5_available() -> bool:
    """Whether this Python's SQLite has FTS5."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(a)")
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
    return True


def query_words(text: str) -> list[str]:
    """The words of ``text`` a query searches for: lower-cased runs of letters and
    digits, :data:`STOP_WORDS` and duplicates dropped, at most :data:`MAX_QUERY_WORDS`.
    Everything else (quotes, ``*``, ``-``, ``:``, parentheses...) separates words, so no
    FTS5 syntax survives."""
    words = dict.fromkeys(w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS)
    return list(words)[:MAX_QUERY_WORDS]


def fts_query(text: str) -> str:
    """A safe FTS5 MATCH expression for free text: each word quoted, joined by ``OR``
    (``""`` when the text has no words but stop words). ``AND``, ``NEAR`` and the like become plain
    words; a quoted word cannot contain ``"`` so it cannot escape its quotes."""
    return " OR ".join(f'"{word}"' for word in query_words(text))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _SQL_CHUNK):
        yield values[start : start + _SQL_CHUNK]


def _str_list(name: str, value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise InvalidFilter(f"filter {name!r} must be a string or a list of strings")
    return list(values)


def _where(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise InvalidFilter(
            f"unknown filter {', '.join(map(repr, unknown))} (known: {', '.join(FILTER_KEYS)})"
        )
    clauses: list[str] = []
    params: list[Any] = []
    if filters.get("kind") is not None:
        kinds = _str_list("kind", filters["kind"])
        clauses.append(f"items.kind IN ({', '.join('?' * len(kinds))})" if kinds else "0")
        params += kinds
    if filters.get("tags") is not None:
        tags = _str_list("tags", filters["tags"])
        marks = ", ".join("?" * len(tags))
        clauses.append(
            f"EXISTS (SELECT 1 FROM json_each(items.tags) WHERE json_each.value IN ({marks}))"
            if tags
            else "0"
        )
        params += tags
    if filters.get("source") is not None:
        source = filters["source"]
        if not isinstance(source, str):
            raise InvalidFilter("filter 'source' must be a string")
        clauses.append("items.source = ?")
        params.append(source)
    return "".join(f" AND {c}" for c in clauses), params


def _item(row: sqlite3.Row | tuple[Any, ...]) -> KnowledgeItem:
    id_, kind, title, text, tags, source, refs, created, updated = row
    return KnowledgeItem(
        id=id_,
        kind=kind,
        title=title,
        text=text,
        tags=json.loads(tags),
        source=source,
        refs=json.loads(refs),
        created_at=dt.datetime.fromisoformat(created),
        updated_at=dt.datetime.fromisoformat(updated),
    )


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


class KnowledgeStore:
    """Knowledge items in SQLite (``":memory:"`` or a file), searchable with FTS5/BM25.

    A file database uses WAL journaling (readers never block the writer, so the CLI can
    query a file a running daemon writes to) and ``synchronous=NORMAL``. Its parent
    directory is created if missing. ``busy_timeout`` is how long a write waits for
    another connection's write lock before ``sqlite3.OperationalError("database is
    locked")``. ``clock`` (default: now, UTC) stamps ``created_at``/``updated_at``.

    Raises :class:`FTS5Unavailable` when SQLite lacks FTS5, ``sqlite3.DatabaseError``
    when the file is not a database, and ``RuntimeError`` when it was written by a newer
    schema version.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        if not fts5_available():
            raise FTS5Unavailable(
                f"this Python's sqlite3 (SQLite {sqlite3.sqlite_version}) was built without "
                "the FTS5 extension, which the knowledge base needs: use a Python whose "
                "SQLite has FTS5 (python.org and most distribution builds do)"
            )
        self.path = str(path) or ":memory:"
        self._clock = clock
        self.in_memory = self.path == ":memory:"
        if not self.in_memory:
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(self.path).expanduser())
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None
        )
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        conn = self.conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: knowledge base schema version {version} is newer than this "
                f"callboard's ({SCHEMA_VERSION})"
            )
        if not self.in_memory:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        if version < SCHEMA_VERSION:  # new (or empty) database: no write lock otherwise
            with self._transaction():
                for statement in _split_sql(_SCHEMA):
                    conn.execute(statement)

    # -- connection -----------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the knowledge store is closed")
        return self._conn

    def journal_mode(self) -> str:
        """SQLite's journal mode (``wal`` for a file, ``memory`` for ``:memory:``)."""
        return str(self.conn.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> KnowledgeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    # -- writing --------------------------------------------------------------------------

    def put(self, items: Iterable[KnowledgeItem]) -> tuple[int, int]:
        """Insert or replace items by id, in one transaction; return ``(created, updated)``.

        ``created_at``/``updated_at`` are set here (the items' own are ignored): a new
        item gets both set to now, a replaced one keeps its ``created_at``. An id given
        twice counts once as created and then as updated."""
        created = updated = 0
        with self._transaction():
            for item in items:
                now = self._clock().isoformat()
                row = (
                    item.kind,
                    item.title,
                    item.text,
                    json.dumps(item.tags, ensure_ascii=False),
                    item.source,
                    json.dumps(item.refs, ensure_ascii=False),
                )
                cur = self.conn.execute(
                    "UPDATE items SET kind=?, title=?, text=?, tags=?, source=?, refs=?, "
                    "updated_at=? WHERE id=?",
                    (*row, now, item.id),
                )
                if cur.rowcount:
                    updated += 1
                else:
                    self.conn.execute(
                        f"INSERT INTO items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (item.id, *row, now, now),
                    )
                    created += 1
        return created, updated

    def delete(self, ids: Iterable[str]) -> int:
        """Delete items by id; return how many existed."""
        unique = list(dict.fromkeys(ids))
        count = 0
        with self._transaction():
            for chunk in _chunks(unique):
                marks = ", ".join("?" * len(chunk))
                cur = self.conn.execute(f"DELETE FROM items WHERE id IN ({marks})", tuple(chunk))
                count += cur.rowcount
        return count

    def import_jsonl(
        self, path: str | Path, on_progress: Callable[[int], None] | None = None
    ) -> tuple[int, int, list[LineError]]:
        """Import a JSON Lines file (one :class:`KnowledgeItem` object per line).

        Returns ``(created, updated, errors)``; each error names its 1-based line. Blank
        lines are skipped; a line that is not UTF-8, not JSON or not a valid item is an
        error and the others are still imported (in transactions of
        :data:`IMPORT_BATCH` lines). ``on_progress(lines_read)`` is called after each
        batch and once at the end. ``OSError`` if the file cannot be read."""
        created = updated = 0
        errors: list[LineError] = []
        batch: list[KnowledgeItem] = []
        lines_read = 0
        reported = -1

        def flush() -> None:
            nonlocal created, updated, reported
            if batch:
                c, u = self.put(batch)
                created, updated = created + c, updated + u
                batch.clear()
            if on_progress is not None:
                on_progress(lines_read)
            reported = lines_read

        with open(path, "rb") as fh:
            for lines_read, raw in enumerate(fh, start=1):
                error = self._parse_line(raw, batch)
                if error is not None:
                    errors.append(LineError(lines_read, error))
                if lines_read % IMPORT_BATCH == 0:
                    flush()
        if reported != lines_read:
            flush()
        return created, updated, errors

    @staticmethod
    def _parse_line(raw: bytes, batch: list[KnowledgeItem]) -> str | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not UTF-8: {exc.reason} at byte {exc.start}"
        line = line.strip().lstrip("\ufeff")
        if not line:
            return None
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"invalid JSON: {exc.msg} (column {exc.colno})"
        if not isinstance(data, dict):
            return f"expected a JSON object, got {type(data).__name__}"
        try:
            batch.append(KnowledgeItem.model_validate(data))
        except ValidationError as exc:
            return f"invalid item: {_validation_message(exc)}"
        return None

    # -- reading --------------------------------------------------------------------------

    def count(self) -> int:
        """How many items are stored."""
        return int(self.conn.execute("SELECT count(*) FROM items").fetchone()[0])

    def get(self, ids: Iterable[str]) -> list[KnowledgeItem]:
        """The items with these ids that exist, in the order asked (each once)."""
        unique = list(dict.fromkeys(ids))
        found: dict[str, KnowledgeItem] = {}
        for chunk in _chunks(unique):
            marks = ", ".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE id IN ({marks})", tuple(chunk)
            ):
                item = _item(row)
                found[item.id] = item
        return [found[i] for i in unique if i in found]

    def query(
        self, text: str, k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> list[ScoredItem]:
        """The ``k`` items most relevant to free ``text``, best first.

        ``text`` is reduced to its words (:func:`fts_query`); any item matching any word
        qualifies, ranked by BM25 with the title weighted above the text. ``score`` is
        ``-bm25()``: positive, higher is more relevant. ``filters``: ``kind`` (str or
        list), ``tags`` (str or list: items with any of them), ``source`` (str); others
        raise :class:`InvalidFilter`. No words, or no match: ``[]``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, not {k}")
        where, params = _where(filters or {})
        match = fts_query(text)
        if not match:
            return []
        columns = ", ".join(f"items.{c.strip()}" for c in _COLUMNS.split(","))
        sql = (
            f"SELECT {columns}, bm25(items_fts, ?, ?, ?) AS rank "
            "FROM items_fts JOIN items ON items.seq = items_fts.rowid "
            f"WHERE items_fts MATCH ?{where} ORDER BY rank, items.id LIMIT ?"
        )
        rows = self.conn.execute(
            sql, (TITLE_WEIGHT, TEXT_WEIGHT, TAGS_WEIGHT, match, *params, k)
        ).fetchall()
        return [ScoredItem(item=_item(row[:-1]), score=-float(row[-1])) for row in rows]

    def ids(self) -> list[str]:
        """Every item id, sorted."""
        return [row[0] for row in self.conn.execute("SELECT id FROM items ORDER BY id")]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error), on an autocommit
    connection: the write lock is taken up front, so a busy database fails at ``BEGIN``
    (after ``busy_timeout``) rather than half-way through."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")


def _split_sql(script: str) -> list[str]:
    """The statements of :data:`_SCHEMA` (triggers hold ``;`` inside ``BEGIN ... END``)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not line.strip() or line.strip().startswith("--"):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    return statements
