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
from callboard.resilience._call import (
    Attempt,
    Backoff,
    CallResult,
    Effect,
    Outcome,
    Queue,
    error_code,
    guarded_call,
)
from callboard.resilience._policy import Fallback, Policy, parse_route, resolve_policy
from callboard.resilience._retry import RetryConfig, RetryDecision, RetryPolicy
from callboard.resilience._routes import HOST, Route, RouteTable, route_name

__all__ = [
    "HOST",
    "Attempt",
    "Backoff",
    "BreakerConfig",
    "BreakerState",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadFull",
    "BulkheadSnapshot",
    "CallResult",
    "CircuitBreaker",
    "CircuitOpen",
    "Effect",
    "Fallback",
    "Outcome",
    "Permit",
    "Policy",
    "Queue",
    "RetryConfig",
    "RetryDecision",
    "RetryPolicy",
    "Route",
    "RouteTable",
    "error_code",
    "guarded_call",
    "parse_route",
    "resolve_policy",
    "route_name",
]
