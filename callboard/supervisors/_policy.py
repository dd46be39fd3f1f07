"""Supervisor policy as pure functions and small classes: no processes, no Thespian.

The OTP rules: whether an exited child is restarted (its restart type and exit reason),
and whether a supervisor has restarted too often (the intensity window).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["EXIT_REASONS", "RestartIntensity", "should_restart"]

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
