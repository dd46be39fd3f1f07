"""``callboard demo``: start the system, send a message, print the reply, stop.

The README's main job until the reasoning pipeline lands: it exercises the whole path
(config -> supervision tree -> one process per actor -> msgpack envelopes -> reply ->
clean stop) on the embedded default config, or on ``--config FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from callboard._thespian import processes_in_group
from callboard.config import load_config

if TYPE_CHECKING:
    from callboard.cli import Subparsers

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="start the system, ask the echo actor, print the reply, stop"
    )
    parser.add_argument("--config", help="TOML config (default: the embedded one)")
    parser.add_argument("--target", default="echo", help="actor to ask (default: echo)")
    parser.add_argument("--n", type=int, default=3, help="how many pings to send")
    parser.add_argument("--log-level", default="warning", help="actor log level (default warning)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from callboard import CallboardError, System
    from callboard.actors.examples import Ping

    config = load_config(args.config)
    config = config.model_copy(
        update={"system": config.system.model_copy(update={"log_level": args.log_level})}
    )
    started = time.perf_counter()
    try:
        with System.start(config) as system:
            boot_ms = (time.perf_counter() - started) * 1000
            print(f"started {system.name} in {boot_ms:.0f} ms; actors (name -> pid):")
            print(json.dumps(system.directory(), indent=2))
            for i in range(1, args.n + 1):
                t0 = time.perf_counter()
                reply = system.ask(args.target, Ping(n=i), timeout=2.0)
                took = (time.perf_counter() - t0) * 1000
                print(f"ask {args.target} Ping(n={i}) -> {reply!r} in {took:.2f} ms")
            pgid = system.pgid
        left = processes_in_group(pgid) if pgid else []
        print(f"stopped; processes left behind: {len(left)}")
    except CallboardError as exc:
        print(f"callboard demo: {exc}", file=sys.stderr)
        return 1
    return 0 if not left else 1
