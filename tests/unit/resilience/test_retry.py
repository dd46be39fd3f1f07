"""The retry policy: waits, stop conditions, retryable codes, idempotency, attempt numbers."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from callboard.resilience import RetryConfig, RetryDecision, RetryPolicy

RETRYABLE = ("timeout", "crashed", "restarting")


def policy(rand: random.Random | None = None, **overrides: object) -> RetryPolicy:
    fields: dict[str, object] = {
        "max_attempts": 3,
        "backoff": "exponential_jitter",
        "base": 0.01,
        "multiplier": 2.0,
        "max": 0.2,
        "on": list(RETRYABLE),
    }
    fields.update(overrides)
    return RetryPolicy(RetryConfig.model_validate(fields), rand or random.Random(0))


# --- config -----------------------------------------------------------------------------


def test_config_as_users_write_it() -> None:
    cfg = RetryConfig.model_validate(
        {
            "max_attempts": 3,
            "backoff": "exponential_jitter",
            "base": 0.01,
            "max": 0.2,
            "on": ["timeout", "crashed", "restarting"],
        }
    )
    assert cfg.multiplier == 2.0
    assert cfg.on == ("timeout", "crashed", "restarting")


def test_config_defaults_are_valid() -> None:
    cfg = RetryConfig()
    assert cfg.max_attempts >= 1 and cfg.max >= cfg.base


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"backoff": "linear"},
        {"base": 0},
        {"base": -0.1},
        {"multiplier": 0.5},
        {"base": 0.5, "max": 0.1},
        {"base": float("nan")},
        {"on": [""]},
        {"retries": 3},
    ],
)
def test_config_rejects_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetryConfig.model_validate(bad)


# --- waits ------------------------------------------------------------------------------


def test_fixed_wait_is_base_every_time() -> None:
    p = policy(backoff="fixed", base=0.05, max=1.0)
    assert [p.wait(n) for n in range(1, 8)] == [0.05] * 7


def test_exponential_wait_grows_then_caps() -> None:
    p = policy(backoff="exponential", base=0.01, multiplier=2.0, max=0.1)
    waits = [p.wait(n) for n in range(1, 7)]
    assert waits == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])


def test_exponential_multiplier_one_is_fixed() -> None:
    p = policy(backoff="exponential", base=0.03, multiplier=1.0, max=1.0)
    assert [p.wait(n) for n in (1, 5, 50)] == pytest.approx([0.03] * 3)


def test_exponential_huge_attempt_does_not_overflow() -> None:
    p = policy(backoff="exponential", base=0.01, multiplier=10.0, max=0.2)
    assert p.wait(100_000) == 0.2


@given(seed=st.integers(min_value=0, max_value=2**32 - 1), attempt=st.integers(1, 200))
def test_jittered_wait_within_bounds(seed: int, attempt: int) -> None:
    p = policy(random.Random(seed), backoff="exponential_jitter", base=0.01, max=0.2)
    cap = min(0.2, 0.01 * 2.0 ** (attempt - 1)) if attempt < 64 else 0.2
    w = p.wait(attempt)
    assert 0.0 <= w <= cap
    assert p.cap(attempt) == pytest.approx(cap)


def test_jitter_is_full_jitter_over_the_whole_range() -> None:
    p = policy(random.Random(1), backoff="exponential_jitter", base=0.1, max=0.1)
    waits = [p.wait(1) for _ in range(2000)]
    assert min(waits) < 0.01 and max(waits) > 0.09  # spread over [0, cap), not [cap/2, cap)


def test_jitter_uses_injected_callable() -> None:
    values = iter([0.0, 0.5, 0.999])
    p = RetryPolicy(RetryConfig(base=0.1, max=0.1), lambda: next(values))
    assert [p.wait(1) for _ in range(3)] == pytest.approx([0.0, 0.05, 0.0999])


def test_jitter_is_reproducible_with_the_same_seed() -> None:
    a, b = policy(random.Random(42)), policy(random.Random(42))
    assert [a.wait(n) for n in range(1, 10)] == [b.wait(n) for n in range(1, 10)]


def test_wait_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        policy().wait(0)


# --- decide -----------------------------------------------------------------------------


def test_retries_declared_code_with_next_attempt_number() -> None:
    p = policy(backoff="fixed", base=0.01, max=0.01)
    d = p.decide(1, "timeout", idempotent=True, now=0.0, deadline=None)
    assert d == RetryDecision(retry=True, delay=0.01, reason="retry", attempt=2)


def test_stops_after_max_attempts() -> None:
    p = policy(max_attempts=3, backoff="fixed")
    attempts = [1]
    while True:
        d = p.decide(attempts[-1], "crashed", idempotent=True, now=0.0, deadline=None)
        if not d.retry:
            break
        attempts.append(d.attempt)
    assert attempts == [1, 2, 3]
    assert d.reason == "attempts_exhausted"
    assert d.attempt == 3 and d.delay == 0.0


def test_max_attempts_one_never_retries() -> None:
    d = policy(max_attempts=1).decide(1, "timeout", idempotent=True, now=0.0, deadline=None)
    assert (d.retry, d.reason) == (False, "attempts_exhausted")


@pytest.mark.parametrize("code", ["no_acceptable_solution", "invalid_message", "boom"])
def test_only_declared_codes_retry(code: str) -> None:
    d = policy().decide(1, code, idempotent=True, now=0.0, deadline=None)
    assert (d.retry, d.reason, d.attempt) == (False, "not_retryable_code", 1)


def test_empty_on_list_never_retries() -> None:
    d = policy(on=[]).decide(1, "timeout", idempotent=True, now=0.0, deadline=None)
    assert d.reason == "not_retryable_code"


def test_never_retries_non_idempotent_messages() -> None:
    d = policy().decide(1, "timeout", idempotent=False, now=0.0, deadline=None)
    assert (d.retry, d.reason) == (False, "not_idempotent")


def test_no_attempt_starts_at_or_after_the_deadline() -> None:
    p = policy(backoff="fixed", base=0.1, max=0.1)
    assert p.decide(1, "timeout", True, now=0.0, deadline=0.1).reason == "deadline"  # equal
    assert p.decide(1, "timeout", True, now=0.05, deadline=0.1).reason == "deadline"
    assert p.decide(1, "timeout", True, now=0.2, deadline=0.1).reason == "deadline"  # past
    d = p.decide(1, "timeout", True, now=0.0, deadline=0.1001)
    assert d.retry and d.delay == 0.1


@given(
    seed=st.integers(0, 2**32 - 1),
    attempt=st.integers(1, 10),
    now=st.floats(0, 100, allow_nan=False),
    budget=st.floats(-1, 1, allow_nan=False),
)
def test_retry_never_starts_past_the_deadline(
    seed: int, attempt: int, now: float, budget: float
) -> None:
    p = policy(random.Random(seed), max_attempts=20)
    deadline = now + budget
    d = p.decide(attempt, "timeout", True, now=now, deadline=deadline)
    if d.retry:
        assert now + d.delay < deadline
        assert d.attempt == attempt + 1
        assert 0.0 <= d.delay <= p.cap(attempt)
    else:
        assert d.reason == "deadline"


def test_check_order_code_before_idempotency_before_attempts() -> None:
    p = policy(max_attempts=1)
    assert p.decide(5, "business", False, 9.0, 1.0).reason == "not_retryable_code"
    assert p.decide(5, "timeout", False, 9.0, 1.0).reason == "not_idempotent"
    assert p.decide(5, "timeout", True, 9.0, 1.0).reason == "attempts_exhausted"


def test_no_randomness_drawn_when_not_retrying() -> None:
    def forbidden() -> float:
        raise AssertionError("rand called")

    p = RetryPolicy(RetryConfig(on=("timeout",)), forbidden)
    p.decide(1, "nope", True, 0.0, None)
    p.decide(1, "timeout", False, 0.0, None)
    p.decide(3, "timeout", True, 0.0, None)


def test_decide_rejects_bad_attempt_numbers() -> None:
    with pytest.raises(ValueError):
        policy().decide(0, "timeout", True, 0.0, None)
