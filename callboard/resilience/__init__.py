"""Resilience policies as pure state machines (injectable clock and randomness).

No threads, no I/O, no Thespian: the actor layer drives these and does the waiting.
"""

from callboard.resilience._breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    Permit,
)
from callboard.resilience._bulkhead import (
    Bulkhead,
    BulkheadConfig,
    BulkheadFull,
    BulkheadSnapshot,
)
from callboard.resilience._policy import Fallback, Policy, parse_route, resolve_policy
from callboard.resilience._retry import RetryConfig, RetryDecision, RetryPolicy

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadFull",
    "BulkheadSnapshot",
    "CircuitBreaker",
    "CircuitOpen",
    "Fallback",
    "Permit",
    "Policy",
    "RetryConfig",
    "RetryDecision",
    "RetryPolicy",
    "parse_route",
    "resolve_policy",
]
