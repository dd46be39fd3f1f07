"""``Message``: the typed pydantic base of everything that travels between actors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from callboard.errors import InvalidMessage
from callboard.messages import _registry

__all__ = ["Message", "upgrades"]

Upgrader = Callable[[dict[str, Any]], dict[str, Any]]


def upgrades(from_version: int) -> Callable[[Upgrader], Upgrader]:
    """Mark a static function as the schema mapping from ``from_version`` to the next one.

    ::

        class Ping(Message):
            version: ClassVar[int] = 2
            n: int
            label: str

            @upgrades(1)
            @staticmethod
            def _v1(data: dict) -> dict:        # v1 had no label
                return {**data, "label": ""}

    A v1 payload is mapped v1 -> v2 before validation, so old senders keep working.
    """

    def mark(fn: Upgrader) -> Upgrader:
        target = fn.__func__ if isinstance(fn, staticmethod) else fn
        setattr(target, "_callboard_upgrades_from", from_version)  # noqa: B010
        return fn

    return mark


class Message(BaseModel):
    """Base class of user messages. Subclasses are registered by ``type_name`` on definition.

    Class attributes a subclass may set:

    ``type_name``  the name on the wire; default the class name. Set it when two classes
                   share a name, or to keep the wire name stable across a module move.
    ``version``    the schema version (int >= 1, default 1). Older payloads are upgraded
                   with the functions marked :func:`upgrades`; newer ones are rejected
                   with ``invalid_message`` (reason ``bad_version``).
    ``idempotent`` whether a retry may deliver it twice (retry policies only ever retry
                   idempotent messages).
    ``reply_type`` the ``type_name`` of the reply message (used by static fallbacks that do
                   not name one); ``None`` if unspecified.
    """

    model_config = ConfigDict(extra="forbid")

    type_name: ClassVar[str] = "Message"
    version: ClassVar[int] = 1
    idempotent: ClassVar[bool] = False
    reply_type: ClassVar[str | None] = None
    _upgraders: ClassVar[dict[int, Upgrader]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__
        if not isinstance(cls.type_name, str) or not 0 < len(cls.type_name) <= 256:
            raise TypeError(f"{cls.__qualname__}.type_name must be a str of 1-256 characters")
        if not isinstance(cls.version, int) or cls.version < 1:
            raise TypeError(f"{cls.__qualname__}.version must be an int >= 1")
        ups: dict[int, Upgrader] = {}
        for value in cls.__dict__.values():
            fn = value.__func__ if isinstance(value, staticmethod) else value
            frm = getattr(fn, "_callboard_upgrades_from", None)
            if frm is not None:
                ups[frm] = fn
        cls._upgraders = ups

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Registered only once pydantic has finished building the class, so a failing
        # model definition never leaves a half-built class in the registry.
        super().__pydantic_init_subclass__(**kwargs)
        _registry.register(cls)

    @classmethod
    def from_wire(cls, version: int, data: Any) -> Message:
        """Validate a decoded payload of schema ``version``, upgrading it first if older.

        Raises :class:`InvalidMessage` with reason ``bad_version`` (newer than this class,
        or no upgrade path) or ``invalid_fields`` (pydantic's errors in ``details``).
        """
        if version != cls.version:
            if not isinstance(version, int) or version < 1 or version > cls.version:
                raise InvalidMessage(
                    "bad_version",
                    f"{cls.type_name} version {version!r} is not supported "
                    f"(this receiver knows up to {cls.version})",
                    {"type": cls.type_name, "version": version, "supported": cls.version},
                )
            if not isinstance(data, dict):
                raise InvalidMessage("invalid_fields", f"{cls.type_name} payload must be a map")
            for v in range(version, cls.version):
                up = cls._upgraders.get(v)
                if up is None:
                    raise InvalidMessage(
                        "bad_version",
                        f"{cls.type_name} has no upgrade from version {v} to {v + 1}",
                        {"type": cls.type_name, "version": version, "supported": cls.version},
                    )
                try:
                    data = up(dict(data))
                except Exception as exc:  # a buggy upgrader is bad input, not a crash
                    raise InvalidMessage(
                        "bad_version", f"upgrading {cls.type_name} v{v} failed: {exc}"
                    ) from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidMessage(
                "invalid_fields",
                f"invalid {cls.type_name}: {exc.error_count()} validation error(s)",
                {"type": cls.type_name, "errors": _jsonable_errors(exc)},
            ) from None
        except Exception as exc:  # a validator that trips over bad input (e.g. TypeError)
            raise InvalidMessage(
                "invalid_fields",
                f"invalid {cls.type_name}: validator failed: {type(exc).__name__}: {exc}",
                {"type": cls.type_name},
            ) from None


def _jsonable_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
