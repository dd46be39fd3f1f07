"""The ``callboard`` command line (also ``python -m callboard``).

Each subcommand lives in its own module exposing ``register(subparsers)``: it adds its
parser and sets ``func`` to a callable taking the parsed :class:`argparse.Namespace` and
returning the exit code. Add the module's ``register`` to :data:`REGISTRARS`.

Exit codes: 0 success, 1 failure (e.g. invalid configuration), 2 usage error.
A :class:`~callboard.errors.ConfigError` escaping a subcommand is printed to stderr and
exits 1, so subcommands that load a config need not handle it themselves.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from callboard.cli import _admin_cmd, _config_cmd, _demo_cmd, _kb_cmd, _run_cmd, _solve_cmd
from callboard.errors import ConfigError

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """What ``register`` functions receive (``parser.add_subparsers()``'s result)."""

__all__ = ["REGISTRARS", "build_parser", "main"]

REGISTRARS: list[Callable[[Subparsers], None]] = [
    _demo_cmd.register,
    _run_cmd.register,
    _solve_cmd.register,
    _kb_cmd.register,
    _config_cmd.register,
    _admin_cmd.register,
]
"""One ``register(subparsers)`` per subcommand module, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="callboard", description="An actor runtime on Erlang-style supervision."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"callboard: {exc}", file=sys.stderr)
        return 1
