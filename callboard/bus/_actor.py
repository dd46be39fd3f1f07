"""``BusActor``: the event bus, an actor under the ``services`` supervisor.

A shell around :class:`~callboard.bus.SubscriptionIndex` (which subscriptions a topic
reaches) and one :class:`~callboard.bus.SubscriberBuffer` per subscription (bounded,
ordered, with a credit window). Publishing never waits for a subscriber: the event is
offered to each matching buffer (whose overflow policy decides if it is full) and sent in
batches as far as each subscriber's credit allows. A slow subscriber fills only its own
buffer; a crashed one loses only what it held (counted as ``lost``), and gets what was
published meanwhile once it subscribes again.

Durable subscriptions (``[bus.durable.<queue>]``) put matching events on a queue, whose
consumers get them at least once; routing rules (``[[routing]]``) are applied here too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from callboard.actors import Actor, Future, handler
from callboard.bus._buffer import Overflow, SubscriberBuffer
from callboard.bus._protocol import (
    AckEvents,
    BusStats,
    EventItem,
    Events,
    GetBusStats,
    Poll,
    Publish,
    Published,
    Routed,
    RouteMessage,
    Subscribe,
    Subscribed,
    SubscriberFull,
    Unsubscribe,
)
from callboard.bus._topics import SubscriptionIndex, validate_topic
from callboard.config._messaging import DEAD_LETTERS, queue_actor
from callboard.errors import BusinessError, CallboardError, RemoteError
from callboard.messages import Message, new_id
from callboard.queues._protocol import AddDeadLetter, Enqueue, Item
from callboard.queues._routing import Router, RouteRule

__all__ = ["BusActor"]

HOST_SUB_IDLE_S = 60.0
"""A host subscription not polled for this long is dropped (its host went away)."""


class _Tick(Message):
    type_name: ClassVar[str] = "callboard.bus._Tick"


@dataclass
class _Sub:
    sub_id: str
    pattern: str
    subscriber: str | None  # actor id; None: the host (polls)
    address: Any
    buffer: SubscriberBuffer[EventItem]
    seq: int = 0
    epoch: str = field(default_factory=new_id)
    batches: int = 0
    last_poll: float = field(default_factory=time.monotonic)
    poll: Future[bool] | None = None


class BusActor(Actor):
    """Pub/sub on dotted topics; see the module docstring."""

    class Args(BaseModel):
        model_config = ConfigDict(extra="forbid")

        buffer: int = Field(1000, ge=1)
        window: int = Field(64, ge=1)
        overflow: Overflow = "drop_oldest"
        durable: dict[str, str] = Field(default_factory=dict)
        """Queue name -> pattern."""
        routing: list[dict[str, Any]] = Field(default_factory=list)
        dead_letters: bool = True
        """Whether ``queue.dead_letters`` exists (overflow ``dead_letter`` sends there)."""

    def on_start(self) -> None:
        self.index: SubscriptionIndex[str] = SubscriptionIndex()
        self.subs: dict[str, _Sub] = {}
        for queue, pattern in self.args.durable.items():
            self.index.add(pattern, "durable:" + queue)
        self.router = Router([RouteRule.model_validate(r) for r in self.args.routing])
        self.published = 0
        self.schedule(HOST_SUB_IDLE_S / 4, _Tick())

    # -- publishing -------------------------------------------------------------------------

    @handler
    async def on_publish(self, msg: Publish) -> Published:
        return await self._publish(msg.event)

    async def _publish(self, event: EventItem) -> Published:
        validate_topic(event.topic)
        if not event.id:
            event = event.model_copy(update={"id": new_id()})
        self.published += 1
        rejected: list[str] = []
        durable: list[str] = []
        keys = self.index.match(event.topic)
        for key in keys:
            if key.startswith("durable:"):
                durable.append(key.removeprefix("durable:"))
                continue
            sub = self.subs[key]
            sub.seq += 1
            offer = sub.buffer.offer(event.model_copy(update={"seq": sub.seq}))
            if offer.status == "rejected":
                rejected.append(sub.sub_id)
            elif offer.status == "dead_lettered":
                self._dead_letter(event, sub.sub_id)
            self._flush(sub)
        for queue in durable:  # stored before the publisher hears back: at least once
            await self.ask(queue_actor(queue), Enqueue(item=Item(
                id=event.id, type=event.type, version=event.version, data=event.data,
                headers=_headers(event),
            )))  # fmt: skip
        if rejected:
            raise SubscriberFull(
                f"{len(rejected)} subscriber(s) full", {"subscriptions": rejected,
                                                        "subscribers": len(keys)},
            )  # fmt: skip
        return Published(subscribers=len(keys), rejected=0)

    def _dead_letter(self, event: EventItem, sub_id: str) -> None:
        if not self.args.dead_letters:
            return
        headers = {**_headers(event), "subscription": sub_id}
        item = Item(id=f"{event.id}:{sub_id}", type=event.type, version=event.version,
                    data=event.data, headers=headers)  # fmt: skip
        try:
            self.tell(queue_actor(DEAD_LETTERS), AddDeadLetter(
                item=item, reason="subscriber_full", detail=f"{sub_id} had no room"))  # fmt: skip
        except (RemoteError, CallboardError) as exc:
            self.log.warning("dead_letter_lost", subscription=sub_id, error=str(exc))

    # -- subscriptions ----------------------------------------------------------------------

    @handler
    def on_subscribe(self, msg: Subscribe) -> Subscribed:
        a = self.args
        if msg.subscriber is None:
            sub_id = f"host:{new_id()}"
            address = None
        else:
            sub_id = f"{msg.subscriber}:{msg.pattern}"
            address = self._runtime.current_sender
        sub = self.subs.get(sub_id)
        if sub is None:
            buffer: SubscriberBuffer[EventItem] = SubscriberBuffer(
                msg.buffer or a.buffer,
                msg.window or a.window,
                msg.overflow or a.overflow,
            )
            sub = self.subs[sub_id] = _Sub(sub_id, msg.pattern, msg.subscriber, address, buffer)
            self.index.add(msg.pattern, sub_id)
            self.log.info("subscribed", subscription=sub_id, pattern=msg.pattern)
        elif sub.address != address:  # the subscriber restarted: what it held is gone
            lost = sub.buffer.reset_in_flight()
            sub.address = address
            sub.epoch, sub.batches = new_id(), 0
            if lost:
                self.log.warning("events_lost", subscription=sub_id, count=len(lost),
                                 why="subscriber restarted")  # fmt: skip
        self._flush(sub)
        return Subscribed(sub_id=sub_id)

    @handler
    def on_unsubscribe(self, msg: Unsubscribe) -> None:
        sub = self.subs.pop(msg.sub_id, None)
        if sub is not None:
            self.index.remove(msg.sub_id)
            if sub.poll is not None:
                sub.poll.set_result(False)
            self.log.info("unsubscribed", subscription=msg.sub_id)

    @handler
    def on_ack(self, msg: AckEvents) -> None:
        sub = self.subs.get(msg.sub_id)
        if sub is None:
            return
        sub.buffer.ack(min(msg.count, sub.buffer.in_flight))
        self._flush(sub)

    def _flush(self, sub: _Sub) -> None:
        if sub.subscriber is None:
            if sub.poll is not None and sub.buffer.depth:
                sub.poll.set_result(True)
            return
        if sub.address is None:
            return  # restarting: events wait in the buffer
        items = sub.buffer.take()
        if items:
            sub.batches += 1
            events = Events(sub_id=sub.sub_id, items=items, dropped=sub.buffer.dropped,
                            epoch=sub.epoch, batch=sub.batches)  # fmt: skip
            self._runtime.send_to(sub.address, sub.subscriber, events)

    def on_directory(self, changed: list[str]) -> None:
        for sub in list(self.subs.values()):
            if sub.subscriber is None or sub.subscriber not in changed:
                continue
            if sub.subscriber not in self._runtime.directory:  # gone for good
                self.subs.pop(sub.sub_id, None)
                self.index.remove(sub.sub_id)
                continue
            if self._runtime.directory.get(sub.subscriber) != sub.address:
                lost = sub.buffer.reset_in_flight()
                sub.address = None  # until it subscribes again
                if lost:
                    self.log.warning("events_lost", subscription=sub.sub_id, count=len(lost),
                                     why="subscriber exited")  # fmt: skip

    # -- host subscriptions (polled) -----------------------------------------------------------

    @handler
    async def on_poll(self, msg: Poll) -> Events:
        sub = self.subs.get(msg.sub_id)
        if sub is None or sub.subscriber is not None:
            raise UnknownSubscription(f"no host subscription {msg.sub_id!r}",
                                      {"sub_id": msg.sub_id})  # fmt: skip
        sub.last_poll = time.monotonic()
        sub.buffer.ack(min(msg.ack, sub.buffer.in_flight))
        if not sub.buffer.depth and msg.wait > 0:
            left = self.remaining()
            wait = msg.wait if left is None else max(0.0, min(msg.wait, left - 0.05))
            ready: Future[bool] = Future()
            sub.poll = ready
            self.sleep(wait).add_done_callback(lambda _f: _resolve(ready, False))
            await ready
            sub.poll = None
            if msg.sub_id not in self.subs:
                return Events(sub_id=msg.sub_id, items=[], dropped=sub.buffer.dropped)
        sub.buffer.window = msg.max
        items = sub.buffer.take()
        sub.last_poll = time.monotonic()
        return Events(sub_id=sub.sub_id, items=items, dropped=sub.buffer.dropped)

    @handler
    def on_tick(self, msg: _Tick) -> None:
        now = time.monotonic()
        for sub in list(self.subs.values()):
            if (
                sub.subscriber is None
                and sub.poll is None
                and now - sub.last_poll > (HOST_SUB_IDLE_S)
            ):
                self.subs.pop(sub.sub_id, None)
                self.index.remove(sub.sub_id)
                self.log.warning("host_subscription_expired", subscription=sub.sub_id)
        self.schedule(HOST_SUB_IDLE_S / 4, _Tick())

    # -- routing and stats --------------------------------------------------------------------

    @handler
    async def on_route(self, msg: RouteMessage) -> Routed:
        data = msg.data if isinstance(msg.data, dict) else {}
        out: list[str] = []
        for dest in self.router.destinations(msg.msg_type, data):
            if dest.kind == "queue":
                await self.ask(queue_actor(dest.name), Enqueue(item=Item(
                    id=msg.id or new_id(), type=msg.msg_type, version=msg.msg_version,
                    data=msg.data, priority=msg.priority,
                )))  # fmt: skip
            else:
                await self._publish(EventItem(topic=dest.name, type=msg.msg_type,
                                              version=msg.msg_version, data=msg.data,
                                              id=msg.id))  # fmt: skip
            out.append(str(dest))
        return Routed(destinations=out)

    @handler
    def on_stats(self, msg: GetBusStats) -> BusStats:
        return BusStats(stats={
            "published": self.published,
            "durable": dict(self.args.durable),
            "subscriptions": {
                s.sub_id: {"pattern": s.pattern, "subscriber": s.subscriber,
                           "connected": s.address is not None or s.subscriber is None,
                           **s.buffer.snapshot()}
                for s in self.subs.values()
            },
        })  # fmt: skip


class UnknownSubscription(BusinessError):
    """No such host subscription (code ``unknown_subscription``): it was closed, or
    expired after not being polled for a minute, or the bus restarted."""


def _headers(event: EventItem) -> dict[str, str]:
    out = {"topic": event.topic}
    if event.correlation_id:
        out["correlation_id"] = event.correlation_id
    return out


def _resolve(fut: Future[bool], value: bool) -> None:
    fut.set_result(value)
