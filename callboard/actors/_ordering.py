"""Restoring the order of numbered batches that the transport may have swapped."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["GAP_WAIT_S", "InOrder"]

GAP_WAIT_S = 2.0
"""How long a batch waits for an earlier one that has not arrived (lost with a dead
process, never to come): then it is handled anyway, and the gap logged."""


class InOrder:
    """Puts the numbered batches of one stream back in the order they were sent.

    Batches are numbered from 1 within an ``epoch`` (a new epoch: the sender restarted,
    or this receiver registered again). Batch 0 is unnumbered: handled at once."""

    def __init__(self) -> None:
        self.epoch = ""
        self.next = 1
        self._held: dict[int, Callable[[], None]] = {}

    @property
    def waiting(self) -> int:
        return len(self._held)

    def offer(self, epoch: str, batch: int, run: Callable[[], None]) -> list[Callable[[], None]]:
        """What to run now, in order: ``run`` and any held batches it unblocks."""
        if batch <= 0:
            return [run]
        out: list[Callable[[], None]] = []
        if epoch != self.epoch:
            out = self.skip_gap()  # the old stream's stragglers first, then the new one
            self.epoch, self.next = epoch, 1
        if batch < self.next:
            return [*out, run]  # re-sent by a sender that started over: do not hold it
        self._held[batch] = run
        while self.next in self._held:
            out.append(self._held.pop(self.next))
            self.next += 1
        return out

    def skip_gap(self) -> list[Callable[[], None]]:
        """Give up on the missing batches: everything held, in order."""
        order = sorted(self._held)
        out = [self._held.pop(b) for b in order]
        if order:
            self.next = order[-1] + 1
        return out
