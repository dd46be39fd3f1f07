"""Structured JSON-lines logging for many actor processes writing to one place.

structlog renders each event to one JSON object per line, written with a single
``write()`` and flushed, so lines from different processes sharing a file (opened in
append mode) or a stderr do not interleave. It deliberately bypasses the stdlib
``logging`` module: Thespian replaces the root logger inside actor processes and refuses
handler changes there.

Call :func:`configure_logging` once in the host and again in each actor process after
the fork, with that process's static fields (``actor=...``, ``pid=os.getpid()``, ...).
Loggers obtained earlier, even before the fork, follow the latest configuration.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = [
    "LEVELS",
    "bind_context",
    "clear_context",
    "configure_logging",
    "get_logger",
    "unbind_context",
]

LEVELS: Final[dict[str, int]] = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "error": 40,
    "critical": 50,
}
"""Accepted ``level`` names (those of ``[system] log_level``) and their numeric values."""


class _Sink:
    """Where rendered lines go: an ``O_APPEND`` file descriptor, or the current stderr.

    The file is written with raw ``os.write`` so each line is one system call on an
    append-mode descriptor (atomic position update: concurrent writers do not overwrite
    or split each other's lines) and nothing sits in a userspace buffer at a fork or
    crash. No lock is taken, so a fork can never leave one held.
    """

    def __init__(self) -> None:
        self.fd: int | None = None
        self.path: str | None = None

    def open(self, path: str | None) -> None:
        """Switch to ``path`` (``None``: stderr); the previous descriptor is closed."""
        fd = None
        if path is not None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            fd = os.open(path, flags, 0o644)
        old, self.fd, self.path = self.fd, fd, path
        if old is not None:
            os.close(old)

    def write_line(self, line: str) -> None:
        data = line + "\n"
        if self.fd is not None:
            try:
                view = memoryview(data.encode("utf-8", "backslashreplace"))
                while view:
                    view = view[os.write(self.fd, view) :]
                return
            except OSError:
                # Disk full, file system gone, ...: losing the line silently would hide
                # the very failure; stderr is the last place left to say it.
                pass
        # Looked up per call so that redirections (and pytest's capsys) are honoured.
        stream = sys.stderr
        if stream is None:
            return
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):
            pass


_sink = _Sink()


class _LineLogger:
    """The structlog "wrapped logger": takes the rendered JSON string and writes it.

    One shared instance delegates to the module's current sink, so loggers created before
    a reconfiguration (or before a fork) write wherever the latest configuration says.
    """

    def msg(self, message: str) -> None:
        _sink.write_line(message)

    debug = info = warning = warn = error = err = critical = fatal = exception = msg
    failure = log = msg


_line_logger = _LineLogger()


def _line_logger_factory(*_args: Any) -> WrappedLogger:
    return _line_logger


def _static_fields_processor(fields: dict[str, Any]) -> Processor:
    """Add process-wide fields; values given at the call site or bound win."""
    items = tuple(fields.items())

    def add_static_fields(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        for key, value in items:
            event_dict.setdefault(key, value)
        return event_dict

    return add_static_fields


def configure_logging(level: str = "info", file: str | None = None, **static_fields: Any) -> None:
    """Configure structlog to write JSON lines at ``level`` and above.

    ``file``: path opened in append mode (created if missing); ``None`` or ``""`` means
    ``sys.stderr``. ``static_fields`` are added to every line of this process. Safe to call
    repeatedly, e.g. in every actor process after the fork: each call replaces the
    previous configuration and reopens the file (which also follows a log rotation).
    Raises ``ValueError`` for an unknown level and ``OSError`` if the file cannot be
    opened; the previous configuration then stays in force.
    """
    try:
        min_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}"
        ) from None
    _sink.open(file or None)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _static_fields_processor(static_fields),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=_line_logger_factory,
        context_class=dict,
        # Not cached: a logger created before a reconfiguration must pick up the new
        # level and static fields (e.g. module-level loggers created before a fork).
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> FilteringBoundLogger:
    """A structlog logger with ``bind`` pre-bound to every event it logs.

    If structlog was not configured yet (by :func:`configure_logging` or the host
    application), configures the defaults first so output is JSON lines, not structlog's
    console format.
    """
    if not structlog.is_configured():
        configure_logging()
    logger: FilteringBoundLogger = structlog.get_logger(**bind)
    return logger


def bind_context(**fields: Any) -> None:
    """Bind fields (``correlation_id``, ``message_type``, ...) to every log line of the
    current context, i.e. until :func:`clear_context`, in this thread/task only."""
    structlog.contextvars.bind_contextvars(**fields)


def unbind_context(*keys: str) -> None:
    """Remove some fields bound by :func:`bind_context`."""
    structlog.contextvars.unbind_contextvars(*keys)


def clear_context() -> None:
    """Drop all fields bound by :func:`bind_context`; call when a message is done so the
    next one does not inherit its ``correlation_id``."""
    structlog.contextvars.clear_contextvars()
