"""Future / Task: the hand-driven coroutine runner that keeps a mailbox flowing."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest

from callboard.actors._tasks import Future, Task


class Done:
    """Records the ``on_done(result, exception)`` calls of a task."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, BaseException | None]] = []

    def __call__(self, value: Any, exc: BaseException | None) -> None:
        self.calls.append((value, exc))

    @property
    def value(self) -> Any:
        assert len(self.calls) == 1, self.calls
        value, exc = self.calls[0]
        assert exc is None, exc
        return value

    @property
    def exc(self) -> BaseException:
        assert len(self.calls) == 1, self.calls
        value, exc = self.calls[0]
        assert exc is not None
        assert value is None
        return exc


class Boom(Exception):
    pass


class NotAFuture:
    """An awaitable that is not a callboard Future (what an asyncio primitive looks like)."""

    def __await__(self) -> Generator[Any, None, None]:
        yield "something else"


# --- Future ------------------------------------------------------------------------------


def test_future_starts_pending() -> None:
    fut: Future[int] = Future()
    assert not fut.done()
    assert fut.exception() is None
    with pytest.raises(RuntimeError, match="not done"):
        fut.result()


def test_future_set_result() -> None:
    fut: Future[int] = Future()
    assert fut.set_result(7) is True
    assert fut.done()
    assert fut.result() == 7
    assert fut.exception() is None


def test_future_none_is_a_result() -> None:
    fut: Future[None] = Future()
    assert fut.set_result(None) is True
    assert fut.done()
    assert fut.result() is None


def test_future_set_exception() -> None:
    fut: Future[int] = Future()
    err = Boom("no")
    assert fut.set_exception(err) is True
    assert fut.done()
    assert fut.exception() is err
    with pytest.raises(Boom, match="no"):
        fut.result()


def test_future_second_set_is_ignored() -> None:
    fut: Future[int] = Future()
    assert fut.set_result(1)
    assert fut.set_result(2) is False
    assert fut.set_exception(Boom()) is False
    assert fut.result() == 1
    assert fut.exception() is None


def test_future_set_after_exception_is_ignored() -> None:
    fut: Future[int] = Future()
    err = Boom()
    assert fut.set_exception(err)
    assert fut.set_result(3) is False
    assert fut.set_exception(Boom("other")) is False
    assert fut.exception() is err


def test_future_callbacks_fire_once_in_order() -> None:
    fut: Future[str] = Future()
    seen: list[tuple[str, str]] = []
    fut.add_done_callback(lambda f: seen.append(("a", f.result())))
    fut.add_done_callback(lambda f: seen.append(("b", f.result())))
    assert seen == []
    fut.set_result("x")
    assert seen == [("a", "x"), ("b", "x")]
    fut.set_result("y")  # ignored: callbacks do not run again
    assert seen == [("a", "x"), ("b", "x")]


def test_future_callback_on_exception() -> None:
    fut: Future[str] = Future()
    seen: list[BaseException | None] = []
    fut.add_done_callback(lambda f: seen.append(f.exception()))
    err = Boom()
    fut.set_exception(err)
    assert seen == [err]


def test_future_callback_added_when_done_runs_at_once() -> None:
    fut: Future[int] = Future()
    fut.set_result(5)
    seen: list[int] = []
    fut.add_done_callback(lambda f: seen.append(f.result()))
    assert seen == [5]


# --- Task --------------------------------------------------------------------------------


def test_task_without_awaits_finishes_on_start() -> None:
    async def coro() -> int:
        return 42

    done = Done()
    task = Task(coro(), done)
    assert not task.finished
    assert done.calls == []  # nothing runs before start()
    task.start()
    assert task.finished
    assert done.value == 42


def test_task_awaiting_done_future_does_not_suspend() -> None:
    fut: Future[int] = Future()
    fut.set_result(3)

    async def coro() -> int:
        return await fut + 1

    done = Done()
    Task(coro(), done).start()
    assert done.value == 4


def test_task_several_awaits_resolved_out_of_order() -> None:
    f1: Future[str] = Future()
    f2: Future[str] = Future()
    f3: Future[str] = Future()
    trail: list[str] = []

    async def coro() -> list[str]:
        trail.append("start")
        a = await f1
        trail.append("got " + a)
        b = await f2
        trail.append("got " + b)
        c = await f3
        trail.append("got " + c)
        return [a, b, c]

    done = Done()
    task = Task(coro(), done)
    task.start()
    assert trail == ["start"]

    f3.set_result("three")  # nobody waits on it yet: nothing runs
    assert trail == ["start"]
    f2.set_result("two")
    assert trail == ["start"]
    assert not task.finished

    f1.set_result("one")  # resumes, and f2/f3 are already done: runs to the end
    assert trail == ["start", "got one", "got two", "got three"]
    assert task.finished
    assert done.value == ["one", "two", "three"]


def test_task_suspends_at_each_pending_future() -> None:
    f1: Future[int] = Future()
    f2: Future[int] = Future()

    async def coro() -> int:
        return await f1 + await f2

    done = Done()
    task = Task(coro(), done)
    task.start()
    f1.set_result(1)
    assert not task.finished
    assert done.calls == []
    f2.set_result(2)
    assert done.value == 3


def test_task_exception_from_future_is_raised_in_coroutine() -> None:
    fut: Future[int] = Future()

    async def coro() -> str:
        try:
            await fut
        except Boom as exc:
            return f"caught {exc}"
        return "not raised"

    done = Done()
    Task(coro(), done).start()
    fut.set_exception(Boom("bad"))
    assert done.value == "caught bad"


def test_task_uncaught_exception_fails_task() -> None:
    fut: Future[int] = Future()
    err = Boom("bad")

    async def coro() -> int:
        return await fut

    done = Done()
    task = Task(coro(), done)
    task.start()
    fut.set_exception(err)
    assert task.finished
    assert done.exc is err


def test_task_exception_raised_by_coroutine_itself() -> None:
    async def coro() -> int:
        raise Boom("early")

    done = Done()
    Task(coro(), done).start()
    assert isinstance(done.exc, Boom)
    assert str(done.exc) == "early"


def test_task_awaiting_non_future_fails_with_type_error() -> None:
    async def coro() -> None:
        await NotAFuture()

    done = Done()
    task = Task(coro(), done)
    task.start()
    assert task.finished
    exc = done.exc
    assert isinstance(exc, TypeError)
    assert "NotAFuture" not in str(exc)  # it names what was yielded
    assert "str" in str(exc)
    assert "callboard futures" in str(exc)


def test_task_awaiting_asyncio_sleep_fails_with_type_error() -> None:
    async def coro() -> None:
        await asyncio.sleep(0)

    done = Done()
    Task(coro(), done).start()
    assert isinstance(done.exc, TypeError)


def test_task_may_recover_from_awaiting_non_future() -> None:
    fut: Future[int] = Future()

    async def coro() -> str:
        try:
            await NotAFuture()
        except TypeError:
            pass
        return f"then {await fut}"

    done = Done()
    task = Task(coro(), done)
    task.start()
    assert not task.finished
    fut.set_result(9)
    assert done.value == "then 9"


def test_task_cancel_throws_into_coroutine() -> None:
    fut: Future[int] = Future()
    err = Boom("cancelled")

    async def coro() -> int:
        return await fut

    done = Done()
    task = Task(coro(), done)
    task.start()
    task.cancel(err)
    assert task.finished
    assert done.exc is err
    fut.set_result(1)  # the stale resume is ignored: on_done ran once
    assert len(done.calls) == 1


def test_task_cancel_can_be_handled_by_coroutine() -> None:
    fut: Future[int] = Future()

    async def coro() -> str:
        try:
            await fut
        except Boom as exc:
            return f"cleaned up after {exc}"
        return "finished"

    done = Done()
    task = Task(coro(), done)
    task.start()
    task.cancel(Boom("stop"))
    assert done.value == "cleaned up after stop"


def test_task_cancel_after_finish_is_noop() -> None:
    async def coro() -> int:
        return 1

    done = Done()
    task = Task(coro(), done)
    task.start()
    task.cancel(Boom())
    assert done.value == 1


def test_task_cancelled_coroutine_awaiting_again_ignores_old_future() -> None:
    """After a handled cancel the task waits on a new future; the old one must not wake it."""
    old: Future[int] = Future()
    new: Future[int] = Future()

    async def coro() -> int:
        try:
            return await old
        except Boom:
            return await new

    done = Done()
    task = Task(coro(), done)
    task.start()
    task.cancel(Boom())
    assert not task.finished
    old.set_result(1)
    assert done.calls == []
    assert not task.finished
    new.set_result(2)
    assert done.value == 2


def test_task_on_step_brackets_each_step_and_context() -> None:
    f1: Future[int] = Future()
    f2: Future[int] = Future()
    steps: list[tuple[object, bool]] = []

    async def coro() -> int:
        return await f1 + await f2

    def on_step(task: Task, entering: bool) -> None:
        steps.append((task.context, entering))

    done = Done()
    task = Task(coro(), done, context="ctx", on_step=on_step)
    task.start()
    assert steps == [("ctx", True), ("ctx", False)]
    f1.set_result(1)
    f2.set_result(2)
    assert steps == [("ctx", True), ("ctx", False)] * 3
    assert done.value == 3


def test_task_on_done_runs_inside_last_step() -> None:
    """The runtime relies on this: the reply is sent while the task's context is current."""
    fut: Future[int] = Future()
    inside: list[bool] = []
    state = {"in_step": False}

    def on_step(task: Task, entering: bool) -> None:
        state["in_step"] = entering

    def on_done(value: Any, exc: BaseException | None) -> None:
        inside.append(state["in_step"])

    async def coro() -> int:
        return await fut

    Task(coro(), on_done, on_step=on_step).start()
    fut.set_result(1)
    assert inside == [True]
    assert state["in_step"] is False


def test_task_cancelled_coroutine_awaiting_same_future_resumes_once() -> None:
    fut: Future[int] = Future()
    trail: list[str] = []

    async def coro() -> int:
        try:
            return await fut
        except Boom:
            trail.append("cancelled")
            value = await fut
            trail.append(f"resumed {value}")
            return value

    done = Done()
    task = Task(coro(), done)
    task.start()
    task.cancel(Boom())
    fut.set_result(5)  # two callbacks are registered on fut; only one may resume the task
    assert trail == ["cancelled", "resumed 5"]
    assert done.value == 5


def test_then_maps_a_result_and_passes_an_exception_through() -> None:
    ok: Future[int] = Future()
    doubled = ok.then(lambda v: v * 2)
    assert not doubled.done()
    ok.set_result(21)
    assert doubled.result() == 42
    failed: Future[int] = Future()
    mapped = failed.then(lambda v: v * 2)
    boom = ValueError("boom")
    failed.set_exception(boom)
    assert mapped.exception() is boom
