"""The retry policy: a pure state machine (no clock reads, no threads, no I/O).

Users write, per target actor or per route::

    retry = { max_attempts = 3, backoff = "exponential_jitter", base = 0.01,
              multiplier = 2.0, max = 0.2, on = ["timeout", "crashed", "restarting"] }

Attempts are numbered from 1 (the first call is attempt 1). After attempt ``n`` fails with
error code ``code``, the caller asks :meth:`RetryPolicy.decide` whether attempt ``n + 1``
may start, and after how long. The caller supplies ``now`` and the request's deadline;
the policy never reads a clock. Randomness (for full jitter) is injected.

Only the error codes listed in ``on`` are retried. Business errors (a
:class:`~callboard.errors.BusinessError` subclass's code, e.g. ``no_acceptable_solution``)
are outcomes, not failures: they must never be listed in ``on``, and a retry would only
repeat the same answer. Candidates for ``on`` are runtime codes: ``timeout``,
``restarting``, ``crashed``, ``stopping``, ``no_such_actor``, ``circuit_open``,
``bulkhead_full``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

__all__ = ["Backoff", "RetryConfig", "RetryDecision", "RetryPolicy", "RetryReason"]

Backoff = Literal["fixed", "exponential", "exponential_jitter"]

RetryReason = Literal[
    "retry",
    "not_retryable_code",
    "not_idempotent",
    "attempts_exhausted",
    "deadline",
]


class RetryConfig(BaseModel):
    """``retry = { ... }``: how often and how fast a failed request is tried again.

    * ``max_attempts``: total attempts including the first (``1`` = never retry).
    * ``backoff``: ``fixed`` waits ``base`` every time; ``exponential`` waits
      ``min(max, base * multiplier ** (n - 1))`` after attempt ``n``;
      ``exponential_jitter`` waits uniformly in ``[0, that)`` ("full jitter").
    * ``base`` (seconds, > 0), ``multiplier`` (>= 1), ``max`` (seconds, >= ``base``).
    * ``on``: the error codes that may be retried. Never list business error codes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    max_attempts: StrictInt = Field(default=3, ge=1)
    backoff: Backoff = "exponential_jitter"
    base: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    multiplier: float = Field(default=2.0, ge=1, allow_inf_nan=False)
    max: float = Field(default=0.2, gt=0, allow_inf_nan=False)
    on: tuple[str, ...] = ("timeout", "crashed", "restarting")

    @field_validator("on")
    @classmethod
    def _codes_non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not code.strip():
                raise ValueError("error codes must be non-empty strings")
        return tuple(dict.fromkeys(value))  # drop duplicates, keep order

    @model_validator(mode="after")
    def _max_at_least_base(self) -> Self:
        if self.max < self.base:
            raise ValueError(f"max ({self.max}) must be >= base ({self.base})")
        return self


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What :meth:`RetryPolicy.decide` answers.

    ``retry``: whether another attempt may start. ``delay``: seconds to wait before it
    (``0.0`` when not retrying). ``reason``: ``"retry"`` when retrying, otherwise why not:
    ``not_retryable_code``, ``not_idempotent``, ``attempts_exhausted`` or ``deadline``.
    ``attempt``: when retrying, the number of the next attempt (put it in the envelope's
    ``attempt`` field); when not, the number of the attempt that failed (the last one).
    """

    retry: bool
    delay: float
    reason: RetryReason
    attempt: int


class RetryPolicy:
    """Decides whether, and when, a failed attempt is retried.

    ``rand`` is a :class:`random.Random` or a zero-argument callable returning a float in
    ``[0, 1)``; only ``exponential_jitter`` uses it. Defaults to a fresh ``random.Random()``.
    """

    def __init__(
        self,
        config: RetryConfig,
        rand: random.Random | Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        if rand is None:
            rand = random.Random()
        self._rand: Callable[[], float] = rand.random if isinstance(rand, random.Random) else rand
        self._retryable = frozenset(config.on)

    def cap(self, attempt: int) -> float:
        """The un-jittered delay after attempt ``attempt`` (the jitter's upper bound)."""
        _check_attempt(attempt)
        cfg = self.config
        if cfg.backoff == "fixed":
            return cfg.base
        try:
            raw = cfg.base * cfg.multiplier ** (attempt - 1)
        except OverflowError:
            return cfg.max
        return cfg.max if math.isinf(raw) else min(cfg.max, raw)

    def wait(self, attempt: int) -> float:
        """Seconds to wait after attempt ``attempt`` failed, before attempt ``attempt + 1``.

        ``fixed``: ``base``. ``exponential``: ``min(max, base * multiplier ** (attempt - 1))``.
        ``exponential_jitter``: uniform in ``[0, that)`` (draws one random number).
        """
        cap = self.cap(attempt)
        if self.config.backoff != "exponential_jitter":
            return cap
        r = self._rand()
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"rand() returned {r!r}, expected a float in [0, 1)")
        return min(cap, r * cap)

    def is_retryable(self, code: str) -> bool:
        """Whether ``code`` is one of the declared retryable error codes."""
        return code in self._retryable

    def decide(
        self,
        attempt: int,
        code: str,
        idempotent: bool,
        now: float,
        deadline: float | None,
    ) -> RetryDecision:
        """Attempt ``attempt`` (1-based) failed with ``code`` at time ``now``: try again?

        Checked in this order: the code is retryable, the message is idempotent, attempts
        remain, and the next attempt would start strictly before ``deadline``
        (``now + delay >= deadline`` means no retry: no attempt starts at or after the
        deadline). ``deadline=None`` means no deadline. The jitter is drawn only once the
        first three checks have passed.
        """
        _check_attempt(attempt)
        if code not in self._retryable:
            return RetryDecision(False, 0.0, "not_retryable_code", attempt)
        if not idempotent:
            return RetryDecision(False, 0.0, "not_idempotent", attempt)
        if attempt >= self.config.max_attempts:
            return RetryDecision(False, 0.0, "attempts_exhausted", attempt)
        delay = self.wait(attempt)
        if deadline is not None and now + delay >= deadline:
            return RetryDecision(False, 0.0, "deadline", attempt)
        return RetryDecision(True, delay, "retry", attempt + 1)


def _check_attempt(attempt: int) -> None:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt!r}")
