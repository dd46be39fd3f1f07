"""Small example actors: the embedded default config runs :class:`Echo`."""

from __future__ import annotations

from typing import ClassVar

from callboard.actors._actor import Actor, handler
from callboard.messages import Message

__all__ = ["Echo", "Ping", "Pong", "Relay"]


class Ping(Message):
    type_name: ClassVar[str] = "callboard.examples.Ping"
    n: int


class Pong(Message):
    type_name: ClassVar[str] = "callboard.examples.Pong"
    n: int


class Relay(Message):
    """Ask ``via`` (default: this actor itself is not allowed; use another Echo) for a Pong."""

    type_name: ClassVar[str] = "callboard.examples.Relay"
    n: int
    via: str = "echo"


class Echo(Actor):
    """Answers :class:`Ping` with :class:`Pong`; relays through another actor on :class:`Relay`."""

    @handler
    def ping(self, msg: Ping) -> Pong:
        return Pong(n=msg.n)

    @handler
    async def relay(self, msg: Relay) -> Pong:
        reply: Pong = await self.ask(msg.via, Ping(n=msg.n), timeout=0.5)
        return reply
