"""The configuration's shape: pydantic models users write as TOML (spec §3.2 validation)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ChildSpec", "Config", "SupervisorSpec", "SystemSettings"]

_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"
_IMPORT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them with their path.
    model_config = ConfigDict(extra="forbid", validate_default=True)


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


class ChildSpec(_Strict):
    """One ``[[supervisor.children]]`` entry."""

    id: str = Field(pattern=_ID_PATTERN)
    """Unique in the whole tree; also the name the actor is addressed by."""
    actor: str = Field(pattern=_IMPORT_PATTERN)
    """``"package.module:Class"`` of a :class:`callboard.Actor` subclass."""
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown: float | Literal["brutal_kill", "infinity"] = 5.0
    """Seconds to wait for a graceful stop before SIGKILL; ``brutal_kill`` kills at once."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Handed to the actor as ``self.args`` (validated by its nested ``Args`` model)."""

    @field_validator("shutdown")
    @classmethod
    def _shutdown_positive(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and v < 0:
            raise ValueError("invalid_shutdown: must be >= 0 seconds, 'brutal_kill' or 'infinity'")
        return v


class SupervisorSpec(_Strict):
    """``[supervisor]``: the root supervisor (id ``root``) and its children."""

    id: str = Field("root", pattern=_ID_PATTERN)
    strategy: Literal["one_for_one"] = "one_for_one"
    intensity: int = Field(3, ge=0)
    """More than ``intensity`` restarts within ``period`` seconds: the supervisor gives up."""
    period: float = Field(5.0, gt=0)
    children: list[ChildSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> SupervisorSpec:
        seen: set[str] = {self.id}
        for child in self.children:
            if child.id in seen:
                raise ValueError(f"duplicate_child_name: {child.id!r} is used twice in the tree")
            seen.add(child.id)
        return self


class Config(_Strict):
    """The whole configuration. Every section has defaults, so ``{}`` is valid."""

    system: SystemSettings = Field(default_factory=SystemSettings)
    supervisor: SupervisorSpec = Field(default_factory=SupervisorSpec)
