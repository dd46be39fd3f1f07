"""The runtime's own wire messages: error replies."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from callboard.messages._message import Message

__all__ = ["ErrorReply"]


class ErrorReply(Message):
    """An error answer to an ``ask``; the asker raises :class:`~callboard.errors.RemoteError`."""

    type_name: ClassVar[str] = "callboard.ErrorReply"
    code: str
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Nothing(Message):
    """The reply to an ``ask`` whose handler returned ``None``; the asker receives ``None``."""

    type_name: ClassVar[str] = "callboard.Nothing"
