"""An actor's side of the event bus and the queues: publish, subscribe, enqueue, consume.

One :class:`Messaging` per hosted actor. It turns the ``Actor`` API into protocol
messages (:mod:`callboard.bus._protocol`, :mod:`callboard.queues._protocol`), keeps the
actor registered with the bus and its queues across restarts of either side (it
re-subscribes / re-registers when the directory shows the service at a new address), and
unpacks batched :class:`Events` and :class:`Deliveries` into handler calls, returning
credit with acknowledgements as the handlers finish.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from callboard.actors._ordering import GAP_WAIT_S, InOrder
from callboard.bus._protocol import AckEvents, EventItem, Events, Publish, Subscribe, Unsubscribe
from callboard.config._messaging import queue_actor
from callboard.errors import BusinessError, InvalidMessage, NoSuchActor
from callboard.messages import Envelope, Message, lookup, new_id
from callboard.queues._protocol import Consume, Deliveries, Enqueue, Enqueued, Item, Nack, Settle

if TYPE_CHECKING:
    from callboard.actors._runtime import ActorRuntime
    from callboard.actors._tasks import Future

__all__ = ["BUS", "Messaging"]

BUS = "bus"


class Messaging:
    """Publish/subscribe/enqueue/consume on behalf of one actor runtime."""

    def __init__(self, rt: ActorRuntime) -> None:
        self._rt = rt
        self._subs: dict[str, Subscribe] = {}  # pattern -> the request (re-sent as needed)
        self._streams: dict[str, InOrder] = {}
        self.current_topic: str | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Register with every queue the actor consumes (at start, and after restarts)."""
        for queue in self._rt._cls.consumers():
            if queue_actor(queue) not in self._rt.directory:
                raise NoSuchActor(queue_actor(queue))
            self._register(queue)

    def on_directory(self, changed: list[str]) -> None:
        """A service moved (it restarted): subscribe / register again at its new address."""
        if BUS in changed and self._routable(BUS):
            for req in self._subs.values():
                self._rt.tell(BUS, req)
        for queue in self._rt._cls.consumers():
            if queue_actor(queue) in changed and self._routable(queue_actor(queue)):
                self._register(queue)

    def _routable(self, name: str) -> bool:
        from callboard._control import routable

        return routable(self._rt.directory.get(name))

    def _register(self, queue: str) -> None:
        prefetch, _ = self._rt._cls.consumers()[queue]
        self._rt.tell(queue_actor(queue), Consume(consumer=self._rt.id, prefetch=prefetch))

    # -- the Actor API ----------------------------------------------------------------------

    def publish(self, topic: str, event: Message) -> None:
        from callboard.bus._topics import validate_topic

        self._rt.tell(BUS, Publish(event=event_item(validate_topic(topic), event, self._cid())))

    def subscribe(self, pattern: str, buffer: int | None, overflow: str | None) -> None:
        from callboard.bus._topics import validate_pattern

        req = Subscribe.model_validate(
            {"pattern": validate_pattern(pattern), "subscriber": self._rt.id,
             "buffer": buffer, "overflow": overflow}
        )  # fmt: skip
        self._subs[pattern] = req
        if BUS not in self._rt.directory:
            raise NoSuchActor(BUS)
        if self._routable(BUS):  # else: sent when the bus is back (on_directory)
            self._rt.tell(BUS, req)

    def unsubscribe(self, pattern: str) -> None:
        if self._subs.pop(pattern, None) is not None and self._routable(BUS):
            self._rt.tell(BUS, Unsubscribe(sub_id=f"{self._rt.id}:{pattern}"))

    def enqueue(
        self, queue: str, msg: Message, priority: int, msg_id: str | None
    ) -> Future[str]:
        item = queue_item(msg, priority, msg_id, self._cid())
        asked = self._rt.ask(queue_actor(queue), Enqueue(item=item), None)
        return asked.then(lambda r: r.ids[0] if isinstance(r, Enqueued) else item.id)

    def route(self, msg: Message) -> Future[list[str]]:
        from callboard.bus._protocol import Routed

        asked = self._rt.ask(BUS, route_request(msg), None)
        return asked.then(lambda r: list(r.destinations) if isinstance(r, Routed) else [])

    def _cid(self) -> str | None:
        cur = self._rt._current
        return (cur.correlation_id or cur.id) if cur is not None else None

    # -- inbound batches ----------------------------------------------------------------------

    def delivers(self, msg: Message) -> bool:
        return isinstance(msg, Events | Deliveries)

    def on_delivery(self, env: Envelope, msg: Message, sender: Any) -> None:
        """Handle a batch, after the batches sent before it on the same stream."""
        if isinstance(msg, Events):
            key, epoch, batch = "events:" + msg.sub_id, msg.epoch, msg.batch
            run: Callable[[], None] = functools.partial(self._on_events, env, msg)
        elif isinstance(msg, Deliveries):
            key, epoch, batch = "queue:" + msg.queue, msg.epoch, msg.batch
            run = functools.partial(self._on_deliveries, env, msg)
        else:
            return
        stream = self._streams.setdefault(key, InOrder())
        self._run(stream.offer(epoch, batch, run))
        if stream.waiting:
            gap = (stream.epoch, stream.next)
            self._rt.sleep(GAP_WAIT_S).add_done_callback(
                lambda _f: self._gap_timeout(key, gap))  # fmt: skip

    def _gap_timeout(self, key: str, gap: tuple[str, int]) -> None:
        stream = self._streams.get(key)
        if stream is None or (stream.epoch, stream.next) != gap or not stream.waiting:
            return
        if self._rt._log is not None:
            self._rt._log.warning("batch_gap", stream=key, missing=gap[1], held=stream.waiting)
        self._run(stream.skip_gap())

    def _run(self, runs: list[Callable[[], None]]) -> None:
        for run in runs:
            if self._rt.state != "running":
                return  # a handler crashed: the rest is redelivered or counted as lost
            run()

    def _on_events(self, env: Envelope, batch: Events) -> None:
        rt = self._rt
        pending = len(batch.items)
        acked = 0

        def one_done(_exc: BaseException | None) -> None:
            nonlocal acked
            acked += 1
            if acked == pending and rt.state == "running":
                rt.tell(BUS, AckEvents(sub_id=batch.sub_id, count=pending))

        for item in batch.items:
            decoded = self._decode(item.type, item.version, item.data, env, item.correlation_id)
            if decoded is None:
                one_done(None)  # invalid or unhandled: counted by _decode; credit returned
                continue
            inner, msg = decoded
            found = rt._cls.handler_for(type(msg))
            if found is None:
                rt._hooks.invalid("unhandled", f"{rt.id} has no handler for event {item.type}")
                one_done(None)
                continue
            self.current_topic = item.topic
            try:
                rt.run_handler(inner, msg, found[0], found[1], one_done)
            finally:
                self.current_topic = None
            if rt.state != "running":
                return  # the handler crashed: the rest of the batch is not ours to handle

    def _on_deliveries(self, env: Envelope, batch: Deliveries) -> None:
        rt = self._rt
        entry = rt._cls.consumers().get(batch.queue)
        acks: list[str] = []
        nacks: list[Nack] = []
        outstanding = len(batch.items)

        def flush() -> None:
            if (acks or nacks) and rt.state == "running":
                rt.tell(queue_actor(batch.queue),
                        Settle(consumer=rt.id, acks=list(acks), nacks=list(nacks)))  # fmt: skip
                acks.clear()
                nacks.clear()

        def settle(item_id: str, exc: BaseException | None) -> None:
            nonlocal outstanding
            if exc is None:
                acks.append(item_id)
            else:
                code = exc.code if isinstance(exc, BusinessError) else type(exc).__name__
                nacks.append(Nack(id=item_id, requeue=False, reason="rejected",
                                  detail=f"{code}: {exc}"))  # fmt: skip
            outstanding -= 1
            if not sync_phase or outstanding == 0:
                flush()

        sync_phase = True
        for item in batch.items:
            if entry is None:
                settle(item.id, _Refused("not_a_consumer", f"{rt.id} consumes no {batch.queue}"))
                continue
            decoded = self._decode(item.type, item.version, item.data, env,
                                   item.headers.get("correlation_id"), item.deliveries)  # fmt: skip
            if decoded is None:
                settle(item.id, _Refused("invalid_message", f"cannot decode {item.type}"))
                continue
            inner, msg = decoded
            found = _find(entry[1], type(msg))
            if found is None:
                settle(item.id, _Refused("unhandled", f"no consumer of {batch.queue} for "
                                                      f"{item.type}"))  # fmt: skip
                continue
            rt.run_handler(inner, msg, found[0], found[1], functools.partial(settle, item.id))
            if rt.state != "running":
                return  # crashed: unsettled deliveries come back after the release
        sync_phase = False
        flush()

    def _decode(
        self, type_name: str, version: int, data: Any, batch: Envelope, cid: str | None,
        deliveries: int = 1,
    ) -> tuple[Envelope, Message] | None:  # fmt: skip
        rt = self._rt
        try:
            msg = lookup(type_name).from_wire(version, data)
        except InvalidMessage as exc:
            rt._hooks.invalid(exc.reason, exc.message)
            if rt._log is not None:
                rt._log.warning("invalid_delivery", reason=exc.reason, error=exc.message,
                                message_type=type_name)  # fmt: skip
            return None
        inner = Envelope.model_construct(
            kind="tell", id=new_id(), type=type_name, version=version,
            correlation_id=cid or batch.correlation_id, causation_id=batch.id, deadline=None,
            priority=batch.priority, traceparent=batch.traceparent, principal=batch.principal,
            attempt=max(1, deliveries), target=rt.id, sender=batch.sender, payload=msg,
        )  # fmt: skip
        return inner, msg


class _Refused(BusinessError):
    """A delivery this actor cannot handle at all: dead-lettered with the reason."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        setattr(self, "code", code)  # noqa: B010  (per instance)


def _find(table: dict[type[Message], Any], cls: type[Message]) -> Any:
    for klass in cls.__mro__:
        if klass in table:
            return table[klass]
    return None


def event_item(topic: str, event: Message, cid: str | None) -> EventItem:
    return EventItem(topic=topic, type=event.type_name, version=event.version,
                     data=event.model_dump(mode="python"), id=new_id(),
                     correlation_id=cid)  # fmt: skip


def queue_item(msg: Message, priority: int, msg_id: str | None, cid: str | None) -> Item:
    return Item(id=msg_id or new_id(), type=msg.type_name, version=msg.version,
                data=msg.model_dump(mode="python"), priority=priority,
                headers={"correlation_id": cid} if cid else {})  # fmt: skip


def route_request(msg: Message) -> Message:
    from callboard.bus._protocol import RouteMessage

    return RouteMessage(msg_type=msg.type_name, msg_version=msg.version,
                        data=msg.model_dump(mode="python"), id=new_id())  # fmt: skip
