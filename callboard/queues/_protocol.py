"""The queue protocol: the messages between producers, a queue actor and its consumers.

A queued message travels as an :class:`Item`: its own type, version and fields, so the
queue never needs the message class (it stores the encoded fields as bytes). Deliveries
and settlements are batched: one transport message carries up to a consumer's credit.

Producer -> queue:  :class:`Enqueue` / :class:`EnqueueMany` -> :class:`Enqueued`
                    (business errors ``queue_full``, ``invalid_item``)
Consumer -> queue:  :class:`Consume` (register with a credit), :class:`Settle` (acks and
                    nacks, which return credit)
Queue -> consumer:  :class:`Deliveries`
Admin  -> queue:    :class:`GetQueueStats`, :class:`GetDeadLetters`, :class:`ReplayDeadLetters`,
                    :class:`PurgeDeadLetters`
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from callboard.errors import BusinessError
from callboard.messages import Message

__all__ = [
    "AddDeadLetter",
    "Consume",
    "Consuming",
    "Count",
    "DeadLetterInfo",
    "DeadLetters",
    "Deliveries",
    "DeliveryItem",
    "Enqueue",
    "EnqueueMany",
    "Enqueued",
    "GetDeadLetters",
    "GetQueueStats",
    "Item",
    "Nack",
    "PurgeDeadLetters",
    "QueueFull",
    "QueueStatsReply",
    "ReplayDeadLetters",
    "Settle",
    "Settled",
]

_Q = "callboard.queues."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Item(_Model):
    """One message to enqueue: ``id`` (the idempotency key), its ``type``/``version`` and
    its fields (``data``), ``priority`` 0-9 (9 first) and small ``headers``."""

    id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=256)
    version: int = Field(1, ge=1)
    data: Any = None
    priority: int = Field(0, ge=0, le=9)
    headers: dict[str, str] = Field(default_factory=dict)


class Enqueue(Message):
    type_name: ClassVar[str] = _Q + "Enqueue"
    idempotent: ClassVar[bool] = True  # by item id: a duplicate is recognised and dropped
    reply_type: ClassVar[str | None] = _Q + "Enqueued"
    item: Item


class EnqueueMany(Message):
    type_name: ClassVar[str] = _Q + "EnqueueMany"
    idempotent: ClassVar[bool] = True
    reply_type: ClassVar[str | None] = _Q + "Enqueued"
    items: list[Item] = Field(min_length=1, max_length=10_000)


class Enqueued(Message):
    """Per item, in order: ``accepted`` or ``duplicate`` (seen within the dedupe window)."""

    type_name: ClassVar[str] = _Q + "Enqueued"
    ids: list[str]
    statuses: list[str]


class QueueFull(BusinessError):
    """The queue holds ``max_length`` messages (code ``queue_full``); with overflow
    ``block``, also when no room freed up before the request's deadline."""


class Consume(Message):
    """A consumer (``consumer``: its actor id) takes up to ``prefetch`` unacknowledged
    messages at a time. Sent again after either side restarts."""

    type_name: ClassVar[str] = _Q + "Consume"
    consumer: str
    prefetch: int = Field(100, ge=1, le=10_000)


class Consuming(Message):
    type_name: ClassVar[str] = _Q + "Consuming"
    queue: str


class DeliveryItem(_Model):
    id: str
    type: str
    version: int
    data: Any = None
    priority: int = 0
    deliveries: int = 1
    """How many times this message has been handed out, this time included."""
    headers: dict[str, str] = Field(default_factory=dict)


class Deliveries(Message):
    type_name: ClassVar[str] = _Q + "Deliveries"
    queue: str
    items: list[DeliveryItem]
    epoch: str = ""
    batch: int = 0
    """Numbered from 1 per consumer registration (``epoch``), so the consumer handles
    batches in the order they were sent even if the transport reorders them."""


class Nack(_Model):
    id: str
    requeue: bool = True
    reason: str = "nacked"
    detail: str = ""


class Settle(Message):
    """A consumer's outcomes: ``acks`` (handled: delete) and ``nacks`` (requeue, or dead
    letter with a reason). Settled messages return their credit."""

    type_name: ClassVar[str] = _Q + "Settle"
    consumer: str
    acks: list[str] = Field(default_factory=list)
    nacks: list[Nack] = Field(default_factory=list)


class Settled(Message):
    type_name: ClassVar[str] = _Q + "Settled"
    acked: int
    nacked: int


class GetQueueStats(Message):
    type_name: ClassVar[str] = _Q + "GetQueueStats"
    idempotent: ClassVar[bool] = True


class QueueStatsReply(Message):
    type_name: ClassVar[str] = _Q + "QueueStatsReply"
    stats: dict[str, Any]


class GetDeadLetters(Message):
    type_name: ClassVar[str] = _Q + "GetDeadLetters"
    idempotent: ClassVar[bool] = True
    limit: int = Field(100, ge=1, le=10_000)
    offset: int = Field(0, ge=0)


class DeadLetterInfo(_Model):
    id: str
    type: str
    version: int
    data: Any = None
    priority: int
    reason: str
    detail: str
    deliveries: int
    dead_at: float
    history: list[dict[str, Any]]


class DeadLetters(Message):
    type_name: ClassVar[str] = _Q + "DeadLetters"
    items: list[DeadLetterInfo]


class ReplayDeadLetters(Message):
    type_name: ClassVar[str] = _Q + "ReplayDeadLetters"
    ids: list[str] | None = None


class PurgeDeadLetters(Message):
    type_name: ClassVar[str] = _Q + "PurgeDeadLetters"
    ids: list[str] | None = None


class AddDeadLetter(Message):
    """Keep ``item`` as a dead letter of this queue straight away (e.g. an event a full
    subscriber could not take)."""

    type_name: ClassVar[str] = _Q + "AddDeadLetter"
    item: Item
    reason: str
    detail: str = ""


class Count(Message):
    type_name: ClassVar[str] = _Q + "Count"
    count: int
