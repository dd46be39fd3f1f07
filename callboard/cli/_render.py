"""Text for people: aligned key/value lines, tables and supervision trees (pure functions).

Every function returns the text without a trailing newline; columns are separated by two
spaces and no line ends in spaces.

>>> print(table(["ID", "PID"], [["echo", "1234"], ["a-longer-id", "-"]], right={1}))
ID            PID
echo         1234
a-longer-id     -
>>> print(key_values([("name", "demo"), ("uptime", "3m05s")]))
name    demo
uptime  3m05s
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "children_table",
    "fmt_duration",
    "fmt_value",
    "key_values",
    "messages_table",
    "status_lines",
    "table",
    "tree",
]

_GAP = "  "
_TEE, _ELBOW, _PIPE, _BLANK = "├── ", "└── ", "│   ", "    "

STATUS_KEYS = (
    "name",
    "transport",
    "admin_port",
    "uptime_s",
    "host_pid",
    "root_pid",
    "failed",
    "workers",
    "supervisors",
    "running",
    "restarting",
    "stopped",
    "version",
    "api_url",
)
"""``GET /v1/status`` fields in display order; unknown fields follow in reply order."""


def fmt_value(value: Any) -> str:
    """A JSON value as a table cell: ``None`` -> ``-``, booleans -> ``yes``/``no``,
    strings as they are, numbers as written, anything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def fmt_duration(seconds: Any) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``4d03h``; ``-`` for ``None`` or a non-number."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _aligned(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> Iterator[str]:
    """Pad every column to its widest cell (``right``: right-aligned columns)."""
    ncols = max((len(r) for r in rows), default=0)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(ncols)]
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        yield _GAP.join(cells).rstrip()


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    """One ``key  value`` line per pair, the values in one column."""
    return "\n".join(_aligned([[k, v] for k, v in pairs]))


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> str:
    """A header line and one line per row, columns aligned (``right``: column indexes to
    right-align, e.g. numbers)."""
    return "\n".join(_aligned([list(headers), *rows], right))


def status_lines(status: Mapping[str, Any]) -> str:
    """``GET /v1/status`` as key/value lines; ``uptime_s`` shown as ``uptime 3m05s``."""
    keys = [k for k in STATUS_KEYS if k in status]
    keys += [k for k in status if k not in STATUS_KEYS]
    pairs = [
        ("uptime", fmt_duration(status[k])) if k == "uptime_s" else (k, fmt_value(status[k]))
        for k in keys
    ]
    return key_values(pairs)


def _kind(node: Mapping[str, Any]) -> str:
    kind = fmt_value(node.get("type", "?"))
    strategy = node.get("strategy")
    return f"{kind}({strategy})" if strategy else kind


def _notes(node: Mapping[str, Any]) -> str:
    reason = node.get("last_exit_reason")
    notes = [f"last exit: {fmt_value(reason)}"] if reason not in (None, "") else []
    if node.get("unresponsive"):  # a supervisor that did not answer: children unknown
        notes.append("(unresponsive)")
    return _GAP.join(notes)


def tree(root: Mapping[str, Any]) -> str:
    """A ``GET /v1/tree`` node and its descendants, drawn with box-drawing characters.

    One line per node: id, type (``supervisor(<strategy>)`` for supervisors), status,
    ``pid N`` (``pid -`` without a process), ``restarts N`` and, if there is one,
    ``last exit: <reason>``, then ``(unresponsive)`` for a supervisor whose children could
    not be listed; the columns are aligned across the whole tree::

        root        supervisor(one_for_one)  running     pid 100  restarts 0
        ├── echo    worker                   running     pid 101  restarts 0
        └── pool    supervisor(one_for_all)  restarting  pid -    restarts 1  last exit: killed
            └── w1  worker                   stopped     pid -    restarts 0
    """
    rows: list[list[str]] = []

    def walk(node: Mapping[str, Any], lead: str, branch: str) -> None:
        rows.append(
            [
                f"{lead}{branch}{fmt_value(node.get('id', '?'))}",
                _kind(node),
                fmt_value(node.get("status", "?")),
                f"pid {fmt_value(node.get('pid'))}",
                f"restarts {fmt_value(node.get('restarts', 0))}",
                _notes(node),
            ]
        )
        kids = [c for c in node.get("children") or [] if isinstance(c, Mapping)]
        below = lead + ("" if not branch else _BLANK if branch == _ELBOW else _PIPE)
        for i, child in enumerate(kids):
            walk(child, below, _ELBOW if i == len(kids) - 1 else _TEE)

    walk(root, "", "")
    return "\n".join(_aligned(rows))


CHILDREN_HEADERS = (
    "ID",
    "TYPE",
    "STATUS",
    "PID",
    "RESTARTS",
    "RESTART",
    "SIGNIFICANT",
    "UPTIME",
    "LAST EXIT",
)


def children_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``GET /v1/supervisors/{sup}/children`` as a table (PID and RESTARTS right-aligned;
    ``-`` for no value)."""
    cells = [
        [
            fmt_value(r.get("id")),
            fmt_value(r.get("type")),
            fmt_value(r.get("status")),
            fmt_value(r.get("pid")),
            fmt_value(r.get("restarts")),
            fmt_value(r.get("restart")),
            fmt_value(r.get("significant")),
            fmt_duration(r.get("uptime_s")),
            fmt_value(r.get("last_exit_reason")),
        ]
        for r in rows
    ]
    return table(CHILDREN_HEADERS, cells, right={3, 4})


def messages_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``GET /v1/messages`` as NAME, VERSION and FIELDS (the schema's property names)."""
    cells = []
    for r in rows:
        schema = r.get("schema")
        props = schema.get("properties") if isinstance(schema, Mapping) else None
        fields = ", ".join(str(p) for p in props) if isinstance(props, Mapping) else ""
        cells.append([fmt_value(r.get("name")), fmt_value(r.get("version")), fields or "-"])
    return table(["NAME", "VERSION", "FIELDS"], cells, right={1})
