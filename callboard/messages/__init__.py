"""Messages and the wire: the ``Message`` base, the ``Envelope`` header, the msgpack codec."""

from callboard.messages._codec import (
    WIRE_VERSION,
    decode,
    decode_envelope,
    decode_payload,
    encode,
    peek_id,
)
from callboard.messages._degraded import is_degraded, mark_degraded
from callboard.messages._envelope import Envelope, Kind, child_traceparent, new_id
from callboard.messages._errors import ErrorReply
from callboard.messages._message import Message, upgrades
from callboard.messages._registry import lookup, registered_types

__all__ = [
    "WIRE_VERSION",
    "Envelope",
    "ErrorReply",
    "Kind",
    "Message",
    "child_traceparent",
    "decode",
    "decode_envelope",
    "decode_payload",
    "encode",
    "is_degraded",
    "lookup",
    "mark_degraded",
    "new_id",
    "peek_id",
    "registered_types",
    "upgrades",
]
