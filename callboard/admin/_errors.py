"""The admin API's one error shape, and how runtime exceptions map onto HTTP statuses.

Every error response is ``{"error": {"code": str, "message": str, "details": {...}}}``.
``code`` is stable and machine-readable; ``message`` is for people; ``details`` carries
structured context (pydantic's ``errors``, the ``reason`` of a supervisor refusal, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from callboard.errors import (
    AskTimeout,
    CallboardError,
    ConfigError,
    InvalidMessage,
    NoSuchActor,
    NoSuchBreaker,
    RemoteError,
    StartFailed,
    SupervisorError,
    SystemFailed,
    SystemNotRunning,
)

__all__ = ["INTERNAL_MESSAGE", "ApiError", "from_exception", "pydantic_errors", "status_code"]

INTERNAL_MESSAGE = "internal error; the daemon's log has the details"

# SupervisorError.reason -> HTTP status (any other reason: 409).
_SUPERVISOR_STATUS: dict[str, int] = {
    "not_found": 404,
    "invalid_child_spec": 400,
    "badarg": 400,
    "running": 409,
    "restarting": 409,
    "already_present": 409,
    "already_started": 409,
    "simple_one_for_one": 409,
    "not_a_supervisor": 409,
    "shutdown": 409,
}


class ApiError(Exception):
    """An error answer: ``status`` with the JSON body :meth:`body` (and extra ``headers``)."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.status = int(status)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{self.status} {code}: {message}")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def from_exception(exc: BaseException) -> ApiError:
    """The answer to ``exc`` raised while serving a request.

    Anything that is not a known runtime error becomes a 500 ``internal_error`` with a
    generic message (the caller logs the exception; its text is never sent: it might
    carry something private).
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidMessage):
        return ApiError(400, exc.code, exc.message, exc.details)
    if isinstance(exc, NoSuchActor):
        return ApiError(404, "no_such_actor", str(exc), {"actor": exc.name})
    if isinstance(exc, NoSuchBreaker):
        return ApiError(
            404, "no_such_breaker", str(exc), {"route": exc.route, "detail": exc.detail}
        )
    if isinstance(exc, SupervisorError):
        status = _SUPERVISOR_STATUS.get(exc.reason, 409)
        return ApiError(status, exc.reason, exc.message, {"reason": exc.reason})
    if isinstance(exc, StartFailed):
        return ApiError(502, "start_failed", str(exc), {"child": exc.child, "reason": exc.reason})
    if isinstance(exc, RemoteError):
        return ApiError(502, exc.code, exc.message, exc.details)
    if isinstance(exc, AskTimeout):
        return ApiError(504, "timeout", str(exc) or "no reply before the deadline")
    if isinstance(exc, SystemFailed):
        return ApiError(503, "system_failed", str(exc), {"reason": exc.reason})
    if isinstance(exc, SystemNotRunning):
        return ApiError(503, "system_not_running", str(exc) or "the system is not running")
    if isinstance(exc, ConfigError):
        errors = [{"loc": loc.split(".") if loc else [], "msg": msg} for loc, msg in exc.errors]
        return ApiError(400, "invalid_config", str(exc), {"errors": errors})
    if isinstance(exc, CallboardError):
        # A refusal without a more specific type, e.g. kill on the local transport.
        return ApiError(409, "refused", str(exc))
    return ApiError(500, "internal_error", INTERNAL_MESSAGE)


def pydantic_errors(
    exc: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[dict[str, Any]]:
    """pydantic's errors as JSON: ``loc`` (from the request body's root), ``msg``, ``type``."""
    return [
        {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def status_code(status: int) -> str:
    """A code for a bare HTTP status (``414`` -> ``request_uri_too_long``)."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"
