"""callboard: an actor runtime for Python on Erlang-style supervision, over Thespian.

The public names::

    from callboard import System, Actor, Message, handler
    from callboard import BusinessError, RemoteError, AskTimeout, NoSuchActor, ...
"""

from callboard.actors import Actor, Future, consumer, handler
from callboard.config import (
    ChildSpec,
    Config,
    SupervisorFlags,
    SupervisorSpec,
    SystemSettings,
    load_config,
)
from callboard.errors import (
    AskTimeout,
    BusinessError,
    CallboardError,
    ConfigError,
    InvalidMessage,
    NoSuchActor,
    NoSuchBreaker,
    RemoteError,
    StartFailed,
    SupervisorError,
    SystemFailed,
    SystemNotRunning,
    Unavailable,
)
from callboard.messages import Envelope, Message, is_degraded, upgrades
from callboard.system import System

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "AskTimeout",
    "BusinessError",
    "CallboardError",
    "ChildSpec",
    "Config",
    "ConfigError",
    "Envelope",
    "Future",
    "InvalidMessage",
    "Message",
    "NoSuchActor",
    "NoSuchBreaker",
    "RemoteError",
    "StartFailed",
    "SupervisorError",
    "SupervisorFlags",
    "SupervisorSpec",
    "System",
    "SystemFailed",
    "SystemNotRunning",
    "SystemSettings",
    "Unavailable",
    "__version__",
    "consumer",
    "handler",
    "is_degraded",
    "load_config",
    "upgrades",
]
