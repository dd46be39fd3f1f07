"""Configuration: the pydantic models, loading from TOML/dict/defaults, and dumping.

>>> from callboard.config import load_config
>>> load_config(env={}).system.admin_port
1900
"""

from callboard.config._loader import dump_config, load_config
from callboard.config._models import (
    Backoff,
    ChildSpec,
    Config,
    DaemonSettings,
    Liveness,
    SupervisorFlags,
    SupervisorSpec,
    SystemSettings,
    TokenSpec,
)

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
    "dump_config",
    "load_config",
]
