"""``callboard run``: run the actor system as a daemon (see :mod:`callboard.daemon`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from callboard.config import load_config

if TYPE_CHECKING:
    from callboard.cli import Subparsers

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="run the actor system as a daemon with an authenticated admin API"
    )
    parser.add_argument("--config", help="TOML config (default: the embedded one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from callboard.daemon import Daemon

    return Daemon(load_config(args.config)).run()
