"""The handler dispatch table ``Actor.handlers()`` built from ``@handler`` annotations.

This module uses ``from __future__ import annotations``, so every annotation below is a
string resolved lazily by ``Actor.handlers()`` (which is what makes forward references to
classes defined further down the module work).
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Union

import pytest

from callboard.actors import Actor, handler
from callboard.messages import Message

# --- messages ----------------------------------------------------------------------------


class Ping(Message):
    type_name: ClassVar[str] = "test.actor_table.Ping"
    n: int = 0


class Pang(Message):
    type_name: ClassVar[str] = "test.actor_table.Pang"


class Pung(Message):
    type_name: ClassVar[str] = "test.actor_table.Pung"


class LoudPing(Ping):
    """A subclass message: dispatches to the Ping handler unless it has its own."""

    type_name: ClassVar[str] = "test.actor_table.LoudPing"


class LouderPing(LoudPing):
    type_name: ClassVar[str] = "test.actor_table.LouderPing"


class NotAMessage:
    pass


# --- actors ------------------------------------------------------------------------------


class Basic(Actor):
    @handler
    def on_ping(self, msg: Ping) -> None:
        pass

    @handler
    async def on_pang(self, msg: Pang) -> None:
        pass

    def helper(self, msg: Pung) -> None:  # no @handler: not in the table
        pass


class PipeUnion(Actor):
    @handler
    def either(self, msg: Ping | Pang) -> None:
        pass


class TypingUnion(Actor):
    @handler
    async def either(self, msg: Union[Pang, Pung]) -> None:  # noqa: UP007
        pass


class BaseActor(Actor):
    @handler
    def on_ping(self, msg: Ping) -> str:
        return "base"

    @handler
    def on_pang(self, msg: Pang) -> str:
        return "base"


class Overriding(BaseActor):
    @handler
    async def on_ping(self, msg: Ping) -> str:  # type: ignore[override]
        return "sub"


class Unmarking(BaseActor):
    def on_pang(self, msg: Pang) -> str:  # overridden without @handler
        return "plain method"


class Extending(BaseActor):
    @handler
    def on_pung(self, msg: Pung) -> str:
        return "extending"


class Remarking(Unmarking):
    @handler
    def on_pang(self, msg: Pang) -> str:  # a handler again further down
        return "again"


class SubMessageHandler(Actor):
    @handler
    def on_ping(self, msg: Ping) -> str:
        return "ping"

    @handler
    def on_loud(self, msg: LoudPing) -> str:
        return "loud"


class Forward(Actor):
    @handler
    def on_later(self, msg: DefinedLater) -> None:
        pass


class DefinedLater(Message):
    type_name: ClassVar[str] = "test.actor_table.DefinedLater"


class CatchAll(Actor):
    @handler
    def anything(self, msg: Message) -> None:
        pass


# -- broken actors: defining them is fine, the table fails when built ---------------------


class MissingAnnotation(Actor):
    @handler
    def on_x(self, msg):  # type: ignore[no-untyped-def]
        pass


class NonMessageAnnotation(Actor):
    @handler
    def on_x(self, msg: NotAMessage) -> None:
        pass


class BuiltinAnnotation(Actor):
    @handler
    def on_x(self, msg: int) -> None:
        pass


class OptionalAnnotation(Actor):
    @handler
    def on_x(self, msg: Optional[Ping]) -> None:  # noqa: UP045  # None is not a Message
        pass


class UnionWithNonMessage(Actor):
    @handler
    def on_x(self, msg: Ping | NotAMessage) -> None:
        pass


class TwoHandlers(Actor):
    @handler
    def first(self, msg: Ping) -> None:
        pass

    @handler
    def second(self, msg: Ping) -> None:
        pass


class TwoHandlersViaUnion(Actor):
    @handler
    def first(self, msg: Ping) -> None:
        pass

    @handler
    def second(self, msg: Pang | Ping) -> None:
        pass


class TwoHandlersAcrossInheritance(BaseActor):
    @handler
    def another_ping(self, msg: Ping) -> str:  # BaseActor.on_ping handles Ping already
        return "dup"


class NoMessageParam(Actor):
    @handler
    def on_x(self) -> None:
        pass


class TooManyParams(Actor):
    @handler
    def on_x(self, msg: Ping, extra: Ping) -> None:
        pass


class UnresolvableAnnotation(Actor):
    @handler
    def on_x(self, msg: NoSuchNameAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass


# --- tests -------------------------------------------------------------------------------


def fn_of(cls: type[Actor], msg_type: type[Message]) -> tuple[Any, bool]:
    found = cls.handler_for(msg_type)
    assert found is not None, f"{cls.__name__} has no handler for {msg_type.__name__}"
    return found


def test_table_maps_types_to_functions_and_async_flag() -> None:
    table = Basic.handlers()
    assert table == {
        Ping: (Basic.on_ping, False),
        Pang: (Basic.on_pang, True),
    }


def test_method_without_handler_decorator_is_not_registered() -> None:
    assert Basic.handler_for(Pung) is None


def test_handler_decorator_returns_function_unchanged() -> None:
    def fn(self: Any, msg: Ping) -> None:
        pass

    assert handler(fn) is fn
    assert getattr(fn, "_callboard_handler", False) is True


def test_table_is_cached() -> None:
    assert Basic.handlers() is Basic.handlers()


def test_pipe_union_registers_each_member() -> None:
    table = PipeUnion.handlers()
    assert set(table) == {Ping, Pang}
    assert table[Ping] == table[Pang] == (PipeUnion.either, False)


def test_typing_union_registers_each_member() -> None:
    table = TypingUnion.handlers()
    assert set(table) == {Pang, Pung}
    assert table[Pang] == (TypingUnion.either, True)


def test_subclass_message_falls_back_to_base_class_handler() -> None:
    assert fn_of(Basic, LoudPing) == (Basic.on_ping, False)
    assert fn_of(Basic, LouderPing) == (Basic.on_ping, False)
    # and it stays so once cached
    assert fn_of(Basic, LoudPing) == (Basic.on_ping, False)


def test_nearest_message_base_class_wins() -> None:
    assert fn_of(SubMessageHandler, Ping)[0] is SubMessageHandler.on_ping
    assert fn_of(SubMessageHandler, LoudPing)[0] is SubMessageHandler.on_loud
    assert fn_of(SubMessageHandler, LouderPing)[0] is SubMessageHandler.on_loud


def test_message_base_annotation_catches_everything() -> None:
    assert fn_of(CatchAll, Ping)[0] is CatchAll.anything
    assert fn_of(CatchAll, Pung)[0] is CatchAll.anything


def test_subclass_inherits_base_handlers() -> None:
    assert Extending.handlers() == {
        Ping: (BaseActor.on_ping, False),
        Pang: (BaseActor.on_pang, False),
        Pung: (Extending.on_pung, False),
    }


def test_overriding_a_handler_in_a_subclass() -> None:
    assert fn_of(Overriding, Ping) == (Overriding.on_ping, True)
    assert fn_of(Overriding, Pang) == (BaseActor.on_pang, False)
    # the base class keeps its own table
    assert fn_of(BaseActor, Ping) == (BaseActor.on_ping, False)


def test_override_without_handler_is_no_longer_a_handler() -> None:
    assert Unmarking.handler_for(Pang) is None
    assert fn_of(Unmarking, Ping)[0] is BaseActor.on_ping
    assert fn_of(BaseActor, Pang)[0] is BaseActor.on_pang


def test_re_marking_in_a_further_subclass() -> None:
    assert fn_of(Remarking, Pang)[0] is Remarking.on_pang


def test_mixin_order_decides_whether_a_name_is_a_handler() -> None:
    class PlainMixin:
        def on_pang(self, msg: Pang) -> str:
            return "mixin"

    class MixinFirst(PlainMixin, BaseActor):  # MixinFirst.on_pang is the plain method
        pass

    class MixinLast(BaseActor, PlainMixin):  # MixinLast.on_pang is BaseActor's handler
        pass

    assert MixinFirst.handler_for(Pang) is None
    assert fn_of(MixinLast, Pang)[0] is BaseActor.on_pang


def test_forward_reference_resolved_lazily() -> None:
    assert fn_of(Forward, DefinedLater)[0] is Forward.on_later


def test_actor_defined_in_a_function_resolves_module_level_names() -> None:
    class Local(Actor):
        @handler
        async def on_ping(self, msg: Ping) -> None:
            pass

    assert Local.handlers() == {Ping: (Local.on_ping, True)}


def test_non_string_annotation_of_a_local_message_class() -> None:
    class LocalMsg(Message):
        type_name: ClassVar[str] = "test.actor_table.LocalMsg"

    def on_local(self: Any, msg: Any) -> None:
        pass

    on_local.__annotations__ = {"msg": LocalMsg, "return": None}
    local_cls: type[Actor] = type("LocalActor", (Actor,), {"on_local": handler(on_local)})
    assert local_cls.handlers() == {LocalMsg: (on_local, False)}


def test_missing_annotation() -> None:
    with pytest.raises(TypeError, match=r"MissingAnnotation\.on_x: annotate"):
        MissingAnnotation.handlers()


@pytest.mark.parametrize(
    ("cls", "shown"),
    [
        (NonMessageAnnotation, "NotAMessage"),
        (BuiltinAnnotation, "int"),
        (OptionalAnnotation, "NoneType"),
        (UnionWithNonMessage, "NotAMessage"),
    ],
)
def test_non_message_annotation(cls: type[Actor], shown: str) -> None:
    with pytest.raises(TypeError, match="is not a callboard Message subclass") as info:
        cls.handlers()
    assert shown in str(info.value)
    assert f"{cls.__qualname__}.on_x" in str(info.value)


@pytest.mark.parametrize("cls", [TwoHandlers, TwoHandlersViaUnion, TwoHandlersAcrossInheritance])
def test_two_handlers_for_one_type(cls: type[Actor]) -> None:
    with pytest.raises(TypeError, match=r"two handlers for Ping"):
        cls.handlers()


@pytest.mark.parametrize("cls", [NoMessageParam, TooManyParams])
def test_wrong_arity(cls: type[Actor]) -> None:
    with pytest.raises(TypeError, match=r"a handler takes \(self, msg\)"):
        cls.handlers()


def test_unresolvable_annotation() -> None:
    with pytest.raises(TypeError, match="cannot resolve annotations"):
        UnresolvableAnnotation.handlers()


def test_failed_table_is_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(TypeError):
            TwoHandlers.handlers()
    assert TwoHandlers._handlers_cache is None


def test_broken_subclass_does_not_break_its_base() -> None:
    with pytest.raises(TypeError):
        TwoHandlersAcrossInheritance.handlers()
    assert fn_of(BaseActor, Ping)[0] is BaseActor.on_ping
