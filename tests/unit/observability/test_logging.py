"""callboard.observability.logging: JSON lines, static fields, context, files, processes."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from callboard.observability import (
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
    unbind_context,
)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    clear_context()
    yield
    clear_context()
    configure_logging()  # closes any log file this test opened
    structlog.reset_defaults()


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_lines_are_json_with_level_timestamp_static_fields_and_context(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "callboard.jsonl"
    configure_logging("debug", str(log_file), actor="echo", pid=4242, system_port=1900)
    log = get_logger(component="dispatch")

    bind_context(correlation_id="c-1", message_type="Ping")
    log.info("message_handled", seconds=0.25)
    log.debug("detail")
    unbind_context("message_type")
    log.info("partly_unbound")
    clear_context()
    log.warning("between_messages")

    first, second, third, fourth = read_lines(log_file)
    assert first["event"] == "message_handled"
    assert first["level"] == "info"
    assert first["seconds"] == 0.25
    assert first["component"] == "dispatch"
    assert (first["actor"], first["pid"], first["system_port"]) == ("echo", 4242, 1900)
    assert (first["correlation_id"], first["message_type"]) == ("c-1", "Ping")
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60

    assert (second["event"], second["level"]) == ("detail", "debug")
    assert second["correlation_id"] == "c-1"
    assert third["correlation_id"] == "c-1" and "message_type" not in third
    assert fourth["level"] == "warning"
    assert "correlation_id" not in fourth and "message_type" not in fourth
    assert fourth["actor"] == "echo"


def test_stderr_output_when_no_file(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(actor="echo")
    get_logger().info("hello", n=1)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert (line["event"], line["n"], line["actor"], line["level"]) == ("hello", 1, "echo", "info")


def test_unconfigured_get_logger_still_emits_json(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger(actor="early").info("before_configure")
    line = json.loads(capsys.readouterr().err)
    assert (line["event"], line["actor"], line["level"]) == ("before_configure", "early", "info")
    assert "timestamp" in line


def test_level_filters_lower_levels(tmp_path: Path) -> None:
    log_file = tmp_path / "log.jsonl"
    configure_logging("warning", str(log_file))
    log = get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in read_lines(log_file)] == ["w", "e"]


def test_unknown_level_is_rejected_and_previous_configuration_kept(tmp_path: Path) -> None:
    log_file = tmp_path / "log.jsonl"
    configure_logging("info", str(log_file), actor="kept")
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("verbose", str(tmp_path / "other.jsonl"))
    get_logger().info("still_here")
    assert read_lines(log_file)[0]["actor"] == "kept"
    assert not (tmp_path / "other.jsonl").exists()


def test_exception_is_formatted_into_the_line(tmp_path: Path) -> None:
    log_file = tmp_path / "log.jsonl"
    configure_logging(file=str(log_file))
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger().exception("handler_crashed")
    (line,) = read_lines(log_file)
    assert line["event"] == "handler_crashed"
    assert line["level"] == "error"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].rstrip().endswith("ValueError: boom")


def test_file_is_appended_and_reconfiguration_reaches_existing_loggers(tmp_path: Path) -> None:
    log_file = tmp_path / "log.jsonl"
    log_file.write_text('{"event": "from_a_previous_run"}\n')
    configure_logging(file=str(log_file), actor="host")
    log = get_logger()  # created before the reconfiguration, like a module-level logger
    log.info("one")
    configure_logging(file=str(log_file), actor="echo", pid=os.getpid())
    log.info("two")
    lines = read_lines(log_file)
    assert [line["event"] for line in lines] == ["from_a_previous_run", "one", "two"]
    assert lines[1]["actor"] == "host"
    assert (lines[2]["actor"], lines[2]["pid"]) == ("echo", os.getpid())


def _child_logs(path: str, index: int, count: int) -> None:
    configure_logging(file=path, actor=f"child{index}", pid=os.getpid())
    log = get_logger()
    payload = str(index) * 3000  # long lines make interleaving visible if it happened
    for n in range(count):
        log.info("tick", n=n, payload=payload)


def test_lines_from_forked_processes_do_not_interleave(tmp_path: Path) -> None:
    log_file = tmp_path / "shared.jsonl"
    configure_logging(file=str(log_file), actor="parent")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child_logs, args=(str(log_file), i, 300)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]

    lines = read_lines(log_file)  # json.loads fails on any torn or merged line
    assert len(lines) == 900
    for i, p in enumerate(procs):
        mine = [line for line in lines if line["actor"] == f"child{i}"]
        assert [line["n"] for line in mine] == list(range(300))
        assert all(line["pid"] == p.pid and line["payload"] == str(i) * 3000 for line in mine)
