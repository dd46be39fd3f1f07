"""Supervisor policy as pure functions and small classes: no processes, no Thespian.

The OTP rules: whether an exited child is restarted (its restart type and exit reason),
and whether a supervisor has restarted too often (the intensity window).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = [
    "EXIT_REASONS",
    "RestartIntensity",
    "auto_shutdown_triggered",
    "backoff_delay",
    "restart_plan",
    "should_restart",
]

EXIT_REASONS = ("normal", "shutdown", "killed", "error", "timeout")
"""Why a child exited. ``killed``: it vanished (SIGKILL, OOM) without telling its parent."""


def should_restart(restart: str, reason: str) -> bool:
    """OTP: permanent always; transient unless ``normal``/``shutdown``; temporary never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return reason not in ("normal", "shutdown")
    if restart == "temporary":
        return False
    raise ValueError(f"invalid_restart_type: {restart!r}")


class RestartIntensity:
    """Sliding window: more than ``intensity`` restarts within ``period`` seconds is too many.

    :meth:`record` notes one restart and answers whether it is still allowed, exactly as
    OTP's ``add_restart``: the restart that makes the count exceed ``intensity`` within
    the window is refused (so ``intensity = 0`` refuses the first one).
    """

    def __init__(
        self, intensity: int, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if intensity < 0:
            raise ValueError("invalid_intensity: must be >= 0")
        if period <= 0:
            raise ValueError("invalid_period: must be > 0")
        self.intensity = intensity
        self.period = period
        self._clock = clock
        self._times: deque[float] = deque()

    def record(self) -> bool:
        now = self._clock()
        self._times.append(now)
        # OTP keeps restarts with R >= Now - Period: one exactly `period` old still counts.
        while self._times and self._times[0] < now - self.period:
            self._times.popleft()
        return len(self._times) <= self.intensity

    @property
    def recent(self) -> int:
        """Restarts counted in the current window."""
        now = self._clock()
        return sum(1 for t in self._times if t >= now - self.period)


def restart_plan(strategy: str, order: list[str], dead: str) -> tuple[list[str], list[str]]:
    """Which children to terminate (in that order) and which to restart (in that order)
    after ``dead`` exited, for a supervisor whose children started in ``order``.

    one_for_one / simple_one_for_one: only ``dead``. one_for_all: terminate the others in
    reverse start order, restart all in start order. rest_for_one: terminate those started
    after ``dead`` in reverse order, restart ``dead`` and those after it in start order.
    """
    if strategy in ("one_for_one", "simple_one_for_one"):
        return [], [dead]
    if strategy == "one_for_all":
        return [c for c in reversed(order) if c != dead], list(order)
    if strategy == "rest_for_one":
        after = order[order.index(dead) + 1 :]
        return list(reversed(after)), [dead, *after]
    raise ValueError(f"invalid_strategy: {strategy!r}")


def backoff_delay(
    attempt: int, minimum: float, maximum: float, jitter: float, rand: Callable[[], float]
) -> float:
    """Delay before restart number ``attempt`` (0-based) of a child:
    ``min(max, min * 2**attempt) * (1 + jitter * rand())``, with ``rand()`` in [0, 1)."""
    if minimum <= 0:
        return 0.0
    base = min(maximum, minimum * (2 ** min(attempt, 64)))
    return float(base * (1.0 + jitter * rand()))


def auto_shutdown_triggered(
    auto_shutdown: str, reason: str, restart: str, significant_left: int
) -> bool:
    """Whether a significant child that exited *by itself* with ``reason`` shuts its
    supervisor down (OTP 24 ``auto_shutdown``).

    A significant child counts as terminated when it is temporary (any reason) or transient
    exiting ``normal``/``shutdown``; ``significant_left`` is how many other significant
    children still run. ``any_significant``: the first such exit; ``all_significant``: the
    last. A child the supervisor terminated itself never triggers it (the caller checks).
    """
    if auto_shutdown == "never":
        return False
    done = restart == "temporary" or (restart == "transient" and reason in ("normal", "shutdown"))
    if not done:
        return False
    if auto_shutdown == "any_significant":
        return True
    if auto_shutdown == "all_significant":
        return significant_left == 0
    raise ValueError(f"invalid_auto_shutdown: {auto_shutdown!r}")
