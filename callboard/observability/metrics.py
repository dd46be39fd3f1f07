"""Prometheus metrics that add up across every actor process.

Each callboard actor is its own OS process, so an ordinary in-memory counter would only
ever show one process's share. prometheus-client's *multiprocess mode* solves that: every
process writes its values into mmap'd files ``<type>_<pid>.db`` in one shared directory,
and :func:`collect` merges all of them into a single text exposition.

The catch is that prometheus-client picks its value class (``prometheus_client.values.
ValueClass``) once, at import, from the ``PROMETHEUS_MULTIPROC_DIR`` environment variable,
and the host application may import it long before callboard runs. Metric objects look the
class up in that module attribute each time they create a value, so
:func:`enable_multiprocess` sets the variable *and* swaps the attribute; metrics created
afterwards (and in processes forked afterwards) write to the shared directory.

Without :func:`enable_multiprocess` everything still works in one process with plain
in-memory values, which is what single-process unit tests of actors need.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as _prom_multiprocess
from prometheus_client import values as _prom_values
from prometheus_client.parser import text_string_to_metric_families

from callboard.observability.logging import get_logger

__all__ = [
    "HANDLER_SECONDS_BUCKETS",
    "MULTIPROC_DIR_ENV",
    "ActorMetrics",
    "SampleKey",
    "actor_metrics",
    "collect",
    "disable_multiprocess",
    "enable_multiprocess",
    "is_multiprocess",
    "mark_process_dead",
    "merge_expositions",
    "parse_exposition",
]

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable prometheus-client reads the shared directory from."""

HANDLER_SECONDS_BUCKETS: Final[tuple[float, ...]] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds of ``callboard_handler_seconds``: 50 µs (a trivial handler) to 10 s (a
handler stuck on I/O), roughly 1-2.5-5 per decade; slower ones land in ``+Inf``."""

SampleKey = tuple[str, frozenset[tuple[str, str]]]
"""``(sample name, frozenset of (label, value) pairs)``: how :func:`parse_exposition` keys
samples so a test can look one up without caring about label order."""

_lock = threading.Lock()
_instance: ActorMetrics | None = None
_instance_value_class: Any = None
# One value class per directory, reused when multiprocess mode is re-enabled on it: each
# class holds its own open mmaps, and two in one process on the same file corrupt it.
_value_classes: dict[str, Any] = {}


def _reinit_lock_after_fork() -> None:
    # A lock held by another thread at fork() time would stay locked forever in the child.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_lock_after_fork)


def is_multiprocess() -> bool:
    """Whether metrics created now go to the shared directory (vs. in-memory values)."""
    return bool(getattr(_prom_values.ValueClass, "_multiprocess", False))


def enable_multiprocess(directory: str | os.PathLike[str]) -> None:
    """Make metrics created from now on in this process (and its forks) shared-file backed.

    Creates ``directory`` if missing, sets ``PROMETHEUS_MULTIPROC_DIR`` (inherited by
    forked and spawned children, so a freshly imported prometheus-client there picks
    multiprocess mode by itself) and swaps ``prometheus_client.values.ValueClass``, which
    prometheus-client only reads from the environment at import time. Metric objects
    created *before* this call keep their old values; :func:`actor_metrics` notices the
    switch and builds a fresh :class:`ActorMetrics`.

    Idempotent: if the process is already in multiprocess mode on the same directory,
    the existing value class is kept, and re-enabling a directory used before reuses
    the class made for it then. A second class would give this process two open mmaps
    of the same ``counter_<pid>.db``, which then overwrite each other's entries.
    The directory is not wiped (other processes may already be writing into it); the
    system starter should empty it of ``*.db`` files before a fresh run.
    """
    path = os.path.abspath(os.fspath(directory))
    os.makedirs(path, exist_ok=True)
    with _lock:
        if os.environ.get(MULTIPROC_DIR_ENV) == path and is_multiprocess():
            return
        os.environ[MULTIPROC_DIR_ENV] = path
        value_class = _value_classes.get(path)
        if value_class is None:
            make_class: Callable[[], Any] = _prom_values.MultiProcessValue
            value_class = _value_classes[path] = make_class()
        _prom_values.ValueClass = value_class


def disable_multiprocess() -> None:
    """Return this process to plain in-memory values (mainly for test isolation).

    Unsets ``PROMETHEUS_MULTIPROC_DIR`` and restores prometheus-client's in-memory value
    class; :func:`actor_metrics` then builds a fresh, in-memory :class:`ActorMetrics`.
    Files already written stay in the directory. Open file handles of the previous mode
    are left open on purpose: closing them would break any metric object still using them.
    """
    with _lock:
        os.environ.pop(MULTIPROC_DIR_ENV, None)
        _prom_values.ValueClass = _prom_values.MutexValue


class ActorMetrics:
    """callboard's counters and histograms, with one-line, cheap call sites.

    Every method caches the labelled child per label tuple, because ``.labels()`` costs a
    lock plus string conversions on every call and these run once per message.
    Metrics never break message handling: a failure to record (e.g. the shared directory
    is on a full or read-only disk) is counted in :attr:`failures`, reported once to the
    log, and otherwise ignored.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create the metrics in ``registry`` (a new private one by default).

        A private registry lets this be re-created (after :func:`enable_multiprocess`,
        or in tests) without "Duplicated timeseries" errors from the default registry.
        """
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
        self.registry: CollectorRegistry = registry
        self.failures: int = 0
        """How many recordings were dropped because the metric backend raised."""
        r = self.registry
        self._messages_handled = Counter(
            "callboard_messages_handled_total",
            "Messages an actor's handler finished (successfully or with a business error).",
            ["actor", "message_type"],
            registry=r,
        )
        self._handler_errors = Counter(
            "callboard_handler_errors_total",
            "Handler invocations that ended in an error reply, by error code.",
            ["actor", "message_type", "code"],
            registry=r,
        )
        self._handler_seconds = Histogram(
            "callboard_handler_seconds",
            "Wall-clock time spent in a message handler.",
            ["actor", "message_type"],
            buckets=HANDLER_SECONDS_BUCKETS,
            registry=r,
        )
        self._invalid_messages = Counter(
            "callboard_invalid_messages_total",
            "Inbound messages rejected before reaching a handler, by reason.",
            ["actor", "reason"],
            registry=r,
        )
        self._dead_letters = Counter(
            "callboard_dead_letters_total",
            "Messages that could not be delivered to the named actor.",
            ["actor"],
            registry=r,
        )
        self._restarts = Counter(
            "callboard_restarts_total",
            "Child restarts performed by a supervisor, by the child's exit reason.",
            ["supervisor", "child", "reason"],
            registry=r,
        )
        self._actor_starts = Counter(
            "callboard_actor_starts_total",
            "Times an actor process finished starting (first start and restarts).",
            ["actor"],
            registry=r,
        )
        self._handled_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._error_children: dict[tuple[str, str, str], Counter] = {}
        self._invalid_children: dict[tuple[str, str], Counter] = {}
        self._dead_letter_children: dict[str, Counter] = {}
        self._restart_children: dict[tuple[str, str, str], Counter] = {}
        self._start_children: dict[str, Counter] = {}

    def handled(self, actor: str, message_type: str, seconds: float) -> None:
        """Count one finished handler call and record how long it took."""
        try:
            key = (actor, message_type)
            pair = self._handled_children.get(key)
            if pair is None:
                pair = (
                    self._messages_handled.labels(actor, message_type),
                    self._handler_seconds.labels(actor, message_type),
                )
                self._handled_children[key] = pair
            pair[0].inc()
            pair[1].observe(seconds)
        except Exception as exc:
            self._failed(exc)

    def error(self, actor: str, message_type: str, code: str) -> None:
        """Count one handler call that produced an error reply with ``code``."""
        try:
            key = (actor, message_type, code)
            child = self._error_children.get(key)
            if child is None:
                child = self._error_children[key] = self._handler_errors.labels(*key)
            child.inc()
        except Exception as exc:
            self._failed(exc)

    def invalid(self, actor: str, reason: str) -> None:
        """Count one message rejected before dispatch (``reason``: a short fixed code)."""
        try:
            key = (actor, reason)
            child = self._invalid_children.get(key)
            if child is None:
                child = self._invalid_children[key] = self._invalid_messages.labels(*key)
            child.inc()
        except Exception as exc:
            self._failed(exc)

    def dead_letter(self, actor: str) -> None:
        """Count one message that could not be delivered to ``actor``."""
        try:
            child = self._dead_letter_children.get(actor)
            if child is None:
                child = self._dead_letter_children[actor] = self._dead_letters.labels(actor)
            child.inc()
        except Exception as exc:
            self._failed(exc)

    def restart(self, supervisor: str, child: str, reason: str) -> None:
        """Count one restart of ``child`` by ``supervisor`` after it exited with ``reason``."""
        try:
            key = (supervisor, child, reason)
            counter = self._restart_children.get(key)
            if counter is None:
                counter = self._restart_children[key] = self._restarts.labels(*key)
            counter.inc()
        except Exception as exc:
            self._failed(exc)

    def started(self, actor: str) -> None:
        """Count one completed start of ``actor``."""
        try:
            child = self._start_children.get(actor)
            if child is None:
                child = self._start_children[actor] = self._actor_starts.labels(actor)
            child.inc()
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            try:
                get_logger().error(
                    "metrics_record_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    note="further metric failures in this process are counted, not logged",
                )
            except Exception:
                pass


def actor_metrics() -> ActorMetrics:
    """This process's :class:`ActorMetrics`, created on first use.

    Rebuilt when prometheus-client's value class changed since it was built (i.e. after
    :func:`enable_multiprocess` / :func:`disable_multiprocess`), so metrics created in
    plain mode never silently stay in-memory once multiprocess mode is on. Kept across
    ``fork()``: prometheus-client's multiprocess values notice the new pid and start the
    child's own file from zero, so nothing is counted twice.
    """
    global _instance, _instance_value_class
    instance = _instance
    if instance is not None and _instance_value_class is _prom_values.ValueClass:
        return instance
    with _lock:
        value_class = _prom_values.ValueClass
        if _instance is None or _instance_value_class is not value_class:
            _instance = ActorMetrics()
            _instance_value_class = value_class
        return _instance


def collect(directory: str | os.PathLike[str]) -> bytes:
    """Text exposition of the metrics of every process that wrote into ``directory``.

    Reads the files, so it also sees processes that have exited or crashed. Raises
    ``ValueError`` if ``directory`` does not exist, and prometheus-client's errors for a
    corrupted file.
    """
    registry = CollectorRegistry(auto_describe=False)
    # Registers itself in ``registry`` (the class is untyped upstream, hence the alias).
    make_collector: Callable[..., object] = _prom_multiprocess.MultiProcessCollector
    make_collector(registry, path=os.fspath(directory))
    return generate_latest(registry)


def mark_process_dead(pid: int, directory: str | os.PathLike[str]) -> None:
    """Tell prometheus-client that process ``pid`` is gone.

    This only deletes the per-pid files of *live* gauges (callboard has none today).
    Counter and histogram files are kept on purpose: their totals must not drop when
    an actor dies or is restarted.
    """
    mark: Callable[[int, str], None] = _prom_multiprocess.mark_process_dead
    mark(pid, os.fspath(directory))


def merge_expositions(*texts: bytes) -> bytes:
    """One text exposition from several: families of the same name become one (their
    samples joined), since a scraper rejects a metric family declared twice."""
    families: dict[str, Any] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            have = families.get(family.name)
            if have is None:
                families[family.name] = family
            else:
                have.samples.extend(family.samples)

    class _Parsed:
        def collect(self) -> Any:
            return iter(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Parsed())
    return generate_latest(registry)


def parse_exposition(text: str | bytes) -> dict[SampleKey, float]:
    """Read a text exposition back into ``{(sample name, labels): value}``.

    Sample names are as exposed (``..._total``, ``..._bucket``, ``..._sum``, ...), e.g.
    ``("callboard_dead_letters_total", frozenset({("actor", "echo")}))``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return samples
