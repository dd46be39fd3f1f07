"""``[queues]``, ``[bus]`` and ``[[routing]]``: the messaging services' configuration.

Declaring any queue, enabling the bus, or writing a routing rule adds a ``services``
supervisor as the root's first child (so user actors can publish, subscribe and enqueue
from their ``on_start``): the ``bus`` actor and one ``queue.<name>`` actor per queue,
plus ``queue.dead_letters``, where undeliverable messages end up.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEAD_LETTERS",
    "BusSettings",
    "DurableSubscription",
    "QueueSpec",
    "queue_actor",
]

QUEUE_NAME = r"^[A-Za-z0-9_\-]{1,64}$"
DEAD_LETTERS = "dead_letters"
"""The queue that collects messages Thespian could not deliver (the target was dead)."""


def queue_actor(name: str) -> str:
    """The actor id of queue ``name``."""
    return f"queue.{name}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class QueueSpec(_Strict):
    """``[queues.<name>]``: one named queue, its own actor under the ``services`` supervisor."""

    durable: bool = True
    """``true``: SQLite (WAL) at ``path``, kept across restarts; ``false``: in memory."""
    max_length: int = Field(10_000, ge=1)
    """Messages held (ready + delivered but not yet acknowledged) before ``overflow``."""
    overflow: Literal["reject", "block"] = "reject"
    """At ``max_length``: ``reject`` at once (``queue_full``), or ``block`` the producer
    until there is room, within its deadline."""
    max_deliveries: int = Field(5, ge=1)
    """Deliveries before a message that is never acknowledged goes to the dead letters."""
    visibility_timeout: float = Field(30.0, gt=0)
    """Seconds a consumer may hold a message unacknowledged before it is redelivered."""
    fsync: Literal["always", "normal", "off"] = "normal"
    """SQLite ``synchronous``: ``always`` (FULL: survives power loss), ``normal`` (survives
    a crash of any process), ``off`` (fastest; the OS decides)."""
    dedupe_window: float = Field(300.0, ge=0)
    """Seconds an enqueued message id is remembered: the same id again is a duplicate."""
    path: str = ""
    """The SQLite file; default ``<daemon.state_dir>/queues/<name>.sqlite``."""


class DurableSubscription(_Strict):
    """``[bus.durable.<queue>]``: events matching ``pattern`` are also put on queue
    ``<queue>`` (declared under ``[queues]``), whose consumers get them at least once."""

    pattern: str

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        from callboard.bus._topics import validate_pattern

        return validate_pattern(v)


class BusSettings(_Strict):
    """``[bus]``: the event bus actor (publish/subscribe on dotted topics)."""

    enabled: bool = False
    """Run the bus (``true`` in the shipped default config). Durable subscriptions and
    routing rules turn it on too."""
    buffer: int = Field(1000, ge=1)
    """Events held per subscriber before ``overflow`` applies."""
    window: int = Field(64, ge=1)
    """Events sent to a subscriber before it acknowledges them (flow control)."""
    overflow: Literal["drop_oldest", "reject", "dead_letter"] = "drop_oldest"
    """A full subscriber buffer: drop its oldest event, refuse the publisher
    (``subscriber_full``), or put the new event on the dead letters. Always counted."""
    system_events: bool = True
    """Publish supervision, breaker and queue events on ``system.*`` topics."""
    durable: dict[str, DurableSubscription] = Field(default_factory=dict)
    """Durable subscriptions, by the queue that holds their events."""
