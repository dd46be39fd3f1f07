"""A circuit breaker as a pure state machine: no threads, no I/O, an injectable clock.

One :class:`CircuitBreaker` guards one route (``caller->target`` or a target name). The
caller asks for a :class:`Permit` before each call and reports the outcome on it::

    permit = breaker.acquire()          # raises CircuitOpen while the circuit is open
    try:
        reply = call()
    except RemoteError as exc:
        permit.failure(exc.code, elapsed)
        raise
    permit.success(elapsed)

States and transitions (``reason`` is what listeners receive):

``closed -> open``        the window holds at least ``min_calls`` calls and the failure
                          rate reaches ``failure_rate`` (``"failure_rate"``) or the
                          slow-call rate reaches ``slow_call_rate`` (``"slow_call_rate"``).
``open -> half_open``     the open wait has elapsed (``"open_wait_elapsed"``); checked
                          lazily whenever the breaker is used or read.
``half_open -> closed``   ``success_threshold`` trials succeeded (``"trials_succeeded"``);
                          the window is emptied and the open wait goes back to ``open_s``.
``half_open -> open``     a trial failed (``"trial_failed"``) or was slow
                          (``"trial_slow"``), or ``half_open_max_s`` passed without a
                          decision (``"half_open_timeout"``). Every reopen from half-open
                          doubles the open wait, capped at ``open_max_s``.
``* -> open / closed``    an admin forced it (``"forced"``), see :meth:`CircuitBreaker.force`.

Decisions worth knowing:

* A call is *slow* when its duration is strictly greater than ``slow_call_s``; slowness is
  counted for successes and failures alike. Error codes not in ``failure_codes``
  (business errors) count as successes.
* In half-open, a slow trial counts as a failed trial: the target is not healthy yet.
* Outcomes of permits handed out before the last state change are ignored (a slow call
  started while closed cannot close or reopen a half-open breaker). Each permit can be
  completed once; later completions are ignored.
* The half-open clock starts when the breaker is first used or read after the open wait
  elapsed, so an idle period never counts as a half-open timeout.
* ``force("open")`` holds the breaker open (no trials) until ``force("closed")``;
  ``force("closed")`` empties the window, resets the open wait and resumes normal
  operation (the breaker can trip again).

The breaker guards its state with a re-entrant lock so callers on several threads get
exactly ``half_open_calls`` trials; listeners run synchronously, in transition order,
while the lock is held (they may read the breaker, but should not block).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from callboard.errors import RemoteError

__all__ = [
    "DEFAULT_FAILURE_CODES",
    "BreakerConfig",
    "BreakerListener",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "Permit",
]

CIRCUIT_OPEN = "circuit_open"

DEFAULT_FAILURE_CODES: tuple[str, ...] = (
    "timeout",
    "crashed",
    "restarting",
    "stopping",
    "not_running",
    "stage_failed",
    "unavailable",
)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


BreakerListener = Callable[[str, BreakerState, BreakerState, str], None]


class BreakerConfig(BaseModel):
    """The ``breaker = { ... }`` table of a policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Literal["count", "time"] = "count"
    size: int = Field(default=20, gt=0, description="calls (count window) or seconds (time)")
    min_calls: int = Field(default=10, ge=1)
    failure_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    slow_call_s: float = Field(default=0.3, gt=0.0)
    slow_call_rate: float = Field(default=0.8, gt=0.0, le=1.0)
    open_s: float = Field(default=1.0, gt=0.0)
    open_max_s: float = Field(default=30.0, gt=0.0)
    half_open_calls: int = Field(default=1, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    half_open_max_s: float = Field(default=5.0, gt=0.0)
    failure_codes: list[str] = Field(default_factory=lambda: list(DEFAULT_FAILURE_CODES))

    @model_validator(mode="after")
    def _consistent(self) -> BreakerConfig:
        if self.open_max_s < self.open_s:
            raise ValueError(f"open_max_s ({self.open_max_s}) must be >= open_s ({self.open_s})")
        if self.window == "count" and self.min_calls > self.size:
            raise ValueError(
                f"min_calls ({self.min_calls}) must be <= size ({self.size}) for a count "
                "window, or the breaker could never trip"
            )
        return self


class CircuitOpen(RemoteError):
    """The circuit for ``route`` is open (or half-open with every trial slot taken); code
    ``circuit_open``. A :class:`~callboard.RemoteError`, so callers handle it by code.

    ``retry_at`` is the number of seconds until the next trial is allowed (``0.0`` when
    half-open: a slot may free at any moment; ``None`` when forced open: no trial is
    scheduled). ``state`` is the breaker's state when the call was refused.
    """

    def __init__(self, route: str, retry_at: float | None, state: BreakerState) -> None:
        self.route = route
        self.retry_at = retry_at
        self.state = state
        when = "forced open" if retry_at is None else f"next trial in {retry_at:.3f}s"
        super().__init__(
            CIRCUIT_OPEN,
            f"circuit for {route!r} is {state.value}; {when}",
            {"route": route, "state": state.value, "retry_at": retry_at},
        )


class Permit:
    """Leave to make one call; report its outcome exactly once."""

    __slots__ = ("_breaker", "_done", "_generation", "trial")

    def __init__(self, breaker: CircuitBreaker, generation: int, trial: bool) -> None:
        self._breaker = breaker
        self._generation = generation
        self._done = False
        self.trial = trial  # True for a half-open trial call

    @property
    def done(self) -> bool:
        return self._done

    @property
    def route(self) -> str:
        return self._breaker.route

    def success(self, duration_s: float = 0.0) -> None:
        """The call succeeded after ``duration_s`` seconds."""
        self._complete(failed=False, duration_s=duration_s, counted=True)

    def failure(self, code: str, duration_s: float = 0.0) -> None:
        """The call failed with error ``code``; codes not in ``failure_codes`` are successes."""
        failed = code in self._breaker.config.failure_codes
        self._complete(failed=failed, duration_s=duration_s, counted=True)

    def release(self) -> None:
        """The outcome is unknown (e.g. cancelled): free the slot without counting."""
        self._complete(failed=False, duration_s=0.0, counted=False)

    def _complete(self, *, failed: bool, duration_s: float, counted: bool) -> None:
        with self._breaker._lock:
            if self._done:
                return
            self._done = True
            self._breaker._on_complete(self, failed, duration_s, counted)


class CircuitBreaker:
    """A circuit breaker for one route. See the module docstring for the state machine."""

    def __init__(
        self,
        route: str,
        config: BreakerConfig | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.route = route
        self.config = config if config is not None else BreakerConfig()
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._lock = threading.RLock()
        self._listeners: list[BreakerListener] = []
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._forced = False
        # Closed: the sliding window of (completed_at, failed, slow).
        self._window: deque[tuple[float, bool, bool]] = deque()
        # Open.
        self._open_wait = self.config.open_s
        self._open_until = 0.0
        self._opened_count = 0
        # Half-open.
        self._half_open_since = 0.0
        self._trials_in_flight = 0
        self._trial_successes = 0

    # -- public API ---------------------------------------------------------------------

    def add_listener(self, fn: BreakerListener) -> None:
        """Call ``fn(route, old_state, new_state, reason)`` on every transition, in order."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: BreakerListener) -> None:
        with self._lock:
            self._listeners.remove(fn)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._refresh(self._clock())
            return self._state

    @property
    def forced(self) -> bool:
        return self._forced

    def acquire(self) -> Permit:
        """A permit for one call, or :class:`CircuitOpen` if the call must not run."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            if self._state is BreakerState.CLOSED:
                return Permit(self, self._generation, trial=False)
            if self._state is BreakerState.HALF_OPEN:
                if self._trials_in_flight < self.config.half_open_calls:
                    self._trials_in_flight += 1
                    return Permit(self, self._generation, trial=True)
                raise CircuitOpen(self.route, 0.0, self._state)
            raise CircuitOpen(self.route, self._next_trial_in(now), self._state)

    def force(self, state: BreakerState | Literal["open", "closed"]) -> None:
        """Admin override. ``"open"`` holds the circuit open (no trials) until
        ``force("closed")``; ``"closed"`` empties the window, resets the open wait to
        ``open_s`` and resumes normal operation."""
        target = BreakerState(state)
        with self._lock:
            now = self._clock()
            if target is BreakerState.OPEN:
                self._forced = True
                if self._state is not BreakerState.OPEN:
                    self._transition(BreakerState.OPEN, "forced", now)
            elif target is BreakerState.CLOSED:
                self._forced = False
                self._open_wait = self.config.open_s
                if self._state is BreakerState.CLOSED:
                    self._window.clear()
                else:
                    self._transition(BreakerState.CLOSED, "forced", now)
            else:
                raise ValueError("a breaker can only be forced 'open' or 'closed'")

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view for ``system.breakers()`` and the admin CLI."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            self._evict(now)
            calls, failures, slow = self._counts()
            next_trial: float | None
            if self._state is BreakerState.CLOSED:
                next_trial = 0.0
            elif self._state is BreakerState.HALF_OPEN:
                next_trial = 0.0  # now, or as soon as a trial slot frees
            else:
                next_trial = self._next_trial_in(now)
            return {
                "route": self.route,
                "state": self._state.value,
                "forced": self._forced,
                "failure_rate": failures / calls if calls else 0.0,
                "slow_call_rate": slow / calls if calls else 0.0,
                "calls_in_window": calls,
                "failures_in_window": failures,
                "slow_calls_in_window": slow,
                "next_trial_s": next_trial,
                "open_wait_s": self._open_wait,
                "opened_count": self._opened_count,
                "trials_in_flight": (
                    self._trials_in_flight if self._state is BreakerState.HALF_OPEN else 0
                ),
                "trial_successes": (
                    self._trial_successes if self._state is BreakerState.HALF_OPEN else 0
                ),
            }

    # -- internals ----------------------------------------------------------------------

    def _next_trial_in(self, now: float) -> float | None:
        if self._forced:
            return None
        return max(0.0, self._open_until - now)

    def _refresh(self, now: float) -> None:
        """Apply the time-driven transitions (open wait over, half-open too long)."""
        if self._state is BreakerState.OPEN and not self._forced and now >= self._open_until:
            self._transition(BreakerState.HALF_OPEN, "open_wait_elapsed", now)
        elif (
            self._state is BreakerState.HALF_OPEN
            and now - self._half_open_since >= self.config.half_open_max_s
        ):
            self._transition(BreakerState.OPEN, "half_open_timeout", now)

    def _evict(self, now: float) -> None:
        if self.config.window == "time":
            horizon = now - self.config.size
            while self._window and self._window[0][0] <= horizon:
                self._window.popleft()
        else:
            while len(self._window) > self.config.size:
                self._window.popleft()

    def _counts(self) -> tuple[int, int, int]:
        failures = sum(1 for _, failed, _ in self._window if failed)
        slow = sum(1 for _, _, is_slow in self._window if is_slow)
        return len(self._window), failures, slow

    def _on_complete(self, permit: Permit, failed: bool, duration_s: float, counted: bool) -> None:
        now = self._clock()
        self._refresh(now)
        if permit._generation != self._generation:
            return  # handed out before the last transition: its outcome is stale
        slow = duration_s > self.config.slow_call_s
        if self._state is BreakerState.HALF_OPEN:
            if not permit.trial:
                return
            self._trials_in_flight -= 1
            if not counted:
                return
            if failed:
                self._transition(BreakerState.OPEN, "trial_failed", now)
            elif slow:
                self._transition(BreakerState.OPEN, "trial_slow", now)
            else:
                self._trial_successes += 1
                if self._trial_successes >= self.config.success_threshold:
                    self._transition(BreakerState.CLOSED, "trials_succeeded", now)
            return
        if self._state is not BreakerState.CLOSED or not counted:
            return
        self._window.append((now, failed, slow))
        self._evict(now)
        calls, failures, slow_calls = self._counts()
        if calls < self.config.min_calls:
            return
        if failures / calls >= self.config.failure_rate:
            self._transition(BreakerState.OPEN, "failure_rate", now)
        elif slow_calls / calls >= self.config.slow_call_rate:
            self._transition(BreakerState.OPEN, "slow_call_rate", now)

    def _transition(self, new: BreakerState, reason: str, now: float) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._trials_in_flight = 0
        self._trial_successes = 0
        if new is BreakerState.OPEN:
            if old is BreakerState.HALF_OPEN and reason != "forced":
                self._open_wait = min(self._open_wait * 2, self.config.open_max_s)
            self._open_until = now + self._open_wait
            self._opened_count += 1
            self._window.clear()
        elif new is BreakerState.HALF_OPEN:
            self._half_open_since = now
        else:
            self._window.clear()
            self._open_wait = self.config.open_s
        for fn in list(self._listeners):
            fn(self.route, old, new, reason)
