"""``Envelope``: the header every message travels in, and the ids and trace context in it."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Envelope", "Kind", "child_traceparent", "new_id"]

Kind = Literal["tell", "ask", "reply", "error"]
"""``tell``: no reply wanted. ``ask``: the sender waits for a ``reply`` or ``error``."""

_TRACEPARENT = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

# Process-unique prefix + counter: unique across processes (pid + random), and far cheaper
# than uuid4 on the hot path. Re-seeded after fork so children never repeat the parent's ids.
_prefix = ""
_counter: itertools.count[int] = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = f"{secrets.token_hex(4)}{os.getpid():x}-"
    _counter = itertools.count(1)


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A new message id, unique across the processes of a host."""
    return f"{_prefix}{next(_counter):x}"


def child_traceparent(parent: str | None) -> str:
    """A W3C ``traceparent`` for a new hop: ``parent``'s trace id (or a new one), a new span."""
    if parent:
        return f"00-{parent[3:35]}-{secrets.token_hex(8)}-{parent[-2:]}"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class Envelope(BaseModel):
    """The header around a message payload.

    ``correlation_id`` names the whole conversation (inherited hop to hop); ``causation_id``
    is the id of the message that caused this one, and a reply's ``causation_id`` is its
    request's ``id``, which is how replies are matched. ``deadline`` is absolute (epoch
    seconds) so every hop can tell how much time is left. ``priority`` 0-9, higher first.
    ``attempt`` numbers the tries of one request (retries send a new envelope, same
    correlation id, ``attempt`` 2, 3, ...).
    """

    # Strict: a header is machine-written, so "1" for an int or bytes for a str is a bug.
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Kind
    id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=256)
    version: int = Field(1, ge=1)
    correlation_id: str | None = Field(None, max_length=128)
    causation_id: str | None = Field(None, max_length=128)
    deadline: float | None = None
    priority: int = Field(0, ge=0, le=9)
    traceparent: str | None = Field(None, pattern=_TRACEPARENT)
    principal: str | None = Field(None, max_length=256)
    attempt: int = Field(1, ge=1)
    target: str | None = Field(None, max_length=128)
    sender: str | None = Field(None, max_length=128)
    payload: Any = None
    degraded: bool = False
    """On a reply: the answer is degraded (a fallback's, or built on one)."""

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left before the deadline (may be negative), or None without one."""
        if self.deadline is None:
            return None
        return self.deadline - (time.time() if now is None else now)
