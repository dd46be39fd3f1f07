"""``callboard admin ...``: inspect and control a running daemon through its admin API.

The daemon is found through ``--url``/``--token-file``, the ``CALLBOARD_ADMIN_URL`` /
``CALLBOARD_ADMIN_TOKEN_FILE`` environment variables, or its state dir (``daemon.json``);
see :func:`callboard.admin._client.discover` and ``docs/admin-client.md``.

Output is for people by default (aligned key/value lines, tables, a drawn tree) and one
JSON document with ``--json``. Exit codes: 0 ok, 1 an error reply from the daemon,
2 usage error, 3 the daemon could not be reached or refused the token (401/403).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from callboard.cli import _render

if TYPE_CHECKING:
    from callboard.admin._client import AdminClient, AuthError, Endpoint
    from callboard.cli import Subparsers

    Output: TypeAlias = tuple[Any, str]
    """What a subcommand handler returns: the JSON document for ``--json`` and the text
    for people. A ``None`` document means the text is printed either way (``metrics``)."""
    Handler: TypeAlias = Callable[[AdminClient, argparse.Namespace], Output]

__all__ = ["EXIT_API_ERROR", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "register", "run"]

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEFAULT_TIMEOUT = 30.0
"""Default HTTP timeout (seconds) for a call."""
SLOW_TIMEOUT = 75.0
"""Default HTTP timeout for calls during which the daemon starts or stops processes (the
daemon itself gives up on a child start after 60 s)."""

_PROG = "callboard admin"


# The admin API action each subcommand performs (for the 403 hint: which role it needs).
_ACTIONS = {
    "status": "status",
    "tree": "tree",
    "children": "which_children",
    "count": "count_children",
    "spec": "get_childspec",
    "start-child": "start_child",
    "terminate": "terminate_child",
    "restart": "restart_child",
    "delete": "delete_child",
    "ask": "ask",
    "tell": "tell",
    "kill": "kill",
    "metrics": "metrics",
    "breakers": "breakers",
    "breakers --open": "set_breaker",
    "breakers --close": "set_breaker",
    "queues": "queue_stats",
    "dlq list": "dead_letters",
    "dlq replay": "replay_dead_letters",
    "dlq purge": "purge_dead_letters",
    "enqueue": "enqueue",
    "bus": "bus_stats",
    "publish": "publish",
    "stop": "stop",
}

_EPILOG = """\
finding the daemon:
  --url / --token-file, else $CALLBOARD_ADMIN_URL / $CALLBOARD_ADMIN_TOKEN_FILE, else the
  daemon's state dir (--state-dir, else [daemon] state_dir of --config, else
  $CALLBOARD_DAEMON__STATE_DIR, else the default): its daemon.json gives the URL and the
  token file (else <state dir>/admin.token).

exit codes:
  0  ok
  1  the daemon answered with an error (code and message on stderr)
  2  usage error (including a JSON argument that does not parse)
  3  cannot connect, no URL or token found, or the token was refused (401/403)
"""


# --- argument types ----------------------------------------------------------------------


def _url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT or https://..., not {text!r}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _int_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (``None``: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{what} must be an integer {bounds}, not {text!r}")
        return value

    return parse


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object ({{...}}), not {text!r}")
    return value


# --- parser ------------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, nested: bool, timeout: bool = True) -> None:
    """The connection and output options. On subcommands (``nested``) they default to
    ``SUPPRESS`` so they override the ones given before the subcommand only when present:
    ``callboard admin --json status`` and ``callboard admin status --json`` both work."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if nested else value

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--url", type=_url, default=default(None), help="admin API URL, e.g. http://127.0.0.1:8765"
    )
    group.add_argument(
        "--token-file", metavar="FILE", default=default(None), help="file holding the token"
    )
    group.add_argument(
        "--state-dir", metavar="DIR", default=default(None), help="the daemon's state dir"
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        default=default(None),
        help="the daemon's config file (for its [daemon] state_dir)",
    )
    group.add_argument(
        "--cacert",
        metavar="FILE",
        default=default(None),
        help="https: verify the daemon's certificate against this PEM file",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        default=default(False),
        help="https: do not verify the daemon's certificate",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the reply as one JSON document (for scripts)",
    )
    if timeout:
        group.add_argument(
            "--timeout",
            dest="http_timeout",
            metavar="S",
            type=_seconds,
            default=default(None),
            help=f"seconds to wait for the daemon's reply (default {DEFAULT_TIMEOUT:g}; "
            f"{SLOW_TIMEOUT:g} for start-child/terminate/restart/delete)",
        )


def register(subparsers: Subparsers) -> None:
    """Add the ``admin`` command and its subcommands."""
    admin = subparsers.add_parser(
        "admin",
        help="inspect and control a running daemon through its admin API",
        description="Inspect and control a running callboard daemon through its admin API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(admin, nested=False)
    admin.set_defaults(func=run)
    actions = admin.add_subparsers(dest="admin_command", metavar="SUBCOMMAND", required=True)

    def sub(
        name: str, text: str, handler: Handler, timeout: bool = True, group: Subparsers = actions
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=text, description=text[:1].upper() + text[1:])
        _add_common(parser, nested=True, timeout=timeout)
        parser.set_defaults(admin_handler=handler, admin_parser=parser)
        return parser

    sub("status", "the daemon's identity, uptime and actor counts", _status)
    sub("tree", "the whole supervision tree", _tree)
    p = sub("children", "the children of a supervisor, one row each", _children)
    p.add_argument("sup", metavar="SUP", nargs="?", default="root", help="default: root")
    p = sub("count", "how many children a supervisor has (specs, active, ...)", _count)
    p.add_argument("sup", metavar="SUP", nargs="?", default="root", help="default: root")
    p = sub("spec", "the child spec of a child", _spec)
    p.add_argument("sup", metavar="SUP")
    p.add_argument("id", metavar="ID")

    p = sub("start-child", "start a new child under a supervisor", _start_child)
    p.add_argument("sup", metavar="SUP")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--spec", type=_json_object, metavar="JSON", help="a full child spec")
    how.add_argument(
        "--args", type=_json_object, metavar="JSON", help="args for a simple_one_for_one child"
    )
    p.add_argument("--id", dest="child_id", metavar="ID", help="with --args: the child's id")

    for name, text in (
        ("terminate", "stop a child (its spec stays; restart brings it back)"),
        ("restart", "restart a terminated child"),
        ("delete", "remove a terminated child's spec"),
    ):
        p = sub(name, text, _on_child)
        p.add_argument("id", metavar="ID")
        p.add_argument(
            "--sup",
            metavar="SUP",
            help="its supervisor (default: root, else looked up in the tree)",
        )

    p = sub("ask", "send a message to an actor and print its reply", _ask, timeout=False)
    p.add_argument("target", metavar="TARGET", help="actor name")
    p.add_argument("type", metavar="TYPE", help="message type name")
    p.add_argument("payload", metavar="JSON", type=_json_object, help="message fields")
    p.add_argument(
        "--timeout",
        dest="ask_timeout",
        metavar="S",
        type=_seconds,
        default=5.0,
        help="seconds the daemon waits for the actor's reply (default 5); the HTTP call "
        "waits 10 s longer unless --timeout is given before the subcommand",
    )
    p = sub("tell", "send a message to an actor without waiting for a reply", _tell)
    p.add_argument("target", metavar="TARGET", help="actor name")
    p.add_argument("type", metavar="TYPE", help="message type name")
    p.add_argument("payload", metavar="JSON", type=_json_object, help="message fields")
    p = sub("kill", "SIGKILL an actor's process (a chaos drill)", _kill)
    p.add_argument("id", metavar="ID", help="actor or supervisor name")
    sub("metrics", "the Prometheus metrics, as text", _metrics)
    sub("messages", "the message types ask and tell can send", _messages)
    p = sub("breakers", "the circuit breakers, one row per route (or force one)", _breakers)
    force = p.add_mutually_exclusive_group()
    force.add_argument(
        "--open",
        dest="open_route",
        metavar="ROUTE",
        help="force open: calls on ROUTE (caller->target, or target for every caller) fail "
        "fast with circuit_open until it is closed",
    )
    force.add_argument(
        "--close",
        dest="close_route",
        metavar="ROUTE",
        help="force closed: ROUTE's breaker starts a fresh window (and can trip again)",
    )
    p = sub("queues", "a queue's depth, consumers and totals", _queues)
    p.add_argument("name", metavar="NAME", help="queue name (as declared under [queues])")
    dlq = actions.add_parser(
        "dlq",
        help="a queue's dead letters: list, replay or purge them",
        description="A queue's dead letters: list, replay or purge them.",
    )
    dlq_actions = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = sub("list", "a queue's dead letters, oldest first", _dlq_list, group=dlq_actions)
    p.add_argument("name", metavar="NAME", help="queue name")
    p.add_argument(
        "--limit",
        metavar="N",
        type=_int_in(1, 10_000, "--limit"),
        default=100,
        help="at most N dead letters (default 100, at most 10000)",
    )
    p.add_argument(
        "--offset",
        metavar="N",
        type=_int_in(0, None, "--offset"),
        default=0,
        help="skip the N oldest (default 0)",
    )
    for name, text, handler in (
        ("replay", "put dead letters back on their queue (all, or those --id names)", _dlq_replay),
        ("purge", "delete dead letters for good (those --id names, or all with --yes)", _dlq_purge),
    ):
        p = sub(name, text, handler, group=dlq_actions)
        p.add_argument("name", metavar="NAME", help="queue name")
        p.add_argument(
            "--id",
            dest="ids",
            metavar="ID",
            action="append",
            help="a dead letter's id (repeat for several)",
        )
    p.add_argument("--yes", action="store_true", help="without --id: yes, purge every dead letter")
    p = sub("enqueue", "put a message on a queue", _enqueue)
    p.add_argument("name", metavar="NAME", help="queue name")
    p.add_argument("type", metavar="TYPE", help="message type name")
    p.add_argument("data", metavar="JSON", type=_json_object, help="message fields")
    p.add_argument(
        "--priority",
        metavar="P",
        type=_int_in(0, 9, "--priority"),
        default=0,
        help="0 (default) to 9; higher priorities are delivered first",
    )
    p.add_argument(
        "--id",
        dest="msg_id",
        metavar="ID",
        help="the message's id, its idempotency key (default: a fresh one); the same id "
        "again within the queue's dedupe_window is dropped as a duplicate",
    )
    p = sub("publish", "publish an event on the bus", _publish)
    p.add_argument("topic", metavar="TOPIC", help="dotted topic, e.g. orders.created")
    p.add_argument("type", metavar="TYPE", help="message type name")
    p.add_argument("data", metavar="JSON", type=_json_object, help="message fields")
    sub("bus", "the event bus: published count and subscriptions", _bus)
    sub("stop", "stop the daemon", _stop)


# --- handlers ----------------------------------------------------------------------------


def _status(client: AdminClient, args: argparse.Namespace) -> Output:
    status = client.status()
    return status, _render.status_lines(status)


def _tree(client: AdminClient, args: argparse.Namespace) -> Output:
    tree = client.tree()
    return tree, _render.tree(tree)


def _children(client: AdminClient, args: argparse.Namespace) -> Output:
    rows = [r for r in client.children(args.sup) if isinstance(r, dict)]
    if not rows:
        return rows, f"no children under {args.sup}"
    return rows, _render.children_table(rows)


def _count(client: AdminClient, args: argparse.Namespace) -> Output:
    counts = client.count(args.sup)
    keys = ["specs", "active", "supervisors", "workers"]
    keys = [k for k in keys if k in counts] + [k for k in counts if k not in keys]
    return counts, _render.key_values([(k, _render.fmt_value(counts[k])) for k in keys])


def _spec(client: AdminClient, args: argparse.Namespace) -> Output:
    spec = client.spec(args.sup, args.id)
    return spec, _dumps(spec)


def _start_child(client: AdminClient, args: argparse.Namespace) -> Output:
    reply = client.start_child(
        args.sup,
        args.spec,
        args=args.args,
        child_id=args.child_id,
        timeout=args.http_timeout or SLOW_TIMEOUT,
    )
    return reply, f"started {_render.fmt_value(reply.get('id'))} under {args.sup}"


def _on_child(client: AdminClient, args: argparse.Namespace) -> Output:
    """terminate/restart/delete: under ``--sup``, else under root, else under the
    supervisor the tree shows the child under."""
    from callboard.admin._client import AdminClientError, ApiError

    command = args.admin_command
    op = {"terminate": client.terminate, "restart": client.restart, "delete": client.delete}[
        command
    ]
    timeout = args.http_timeout or SLOW_TIMEOUT
    sup = args.sup or "root"
    try:
        reply = op(sup, args.id, timeout)
    except ApiError as exc:
        if args.sup is not None or exc.status != 404:
            raise
        try:
            found = client.find_supervisor(args.id)
        except AdminClientError:
            found = None
        if found is None or found == sup:
            raise exc from None
        sup = found
        reply = op(sup, args.id, timeout)
    done = {"terminate": "terminated", "restart": "restarted", "delete": "deleted"}[command]
    text = f"{done} {args.id} {'from' if command == 'delete' else 'under'} {sup}"
    if reply.get("pid") is not None:
        text += f" (pid {_render.fmt_value(reply['pid'])})"
    return reply, text


def _ask(client: AdminClient, args: argparse.Namespace) -> Output:
    reply = client.ask(
        args.target, args.type, args.payload, args.ask_timeout, http_timeout=args.http_timeout
    )
    if reply.get("type") is None:
        return reply, "no reply value (the handler returned nothing)"
    return reply, f"{_render.fmt_value(reply['type'])}\n{_dumps(reply.get('payload'))}"


def _tell(client: AdminClient, args: argparse.Namespace) -> Output:
    reply = client.tell(args.target, args.type, args.payload)
    return reply, f"sent {args.type} to {args.target}"


def _kill(client: AdminClient, args: argparse.Namespace) -> Output:
    reply = client.kill(args.id)
    return reply, f"killed {args.id} (pid {_render.fmt_value(reply.get('pid'))})"


def _metrics(client: AdminClient, args: argparse.Namespace) -> Output:
    return None, client.metrics().rstrip("\n")


def _messages(client: AdminClient, args: argparse.Namespace) -> Output:
    rows = [r for r in client.messages() if isinstance(r, dict)]
    if not rows:
        return rows, "no message types"
    return rows, _render.messages_table(rows)


def _breakers(client: AdminClient, args: argparse.Namespace) -> Output:
    route, state = args.open_route, "open"
    if route is None:
        route, state = args.close_route, "closed"
    if route is not None:
        changed = [r for r in client.set_breaker(route, state) if isinstance(r, dict)]
        text = "\n".join(f"forced {_render.fmt_value(r.get('route'))} {state}" for r in changed)
        return changed, text or f"forced {route} {state}"
    rows = [r for r in client.breakers() if isinstance(r, dict)]
    if not rows:
        return rows, "no circuit breakers (a route's breaker appears once the route is used)"
    return rows, _breakers_table(rows)


_BREAKERS_HEADERS = (
    "ROUTE",
    "STATE",
    "FAILURE RATE",
    "SLOW RATE",
    "WINDOW CALLS",
    "NEXT TRIAL",
    "FORCED",
)


def _breakers_table(rows: list[dict[str, Any]]) -> str:
    """``GET /v1/breakers`` as a table: rates in percent, the next trial in seconds (``-``
    when closed or forced open, ``now`` when half open)."""
    cells = [
        [
            _render.fmt_value(r.get("route")),
            _render.fmt_value(r.get("state")),
            _percent(r.get("failure_rate")),
            _percent(r.get("slow_call_rate")),
            _render.fmt_value(r.get("calls_in_window")),
            _next_trial(r.get("state"), r.get("next_trial_s")),
            _render.fmt_value(r.get("forced")),
        ]
        for r in rows
    ]
    return _render.table(_BREAKERS_HEADERS, cells, right={2, 3, 4, 5})


def _percent(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _render.fmt_value(value)
    return f"{value:.0%}"


def _next_trial(state: Any, seconds: Any) -> str:
    if state == "half_open":
        return "now"
    if state != "open" or isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else _render.fmt_duration(seconds)


def _queues(client: AdminClient, args: argparse.Namespace) -> Output:
    stats = client.queue_stats(args.name)
    return stats, _queue_lines(stats)


_QUEUE_KEYS = ("queue", "durable", "ready", "in_flight", "dead_letters", "depth_by_priority",
               "consumers")  # fmt: skip
"""``GET /v1/queues/{name}`` fields shown first; the others follow in reply order."""


def _queue_lines(stats: dict[str, Any]) -> str:
    """Queue stats as key/value lines: ``depth_by_priority`` as ``p9=2, p3=1`` (highest
    first, empty priorities left out), consumers as ``w1 (prefetch 10, in_flight 2)``."""
    keys = [k for k in _QUEUE_KEYS if k in stats] + [k for k in stats if k not in _QUEUE_KEYS]
    pairs = []
    for key in keys:
        value = stats[key]
        if key == "depth_by_priority" and isinstance(value, dict):
            depths = [(str(p), n) for p, n in value.items() if n]
            depths.sort(key=lambda pn: int(pn[0]) if pn[0].isdigit() else -1, reverse=True)
            text = ", ".join(f"p{p}={_render.fmt_value(n)}" for p, n in depths) or "-"
        else:
            text = _cell(value)
        pairs.append((key, text))
    return _render.key_values(pairs)


def _cell(value: Any) -> str:
    """A stats value in one cell: objects as ``k=v, ...`` (nested: ``k (k2 v2, ...)``),
    an empty one as ``-``."""
    if not isinstance(value, dict):
        return _render.fmt_value(value)
    parts = []
    for key, inner in value.items():
        if isinstance(inner, dict):
            fields = ", ".join(f"{k} {_render.fmt_value(v)}" for k, v in inner.items())
            parts.append(f"{key} ({fields})")
        else:
            parts.append(f"{key}={_render.fmt_value(inner)}")
    return ", ".join(parts) or "-"


_DLQ_HEADERS = ("ID", "TYPE", "REASON", "DELIVERIES", "DEAD AT", "DETAIL")
_DETAIL_WIDTH = 60


def _dlq_list(client: AdminClient, args: argparse.Namespace) -> Output:
    rows = [r for r in client.dead_letters(args.name, args.limit, args.offset)
            if isinstance(r, dict)]  # fmt: skip
    if not rows:
        where = f" from offset {args.offset}" if args.offset else ""
        return rows, f"no dead letters in {args.name}{where}"
    cells = [
        [
            _render.fmt_value(r.get("id")),
            _render.fmt_value(r.get("type")),
            _render.fmt_value(r.get("reason")),
            _render.fmt_value(r.get("deliveries")),
            _utc(r.get("dead_at")),
            _shorten(r.get("detail")),
        ]
        for r in rows
    ]
    text = _render.table(_DLQ_HEADERS, cells, right={3})
    if len(rows) >= args.limit:
        text += f"\n(the first {args.limit}; more with --offset {args.offset + args.limit})"
    return rows, text


def _utc(epoch: Any) -> str:
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return _render.fmt_value(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _shorten(detail: Any) -> str:
    text = " ".join(_render.fmt_value(detail).split()) if detail not in (None, "") else "-"
    return text if len(text) <= _DETAIL_WIDTH else text[: _DETAIL_WIDTH - 3] + "..."


def _dlq_replay(client: AdminClient, args: argparse.Namespace) -> Output:
    count = client.replay_dead_letters(args.name, args.ids)
    return {"replayed": count}, _dead_letters_done("replayed", count, args)


def _dlq_purge(client: AdminClient, args: argparse.Namespace) -> Output:
    count = client.purge_dead_letters(args.name, args.ids)
    return {"purged": count}, _dead_letters_done("purged", count, args)


def _dead_letters_done(done: str, count: int, args: argparse.Namespace) -> str:
    text = f"{done} {count} dead letter{'' if count == 1 else 's'} of {args.name}"
    asked = len(set(args.ids or ()))
    if asked > count:
        text += f" ({asked - count} of the {asked} ids given are not dead letters of {args.name})"
    return text


def _enqueue(client: AdminClient, args: argparse.Namespace) -> Output:
    msg_id = client.enqueue(args.name, args.type, args.data, args.priority, args.msg_id)
    return {"id": msg_id}, f"enqueued {args.type} on {args.name} (id {msg_id})"


def _publish(client: AdminClient, args: argparse.Namespace) -> Output:
    count = client.publish(args.topic, args.type, args.data)
    reached = f"{count} subscription{'' if count == 1 else 's'}"
    return {"subscribers": count}, f"published {args.type} on {args.topic} to {reached}"


_BUS_HEADERS = ("SUBSCRIPTION", "PATTERN", "SUBSCRIBER", "DEPTH", "IN FLIGHT", "DELIVERED",
                "DROPPED", "REJECTED", "DEAD LETTERED", "LOST")  # fmt: skip
_BUS_FIELDS = ("depth", "in_flight", "delivered", "dropped", "rejected", "dead_lettered", "lost")


def _bus(client: AdminClient, args: argparse.Namespace) -> Output:
    stats = client.bus_stats()
    subs = stats.get("subscriptions")
    subs = subs if isinstance(subs, dict) else {}
    pairs = [(k, _cell(v)) for k, v in stats.items() if k != "subscriptions"]
    lines = _render.key_values(pairs)
    if not subs:
        return stats, f"{lines}\n\nno subscriptions"
    cells = [
        [
            str(sub_id),
            _render.fmt_value(s.get("pattern")),
            "host" if s.get("subscriber") is None else _render.fmt_value(s.get("subscriber")),
            *(_render.fmt_value(s.get(f)) for f in _BUS_FIELDS),
        ]
        for sub_id, s in subs.items()
        if isinstance(s, dict)
    ]
    table = _render.table(_BUS_HEADERS, cells, right=set(range(3, len(_BUS_HEADERS))))
    return stats, f"{lines}\n\n{table}"


def _stop(client: AdminClient, args: argparse.Namespace) -> Output:
    return client.stop(), "stop requested: the daemon is shutting down"


# --- running -----------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _fail(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Find the daemon, make the call, print the result; return the exit code."""
    # Imported here: the rest of the command line must not depend on the admin package.
    from callboard.admin._client import (
        AdminClient,
        ApiError,
        AuthError,
        DiscoveryError,
        ProtocolError,
        Unreachable,
        discover,
        read_token,
    )

    refusal = _usage_error(args)
    if refusal is not None:
        parser: argparse.ArgumentParser = args.admin_parser
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.admin_handler
    endpoint: Endpoint | None = None
    try:
        endpoint = discover(
            url=args.url, token_file=args.token_file, state_dir=args.state_dir, config=args.config
        )
        token = read_token(endpoint.token_file, endpoint.token_source)
        client = AdminClient(
            endpoint.url,
            token,
            timeout=args.http_timeout or DEFAULT_TIMEOUT,
            cacert=args.cacert,
            insecure=args.insecure,
        )
        doc, text = handler(client, args)
    except DiscoveryError as exc:
        _fail(str(exc))
        return EXIT_UNREACHABLE
    except Unreachable as exc:
        assert endpoint is not None
        _fail(_unreachable_message(str(exc), endpoint))
        return EXIT_UNREACHABLE
    except AuthError as exc:
        assert endpoint is not None
        _fail(_auth_message(exc, endpoint, _command(args)))
        return EXIT_UNREACHABLE
    except ApiError as exc:
        _fail(f"{exc.code}: {exc.message} (HTTP {exc.status})")
        if exc.details not in (None, {}, []):
            print(f"  details: {json.dumps(exc.details, sort_keys=True)}", file=sys.stderr)
        return EXIT_API_ERROR
    except ProtocolError as exc:
        _fail(f"unexpected reply from the daemon: {exc}")
        return EXIT_API_ERROR
    if args.json and doc is not None:
        print(_dumps(doc))
    else:
        print(text)
    return EXIT_OK


def _usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with arguments argparse accepted, checked before any request."""
    command = args.admin_command
    if command == "start-child" and args.child_id is not None and args.args is None:
        return "--id goes with --args (with --spec, put the id in the spec)"
    if command == "dlq" and args.dlq_command == "purge" and not args.ids and not args.yes:
        return (
            f"purging every dead letter of {args.name} cannot be undone: pass --yes to "
            "confirm (or --id ID to purge some)"
        )
    return None


def _command(args: argparse.Namespace) -> str:
    """The subcommand as the 403 hint names it (``breakers --open``: another action)."""
    command: str = args.admin_command
    if command == "breakers" and args.open_route is not None:
        return "breakers --open"
    if command == "breakers" and args.close_route is not None:
        return "breakers --close"
    if command == "dlq":
        return f"dlq {args.dlq_command}"
    return command


def _unreachable_message(reason: str, endpoint: Endpoint) -> str:
    text = f"{reason} (URL from {endpoint.url_source})"
    if endpoint.pid is not None and not _alive(endpoint.pid):
        return (
            f"{text}; the daemon's pid {endpoint.pid} is not running, so the daemon.json "
            "is stale: start the daemon (callboard run) or pass --url"
        )
    if "verification" in reason or "no reply" in reason:
        return text
    return f"{text}; is the daemon running? Check --url / --state-dir"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _auth_message(exc: AuthError, endpoint: Endpoint, command: str) -> str:
    said = f": {exc.message}" if exc.message else ""
    where = f"{endpoint.token_file} (from {endpoint.token_source})"
    if exc.status == 401:
        return (
            f"unauthorized (HTTP 401){said}: the daemon at {endpoint.url} did not accept the "
            f"token in {where}; pass --token-file with a valid token"
        )
    from callboard.security import ACTIONS

    role = ACTIONS.get(_ACTIONS.get(command, ""))
    need = f"'{command}' needs the {role} role or higher; " if role else ""
    return (
        f"forbidden (HTTP 403){said}: the token in {where} may not run '{command}'; "
        f"{need}pass --token-file with a token whose role allows it"
    )
