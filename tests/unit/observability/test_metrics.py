"""callboard.observability.metrics: in-process counting and cross-process aggregation."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from prometheus_client import generate_latest
from prometheus_client import values as prom_values

import callboard.observability.metrics as metrics_module
from callboard.observability import configure_logging
from callboard.observability.metrics import (
    MULTIPROC_DIR_ENV,
    ActorMetrics,
    SampleKey,
    actor_metrics,
    collect,
    disable_multiprocess,
    enable_multiprocess,
    is_multiprocess,
    mark_process_dead,
    parse_exposition,
)

REPO_ROOT = Path(metrics_module.__file__).resolve().parents[2]


def key(name: str, **labels: str) -> SampleKey:
    return (name, frozenset(labels.items()))


@pytest.fixture(autouse=True)
def _restore_prometheus_mode() -> Iterator[None]:
    """Each test starts in plain mode and leaves the process as it found it."""
    saved_class = prom_values.ValueClass
    saved_env = os.environ.get(MULTIPROC_DIR_ENV)
    disable_multiprocess()
    yield
    prom_values.ValueClass = saved_class
    if saved_env is None:
        os.environ.pop(MULTIPROC_DIR_ENV, None)
    else:
        os.environ[MULTIPROC_DIR_ENV] = saved_env


def in_process_samples(m: ActorMetrics) -> dict[SampleKey, float]:
    return parse_exposition(generate_latest(m.registry))


# --- in-process (multiprocess mode never enabled) ---------------------------------------


def test_counts_in_process_without_multiprocess_mode() -> None:
    assert not is_multiprocess()
    m = ActorMetrics()
    for _ in range(3):
        m.handled("echo", "Ping", 0.0003)
    m.handled("echo", "Echo", 2.0)
    m.error("echo", "Ping", "crashed")
    m.error("echo", "Ping", "crashed")
    m.invalid("echo", "unknown_type")
    m.dead_letter("ghost")
    m.restart("root", "echo", "error")
    m.started("echo")

    s = in_process_samples(m)
    assert s[key("callboard_messages_handled_total", actor="echo", message_type="Ping")] == 3
    assert s[key("callboard_messages_handled_total", actor="echo", message_type="Echo")] == 1
    errors = {"actor": "echo", "message_type": "Ping", "code": "crashed"}
    assert s[key("callboard_handler_errors_total", **errors)] == 2
    assert s[key("callboard_invalid_messages_total", actor="echo", reason="unknown_type")] == 1
    assert s[key("callboard_dead_letters_total", actor="ghost")] == 1
    restarts = key("callboard_restarts_total", supervisor="root", child="echo", reason="error")
    assert s[restarts] == 1
    assert s[key("callboard_actor_starts_total", actor="echo")] == 1


def test_handler_histogram_buckets_and_sum() -> None:
    m = ActorMetrics()
    m.handled("echo", "Ping", 0.0003)  # between the 250 µs and 500 µs bounds
    m.handled("echo", "Ping", 12.0)  # beyond the last finite bound

    s = in_process_samples(m)
    labels = {"actor": "echo", "message_type": "Ping"}
    assert s[key("callboard_handler_seconds_bucket", le="5e-05", **labels)] == 0
    assert s[key("callboard_handler_seconds_bucket", le="0.00025", **labels)] == 0
    assert s[key("callboard_handler_seconds_bucket", le="0.0005", **labels)] == 1
    assert s[key("callboard_handler_seconds_bucket", le="10.0", **labels)] == 1
    assert s[key("callboard_handler_seconds_bucket", le="+Inf", **labels)] == 2
    assert s[key("callboard_handler_seconds_count", **labels)] == 2
    assert s[key("callboard_handler_seconds_sum", **labels)] == pytest.approx(12.0003)


def test_actor_metrics_is_a_per_process_singleton_rebuilt_on_mode_switch(tmp_path: Path) -> None:
    first = actor_metrics()
    assert actor_metrics() is first
    first.started("echo")

    enable_multiprocess(tmp_path)
    switched = actor_metrics()
    assert switched is not first
    assert actor_metrics() is switched
    # The old in-memory count did not leak into the new, file-backed instance.
    switched.started("echo")
    starts = parse_exposition(collect(tmp_path))
    assert starts[key("callboard_actor_starts_total", actor="echo")] == 1


def test_enable_multiprocess_is_idempotent(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    enable_multiprocess(a)
    assert is_multiprocess()
    assert os.environ[MULTIPROC_DIR_ENV] == str(a)
    assert a.is_dir()
    cls_a = prom_values.ValueClass
    enable_multiprocess(str(a))
    assert prom_values.ValueClass is cls_a

    enable_multiprocess(b)
    assert prom_values.ValueClass is not cls_a
    assert os.environ[MULTIPROC_DIR_ENV] == str(b)
    # Going back reuses a's class, so this process never holds two mmaps of one file.
    enable_multiprocess(a)
    assert prom_values.ValueClass is cls_a


def test_disable_multiprocess_returns_to_in_memory_values(tmp_path: Path) -> None:
    enable_multiprocess(tmp_path)
    disable_multiprocess()
    assert not is_multiprocess()
    assert MULTIPROC_DIR_ENV not in os.environ
    m = actor_metrics()
    m.dead_letter("ghost")
    assert list(tmp_path.iterdir()) == []
    assert in_process_samples(m)[key("callboard_dead_letters_total", actor="ghost")] == 1


def test_recording_failure_never_raises(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    log_file = tmp_path / "log.jsonl"
    configure_logging(file=str(log_file))
    try:
        enable_multiprocess(metrics_dir)
        metrics_dir.rmdir()  # the backing file can no longer be created
        m = actor_metrics()
        m.handled("echo", "Ping", 0.001)
        m.dead_letter("ghost")
        assert m.failures == 2
    finally:
        structlog.reset_defaults()
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1  # reported once, then only counted
    assert '"event": "metrics_record_failed"' in lines[0]
    assert "FileNotFoundError" in lines[0]


def test_parse_exposition_accepts_str_and_bytes() -> None:
    text = (
        "# HELP callboard_dead_letters_total x\n"
        "# TYPE callboard_dead_letters_total counter\n"
        'callboard_dead_letters_total{actor="a"} 4.0\n'
    )
    expected = {key("callboard_dead_letters_total", actor="a"): 4.0}
    assert parse_exposition(text) == expected
    assert parse_exposition(text.encode()) == expected


def test_collect_requires_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        collect(tmp_path / "missing")


# --- multiprocess: real forked processes ------------------------------------------------


def _child_work(times: int, crash: bool) -> None:
    m = actor_metrics()
    for _ in range(times):
        m.handled("echo", "Ping", 0.001)
    m.started("echo")
    if crash:
        os.kill(os.getpid(), signal.SIGKILL)


def test_collect_sums_across_forked_processes(tmp_path: Path) -> None:
    enable_multiprocess(tmp_path)
    # The parent records before forking, as a host/admin process might: children inherit
    # the singleton but must start their own files at zero (no double counting).
    parent = actor_metrics()
    for _ in range(10):
        parent.handled("echo", "Ping", 0.001)

    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_child_work, args=(1, False)),
        ctx.Process(target=_child_work, args=(2, False)),
        ctx.Process(target=_child_work, args=(3, True)),  # SIGKILLs itself after counting
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, -signal.SIGKILL]

    pids = {p.pid for p in procs} | {os.getpid()}
    assert {f.name for f in tmp_path.glob("counter_*.db")} == {f"counter_{pid}.db" for pid in pids}

    s = parse_exposition(collect(tmp_path))
    labels = {"actor": "echo", "message_type": "Ping"}
    assert s[key("callboard_messages_handled_total", **labels)] == 10 + 1 + 2 + 3
    assert s[key("callboard_handler_seconds_count", **labels)] == 16
    assert s[key("callboard_handler_seconds_bucket", le="0.001", **labels)] == 16
    assert s[key("callboard_handler_seconds_sum", **labels)] == pytest.approx(0.016)
    assert s[key("callboard_actor_starts_total", actor="echo")] == 3

    # Bookkeeping for dead processes must not make their totals disappear.
    for p in procs:
        assert p.pid is not None
        mark_process_dead(p.pid, tmp_path)
    after = parse_exposition(collect(tmp_path))
    assert after[key("callboard_messages_handled_total", **labels)] == 16


def test_works_when_prometheus_client_was_imported_first(tmp_path: Path) -> None:
    # A fresh interpreter, so prometheus_client really is imported (and a host metric
    # created) before callboard switches modes.
    script = textwrap.dedent(
        """
        import multiprocessing, sys
        import prometheus_client
        from prometheus_client import values
        host_metric = prometheus_client.Counter("host_requests", "host app's own metric")
        print("before:", values.ValueClass is values.MutexValue)

        from callboard.observability import actor_metrics, enable_multiprocess

        enable_multiprocess(sys.argv[1])

        def work():
            actor_metrics().dead_letter("ghost")

        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=work) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print("exitcodes:", [p.exitcode for p in procs])
        """
    )
    env = {k: v for k, v in os.environ.items() if k.lower() != MULTIPROC_DIR_ENV.lower()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before: True", "exitcodes: [0, 0, 0]"]

    s = parse_exposition(collect(tmp_path))
    assert s[key("callboard_dead_letters_total", actor="ghost")] == 3
    assert not any(name.startswith("host_") for name, _ in s)
