"""Fakes for the resilience unit tests: a hand-moved clock, policy and route-table builders
that record events, and small route accessors. Shared by ``test_guarded_call.py`` and
``test_routes.py``.
"""

from __future__ import annotations

import random
from typing import Any

from callboard.resilience import BreakerState, Policy, Route, RouteTable

START = 1024.0  # powers of two keep the fake clock's arithmetic exact

Event = tuple[str, dict[str, Any]]


class FakeClock:
    """One clock for wall time and monotonic time; tests move it by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pol(**raw: Any) -> Policy:
    """A validated ``Policy`` from its config keys (``timeout=``, ``retry=``, ...)."""
    return Policy.model_validate(raw)


def route_table(
    caller: str,
    policies: dict[str, Policy],
    *,
    clock: FakeClock | None = None,
    monotonic: FakeClock | None = None,
    events: list[Event] | None = None,
    seed: int = 5,
) -> RouteTable:
    """A ``RouteTable`` on fake clocks (``monotonic`` defaults to ``clock``, itself to a new
    one) with seeded jitter, appending every event it emits to ``events`` if given."""
    clock = clock if clock is not None else FakeClock()
    sink = events if events is not None else []
    return RouteTable(
        caller,
        policies,
        clock=clock,
        monotonic=monotonic if monotonic is not None else clock,
        rand=random.Random(seed),
        on_event=lambda name, fields: sink.append((name, fields)),
    )


def route_of(table: RouteTable, target: str) -> Route:
    """The table's route to ``target``, which must have a policy."""
    route = table.route(target)
    assert route is not None
    return route


def breaker_state(route: Route) -> BreakerState:
    """The state of ``route``'s breaker, which it must have."""
    assert route.breaker is not None
    return route.breaker.state
