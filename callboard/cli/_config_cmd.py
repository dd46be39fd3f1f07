"""``callboard config check FILE [--json]``: validate a config file and print it resolved."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from callboard.config import dump_config, load_config
from callboard.errors import ConfigError

if TYPE_CHECKING:
    from callboard.cli import Subparsers

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    """Add the ``config`` command and its ``check`` subcommand."""
    config = subparsers.add_parser(
        "config", help="work with configuration files", description="Work with configuration."
    )
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a config file and print the resolved configuration",
        description=(
            "Validate FILE (with CALLBOARD_<SECTION>__<KEY> environment overrides applied) "
            "and print the resolved configuration, defaults included. "
            "Exit 0 if valid, 1 if not (errors on stderr), 2 on usage errors."
        ),
    )
    check.add_argument("file", metavar="FILE", help="TOML configuration file")
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    check.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    """Validate ``args.file``; print the resolved config to stdout or the errors to stderr."""
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"callboard: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        sys.stdout.write(dump_config(config))
    return 0
