"""The host's side of the bus and the queues: ``System.publish``, ``subscribe``,
``enqueue``, dead letters, stats and routing (mixed into :class:`callboard.System`).

Every call is a request to the ``bus`` or a ``queue.<name>`` actor through
``System.ask``, so it has a deadline and the same errors (``NoSuchActor`` when the
service is not configured). A host subscription is *polled*: the bus buffers its events
(bounded, with the overflow policy) and each poll acknowledges what the previous one
returned, so a host that reads slowly loses events by policy, counted, never silently.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from callboard.actors._messaging import BUS, event_item, queue_item, route_request
from callboard.bus._protocol import (
    Events,
    Poll,
    Publish,
    Published,
    Routed,
    Subscribe,
    Unsubscribe,
)
from callboard.bus._topics import validate_pattern, validate_topic
from callboard.config._messaging import queue_actor
from callboard.errors import CallboardError, InvalidMessage, RemoteError
from callboard.messages import Message, lookup
from callboard.queues._protocol import (
    Count,
    DeadLetters,
    Enqueue,
    Enqueued,
    EnqueueMany,
    GetDeadLetters,
    GetQueueStats,
    PurgeDeadLetters,
    QueueStatsReply,
    ReplayDeadLetters,
)

__all__ = ["MessagingAPI", "RawEvent", "Subscription"]


class _Asker(Protocol):
    def ask(self, target: str, msg: Message, timeout: float | None = None) -> Any: ...
    def tell(self, target: str, msg: Message) -> None: ...


class RawEvent(BaseModel):
    """An event whose message type this process does not know (its module was never
    imported here): its type name, version and fields, as published."""

    model_config = ConfigDict(frozen=True)

    type: str
    version: int
    data: Any


class Subscription:
    """A host subscription: iterate it for ``(topic, event)`` pairs, in publication order.

    ``for topic, event in sub: ...`` blocks until events arrive and ends once
    :meth:`close` was called. :meth:`get` waits at most ``timeout`` seconds. ``dropped``
    is how many events the bus dropped for this subscription (overflow ``drop_oldest``).
    With ``callback``, a thread of its own calls ``callback(topic, event)`` for each
    event (an exception in the callback is logged and counted in ``callback_errors``,
    and the thread carries on).
    """

    def __init__(self, system: _Asker, sub_id: str, pattern: str, poll_max: int,
                 callback: Callable[[str, Any], None] | None = None) -> None:  # fmt: skip
        self._system = system
        self.sub_id = sub_id
        self.pattern = pattern
        self._max = poll_max
        self._ready: deque[tuple[str, Any]] = deque()
        self._unacked = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.dropped = 0
        self.callback_errors = 0
        self._thread: threading.Thread | None = None
        if callback is not None:
            self._thread = threading.Thread(
                target=self._run, args=(callback,), name=f"callboard-sub-{pattern}", daemon=True
            )
            self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next ``(topic, event)``, waiting up to ``timeout`` seconds (``None``:
        until one arrives or the subscription is closed); ``None`` if none came."""
        give_up = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._ready:
                if self.closed:
                    return None
                left = 5.0 if give_up is None else give_up - time.monotonic()
                if left <= 0:
                    return None
                self._fill(min(left, 5.0))
            return self._ready.popleft()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        while True:
            got = self.get(None)
            if got is None:
                return
            yield got

    def _fill(self, wait: float) -> None:
        ack, self._unacked = self._unacked, 0
        try:
            reply = self._system.ask(
                BUS, Poll(sub_id=self.sub_id, ack=ack, max=self._max, wait=wait),
                timeout=wait + 5.0,
            )  # fmt: skip
        except (RemoteError, CallboardError):
            if self.closed:
                return
            raise
        assert isinstance(reply, Events)
        self.dropped = reply.dropped
        self._unacked = len(reply.items)
        for item in reply.items:
            self._ready.append((item.topic, decode_event(item.type, item.version, item.data)))

    def _run(self, callback: Callable[[str, Any], None]) -> None:
        from callboard.observability.logging import get_logger

        while not self.closed:
            try:
                got = self.get(1.0)
            except (RemoteError, CallboardError) as exc:
                if self.closed:
                    return
                get_logger().warning("subscription_poll_failed", pattern=self.pattern,
                                     error=str(exc))  # fmt: skip
                self._closed.wait(0.5)  # the bus may be restarting: try again shortly
                continue
            if got is None:
                continue
            try:
                callback(*got)
            except Exception as exc:
                self.callback_errors += 1
                get_logger().error("subscription_callback_failed", pattern=self.pattern,
                                   error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def close(self) -> None:
        """Stop the subscription (idempotent); the bus forgets it."""
        if self.closed:
            return
        self._closed.set()
        with contextlib.suppress(CallboardError, RemoteError):
            self._system.tell(BUS, Unsubscribe(sub_id=self.sub_id))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_event(type_name: str, version: int, data: Any) -> Any:
    try:
        return lookup(type_name).from_wire(version, data)
    except InvalidMessage:
        return RawEvent(type=type_name, version=version, data=data)


class MessagingAPI(_Asker):
    """``System``'s messaging calls; see the module docstring."""

    _subscriptions: list[Subscription]

    # -- the bus ------------------------------------------------------------------------------

    def publish(self, topic: str, event: Message, timeout: float | None = None) -> int:
        """Publish ``event`` on ``topic``; returns how many subscriptions it reached.
        Raises ``InvalidTopic`` (a ``ValueError``), ``RemoteError("subscriber_full")``
        when a subscriber with overflow ``reject`` had no room (the others got it), and
        ``NoSuchActor("bus")`` when the system runs no bus."""
        reply = self.ask(BUS, Publish(event=event_item(validate_topic(topic), event, None)),
                         timeout)  # fmt: skip
        return reply.subscribers if isinstance(reply, Published) else 0

    def subscribe(
        self, pattern: str, callback: Callable[[str, Any], None] | None = None, *,
        buffer: int | None = None, overflow: str | None = None, poll_max: int = 100,
    ) -> Subscription:  # fmt: skip
        """Subscribe to ``pattern``: a :class:`Subscription` to iterate, or with
        ``callback`` called for each ``(topic, event)`` on a thread of its own. Closed
        by ``close()`` (or ``System.stop``)."""
        req = Subscribe.model_validate({"pattern": validate_pattern(pattern), "subscriber": None,
                                        "buffer": buffer, "overflow": overflow})  # fmt: skip
        reply = self.ask(BUS, req)
        sub = Subscription(self, reply.sub_id, pattern, poll_max, callback)
        self._subscriptions.append(sub)
        return sub

    def route(self, msg: Message, timeout: float | None = None) -> list[str]:
        """Send ``msg`` wherever the ``[[routing]]`` rules say; returns the destinations
        (``queue:<name>``, ``topic:<topic>``), empty when no rule matched."""
        reply = self.ask(BUS, route_request(msg), timeout)
        return list(reply.destinations) if isinstance(reply, Routed) else []

    def bus_stats(self, timeout: float | None = None) -> dict[str, Any]:
        """Published count and every subscription's buffer counters (delivered, dropped,
        rejected, dead_lettered, lost, in flight, depth)."""
        from callboard.bus._protocol import BusStats, GetBusStats

        reply = self.ask(BUS, GetBusStats(), timeout)
        return dict(reply.stats) if isinstance(reply, BusStats) else {}

    # -- queues -------------------------------------------------------------------------------

    def enqueue(
        self, queue: str, msg: Message, priority: int = 0, msg_id: str | None = None,
        timeout: float | None = None,
    ) -> str:  # fmt: skip
        """Put ``msg`` on ``queue`` (priority 0-9, 9 first) and return its id once stored
        (durable queues: on disk). The same ``msg_id`` again within the queue's
        ``dedupe_window`` is dropped as a duplicate (and counted). Raises
        ``RemoteError("queue_full")`` (overflow ``reject``, or ``block`` past the
        deadline) and ``NoSuchActor("queue.<name>")`` for an unknown queue."""
        item = queue_item(msg, priority, msg_id, None)
        reply = self.ask(queue_actor(queue), Enqueue(item=item), timeout)
        return reply.ids[0] if isinstance(reply, Enqueued) else item.id

    def enqueue_many(
        self, queue: str, msgs: list[Message], priority: int = 0,
        timeout: float | None = None, ids: list[str] | None = None,
    ) -> list[str]:  # fmt: skip
        """Put several messages on ``queue`` in one request (one transaction); returns
        their ids in order. ``ids`` (one per message) make the batch idempotent: sending
        it again with the same ids (after a timeout, or a ``queue_full`` whose details list
        the ids stored, ``accepted``, and not, ``full``) stores each message once. Raises
        ``ValueError`` if ``ids`` does not match ``msgs`` one to one."""
        if ids is not None and (len(ids) != len(msgs) or len(set(ids)) != len(ids)):
            raise ValueError("ids must give one distinct id per message")
        items = [queue_item(m, priority, ids[i] if ids else None, None)
                 for i, m in enumerate(msgs)]  # fmt: skip
        reply = self.ask(queue_actor(queue), EnqueueMany(items=items), timeout)
        return list(reply.ids) if isinstance(reply, Enqueued) else [i.id for i in items]

    def queue_stats(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """Depth per priority, ready, in flight (per consumer), consumers and their
        credit, dead letters, and the totals (enqueued, acked, redelivered, expired,
        duplicates, rejected, dead-lettered, replayed)."""
        reply = self.ask(queue_actor(queue), GetQueueStats(), timeout)
        return dict(reply.stats) if isinstance(reply, QueueStatsReply) else {}

    def dead_letters(
        self, queue: str, limit: int = 100, offset: int = 0, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Dead letters of ``queue``, oldest first: ``id``, ``type``, ``data`` (the
        message's fields), ``reason``, ``detail``, ``deliveries``, ``dead_at`` and the
        message's ``history``. ``dead_letters("dead_letters")``: what could not be
        delivered anywhere (dead targets, full subscribers)."""
        reply = self.ask(queue_actor(queue), GetDeadLetters(limit=limit, offset=offset), timeout)
        return [d.model_dump() for d in reply.items] if isinstance(reply, DeadLetters) else []

    def replay_dead_letters(
        self, queue: str, ids: list[str] | None = None, timeout: float | None = None
    ) -> int:
        """Put dead letters (all, or ``ids``) back on the queue; returns how many."""
        reply = self.ask(queue_actor(queue), ReplayDeadLetters(ids=ids), timeout)
        return reply.count if isinstance(reply, Count) else 0

    def purge_dead_letters(
        self, queue: str, ids: list[str] | None = None, timeout: float | None = None
    ) -> int:
        """Delete dead letters (all, or ``ids``); returns how many."""
        reply = self.ask(queue_actor(queue), PurgeDeadLetters(ids=ids), timeout)
        return reply.count if isinstance(reply, Count) else 0

    def _close_subscriptions(self) -> None:
        for sub in list(self._subscriptions):
            sub._closed.set()  # the system is going: no unsubscribe round trip
        self._subscriptions.clear()

