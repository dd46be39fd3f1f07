"""``QueueActor``: one named queue, an actor under the ``services`` supervisor.

A shell around a :class:`~callboard.queues.QueueStore` (what is stored and in which
order) and a :class:`~callboard.queues._dispatch.CreditLedger` (who may get how many):
it decodes the protocol (:mod:`callboard.queues._protocol`), calls the two, and sends
what they decided. Durable queues survive the actor's own crash: the store is SQLite, and
on restart whatever was delivered but not acknowledged is ready again (consumers see a
redelivery, with its delivery count).

Consumers that die (the directory shows their name at another address, or restarting)
lose their deliveries at once; consumers that stay silent lose them after
``visibility_timeout``. A message delivered ``max_deliveries`` times without an
acknowledgement, or rejected by its consumer, goes to the dead letters with its history.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import msgpack
from pydantic import BaseModel, ConfigDict, Field

from callboard.actors import Actor, Future, handler
from callboard.errors import InvalidMessage, RemoteError
from callboard.messages import Message, decode_envelope
from callboard.queues._dispatch import ConsumerState, CreditLedger
from callboard.queues._protocol import (
    AddDeadLetter,
    Consume,
    Consuming,
    Count,
    DeadLetterInfo,
    DeadLetters,
    Deliveries,
    DeliveryItem,
    Enqueue,
    Enqueued,
    EnqueueMany,
    GetDeadLetters,
    GetQueueStats,
    PurgeDeadLetters,
    QueueFull,
    QueueStatsReply,
    ReplayDeadLetters,
    Settle,
    Settled,
)
from callboard.queues._store import (
    MemoryStore,
    NewMessage,
    QueueStore,
    SqliteStore,
    StoreLimits,
)

__all__ = ["QueueActor"]

_TICK_MAX_S = 1.0


class _Tick(Message):
    type_name: ClassVar[str] = "callboard.queues._Tick"


class QueueEvent(Message):
    """Published on ``system.queue.<name>.<event>`` (``dead_lettered``, ``full``)."""

    type_name: ClassVar[str] = "callboard.queues.QueueEvent"
    queue: str
    event: str
    ids: list[str] = Field(default_factory=list)
    reason: str = ""


class QueueActor(Actor):
    """Serves one queue. ``args`` come from ``[queues.<name>]`` (see ``QueueSpec``)."""

    class Args(BaseModel):
        model_config = ConfigDict(extra="forbid")

        name: str
        durable: bool = True
        max_length: int = 10_000
        overflow: str = "reject"
        max_deliveries: int = 5
        visibility_timeout: float = 30.0
        fsync: str = "normal"
        dedupe_window: float = 300.0
        path: str = ""
        events: bool = False
        """Publish ``system.queue.*`` events (the bus runs and wants them)."""
        dead_letter_sink: bool = False
        """This queue collects what Thespian could not deliver anywhere in the system."""

    store: QueueStore

    def on_start(self) -> None:
        a = self.args
        limits = StoreLimits(
            max_length=a.max_length, max_deliveries=a.max_deliveries,
            dedupe_window_s=a.dedupe_window,
        )  # fmt: skip
        if a.durable:
            Path(a.path).parent.mkdir(parents=True, exist_ok=True)
            self.store = SqliteStore(a.path, limits, fsync=a.fsync)
        else:
            self.store = MemoryStore(limits)
        self.wants_dead_letters = a.dead_letter_sink
        self.ledger = CreditLedger()
        self._waiting: list[Future[bool]] = []  # producers blocked on a full queue
        recovered = self.store.recover(time.time())
        self.log.info("queue_started", queue=a.name, durable=a.durable, recovered=recovered,
                      path=a.path or None, pid=os.getpid())  # fmt: skip
        self._tick_every = min(_TICK_MAX_S, a.visibility_timeout / 4)
        self.schedule(self._tick_every, _Tick())

    def on_stop(self, reason: str) -> None:
        for fut in self._waiting:
            fut.set_result(False)
        self.store.close()

    # -- producers --------------------------------------------------------------------------

    @handler
    async def on_enqueue(self, msg: Enqueue | EnqueueMany) -> Enqueued:
        items = [msg.item] if isinstance(msg, Enqueue) else list(msg.items)
        statuses: dict[str, str] = {}
        pending = items
        while True:
            results = self.store.enqueue_many(
                [NewMessage(i.id, i.type, i.version, _pack(i.data), i.priority, i.headers)
                 for i in pending],
                time.time(),
            )  # fmt: skip
            full = [i for i, r in zip(pending, results, strict=True) if r == "full"]
            for i, r in zip(pending, results, strict=True):
                if r != "full":
                    statuses[i.id] = r
            if statuses:
                self._pump()
            if not full:
                break
            if self.args.overflow == "block" and await self._room():
                pending = full
                continue
            self._event("full", [i.id for i in full], "max_length")
            raise QueueFull(
                f"{self.args.name} holds {self.args.max_length} messages",
                {"queue": self.args.name, "accepted": list(statuses),
                 "full": [i.id for i in full]},
            )  # fmt: skip
        return Enqueued(ids=[i.id for i in items], statuses=[statuses[i.id] for i in items])

    def _room(self) -> Future[bool]:
        """Resolves True when something left the queue, False at the request's deadline."""
        fut: Future[bool] = Future()
        self._waiting.append(fut)
        left = self.remaining()
        if left is not None:
            # Give up a little before the deadline, so the producer hears ``queue_full``
            # rather than timing out on its side.
            give_up = max(0.0, left - min(0.05, left / 10))
            self.sleep(give_up).add_done_callback(lambda _f: _resolve(fut, False))
        return fut

    def _room_freed(self) -> None:
        waiting, self._waiting = self._waiting, []
        for fut in waiting:
            fut.set_result(True)

    # -- consumers --------------------------------------------------------------------------

    @handler
    def on_consume(self, msg: Consume) -> Consuming:
        address = self._runtime.current_sender
        _, replaced = self.ledger.register(msg.consumer, address, msg.prefetch)
        if replaced:  # the old incarnation is dead: its deliveries are free again
            self._release(msg.consumer, "consumer restarted")
            self.ledger.register(msg.consumer, address, msg.prefetch)
        self.log.info("consumer_registered", queue=self.args.name, consumer=msg.consumer,
                      prefetch=msg.prefetch)  # fmt: skip
        self._pump()
        return Consuming(queue=self.args.name)

    @handler
    def on_settle(self, msg: Settle) -> Settled:
        now = time.time()
        acked = self.store.ack(msg.consumer, msg.acks, now) if msg.acks else 0
        dead: list[str] = []
        for nack in msg.nacks:
            result = self.store.nack(msg.consumer, nack.id, now, requeue=nack.requeue,
                                     reason=nack.reason, detail=nack.detail)  # fmt: skip
            if result == "dead_lettered":
                dead.append(nack.id)
        self.ledger.settled(msg.consumer, [*msg.acks, *(n.id for n in msg.nacks)])
        if dead:
            self._event("dead_lettered", dead, "rejected")
        self._room_freed()
        self._pump()
        return Settled(acked=acked, nacked=len(msg.nacks))

    def on_directory(self, changed: list[str]) -> None:
        for name in changed:
            state = self.ledger.get(name)
            if state is not None and self._runtime.directory.get(name) != state.address:
                self._release(name, "consumer exited")
        self._pump()

    def _release(self, consumer: str, why: str) -> None:
        self.ledger.forget(consumer)
        released = self.store.release(consumer, time.time())
        if released:
            self.log.info("deliveries_released", queue=self.args.name, consumer=consumer,
                          count=len(released), why=why)  # fmt: skip

    @handler
    def on_tick(self, msg: _Tick) -> None:
        expired = self.store.expire(time.time())
        if expired:
            self.ledger.dropped(expired)
            self.log.info("deliveries_expired", queue=self.args.name, count=len(expired))
            self._room_freed()
        self._pump()
        self.schedule(self._tick_every, _Tick())

    def _pump(self) -> None:
        """Send every consumer with credit as many ready messages as it may take."""
        now = time.time()
        for state, n in self.ledger.plan():
            leased = self.store.lease(state.name, n, now, self.args.visibility_timeout)
            if not leased:
                return
            self.ledger.delivered(state.name, [d.msg_id for d in leased])
            items = [
                DeliveryItem(id=d.msg_id, type=d.type, version=d.version,
                             data=_unpack(d.payload), priority=d.priority,
                             deliveries=d.deliveries, headers=d.headers)
                for d in leased
            ]
            self._send(state, items)

    def _send(self, state: ConsumerState, items: list[DeliveryItem]) -> None:
        batch = Deliveries(queue=self.args.name, items=items, epoch=state.epoch,
                           batch=state.batches + 1)  # fmt: skip
        try:
            self._runtime.send_to(state.address, state.name, batch)
            state.next_batch()
        except InvalidMessage:  # the batch is over max_frame_bytes: split it
            if len(items) > 1:
                half = len(items) // 2
                self._send(state, items[:half])
                self._send(state, items[half:])
                return
            consumer = state.name
            self.store.nack(consumer, items[0].id, time.time(), requeue=False,
                            reason="oversized",
                            detail="the message alone exceeds max_frame_bytes")  # fmt: skip
            self.ledger.settled(consumer, [items[0].id])

    # -- administration ---------------------------------------------------------------------

    @handler
    def on_stats(self, msg: GetQueueStats) -> QueueStatsReply:
        stats = dataclasses.asdict(self.store.stats())
        stats["queue"] = self.args.name
        stats["durable"] = self.args.durable
        stats["consumers"] = self.ledger.snapshot()
        return QueueStatsReply(stats=stats)

    @handler
    def on_dead_letters(self, msg: GetDeadLetters) -> DeadLetters:
        items = self.store.dead_letters(msg.limit, msg.offset)
        return DeadLetters(items=[
            DeadLetterInfo(id=d.msg_id, type=d.type, version=d.version,
                           data=_unpack(d.payload), priority=d.priority, reason=d.reason,
                           detail=d.detail, deliveries=d.deliveries, dead_at=d.dead_at,
                           history=[dataclasses.asdict(h) for h in d.history])
            for d in items
        ])

    @handler
    def on_replay(self, msg: ReplayDeadLetters) -> Count:
        count = self.store.replay(msg.ids, time.time())
        self.log.info("dead_letters_replayed", queue=self.args.name, count=count)
        self._pump()
        return Count(count=count)

    @handler
    def on_purge(self, msg: PurgeDeadLetters) -> Count:
        count = self.store.purge_dead_letters(msg.ids)
        self.log.info("dead_letters_purged", queue=self.args.name, count=count)
        return Count(count=count)

    @handler
    def on_add_dead_letter(self, msg: AddDeadLetter) -> None:
        i = msg.item
        self.store.add_dead_letter(i.id, i.type, i.version, _pack(i.data), i.priority,
                                   i.headers, msg.reason, msg.detail, time.time())  # fmt: skip

    # -- Thespian's dead letters (the dead_letters queue only) ------------------------------

    def on_dead_letter(self, address: Any, message: Any) -> None:
        """A message Thespian could not deliver (its target was dead): keep it."""
        now = time.time()
        if isinstance(message, bytes | bytearray):
            try:
                env = decode_envelope(bytes(message))
            except InvalidMessage:
                env = None
            if env is not None:
                self.store.add_dead_letter(
                    env.id, env.type, env.version, _pack(env.payload), env.priority,
                    {"target": env.target or "", "sender": env.sender or "",
                     "kind": env.kind},
                    "undeliverable", f"{env.target or address}: the target was not running",
                    now,
                )  # fmt: skip
                return
        self.log.warning("undeliverable_control", kind=type(message).__name__,
                         target=str(address))  # fmt: skip

    def _event(self, event: str, ids: list[str], reason: str) -> None:
        if not self.args.events or "bus" not in self._runtime.directory:
            return
        try:
            self.publish(f"system.queue.{self.args.name}.{event}",
                         QueueEvent(queue=self.args.name, event=event, ids=ids[:100],
                                    reason=reason))  # fmt: skip
        except RemoteError:
            pass  # the bus is restarting: system events are best effort


def _pack(data: Any) -> bytes:
    return bytes(msgpack.packb(data, use_bin_type=True))


def _unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)



def _resolve(fut: Future[bool], value: bool) -> None:
    fut.set_result(value)
