"""Per-route resilience policies (``[policies]`` in config) and how they combine.

A policy applies to calls *to* a target actor from anyone (``[policies.reward_model]``)
and may be overridden for one route, caller -> target
(``[policies."rejection_sampling->reward_model"]``): the route's keys replace the
target's, key by key. Pure: no processes, unit-tested directly.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from callboard.resilience._breaker import BreakerConfig
from callboard.resilience._bulkhead import BulkheadConfig
from callboard.resilience._retry import RetryConfig

__all__ = ["Fallback", "Policy", "parse_route", "resolve_policy"]

_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}"
_ROUTE = re.compile(rf"^(?:(?P<caller>{_NAME})->)?(?P<target>{_NAME})$")


class Fallback(BaseModel):
    """What a caller gets when the call fails for good (after retries, or breaker open).

    ``static``: ``reply`` (the fields of the reply message), flagged ``degraded``; the
    reply's message type is ``type`` (a registered ``type_name``) or, without it, the
    request class's ``reply_type``. ``substitute``: the same request to ``target``
    (service substitution), flagged ``degraded`` unless ``degraded = false``.
    ``last_good``: the last successful reply on this route, flagged ``degraded``.
    ``error``: the typed error itself (the same as no fallback).

    ``on`` lists the error codes the fallback answers for (default: the runtime's
    failure codes plus ``circuit_open`` and ``bulkhead_full``); business errors always
    reach the caller unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["static", "substitute", "last_good", "error"]
    reply: dict[str, Any] | None = None
    type: str | None = Field(None, min_length=1, max_length=256)
    target: str | None = Field(None, pattern=rf"^{_NAME}$")
    degraded: bool = True
    on: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Fallback:
        if self.mode == "static" and self.reply is None:
            raise ValueError("invalid_fallback: mode 'static' needs a reply table")
        if self.mode == "substitute" and not self.target:
            raise ValueError("invalid_fallback: mode 'substitute' needs a target actor")
        if self.mode != "substitute" and self.target:
            raise ValueError("invalid_fallback: only mode 'substitute' takes a target")
        if self.mode != "static" and (self.reply is not None or self.type is not None):
            raise ValueError("invalid_fallback: only mode 'static' takes a reply and type")
        return self


class Policy(BaseModel):
    """``[policies.<target>]`` or ``[policies."<caller>-><target>"]``; every key optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float | None = Field(None, gt=0)
    retry: RetryConfig | None = None
    breaker: BreakerConfig | None = None
    fallback: Fallback | None = None
    bulkhead: BulkheadConfig | None = None


def parse_route(key: str) -> tuple[str | None, str]:
    """``"a->b"`` -> ``("a", "b")``; ``"b"`` -> ``(None, "b")``; ``ValueError`` otherwise."""
    match = _ROUTE.match(key)
    if match is None:
        raise ValueError(
            f"invalid_route: {key!r} is neither '<target>' nor '<caller>-><target>'"
        )
    return match.group("caller"), match.group("target")


def resolve_policy(policies: dict[str, Policy], caller: str | None, target: str) -> Policy:
    """The policy for a call from ``caller`` (None: the host) to ``target``: the target's
    policy with the route's keys laid over it (keys the route sets win)."""
    base = policies.get(target)
    route = policies.get(f"{caller}->{target}") if caller else None
    if route is None:
        return base or Policy()
    if base is None:
        return route
    overrides = {k: getattr(route, k) for k in route.model_fields_set}
    return base.model_copy(update=overrides)
