"""The ``services`` subtree: the bus and the queues, as the root's first child.

Built from ``[bus]``, ``[queues]`` and ``[[routing]]`` when any of them asks for it
(``Config.services_enabled``). First in start order so that user actors can subscribe,
publish and enqueue from their ``on_start``; ``one_for_one``, so a crashed queue or bus
is restarted on its own. The queues start before the bus (the bus forwards to them).
"""

from __future__ import annotations

import os
from typing import Any

from callboard.config import ChildSpec, Config
from callboard.config._messaging import DEAD_LETTERS, QueueSpec, queue_actor
from callboard.config._models import BUS, SERVICES

__all__ = ["queue_path", "services_spec"]

QUEUE_ACTOR = "callboard.queues._actor:QueueActor"
BUS_ACTOR = "callboard.bus._actor:BusActor"


def queue_path(config: Config, name: str, spec: QueueSpec) -> str:
    """Where durable queue ``name`` keeps its SQLite file."""
    if spec.path:
        return os.path.expanduser(spec.path)
    return os.path.join(os.path.expanduser(config.daemon.state_dir), "queues", f"{name}.sqlite")


def services_spec(config: Config) -> ChildSpec | None:
    """The ``services`` supervisor's child spec, or ``None`` when nothing needs it."""
    if not config.services_enabled:
        return None
    bus = config.bus_enabled
    events = bus and config.bus.system_events
    queues = dict(config.queues)
    # Dead letters are always collected once the services run; in memory unless declared.
    queues.setdefault(DEAD_LETTERS, QueueSpec(durable=False, max_length=100_000))
    children: list[dict[str, Any]] = []
    for name, spec in queues.items():
        args = spec.model_dump()
        args["path"] = queue_path(config, name, spec) if spec.durable else ""
        args.update(name=name, events=events, dead_letter_sink=name == DEAD_LETTERS)
        children.append({"id": queue_actor(name), "actor": QUEUE_ACTOR, "args": args})
    if bus:
        b = config.bus
        children.append({
            "id": BUS, "actor": BUS_ACTOR,
            "args": {
                "buffer": b.buffer, "window": b.window, "overflow": b.overflow,
                "durable": {q: d.pattern for q, d in b.durable.items()},
                "routing": [r.model_dump(mode="json", by_alias=True, exclude_unset=True)
                            for r in config.routing],
            },
        })  # fmt: skip
    return ChildSpec.model_validate({
        "id": SERVICES,
        "supervisor": {"strategy": "one_for_one", "intensity": 10, "period": 10.0,
                       "children": children},
    })  # fmt: skip
