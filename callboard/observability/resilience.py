"""Resilience events as log lines and Prometheus metrics.

A :class:`~callboard.resilience.RouteTable` reports what its policies did through one
callback, ``on_event(name, fields)``; :class:`ResilienceObserver` is that callback in
every process. Log events (structlog, JSON lines; each carries ``route``, ``caller`` and
``target``):

``breaker_state_changed``  ``old``, ``new``, ``reason``   (warning when it opens)
``retry``                  ``attempt`` (the next one), ``delay_s``, ``code``   (debug)
``retries_stopped``        ``attempts``, ``code``, ``reason``   (info)
``fallback``               ``mode``, ``code``, ``ok``, ``degraded`` or ``why``   (info)
``call_failed``            ``code``, ``attempts``   (warning)
``bulkhead_rejected``      ``in_flight``, ``queued``   (warning)
``bulkhead_timeout``       (warning: the deadline passed while queued)

Metrics, all labelled by ``route`` (``caller->target``):

``callboard_breaker_transitions_total{route,state}``   transitions into ``state``
``callboard_retries_total{route,code}``                retries, by the error retried
``callboard_fallbacks_total{route,mode,result}``       fallbacks used (``ok``/``failed``)
``callboard_degraded_replies_total{route}``            degraded answers handed to callers
``callboard_call_failures_total{route,code}``          calls that failed for good
``callboard_bulkhead_rejections_total{route,why}``     ``full`` or ``timeout``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from callboard.observability.logging import get_logger

__all__ = ["ResilienceMetrics", "ResilienceObserver"]


class ResilienceMetrics:
    """The counters above, in ``registry`` (``None``: prometheus-client's default one,
    which in a multiprocess actor process is what the system's exposition collects)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw: dict[str, Any] = {"registry": registry}
        self.transitions = Counter(
            "callboard_breaker_transitions_total",
            "Circuit breaker transitions, by the state entered.",
            ["route", "state"],
            **kw,
        )
        self.retries = Counter(
            "callboard_retries_total", "Retried attempts, by error code.", ["route", "code"], **kw
        )
        self.fallbacks = Counter(
            "callboard_fallbacks_total",
            "Fallbacks used, by mode and whether they produced an answer.",
            ["route", "mode", "result"],
            **kw,
        )
        self.degraded = Counter(
            "callboard_degraded_replies_total",
            "Degraded answers (from a fallback) handed to callers.",
            ["route"],
            **kw,
        )
        self.failures = Counter(
            "callboard_call_failures_total",
            "Calls that failed after their policies (retries, fallback) were exhausted.",
            ["route", "code"],
            **kw,
        )
        self.bulkhead = Counter(
            "callboard_bulkhead_rejections_total",
            "Requests a bulkhead turned away (full) or that timed out while queued.",
            ["route", "why"],
            **kw,
        )


_metrics: ResilienceMetrics | None = None


def _default_metrics() -> ResilienceMetrics:
    global _metrics
    if _metrics is None:
        _metrics = ResilienceMetrics()
    return _metrics


class ResilienceObserver:
    """``on_event`` for a route table: logs each event and counts it.

    Recording never breaks a call: a failing metric backend is ignored here (the actor
    metrics already count such failures)."""

    def __init__(
        self, log: Any = None, metrics: ResilienceMetrics | None = None,
        forward: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:  # fmt: skip
        self._log = log if log is not None else get_logger()
        self._given = metrics
        self._forward = forward  # e.g. publish breaker changes as system events

    @property
    def metrics(self) -> ResilienceMetrics:
        return self._given if self._given is not None else _default_metrics()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        try:
            self._count(name, fields)
        except Exception:  # metrics must never break a call
            pass
        level = _LEVELS.get(name, "info")
        if name == "breaker_state_changed" and fields.get("new") != "open":
            level = "info"
        getattr(self._log, level)(name, **fields)
        if self._forward is not None:
            try:
                self._forward(name, fields)
            except Exception as exc:  # best effort: never break the call
                self._log.warning("resilience_event_not_forwarded", error=str(exc))

    def _count(self, name: str, f: dict[str, Any]) -> None:
        m = self.metrics
        route = f["route"]
        if name == "breaker_state_changed":
            m.transitions.labels(route, f["new"]).inc()
        elif name == "retry":
            m.retries.labels(route, f["code"]).inc()
        elif name == "fallback":
            m.fallbacks.labels(route, f["mode"], "ok" if f["ok"] else "failed").inc()
            if f["ok"] and f.get("degraded"):
                m.degraded.labels(route).inc()
        elif name == "call_failed":
            m.failures.labels(route, f["code"]).inc()
        elif name == "bulkhead_rejected":
            m.bulkhead.labels(route, "full").inc()
        elif name == "bulkhead_timeout":
            m.bulkhead.labels(route, "timeout").inc()


_LEVELS = {
    "breaker_state_changed": "warning",
    "retry": "debug",
    "retries_stopped": "info",
    "fallback": "info",
    "call_failed": "warning",
    "bulkhead_rejected": "warning",
    "bulkhead_timeout": "warning",
}
