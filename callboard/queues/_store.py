"""A durable message queue's storage and state machine: no actors, no threads, no I/O but
SQLite, and an injectable clock (every mutating call takes ``now``).

The queue actor drives a :class:`QueueStore`; two implementations share one semantics:
:class:`MemoryStore` (dicts and heaps, lost with the process) and :class:`SqliteStore`
(one SQLite file in WAL mode, one transaction per call, survives restarts). The state
machine itself (argument checks, results, totals, the dedupe, ``max_length`` and
``max_deliveries`` rules) is written once, in their common base ``_StoreBase``; each store
only supplies its storage primitives.

A message is *ready* (waiting to be leased), *in flight* (leased to one consumer until its
lease deadline) or a *dead letter* (parked for an operator). Transitions::

    enqueue            -> ready
    ready  --lease-->     in flight (deliveries += 1, history "delivered")
    in flight --ack-->    gone (the message is deleted; its id stays in the dedupe window)
    in flight --nack / expire / release / recover--> ready, or dead letter once
                          deliveries >= max_deliveries (reason "max_deliveries")
    in flight --nack(requeue=False)--> dead letter (reason given by the consumer)
    dead letter --replay--> ready (deliveries 0, fresh seq: back of its priority)
    dead letter --purge--> gone

Decisions worth knowing:

* Ready messages are served highest priority first (9 before 0) and by ``seq`` within a
  priority. A requeued message keeps its seq, so it goes before newer messages; a replayed
  one gets a fresh seq and waits behind them.
* The store holds at most one message per ``msg_id`` across ready, in-flight and dead
  letters. Enqueueing an id accepted less than ``dedupe_window_s`` ago, or an id the store
  still holds (however old), is a *duplicate*; a rejected (``"full"``) enqueue is not
  remembered, so the producer may retry it. Remembered ids older than the window are pruned
  on every enqueue call, so the dedupe table stays bounded by rate x window.
* A lease is only taken back by :meth:`~QueueStore.expire`, :meth:`~QueueStore.release` or
  :meth:`~QueueStore.recover`: until then its holder may still ack it, even past the
  deadline. Every way a lease ends without an ack counts as a failed delivery, so a
  message whose deliveries reached ``max_deliveries`` is dead-lettered rather than handed
  out again; that includes :meth:`~QueueStore.recover`, so a message that keeps taking the
  queue down with it ends in the dead letters instead of looping.
* Operations that touch several messages (expire, release, recover, dead-lettering in one
  call) handle them in seq order; dead letters are listed in the order they died.
* Replaying a message resets ``enqueued_at`` to the replay time (so age-based checks do not
  discard it at once); the original times stay in its history.
* ``ack`` history is not kept: an acked message is deleted.

Both stores validate arguments before changing anything (``ValueError``), so a rejected
call, including a whole ``enqueue_many`` batch, leaves the store unchanged.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import sqlite3
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Final, Generic, Literal, NamedTuple, Protocol, Self, TypeVar

__all__ = [
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "DeadLetter",
    "Delivery",
    "EnqueueResult",
    "FsyncMode",
    "HistoryEntry",
    "MemoryStore",
    "MessageInfo",
    "MessageState",
    "MessageTuple",
    "NackResult",
    "NewMessage",
    "QueueStats",
    "QueueStore",
    "SqliteStore",
    "StoreLimits",
]

MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 9

EnqueueResult = Literal["accepted", "duplicate", "full"]
NackResult = Literal["requeued", "dead_lettered", "stale"]
FsyncMode = Literal["always", "normal", "off"]
MessageState = Literal["ready", "in_flight"]

# History events (an ack deletes the message, so "acked" is never stored).
ENQUEUED: Final = "enqueued"
DELIVERED: Final = "delivered"
NACKED: Final = "nacked"
EXPIRED: Final = "expired"
RELEASED: Final = "released"
DEAD_LETTERED: Final = "dead_lettered"
REPLAYED: Final = "replayed"

# Dead-letter reasons and details the store writes itself.
MAX_DELIVERIES: Final = "max_deliveries"
REJECTED: Final = "rejected"
LEASE_EXPIRED: Final = "lease expired"
CONSUMER_RELEASED: Final = "consumer released"
QUEUE_RESTARTED: Final = "queue restarted"

_TOTALS: Final = (
    "enqueued_total",
    "acked_total",
    "nacked_total",
    "redelivered_total",
    "expired_total",
    "released_total",
    "duplicates_total",
    "rejected_total",
    "dead_lettered_total",
    "replayed_total",
    "stale_acks_total",
    "stale_nacks_total",
)


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """What the store enforces: ``max_length`` ready + in-flight messages (replay may exceed
    it), ``max_deliveries`` hand-outs before a failing message is dead-lettered, and the
    ``dedupe_window_s`` during which an accepted ``msg_id`` is refused as a duplicate."""

    max_length: int
    max_deliveries: int
    dedupe_window_s: float

    def __post_init__(self) -> None:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int):
            raise ValueError("max_length must be an integer")
        if self.max_length < 1:
            raise ValueError("max_length must be >= 1")
        if isinstance(self.max_deliveries, bool) or not isinstance(self.max_deliveries, int):
            raise ValueError("max_deliveries must be an integer")
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be >= 1")
        if not self.dedupe_window_s >= 0:  # also rejects NaN
            raise ValueError("dedupe_window_s must be >= 0")


class NewMessage(NamedTuple):
    """One item of :meth:`QueueStore.enqueue_many`; fields as for :meth:`QueueStore.enqueue`.

    A named tuple, so a plain ``(msg_id, type, version, payload, priority, headers)``
    tuple is accepted too.
    """

    msg_id: str
    type: str
    version: int
    payload: bytes
    priority: int = MIN_PRIORITY
    headers: Mapping[str, str] | None = None


MessageTuple = tuple[str, str, int, bytes, int, Mapping[str, str] | None]
"""What :meth:`QueueStore.enqueue_many` takes: a :class:`NewMessage` or a plain tuple."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event in a message's life; ``consumer`` is the lease holder it concerns, if any."""

    at: float
    event: str
    consumer: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A leased message as the consumer receives it; ``deliveries`` includes this one."""

    msg_id: str
    type: str
    version: int
    payload: bytes
    priority: int
    deliveries: int
    headers: dict[str, str]
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """A live (ready or in-flight) message, for inspection; ``consumer`` and
    ``lease_deadline`` are ``None`` while it is ready."""

    msg_id: str
    type: str
    version: int
    payload: bytes
    priority: int
    seq: int
    enqueued_at: float
    deliveries: int
    headers: dict[str, str]
    state: MessageState
    consumer: str | None
    lease_deadline: float | None
    history: list[HistoryEntry]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (history entries as dicts too)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A parked message: ``reason`` is a short code (``"max_deliveries"``, ``"rejected"``,
    ...), ``detail`` says what happened last (e.g. ``"lease expired"``)."""

    msg_id: str
    type: str
    version: int
    payload: bytes
    priority: int
    headers: dict[str, str]
    reason: str
    detail: str
    deliveries: int
    enqueued_at: float
    dead_at: float
    history: list[HistoryEntry]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (history entries as dicts too)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Gauges and totals. ``depth_by_priority`` counts ready messages for every priority
    0-9; ``in_flight_by_consumer`` lists consumers holding at least one lease.
    ``redelivered_total`` counts leases of messages delivered before. With SQLite the
    totals survive reopening."""

    ready: int
    in_flight: int
    dead_letters: int
    depth_by_priority: dict[int, int]
    in_flight_by_consumer: dict[str, int]
    dedupe_ids: int
    enqueued_total: int
    acked_total: int
    nacked_total: int
    redelivered_total: int
    expired_total: int
    released_total: int
    duplicates_total: int
    rejected_total: int
    dead_lettered_total: int
    replayed_total: int
    stale_acks_total: int
    stale_nacks_total: int

    @property
    def length(self) -> int:
        """Ready + in-flight messages: what ``max_length`` limits."""
        return self.ready + self.in_flight

    def as_dict(self) -> dict[str, Any]:
        """Plain data, ``length`` included (dict copies: the caller may change them)."""
        return {**asdict(self), "length": self.length}


# --- the protocol ------------------------------------------------------------------------


class QueueStore(Protocol):
    """Storage and state machine of one durable queue (see the module docstring).

    Not thread-safe: one owner (the queue actor) calls it. ``ValueError`` means invalid
    arguments and nothing changed.
    """

    limits: StoreLimits

    def enqueue(
        self,
        msg_id: str,
        type: str,
        version: int,
        payload: bytes,
        priority: int,
        headers: Mapping[str, str] | None,
        now: float,
    ) -> EnqueueResult:
        """Add a ready message.

        Returns ``"accepted"``; ``"duplicate"`` if ``msg_id`` was accepted less than
        ``dedupe_window_s`` ago or is still held (ready, in flight or dead letter); or
        ``"full"`` if ready + in-flight messages already reach ``max_length``. Duplicates
        and rejections are counted, never stored. ``priority`` is 0-9 (9 is served first).
        Raises ``ValueError`` for an empty ``msg_id``, a priority out of range, a payload
        that is not bytes, or headers that are not str -> str.
        """
        ...

    def enqueue_many(self, items: Iterable[MessageTuple], now: float) -> list[EnqueueResult]:
        """:meth:`enqueue` each item in order, in one transaction; one result per item.

        Later items see earlier ones (a repeated id is a duplicate). Raises ``ValueError``,
        adding nothing, if any item is invalid.
        """
        ...

    def lease(self, consumer: str, n: int, now: float, visibility_timeout: float) -> list[Delivery]:
        """Hand up to ``n`` ready messages to ``consumer`` until ``now + visibility_timeout``.

        Highest priority first, lowest seq first within a priority; each gets
        ``deliveries += 1`` and history ``"delivered"``. Does not take back expired leases
        (call :meth:`expire` for that). Returns ``[]`` when ``n <= 0`` or nothing is ready.
        Raises ``ValueError`` for an empty consumer or a non-positive timeout.
        """
        ...

    def ack(self, consumer: str, msg_ids: Iterable[str], now: float) -> int:
        """Delete the messages in flight for ``consumer``; return how many.

        Ids not in flight for this consumer (already acked, expired, leased to another
        consumer, unknown, or repeated in ``msg_ids``) are ignored and counted in
        ``stale_acks_total``: a late ack must not touch someone else's lease.
        """
        ...

    def nack(
        self,
        consumer: str,
        msg_id: str,
        now: float,
        requeue: bool = True,
        reason: str = "",
        detail: str = "",
    ) -> NackResult:
        """The consumer gives a message back (history ``"nacked"``: ``reason: detail``).

        ``requeue=True``: back to ready with its seq and priority (ahead of newer messages),
        or dead-lettered with reason ``"max_deliveries"`` (detail ``"nacked: ..."``) once
        deliveries reached ``max_deliveries``. ``requeue=False``: dead-lettered with
        ``reason`` (``"rejected"`` when empty) and ``detail``. Returns ``"stale"``
        (counted) if the message is not in flight for ``consumer``.
        """
        ...

    def expire(self, now: float) -> list[str]:
        """Take back every lease whose deadline is ``<= now``: ready again (history
        ``"expired"``), or dead-lettered (``"max_deliveries"``) once deliveries reached the
        limit. Returns the ids concerned, in seq order."""
        ...

    def next_expiry(self) -> float | None:
        """The earliest lease deadline, or ``None`` when nothing is in flight: when the
        owner should call :meth:`expire` next."""
        ...

    def release(self, consumer: str, now: float) -> list[str]:
        """``consumer`` is gone: take back all its leases now (history ``"released"``),
        with the same ``max_deliveries`` rule as :meth:`expire`. Returns the ids, in seq
        order."""
        ...

    def recover(self, now: float) -> int:
        """After the queue's owner restarted, no lease is valid any more: take back every
        in-flight message (history ``"released"``, detail ``"queue restarted"``), with the
        same ``max_deliveries`` rule. Returns how many were in flight."""
        ...

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """A page of dead letters, oldest first (in the order they were dead-lettered)."""
        ...

    def replay(self, msg_ids: Sequence[str] | None, now: float) -> int:
        """Put dead letters back as ready messages; return how many.

        ``None`` replays all of them (oldest first), otherwise the given ids in the given
        order (unknown ids are skipped). Each gets deliveries 0, a fresh seq (back of its
        priority), ``enqueued_at = now`` and history ``"replayed"``. Ignores ``max_length``:
        an operator decided.
        """
        ...

    def purge_dead_letters(self, msg_ids: Sequence[str] | None) -> int:
        """Delete the given dead letters (``None``: all); return how many were deleted."""
        ...

    def add_dead_letter(
        self,
        msg_id: str,
        type: str,
        version: int,
        payload: bytes,
        priority: int,
        headers: Mapping[str, str] | None,
        reason: str,
        detail: str,
        now: float,
    ) -> bool:
        """Park a message that never entered the queue (e.g. captured as undeliverable).

        Returns ``False``, adding nothing, if the store already holds ``msg_id``. Counts
        in ``dead_lettered_total``; does not enter the dedupe window. Raises
        ``ValueError`` as :meth:`enqueue` does.
        """
        ...

    def message(self, msg_id: str) -> MessageInfo | None:
        """The live message ``msg_id`` with its history, or ``None``."""
        ...

    def length(self) -> int:
        """Ready + in-flight messages (cheap, unlike :meth:`stats`)."""
        ...

    def stats(self) -> QueueStats:
        """Current gauges and totals."""
        ...

    def close(self) -> None:
        """Release resources; idempotent. The store is unusable afterwards."""
        ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- shared helpers ----------------------------------------------------------------------

_Checked = tuple[str, str, int, bytes, int, dict[str, str]]
"""A validated message: ``(msg_id, type, version, payload, priority, headers)``, the
headers a private copy."""


def _check_message(
    msg_id: object,
    type_: object,
    version: object,
    payload: object,
    priority: object,
    headers: object,
) -> _Checked:
    """Validate one message's fields; return them with a private copy of its headers."""
    if not isinstance(msg_id, str) or not msg_id:
        raise ValueError("msg_id must be a non-empty string")
    if not isinstance(type_, str) or not type_:
        raise ValueError(f"{msg_id}: type must be a non-empty string")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{msg_id}: version must be an integer")
    if not isinstance(payload, bytes):
        raise ValueError(f"{msg_id}: payload must be bytes")
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ValueError(f"{msg_id}: priority must be an integer {MIN_PRIORITY}-{MAX_PRIORITY}")
    copy: dict[str, str] = {}
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise ValueError(f"{msg_id}: headers must be a mapping of str to str")
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"{msg_id}: headers must be a mapping of str to str")
            copy[key] = value
    return msg_id, type_, version, payload, priority, copy


def _check_batch(items: Iterable[MessageTuple]) -> list[_Checked]:
    """Validate a whole batch before any of it is stored."""
    checked: list[_Checked] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != len(NewMessage._fields):
            raise ValueError(
                "enqueue_many takes NewMessage or (msg_id, type, version, payload, priority, "
                f"headers) tuples, not {item!r}"
            )
        checked.append(_check_message(*item))
    return checked


def _check_consumer(consumer: object) -> None:
    if not isinstance(consumer, str) or not consumer:
        raise ValueError("consumer must be a non-empty string")


def _check_lease(consumer: str, visibility_timeout: float) -> None:
    _check_consumer(consumer)
    if not visibility_timeout > 0:
        raise ValueError("visibility_timeout must be > 0")


def _nack_detail(reason: str, detail: str) -> str:
    """The ``"nacked"`` history detail: ``reason: detail``, either part may be empty."""
    return f"{reason}: {detail}" if reason and detail else reason or detail


def _nack_dead(requeue: bool, reason: str, detail: str, why: str) -> tuple[str, str]:
    """Dead-letter ``(reason, detail)`` of a nacked message that does not go back."""
    if requeue:  # it wanted another try but used its last delivery
        return MAX_DELIVERIES, f"nacked: {why}" if why else "nacked"
    return reason or REJECTED, detail


def _ids(msg_ids: Iterable[str]) -> list[str]:
    """Materialise an id list (a bare string is one id, not its characters)."""
    if isinstance(msg_ids, str):
        return [msg_ids]
    return list(msg_ids)


class _Lease(Protocol):
    """What the shared state machine reads of a store's handle on an in-flight message."""

    @property
    def msg_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def deliveries(self) -> int: ...


_L = TypeVar("_L", bound=_Lease)


def _seq_of(lease: _Lease) -> int:
    return lease.seq


class _StoreBase(QueueStore, Generic[_L]):
    """The state machine both stores share, written once: argument checks, results, totals,
    the dedupe and ``max_length`` rules, the ``max_deliveries`` rule and the order things
    happen in. A store supplies its storage as the primitives below (``_L`` is its handle
    on an in-flight message); each public call runs inside one :meth:`_atomic` block, so
    a store whose primitive fails can undo the whole call (totals included)."""

    def __init__(self, limits: StoreLimits) -> None:
        self.limits = limits
        self._seq = 0  # the last seq handed out
        self._totals = dict.fromkeys(_TOTALS, 0)

    # -- storage primitives ---------------------------------------------------------------

    @abstractmethod
    def _atomic(self) -> AbstractContextManager[None]:
        """One call's changes, all or nothing."""

    @abstractmethod
    def _prune_seen(self, cutoff: float) -> None:
        """Forget ids accepted at or before ``cutoff``."""

    @abstractmethod
    def _known(self, msg_id: str) -> tuple[float | None, bool]:
        """When ``msg_id`` was last accepted (if still remembered), and whether the store
        holds it (ready, in flight or dead letter)."""

    @abstractmethod
    def _insert(self, seq: int, msg: _Checked, now: float) -> None:
        """Store a new ready message (history ``"enqueued"``) and remember its id."""

    @abstractmethod
    def _lease(self, consumer: str, n: int, now: float, deadline: float) -> list[Delivery]:
        """Lease up to ``n`` ready messages in serving order (history ``"delivered"``)."""

    @abstractmethod
    def _ack(self, consumer: str, msg_ids: list[str]) -> int:
        """Delete those of ``msg_ids`` in flight for ``consumer``; return how many."""

    @abstractmethod
    def _leased(self, consumer: str, msg_id: str) -> _L | None:
        """``msg_id`` if it is in flight for ``consumer``."""

    @abstractmethod
    def _due(self, now: float) -> list[_L]:
        """The leases whose deadline is ``<= now``, in any order."""

    @abstractmethod
    def _leased_by(self, consumer: str) -> list[_L]:
        """The leases ``consumer`` holds, in any order."""

    @abstractmethod
    def _all_leased(self) -> list[_L]:
        """Every lease, in any order."""

    @abstractmethod
    def _requeue(self, leases: list[_L], now: float, event: str, note: str) -> None:
        """End these leases (history ``event``: ``note``): ready again, seq kept."""

    @abstractmethod
    def _kill(
        self, leases: list[_L], now: float, event: str, note: str, reason: str, detail: str
    ) -> None:
        """End these leases (history ``event``: ``note``) and move the messages to the dead
        letters in list order (history ``"dead_lettered"``: ``reason``)."""

    @abstractmethod
    def _dead_page(self, limit: int, offset: int) -> list[DeadLetter]:
        """Dead letters ``offset`` to ``offset + limit``, oldest first (both ``>= 0``)."""

    @abstractmethod
    def _dead_ids(self) -> list[str]:
        """Every dead letter's id, oldest first."""

    @abstractmethod
    def _revive(self, msg_id: str, seq: int, now: float) -> bool:
        """Make dead letter ``msg_id`` ready again as ``seq`` (deliveries 0, enqueued
        ``now``, history ``"replayed"``); ``False`` if there is no such dead letter."""

    @abstractmethod
    def _purge(self, msg_ids: list[str] | None) -> int:
        """Delete these dead letters (``None``: all); return how many."""

    @abstractmethod
    def _add_dead(self, msg: _Checked, reason: str, detail: str, now: float) -> None:
        """Store a dead letter that was never enqueued (history ``"dead_lettered"``)."""

    # -- the state machine ----------------------------------------------------------------

    def enqueue(
        self,
        msg_id: str,
        type: str,
        version: int,
        payload: bytes,
        priority: int,
        headers: Mapping[str, str] | None,
        now: float,
    ) -> EnqueueResult:
        msg = _check_message(msg_id, type, version, payload, priority, headers)
        with self._atomic():
            self._prune_seen(now - self.limits.dedupe_window_s)
            return self._enqueue(msg, now)

    def enqueue_many(self, items: Iterable[MessageTuple], now: float) -> list[EnqueueResult]:
        checked = _check_batch(items)
        with self._atomic():
            self._prune_seen(now - self.limits.dedupe_window_s)
            return [self._enqueue(msg, now) for msg in checked]

    def _enqueue(self, msg: _Checked, now: float) -> EnqueueResult:
        totals = self._totals
        seen_at, held = self._known(msg[0])
        if held or (seen_at is not None and seen_at > now - self.limits.dedupe_window_s):
            totals["duplicates_total"] += 1
            return "duplicate"
        if self.length() >= self.limits.max_length:
            totals["rejected_total"] += 1
            return "full"
        self._seq += 1
        self._insert(self._seq, msg, now)
        totals["enqueued_total"] += 1
        return "accepted"

    def lease(self, consumer: str, n: int, now: float, visibility_timeout: float) -> list[Delivery]:
        _check_lease(consumer, visibility_timeout)
        if n <= 0 or not self.length():
            return []
        with self._atomic():
            out = self._lease(consumer, n, now, now + visibility_timeout)
            self._totals["redelivered_total"] += sum(1 for d in out if d.deliveries > 1)
        return out

    def ack(self, consumer: str, msg_ids: Iterable[str], now: float) -> int:
        ids = _ids(msg_ids)
        if not ids:
            return 0
        with self._atomic():
            acked = self._ack(consumer, ids)
            self._totals["acked_total"] += acked
            self._totals["stale_acks_total"] += len(ids) - acked
        return acked

    def nack(
        self,
        consumer: str,
        msg_id: str,
        now: float,
        requeue: bool = True,
        reason: str = "",
        detail: str = "",
    ) -> NackResult:
        with self._atomic():
            lease = self._leased(consumer, msg_id)
            if lease is None:
                self._totals["stale_nacks_total"] += 1
                return "stale"
            self._totals["nacked_total"] += 1
            why = _nack_detail(reason, detail)
            if requeue and lease.deliveries < self.limits.max_deliveries:
                self._requeue([lease], now, NACKED, why)
                return "requeued"
            dl_reason, dl_detail = _nack_dead(requeue, reason, detail, why)
            self._dead_letter([lease], now, NACKED, why, dl_reason, dl_detail)
            return "dead_lettered"

    def expire(self, now: float) -> list[str]:
        with self._atomic():
            due = self._due(now)
            return self._take_back(due, now, EXPIRED, "", LEASE_EXPIRED, "expired_total")

    def release(self, consumer: str, now: float) -> list[str]:
        with self._atomic():
            held = self._leased_by(consumer)
            return self._take_back(held, now, RELEASED, "", CONSUMER_RELEASED, "released_total")

    def recover(self, now: float) -> int:
        with self._atomic():
            held = self._all_leased()
            self._take_back(held, now, RELEASED, QUEUE_RESTARTED, QUEUE_RESTARTED, "released_total")
        return len(held)

    def _take_back(
        self, leases: list[_L], now: float, event: str, note: str, dead_detail: str, total: str
    ) -> list[str]:
        """End these leases without an ack, in seq order: ready again, or dead letters once
        their deliveries reached ``max_deliveries``. Returns their ids."""
        leases.sort(key=_seq_of)
        limit = self.limits.max_deliveries
        back = [lease for lease in leases if lease.deliveries < limit]
        if back:
            self._requeue(back, now, event, note)
        if len(back) < len(leases):
            dead = [lease for lease in leases if lease.deliveries >= limit]
            self._dead_letter(dead, now, event, note, MAX_DELIVERIES, dead_detail)
        self._totals[total] += len(leases)
        return [lease.msg_id for lease in leases]

    def _dead_letter(
        self, leases: list[_L], now: float, event: str, note: str, reason: str, detail: str
    ) -> None:
        self._kill(leases, now, event, note, reason, detail)
        self._totals["dead_lettered_total"] += len(leases)

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit <= 0:
            return []
        return self._dead_page(limit, max(offset, 0))

    def replay(self, msg_ids: Sequence[str] | None, now: float) -> int:
        with self._atomic():
            count = 0
            for msg_id in self._dead_ids() if msg_ids is None else _ids(msg_ids):
                if self._revive(msg_id, self._seq + 1, now):
                    self._seq += 1
                    count += 1
            self._totals["replayed_total"] += count
        return count

    def purge_dead_letters(self, msg_ids: Sequence[str] | None) -> int:
        with self._atomic():
            return self._purge(None if msg_ids is None else _ids(msg_ids))

    def add_dead_letter(
        self,
        msg_id: str,
        type: str,
        version: int,
        payload: bytes,
        priority: int,
        headers: Mapping[str, str] | None,
        reason: str,
        detail: str,
        now: float,
    ) -> bool:
        msg = _check_message(msg_id, type, version, payload, priority, headers)
        with self._atomic():
            _, held = self._known(msg_id)
            if held:
                return False
            self._add_dead(msg, reason, detail, now)
            self._totals["dead_lettered_total"] += 1
        return True

    def _stats(
        self,
        ready_by_priority: Iterable[tuple[int, int]],
        in_flight_by_consumer: dict[str, int],
        dead_letters: int,
        dedupe_ids: int,
    ) -> QueueStats:
        """The stats from a store's counts (consumers in name order) and the totals."""
        depth = dict.fromkeys(range(MIN_PRIORITY, MAX_PRIORITY + 1), 0)
        depth.update(ready_by_priority)
        return QueueStats(
            ready=sum(depth.values()),
            in_flight=sum(in_flight_by_consumer.values()),
            dead_letters=dead_letters,
            depth_by_priority=depth,
            in_flight_by_consumer=in_flight_by_consumer,
            dedupe_ids=dedupe_ids,
            **self._totals,
        )


# --- in memory ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Msg:
    msg_id: str
    type: str
    version: int
    payload: bytes
    priority: int
    seq: int
    enqueued_at: float
    deliveries: int
    headers: dict[str, str]
    history: list[HistoryEntry]
    consumer: str | None = None  # None while ready
    deadline: float = 0.0


@dataclass(slots=True)
class _Dead:
    msg: _Msg
    reason: str
    detail: str
    dead_at: float


_NO_TRANSACTION: Final = nullcontext()


class MemoryStore(_StoreBase[_Msg]):
    """The in-memory store: a heap of ready messages, leases per consumer, a heap of lease
    deadlines (entries left behind by acks are dropped lazily), insertion-ordered dead
    letters. Everything is lost with the process."""

    def __init__(self, limits: StoreLimits) -> None:
        super().__init__(limits)
        self._msgs: dict[str, _Msg] = {}
        self._ready: list[tuple[int, int, str]] = []  # (-priority, seq, msg_id)
        self._leases: dict[str, dict[str, _Msg]] = {}  # consumer -> msg_id -> message
        # (deadline, seq, deliveries, msg_id): valid while the message is still in flight
        # under that same lease (same seq and delivery count).
        self._deadlines: list[tuple[float, int, int, str]] = []
        self._dead: dict[str, _Dead] = {}
        self._seen: dict[str, float] = {}  # msg_id -> accepted at
        self._seen_heap: list[tuple[float, str]] = []

    def _atomic(self) -> AbstractContextManager[None]:
        """Nothing to undo: arguments are checked before anything changes."""
        return _NO_TRANSACTION

    # -- enqueue --------------------------------------------------------------------------

    def _prune_seen(self, cutoff: float) -> None:
        heap, seen = self._seen_heap, self._seen
        while heap and heap[0][0] <= cutoff:
            at, msg_id = heapq.heappop(heap)
            if seen.get(msg_id) == at:  # else a later acceptance has its own entry
                del seen[msg_id]

    def _known(self, msg_id: str) -> tuple[float | None, bool]:
        return self._seen.get(msg_id), msg_id in self._msgs or msg_id in self._dead

    def _insert(self, seq: int, msg: _Checked, now: float) -> None:
        msg_id, type_, version, payload, priority, headers = msg
        entry = HistoryEntry(now, ENQUEUED, None, "")
        self._msgs[msg_id] = _Msg(
            msg_id, type_, version, payload, priority, seq, now, 0, headers, [entry]
        )
        heapq.heappush(self._ready, (-priority, seq, msg_id))
        self._seen[msg_id] = now
        heapq.heappush(self._seen_heap, (now, msg_id))

    # -- leases ---------------------------------------------------------------------------

    def _lease(self, consumer: str, n: int, now: float, deadline: float) -> list[Delivery]:
        ready = self._ready
        out: list[Delivery] = []
        if not ready:
            return out
        held = self._leases.setdefault(consumer, {})
        entry = HistoryEntry(now, DELIVERED, consumer, "")
        while ready and len(out) < n:
            _, _, msg_id = heapq.heappop(ready)
            msg = self._msgs[msg_id]
            msg.deliveries += 1
            msg.consumer = consumer
            msg.deadline = deadline
            msg.history.append(entry)
            held[msg_id] = msg
            heapq.heappush(self._deadlines, (deadline, msg.seq, msg.deliveries, msg_id))
            out.append(
                Delivery(
                    msg_id,
                    msg.type,
                    msg.version,
                    msg.payload,
                    msg.priority,
                    msg.deliveries,
                    dict(msg.headers),
                    msg.enqueued_at,
                )
            )
        return out

    def _ack(self, consumer: str, msg_ids: list[str]) -> int:
        held = self._leases.get(consumer)
        if held is None:
            return 0
        acked = 0
        for msg_id in msg_ids:
            if held.pop(msg_id, None) is not None:
                del self._msgs[msg_id]
                acked += 1
        if not held:
            del self._leases[consumer]
        return acked

    def _leased(self, consumer: str, msg_id: str) -> _Msg | None:
        held = self._leases.get(consumer)
        return held.get(msg_id) if held is not None else None

    def _in_flight(self, seq: int, deliveries: int, msg_id: str) -> _Msg | None:
        """The message of a deadline heap entry, if that lease is still current."""
        msg = self._msgs.get(msg_id)
        if (
            msg is not None
            and msg.consumer is not None
            and msg.seq == seq
            and msg.deliveries == deliveries
        ):
            return msg
        return None

    def _due(self, now: float) -> list[_Msg]:
        heap = self._deadlines
        due: list[_Msg] = []
        while heap and heap[0][0] <= now:
            _, seq, deliveries, msg_id = heapq.heappop(heap)
            msg = self._in_flight(seq, deliveries, msg_id)
            if msg is not None:
                due.append(msg)
        return due

    def next_expiry(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, seq, deliveries, msg_id = heap[0]
            if self._in_flight(seq, deliveries, msg_id) is not None:
                return deadline
            heapq.heappop(heap)
        return None

    def _leased_by(self, consumer: str) -> list[_Msg]:
        held = self._leases.get(consumer)
        return list(held.values()) if held else []

    def _all_leased(self) -> list[_Msg]:
        return [m for held in self._leases.values() for m in held.values()]

    def _requeue(self, leases: list[_Msg], now: float, event: str, note: str) -> None:
        for msg in leases:
            msg.history.append(HistoryEntry(now, event, msg.consumer, note))
            self._unlease(msg)
            heapq.heappush(self._ready, (-msg.priority, msg.seq, msg.msg_id))

    def _kill(
        self, leases: list[_Msg], now: float, event: str, note: str, reason: str, detail: str
    ) -> None:
        for msg in leases:
            msg.history.append(HistoryEntry(now, event, msg.consumer, note))
            msg.history.append(HistoryEntry(now, DEAD_LETTERED, msg.consumer, reason))
            self._unlease(msg)
            del self._msgs[msg.msg_id]
            self._dead[msg.msg_id] = _Dead(msg, reason, detail, now)

    def _unlease(self, msg: _Msg) -> None:
        consumer = msg.consumer
        assert consumer is not None
        held = self._leases[consumer]
        del held[msg.msg_id]
        if not held:
            del self._leases[consumer]
        msg.consumer = None
        msg.deadline = 0.0

    # -- dead letters ---------------------------------------------------------------------

    def _dead_page(self, limit: int, offset: int) -> list[DeadLetter]:
        return [
            DeadLetter(
                d.msg.msg_id,
                d.msg.type,
                d.msg.version,
                d.msg.payload,
                d.msg.priority,
                dict(d.msg.headers),
                d.reason,
                d.detail,
                d.msg.deliveries,
                d.msg.enqueued_at,
                d.dead_at,
                list(d.msg.history),
            )
            for d in itertools.islice(self._dead.values(), offset, offset + limit)
        ]

    def _dead_ids(self) -> list[str]:
        return list(self._dead)

    def _revive(self, msg_id: str, seq: int, now: float) -> bool:
        dead = self._dead.pop(msg_id, None)
        if dead is None:
            return False
        msg = dead.msg
        msg.seq = seq
        msg.deliveries = 0
        msg.enqueued_at = now
        msg.history.append(HistoryEntry(now, REPLAYED, None, ""))
        self._msgs[msg_id] = msg
        heapq.heappush(self._ready, (-msg.priority, seq, msg_id))
        return True

    def _purge(self, msg_ids: list[str] | None) -> int:
        if msg_ids is None:
            count = len(self._dead)
            self._dead.clear()
            return count
        return sum(self._dead.pop(i, None) is not None for i in msg_ids)

    def _add_dead(self, msg: _Checked, reason: str, detail: str, now: float) -> None:
        msg_id, type_, version, payload, priority, headers = msg
        entry = HistoryEntry(now, DEAD_LETTERED, None, reason)
        dead = _Msg(msg_id, type_, version, payload, priority, 0, now, 0, headers, [entry])
        self._dead[msg_id] = _Dead(dead, reason, detail, now)

    # -- queries --------------------------------------------------------------------------

    def message(self, msg_id: str) -> MessageInfo | None:
        msg = self._msgs.get(msg_id)
        if msg is None:
            return None
        leased = msg.consumer is not None
        return MessageInfo(
            msg.msg_id,
            msg.type,
            msg.version,
            msg.payload,
            msg.priority,
            msg.seq,
            msg.enqueued_at,
            msg.deliveries,
            dict(msg.headers),
            "in_flight" if leased else "ready",
            msg.consumer,
            msg.deadline if leased else None,
            list(msg.history),
        )

    def length(self) -> int:
        return len(self._msgs)

    def stats(self) -> QueueStats:
        return self._stats(
            Counter(-neg_priority for neg_priority, _, _ in self._ready).items(),
            {c: len(held) for c, held in sorted(self._leases.items())},
            len(self._dead),
            len(self._seen),
        )

    def close(self) -> None:
        """Nothing to release: the contents simply go with the object."""


# --- SQLite ------------------------------------------------------------------------------

_SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    deliveries INTEGER NOT NULL,
    headers TEXT,
    state INTEGER NOT NULL,
    consumer TEXT,
    deadline REAL,
    history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (priority DESC, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS messages_deadline ON messages (deadline) WHERE state = 1;
CREATE INDEX IF NOT EXISTS messages_consumer ON messages (consumer) WHERE state = 1;
CREATE TABLE IF NOT EXISTS dead_letters (
    pos INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    headers TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    dead_at REAL NOT NULL,
    history TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dedupe (
    msg_id TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_seen ON dedupe (seen_at);
"""

# state: 0 = ready, 1 = in flight. The literal state tests let SQLite use the partial
# indexes; `sqlite3` caches the prepared statement of each of these strings.
_READY: Final = 0
_IN_FLIGHT: Final = 1

_SQL_SEEN: Final = """
SELECT (SELECT seen_at FROM dedupe WHERE msg_id = ?1),
       EXISTS (SELECT 1 FROM messages WHERE msg_id = ?1)
       OR EXISTS (SELECT 1 FROM dead_letters WHERE msg_id = ?1)
"""
_SQL_INSERT: Final = """
INSERT INTO messages (seq, msg_id, type, version, payload, priority, enqueued_at, deliveries,
                      headers, state, consumer, deadline, history)
VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 0, NULL, NULL, ?)
"""
_SQL_REMEMBER: Final = "INSERT OR REPLACE INTO dedupe (msg_id, seen_at) VALUES (?, ?)"
_SQL_PRUNE: Final = "DELETE FROM dedupe WHERE seen_at <= ?"
_SQL_LEASE: Final = """
UPDATE messages
SET state = 1, consumer = ?, deadline = ?, deliveries = deliveries + 1, history = history || ?
WHERE seq IN (SELECT seq FROM messages WHERE state = 0 ORDER BY priority DESC, seq LIMIT ?)
RETURNING seq, msg_id, type, version, payload, priority, deliveries, headers, enqueued_at
"""
_SQL_ACK: Final = "DELETE FROM messages WHERE msg_id = ? AND state = 1 AND consumer = ?"
_SQL_HELD: Final = """
SELECT seq, msg_id, consumer, deliveries FROM messages
WHERE msg_id = ? AND state = 1 AND consumer = ?
"""
_SQL_DUE: Final = """
SELECT seq, msg_id, consumer, deliveries FROM messages
WHERE state = 1 AND deadline <= ?
"""
_SQL_BY_CONSUMER: Final = """
SELECT seq, msg_id, consumer, deliveries FROM messages
WHERE state = 1 AND consumer = ?
"""
_SQL_ALL_LEASED: Final = """
SELECT seq, msg_id, consumer, deliveries FROM messages WHERE state = 1
"""
_SQL_REQUEUE: Final = """
UPDATE messages SET state = 0, consumer = NULL, deadline = NULL, history = history || ?
WHERE seq = ?
"""
_SQL_KILL: Final = """
INSERT INTO dead_letters (msg_id, type, version, payload, priority, headers, reason, detail,
                          deliveries, enqueued_at, dead_at, history)
SELECT msg_id, type, version, payload, priority, headers, ?, ?, deliveries, enqueued_at, ?,
       history || ?
FROM messages WHERE seq = ?
"""
_SQL_DELETE_SEQ: Final = "DELETE FROM messages WHERE seq = ?"
_SQL_NEXT_EXPIRY: Final = "SELECT min(deadline) FROM messages WHERE state = 1"
_SQL_REPLAY: Final = """
INSERT INTO messages (seq, msg_id, type, version, payload, priority, enqueued_at, deliveries,
                      headers, state, consumer, deadline, history)
SELECT ?, msg_id, type, version, payload, priority, ?, 0, headers, 0, NULL, NULL, history || ?
FROM dead_letters WHERE msg_id = ?
"""
_SQL_DELETE_DEAD: Final = "DELETE FROM dead_letters WHERE msg_id = ?"
_SQL_ADD_DEAD: Final = """
INSERT INTO dead_letters (msg_id, type, version, payload, priority, headers, reason, detail,
                          deliveries, enqueued_at, dead_at, history)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
"""
_SQL_DEAD_PAGE: Final = """
SELECT msg_id, type, version, payload, priority, headers, reason, detail, deliveries,
       enqueued_at, dead_at, history
FROM dead_letters ORDER BY pos LIMIT ? OFFSET ?
"""
_SQL_MESSAGE: Final = """
SELECT msg_id, type, version, payload, priority, seq, enqueued_at, deliveries, headers, state,
       consumer, deadline, history
FROM messages WHERE msg_id = ?
"""
_SQL_SAVE_META: Final = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"

_SYNCHRONOUS: Final[dict[str, str]] = {"always": "FULL", "normal": "NORMAL", "off": "OFF"}


class _Leased(NamedTuple):
    """A lease-holding row as the take-back queries return it."""

    seq: int
    msg_id: str
    consumer: str
    deliveries: int


# What ``json.dumps(value, separators=(",", ":"))`` builds afresh on every call: the same
# text, without the per-call set-up on the enqueue path.
_COMPACT_JSON: Final = json.JSONEncoder(separators=(",", ":"))


def _history_line(at: float, event: str, consumer: str | None, detail: str) -> str:
    """One history entry as stored: a JSON array per line, so appending is ``||``."""
    return _COMPACT_JSON.encode([at, event, consumer, detail]) + "\n"


def _parse_history(text: str) -> list[HistoryEntry]:
    return [HistoryEntry(*json.loads(line)) for line in text.splitlines()]


def _dump_headers(headers: dict[str, str]) -> str | None:
    return _COMPACT_JSON.encode(headers) if headers else None


def _load_headers(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    headers: dict[str, str] = json.loads(text)
    return headers


class SqliteStore(_StoreBase[_Leased]):
    """The durable store: one SQLite file in WAL mode, one connection, one ``BEGIN
    IMMEDIATE`` transaction per call (batch calls included): a call either happened
    entirely or not at all, and a crash of the process never loses a call that returned.

    ``fsync`` says what survives an OS crash or power loss: ``"always"``
    (``synchronous=FULL``) syncs at every commit, so every returned call; ``"normal"``
    (``NORMAL``) syncs at checkpoints only, so the last commits may be lost, but the file
    stays consistent; ``"off"`` never syncs, so the file may be corrupted.

    The file must have one owner (one store, used from the thread that opened it): the
    sequence counter and totals live in a ``meta`` table written at each commit, and the
    ready + in-flight count is cached in memory (reloaded after a failed transaction)
    because ``count(*)`` would scan the table on every enqueue. :meth:`stats` counts with
    queries, so it costs O(messages).
    """

    def __init__(
        self, path: str | os.PathLike[str], limits: StoreLimits, fsync: FsyncMode = "normal"
    ) -> None:
        if fsync not in _SYNCHRONOUS:
            raise ValueError(f"fsync must be one of {sorted(_SYNCHRONOUS)}, not {fsync!r}")
        super().__init__(limits)
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, cached_statements=64)
        self._closed = False
        self._live = 0
        self._saved: dict[str, int] = {}
        try:
            # synchronous first: switching a new file to WAL syncs as synchronous says
            self._db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[fsync]}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._init_schema()
            self._load()
        except BaseException:
            self._db.close()
            raise

    def _init_schema(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            db.execute(_SQL_SAVE_META, ("schema_version", _SCHEMA_VERSION))
        elif row[0] != _SCHEMA_VERSION:
            db.execute("ROLLBACK")
            raise sqlite3.DatabaseError(
                f"{self.path}: queue store schema {row[0]}, expected {_SCHEMA_VERSION}"
            )
        db.execute("COMMIT")

    def _load(self) -> None:
        """(Re)read the cached counters from the file."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        self._seq = meta.get("seq", 0)
        self._totals = {name: meta.get(name, 0) for name in _TOTALS}
        self._saved = {"seq": self._seq, **self._totals}
        self._live = self._db.execute("SELECT count(*) FROM messages").fetchone()[0]

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction: committed with the counters that changed,
        or rolled back with the cached counters reloaded."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._commit()
        except BaseException:
            self._abort()
            raise

    def _commit(self) -> None:
        """Save the counters that changed, then commit."""
        current = {"seq": self._seq, **self._totals}
        changed = [(k, v) for k, v in current.items() if self._saved.get(k) != v]
        if changed:
            self._db.executemany(_SQL_SAVE_META, changed)
        self._db.execute("COMMIT")
        self._saved = current

    def _abort(self) -> None:
        """Undo the failed transaction and the cached counters it changed."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._load()

    # -- enqueue --------------------------------------------------------------------------

    def _prune_seen(self, cutoff: float) -> None:
        self._db.execute(_SQL_PRUNE, (cutoff,))

    def _known(self, msg_id: str) -> tuple[float | None, bool]:
        known: tuple[float | None, bool] = self._db.execute(_SQL_SEEN, (msg_id,)).fetchone()
        return known

    def _insert(self, seq: int, msg: _Checked, now: float) -> None:
        msg_id, type_, version, payload, priority, headers = msg
        line = _history_line(now, ENQUEUED, None, "")
        self._db.execute(
            _SQL_INSERT,
            (seq, msg_id, type_, version, payload, priority, now, _dump_headers(headers), line),
        )
        self._db.execute(_SQL_REMEMBER, (msg_id, now))
        self._live += 1

    # -- leases ---------------------------------------------------------------------------

    def _lease(self, consumer: str, n: int, now: float, deadline: float) -> list[Delivery]:
        line = _history_line(now, DELIVERED, consumer, "")
        rows = self._db.execute(_SQL_LEASE, (consumer, deadline, line, n)).fetchall()
        rows.sort(key=lambda r: (-r[5], r[0]))  # RETURNING order is unspecified
        return [
            # RETURNING hands REAL values stored as integers back as int: float() them.
            Delivery(r[1], r[2], r[3], r[4], r[5], r[6], _load_headers(r[7]), float(r[8]))
            for r in rows
        ]

    def _ack(self, consumer: str, msg_ids: list[str]) -> int:
        acked: int = self._db.executemany(_SQL_ACK, [(i, consumer) for i in msg_ids]).rowcount
        self._live -= acked
        return acked

    def _leased(self, consumer: str, msg_id: str) -> _Leased | None:
        row = self._db.execute(_SQL_HELD, (msg_id, consumer)).fetchone()
        return None if row is None else _Leased._make(row)

    # The take-back queries are not sorted: with ``ORDER BY seq`` SQLite would scan the
    # table instead of the partial indexes (the shared code sorts).

    def _due(self, now: float) -> list[_Leased]:
        return list(map(_Leased._make, self._db.execute(_SQL_DUE, (now,))))

    def next_expiry(self) -> float | None:
        deadline: float | None = self._db.execute(_SQL_NEXT_EXPIRY).fetchone()[0]
        return deadline

    def _leased_by(self, consumer: str) -> list[_Leased]:
        return list(map(_Leased._make, self._db.execute(_SQL_BY_CONSUMER, (consumer,))))

    def _all_leased(self) -> list[_Leased]:
        return list(map(_Leased._make, self._db.execute(_SQL_ALL_LEASED)))

    def _requeue(self, leases: list[_Leased], now: float, event: str, note: str) -> None:
        self._db.executemany(
            _SQL_REQUEUE, [(_history_line(now, event, m.consumer, note), m.seq) for m in leases]
        )

    def _kill(
        self, leases: list[_Leased], now: float, event: str, note: str, reason: str, detail: str
    ) -> None:
        self._db.executemany(
            _SQL_KILL,
            [
                (
                    reason,
                    detail,
                    now,
                    _history_line(now, event, m.consumer, note)
                    + _history_line(now, DEAD_LETTERED, m.consumer, reason),
                    m.seq,
                )
                for m in leases
            ],
        )
        self._db.executemany(_SQL_DELETE_SEQ, [(m.seq,) for m in leases])
        self._live -= len(leases)

    # -- dead letters ---------------------------------------------------------------------

    def _dead_page(self, limit: int, offset: int) -> list[DeadLetter]:
        rows = self._db.execute(_SQL_DEAD_PAGE, (limit, offset)).fetchall()
        return [
            DeadLetter(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                _load_headers(r[5]),
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                _parse_history(r[11]),
            )
            for r in rows
        ]

    def _dead_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT msg_id FROM dead_letters ORDER BY pos")]

    def _revive(self, msg_id: str, seq: int, now: float) -> bool:
        line = _history_line(now, REPLAYED, None, "")
        if not self._db.execute(_SQL_REPLAY, (seq, now, line, msg_id)).rowcount:
            return False
        self._db.execute(_SQL_DELETE_DEAD, (msg_id,))
        self._live += 1
        return True

    def _purge(self, msg_ids: list[str] | None) -> int:
        if msg_ids is None:
            count: int = self._db.execute("DELETE FROM dead_letters").rowcount
        elif msg_ids:
            count = self._db.executemany(_SQL_DELETE_DEAD, [(i,) for i in msg_ids]).rowcount
        else:
            count = 0
        return count

    def _add_dead(self, msg: _Checked, reason: str, detail: str, now: float) -> None:
        msg_id, type_, version, payload, priority, headers = msg
        line = _history_line(now, DEAD_LETTERED, None, reason)
        self._db.execute(
            _SQL_ADD_DEAD,
            (
                msg_id,
                type_,
                version,
                payload,
                priority,
                _dump_headers(headers),
                reason,
                detail,
                now,
                now,
                line,
            ),
        )

    # -- queries --------------------------------------------------------------------------

    def message(self, msg_id: str) -> MessageInfo | None:
        r = self._db.execute(_SQL_MESSAGE, (msg_id,)).fetchone()
        if r is None:
            return None
        return MessageInfo(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            _load_headers(r[8]),
            "in_flight" if r[9] == _IN_FLIGHT else "ready",
            r[10],
            r[11],
            _parse_history(r[12]),
        )

    def length(self) -> int:
        return self._live

    def stats(self) -> QueueStats:
        db = self._db
        return self._stats(
            db.execute(
                "SELECT priority, count(*) FROM messages WHERE state = 0 GROUP BY priority"
            ).fetchall(),
            dict(
                db.execute(
                    "SELECT consumer, count(*) FROM messages WHERE state = 1 "
                    "GROUP BY consumer ORDER BY consumer"
                ).fetchall()
            ),
            db.execute("SELECT count(*) FROM dead_letters").fetchone()[0],
            db.execute("SELECT count(*) FROM dedupe").fetchone()[0],
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
