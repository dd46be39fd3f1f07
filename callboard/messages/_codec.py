"""The wire: envelopes encoded as msgpack arrays, decoded and validated with pydantic.

Frame layout (msgpack array, positional to keep frames small and decoding cheap)::

    [WIRE_VERSION, kind, id, type, version, correlation_id, causation_id, deadline,
     priority, traceparent, principal, attempt, target, sender, payload(, degraded)]

The trailing ``degraded`` flag is only written when true, so ordinary frames stay as
small as before and older frames decode unchanged.

Decoding is split in two so a receiver can answer even a message it cannot validate:
:func:`decode_envelope` checks the frame and header; :func:`decode_payload` turns the
payload into the registered :class:`Message` subclass. Both raise only
:class:`~callboard.errors.InvalidMessage`, whatever the input bytes.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import uuid
from typing import Any

import msgpack
from pydantic import ValidationError

from callboard.errors import InvalidMessage
from callboard.messages._envelope import Envelope
from callboard.messages._message import Message, _jsonable_errors
from callboard.messages._registry import lookup

__all__ = ["WIRE_VERSION", "decode", "decode_envelope", "decode_payload", "encode", "peek_id"]

WIRE_VERSION = 1
_FIELDS = (
    "kind", "id", "type", "version", "correlation_id", "causation_id", "deadline",
    "priority", "traceparent", "principal", "attempt", "target", "sender", "payload",
)  # fmt: skip


def _default(obj: Any) -> Any:
    # Types pydantic's python-mode dump leaves as objects; pydantic parses these forms back.
    if isinstance(obj, _dt.datetime):
        offset = obj.utcoffset()
        if offset is not None and offset.seconds % 60:
            # ISO 8601 (and pydantic) only know whole-minute offsets: send such times in UTC.
            obj = obj.astimezone(_dt.UTC)
        return obj.isoformat()
    if isinstance(obj, _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID | decimal.Decimal):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} on the wire")


_packer_default = _default


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def encode(env: Envelope, max_bytes: int | None = None) -> bytes:
    """Encode ``env`` (its payload a :class:`Message` or already plain data).

    Raises :class:`InvalidMessage` (``oversized``) when the frame exceeds ``max_bytes`` and
    (``not_a_message``) when the payload cannot be put on the wire; the sender learns at
    once instead of the receiver failing later.
    """
    payload = env.payload
    if isinstance(payload, Message):
        payload = payload.model_dump(mode="python")
    items: list[Any] = [
        WIRE_VERSION,
        env.kind,
        env.id,
        env.type,
        env.version,
        env.correlation_id,
        env.causation_id,
        env.deadline,
        env.priority,
        env.traceparent,
        env.principal,
        env.attempt,
        env.target,
        env.sender,
        payload,
    ]
    if env.degraded:
        items.append(True)
    try:
        frame: bytes = msgpack.packb(
            items,
            default=_packer_default,
            use_bin_type=True,
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidMessage("not_a_message", f"cannot encode {env.type}: {exc}") from None
    if max_bytes is not None and len(frame) > max_bytes:
        raise InvalidMessage(
            "oversized",
            f"{env.type} frame of {len(frame)} bytes exceeds the limit of {max_bytes}",
            {"size": len(frame), "limit": max_bytes},
        )
    return frame


def decode_envelope(frame: Any, max_bytes: int | None = None) -> Envelope:
    """Check and decode a frame's header; the payload is left as plain data."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise InvalidMessage(
            "not_a_message", f"expected an encoded envelope (bytes), got {type(frame).__name__}"
        )
    if max_bytes is not None and len(frame) > max_bytes:
        raise InvalidMessage(
            "oversized",
            f"frame of {len(frame)} bytes exceeds the limit of {max_bytes}",
            {"size": len(frame), "limit": max_bytes},
        )
    try:
        # Timestamps (ext -1) become aware datetimes; other extension types are refused.
        items = msgpack.unpackb(
            frame, raw=False, ext_hook=_reject_ext, strict_map_key=False, timestamp=3
        )
    except Exception as exc:  # msgpack raises many types on garbage; all mean "malformed"
        raise InvalidMessage("malformed", f"not a msgpack frame: {exc}") from None
    if not isinstance(items, list) or not len(_FIELDS) + 1 <= len(items) <= len(_FIELDS) + 2:
        raise InvalidMessage("malformed", "not a callboard envelope")
    if type(items[0]) is not int or items[0] != WIRE_VERSION:
        raise InvalidMessage(
            "bad_version", f"wire version {items[0]!r} is not supported (expected {WIRE_VERSION})"
        )
    try:
        header = dict(zip(_FIELDS, items[1:], strict=False))
        if len(items) > len(_FIELDS) + 1:
            header["degraded"] = items[-1]
        return Envelope.model_validate(header)
    except ValidationError as exc:
        raise InvalidMessage(
            "malformed", "invalid envelope header", {"errors": _jsonable_errors(exc)}
        ) from None


def decode_payload(env: Envelope) -> Message:
    """The envelope's payload as its registered, validated (and upgraded) message class."""
    return lookup(env.type).from_wire(env.version, env.payload)


def decode(frame: Any, max_bytes: int | None = None) -> tuple[Envelope, Message]:
    """Both steps at once: the header and the validated message."""
    env = decode_envelope(frame, max_bytes)
    return env, decode_payload(env)


def peek_id(frame: Any) -> str | None:
    """Best effort: the id of a frame that failed to decode, so an error reply can cite it."""
    try:
        items = msgpack.unpackb(frame, raw=False, ext_hook=_reject_ext, strict_map_key=False)
        if not isinstance(items, list) or len(items) < 3:
            return None
        value = items[2]
        return value if isinstance(value, str) and len(value) <= 128 else None
    except Exception:
        return None
