"""Fakes for driving an ``ActorRuntime`` in-process: a fake Port, a fake clock, envelope
builders and a harness base that feeds frames to the runtime and reads what it sent.

Timers never run on their own: the fake port records ``call_later`` keys and a test fires
them by calling ``runtime.on_timer(key)``. Shared by ``test_runtime.py`` and
``test_runtime_policies.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from callboard.actors._runtime import ActorRuntime
from callboard.messages import Envelope, ErrorReply, Message, decode_envelope, encode, new_id

SELF = "svc"
CLIENT = "addr:client"
OTHER = "other"
OTHER_ADDR = "addr:other"
GONE = "gone"  # in the directory, but restarting (address None)
NOW = 1_000_000.0
ASK_TIMEOUT = 10.0


def envelope(**fields: Any) -> Envelope:
    """A validated envelope (the payload may be a Message: ``encode`` dumps it)."""
    return Envelope.model_validate(fields)


class FakeClock:
    """The runtime's clock; tests move ``now`` by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakePort:
    """Implements the runtime's ``Port``: records sends, timers and leaves, runs nothing."""

    sent: list[tuple[Any, bytes]] = field(default_factory=list)
    timers: list[tuple[float, str]] = field(default_factory=list)
    leaves: list[tuple[str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def send(self, address: Any, frame: bytes) -> None:
        assert isinstance(frame, bytes)
        self.sent.append((address, frame))
        self.events.append(f"send:{address}")

    def call_later(self, delay: float, key: str) -> None:
        self.timers.append((delay, key))

    def leave(self, reason: str, detail: str) -> None:
        self.leaves.append((reason, detail))
        self.events.append(f"leave:{reason}")

    def take(self, address: Any) -> list[Envelope]:
        """Decoded frames sent to ``address`` since the last take, oldest first."""
        mine = [frame for addr, frame in self.sent if addr == address]
        self.sent = [(addr, frame) for addr, frame in self.sent if addr != address]
        return [decode_envelope(frame) for frame in mine]

    def timer(self, prefix: str) -> tuple[float, str]:
        """The one timer armed with ``prefix`` (it stays recorded)."""
        found = [t for t in self.timers if t[1].startswith(prefix)]
        assert len(found) == 1, self.timers
        return found[0]

    def take_timer(self, prefix: str) -> tuple[float, str]:
        """The one timer armed with ``prefix`` since the last take (and forget it)."""
        found = self.timer(prefix)
        self.timers.remove(found)
        return found

    def armed(self, prefix: str) -> list[str]:
        """The keys of the timers armed with ``prefix``."""
        return [key for _, key in self.timers if key.startswith(prefix)]


@dataclass
class RuntimeHarness:
    """A runtime with its fake port and clock: plays the client and the actors it asks."""

    rt: ActorRuntime
    port: FakePort
    clock: FakeClock

    # The details of the ErrorReply that ``error_to`` answers with.
    error_details: ClassVar[dict[str, Any]] = {}

    def send(
        self, kind: str, msg: Message, *, sender: Any = CLIENT, sender_name: str = "client",
        target: str | None = SELF, deadline: float | None = None, msg_id: str | None = None,
        correlation_id: str | None = None, traceparent: str | None = None,
        principal: str | None = None, priority: int = 0,
    ) -> str:  # fmt: skip
        """Deliver ``msg`` to the runtime as a ``kind`` frame from ``sender``; its id."""
        env = envelope(
            kind=kind,
            id=msg_id or new_id(),
            type=msg.type_name,
            version=msg.version,
            correlation_id=correlation_id,
            deadline=deadline,
            priority=priority,
            traceparent=traceparent,
            principal=principal,
            target=target,
            sender=sender_name,
            payload=msg,
        )
        self.rt.on_frame(encode(env), sender)
        return env.id

    def ask(self, msg: Message, **kw: Any) -> str:
        return self.send("ask", msg, **kw)

    def tell(self, msg: Message, **kw: Any) -> str:
        return self.send("tell", msg, **kw)

    def request(self, address: Any = OTHER_ADDR) -> Envelope:
        """The one request sent to ``address`` since the last look."""
        envs = self.port.take(address)
        assert len(envs) == 1, envs
        assert envs[0].kind == "ask"
        return envs[0]

    def reply_to(
        self, req: Envelope, msg: Message, *, degraded: bool = False, from_addr: Any = OTHER_ADDR
    ) -> None:
        """Answer an outgoing request as its target would."""
        env = envelope(
            kind="reply", id=new_id(), type=msg.type_name, version=msg.version,
            correlation_id=req.correlation_id, causation_id=req.id, target=req.sender,
            sender=req.target, payload=msg, degraded=degraded,
        )  # fmt: skip
        self.rt.on_frame(encode(env), from_addr)

    def error_to(self, req: Envelope, code: str, *, from_addr: Any = OTHER_ADDR) -> None:
        """Answer an outgoing request with an error reply of ``code``."""
        err = ErrorReply(code=code, message="nope", details=dict(self.error_details))
        env = envelope(
            kind="error", id=new_id(), type=err.type_name, version=err.version,
            correlation_id=req.correlation_id, causation_id=req.id, target=req.sender,
            sender=req.target, payload=err,
        )  # fmt: skip
        self.rt.on_frame(encode(env), from_addr)
