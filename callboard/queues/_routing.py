"""Content-based routing: which queues and topics a message goes to, by type and content.

Users write rules in config, consulted in order::

    [[routing]]
    match = { type = "shop.Order", where = { "total" = { gt = 1000 } } }
    to = ["queue:big_orders", "topic:business.orders.big"]

    [[routing]]
    match = { type = "shop.*", where = { "region" = { in = ["eu", "uk"] } } }
    to = ["queue:europe"]
    stop = true

A rule matches when the message's type name matches ``type`` (exact, or a glob whose
``*`` stands for any run of characters, dots included; absent: any type) and every
``where`` predicate holds. A ``where`` key is a dotted path into the message's dumped
dict (``customer.address.country``; a purely numeric segment indexes a list). A
predicate holds when all its operators do:

* ``eq`` / ``ne``: equal / not equal (``ne`` is exactly "not ``eq``"); ``true`` never
  equals ``1``;
* ``gt`` / ``ge`` / ``lt`` / ``le``: ordering against a number, string or date/time;
  values of another type (``"1500"`` against ``gt = 1000``, ``true`` against a number)
  never match;
* ``in`` / ``not_in``: equal / equal to none of the listed values;
* ``exists``: the path is present (with any value, ``null`` included) / absent;
* ``matches``: the value is a string that the regular expression finds a match in
  (``re.search``: anchor with ``^``/``$`` for a whole-string match).

A missing field fails every operator except ``exists = false``. Matching never raises:
a comparison that makes no sense is a non-match. The destinations of all matching rules
are collected, each once, in rule order; a matching rule with ``stop = true`` ends the
search. Pure: validation and matching only, nothing is sent.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    field_validator,
    model_validator,
)

from callboard.bus import InvalidTopic, validate_topic

__all__ = ["Destination", "Predicate", "RouteMatch", "RouteRule", "Router"]

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # as QUEUE_NAME in callboard.config._messaging
_FIELD_PATH = re.compile(r"[^.]+(?:\.[^.]+)*")
_INDEX = re.compile(r"[0-9]+")

_MISSING: Any = object()
"""The value of a path that is not in the message."""

_ORDERABLE = (int, float, str, dt.date, dt.time)  # dt.datetime is a dt.date
_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a routed message goes: a work queue, or a bus topic."""

    kind: Literal["queue", "topic"]
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``"queue:<name>"`` or ``"topic:<topic>"``; ``ValueError`` saying what is wrong."""
        kind, sep, name = text.partition(":")
        if not sep or kind not in ("queue", "topic"):
            raise ValueError(f"destination {text!r} must be 'queue:<name>' or 'topic:<topic>'")
        if kind == "queue":
            if not _QUEUE_NAME.fullmatch(name):
                raise ValueError(
                    f"destination {text!r}: queue name {name!r} must be 1-64 letters, "
                    "digits, '_' or '-'"
                )
            return cls("queue", name)
        try:
            validate_topic(name)
        except InvalidTopic as e:
            raise ValueError(f"destination {text!r}: {e}") from None
        return cls("topic", name)


def _equal(value: Any, operand: Any) -> bool:
    if isinstance(value, bool) != isinstance(operand, bool):
        return False  # Python says True == 1; config authors do not mean that
    try:
        return bool(value == operand)
    except Exception:  # an exotic __eq__: a non-match, never an error
        return False


def _ordered(op: Callable[[Any, Any], Any], value: Any, operand: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return bool(op(value, operand))
    except Exception:  # incompatible types ("1500" > 1000): a non-match, never an error
        return False


class Predicate(BaseModel):
    """The test on one field: every operator given must hold (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    OPERATORS: ClassVar[tuple[str, ...]] = (
        "eq", "ne", "gt", "ge", "lt", "le", "in", "not_in", "exists", "matches",
    )  # fmt: skip

    eq: Any = None
    ne: Any = None
    gt: Any = None
    ge: Any = None
    lt: Any = None
    le: Any = None
    in_: list[Any] = Field(default_factory=list, alias="in")
    not_in: list[Any] = Field(default_factory=list)
    exists: StrictBool = True
    matches: re.Pattern[str] | None = None

    _tests: tuple[tuple[str, Any], ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _known_operators(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = [k for k in data if k not in cls.OPERATORS and k != "in_"]
            if unknown:
                raise ValueError(
                    f"unknown predicate operator {', '.join(map(repr, unknown))}; "
                    f"expected {', '.join(cls.OPERATORS)}"
                )
            if not data:
                raise ValueError(
                    f"empty predicate: give at least one of {', '.join(cls.OPERATORS)}"
                )
        return data

    @field_validator("gt", "ge", "lt", "le", mode="before")
    @classmethod
    def _orderable(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, _ORDERABLE):
            raise ValueError(f"needs a number, string, date or time to compare with, not {value!r}")
        return value

    @field_validator("matches", mode="before")
    @classmethod
    def _regex(cls, value: Any) -> Any:
        if isinstance(value, re.Pattern):
            return value
        if not isinstance(value, str):
            raise ValueError(f"needs a regular expression string, not {value!r}")
        try:
            return re.compile(value)
        except re.error as e:
            raise ValueError(f"invalid regular expression {value!r}: {e}") from None

    @model_validator(mode="after")
    def _consistent(self) -> Predicate:
        given = self.model_fields_set
        if "exists" in given and not self.exists and len(given) > 1:
            others = sorted("in" if f == "in_" else f for f in given - {"exists"})
            raise ValueError(
                f"exists = false with {', '.join(others)} can never match: "
                "a missing field has no value to test"
            )
        return self

    def model_post_init(self, context: Any, /) -> None:
        given = self.model_fields_set
        self._tests = tuple(
            (op, getattr(self, "in_" if op == "in" else op))
            for op in self.OPERATORS
            if ("in_" if op == "in" else op) in given
        )

    def holds(self, value: Any) -> bool:
        """Whether ``value`` passes; :data:`_MISSING` stands for an absent field."""
        if value is _MISSING:
            return all(op == "exists" and not operand for op, operand in self._tests)
        for op, operand in self._tests:
            if op == "eq":
                ok = _equal(value, operand)
            elif op == "ne":
                ok = not _equal(value, operand)
            elif op in _ORDERINGS:
                ok = _ordered(_ORDERINGS[op], value, operand)
            elif op == "in":
                ok = any(_equal(value, x) for x in operand)
            elif op == "not_in":
                ok = not any(_equal(value, x) for x in operand)
            elif op == "exists":
                ok = bool(operand)
            else:  # matches
                ok = isinstance(value, str) and operand.search(value) is not None
            if not ok:
                return False
        return True


def _lookup(data: Any, path: Sequence[str]) -> Any:
    for segment in path:
        if isinstance(data, Mapping):
            if segment not in data:
                return _MISSING
            data = data[segment]
        elif isinstance(data, list | tuple) and _INDEX.fullmatch(segment):
            index = int(segment)
            if index >= len(data):
                return _MISSING
            data = data[index]
        else:
            return _MISSING
    return data


class RouteMatch(BaseModel):
    """``match = { type = ..., where = { ... } }``: which messages a rule is for; an empty
    table matches every message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str | None = Field(None, min_length=1, max_length=256)
    where: dict[str, Predicate] = Field(default_factory=dict)

    _type_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _paths: tuple[tuple[tuple[str, ...], Predicate], ...] = PrivateAttr(default=())

    @field_validator("where")
    @classmethod
    def _paths_are_dotted(cls, where: dict[str, Predicate]) -> dict[str, Predicate]:
        for path in where:
            if not _FIELD_PATH.fullmatch(path):
                raise ValueError(
                    f"field path {path!r} must be dot-separated non-empty names "
                    "(e.g. 'customer.address.country')"
                )
        return where

    def model_post_init(self, context: Any, /) -> None:
        if self.type is not None and "*" in self.type:
            glob = ".*".join(re.escape(part) for part in self.type.split("*"))
            self._type_re = re.compile(glob, re.DOTALL)
        self._paths = tuple((tuple(path.split(".")), p) for path, p in self.where.items())

    def matches(self, type_name: str, data: Mapping[str, Any]) -> bool:
        """Whether a message of ``type_name`` with dumped fields ``data`` is selected."""
        if self.type is not None:
            if self._type_re is not None:
                if self._type_re.fullmatch(type_name) is None:
                    return False
            elif type_name != self.type:
                return False
        return all(p.holds(_lookup(data, path)) for path, p in self._paths)


class RouteRule(BaseModel):
    """One ``[[routing]]`` entry: messages selected by ``match`` go to every ``to``
    destination; ``stop = true`` keeps later rules from being consulted when this one
    matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: RouteMatch
    to: list[str] = Field(min_length=1)
    stop: StrictBool = False

    _destinations: tuple[Destination, ...] = PrivateAttr(default=())

    @field_validator("to")
    @classmethod
    def _destinations_parse(cls, to: list[str]) -> list[str]:
        for text in to:
            Destination.parse(text)
        return to

    def model_post_init(self, context: Any, /) -> None:
        self._destinations = tuple(dict.fromkeys(Destination.parse(t) for t in self.to))

    @property
    def destinations(self) -> tuple[Destination, ...]:
        """``to``, parsed, each once."""
        return self._destinations


class Router:
    """The routing rules of a config, in order."""

    def __init__(self, rules: Iterable[RouteRule]) -> None:
        self.rules: tuple[RouteRule, ...] = tuple(rules)

    def destinations(self, type_name: str, data: Mapping[str, Any]) -> list[Destination]:
        """Where a message of ``type_name`` with dumped fields ``data`` goes: every
        matching rule's destinations, each once, in rule order, up to the first matching
        rule with ``stop``. Empty when no rule matches."""
        found: dict[Destination, None] = {}
        for rule in self.rules:
            if not rule.match.matches(type_name, data):
                continue
            for destination in rule.destinations:
                found.setdefault(destination, None)
            if rule.stop:
                break
        return list(found)
