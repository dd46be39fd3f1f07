"""The bulkhead: a pure concurrency limiter with a bounded FIFO wait queue.

Users write, per target actor or per route::

    bulkhead = { max_concurrent = 32, queue = 64 }

At most ``max_concurrent`` requests are in flight; up to ``queue`` more wait, in arrival
order, for a slot and within their own deadline; any further request is rejected at once
with :class:`BulkheadFull` (code ``bulkhead_full``). ``queue = 0`` means "reject at once
when all slots are busy".

The state machine does no I/O and starts no timers. The clock is injected and read only to
drop queued requests whose deadline has passed (a deadline ``d`` has passed when
``clock() >= d``). Such requests are never admitted; they are collected and handed out by
:meth:`Bulkhead.expired`, so the actor layer can answer their callers with a timeout. The
actor layer calls :meth:`Bulkhead.expired` after :meth:`Bulkhead.leave` and whenever it
wants to time out waiting callers promptly (e.g. on a timer).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from callboard.errors import RemoteError

__all__ = ["Admission", "Bulkhead", "BulkheadConfig", "BulkheadFull", "BulkheadSnapshot"]

BULKHEAD_FULL = "bulkhead_full"

Admission = Literal["admitted", "queued"]


class BulkheadConfig(BaseModel):
    """``bulkhead = { ... }``: ``max_concurrent`` (>= 1) in-flight slots, ``queue`` (>= 0)
    waiting places."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    max_concurrent: StrictInt = Field(default=32, ge=1)
    queue: StrictInt = Field(default=64, ge=0)


class BulkheadFull(RemoteError):
    """All in-flight slots and all queue places are taken (code ``bulkhead_full``).

    Also raised for a request that would have to wait but whose deadline has already
    passed (it could never be admitted in time).
    """

    def __init__(self, request_id: str, max_concurrent: int, queue: int) -> None:
        self.request_id = request_id
        self.max_concurrent = max_concurrent
        self.queue = queue
        super().__init__(
            BULKHEAD_FULL,
            f"request {request_id!r} rejected: {max_concurrent} in flight and {queue} queued",
            {"in_flight": max_concurrent, "queued": queue},
        )


@dataclass(frozen=True, slots=True)
class BulkheadSnapshot:
    """Counters and gauges of one bulkhead (for metrics and admin views)."""

    in_flight: int
    queued: int
    rejected_total: int
    admitted_total: int
    expired_total: int
    cancelled_total: int
    max_concurrent: int
    queue_limit: int


class Bulkhead:
    """Admits at most ``max_concurrent`` requests; queues up to ``queue`` more (FIFO).

    Request ids must be unique among the requests currently in flight or queued.
    """

    def __init__(self, config: BulkheadConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._in_flight: set[str] = set()
        # request id -> deadline (None = no deadline), in arrival order
        self._queue: OrderedDict[str, float | None] = OrderedDict()
        self._expired: list[str] = []
        self._rejected_total = 0
        self._admitted_total = 0
        self._expired_total = 0
        self._cancelled_total = 0

    # -- transitions ----------------------------------------------------------------------

    def try_enter(self, request_id: str, deadline: float | None = None) -> Admission:
        """Ask for a slot.

        Returns ``"admitted"`` (the request may run now; call :meth:`leave` when it is done)
        or ``"queued"`` (it waits; a later :meth:`leave` returns its id once admitted, or
        :meth:`expired` reports it if its deadline passes first). Raises
        :class:`BulkheadFull` when every slot and every queue place is taken, or when the
        request would have to wait but its deadline has already passed. Raises
        :class:`ValueError` if ``request_id`` is already in flight or queued.
        """
        if request_id in self._in_flight or request_id in self._queue:
            raise ValueError(f"request {request_id!r} is already in the bulkhead")
        # Queue entries only exist while every slot is busy, so a free slot means an empty
        # queue: admitting at once never overtakes a waiting request.
        if len(self._in_flight) < self.config.max_concurrent:
            self._in_flight.add(request_id)
            self._admitted_total += 1
            return "admitted"
        now = self._clock()
        self._purge(now)
        if len(self._queue) >= self.config.queue or (deadline is not None and now >= deadline):
            self._rejected_total += 1
            raise BulkheadFull(request_id, len(self._in_flight), len(self._queue))
        self._queue[request_id] = deadline
        return "queued"

    def leave(self, request_id: str) -> list[str]:
        """An in-flight request finished: free its slot.

        Returns the ids of queued requests admitted now, in FIFO order (at most one per
        freed slot). Queued requests whose deadline has passed are skipped, never admitted:
        they are reported by :meth:`expired`. Raises :class:`KeyError` if ``request_id`` is
        not in flight (to drop a queued request, use :meth:`cancel`).
        """
        if request_id not in self._in_flight:
            raise KeyError(request_id)
        self._in_flight.remove(request_id)
        return self._admit_waiting()

    def cancel(self, request_id: str) -> bool:
        """Remove a queued request (its caller gave up). Returns whether it was queued.

        Cancelling a request that is in flight, already expired or unknown is a no-op
        returning ``False``; an in-flight request leaves through :meth:`leave`.
        """
        if request_id not in self._queue:
            return False
        del self._queue[request_id]
        self._cancelled_total += 1
        return True

    def expired(self) -> list[str]:
        """Drop the queued requests whose deadline has passed; return every request dropped
        for that reason since the last call (oldest first), and forget them."""
        self._purge(self._clock())
        dropped, self._expired = self._expired, []
        return dropped

    # -- queries --------------------------------------------------------------------------

    def state(self, request_id: str) -> Literal["in_flight", "queued"] | None:
        """Where ``request_id`` is, or ``None`` if the bulkhead does not hold it."""
        if request_id in self._in_flight:
            return "in_flight"
        if request_id in self._queue:
            return "queued"
        return None

    def snapshot(self) -> BulkheadSnapshot:
        """Current gauges and totals. Read-only: ``queued`` may still count requests whose
        deadline has passed but that no transition has dropped yet."""
        return BulkheadSnapshot(
            in_flight=len(self._in_flight),
            queued=len(self._queue),
            rejected_total=self._rejected_total,
            admitted_total=self._admitted_total,
            expired_total=self._expired_total,
            cancelled_total=self._cancelled_total,
            max_concurrent=self.config.max_concurrent,
            queue_limit=self.config.queue,
        )

    # -- internals ------------------------------------------------------------------------

    def _admit_waiting(self) -> list[str]:
        admitted: list[str] = []
        if not self._queue:
            return admitted
        now = self._clock()
        while self._queue and len(self._in_flight) < self.config.max_concurrent:
            request_id, deadline = self._queue.popitem(last=False)
            if deadline is not None and now >= deadline:
                self._expire(request_id)
                continue
            self._in_flight.add(request_id)
            self._admitted_total += 1
            admitted.append(request_id)
        return admitted

    def _purge(self, now: float) -> None:
        stale = [rid for rid, dl in self._queue.items() if dl is not None and now >= dl]
        for request_id in stale:
            del self._queue[request_id]
            self._expire(request_id)

    def _expire(self, request_id: str) -> None:
        self._expired.append(request_id)
        self._expired_total += 1
