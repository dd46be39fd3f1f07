"""``Actor``: the base class users subclass, and the ``@handler`` decorator.

An :class:`Actor` is plain Python: it never sees Thespian. The runtime that hosts it
(``_runtime.ActorRuntime``) decodes each message, finds the handler whose annotated
parameter type matches, calls it and sends back what it returns.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union

from pydantic import BaseModel

from callboard.messages import Message

if TYPE_CHECKING:
    from callboard.actors._runtime import ActorRuntime
    from callboard.actors._tasks import Future

__all__ = ["Actor", "consumer", "handler"]

F = TypeVar("F", bound=Callable[..., Any])
Handler = tuple[Callable[..., Any], bool]
M = TypeVar("M", bound=Message)


def handler(fn: F) -> F:
    """Mark a method as the handler of the message type annotated on its one parameter.

    ``def h(self, msg: Ping) -> Pong``: sync handler; ``async def`` may ``await self.ask``.
    A ``Union`` annotation (``Ping | Pang``) handles each member. The return value is the
    reply to an ``ask`` (``None`` is a valid reply); it is dropped for a ``tell``.
    """
    fn._callboard_handler = True  # type: ignore[attr-defined]
    return fn


def consumer(queue: str, prefetch: int = 100) -> Callable[[F], F]:
    """Mark a method as the consumer of queue ``queue`` for the message type annotated on
    its one parameter (``[queues.<queue>]`` in config).

    The actor takes up to ``prefetch`` unacknowledged messages at a time. The handler
    returning normally acknowledges the message; raising a
    :class:`~callboard.BusinessError` rejects it to the queue's dead letters (reason
    ``rejected``, the error's code as detail); crashing, or not finishing within the
    queue's ``visibility_timeout``, gets it redelivered (up to ``max_deliveries``).
    ``async def`` consumers may ``await``; up to ``prefetch`` run at once.

    ``prefetch`` trades latency and fairness for throughput: each delivery batch and its
    settlement cost about a millisecond of CPU on each side, so 10 gives a few thousand
    messages/s and 100 or more tens of thousands; a consumer that dies gives back at
    most ``prefetch`` messages for redelivery.
    """
    if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 1:
        raise ValueError("prefetch must be an int >= 1")

    def mark(fn: F) -> F:
        fn._callboard_consumer = (queue, prefetch)  # type: ignore[attr-defined]
        return fn

    return mark


class Actor:
    """Base class of callboard actors.

    Override :meth:`on_start` / :meth:`on_stop` and write ``@handler`` methods. An actor
    may declare a nested pydantic model ``Args``; ``self.args`` is then that model,
    validated from the child spec's ``args`` when the actor starts (invalid args are a
    failed start). Without ``Args``, ``self.args`` is the plain dict.

    Inside handlers: :meth:`ask`, :meth:`tell`, :meth:`schedule`, :meth:`sleep`,
    :meth:`stop`; ``self.id`` is the actor's name in the tree and ``self.log`` a
    structlog logger bound to it.
    """

    Args: ClassVar[type[BaseModel] | None] = None
    _handler_specs: ClassVar[dict[str, Callable[..., Any]]] = {}
    _consumer_specs: ClassVar[dict[str, Callable[..., Any]]] = {}
    _consumers_cache: ClassVar[dict[str, tuple[int, dict[type[Message], Handler]]] | None] = None
    _handlers_cache: ClassVar[dict[type[Message], tuple[Callable[..., Any], bool]] | None] = None

    id: str
    args: Any
    log: Any
    _runtime: ActorRuntime

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs: dict[str, Callable[..., Any]] = {}
        for base in reversed(cls.__mro__):
            for name, value in vars(base).items():
                if getattr(value, "_callboard_handler", False):
                    specs[name] = value
                elif name in specs:  # overridden without @handler: no longer a handler
                    del specs[name]
        cls._handler_specs = specs
        cls._handlers_cache = None
        consumers: dict[str, Callable[..., Any]] = {}
        for base in reversed(cls.__mro__):
            for name, value in vars(base).items():
                if getattr(value, "_callboard_consumer", None) is not None:
                    consumers[name] = value
                elif name in consumers:
                    del consumers[name]
        cls._consumer_specs = consumers
        cls._consumers_cache = None

    # -- lifecycle hooks ------------------------------------------------------------------

    def on_start(self) -> None:
        """Called once the actor runs, before any message; raising here is a failed start."""

    def on_stop(self, reason: str) -> None:
        """Called when the actor is asked to stop or stops itself (not when killed)."""

    # -- talking to others ----------------------------------------------------------------

    def ask(self, target: str, msg: Message, timeout: float | None = None) -> Future[Any]:
        """Send a request now; ``await`` the result in an ``async def`` handler.

        The request's deadline is ``now + timeout`` (default ``[system] ask_timeout``), or
        the deadline of the message being handled if that is sooner. The awaited result is
        the reply message (or ``None``); it raises :class:`~callboard.AskTimeout`,
        :class:`~callboard.RemoteError`, or at once :class:`~callboard.NoSuchActor`.
        Several asks may be sent before awaiting any of them; they run concurrently.
        """
        return self._runtime.ask(target, msg, timeout)

    def tell(self, target: str, msg: Message) -> None:
        """Send, expecting no reply. An unknown name raises :class:`~callboard.NoSuchActor`."""
        self._runtime.tell(target, msg)

    def schedule(self, delay_s: float, msg: Message) -> None:
        """Deliver ``msg`` to this actor's own handler after ``delay_s`` seconds."""
        self._runtime.schedule(delay_s, msg)

    def sleep(self, delay_s: float) -> Future[None]:
        """``await self.sleep(s)``: resume after ``s`` seconds; other messages run meanwhile."""
        return self._runtime.sleep(delay_s)

    def remaining(self) -> float | None:
        """Seconds left before the deadline of the message being handled (``None``: none).

        Use it to budget work: a request that cannot finish in time is better refused."""
        return self._runtime.remaining()

    def stop(self, reason: str = "normal") -> None:
        """Exit on purpose once the current handler returns (``normal`` or ``shutdown``)."""
        self._runtime.request_stop(reason)

    def on_directory(self, changed: list[str]) -> None:
        """Names in the tree whose process changed (restarting, restarted, gone) since the
        last call. For actors that keep per-peer state, e.g. to release a dead peer's work."""

    # -- events and queues (the ``services``: [bus] and [queues] in config) ----------------

    def publish(self, topic: str, event: Message) -> None:
        """Publish ``event`` on ``topic`` (dotted, e.g. ``orders.eu.created``) through the
        bus. Fire-and-forget; :class:`~callboard.NoSuchActor` if the system has no bus."""
        self._runtime.messaging.publish(topic, event)

    def subscribe(
        self, pattern: str, *, buffer: int | None = None, overflow: str | None = None
    ) -> None:
        """Receive events whose topic matches ``pattern`` (``*``: one segment, ``#``: any
        number) at the ``@handler`` typed for each event's class, in publication order.
        Kept across restarts of the bus; call it again after this actor restarts (e.g. in
        ``on_start``). ``buffer`` / ``overflow`` override the ``[bus]`` defaults."""
        self._runtime.messaging.subscribe(pattern, buffer, overflow)

    def unsubscribe(self, pattern: str) -> None:
        self._runtime.messaging.unsubscribe(pattern)

    def delivery_count(self) -> int:
        """In a ``@consumer`` handler: how many times the message being handled has been
        delivered, this time included (``1`` the first time; more after a crash, a
        timeout or a restart of the queue). ``1`` elsewhere."""
        cur = self._runtime._current
        return cur.attempt if cur is not None else 1

    def current_topic(self) -> str | None:
        """The topic of the event being handled (``None`` outside an event handler)."""
        return self._runtime.messaging.current_topic

    def enqueue(
        self, queue: str, msg: Message, *, priority: int = 0, msg_id: str | None = None
    ) -> Future[str]:
        """Put ``msg`` on queue ``queue``; the future resolves to its id once the queue has
        stored it (``await`` it), or fails with ``queue_full``. ``msg_id`` makes the
        enqueue idempotent: the same id again within the dedupe window is dropped."""
        return self._runtime.messaging.enqueue(queue, msg, priority, msg_id)

    def route(self, msg: Message) -> Future[list[str]]:
        """Send ``msg`` wherever the ``[[routing]]`` rules say; resolves to the
        destinations (``queue:<name>`` / ``topic:<topic>``)."""
        return self._runtime.messaging.route(msg)

    # -- dispatch table -------------------------------------------------------------------

    @classmethod
    def handlers(cls) -> dict[type[Message], tuple[Callable[..., Any], bool]]:
        """Message class -> (function, is_async). Built on first use, so annotations may
        name classes defined later in the module."""
        if cls._handlers_cache is None:
            table: dict[type[Message], tuple[Callable[..., Any], bool]] = {}
            for name, fn in cls._handler_specs.items():
                for msg_cls in _message_types(cls, name, fn):
                    if msg_cls in table:
                        raise TypeError(
                            f"{cls.__qualname__}: two handlers for {msg_cls.__qualname__}"
                        )
                    table[msg_cls] = (fn, inspect.iscoroutinefunction(fn))
            cls._handlers_cache = table
        return cls._handlers_cache

    @classmethod
    def consumers(cls) -> dict[str, tuple[int, dict[type[Message], Handler]]]:
        """Queue name -> (prefetch, message class -> (function, is_async))."""
        if cls._consumers_cache is None:
            table: dict[str, tuple[int, dict[type[Message], Handler]]] = {}
            for name, fn in cls._consumer_specs.items():
                queue, prefetch = fn._callboard_consumer  # type: ignore[attr-defined]
                have_prefetch, types_ = table.get(queue, (prefetch, {}))
                for msg_cls in _message_types(cls, name, fn):
                    if msg_cls in types_:
                        raise TypeError(
                            f"{cls.__qualname__}: two consumers of {queue!r} for "
                            f"{msg_cls.__qualname__}"
                        )
                    types_[msg_cls] = (fn, inspect.iscoroutinefunction(fn))
                table[queue] = (max(have_prefetch, prefetch), types_)
            cls._consumers_cache = table
        return cls._consumers_cache

    @classmethod
    def handler_for(cls, msg_type: type[Message]) -> tuple[Callable[..., Any], bool] | None:
        """The handler for ``msg_type`` or its nearest message base class, if any."""
        table = cls.handlers()
        for klass in msg_type.__mro__:
            found = table.get(klass)
            if found is not None:
                if klass is not msg_type:
                    table[msg_type] = found  # cache the subclass hit
                return found
        return None


def _message_types(cls: type, name: str, fn: Callable[..., Any]) -> list[type[Message]]:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TypeError(f"{cls.__qualname__}.{name}: a handler takes (self, msg)")
    module = inspect.getmodule(fn)
    try:
        hints = typing.get_type_hints(fn, globalns=vars(module) if module else None)
    except Exception as exc:
        raise TypeError(f"{cls.__qualname__}.{name}: cannot resolve annotations: {exc}") from exc
    ann = hints.get(params[1].name)
    if ann is None:
        raise TypeError(f"{cls.__qualname__}.{name}: annotate the message parameter's type")
    members = typing.get_args(ann) if typing.get_origin(ann) in (Union, types.UnionType) else (ann,)
    out: list[type[Message]] = []
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Message)):
            raise TypeError(
                f"{cls.__qualname__}.{name}: {member!r} is not a callboard Message subclass"
            )
        out.append(member)
    return out
