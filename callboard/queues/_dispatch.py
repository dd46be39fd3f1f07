"""Which consumer gets the next messages: credit-based flow control, round robin.

Pure bookkeeping for the queue actor. A consumer registers with a ``prefetch`` (its
credit); every delivered message takes one unit of credit until it is settled (acked,
nacked, expired or released). :meth:`CreditLedger.plan` says how many messages each
consumer may be sent now, rotating the starting consumer so that, with a shallow queue,
work spreads evenly instead of always going to the first consumer registered.

A consumer is known by its name and the transport address it registered from: a new
registration from another address is a new incarnation (the old one died), and the
caller must release what the old one held.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConsumerState", "CreditLedger"]


@dataclass
class ConsumerState:
    name: str
    address: Any
    prefetch: int
    in_flight: set[str] = field(default_factory=set)
    epoch: str = field(default_factory=lambda: secrets.token_hex(6))
    """Names this registration's stream of delivery batches (numbered from 1)."""
    batches: int = 0

    def next_batch(self) -> int:
        self.batches += 1
        return self.batches

    @property
    def credit(self) -> int:
        return max(0, self.prefetch - len(self.in_flight))


class CreditLedger:
    """Consumers, their credit and what each holds."""

    def __init__(self) -> None:
        self._consumers: dict[str, ConsumerState] = {}
        self._turn = 0

    def register(self, name: str, address: Any, prefetch: int) -> tuple[ConsumerState, bool]:
        """Add or refresh ``name``. Returns its state and whether this is a *new
        incarnation* replacing one at another address (whose messages the caller must
        release: :meth:`forget` first)."""
        have = self._consumers.get(name)
        if have is not None and have.address == address:
            have.prefetch = prefetch
            return have, False
        state = ConsumerState(name, address, prefetch)
        replaced = have is not None
        self._consumers[name] = state
        return state, replaced

    def forget(self, name: str) -> set[str]:
        """Drop ``name``; returns the ids it held (to release)."""
        state = self._consumers.pop(name, None)
        return set(state.in_flight) if state is not None else set()

    def get(self, name: str) -> ConsumerState | None:
        return self._consumers.get(name)

    def names(self) -> list[str]:
        return list(self._consumers)

    def delivered(self, name: str, ids: list[str]) -> None:
        self._consumers[name].in_flight.update(ids)

    def settled(self, name: str, ids: list[str]) -> int:
        """``ids`` no longer held by ``name`` (acked, nacked); returns how many it held."""
        state = self._consumers.get(name)
        if state is None:
            return 0
        held = state.in_flight & set(ids)
        state.in_flight -= held
        return len(held)

    def dropped(self, ids: list[str]) -> None:
        """``ids`` left their consumers without a settlement (lease expired, released)."""
        gone = set(ids)
        for state in self._consumers.values():
            state.in_flight -= gone

    def plan(self) -> list[tuple[ConsumerState, int]]:
        """(consumer, how many to send now) for every consumer with credit, starting one
        further along the list each time."""
        states = list(self._consumers.values())
        if not states:
            return []
        start = self._turn % len(states)
        self._turn += 1
        ordered = states[start:] + states[:start]
        return [(s, s.credit) for s in ordered if s.credit > 0]

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            s.name: {"prefetch": s.prefetch, "in_flight": len(s.in_flight)}
            for s in self._consumers.values()
        }
