"""The system's own events, published on well-known topics when the bus runs
(``[bus] system_events``, on by default):

``system.supervisor.child_started``       :class:`SupervisorEvent` (``pid``)
``system.supervisor.child_exited``        :class:`SupervisorEvent` (``reason``, ``detail``)
``system.supervisor.child_restarted``     :class:`SupervisorEvent` (``restarts``, ``reason``)
``system.supervisor.intensity_exceeded``  :class:`SupervisorEvent` (``reason``): it gives up
``system.health.unresponsive``            :class:`HealthEvent`: a liveness probe timed out
``system.breaker.state_changed``          :class:`BreakerEvent`
``system.queue.<name>.dead_lettered``     ``callboard.queues.QueueEvent``
``system.queue.<name>.full``              ``callboard.queues.QueueEvent``

System events are best effort: they are sent without waiting, and one that cannot be
sent (the bus is restarting) is logged by the sender, never retried.
"""

from __future__ import annotations

from typing import ClassVar

from callboard.messages import Message

__all__ = ["BreakerEvent", "HealthEvent", "SupervisorEvent"]


class SupervisorEvent(Message):
    type_name: ClassVar[str] = "callboard.events.SupervisorEvent"
    supervisor: str
    child: str
    event: str
    reason: str = ""
    detail: str = ""
    pid: int | None = None
    restarts: int = 0


class HealthEvent(Message):
    type_name: ClassVar[str] = "callboard.events.HealthEvent"
    actor: str
    check: str
    detail: str = ""


class BreakerEvent(Message):
    type_name: ClassVar[str] = "callboard.events.BreakerEvent"
    route: str
    caller: str
    target: str
    old: str
    new: str
    reason: str
