"""``callboard solve QUESTION``: ask the reasoning pipeline for a decision.

Sends ``Solve`` to the local daemon if one runs (found through the state dir), otherwise
starts an embedded system on the config, asks, and stops it. Prints the decision with
its path as a readable tree, or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callboard.config import Config, load_config

if TYPE_CHECKING:
    from callboard.cli import Subparsers

__all__ = ["register", "render_decision"]

ENGINE = "reasoning_engine"
SOLVE = "callboard.pipeline.Solve"


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("solve", help="ask the reasoning pipeline for a decision")
    parser.add_argument("question")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same decision")
    parser.add_argument("--k", type=int, default=5, help="knowledge items to retrieve")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.add_argument("--config", help="TOML config (default: the embedded one)")
    parser.add_argument(
        "--embedded", action="store_true", help="never use a running daemon; start one here"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    payload: dict[str, Any] = {"problem": args.question, "k": args.k, "seed": args.seed}
    daemon = None if args.embedded else _running_daemon(config)
    try:
        if daemon is not None:
            decision = _via_daemon(daemon, payload, args.timeout)
        else:
            decision = _embedded(config, payload, args.timeout)
    except _Failed as exc:
        print(f"callboard solve: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(decision, indent=2))
    else:
        print(render_decision(decision))
    return 0


class _Failed(Exception):
    pass


def _running_daemon(config: Config) -> dict[str, Any] | None:
    from callboard._thespian import pid_alive

    info_file = Path(config.daemon.state_dir).expanduser() / "daemon.json"
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and pid_alive(int(info.get("pid", 0))) else None


def _via_daemon(info: dict[str, Any], payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    from callboard.admin._client import AdminClient, AdminClientError, read_token

    token_file = info.get("token_file")
    try:
        token = read_token(Path(token_file)) if token_file else None
        reply = AdminClient(info["url"], token).ask(ENGINE, SOLVE, payload, timeout=timeout)
    except (AdminClientError, OSError) as exc:
        raise _Failed(f"daemon at {info.get('url')}: {exc}") from exc
    return dict(reply["payload"])


def _embedded(config: Config, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    from callboard import CallboardError, RemoteError, System
    from callboard.pipeline import Solve

    quiet = config.system.model_copy(update={"log_level": "warning"})
    try:
        with System.start(config.model_copy(update={"system": quiet})) as system:
            decision = system.ask(ENGINE, Solve(**payload), timeout=timeout)
    except RemoteError as exc:
        raise _Failed(f"[{exc.code}] {exc.message}") from exc
    except CallboardError as exc:
        raise _Failed(str(exc)) from exc
    return dict(decision.model_dump(mode="json"))


def render_decision(d: dict[str, Any]) -> str:
    """A decision and its path as a tree for people."""
    path = d.get("path") or {}
    lines = [
        f"Decision {d['id']}  confidence {d['confidence']:.2f}"
        + ("  (DEGRADED: best effort, below threshold)" if d.get("degraded") else ""),
        f"Problem: {d['problem']}",
        "Recommendation:",
        f"  {d['recommendation']}",
        "Path",
    ]
    knowledge = path.get("knowledge") or []
    lines.append(f"├── knowledge used ({len(knowledge)} items)")
    for i, scored in enumerate(knowledge):
        item = scored["item"]
        branch = "└──" if i == len(knowledge) - 1 else "├──"
        lines.append(
            f"│   {branch} {item['id']}  [{item['kind']}]  {item['title']}"
            f"  (bm25 {scored['score']:.2f})"
        )
    refs = path.get("references") or []
    lines.append(f"├── references resolved: {', '.join(refs) if refs else 'none'}")
    stats = path.get("stats") or {}
    cands = path.get("candidates") or []
    lines.append(
        f"├── candidates: {stats.get('generated', len(cands))} generated, "
        f"{stats.get('accepted', 0)} accepted, rejection rate "
        f"{stats.get('rejection_rate', 0):.2f}, {stats.get('rounds', 0)} round(s)"
    )
    for i, rec in enumerate(cands):
        branch = "└──" if i == len(cands) - 1 else "├──"
        mark = "accepted" if rec["accepted"] else f"rejected: {rec.get('reason', '')}"
        text = rec["candidate"]["text"]
        text = text if len(text) <= 90 else text[:87] + "..."
        lines.append(f"│   {branch} r{rec['round']} {rec['score']:.2f} {mark}")
        lines.append(f"│   {'    ' if branch == '└──' else '│   '}  {text}")
    timings = path.get("timings_ms") or {}
    hops = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    lines.append(f"└── time per hop (ms): {hops or '-'}")
    return "\n".join(lines)
