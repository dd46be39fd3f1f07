"""A minimal future/task pair that lets ``async def`` code wait on messages.

An actor's mailbox must keep flowing while a handler awaits a reply, so a coroutine is
driven by hand: it runs until it awaits a :class:`Future`, and is resumed (by whoever
resolves that future: a reply, a timer, a child's exit notice) from a later message.
No event loop, no threads, no Thespian: this is plain logic, unit-tested directly.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Future", "Task"]

T = TypeVar("T")
U = TypeVar("U")
_UNSET: Any = object()


class Future(Generic[T]):
    """A result that arrives later. ``await fut`` inside a :class:`Task` suspends the task."""

    __slots__ = ("_callbacks", "_exception", "_result")

    def __init__(self) -> None:
        self._result: Any = _UNSET
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], None]] = []

    def done(self) -> bool:
        return self._result is not _UNSET or self._exception is not None

    def result(self) -> T:
        """The result, or raise the exception; ``RuntimeError`` if not done yet."""
        if self._exception is not None:
            raise self._exception
        if self._result is _UNSET:
            raise RuntimeError("future is not done")
        return self._result  # type: ignore[no-any-return]

    def exception(self) -> BaseException | None:
        return self._exception

    def set_result(self, value: T) -> bool:
        """Resolve; returns False (and does nothing) if already done, so races are harmless."""
        if self.done():
            return False
        self._result = value
        self._fire()
        return True

    def set_exception(self, exc: BaseException) -> bool:
        if self.done():
            return False
        self._exception = exc
        self._fire()
        return True

    def add_done_callback(self, fn: Callable[[Future[T]], None]) -> None:
        if self.done():
            fn(self)
        else:
            self._callbacks.append(fn)

    def then(self, convert: Callable[[T], U]) -> Future[U]:
        """A future of ``convert(result)``; an exception passes through unchanged."""
        out: Future[U] = Future()

        def done(f: Future[T]) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(convert(f.result()))

        self.add_done_callback(done)
        return out

    def _fire(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def __await__(self) -> Generator[Future[T], None, T]:
        if not self.done():
            yield self
        return self.result()


class Task:
    """Drives one coroutine; ``on_done(result, exception)`` is called once when it finishes.

    Only :class:`Future` may be awaited; awaiting anything else (e.g. ``asyncio.sleep``)
    throws a ``TypeError`` into the coroutine, which fails the task with a clear message.
    ``context`` is opaque data the runner restores while the task runs (the envelope whose
    deadline and trace ids outgoing requests inherit).
    """

    __slots__ = ("_coro", "_on_done", "_on_step", "_waiting", "context", "finished")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[Any, BaseException | None], None],
        context: Any = None,
        on_step: Callable[[Task, bool], None] | None = None,
    ) -> None:
        self._coro = coro
        self._on_done = on_done
        self._on_step = on_step
        self.context = context
        self.finished = False
        self._waiting: Future[Any] | None = None  # the future the coroutine is suspended on

    def start(self) -> None:
        self._step(None, None)

    def cancel(self, exc: BaseException) -> None:
        """Throw ``exc`` into the coroutine at its current await (if it is still running)."""
        if not self.finished:
            self._step(None, exc)

    def _resume(self, fut: Future[Any]) -> None:
        if fut is not self._waiting:
            return  # a future awaited before a cancel: the coroutine has moved on
        exc = fut.exception()
        self._step(None if exc is not None else fut.result(), exc)

    def _step(self, value: Any, exc: BaseException | None) -> None:
        if self.finished:
            return
        self._waiting = None
        if self._on_step is not None:
            self._on_step(self, True)
        try:
            try:
                awaited = self._coro.send(value) if exc is None else self._coro.throw(exc)
            except StopIteration as stop:
                self._finish(stop.value, None)
                return
            except BaseException as err:
                self._finish(None, err)
                return
            if not isinstance(awaited, Future):
                error = TypeError(
                    f"a callboard handler may only await callboard futures (self.ask, "
                    f"self.sleep, ...), not {type(awaited).__name__}"
                )
                self._step(None, error)
                return
        finally:
            if self._on_step is not None:
                self._on_step(self, False)
        self._waiting = awaited
        awaited.add_done_callback(self._resume)

    def _finish(self, value: Any, exc: BaseException | None) -> None:
        self.finished = True
        self._coro.close()
        self._on_done(value, exc)
