"""One subscriber's delivery state inside the bus: a bounded FIFO buffer and a credit window.

A slow subscriber must not make the bus (or its publishers) run out of memory, and a fast
publisher must not flood a subscriber's mailbox. So each subscriber gets:

* a buffer of at most ``capacity`` items waiting to be sent; what happens to an item
  offered to a full buffer is the ``overflow`` policy:

  - ``drop_oldest``: the oldest waiting item is evicted to make room (fresh data wins);
  - ``reject``: the new item is refused and the publisher is told;
  - ``dead_letter``: the new item is refused and the caller files it as a dead letter;

* a credit window: at most ``window`` items are in flight (sent, not yet acknowledged).
  The subscriber acknowledges with cumulative counts, which return credit in FIFO order.

Memory is bounded by ``capacity + window`` items. Pure: the bus actor does the sending,
the dead-letter filing and the telling; nothing here blocks or keeps time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, get_args

__all__ = ["Offer", "OfferStatus", "Overflow", "SubscriberBuffer"]

Overflow = Literal["drop_oldest", "reject", "dead_letter"]
OfferStatus = Literal["accepted", "dropped_oldest", "rejected", "dead_lettered"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Offer(Generic[T]):
    """What became of an offered item.

    ``accepted``: queued. ``dropped_oldest``: queued, and ``evicted`` (the oldest waiting
    item) was dropped to make room. ``rejected``: refused; the publisher should be told.
    ``dead_lettered``: refused; the caller stores the item as a dead letter."""

    status: OfferStatus
    evicted: T | None = None

    @property
    def queued(self) -> bool:
        """Whether the offered item is now in the buffer."""
        return self.status in ("accepted", "dropped_oldest")


class SubscriberBuffer(Generic[T]):
    """A subscriber's waiting items and in-flight window (see the module docstring).

    Counters: ``offered`` (every :meth:`offer`), ``delivered`` (handed out by
    :meth:`take`, redeliveries included), ``acked``, ``dropped`` (evicted by
    ``drop_oldest``), ``rejected``, ``dead_lettered``, ``lost`` (in flight when the
    subscriber restarted, not requeued), ``redelivered`` (in flight when it restarted,
    requeued) and ``high_watermark`` (the largest ``depth`` seen). They always satisfy
    ``offered == rejected + dead_lettered + dropped + depth + delivered - redelivered`` and
    ``delivered == in_flight + acked + lost + redelivered``.
    """

    def __init__(self, capacity: int, window: int, overflow: Overflow) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, not {capacity!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, not {window!r}")
        if overflow not in get_args(Overflow):
            raise ValueError(
                f"overflow must be one of {', '.join(get_args(Overflow))}, not {overflow!r}"
            )
        self.capacity = capacity
        self.window = window
        self.overflow: Overflow = overflow
        self._waiting: deque[T] = deque()
        self._in_flight: deque[T] = deque()
        self.offered = 0
        self.delivered = 0
        self.acked = 0
        self.dropped = 0
        self.rejected = 0
        self.dead_lettered = 0
        self.lost = 0
        self.redelivered = 0
        self.high_watermark = 0

    @property
    def depth(self) -> int:
        """Items waiting to be sent (in flight ones not included)."""
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Items sent and not yet acknowledged."""
        return len(self._in_flight)

    @property
    def credit(self) -> int:
        """How many items :meth:`take` may hand out now, if that many are waiting."""
        return self.window - len(self._in_flight)

    def offer(self, item: T) -> Offer[T]:
        """Queue ``item`` at the tail, or apply the overflow policy if the buffer is full."""
        self.offered += 1
        evicted: T | None = None
        if len(self._waiting) >= self.capacity:
            if self.overflow == "reject":
                self.rejected += 1
                return Offer("rejected")
            if self.overflow == "dead_letter":
                self.dead_lettered += 1
                return Offer("dead_lettered")
            evicted = self._waiting.popleft()
            self.dropped += 1
            self._waiting.append(item)
            return Offer("dropped_oldest", evicted)
        self._waiting.append(item)
        self.high_watermark = max(self.high_watermark, len(self._waiting))
        return Offer("accepted")

    def take(self) -> list[T]:
        """The items to send now, oldest first: as many as the free credit allows.

        They count as in flight until acknowledged."""
        n = min(self.credit, len(self._waiting))
        items = [self._waiting.popleft() for _ in range(n)]
        self._in_flight.extend(items)
        self.delivered += n
        return items

    def ack(self, n: int) -> None:
        """The subscriber handled the ``n`` oldest in-flight items; their credit returns."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"ack count must be an int >= 0, not {n!r}")
        if n > len(self._in_flight):
            raise ValueError(f"ack of {n} items but only {len(self._in_flight)} are in flight")
        for _ in range(n):
            self._in_flight.popleft()
        self.acked += n

    def reset_in_flight(self, *, requeue: bool = False) -> list[T]:
        """The subscriber restarted: its in-flight items will never be acknowledged.

        Returns them, oldest first, and frees the whole window. By default (a non-durable
        subscription) they are gone, counted as ``lost``. With ``requeue`` (a durable
        one) they go back to the head of the buffer, in order, to be sent again first
        (counted as ``redelivered``; the buffer may then exceed ``capacity`` by at most
        ``window``); they are returned only so the caller can mark them as redeliveries.
        """
        items = list(self._in_flight)
        self._in_flight.clear()
        if requeue:
            self._waiting.extendleft(reversed(items))
            self.redelivered += len(items)
            self.high_watermark = max(self.high_watermark, len(self._waiting))
        else:
            self.lost += len(items)
        return items

    def snapshot(self) -> dict[str, int | str]:
        """Configuration, gauges and counters, for stats and the admin API."""
        return {
            "capacity": self.capacity,
            "window": self.window,
            "overflow": self.overflow,
            "depth": self.depth,
            "in_flight": self.in_flight,
            "offered": self.offered,
            "delivered": self.delivered,
            "acked": self.acked,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "dead_lettered": self.dead_lettered,
            "lost": self.lost,
            "redelivered": self.redelivered,
            "high_watermark": self.high_watermark,
        }
