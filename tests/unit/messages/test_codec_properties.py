"""Property tests of the wire: decode never fails other than with InvalidMessage, valid
messages round-trip equal, and every header allowed by ``Envelope`` survives the trip.

Message classes use ``type_name``s prefixed ``test.codec.`` (the registry is per process).
"""

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, ClassVar, Literal

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from callboard.errors import InvalidMessage
from callboard.messages import (
    WIRE_VERSION,
    Envelope,
    Kind,
    Message,
    decode,
    decode_envelope,
    encode,
    new_id,
    peek_id,
    upgrades,
)

REASONS = {
    "malformed",
    "oversized",
    "unknown_type",
    "bad_version",
    "invalid_fields",
    "not_a_message",
}
KINDS: tuple[Kind, ...] = ("tell", "ask", "reply", "error")
TRACEPARENT_RE = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1  # msgpack's integer range


def fast(max_examples: int) -> settings:
    """Sized so the whole file runs in a few seconds."""
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


# -- message classes --------------------------------------------------------------------------


class Mood(enum.Enum):
    CALM = "calm"
    LOUD = 3


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 9


class Leaf(BaseModel):
    label: str
    weight: float | None = None


class Branch(BaseModel):
    leaves: list[Leaf]
    child: Leaf | None = None


class Rich(Message):
    type_name: ClassVar[str] = "test.codec.prop.Rich"

    i: int
    f: float
    s: str
    raw: bytes
    flag: bool
    none: None
    ints: list[int]
    table: dict[str, list[str | int]]
    branch: Branch
    branches: list[Branch]
    when: dt.datetime
    day: dt.date
    at: dt.time
    span: dt.timedelta
    uid: uuid.UUID
    amount: Decimal
    mood: Mood
    level: Priority
    choice: Literal["x", "y", 3]
    tags: set[str]
    frozen: frozenset[int]
    triple: tuple[int, str, bytes]
    floats: tuple[float, ...]
    maybe: int | None
    maybe_branch: Branch | None
    data: Any
    default_n: int = 7
    default_list: list[bytes] = Field(default_factory=list)


class Counter(Message):
    """Version 3, upgradable from 1 and 2: fuzzed frames also exercise the upgrade path."""

    type_name: ClassVar[str] = "test.codec.prop.Counter"
    version: ClassVar[int] = 3
    count: int
    label: str = ""

    @upgrades(1)
    @staticmethod
    def _v1(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "label": str(data.get("n"))}

    @upgrades(2)
    @staticmethod
    def _v2(data: dict[str, Any]) -> dict[str, Any]:
        return {"count": data["n"], "label": data["label"]}  # may raise KeyError: bad_version


TYPE_NAMES = [
    "test.codec.prop.Rich",
    "test.codec.prop.Counter",
    "callboard.ErrorReply",
    "callboard.Nothing",
    "test.codec.prop.Unregistered",
]


# -- strategies -------------------------------------------------------------------------------

ints64 = st.integers(INT64_MIN, UINT64_MAX)
floats = st.floats(allow_nan=False)  # NaN != NaN; inf and -0.0 are in
leaves = st.none() | st.booleans() | ints64 | floats | st.text(max_size=20) | st.binary(max_size=20)
# What a msgpack payload holds after decoding: str-keyed maps, lists, scalars.
plain = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Anything msgpack can carry, incl. non-str keys and ext types the decoder must refuse.
wild_leaves = (
    leaves
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**32), st.integers(0, 999_999_999))
)
wild = st.recursive(
    wild_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | ints64 | st.binary(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


payload_fields = st.sampled_from(["n", "count", "label", "code", "message", "details", "i"])
payloads = st.one_of(
    st.fixed_dictionaries({"count": ints64}, optional={"label": st.text(max_size=5)}),
    st.fixed_dictionaries({"n": ints64}, optional={"label": st.text(max_size=5)}),
    st.fixed_dictionaries(
        {"code": st.text(max_size=5)}, optional={"message": st.text(), "details": plain}
    ),
    st.dictionaries(payload_fields, wild, max_size=3),
    wild,
)
plausible_header: list[st.SearchStrategy[Any]] = [
    st.just(WIRE_VERSION),
    st.sampled_from(KINDS),
    st.text(min_size=1, max_size=10),
    st.sampled_from(TYPE_NAMES),
    st.just(1) | st.integers(1, 4),
    st.none() | st.text(max_size=10),
    st.none() | st.text(max_size=10),
    st.none() | floats,
    st.integers(0, 9),
    st.none() | st.from_regex(TRACEPARENT_RE, fullmatch=True),
    st.none() | st.text(max_size=10),
    st.integers(1, 3),
    st.none() | st.text(max_size=10),
    st.none() | st.text(max_size=10),
    payloads,
]


@st.composite
def near_frames(draw: st.DrawFn) -> list[Any]:
    """A plausible 15-item frame with zero to two positions replaced by anything at all."""
    items = [draw(s) for s in plausible_header]
    for _ in range(draw(st.integers(0, 2))):
        items[draw(st.integers(0, 14))] = draw(small_wild)
    return items


small_wild = st.recursive(
    wild_leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4) | ints64, inner, max_size=3)
    ),
    max_leaves=4,
)
any_15 = st.lists(small_wild, min_size=15, max_size=15)

tz_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    # Whole minutes: a UTC offset with seconds does not survive the wire (see test_codec.py).
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
leaf_models = st.builds(Leaf, label=st.text(max_size=10), weight=st.none() | floats)
branch_models = st.builds(
    Branch, leaves=st.lists(leaf_models, max_size=3), child=st.none() | leaf_models
)
CENTURY = dt.timedelta(days=36_525)
rich_messages = st.builds(
    Rich,
    i=ints64,
    f=floats,
    s=st.text(max_size=40),
    raw=st.binary(max_size=40),
    flag=st.booleans(),
    none=st.none(),
    ints=st.lists(ints64, max_size=5),
    table=st.dictionaries(st.text(max_size=5), st.lists(st.text(max_size=5) | ints64, max_size=3)),
    branch=branch_models,
    branches=st.lists(branch_models, max_size=2),
    when=st.datetimes(timezones=tz_offsets),
    day=st.dates(),
    at=st.times(timezones=st.none() | tz_offsets),
    # Beyond ~280 years a float of seconds cannot hold every microsecond.
    span=st.timedeltas(min_value=-CENTURY, max_value=CENTURY),
    uid=st.uuids(),
    amount=st.decimals(allow_nan=False, allow_infinity=False),
    mood=st.sampled_from(Mood),
    level=st.sampled_from(Priority),
    choice=st.sampled_from(["x", "y", 3]),
    tags=st.sets(st.text(max_size=5), max_size=4),
    frozen=st.frozensets(ints64, max_size=4),
    triple=st.tuples(ints64, st.text(max_size=5), st.binary(max_size=5)),
    floats=st.lists(floats, max_size=4).map(tuple),
    maybe=st.none() | ints64,
    maybe_branch=st.none() | branch_models,
    data=plain,
    default_n=ints64,
    default_list=st.lists(st.binary(max_size=4), max_size=3),
)

headers = st.builds(
    Envelope,
    kind=st.sampled_from(KINDS),
    id=st.text(min_size=1, max_size=128),
    type=st.text(min_size=1, max_size=256),
    version=st.integers(1, UINT64_MAX),
    correlation_id=st.none() | st.text(max_size=128),
    causation_id=st.none() | st.text(max_size=128),
    deadline=st.none() | floats,
    priority=st.integers(0, 9),
    traceparent=st.none() | st.from_regex(TRACEPARENT_RE, fullmatch=True),
    principal=st.none() | st.text(max_size=256),
    attempt=st.integers(1, UINT64_MAX),
    target=st.none() | st.text(max_size=128),
    sender=st.none() | st.text(max_size=128),
    payload=plain,
)


# -- (a) decode returns or raises InvalidMessage, never anything else ---------------------------


def decodes_or_refuses(frame: Any, max_bytes: int | None = None) -> None:
    try:
        env, msg = decode(frame, max_bytes)
    except InvalidMessage as exc:
        assert exc.reason in REASONS, exc.reason
        assert exc.details["reason"] == exc.reason
    else:
        assert isinstance(env, Envelope) and isinstance(msg, Message)
        assert type(msg).type_name == env.type
    peeked = peek_id(frame)
    assert peeked is None or (isinstance(peeked, str) and len(peeked) <= 128)


@fast(400)
@given(st.binary(max_size=200), st.none() | st.integers(0, 300))
def test_decode_of_arbitrary_bytes(frame: bytes, max_bytes: int | None) -> None:
    decodes_or_refuses(frame, max_bytes)


@fast(200)
@given(wild)
def test_decode_of_arbitrary_msgpack_structures(obj: Any) -> None:
    decodes_or_refuses(msgpack.packb(obj, use_bin_type=True))


@fast(150)
@given(any_15)
def test_decode_of_arbitrary_15_item_lists(items: list[Any]) -> None:
    decodes_or_refuses(msgpack.packb(items, use_bin_type=True))


@fast(250)
@given(near_frames())
def test_decode_of_near_valid_frames(items: list[Any]) -> None:
    decodes_or_refuses(msgpack.packb(items, use_bin_type=True))


@fast(60)
@given(rich_messages, st.data())
def test_decode_of_corrupted_valid_frames(msg: Rich, data: st.DataObject) -> None:
    frame = bytearray(encode(Envelope(kind="ask", id=new_id(), type=msg.type_name, payload=msg)))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    decodes_or_refuses(bytes(frame))


# -- (b) every valid message round-trips equal --------------------------------------------------


@fast(120)
@given(rich_messages, st.sampled_from(KINDS))
def test_valid_messages_round_trip(msg: Rich, kind: Kind) -> None:
    env = Envelope(kind=kind, id=new_id(), type=msg.type_name, payload=msg)
    got_env, got = decode(encode(env))
    assert got == msg
    assert type(got.raw) is bytes and type(got.tags) is set and type(got.triple) is tuple
    assert got.when.utcoffset() == msg.when.utcoffset()
    assert str(got.amount) == str(msg.amount)
    assert got_env.model_dump(exclude={"payload"}) == env.model_dump(exclude={"payload"})


@fast(100)
@given(st.integers(INT64_MIN, UINT64_MAX), st.text(max_size=10))
def test_counter_round_trips_at_current_version(count: int, label: str) -> None:
    msg = Counter(count=count, label=label)
    env = Envelope(kind="tell", id=new_id(), type=msg.type_name, version=3, payload=msg)
    assert decode(encode(env))[1] == msg


# -- (c) every header within Envelope's constraints round-trips ---------------------------------


@fast(300)
@given(headers)
def test_envelope_headers_round_trip(env: Envelope) -> None:
    frame = encode(env)
    assert decode_envelope(frame) == env
    assert decode_envelope(frame, max_bytes=len(frame)) == env
    assert peek_id(frame) == env.id
