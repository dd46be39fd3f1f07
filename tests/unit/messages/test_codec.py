"""The msgpack wire: round trips, every rejection reason, upgrades, the registry, ids.

Every message class here has a ``type_name`` starting with ``test.codec.``: the registry
is global per process and other test modules define their own classes.
"""

import datetime as dt
import enum
import math
import os
import re
import uuid
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgpack
import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from callboard.errors import InvalidMessage
from callboard.messages import (
    WIRE_VERSION,
    Envelope,
    ErrorReply,
    Kind,
    Message,
    child_traceparent,
    decode,
    decode_envelope,
    decode_payload,
    encode,
    lookup,
    new_id,
    peek_id,
    registered_types,
    upgrades,
)
from callboard.messages._errors import Nothing

# The documented frame layout, positionally: [WIRE_VERSION, *HEADER_FIELDS].
HEADER_FIELDS = (
    "kind", "id", "type", "version", "correlation_id", "causation_id", "deadline",
    "priority", "traceparent", "principal", "attempt", "target", "sender", "payload",
)  # fmt: skip
KINDS: tuple[Kind, ...] = ("tell", "ask", "reply", "error")
MINUS_0330 = dt.timezone(-dt.timedelta(hours=3, minutes=30))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
W3C_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


# -- test messages ----------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(BaseModel):
    x: int
    y: float


class Shape(BaseModel):
    name: str
    points: list[Point]
    anchor: Point | None = None


class Small(Message):
    type_name: ClassVar[str] = "test.codec.Small"
    n: int


class Everything(Message):
    type_name: ClassVar[str] = "test.codec.Everything"

    i: int
    big: int
    f: float
    s: str
    raw: bytes
    flag: bool
    nothing: None
    nested: list[dict[str, list[int | str]]]
    shape: Shape
    shapes: dict[str, Shape]
    when: dt.datetime
    naive: dt.datetime
    day: dt.date
    at: dt.time
    span: dt.timedelta
    uid: uuid.UUID
    amount: Decimal
    color: Color
    level: Level
    choice: Literal["a", "b"]
    tags: set[str]
    frozen: frozenset[int]
    pair: tuple[int, str, bool]
    seq: tuple[float, ...]
    maybe: int | None
    maybe_shape: Shape | None
    data: Any
    default_n: int = 7
    default_s: str | None = None
    default_list: list[str] = Field(default_factory=lambda: ["x"])


def everything(**overrides: Any) -> Everything:
    values: dict[str, Any] = {
        "i": -(2**63),
        "big": 2**64 - 1,
        "f": 0.1,
        "s": "héllo wörld ✓ 🎭",
        "raw": b"\xff\xfe\x00\x80 not utf-8",
        "flag": True,
        "nothing": None,
        "nested": [{"a": [1, "two"], "b": []}, {}],
        "shape": Shape(name="tri", points=[Point(x=0, y=0.5), Point(x=1, y=-2.25)]),
        "shapes": {"sq": Shape(name="sq", points=[], anchor=Point(x=3, y=4.0))},
        "when": dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=MINUS_0330),
        "naive": dt.datetime(1999, 12, 31, 0, 0, 1),
        "day": dt.date(2000, 1, 1),
        "at": dt.time(12, 30, 5, 7, tzinfo=dt.UTC),
        "span": dt.timedelta(days=-3, seconds=5, microseconds=1),
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "amount": Decimal("-1234.5600"),
        "color": Color.GREEN,
        "level": Level.HIGH,
        "choice": "b",
        "tags": {"x", "y", ""},
        "frozen": frozenset({1, 2, 3}),
        "pair": (1, "one", False),
        "seq": (1.5, -0.0, math.inf),
        "maybe": None,
        "maybe_shape": Shape(name="empty", points=[]),
        "data": {"k": [1, 2.5, None, True, "s", b"\x00", {"deep": [[]]}]},
    }  # fmt: skip
    values.update(overrides)
    return Everything(**values)


def full_envelope(kind: Kind, payload: Any, **overrides: Any) -> Envelope:
    """An envelope with every header field set to a non-default value."""
    type_name = payload.type_name if isinstance(payload, Message) else "test.codec.Small"
    version = payload.version if isinstance(payload, Message) else 1
    fields: dict[str, Any] = {
        "kind": kind,
        "id": new_id(),
        "type": type_name,
        "version": version,
        "correlation_id": "conv-1",
        "causation_id": "cause-1",
        "deadline": 1_900_000_000.125,
        "priority": 9,
        "traceparent": TRACEPARENT,
        "principal": "user:alice@example.com",
        "attempt": 3,
        "target": "worker.1",
        "sender": "root",
        "payload": payload,
    }
    fields.update(overrides)
    return Envelope(**fields)


def raw_frame(*, wire: Any = WIRE_VERSION, **fields: Any) -> bytes:
    """A frame built by hand (no callboard encoder); ``fields`` override a valid Small tell."""
    values: dict[str, Any] = {
        "kind": "tell", "id": "id-1", "type": "test.codec.Small", "version": 1,
        "correlation_id": None, "causation_id": None, "deadline": None, "priority": 0,
        "traceparent": None, "principal": None, "attempt": 1, "target": None,
        "sender": None, "payload": {"n": 1},
    }  # fmt: skip
    assert set(fields) <= set(values), set(fields) - set(values)
    values.update(fields)
    packed: bytes = msgpack.packb([wire, *(values[f] for f in HEADER_FIELDS)], use_bin_type=True)
    return packed


def rejected(reason: str, exc_info: pytest.ExceptionInfo[InvalidMessage]) -> InvalidMessage:
    exc = exc_info.value
    assert exc.reason == reason, f"expected {reason}, got {exc.reason}: {exc}"
    assert exc.code == "invalid_message"
    assert exc.details["reason"] == reason
    return exc


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_every_kind_every_header_field(kind: Kind) -> None:
    msg = everything()
    env = full_envelope(kind, msg)
    frame = encode(env)
    assert isinstance(frame, bytes)

    got_env, got = decode(frame)

    assert got_env.model_dump(exclude={"payload"}) == env.model_dump(exclude={"payload"})
    assert type(got) is Everything
    assert got == msg


def test_round_trip_preserves_value_types_exactly() -> None:
    msg = everything()
    _, got = decode(encode(full_envelope("tell", msg)))
    assert isinstance(got, Everything)

    assert got.i == -(2**63) and got.big == 2**64 - 1
    assert got.f == 0.1
    assert got.raw == b"\xff\xfe\x00\x80 not utf-8" and type(got.raw) is bytes
    assert got.flag is True and got.nothing is None
    assert got.shape == msg.shape and isinstance(got.shape.points[0], Point)
    assert got.shapes["sq"].anchor == Point(x=3, y=4.0)
    assert got.when == msg.when and got.when.utcoffset() == dt.timedelta(hours=-3, minutes=-30)
    assert got.naive == msg.naive and got.naive.tzinfo is None
    assert got.day == dt.date(2000, 1, 1) and type(got.day) is dt.date
    assert got.at == msg.at and got.at.utcoffset() == dt.timedelta(0)
    assert got.span == dt.timedelta(days=-3, seconds=5, microseconds=1)
    assert got.uid == msg.uid and isinstance(got.uid, uuid.UUID)
    assert str(got.amount) == "-1234.5600"  # exact digits and exponent, not just numerically
    assert got.color is Color.GREEN and got.level is Level.HIGH
    assert got.tags == {"x", "y", ""} and type(got.tags) is set
    assert got.frozen == frozenset({1, 2, 3}) and type(got.frozen) is frozenset
    assert got.pair == (1, "one", False) and type(got.pair) is tuple
    assert got.seq[0] == 1.5 and math.copysign(1.0, got.seq[1]) == -1.0 and got.seq[2] == math.inf
    assert got.maybe is None and got.maybe_shape == Shape(name="empty", points=[])
    assert got.data == {"k": [1, 2.5, None, True, "s", b"\x00", {"deep": [[]]}]}
    assert (got.default_n, got.default_s, got.default_list) == (7, None, ["x"])


def test_round_trip_of_defaults_and_optionals_when_set() -> None:
    msg = everything(maybe=-1, maybe_shape=None, default_n=0, default_s="", default_list=[])
    _, got = decode(encode(full_envelope("ask", msg)))
    assert got == msg


def test_defaults_fill_in_fields_missing_from_the_payload() -> None:
    payload = everything().model_dump(mode="python")
    for name in ("default_n", "default_s", "default_list"):
        del payload[name]
    _, got = decode(encode(full_envelope("tell", payload, type="test.codec.Everything")))
    assert isinstance(got, Everything)
    assert (got.default_n, got.default_s, got.default_list) == (7, None, ["x"])


def test_round_trip_of_minimal_envelope_uses_header_defaults() -> None:
    env = Envelope(kind="tell", id="m1", type="test.codec.Small", payload=Small(n=5))
    got_env, got = decode(encode(env))
    assert got == Small(n=5)
    assert got_env.model_dump(exclude={"payload"}) == {
        "kind": "tell", "id": "m1", "type": "test.codec.Small", "version": 1,
        "correlation_id": None, "causation_id": None, "deadline": None, "priority": 0,
        "traceparent": None, "principal": None, "attempt": 1, "target": None, "sender": None,
        "degraded": False,
    }  # fmt: skip


def test_runtime_messages_round_trip() -> None:
    err = ErrorReply(code="invalid_message", message="nope", details={"reason": "malformed"})
    _, got = decode(encode(full_envelope("error", err)))
    assert got == err
    _, got = decode(encode(full_envelope("reply", Nothing())))
    assert got == Nothing()


def test_frame_layout_is_the_documented_positional_array() -> None:
    env = full_envelope("ask", Small(n=3))
    items = msgpack.unpackb(encode(env), raw=False)
    assert items[0] == WIRE_VERSION == 1
    assert dict(zip(HEADER_FIELDS, items[1:], strict=True)) == {
        **env.model_dump(exclude={"payload", "degraded"}),
        "payload": {"n": 3},
    }


def test_degraded_flag_is_a_trailing_element_written_only_when_set() -> None:
    plain = full_envelope("reply", Small(n=3))
    assert len(msgpack.unpackb(encode(plain), raw=False)) == len(HEADER_FIELDS) + 1
    flagged = full_envelope("reply", Small(n=3))
    flagged.degraded = True
    items = msgpack.unpackb(encode(flagged), raw=False)
    assert len(items) == len(HEADER_FIELDS) + 2 and items[-1] is True
    assert decode_envelope(encode(flagged)).degraded is True
    assert decode_envelope(encode(plain)).degraded is False


def test_a_frame_with_extra_trailing_elements_is_malformed() -> None:
    items = msgpack.unpackb(encode(full_envelope("reply", Small(n=3))), raw=False)
    frame = msgpack.packb([*items, True, "extra"], use_bin_type=True)
    with pytest.raises(InvalidMessage) as info:
        decode_envelope(frame)
    assert info.value.reason == "malformed"


def test_a_non_boolean_degraded_flag_is_malformed() -> None:
    items = msgpack.unpackb(encode(full_envelope("reply", Small(n=3))), raw=False)
    with pytest.raises(InvalidMessage) as info:
        decode_envelope(msgpack.packb([*items, "yes"], use_bin_type=True))
    assert info.value.reason == "malformed"


def test_plain_data_payload_is_encoded_as_is() -> None:
    env = full_envelope("tell", {"n": 4}, type="test.codec.Small")
    got_env, got = decode(encode(env))
    assert got_env.payload == {"n": 4}
    assert got == Small(n=4)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    frame = encode(full_envelope("tell", Small(n=1)))
    assert decode(bytearray(frame))[1] == Small(n=1)
    assert decode(memoryview(frame))[1] == Small(n=1)


def test_decode_envelope_leaves_payload_plain_and_decode_payload_validates() -> None:
    env = decode_envelope(encode(full_envelope("tell", Small(n=2))))
    assert env.payload == {"n": 2}
    assert decode_payload(env) == Small(n=2)


# -- rejections: malformed --------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [b"", b"\xc1", b"\xff" * 64, b"hello, not msgpack", b"\x92\x01"],
    ids=["empty", "reserved-byte", "ff-run", "text", "short-array"],
)
def test_garbage_bytes_are_malformed(frame: bytes) -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(frame)
    rejected("malformed", exc_info)


def test_every_truncation_of_a_valid_frame_is_malformed() -> None:
    frame = encode(full_envelope("ask", everything()))
    for cut in range(len(frame)):
        with pytest.raises(InvalidMessage) as exc_info:
            decode(frame[:cut])
        rejected("malformed", exc_info)


def test_trailing_bytes_after_a_valid_frame_are_malformed() -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(encode(full_envelope("tell", Small(n=1))) + b"\x00")
    rejected("malformed", exc_info)


@pytest.mark.parametrize(
    "obj",
    [{"kind": "tell", "id": "x"}, "a string", 1, None, 1.5, b"bin", True],
    ids=["map", "str", "int", "nil", "float", "bin", "bool"],
)
def test_msgpack_of_a_non_list_is_malformed(obj: Any) -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(msgpack.packb(obj, use_bin_type=True))
    rejected("malformed", exc_info)


@pytest.mark.parametrize("length", [0, 1, 14, 16, 30])
def test_list_of_wrong_length_is_malformed(length: int) -> None:
    good = msgpack.unpackb(raw_frame(), raw=False)
    items = (good * 3)[:length]
    with pytest.raises(InvalidMessage) as exc_info:
        decode(msgpack.packb(items, use_bin_type=True))
    rejected("malformed", exc_info)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "shout"),
        ("kind", None),
        ("id", 123),
        ("id", ""),
        ("id", "x" * 129),
        ("id", None),
        ("type", ""),
        ("type", ["test.codec.Small"]),
        ("type", "t" * 257),
        ("version", 0),
        ("version", "one"),
        ("correlation_id", 5),
        ("correlation_id", "c" * 129),
        ("causation_id", {"a": 1}),
        ("deadline", "soon"),
        ("priority", 10),
        ("priority", -1),
        ("traceparent", "not-a-traceparent"),
        ("traceparent", TRACEPARENT.upper()),
        ("principal", "p" * 257),
        ("attempt", 0),
        ("target", "t" * 129),
        ("sender", 1.5),
    ],
)
def test_header_field_of_wrong_type_or_range_is_malformed(field: str, value: Any) -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode_envelope(raw_frame(**{field: value}))
    exc = rejected("malformed", exc_info)
    errors = exc.details["errors"]
    assert errors and all(set(e) == {"loc", "msg", "type"} for e in errors)
    assert [field] in [e["loc"][:1] for e in errors]


def test_ext_type_in_payload_is_malformed() -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(payload={"n": msgpack.ExtType(5, b"\x01\x02")}))
    rejected("malformed", exc_info)


def test_ext_type_in_header_is_malformed() -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(id=msgpack.ExtType(127, b"")))
    rejected("malformed", exc_info)


def test_timestamp_ext_type_decodes_as_an_aware_datetime() -> None:
    # msgpack's own Timestamp type (ext -1) is decoded, not refused: it becomes a UTC datetime.
    class Anything(Message):
        type_name: ClassVar[str] = "test.codec.Anything"
        x: Any = None

    frame = raw_frame(type="test.codec.Anything", payload={"x": msgpack.Timestamp(1, 0)})
    _, msg = decode(frame)
    assert msg.x == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)


# -- rejections: oversized --------------------------------------------------------------------


def test_decode_rejects_frames_over_max_bytes() -> None:
    frame = encode(full_envelope("ask", everything()))
    assert decode(frame, max_bytes=len(frame))[1] == everything()
    with pytest.raises(InvalidMessage) as exc_info:
        decode(frame, max_bytes=len(frame) - 1)
    exc = rejected("oversized", exc_info)
    assert exc.details["size"] == len(frame)
    assert exc.details["limit"] == len(frame) - 1


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(b"\xc1" * 2048, max_bytes=1024)
    rejected("oversized", exc_info)


def test_encode_refuses_frames_over_max_bytes() -> None:
    env = full_envelope("tell", Small(n=1), type="test.codec.Small")
    size = len(encode(env))
    assert encode(env, max_bytes=size) == encode(env)
    with pytest.raises(InvalidMessage) as exc_info:
        encode(full_envelope("tell", {"n": 1, "pad": "x" * 5000}), max_bytes=1024)
    exc = rejected("oversized", exc_info)
    assert exc.details["limit"] == 1024 and exc.details["size"] > 5000


# -- rejections: not_a_message ----------------------------------------------------------------


@pytest.mark.parametrize(
    "obj", [{"kind": "tell"}, 42, "a str frame", None, [b"x"], Small(n=1)], ids=repr
)
def test_decode_of_a_non_bytes_object_is_not_a_message(obj: Any) -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(obj)
    rejected("not_a_message", exc_info)


class Opaque:
    pass


class HoldsObject(Message):
    type_name: ClassVar[str] = "test.codec.HoldsObject"
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Any


def _self_referential() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "payload",
    [
        HoldsObject(thing=Opaque()),
        HoldsObject(thing=Path("/tmp")),
        HoldsObject(thing=2**64),
        HoldsObject(thing=-(2**63) - 1),
        HoldsObject(thing="\ud800"),
        {"thing": object()},
        _self_referential(),
    ],
    ids=["object", "path", "int-too-big", "int-too-small", "lone-surrogate", "plain", "loop"],
)
def test_encode_of_an_unencodable_payload_is_not_a_message(payload: Any) -> None:
    env = full_envelope("tell", payload, type="test.codec.HoldsObject")
    with pytest.raises(InvalidMessage) as exc_info:
        encode(env)
    rejected("not_a_message", exc_info)


# -- rejections: unknown_type -----------------------------------------------------------------


def test_unknown_type() -> None:
    env = decode_envelope(raw_frame(type="test.codec.NoSuchType"))  # the header is fine
    with pytest.raises(InvalidMessage) as exc_info:
        decode_payload(env)
    exc = rejected("unknown_type", exc_info)
    assert "test.codec.NoSuchType" in exc.message
    with pytest.raises(InvalidMessage) as exc_info:
        lookup("test.codec.NoSuchType")
    rejected("unknown_type", exc_info)


# -- rejections: bad_version ------------------------------------------------------------------


@pytest.mark.parametrize("wire", [0, 2, 255, -1, "1", None, [1]])
def test_wire_version_other_than_1_is_bad_version(wire: Any) -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(wire=wire))
    rejected("bad_version", exc_info)


def test_payload_version_newer_than_the_class_is_bad_version() -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(version=2))
    exc = rejected("bad_version", exc_info)
    assert exc.details["type"] == "test.codec.Small"
    assert exc.details["version"] == 2
    assert exc.details["supported"] == 1


class Gapped(Message):
    """Version 3 that can only upgrade from 2: version 1 payloads have no path."""

    type_name: ClassVar[str] = "test.codec.Gapped"
    version: ClassVar[int] = 3
    n: int

    @upgrades(2)
    @staticmethod
    def _from_2(data: dict[str, Any]) -> dict[str, Any]:
        return data


def test_older_version_without_an_upgrade_path_is_bad_version() -> None:
    assert decode(raw_frame(type="test.codec.Gapped", version=2))[1] == Gapped(n=1)
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(type="test.codec.Gapped", version=1))
    exc = rejected("bad_version", exc_info)
    assert exc.details == {
        "reason": "bad_version", "type": "test.codec.Gapped", "version": 1, "supported": 3,
    }  # fmt: skip


@pytest.mark.parametrize("version", [0, -1])
def test_from_wire_rejects_impossible_versions(version: int) -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        Small.from_wire(version, {"n": 1})
    rejected("bad_version", exc_info)


# -- rejections: invalid_fields ---------------------------------------------------------------


def test_invalid_fields_carry_pydantic_errors() -> None:
    payload = everything().model_dump(mode="python")
    payload["i"] = "not an int"
    del payload["s"]
    payload["shape"]["points"][1]["x"] = [1]
    with pytest.raises(InvalidMessage) as exc_info:
        decode(encode(full_envelope("tell", payload, type="test.codec.Everything")))
    exc = rejected("invalid_fields", exc_info)
    assert exc.details["type"] == "test.codec.Everything"
    errors = exc.details["errors"]
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)
    assert all(isinstance(e["msg"], str) and e["msg"] for e in errors)
    by_loc = {tuple(e["loc"]): e["type"] for e in errors}
    assert by_loc == {
        ("i",): "int_parsing",
        ("s",): "missing",
        ("shape", "points", "1", "x"): "int_type",
    }


def test_extra_fields_are_rejected() -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(payload={"n": 1, "surprise": True}))
    exc = rejected("invalid_fields", exc_info)
    assert exc.details["errors"] == [
        {"loc": ["surprise"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


@pytest.mark.parametrize("payload", [[1], "n=1", None, 1])
def test_payload_that_is_not_a_map_is_invalid_fields(payload: Any) -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(payload=payload))
    rejected("invalid_fields", exc_info)
    with pytest.raises(InvalidMessage) as exc_info:  # also on the upgrade path
        decode(raw_frame(type="test.codec.Gapped", version=2, payload=payload))
    rejected("invalid_fields", exc_info)


class Stripped(Message):
    """A realistic 'before' validator that assumes its input is a str."""

    type_name: ClassVar[str] = "test.codec.Stripped"
    name: str

    @field_validator("name", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip()


def test_validator_crash_on_bad_input_is_invalid_fields() -> None:
    assert decode(raw_frame(type="test.codec.Stripped", payload={"name": "  ok "}))[1] == (
        Stripped(name="ok")
    )
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(type="test.codec.Stripped", payload={"name": 5}))
    rejected("invalid_fields", exc_info)


# -- encodable means decodable ----------------------------------------------------------------


class IntKeyed(Message):
    type_name: ClassVar[str] = "test.codec.IntKeyed"
    by_id: dict[int, str]


class Stamped(Message):
    type_name: ClassVar[str] = "test.codec.Stamped"
    at: dt.datetime


def _encodable_means_decodable(msg: Message) -> None:
    """The encoder's promise: what cannot go on the wire is refused at the sender."""
    try:
        frame = encode(Envelope(kind="tell", id=new_id(), type=msg.type_name, payload=msg))
    except InvalidMessage as exc:
        assert exc.reason == "not_a_message"
        return
    assert decode(frame)[1] == msg


def test_int_keyed_dict_round_trips_or_is_refused_at_the_sender() -> None:
    _encodable_means_decodable(IntKeyed(by_id={1: "a", 2: "b"}))


def test_datetime_with_sub_minute_utc_offset_round_trips_or_is_refused() -> None:
    amsterdam_lmt = dt.datetime(1900, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Amsterdam"))
    assert amsterdam_lmt.isoformat().endswith("+00:19:32")
    _encodable_means_decodable(Stamped(at=amsterdam_lmt))


# -- upgrades ---------------------------------------------------------------------------------


class Account(Message):
    """v1: {n}; v2 added ``label``; v3 renamed ``n`` to ``count`` and upper-cases labels."""

    type_name: ClassVar[str] = "test.codec.Account"
    version: ClassVar[int] = 3
    count: int
    label: str
    trail: list[str] = Field(default_factory=list)

    @upgrades(1)
    @staticmethod
    def _v1(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "label": "unnamed", "trail": [*data.get("trail", []), "1->2"]}

    @staticmethod
    @upgrades(2)  # the decorator works on either side of @staticmethod
    def _v2(data: dict[str, Any]) -> dict[str, Any]:
        out = {"count": data.pop("n"), "label": data.pop("label").upper(), **data}
        out["trail"] = [*out.get("trail", []), "2->3"]
        return out


def test_upgrades_chain_from_every_older_version() -> None:
    _, from_v1 = decode(raw_frame(type="test.codec.Account", version=1, payload={"n": 5}))
    assert from_v1 == Account(count=5, label="UNNAMED", trail=["1->2", "2->3"])
    v2 = {"n": 6, "label": "x"}
    _, from_v2 = decode(raw_frame(type="test.codec.Account", version=2, payload=v2))
    assert from_v2 == Account(count=6, label="X", trail=["2->3"])
    current = Account(count=7, label="as is")
    assert decode(encode(full_envelope("tell", current)))[1] == current


def test_upgrade_output_is_still_validated() -> None:
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(type="test.codec.Account", version=2, payload={"n": "x", "label": "y"}))
    exc = rejected("invalid_fields", exc_info)
    assert exc.details["errors"][0]["loc"] == ["count"]


class Fragile(Message):
    type_name: ClassVar[str] = "test.codec.Fragile"
    version: ClassVar[int] = 2
    n: int

    @upgrades(1)
    @staticmethod
    def _v1(data: dict[str, Any]) -> dict[str, Any]:
        return {"n": data["old_n"] * 2}  # KeyError when the v1 payload lacks old_n


def test_upgrader_that_raises_is_bad_version_not_a_crash() -> None:
    assert decode(raw_frame(type="test.codec.Fragile", version=1, payload={"old_n": 2}))[1] == (
        Fragile(n=4)
    )
    with pytest.raises(InvalidMessage) as exc_info:
        decode(raw_frame(type="test.codec.Fragile", version=1, payload={"n": 2}))
    exc = rejected("bad_version", exc_info)
    assert "v1" in exc.message
    assert isinstance(exc.__cause__, KeyError)


def test_upgrader_gets_a_copy_of_the_payload() -> None:
    env = decode_envelope(
        raw_frame(type="test.codec.Account", version=2, payload={"n": 1, "label": "a"})
    )
    decode_payload(env)
    assert env.payload == {"n": 1, "label": "a"}


# -- the registry -----------------------------------------------------------------------------


def test_explicit_type_name_is_the_wire_name() -> None:
    class ExplicitlyNamedCodecMessage(Message):
        type_name: ClassVar[str] = "test.codec.Explicit"

    assert lookup("test.codec.Explicit") is ExplicitlyNamedCodecMessage
    assert registered_types()["test.codec.Explicit"] is ExplicitlyNamedCodecMessage
    with pytest.raises(InvalidMessage):
        lookup("ExplicitlyNamedCodecMessage")


def test_default_type_name_is_the_class_name() -> None:
    # type() lets the class name itself carry the test.codec. prefix.
    cls: type[Message] = type(
        "test.codec.DefaultNamed", (Message,), {"__annotations__": {"n": int}}
    )
    assert cls.type_name == "test.codec.DefaultNamed"
    assert lookup("test.codec.DefaultNamed") is cls


def test_duplicate_type_name_from_another_class_raises_at_definition() -> None:
    with pytest.raises(TypeError, match=r"test\.codec\.Small.*already registered"):

        class Impostor(Message):
            type_name: ClassVar[str] = "test.codec.Small"
            n: str

    assert lookup("test.codec.Small") is Small


def test_duplicate_from_same_qualname_in_another_module_raises() -> None:
    with pytest.raises(TypeError):
        type("Small", (Message,), {"__module__": "elsewhere", "type_name": "test.codec.Small"})
    assert lookup("test.codec.Small") is Small


def test_redefining_the_same_qualified_class_replaces_it() -> None:
    source = (
        "from typing import ClassVar\n"
        "from callboard.messages import Message\n"
        "class Redefined(Message):\n"
        "    type_name: ClassVar[str] = 'test.codec.Redefined'\n"
        "    {field}\n"
    )
    namespace: dict[str, Any] = {"__name__": "test_codec_reloaded_module"}
    exec(source.format(field="n: int"), namespace)
    first = namespace["Redefined"]
    assert lookup("test.codec.Redefined") is first
    exec(source.format(field="label: str"), namespace)  # a notebook cell run again
    second = namespace["Redefined"]
    assert second is not first
    assert lookup("test.codec.Redefined") is second
    _, msg = decode(raw_frame(type="test.codec.Redefined", payload={"label": "new"}))
    assert type(msg) is second


def test_registered_types_is_a_copy() -> None:
    types = registered_types()
    types["test.codec.Injected"] = Small
    with pytest.raises(InvalidMessage):
        lookup("test.codec.Injected")


@pytest.mark.parametrize("version", [0, -1, "2"])
def test_version_must_be_a_positive_int(version: Any) -> None:
    with pytest.raises(TypeError, match="version"):
        type(
            "BadVersion",
            (Message,),
            {"type_name": f"test.codec.BadVersion{version}", "version": version},
        )
    assert f"test.codec.BadVersion{version}" not in registered_types()


# -- ids and trace context --------------------------------------------------------------------


def test_new_id_is_unique_and_short() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids[::1000])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_never_repeats_the_parents_ids() -> None:
    count = 2000
    before = [new_id() for _ in range(count)]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only os._exit from here, never return into pytest
        status = 1
        try:
            os.close(read_fd)
            data = "\n".join(new_id() for _ in range(count)).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    after = [new_id() for _ in range(count)]  # what a non-reseeded child would have repeated
    with os.fdopen(read_fd, "rb") as inp:
        child = inp.read().decode().split("\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(child) == count == len(set(child))
    assert not set(child) & (set(before) | set(after))


def _w3c_parts(tp: str) -> tuple[str, str, str, str]:
    m = W3C_TRACEPARENT.match(tp)
    assert m is not None, tp
    version, trace_id, span_id, flags = m.groups()
    assert version != "ff"
    assert trace_id != "0" * 32 and span_id != "0" * 16
    return version, trace_id, span_id, flags


def test_child_traceparent_keeps_trace_and_flags_with_a_new_span() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    spans = set()
    for _ in range(100):
        child = child_traceparent(parent)
        version, trace_id, span_id, flags = _w3c_parts(child)
        assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "00")
        assert span_id != "00f067aa0ba902b7"
        spans.add(span_id)
    assert len(spans) == 100
    grandchild = child_traceparent(child)
    assert _w3c_parts(grandchild)[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    Envelope(kind="tell", id="x", type="t", traceparent=grandchild)  # the header accepts it


@pytest.mark.parametrize("parent", [None, ""])
def test_child_traceparent_without_parent_starts_a_new_sampled_trace(parent: str | None) -> None:
    first, second = child_traceparent(parent), child_traceparent(parent)
    assert _w3c_parts(first)[0] == "00" and _w3c_parts(first)[3] == "01"
    assert _w3c_parts(first)[1] != _w3c_parts(second)[1]


# -- peek_id ----------------------------------------------------------------------------------


def test_peek_id_finds_the_id_of_a_frame_whose_payload_is_invalid() -> None:
    frame = raw_frame(id="req-42", payload={"n": "not an int"})
    with pytest.raises(InvalidMessage):
        decode(frame)
    assert peek_id(frame) == "req-42"


def test_peek_id_finds_the_id_even_when_the_header_is_invalid() -> None:
    frame = raw_frame(id="req-43", priority=99)
    with pytest.raises(InvalidMessage):
        decode(frame)
    assert peek_id(frame) == "req-43"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        b"\xff\xfe\xfd",
        encode(Envelope(kind="tell", id="x", type="t", payload=None))[:-3],
        msgpack.packb({"id": "x"}),
        msgpack.packb([1, "tell", 5]),
        raw_frame(id="i" * 129),
        raw_frame(payload=msgpack.ExtType(1, b"")),
        {"id": "x"},
        12,
        None,
    ],
    ids=[
        "empty", "reserved", "ff", "truncated", "map", "int-id", "id-too-long", "ext", "dict",
        "int", "none",
    ],
)  # fmt: skip
def test_peek_id_is_none_for_garbage(frame: Any) -> None:
    assert peek_id(frame) is None


def test_peek_id_is_none_for_a_msgpack_string() -> None:
    assert peek_id(msgpack.packb("abc")) is None
