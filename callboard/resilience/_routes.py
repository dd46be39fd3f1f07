"""The resilience state of one calling process: one :class:`Route` per target it calls.

A route (``caller->target``) carries the resolved :class:`~callboard.resilience.Policy` and
the state that policy needs: a circuit breaker, a bulkhead, a retry policy, the last good
reply. Routes are created on first use (or when an admin forces a breaker) and live as
long as the process. Pure: clocks and randomness are injected, nothing here sends or
sleeps; :mod:`callboard.resilience._call` says what to do and the actor layer does it.

Everything that users should see happens through one ``on_event(name, fields)`` callback
(the shell turns it into log lines and metrics): ``breaker_state_changed``, ``retry``,
``retries_stopped``, ``call_failed``, ``fallback``, ``bulkhead_rejected``,
``bulkhead_timeout``. Every event's fields include ``route``, ``caller`` and ``target``.

Thread-safe: the host's ``System`` calls from many threads; inside an actor process it is
used from one thread and the locks are uncontended.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from callboard.errors import InvalidMessage
from callboard.messages import lookup
from callboard.resilience._breaker import (
    DEFAULT_FAILURE_CODES,
    BreakerState,
    CircuitBreaker,
)
from callboard.resilience._bulkhead import Admission, Bulkhead
from callboard.resilience._policy import Fallback, Policy, resolve_policy
from callboard.resilience._retry import RetryPolicy

__all__ = ["DEFAULT_FALLBACK_CODES", "HOST", "EventSink", "Route", "RouteTable", "route_name"]

HOST = "host"
"""The caller name of requests from the host application (``System.ask``)."""

DEFAULT_FALLBACK_CODES: tuple[str, ...] = (*DEFAULT_FAILURE_CODES, "circuit_open", "bulkhead_full")
"""Error codes a fallback answers for by default: the call failed, not the business."""

EventSink = Callable[[str, dict[str, Any]], None]


def route_name(caller: str, target: str) -> str:
    return f"{caller}->{target}"


def _no_events(name: str, fields: dict[str, Any]) -> None:
    pass


class Route:
    """The policy of calls from one caller to one target, and its live state."""

    def __init__(
        self,
        caller: str,
        target: str,
        policy: Policy,
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        rand: random.Random,
        on_event: EventSink,
    ) -> None:
        self.caller = caller
        self.target = target
        self.name = route_name(caller, target)
        self.policy = policy
        self.clock = clock
        """Wall clock (epoch seconds): deadlines travel between processes in it."""
        self._emit = on_event
        self._lock = threading.Lock()
        self.breaker: CircuitBreaker | None = None
        if policy.breaker is not None:
            self.breaker = CircuitBreaker(self.name, policy.breaker, clock=monotonic)
            self.breaker.add_listener(self._breaker_changed)
        self.retry = RetryPolicy(policy.retry, rand) if policy.retry is not None else None
        self.bulkhead = Bulkhead(policy.bulkhead, clock) if policy.bulkhead is not None else None
        self.fallback: Fallback | None = policy.fallback
        self.fallback_codes = frozenset(
            (self.fallback.on if self.fallback is not None and self.fallback.on else None)
            or DEFAULT_FALLBACK_CODES
        )
        failure_codes = set(self.fallback_codes) | {"timeout", "no_such_actor"}
        if policy.breaker is not None:
            failure_codes |= set(policy.breaker.failure_codes)
        if policy.retry is not None:
            failure_codes |= set(policy.retry.on)
        self._failure_codes = frozenset(failure_codes)
        self._static: tuple[str, Any] | None = None
        self.last_good: Any = None
        self._waiters: dict[str, Callable[[], object]] = {}
        self.counts: dict[str, int] = {
            "calls": 0, "ok": 0, "failed": 0, "business_errors": 0, "retries": 0,
            "degraded": 0, "bulkhead_rejected": 0,
        }  # fmt: skip

    # -- events ---------------------------------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        self._emit(name, {"route": self.name, "caller": self.caller, "target": self.target,
                          **fields})  # fmt: skip

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def _breaker_changed(self, route: str, old: BreakerState, new: BreakerState, why: str) -> None:
        self.event("breaker_state_changed", old=old.value, new=new.value, reason=why)

    # -- bulkhead -------------------------------------------------------------------------

    def enter(self, request_id: str, deadline: float | None) -> Admission:
        """Take a bulkhead slot or a queue place; raises ``BulkheadFull``."""
        assert self.bulkhead is not None
        with self._lock:
            return self.bulkhead.try_enter(request_id, deadline)

    def when_admitted(self, request_id: str, wake: Callable[[], object]) -> None:
        """Call ``wake()`` once the queued ``request_id`` holds a slot (at once if it does)."""
        assert self.bulkhead is not None
        with self._lock:
            if self.bulkhead.state(request_id) != "in_flight":
                self._waiters[request_id] = wake
                return
        wake()

    def give_up_waiting(self, request_id: str) -> None:
        """A queued request's deadline passed: drop it (or its slot, if it just got one)."""
        assert self.bulkhead is not None
        with self._lock:
            self._waiters.pop(request_id, None)
            if self.bulkhead.cancel(request_id):
                return
            in_flight = self.bulkhead.state(request_id) == "in_flight"
        if in_flight:
            self.leave(request_id)

    def leave(self, request_id: str) -> None:
        """Free ``request_id``'s slot and wake the queued requests it lets in."""
        assert self.bulkhead is not None
        with self._lock:
            admitted = self.bulkhead.leave(request_id)
            self.bulkhead.expired()  # their callers time out on their own timers
            wake = [self._waiters.pop(rid) for rid in admitted if rid in self._waiters]
        for fn in wake:
            fn()

    # -- answers --------------------------------------------------------------------------

    def is_failure(self, code: str) -> bool:
        """Whether ``code`` means the call failed (as opposed to a business answer)."""
        return code in self._failure_codes

    def static_reply(self, reply_type: str | None) -> Any:
        """A fresh copy of the static fallback reply, as a message of ``fallback.type``
        (else ``reply_type``). Raises ``ValueError`` if neither names a registered
        message type or the fields do not validate."""
        fb = self.fallback
        assert fb is not None and fb.reply is not None
        type_name = fb.type or reply_type
        if not type_name:
            raise ValueError(
                f"the static fallback of {self.name} names no message type: set "
                "fallback.type, or reply_type on the request class"
            )
        cached = self._static
        if cached is None or cached[0] != type_name:
            try:
                cls = lookup(type_name)
            except InvalidMessage as exc:
                raise ValueError(f"static fallback: {exc.message}") from None
            cached = self._static = (type_name, cls.model_validate(fb.reply))
        return cached[1].model_copy(deep=True)

    def remember(self, value: Any) -> None:
        """Keep a copy of a good reply, if the fallback answers with the last good one."""
        if self.fallback is not None and self.fallback.mode == "last_good":
            self.last_good = _copy(value)

    def last_good_reply(self) -> Any:
        """A fresh copy of the last good reply (``None`` if there was none): callers may
        mark or change what they get without touching the original or later answers."""
        return _copy(self.last_good)

    # -- views ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The breaker's view (see ``CircuitBreaker.snapshot``) plus this route's counts."""
        out: dict[str, Any] = (
            self.breaker.snapshot() if self.breaker is not None else {"route": self.name}
        )
        out["caller"] = self.caller
        out["target"] = self.target
        with self._lock:
            out["counts"] = dict(self.counts)
            if self.bulkhead is not None:
                snap = self.bulkhead.snapshot()
                out["bulkhead"] = {"in_flight": snap.in_flight, "queued": snap.queued,
                                   "rejected_total": snap.rejected_total}  # fmt: skip
        return out


def _copy(value: Any) -> Any:
    copy = getattr(value, "model_copy", None)
    return copy(deep=True) if callable(copy) else value


class RouteTable:
    """Every route of one calling process (an actor, or the host as ``"host"``).

    ``route(target)`` is ``None`` when no policy applies to the route, so calls without
    policies keep the plain, cheapest path.
    """

    def __init__(
        self,
        caller: str,
        policies: Mapping[str, Policy],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rand: random.Random | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.caller = caller
        self.policies = dict(policies)
        self._clock = clock
        self._monotonic = monotonic
        self._rand = rand if rand is not None else random.Random()
        self._emit = on_event or _no_events
        self._routes: dict[str, Route | None] = {}
        self._lock = threading.Lock()

    def route(self, target: str) -> Route | None:
        """The route to ``target``, created on first use; ``None`` if no policy applies."""
        try:
            return self._routes[target]
        except KeyError:
            pass
        with self._lock:
            if target not in self._routes:
                if target in self.policies or route_name(self.caller, target) in self.policies:
                    policy = resolve_policy(self.policies, self.caller, target)
                    self._routes[target] = self._make(target, policy)
                else:
                    self._routes[target] = None
            return self._routes[target]

    def _make(self, target: str, policy: Policy) -> Route:
        return Route(
            self.caller, target, policy, clock=self._clock, monotonic=self._monotonic,
            rand=self._rand, on_event=self._emit,
        )  # fmt: skip

    def routes(self) -> list[Route]:
        with self._lock:
            return [r for r in self._routes.values() if r is not None]

    def breakers(self) -> list[dict[str, Any]]:
        """Snapshots of every route (used so far) that has a circuit breaker."""
        return [r.snapshot() for r in self.routes() if r.breaker is not None]

    def force(self, target: str, state: Literal["open", "closed"]) -> dict[str, Any]:
        """Force the breaker of the route to ``target`` open or closed (an admin action).

        Raises ``LookupError`` when no policy with a breaker applies to the route."""
        route = self.route(target)
        if route is None or route.breaker is None:
            raise LookupError(f"no circuit breaker is configured for {self.caller}->{target}")
        route.breaker.force(state)
        return route.snapshot()
