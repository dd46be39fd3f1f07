"""The event bus protocol: publishers, the ``bus`` actor and subscribers.

An event travels as its own type, version and fields (the bus never needs the class).
Deliveries are batched per subscriber up to its credit window; the subscriber returns the
credit with :class:`AckEvents` once it has handled them, so a slow subscriber only ever
fills its own bounded buffer at the bus, never the bus's mailbox or its own.

Publisher -> bus:   :class:`Publish` (tell, or ask -> :class:`Published`; business error
                    ``subscriber_full`` when a ``reject`` subscriber was full)
Subscriber -> bus:  :class:`Subscribe` / :class:`Unsubscribe`, :class:`AckEvents`;
                    the host polls: :class:`Poll` -> :class:`Events`
Bus -> subscriber:  :class:`Events`
Anyone -> bus:      :class:`RouteMessage` -> :class:`Routed` (content-based routing),
                    :class:`GetBusStats` -> :class:`BusStats`
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from callboard.errors import BusinessError
from callboard.messages import Message

__all__ = [
    "AckEvents",
    "BusStats",
    "EventItem",
    "Events",
    "GetBusStats",
    "Poll",
    "Publish",
    "Published",
    "RouteMessage",
    "Routed",
    "Subscribe",
    "Subscribed",
    "SubscriberFull",
    "Unsubscribe",
]

_B = "callboard.bus."

Overflow = Literal["drop_oldest", "reject", "dead_letter"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventItem(_Model):
    topic: str
    type: str
    version: int = 1
    data: Any = None
    id: str = ""
    seq: int = 0
    """Per subscription, from 1: the order of publication."""
    correlation_id: str | None = None


class Publish(Message):
    type_name: ClassVar[str] = _B + "Publish"
    reply_type: ClassVar[str | None] = _B + "Published"
    event: EventItem


class Published(Message):
    type_name: ClassVar[str] = _B + "Published"
    subscribers: int
    """Subscriptions whose pattern matched (including durable ones)."""
    rejected: int = 0


class SubscriberFull(BusinessError):
    """A subscriber with overflow ``reject`` had no room (code ``subscriber_full``); the
    other subscribers got the event. ``details["subscriptions"]`` names the full ones."""


class Subscribe(Message):
    """``subscriber``: the subscribing actor's id, or ``None`` for a host subscription
    (polled). Re-subscribing the same (subscriber, pattern) resumes the subscription."""

    type_name: ClassVar[str] = _B + "Subscribe"
    reply_type: ClassVar[str | None] = _B + "Subscribed"
    pattern: str
    subscriber: str | None = None
    buffer: int | None = Field(None, ge=1)
    window: int | None = Field(None, ge=1)
    overflow: Overflow | None = None


class Subscribed(Message):
    type_name: ClassVar[str] = _B + "Subscribed"
    sub_id: str


class Unsubscribe(Message):
    type_name: ClassVar[str] = _B + "Unsubscribe"
    sub_id: str


class Events(Message):
    type_name: ClassVar[str] = _B + "Events"
    sub_id: str
    items: list[EventItem]
    dropped: int = 0
    """Events this subscription lost to its overflow policy so far (never silent)."""
    epoch: str = ""
    batch: int = 0
    """Batches are numbered from 1 within an ``epoch`` (one per subscriber incarnation):
    the transport may reorder two sends, the subscriber puts them back in order."""


class AckEvents(Message):
    type_name: ClassVar[str] = _B + "AckEvents"
    sub_id: str
    count: int = Field(ge=0)


class Poll(Message):
    """Host subscriptions: acknowledge ``ack`` events, then wait up to ``wait`` seconds
    for at most ``max`` more."""

    type_name: ClassVar[str] = _B + "Poll"
    reply_type: ClassVar[str | None] = _B + "Events"
    sub_id: str
    ack: int = Field(0, ge=0)
    max: int = Field(100, ge=1, le=10_000)
    wait: float = Field(1.0, ge=0, le=60)


class RouteMessage(Message):
    type_name: ClassVar[str] = _B + "RouteMessage"
    reply_type: ClassVar[str | None] = _B + "Routed"
    msg_type: str
    msg_version: int = 1
    data: Any = None
    id: str = ""
    priority: int = Field(0, ge=0, le=9)


class Routed(Message):
    type_name: ClassVar[str] = _B + "Routed"
    destinations: list[str]


class GetBusStats(Message):
    type_name: ClassVar[str] = _B + "GetBusStats"
    idempotent: ClassVar[bool] = True


class BusStats(Message):
    type_name: ClassVar[str] = _B + "BusStats"
    stats: dict[str, Any]
