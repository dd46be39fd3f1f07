"""The configuration's shape: pydantic models users write as TOML (spec §3.2 validation).

The supervision part follows Erlang/OTP's ``supervisor`` contract: supervisor flags
(:class:`SupervisorFlags`) and child specifications (:class:`ChildSpec`), a child being
either a worker (``actor``) or a nested supervisor (``supervisor``). Every rejection
reads like OTP's: the message starts with the reason (``invalid_strategy``,
``duplicate_child_name``, ...), then ``": "`` and an explanation, and the error type
(``ValidationError.errors()[i]["type"]``) is the reason itself. Errors are located at the
offending key, e.g. ``supervisor.children.1.supervisor.children.0.restart``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any, Literal, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from callboard.config._messaging import (
    DEAD_LETTERS,
    QUEUE_NAME,
    BusSettings,
    QueueSpec,
    queue_actor,
)
from callboard.queues._routing import RouteRule
from callboard.resilience._policy import Policy, parse_route

__all__ = [
    "Backoff",
    "ChildSpec",
    "Config",
    "DaemonSettings",
    "Liveness",
    "SupervisorFlags",
    "SupervisorSpec",
    "SystemSettings",
    "TokenSpec",
]

_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"
_IMPORT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
AutoShutdown = Literal["never", "any_significant", "all_significant"]
RestartType = Literal["permanent", "transient", "temporary"]
Shutdown = float | Literal["brutal_kill", "infinity"]

_STRATEGIES: tuple[str, ...] = get_args(Strategy)
_AUTO_SHUTDOWNS: tuple[str, ...] = get_args(AutoShutdown)
_RESTART_TYPES: tuple[str, ...] = get_args(RestartType)

SERVICES = "services"
BUS = "bus"

_WORKER_SHUTDOWN = 5.0
"""Default ``shutdown`` of a worker (OTP: 5000 ms); a supervisor child gets ``infinity``."""


# --- rejections ------------------------------------------------------------------------


def _reject(reason: str, detail: str) -> PydanticCustomError:
    """An error whose type is ``reason`` and whose message is ``"<reason>: <detail>"``."""
    # No context: the template is used as is, so braces in ``detail`` are safe.
    return PydanticCustomError(reason, f"{reason}: {detail}")


def _reject_at(title: str, errors: list[tuple[tuple[str | int, ...], str, str, Any]]) -> None:
    """Raise ``(loc, reason, detail, input)`` errors located below the current model.

    pydantic prefixes the ``loc`` of line errors raised from a validator with the
    validated value's own location, so ``("children", 1, "id")`` raised while
    validating ``supervisor`` ends up as ``supervisor.children.1.id``.
    """
    if errors:
        raise ValidationError.from_exception_data(
            title,
            [
                InitErrorDetails(type=_reject(reason, detail), loc=loc, input=value)
                for loc, reason, detail, value in errors
            ],
        )


def _one_of(value: Any, allowed: tuple[str, ...], reason: str) -> Any:
    if isinstance(value, str) and value in allowed:
        return value
    raise _reject(reason, f"{value!r} is not one of {', '.join(allowed)}")


def _number(value: Any, handler: ValidatorFunctionWrapHandler, reason: str, expected: str) -> Any:
    """``handler(value)`` (pydantic's checks), any failure reported as ``reason``.

    Booleans are refused although pydantic's lax mode would read them as 0/1.
    """
    if not isinstance(value, bool):
        try:
            return handler(value)
        except ValidationError:
            pass
    raise _reject(reason, f"{value!r} is not {expected}")


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them with their path.
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --- [system] --------------------------------------------------------------------------


class SystemSettings(_Strict):
    """``[system]``: the transport and process-level settings."""

    transport: Literal["tcp", "local"] = "tcp"
    """``tcp``: Thespian multiprocTCPBase, one OS process per actor. ``local``: one process."""
    admin_port: int = Field(1900, ge=1, le=65535)
    """Thespian's admin port; one system per port (a second one would silently attach)."""
    bind: str = "127.0.0.1"
    """Address every socket listens on. Thespian unpickles what arrives: keep it loopback
    unless every host on the network is trusted."""
    max_frame_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest encoded envelope accepted or sent; larger ones get ``invalid_message``."""
    ask_timeout: float = Field(5.0, gt=0)
    """Default timeout of ``ask`` when the caller gives none."""
    start_timeout: float = Field(10.0, gt=0)
    """How long ``System.start`` waits for the whole tree to confirm it is running."""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_file: str = ""
    """Where actor processes write JSON log lines; empty means the starter's stderr."""


# --- child specifications --------------------------------------------------------------


class Backoff(_Strict):
    """``backoff``: how long a child waits before each restart.

    Consecutive restarts wait ``min``, ``2 * min``, ``4 * min``, ... seconds, capped at
    ``max``, each lengthened at random by up to ``jitter`` times itself. Once the child
    has run ``reset_after`` seconds, the next delay is ``min`` again. ``min = 0``
    restarts at once. Any problem is rejected as ``invalid_backoff``.
    """

    min: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Delay before the first restart, in seconds (>= 0)."""
    max: float = Field(30.0, ge=0, allow_inf_nan=False)
    """Cap of the delay, in seconds (>= ``min``)."""
    jitter: float = Field(0.1, ge=0, le=1, allow_inf_nan=False)
    """Random spread of each delay, as a fraction of it (0 to 1)."""
    reset_after: float = Field(10.0, ge=0, allow_inf_nan=False)
    """Seconds of uninterrupted running after which the next delay is ``min`` again."""

    @field_validator("min", "max", "reset_after", mode="wrap")
    @classmethod
    def _seconds(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _number(v, handler, "invalid_backoff", "a number of seconds >= 0")

    @field_validator("jitter", mode="wrap")
    @classmethod
    def _jitter(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _number(v, handler, "invalid_backoff", "a fraction between 0 and 1")

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and v < low:
            raise _reject("invalid_backoff", f"max {v!r} is less than min {low!r}")
        return v


class Liveness(_Strict):
    """``liveness``: a heartbeat that catches a hung (not crashed) child.

    The supervisor probes the child every ``interval`` seconds; a probe unanswered for
    ``timeout`` seconds means the child is stuck: it is killed, with exit reason
    ``timeout``, and handled like any other exit. Both keys are required; a problem is
    rejected as ``invalid_liveness``.
    """

    interval: float = Field(gt=0, allow_inf_nan=False)
    """Seconds between two pings (> 0)."""
    timeout: float = Field(gt=0, allow_inf_nan=False)
    """Seconds a ping may go unanswered (> 0)."""

    @field_validator("interval", "timeout", mode="wrap")
    @classmethod
    def _seconds(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _number(v, handler, "invalid_liveness", "a number of seconds > 0")


class ChildSpec(_Strict):
    """One ``[[...children]]`` entry: a worker (``actor``) or a nested supervisor."""

    id: str = Field(pattern=_ID_PATTERN)
    """Unique in the whole tree; also the name the child is addressed by."""
    actor: str | None = Field(None, pattern=_IMPORT_PATTERN)
    """A worker: ``"package.module:Class"`` of a :class:`callboard.Actor` subclass."""
    supervisor: SupervisorFlags | None = None
    """A nested supervisor: its flags and children. Exactly one of ``actor``/``supervisor``."""
    restart: RestartType = "permanent"
    """``permanent``: always restarted; ``transient``: only after an abnormal exit;
    ``temporary``: never."""
    shutdown: Shutdown = _WORKER_SHUTDOWN
    """Seconds to wait for a graceful stop before the kill; ``brutal_kill`` kills at once;
    ``infinity`` waits. Left out (or ``None``), it is 5.0 for a worker and ``infinity``
    for a supervisor; never ``None`` once validated."""
    significant: bool = Field(False, strict=True)
    """Its exit (normal, for a transient child) may shut its supervisor down, per the
    supervisor's ``auto_shutdown``. Not allowed on a permanent child."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Handed to the actor as ``self.args`` (validated by its nested ``Args`` model).
    Workers only."""
    backoff: Backoff | None = None
    """Delay between restarts; ``None`` restarts at once (OTP's behaviour)."""
    liveness: Liveness | None = None
    """Heartbeat check that catches a hung (not crashed) child; ``None``: no check."""

    @property
    def is_supervisor(self) -> bool:
        """Whether this child is a nested supervisor rather than a worker."""
        return self.supervisor is not None

    @model_validator(mode="before")
    @classmethod
    def _kind_default_shutdown(cls, data: Any) -> Any:
        # OTP's default depends on the child type: 5000 ms for a worker, infinity for a
        # supervisor (its subtree needs the time to stop in order).
        if isinstance(data, dict) and data.get("shutdown") is None:
            kind_default = "infinity" if data.get("supervisor") is not None else _WORKER_SHUTDOWN
            data = {**data, "shutdown": kind_default}
        return data

    @field_validator("restart", mode="before")
    @classmethod
    def _restart_type(cls, v: Any) -> Any:
        return _one_of(v, _RESTART_TYPES, "invalid_restart_type")

    @field_validator("shutdown", mode="wrap")
    @classmethod
    def _shutdown(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Shutdown:
        if not isinstance(v, bool):
            try:
                value = cast(Shutdown, handler(v))
            except ValidationError:
                pass
            else:
                if isinstance(value, str):
                    return value
                if math.isfinite(value) and value >= 0:
                    return float(value)
        raise _reject(
            "invalid_shutdown",
            f"{v!r} is not a number of seconds >= 0, 'brutal_kill' or 'infinity'",
        )

    @field_validator("significant", mode="wrap")
    @classmethod
    def _significant(
        cls, v: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> bool:
        try:
            value = cast(bool, handler(v))
        except ValidationError:
            raise _reject("invalid_significant", f"{v!r} is not a boolean") from None
        if value and info.data.get("restart") == "permanent":
            raise _reject(
                "invalid_significant",
                "a significant child must be transient or temporary, not permanent "
                "(a permanent child is always restarted, so it never ends for good)",
            )
        return value

    @field_validator("args")
    @classmethod
    def _args_for_workers(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if v and info.data.get("supervisor") is not None:
            raise _reject(
                "invalid_child_spec",
                f"{info.data.get('id', '?')!r} is a supervisor: args are for workers only",
            )
        return v

    @model_validator(mode="after")
    def _worker_or_supervisor(self) -> ChildSpec:
        if (self.actor is None) == (self.supervisor is None):
            which = "neither actor nor" if self.actor is None else "both actor and"
            raise _reject(
                "invalid_child_spec",
                f"{self.id!r} has {which} supervisor: give exactly one "
                "(actor for a worker, supervisor for a nested supervisor)",
            )
        return self


# --- supervisors -----------------------------------------------------------------------


class SupervisorFlags(_Strict):
    """The flags and children of a supervisor: the root's ``[supervisor]`` table or a
    child's ``supervisor`` table."""

    strategy: Strategy = "one_for_one"
    """What else is restarted when a child is: ``one_for_one`` nothing else;
    ``one_for_all`` every sibling; ``rest_for_one`` the siblings started after it;
    ``simple_one_for_one`` is ``one_for_one`` over instances of one child spec."""
    intensity: int = Field(3, ge=0)
    """More than ``intensity`` restarts within ``period`` seconds: the supervisor gives up."""
    period: float = Field(5.0, gt=0, allow_inf_nan=False)
    auto_shutdown: AutoShutdown = "never"
    """``never``; ``any_significant``: the supervisor stops when a significant child ends
    for good; ``all_significant``: when the last of them does."""
    children: list[ChildSpec] = Field(default_factory=list)

    def walk(self) -> Iterator[tuple[tuple[str | int, ...], ChildSpec]]:
        """Every child spec in the tree, depth first in file order, with its location
        relative to this table (e.g. ``("children", 1, "supervisor", "children", 0)``)."""
        yield from _walk(self, ())

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, v: Any) -> Any:
        return _one_of(v, _STRATEGIES, "invalid_strategy")

    @field_validator("intensity", mode="wrap")
    @classmethod
    def _intensity(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _number(v, handler, "invalid_intensity", "an integer >= 0")

    @field_validator("period", mode="wrap")
    @classmethod
    def _period(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _number(v, handler, "invalid_period", "a number of seconds > 0")

    @field_validator("auto_shutdown", mode="before")
    @classmethod
    def _auto_shutdown(cls, v: Any, info: ValidationInfo) -> Any:
        v = _one_of(v, _AUTO_SHUTDOWNS, "invalid_auto_shutdown")
        if v != "never" and info.data.get("strategy") == "simple_one_for_one":
            # OTP 27 and later reject this too.
            raise _reject(
                "bad_combination",
                f"auto_shutdown = {v!r} is not supported with strategy = 'simple_one_for_one'",
            )
        return v

    @field_validator("children")
    @classmethod
    def _children_fit_flags(cls, v: list[ChildSpec], info: ValidationInfo) -> list[ChildSpec]:
        if info.data.get("strategy") == "simple_one_for_one" and len(v) != 1:
            raise _reject(
                "bad_start_spec",
                "a simple_one_for_one supervisor takes exactly one child spec "
                f"(the template of its dynamically started children), not {len(v)}",
            )
        if info.data.get("auto_shutdown") == "never":
            _reject_at(
                cls.__name__,
                [
                    (
                        (i, "significant"),
                        "bad_combination",
                        f"{child.id!r} is significant but its supervisor has "
                        "auto_shutdown = 'never' (use any_significant or all_significant, "
                        "or make it not significant)",
                        True,
                    )
                    for i, child in enumerate(v)
                    if child.significant
                ],
            )
        return v


class SupervisorSpec(SupervisorFlags):
    """``[supervisor]``: the root supervisor (id ``root``) and its children.

    Checks that every id in the tree is unique (nested supervisors included): the ids
    are the names children are addressed by.
    """

    id: str = Field("root", pattern=_ID_PATTERN)

    @model_validator(mode="after")
    def _unique_ids(self) -> SupervisorSpec:
        owner: dict[str, str] = {self.id: "it is the root supervisor's id"}
        duplicates: list[tuple[tuple[str | int, ...], str, str, Any]] = []
        parents: dict[tuple[str | int, ...], str] = {(): self.id}
        for loc, child in self.walk():
            parent = parents[loc[:-2]]
            if child.id in owner:
                detail = f"{child.id!r} is used twice in the tree ({owner[child.id]})"
                duplicates.append(((*loc, "id"), "duplicate_child_name", detail, child.id))
            else:
                owner[child.id] = f"first under supervisor {parent!r}"
            if child.supervisor is not None:
                parents[(*loc, "supervisor")] = child.id
        _reject_at(type(self).__name__, duplicates)
        return self


def _walk(
    flags: SupervisorFlags, prefix: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], ChildSpec]]:
    for i, child in enumerate(flags.children):
        loc = (*prefix, "children", i)
        yield loc, child
        if child.supervisor is not None:
            yield from _walk(child.supervisor, (*loc, "supervisor"))


ChildSpec.model_rebuild()


def _default_state_dir() -> str:
    import platformdirs

    return str(platformdirs.user_data_path("callboard"))


class TokenSpec(_Strict):
    """One ``[[daemon.tokens]]`` entry: a named credential with a role."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Shown in audit lines; the secret never is."""
    role: Literal["viewer", "operator", "admin"]
    secret_file: str = Field(min_length=1)
    """The file holding the secret (relative paths are under ``state_dir``)."""


class DaemonSettings(_Strict):
    """``[daemon]``: ``callboard run`` and its admin API."""

    state_dir: str = Field(default_factory=_default_state_dir)
    """Token file (``admin.token``), pid file (``callboard.pid``), ``daemon.json`` (how the
    admin client finds the API), the audit log (``audit.log``); later, stores. ``~`` is
    expanded."""
    api_host: str = "127.0.0.1"
    api_port: int = Field(8765, ge=0, le=65535)
    """0 picks a free port (written to ``daemon.json``)."""
    tls_cert: str = ""
    tls_key: str = ""
    """Both set: the admin API serves HTTPS."""
    tokens: list[TokenSpec] = Field(default_factory=list)
    """Without any, an ``admin`` token is generated into ``state_dir/admin.token`` (0600)."""
    message_modules: list[str] = Field(default_factory=list)
    """Modules to import so their message types can be sent through the admin API (the
    modules of configured actors are imported anyway)."""
    stop_timeout: float = Field(0.0, ge=0)
    """Extra seconds a graceful stop may take beyond the children's shutdown times before
    everything is killed (0: 10 s)."""

    @model_validator(mode="after")
    def _tls_pair(self) -> DaemonSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("invalid_tls: set both tls_cert and tls_key, or neither")
        ids = [t.id for t in self.tokens]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate_token_id: token ids must be unique")
        return self


class Config(_Strict):
    """The whole configuration. Every section has defaults, so ``{}`` is valid."""

    system: SystemSettings = Field(default_factory=SystemSettings)
    supervisor: SupervisorSpec = Field(default_factory=SupervisorSpec)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    policies: dict[str, Policy] = Field(default_factory=dict)
    """Resilience per target actor (``reward_model``) or route (``caller->target``); see
    :mod:`callboard.resilience`. Names are not checked against the tree: dynamic
    children get their ids at run time."""

    queues: dict[str, QueueSpec] = Field(default_factory=dict)
    """Named message queues (``[queues.<name>]``), each an actor ``queue.<name>``."""
    bus: BusSettings = Field(default_factory=BusSettings)
    routing: list[RouteRule] = Field(default_factory=list)
    """Content-based routing rules (``[[routing]]``) applied by ``route(msg)``."""

    @field_validator("policies")
    @classmethod
    def _routes(cls, v: dict[str, Policy]) -> dict[str, Policy]:
        for key in v:
            parse_route(key)  # ValueError("invalid_route: ...")
        return v

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, v: dict[str, QueueSpec]) -> dict[str, QueueSpec]:
        for name in v:
            if not re.match(QUEUE_NAME, name):
                raise _reject("invalid_queue_name", f"{name!r}: letters, digits, _ and - only")
        return v

    @model_validator(mode="after")
    def _messaging(self) -> Config:
        errors: list[tuple[tuple[str | int, ...], str, str, Any]] = []
        for name in self.bus.durable:
            if name not in self.queues:
                errors.append((("bus", "durable", name), "unknown_queue",
                               f"durable subscription {name!r} needs [queues.{name}]", name))
        for i, rule in enumerate(self.routing):
            for dest in rule.to:
                kind, _, name = dest.partition(":")
                if kind == "queue" and name not in self.queues and name != DEAD_LETTERS:
                    errors.append((("routing", i, "to"), "unknown_queue",
                                   f"{dest!r}: no [queues.{name}]", dest))
        if self.services_enabled:
            reserved = {SERVICES, BUS} | {queue_actor(q) for q in (*self.queues, DEAD_LETTERS)}
            for loc, child in self.supervisor.walk():
                if child.id in reserved:
                    errors.append((("supervisor", *loc, "id"), "reserved_name",
                                   f"{child.id!r} is the name of a messaging service", child.id))
        if errors:
            _reject_at("Config", errors)
        return self

    @property
    def services_enabled(self) -> bool:
        """Whether the ``services`` subtree (bus, queues) runs."""
        return bool(self.bus.enabled or self.queues or self.routing or self.bus.durable)

    @property
    def bus_enabled(self) -> bool:
        return bool(self.bus.enabled or self.routing or self.bus.durable)
