"""One call through a route's policies, as a generator of effects (sans-I/O).

:func:`guarded_call` decides; its driver acts. The generator yields what must happen
next and is sent back what came of it:

``Attempt``   send the request (``number`` goes in the envelope's ``attempt``), wait for
              the reply until ``deadline`` at the latest; send back an :class:`Outcome`.
``Backoff``   wait ``seconds`` before the next attempt; send back ``None``.
``Queue``     wait for a bulkhead slot (``Route.when_admitted``) until ``deadline``; send
              back ``True`` once admitted, ``False`` if the deadline came first.

It returns a :class:`CallResult`. Two drivers exist, both thin: the actor runtime's
(timers and futures; a handler's ``await self.ask`` never blocks the mailbox) and the
host's ``System.ask`` (a blocking loop). Unit tests drive it with a fake clock.

Order of the guards, outermost first (the order resilience4j documents as its default):
bulkhead -> retry loop -> circuit breaker -> per-attempt timeout -> the call. So a retry
takes no second bulkhead slot, each attempt asks the breaker for leave, and a breaker
rejection is itself an error code that retries and fallbacks can act on.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

from callboard.errors import AskTimeout, CallboardError
from callboard.resilience._breaker import CircuitOpen, Permit
from callboard.resilience._bulkhead import BulkheadFull
from callboard.resilience._routes import Route

__all__ = [
    "Attempt",
    "Backoff",
    "CallResult",
    "Effect",
    "Outcome",
    "Queue",
    "error_code",
    "guarded_call",
]

TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Attempt:
    target: str
    number: int
    deadline: float | None
    substitute: bool = False


@dataclass(frozen=True, slots=True)
class Backoff:
    seconds: float


@dataclass(frozen=True, slots=True)
class Queue:
    request_id: str
    deadline: float | None


Effect = Attempt | Backoff | Queue


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of one attempt: ``value`` or ``error`` (with its ``code``), and how long
    it took (``seconds``, for the breaker's slow-call count)."""

    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def code(self) -> str | None:
        return None if self.error is None else error_code(self.error)


Source = Literal["primary", "substitute", "static", "last_good", "none"]


@dataclass(frozen=True, slots=True)
class CallResult:
    """The caller's answer: ``value``, or ``error`` to raise. ``degraded`` marks a
    fallback's answer; ``source`` says where the answer came from; ``attempts`` counts
    the tries on the primary target, including tries the breaker refused (so the
    ``attempt`` numbers in envelopes may skip one that was refused)."""

    value: Any
    error: BaseException | None
    degraded: bool
    source: Source
    attempts: int


def error_code(exc: BaseException) -> str:
    """The error code a policy sees for ``exc`` (``timeout`` for a missed deadline)."""
    if isinstance(exc, AskTimeout):
        return TIMEOUT
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__name__


def guarded_call(
    route: Route,
    request_id: str,
    idempotent: bool,
    deadline: float | None,
    reply_type: str | None = None,
) -> Generator[Effect, Any, CallResult]:
    """Run one request (``request_id``, unique in this process) through ``route``'s
    policies within the absolute ``deadline`` (on ``route.clock``). ``idempotent``: the
    message may be retried; ``reply_type``: the request class's ``reply_type`` (for a
    static fallback that names no type)."""
    route.count("calls")
    if route.bulkhead is not None:
        try:
            admission = route.enter(request_id, deadline)
        except BulkheadFull as exc:
            route.count("bulkhead_rejected")
            snap = route.bulkhead.snapshot()
            route.event("bulkhead_rejected", in_flight=snap.in_flight, queued=snap.queued)
            return (yield from _fallback(route, Outcome(error=exc), deadline, 0, reply_type))
        if admission == "queued":
            try:
                admitted = yield Queue(request_id, deadline)
            except BaseException:  # abandoned while waiting: free the place (or the slot)
                route.give_up_waiting(request_id)
                raise
            if not admitted:
                route.count("failed")
                route.event("bulkhead_timeout")
                err = AskTimeout(f"no {route.name} slot was free before the deadline")
                return CallResult(None, err, False, "none", 0)
        try:
            outcome, attempts = yield from _attempts(route, idempotent, deadline)
        finally:
            route.leave(request_id)
    else:
        outcome, attempts = yield from _attempts(route, idempotent, deadline)
    if outcome.error is None:
        route.count("ok")
        return CallResult(outcome.value, None, False, "primary", attempts)
    return (yield from _fallback(route, outcome, deadline, attempts, reply_type))


def _attempts(
    route: Route, idempotent: bool, deadline: float | None
) -> Generator[Effect, Any, tuple[Outcome, int]]:
    number = 1
    while True:
        outcome = yield from _one_attempt(route, number, deadline)
        if outcome.error is None:
            route.remember(outcome.value)
            return outcome, number
        code = error_code(outcome.error)
        if route.retry is None:
            return outcome, number
        now = route.clock()
        decision = route.retry.decide(number, code, idempotent, now, deadline)
        delay = decision.delay
        if decision.retry and isinstance(outcome.error, CircuitOpen):
            # No use knocking before the breaker lets a trial through.
            if outcome.error.retry_at is None or (
                deadline is not None and now + outcome.error.retry_at >= deadline
            ):
                return outcome, number
            delay = max(delay, outcome.error.retry_at)
        if not decision.retry:
            if decision.reason != "not_retryable_code":
                route.event("retries_stopped", attempts=number, code=code, reason=decision.reason)
            return outcome, number
        route.count("retries")
        route.event("retry", attempt=decision.attempt, delay_s=round(delay, 6), code=code)
        if delay > 0:
            yield Backoff(delay)
        number = decision.attempt


def _one_attempt(
    route: Route, number: int, deadline: float | None
) -> Generator[Effect, Any, Outcome]:
    if deadline is not None and route.clock() >= deadline:
        # Nothing may start at or after the deadline (and it is no fault of the target).
        return Outcome(error=AskTimeout(f"the deadline passed before {route.name} was called"))
    permit: Permit | None = None
    if route.breaker is not None:
        try:
            permit = route.breaker.acquire()
        except CircuitOpen as exc:
            return Outcome(error=exc)
    attempt_deadline = deadline
    if route.policy.timeout is not None:
        limit = route.clock() + route.policy.timeout
        attempt_deadline = limit if deadline is None else min(deadline, limit)
    try:
        outcome: Outcome = yield Attempt(route.target, number, attempt_deadline)
    except BaseException:
        if permit is not None:
            permit.release()  # abandoned (the caller is exiting): outcome unknown
        raise
    if permit is not None:
        if outcome.error is None:
            permit.success(outcome.seconds)
        else:
            permit.failure(error_code(outcome.error), outcome.seconds)
    return outcome


def _fallback(
    route: Route, failed: Outcome, deadline: float | None, attempts: int, reply_type: str | None
) -> Generator[Effect, Any, CallResult]:
    assert failed.error is not None
    code = error_code(failed.error)
    fb = route.fallback
    if fb is None or fb.mode == "error" or code not in route.fallback_codes:
        return _failed(route, failed.error, attempts, code)
    if fb.mode == "last_good":
        if route.last_good is None:
            route.event("fallback", mode=fb.mode, code=code, ok=False, why="no good reply yet")
            return _failed(route, failed.error, attempts, code)
        return _degraded(route, route.last_good_reply(), fb.degraded, "last_good", attempts, code)
    if fb.mode == "static":
        try:
            value = route.static_reply(reply_type)
        except (CallboardError, ValueError, TypeError) as exc:
            route.event("fallback", mode=fb.mode, code=code, ok=False, why=str(exc))
            return _failed(route, failed.error, attempts, code)
        return _degraded(route, value, fb.degraded, "static", attempts, code)
    assert fb.mode == "substitute" and fb.target is not None
    if deadline is not None and route.clock() >= deadline:
        route.event("fallback", mode=fb.mode, code=code, ok=False, why="deadline passed")
        return _failed(route, failed.error, attempts, code)
    sub: Outcome = yield Attempt(fb.target, 1, deadline, substitute=True)
    if sub.error is not None:
        why = f"{fb.target} failed too: {error_code(sub.error)}"
        route.event("fallback", mode=fb.mode, code=code, ok=False, why=why)
        return _failed(route, failed.error, attempts, code)
    return _degraded(route, sub.value, fb.degraded, "substitute", attempts, code)


def _degraded(
    route: Route, value: Any, degraded: bool, source: Source, attempts: int, code: str
) -> CallResult:
    route.count("degraded" if degraded else "ok")
    route.event("fallback", mode=source, code=code, ok=True, degraded=degraded)
    return CallResult(value, None, degraded, source, attempts)


def _failed(route: Route, error: BaseException, attempts: int, code: str) -> CallResult:
    if route.is_failure(code):
        route.count("failed")
        route.event("call_failed", code=code, attempts=attempts)
    else:  # a business outcome: the target answered, just not with a reply
        route.count("business_errors")
    return CallResult(None, error, False, "none", attempts)
