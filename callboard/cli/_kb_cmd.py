"""``callboard kb import|query``: load and search a knowledge base file directly.

No running system is needed: the command opens the SQLite file itself (WAL lets a running
daemon's KnowledgeBase use it at the same time). The file is ``--db``, else the
``knowledge_base`` child's ``args.db_path`` in ``--config`` (default: the embedded
config). Exit codes: 0 ok, 1 failure (bad lines in an import, unreadable file, database
error), 2 usage error (no database path, bad filters).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from callboard.cli import _render
from callboard.config import load_config

if TYPE_CHECKING:
    from callboard.cli import Subparsers
    from callboard.pipeline._kbstore import KnowledgeStore

__all__ = ["ProgressBar", "register", "resolve_db_path"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
KB_CHILD = "knowledge_base"


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "kb", help="import into or query a knowledge base file (no running system needed)"
    )
    commands = parser.add_subparsers(dest="kb_command", metavar="KB_COMMAND", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--db", help="SQLite file (default: the knowledge_base child's db_path in --config)"
        )
        sub.add_argument("--config", help="TOML config to find db_path in (default: embedded)")

    imp = commands.add_parser("import", help="import knowledge items from a JSON Lines file")
    imp.add_argument("file", metavar="FILE.jsonl", help="one knowledge item (JSON object) a line")
    common(imp)
    imp.set_defaults(func=run_import)

    query = commands.add_parser("query", help="full-text search, best matches first")
    query.add_argument("text", metavar="TEXT", help="free text (any characters are safe)")
    query.add_argument("--k", type=int, default=5, help="how many results (1-100, default 5)")
    query.add_argument(
        "--kind",
        action="append",
        choices=["fact", "rule", "document"],
        help="only this kind (repeatable)",
    )
    query.add_argument("--tag", action="append", help="only items with this tag (repeatable)")
    query.add_argument("--source", help="only items from this source")
    query.add_argument("--json", action="store_true", help="print a JSON list of scored items")
    common(query)
    query.set_defaults(func=run_query)


def resolve_db_path(args: argparse.Namespace) -> str | None:
    """``--db``, else the ``knowledge_base`` child's ``args.db_path`` in the config, else
    ``None``. ``":memory:"`` counts as no path (the CLI cannot reach a process's memory)."""
    if args.db:
        return str(args.db)
    config = load_config(args.config)
    for _, child in config.supervisor.walk():
        if child.id == KB_CHILD:
            path = child.args.get("db_path", ":memory:")
            if isinstance(path, str) and path not in ("", ":memory:"):
                return path
            return None
    return None


def _open(args: argparse.Namespace, *, must_exist: bool) -> KnowledgeStore | int:
    from callboard.pipeline._kbstore import FTS5Unavailable, KnowledgeStore

    path = resolve_db_path(args)
    prog = f"callboard kb {args.kb_command}"
    if path is None:
        print(f"{prog}: no knowledge base path: pass --db", file=sys.stderr)
        return EXIT_USAGE
    if must_exist and not Path(path).expanduser().exists():
        print(f"{prog}: no knowledge base at {path}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return KnowledgeStore(path)
    except (sqlite3.Error, FTS5Unavailable, RuntimeError, OSError) as exc:
        print(f"{prog}: cannot open {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED


class ProgressBar:
    """``\\r[#####     ] 1200/2400`` redrawn on ``stream`` while it is a TTY; nothing
    otherwise. :meth:`done` ends the line."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.drawn = False

    def __call__(self, n: int) -> None:
        if not self.tty:
            return
        filled = min(self.width, self.width * n // self.total)
        bar = "#" * filled + " " * (self.width - filled)
        self.stream.write(f"\r[{bar}] {n}/{self.total}")
        self.stream.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _count_lines(path: str) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def run_import(args: argparse.Namespace) -> int:
    prog = "callboard kb import"
    try:
        total = _count_lines(args.file)
    except OSError as exc:
        print(f"{prog}: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    opened = _open(args, must_exist=False)
    if isinstance(opened, int):
        return opened
    store = opened
    bar = ProgressBar(total, sys.stderr)
    started = time.perf_counter()
    try:
        created, updated, errors = store.import_jsonl(args.file, bar)
        items = store.count()
    except (sqlite3.Error, OSError) as exc:
        bar.done()
        print(f"{prog}: {store.path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    bar.done()
    took = time.perf_counter() - started
    print(
        f"read {total} lines from {args.file} into {store.path} in {took:.2f} s "
        f"({items} items stored)",
        file=sys.stderr,
    )
    print(f"created {created}, updated {updated}, errors {len(errors)}")
    for err in errors:
        print(f"{args.file}:{err.line}: {err.error}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def run_query(args: argparse.Namespace) -> int:
    from callboard.pipeline._kbstore import InvalidFilter

    prog = "callboard kb query"
    if not 1 <= args.k <= 100:
        print(f"{prog}: --k must be between 1 and 100", file=sys.stderr)
        return EXIT_USAGE
    filters: dict[str, Any] = {}
    if args.kind:
        filters["kind"] = args.kind
    if args.tag:
        filters["tags"] = args.tag
    if args.source is not None:
        filters["source"] = args.source
    opened = _open(args, must_exist=True)
    if isinstance(opened, int):
        return opened
    try:
        found = opened.query(args.text, args.k, filters)
    except InvalidFilter as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:
        print(f"{prog}: {opened.path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        opened.close()
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
        return EXIT_OK
    if not found:
        print("no matches", file=sys.stderr)
        return EXIT_OK
    rows = [
        [str(rank), f"{s.score:.3f}", s.item.id, s.item.kind, s.item.title]
        for rank, s in enumerate(found, start=1)
    ]
    print(_render.table(["RANK", "SCORE", "ID", "KIND", "TITLE"], rows, right={0, 1}))
    return EXIT_OK
