"""The exceptions callboard raises, and the error codes that travel on the wire.

Two families, following spec §6.1:

* :class:`BusinessError` is raised by handler code for an expected business outcome
  (validation failure, "no acceptable candidate", ...). The asker gets a typed error
  reply carrying the subclass's ``code``; the actor keeps its state and continues.
* :class:`CallboardError` and its subclasses are raised by the runtime to the caller:
  timeouts, error replies, unknown names, invalid messages, invalid configuration.

Error codes users can rely on (``RemoteError.code``):

``crashed``           the handler raised an unexpected exception; the actor exited with
                      reason ``error`` and its supervisor decides what happens next.
``invalid_message``   the receiver could not decode or validate the message (malformed or
                      oversized frame, unknown type, unsupported version, invalid fields).
``no_such_actor``     the message reached an address that no longer hosts the named actor.
``stopping``          the actor is shutting down and no longer takes requests.
``restarting``        the named actor is being restarted (back soon).
``not_running``       the named actor is in the tree but stopped for good (terminated,
                      not restarted, or its supervisor gave up).
``unavailable``       the handler raised :class:`Unavailable`: a transient failure that
                      resilience policies may retry and breakers count, without a crash.
``timeout``           (resilience policies only) an attempt got no reply in time.
``circuit_open``      (resilience policies only) the route's breaker refused the call:
                      :class:`~callboard.resilience.CircuitOpen`.
``bulkhead_full``     (resilience policies only) the route's bulkhead had no slot and no
                      queue place: :class:`~callboard.resilience.BulkheadFull`.
``<business code>``   a :class:`BusinessError` subclass's ``code``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

__all__ = [
    "AskTimeout",
    "BusinessError",
    "CallboardError",
    "ConfigError",
    "InvalidMessage",
    "NoSuchActor",
    "NoSuchBreaker",
    "RemoteError",
    "StartFailed",
    "SupervisorError",
    "SystemFailed",
    "SystemNotRunning",
    "Unavailable",
]

CRASHED = "crashed"
INVALID_MESSAGE = "invalid_message"
NO_SUCH_ACTOR = "no_such_actor"
STOPPING = "stopping"


def snake_case(name: str) -> str:
    """``NoAcceptableSolution`` -> ``no_acceptable_solution``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class CallboardError(Exception):
    """Base class of every error the runtime raises."""


class ConfigError(CallboardError):
    """The configuration is invalid.

    ``source`` names the file (or ``<dict>``/``<default>``); ``errors`` lists
    ``(key_path, message)`` pairs, e.g. ``("supervisor.children.0.restart", "...")``.
    """

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {path or '<root>'}: {msg}" for path, msg in errors)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class AskTimeout(CallboardError, TimeoutError):
    """No reply arrived before the request's deadline."""


class NoSuchActor(CallboardError):
    """No actor of that name exists in the tree (raised at once, not after a timeout);
    code ``no_such_actor``."""

    code: ClassVar[str] = NO_SUCH_ACTOR

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no actor named {name!r}")


class RemoteError(CallboardError):
    """The target answered with an error reply.

    ``code`` is a stable machine-readable string (see the module docstring), ``message``
    the human text (the exception's text), ``details`` a JSON-able dict.
    """

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(f"[{code}] {message}")


class InvalidMessage(CallboardError):
    """A frame or message could not be decoded or validated (code ``invalid_message``).

    ``reason`` is one of ``malformed``, ``oversized``, ``unknown_type``, ``bad_version``,
    ``invalid_fields``, ``not_a_message``; ``details`` carries e.g. pydantic's errors.
    """

    code: ClassVar[str] = INVALID_MESSAGE

    def __init__(self, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        self.reason = reason
        self.message = message
        self.details = {"reason": reason, **(details or {})}
        super().__init__(f"{reason}: {message}")


class StartFailed(CallboardError):
    """An actor (or the system) failed to start; ``child`` names it, ``reason`` says why."""

    def __init__(self, child: str, reason: str) -> None:
        self.child = child
        self.reason = reason
        super().__init__(f"child {child!r} failed to start: {reason}")


class SupervisorError(CallboardError):
    """A child-administration call was refused; ``reason`` has OTP's meaning:

    ``not_found``           no child spec with that id under this supervisor
    ``running``             the child is running (restart/delete need it stopped first)
    ``restarting``          the child is being restarted (a restart attempt is pending)
    ``already_present``     a spec with that id exists, but its child is not running
    ``already_started``     a child with that id is running
    ``simple_one_for_one``  the call does not apply to a simple_one_for_one supervisor
    ``not_a_supervisor``    the target name is a worker, not a supervisor
    """

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        self.message = message or reason
        super().__init__(f"{reason}: {message}" if message else reason)


class SystemNotRunning(CallboardError):
    """The system was stopped; start a new one."""


class SystemFailed(CallboardError):
    """The root supervisor gave up; ``reason`` says why. Every later call raises it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the actor system failed: {reason}")


class NoSuchBreaker(CallboardError):
    """No circuit breaker is configured for ``route`` (or no caller of it answered)."""

    def __init__(self, route: str, detail: str = "") -> None:
        self.route = route
        self.detail = detail
        super().__init__(f"no circuit breaker for {route!r}" + (f": {detail}" if detail else ""))


class BusinessError(Exception):
    """Raise a subclass from a handler for an expected business outcome.

    The asker receives :class:`RemoteError` with ``code`` = the subclass's ``code`` class
    attribute (default: the class name in snake_case), ``message`` = ``str(exc)`` and
    ``details`` = the ``details`` given. The actor keeps its state and carries on.
    """

    code: ClassVar[str] = "business_error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = snake_case(cls.__name__)

    def __init__(self, message: str = "", details: dict[str, Any] | None = None) -> None:
        self.details = details or {}
        super().__init__(message)


class Unavailable(BusinessError):
    """Raise from a handler for a *transient* failure ("try again later"): the asker gets
    code ``unavailable``, which retry policies may retry and circuit breakers count as a
    failure (unlike other business codes), and the actor does not crash or restart."""

    code: ClassVar[str] = "unavailable"
