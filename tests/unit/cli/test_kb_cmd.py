"""``callboard kb import|query``: output, exit codes, where the database is found."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from callboard.cli import main
from callboard.cli._kb_cmd import ProgressBar
from callboard.pipeline._kbstore import KnowledgeStore, sample_domain_path


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith("CALLBOARD_"):
            monkeypatch.delenv(var)
    yield


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "kb.sqlite"


@pytest.fixture
def loaded(db: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["kb", "import", str(sample_domain_path()), "--db", str(db)]) == 0
    capsys.readouterr()
    return db


def _config(tmp_path: Path, db_path: str | None) -> Path:
    args = "" if db_path is None else f'args = {{ db_path = "{db_path}" }}'
    path = tmp_path / "callboard.toml"
    path.write_text(
        f"""\
[[supervisor.children]]
id = "pipeline"
[supervisor.children.supervisor]
[[supervisor.children.supervisor.children]]
id = "knowledge_base"
actor = "callboard.pipeline.knowledge_base:KnowledgeBase"
{args}
""",
        encoding="utf-8",
    )
    return path


def test_import_sample(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(sample_domain_path())
    assert main(["kb", "import", sample, "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    with KnowledgeStore(db) as store:
        n = store.count()
    assert out == f"created {n}, updated 0, errors 0\n"
    assert "\r" not in err  # not a TTY: no bar, one summary line
    assert err.count("\n") == 1 and f"read {n} lines from {sample}" in err

    assert main(["kb", "import", sample, "--db", str(db)]) == 0  # again: all updates
    assert capsys.readouterr().out == f"created 0, updated {n}, errors 0\n"


def test_import_bad_lines_exit_1_and_are_listed(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "items.jsonl"
    src.write_text(
        '{"id": "a", "title": "A", "text": "alpha"}\n'
        "not json\n"
        '{"id": "b", "title": "B", "text": "beta", "kind": "guess"}\n',
        encoding="utf-8",
    )
    assert main(["kb", "import", str(src), "--db", str(db)]) == 1
    out, err = capsys.readouterr()
    assert out == "created 1, updated 0, errors 2\n"
    assert f"{src}:2: invalid JSON" in err
    assert f"{src}:3: invalid item: kind" in err


def test_import_missing_file(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "import", str(tmp_path / "nope.jsonl"), "--db", str(db)]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert not db.exists()


def test_import_progress_bar_on_a_tty(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    fake = TTY()
    monkeypatch.setattr("sys.stderr", fake)
    assert main(["kb", "import", str(sample_domain_path()), "--db", str(db)]) == 0
    lines = sum(1 for _ in sample_domain_path().open("rb"))
    text = fake.getvalue()
    assert f"\r[{'#' * 30}] {lines}/{lines}\n" in text
    assert text.rstrip("\n").splitlines()[-1].startswith("read ")


def test_progress_bar_partial() -> None:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = TTY()
    bar = ProgressBar(2400, out, width=10)
    bar(1200)
    bar.done()
    assert out.getvalue() == "\r[#####     ] 1200/2400\n"
    quiet = io.StringIO()
    ProgressBar(10, quiet)(5)
    assert quiet.getvalue() == ""


def test_query_table(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "query", "how should I retry a failing call", "--db", str(loaded)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RANK", "SCORE", "ID", "KIND", "TITLE"]
    assert len(lines) == 6  # header + the default k=5
    first = lines[1].split()
    assert first[0] == "1" and float(first[1]) > 0
    assert first[2:4] == ["rule-retry-backoff-jitter", "rule"]
    scores = [float(line.split()[1]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)


def test_query_json(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["kb", "query", "connection pool", "--k", "2", "--json", "--db", str(loaded)]
    assert main(argv) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 2
    assert set(found[0]) == {"item", "score"}
    assert {"id", "kind", "title", "text", "tags", "refs", "created_at"} <= set(found[0]["item"])
    assert found[0]["score"] >= found[1]["score"] > 0


def test_query_filters(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["kb", "query", "retry", "--kind", "fact", "--tag", "idempotency", "--json"]
    assert main([*argv, "--db", str(loaded)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found
    assert all(s["item"]["kind"] == "fact" for s in found)
    assert all("idempotency" in s["item"]["tags"] for s in found)


def test_query_no_match_is_not_an_error(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "query", "zzzz qqqq", "--db", str(loaded)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no matches" in err
    assert main(["kb", "query", '"AND OR ( * -', "--json", "--db", str(loaded)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_query_bad_k_is_a_usage_error(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "query", "x", "--k", "0", "--db", str(loaded)]) == 2
    assert "--k" in capsys.readouterr().err


def test_query_missing_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.sqlite"
    assert main(["kb", "query", "x", "--db", str(missing)]) == 1
    assert "no knowledge base at" in capsys.readouterr().err
    assert not missing.exists()  # a query never creates a database


def test_query_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"junk" * 1000)
    assert main(["kb", "query", "x", "--db", str(junk)]) == 1
    assert "cannot open" in capsys.readouterr().err


def test_db_path_from_config(
    loaded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, str(loaded))
    assert main(["kb", "query", "circuit breaker", "--config", str(config)]) == 0
    assert "circuit" in capsys.readouterr().out


@pytest.mark.parametrize("db_path", [None, ":memory:"])
def test_no_db_path_is_a_usage_error(
    tmp_path: Path, db_path: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, db_path)
    for sub in (["query", "x"], ["import", str(sample_domain_path())]):
        assert main(["kb", *sub, "--config", str(config)]) == 2
        assert "no knowledge base path: pass --db" in capsys.readouterr().err


def test_default_config_has_no_file_db(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "query", "x"]) == 2
    assert "pass --db" in capsys.readouterr().err


def test_invalid_config_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[system\n", encoding="utf-8")
    assert main(["kb", "query", "x", "--config", str(bad)]) == 1
    assert "bad.toml" in capsys.readouterr().err


def test_kb_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb"]) == 2
    assert main(["kb", "query", "x", "--kind", "opinion", "--db", "x"]) == 2
