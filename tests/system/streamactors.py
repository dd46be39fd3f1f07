"""Actors for the batching tests: a producer streaming numbered tells, a recording sink."""

from __future__ import annotations

import os
import time
from typing import ClassVar

from pydantic import BaseModel

from callboard import Actor, Message, handler
from callboard.errors import CallboardError


class Item(Message):
    type_name: ClassVar[str] = "test.stream.Item"
    producer: str
    seq: int


class Stream(Message):
    """Send ``count`` items from ``start``, ``per_turn`` per handler turn."""

    type_name: ClassVar[str] = "test.stream.Stream"
    start: int
    count: int
    per_turn: int


class Producer(Actor):
    """Streams Items to ``target``; records every seq it could not even send (the name
    was not routable at that moment: the sender is told, so it is not a silent loss)."""

    class Args(BaseModel):
        target: str
        refused_file: str
        progress_file: str = ""
        """If set: after each turn, the next seq to send (overwritten in place)."""

    @handler
    def stream(self, msg: Stream) -> None:
        end = min(msg.start + msg.per_turn, msg.count)
        refused: list[int] = []
        for seq in range(msg.start, end):
            try:
                self.tell(self.args.target, Item(producer=self.id, seq=seq))
            except CallboardError:
                refused.append(seq)
        if refused:
            with open(self.args.refused_file, "a") as f:
                f.write("".join(f"{seq}\n" for seq in refused))
        if self.args.progress_file:
            with open(self.args.progress_file, "w") as f:
                f.write(str(end))
        if end < msg.count:  # the next turn: a separate handler call, a separate batch
            self.tell(self.id, Stream(start=end, count=msg.count, per_turn=msg.per_turn))


class Sink(Actor):
    """Appends ``"<producer> <seq> <pid>"`` per item to ``out`` (one write each)."""

    class Args(BaseModel):
        out: str
        delay_s: float = 0.0
        """A slow consumer: this long per item (blocking, like real work)."""

    def on_start(self) -> None:
        self._fd = os.open(self.args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @handler
    def item(self, msg: Item) -> None:
        if self.args.delay_s:
            time.sleep(self.args.delay_s)
        os.write(self._fd, f"{msg.producer} {msg.seq} {os.getpid()}\n".encode())
