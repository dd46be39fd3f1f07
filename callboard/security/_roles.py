"""Roles and what each may do: the admin API's authorization table (pure)."""

from __future__ import annotations

from typing import Literal

__all__ = ["ACTIONS", "ROLES", "Role", "allowed"]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}

ACTIONS: dict[str, Role] = {
    # read-only
    "health": "viewer",
    "status": "viewer",
    "tree": "viewer",
    "which_children": "viewer",
    "count_children": "viewer",
    "get_childspec": "viewer",
    "metrics": "viewer",
    "breakers": "viewer",
    "queue_stats": "viewer",
    "dead_letters": "viewer",
    "bus_stats": "viewer",
    # operate
    "ask": "operator",
    "tell": "operator",
    "start_child": "operator",
    "terminate_child": "operator",
    "restart_child": "operator",
    "delete_child": "operator",
    "set_breaker": "operator",
    "replay_dead_letters": "operator",
    "enqueue": "operator",
    "publish": "operator",
    # destructive
    "kill": "admin",
    "stop": "admin",
    "purge_dead_letters": "admin",  # deletes messages for good
}
"""Each admin API action and the least role that may perform it (roles are ordered:
viewer < operator < admin)."""


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may perform ``action``; unknown roles and actions are refused."""
    need = ACTIONS.get(action)
    have = _RANK.get(role)  # type: ignore[call-overload]
    return need is not None and have is not None and have >= _RANK[need]
