"""The type registry: wire type name -> message class, so a receiver can decode by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callboard.errors import InvalidMessage

if TYPE_CHECKING:
    from callboard.messages._message import Message

__all__ = ["lookup", "register", "registered_types"]

_TYPES: dict[str, type[Message]] = {}


def register(cls: type[Message]) -> None:
    """Register ``cls`` under ``cls.type_name``.

    Re-registering the same class (same module and qualified name, e.g. a module reloaded
    or a notebook cell run twice) replaces the old entry. Two different classes claiming
    one name would make the wire ambiguous, so that raises ``TypeError`` at class
    definition time; set ``type_name`` on one of them.
    """
    name = cls.type_name
    old = _TYPES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(
            f"message type name {name!r} is already registered by "
            f"{old.__module__}.{old.__qualname__}; give {cls.__module__}.{cls.__qualname__} "
            f"its own `type_name: ClassVar[str] = '...'`"
        )
    _TYPES[name] = cls


def lookup(name: str) -> type[Message]:
    """The class registered under ``name``; :class:`InvalidMessage` (``unknown_type``) if none."""
    try:
        return _TYPES[name]
    except KeyError:
        raise InvalidMessage("unknown_type", f"unknown message type {name!r}") from None


def registered_types() -> dict[str, type[Message]]:
    """A copy of the registry (for the admin API's schema listing and for tests)."""
    return dict(_TYPES)
