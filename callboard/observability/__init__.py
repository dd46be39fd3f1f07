"""Observability: JSON-lines logs (structlog) and Prometheus metrics across actor processes."""

from callboard.observability.logging import (
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
    unbind_context,
)
from callboard.observability.metrics import (
    HANDLER_SECONDS_BUCKETS,
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

__all__ = [
    "HANDLER_SECONDS_BUCKETS",
    "MULTIPROC_DIR_ENV",
    "ActorMetrics",
    "SampleKey",
    "actor_metrics",
    "bind_context",
    "clear_context",
    "collect",
    "configure_logging",
    "disable_multiprocess",
    "enable_multiprocess",
    "get_logger",
    "is_multiprocess",
    "mark_process_dead",
    "parse_exposition",
    "unbind_context",
]
