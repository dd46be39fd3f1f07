"""``callboard admin``: the admin API client against a fake daemon that follows the contract.

The fake is a threaded ``http.server`` on 127.0.0.1 (port 0) that checks the bearer token,
records every request, and answers like the admin API (including its error shape).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import platformdirs
import pytest

import callboard.config
from callboard.admin._client import AdminClient, ProtocolError, find_parent
from callboard.cli import _render, main
from callboard.config import DaemonSettings

TOKEN = "s3cret-token"

STATUS: dict[str, Any] = {
    "name": "callboard-19001",
    "transport": "tcp",
    "admin_port": 19001,
    "uptime_s": 754.2,
    "host_pid": 4242,
    "root_pid": 4243,
    "failed": None,
    "workers": 4,
    "supervisors": 2,
    "running": 4,
    "restarting": 1,
    "stopped": 1,
    "version": "0.1.0",
    "api_url": "http://127.0.0.1:8765",
}


def _node(
    id: str, type: str, status: str, pid: int | None, restarts: int, last: str | None, **kw: Any
) -> dict[str, Any]:
    node = {
        "id": id,
        "type": type,
        "pid": pid,
        "status": status,
        "restarts": restarts,
        "last_exit_reason": last,
        "uptime_s": 65.0 if pid else None,
        "restart": kw.pop("restart", "permanent"),
        "significant": kw.pop("significant", False),
    }
    node.update(kw)
    return node


TREE: dict[str, Any] = _node(
    "root", "supervisor", "running", 100, 0, None, strategy="one_for_one",
    children=[
        _node("echo", "worker", "running", 101, 0, None),
        _node(
            "pool", "supervisor", "running", 102, 1, "shutdown", strategy="one_for_all",
            children=[
                _node("w1", "worker", "running", 103, 0, None),
                _node(
                    "sub", "supervisor", "running", 104, 3, "killed", strategy="rest_for_one",
                    restart="transient", significant=True,
                    children=[_node("leaf", "worker", "restarting", None, 2, "crashed")],
                ),
            ],
        ),
        _node("cache", "worker", "stopped", None, 0, "normal"),
    ],
)  # fmt: skip

TREE_TEXT = """\
root              supervisor(one_for_one)   running     pid 100  restarts 0
├── echo          worker                    running     pid 101  restarts 0
├── pool          supervisor(one_for_all)   running     pid 102  restarts 1  last exit: shutdown
│   ├── w1        worker                    running     pid 103  restarts 0
│   └── sub       supervisor(rest_for_one)  running     pid 104  restarts 3  last exit: killed
│       └── leaf  worker                    restarting  pid -    restarts 2  last exit: crashed
└── cache         worker                    stopped     pid -    restarts 0  last exit: normal
"""

POOL_CHILDREN_TEXT = """\
ID   TYPE        STATUS   PID  RESTARTS  RESTART    SIGNIFICANT  UPTIME  LAST EXIT
w1   worker      running  103         0  permanent  no           1m05s   -
sub  supervisor  running  104         3  transient  yes          1m05s   killed
"""

METRICS = (
    "# HELP callboard_messages_total Messages handled.\n"
    "# TYPE callboard_messages_total counter\n"
    'callboard_messages_total{actor="echo"} 3.0\n'
)

MESSAGES = [
    {
        "name": "callboard.examples.Ping",
        "version": 1,
        "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
    {"name": "bank.Deposit", "version": 2, "schema": {"properties": {"account": {}, "amount": {}}}},
    {"name": "callboard.Nothing", "version": 1, "schema": None},
]


def _breaker(route: str, state: str, forced: bool = False, **kw: Any) -> dict[str, Any]:
    caller, _, target = route.rpartition("->")
    snap: dict[str, Any] = {
        "route": route,
        "state": state,
        "forced": forced,
        "failure_rate": 0.0,
        "slow_call_rate": 0.0,
        "calls_in_window": 0,
        "failures_in_window": 0,
        "slow_calls_in_window": 0,
        "next_trial_s": 0.0,
        "open_wait_s": 1.0,
        "opened_count": 0,
        "trials_in_flight": 0,
        "trial_successes": 0,
        "caller": caller,
        "target": target,
        "counts": {"calls": 0, "ok": 0, "failed": 0, "business_errors": 0, "retries": 0,
                   "degraded": 0, "bulkhead_rejected": 0},
    }  # fmt: skip
    snap.update(kw)
    return snap


BREAKERS = [
    _breaker("echo2->reward_model", "open", failure_rate=0.75, calls_in_window=12,
             next_trial_s=2.46, opened_count=1),
    _breaker("host->echo", "closed", slow_call_rate=0.05, calls_in_window=20),
    _breaker("host->reward_model", "open", True, next_trial_s=None, opened_count=1),
    _breaker("w1->reward_model", "half_open", failure_rate=0.5, calls_in_window=4),
]  # fmt: skip

BREAKERS_TEXT = """\
ROUTE                STATE      FAILURE RATE  SLOW RATE  WINDOW CALLS  NEXT TRIAL  FORCED
echo2->reward_model  open                75%         0%            12        2.5s  no
host->echo           closed               0%         5%            20           -  no
host->reward_model   open                 0%         0%             0           -  yes
w1->reward_model     half_open           50%         0%             4         now  no
"""


QUEUE_STATS: dict[str, Any] = {
    "ready": 3,
    "in_flight": 2,
    "dead_letters": 4,
    "depth_by_priority": {str(p): {9: 1, 0: 2}.get(p, 0) for p in range(10)},
    "in_flight_by_consumer": {"w1": 2},
    "dedupe_ids": 5,
    "enqueued_total": 12,
    "acked_total": 7,
    "queue": "jobs",
    "durable": True,
    "consumers": {"w1": {"prefetch": 10, "in_flight": 2}},
}

QUEUE_TEXT = """\
queue                  jobs
durable                yes
ready                  3
in_flight              2
dead_letters           4
depth_by_priority      p9=1, p0=2
consumers              w1 (prefetch 10, in_flight 2)
in_flight_by_consumer  w1=2
dedupe_ids             5
enqueued_total         12
acked_total            7
"""


def _dead(n: int, reason: str, detail: str) -> dict[str, Any]:
    return {
        "id": f"m{n}", "type": "shop.Order", "version": 1, "data": {"n": n}, "priority": 0,
        "reason": reason, "detail": detail, "deliveries": 5, "dead_at": 1_795_000_000.0 + n,
        "history": [],
    }  # fmt: skip


DEAD_LETTERS = [
    _dead(1, "max_deliveries", "ValueError: boom"),
    _dead(2, "rejected", ""),
    _dead(3, "expired", "a very long detail\nover two lines " + "x" * 80),
]

DLQ_TEXT = """\
ID  TYPE        REASON          DELIVERIES  DEAD AT               DETAIL
m1  shop.Order  max_deliveries           5  2026-11-18T11:06:41Z  ValueError: boom
m2  shop.Order  rejected                 5  2026-11-18T11:06:42Z  -
m3  shop.Order  expired                  5  2026-11-18T11:06:43Z  a very long detail over two lines xxxxxxxxxxxxxxxxxxxxxxx...
"""  # noqa: E501

BUS_STATS: dict[str, Any] = {
    "published": 42,
    "durable": {"audit": "orders.#"},
    "subscriptions": {
        "host:ab-1": {"pattern": "orders.*", "subscriber": None, "connected": True,
                      "depth": 0, "in_flight": 1, "delivered": 40, "dropped": 0, "rejected": 0,
                      "dead_lettered": 0, "lost": 0},
        "s-2": {"pattern": "#", "subscriber": "auditor", "connected": True, "depth": 3,
                "in_flight": 0, "delivered": 39, "dropped": 2, "rejected": 0,
                "dead_lettered": 1, "lost": 0},
    },
}  # fmt: skip

BUS_TEXT = """\
published  42
durable    audit=orders.#

SUBSCRIPTION  PATTERN   SUBSCRIBER  DEPTH  IN FLIGHT  DELIVERED  DROPPED  REJECTED  DEAD LETTERED  LOST
host:ab-1     orders.*  host            0          1         40        0         0              0     0
s-2           #         auditor         3          0         39        2         0              1     0
"""  # noqa: E501


@dataclass
class Recorded:
    method: str
    path: str
    auth: str | None
    body: Any


def _find(node: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    if node["id"] == node_id:
        return node
    for child in node.get("children", []):
        found = _find(child, node_id)
        if found is not None:
            return found
    return None


def _error(status: int, code: str, message: str, **details: Any) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message, "details": details}}


@dataclass
class FakeDaemon:
    """Answers like the admin API; ``fail`` maps ``(method, path)`` to a canned reply and
    ``forbidden`` holds paths the token may not use (403)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    fail: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    delay: float = 0.0

    def answer(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        self.requests.append(Recorded(method, path, auth, body))
        if self.delay:
            time.sleep(self.delay)
        path, _, query = path.partition("?")  # the checks below go by the path alone
        if path == "/healthz":
            return 200, {"ok": True}
        if auth != f"Bearer {TOKEN}":
            return _error(401, "unauthorized", "missing or unknown bearer token")
        if path in self.forbidden:
            return _error(403, "forbidden", "token 'ops' (viewer) may not do this")
        if (method, path) in self.fail:
            return self.fail[(method, path)]
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "queues"] and len(parts) > 2 and parts[2] != "jobs":
            return _error(
                404, "no_such_actor", f"no queue named {parts[2]!r}",
                actor=f"queue.{parts[2]}", queue=parts[2],
            )  # fmt: skip
        match (method, parts):
            case ("GET", ["readyz"]):
                return 200, {"ready": True}
            case ("GET", ["v1", "status"]):
                return 200, STATUS
            case ("GET", ["v1", "tree"]):
                return 200, TREE
            case ("GET", ["v1", "supervisors", sup, "children"]):
                node = _find(TREE, sup)
                if node is None or node["type"] != "supervisor":
                    return _error(404, "not_found", f"no supervisor {sup!r}", reason="not_found")
                return 200, [
                    {k: v for k, v in c.items() if k not in ("children", "strategy")}
                    for c in node["children"]
                ]
            case ("GET", ["v1", "supervisors", sup, "count"]):
                node = _find(TREE, sup)
                if node is None:
                    return _error(404, "not_found", f"no supervisor {sup!r}")
                kids = node["children"]
                sups = sum(c["type"] == "supervisor" for c in kids)
                active = sum(c["pid"] is not None for c in kids)
                return 200, {
                    "specs": len(kids),
                    "active": active,
                    "supervisors": sups,
                    "workers": len(kids) - sups,
                }
            case ("POST", ["v1", "supervisors", sup, "children"]):
                child_id = (body.get("spec") or {}).get("id") or body.get("id") or f"{sup}-1"
                return 201, {"id": child_id}
            case ("GET" | "DELETE", ["v1", "supervisors", sup, "children", child_id]) | (
                "POST",
                ["v1", "supervisors", sup, "children", child_id, "terminate" | "restart"],
            ):
                node = _find(TREE, sup)
                if node is None or not any(c["id"] == child_id for c in node["children"]):
                    return _error(
                        404, "not_found", f"{sup} has no child {child_id!r}", reason="not_found"
                    )
                if method == "GET":
                    return 200, {"id": child_id, "actor": "pkg.mod:Cls", "args": {"k": 1}}
                return 200, {"ok": True}
            case ("POST", ["v1", "actors", _name, "ask"]):
                return 200, {"type": "callboard.examples.Pong", "payload": body["payload"]}
            case ("POST", ["v1", "actors", _name, "tell"]):
                return 202, {"accepted": True}
            case ("POST", ["v1", "actors", _name, "kill"]):
                return 200, {"pid": 4321}
            case ("POST", ["v1", "stop"]):
                return 202, {"stopping": True}
            case ("GET", ["metrics"]):
                return 200, METRICS
            case ("GET", ["v1", "messages"]):
                return 200, MESSAGES
            case ("GET", ["v1", "breakers"]):
                return 200, {"breakers": BREAKERS}
            case ("POST", ["v1", "breakers"]):
                route, state = body["route"], body["state"]
                changed = [
                    {**b, "state": state, "forced": state == "open"}
                    for b in BREAKERS
                    if b["route"] == route or b["target"] == route
                ]
                if not changed:
                    return _error(
                        404, "no_such_breaker", f"no circuit breaker for {route!r}",
                        route=route, detail="",
                    )  # fmt: skip
                return 200, {"changed": changed}
            case ("GET", ["v1", "queues", _name]):
                return 200, {"stats": QUEUE_STATS}
            case ("GET", ["v1", "queues", _name, "dead-letters"]):
                page = dict(pair.split("=") for pair in query.split("&")) if query else {}
                start = int(page.get("offset", 0))
                end = start + int(page.get("limit", 100))
                return 200, {"dead_letters": DEAD_LETTERS[start:end]}
            case ("POST", ["v1", "queues", _name, "dead-letters", "replay" | "purge" as op]):
                known = {d["id"] for d in DEAD_LETTERS}
                ids = body["ids"]
                count = len(known) if ids is None else len(known & set(ids))
                return 200, {"replayed" if op == "replay" else "purged": count}
            case ("POST", ["v1", "queues", _name, "messages"]):
                return 202, {"id": body["id"] or "generated-1"}
            case ("GET", ["v1", "bus"]):
                return 200, {"stats": BUS_STATS}
            case ("POST", ["v1", "bus", "publish"]):
                if ".." in body["topic"]:
                    return _error(
                        400, "invalid_request", "invalid request body: 1 error(s)",
                        errors=[{"loc": ["topic"], "msg": "invalid_topic", "type": "value_error"}],
                    )  # fmt: skip
                return 200, {"subscribers": 2}
        return _error(404, "not_found", f"no route {method} {path}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        status, reply = self.server.fake.answer(
            self.command, self.path, self.headers.get("Authorization"), body
        )
        if isinstance(reply, str):
            data, ctype = reply.encode(), "text/plain; version=0.0.4; charset=utf-8"
        else:
            data, ctype = json.dumps(reply).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeDaemon


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in list(os.environ):
        if var.startswith("CALLBOARD_"):
            monkeypatch.delenv(var)
    # The default state dir (platformdirs' user data dir) lands in the test's directory.
    monkeypatch.setattr(platformdirs, "user_data_path", lambda name: tmp_path / "data" / name)


def _start(tls: ssl.SSLContext | None = None) -> tuple[_Server, FakeDaemon]:
    server = _Server(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    fake = FakeDaemon()
    server.fake = fake
    scheme = "https" if tls is not None else "http"
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server, fake


@pytest.fixture
def fake() -> Iterator[FakeDaemon]:
    server, fake = _start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return path


def admin(fake: FakeDaemon, token_file: Path, *argv: str) -> int:
    return main(["admin", "--url", fake.url, "--token-file", str(token_file), *argv])


def only_request(fake: FakeDaemon) -> Recorded:
    assert len(fake.requests) == 1, fake.requests
    return fake.requests[0]


# --- reading ------------------------------------------------------------------------------


def test_status_is_aligned_key_value_lines(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "status") == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        "name         callboard-19001\n"
        "transport    tcp\n"
        "admin_port   19001\n"
        "uptime       12m34s\n"
        "host_pid     4242\n"
        "root_pid     4243\n"
        "failed       -\n"
        "workers      4\n"
        "supervisors  2\n"
        "running      4\n"
        "restarting   1\n"
        "stopped      1\n"
        "version      0.1.0\n"
        "api_url      http://127.0.0.1:8765\n"
    )
    assert only_request(fake) == Recorded("GET", "/v1/status", f"Bearer {TOKEN}", None)


def test_status_json_is_one_document(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "--json", "status") == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_global_options_also_work_after_the_subcommand(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["admin", "status", "--json", "--url", fake.url, "--token-file", str(token_file)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_tree_is_drawn_with_box_characters(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "tree") == 0
    out, err = capsys.readouterr()
    assert (out, err) == (TREE_TEXT, "")
    assert only_request(fake).path == "/v1/tree"


def test_tree_json(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "tree", "--json") == 0
    assert json.loads(capsys.readouterr().out) == TREE


def test_children_table(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "children", "pool") == 0
    assert capsys.readouterr().out == POOL_CHILDREN_TEXT
    assert only_request(fake).path == "/v1/supervisors/pool/children"


def test_children_defaults_to_root_and_json(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "--json", "children") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["echo", "pool", "cache"]
    assert only_request(fake).path == "/v1/supervisors/root/children"


def test_children_of_a_supervisor_without_children(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail[("GET", "/v1/supervisors/empty/children")] = (200, [])
    assert admin(fake, token_file, "children", "empty") == 0
    assert capsys.readouterr().out == "no children under empty\n"


def test_count(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "count", "root") == 0
    assert capsys.readouterr().out == (
        "specs        3\nactive       2\nsupervisors  1\nworkers      2\n"
    )
    assert only_request(fake).path == "/v1/supervisors/root/count"
    assert admin(fake, token_file, "count", "pool", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "specs": 2,
        "active": 2,
        "supervisors": 1,
        "workers": 1,
    }


def test_spec_prints_indented_json(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "spec", "pool", "w1") == 0
    out = capsys.readouterr().out
    assert out == '{\n  "id": "w1",\n  "actor": "pkg.mod:Cls",\n  "args": {\n    "k": 1\n  }\n}\n'
    assert only_request(fake) == Recorded(
        "GET", "/v1/supervisors/pool/children/w1", f"Bearer {TOKEN}", None
    )


def test_path_segments_are_percent_encoded(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "kill", "we/ird id") == 0
    assert only_request(fake).path == "/v1/actors/we%2Fird%20id/kill"


def test_messages_table(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "messages") == 0
    assert capsys.readouterr().out == (
        "NAME                     VERSION  FIELDS\n"
        "callboard.examples.Ping        1  n\n"
        "bank.Deposit                   2  account, amount\n"
        "callboard.Nothing              1  -\n"
    )
    assert only_request(fake).path == "/v1/messages"
    assert admin(fake, token_file, "--json", "messages") == 0
    assert json.loads(capsys.readouterr().out) == MESSAGES


def test_messages_also_accepts_a_wrapped_list(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail[("GET", "/v1/messages")] = (200, {"messages": MESSAGES})
    assert admin(fake, token_file, "--json", "messages") == 0
    assert json.loads(capsys.readouterr().out) == MESSAGES


def test_breakers_table(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "breakers") == 0
    out, err = capsys.readouterr()
    assert (out, err) == (BREAKERS_TEXT, "")
    assert only_request(fake) == Recorded("GET", "/v1/breakers", f"Bearer {TOKEN}", None)
    assert admin(fake, token_file, "breakers", "--json") == 0
    assert json.loads(capsys.readouterr().out) == BREAKERS


def test_breakers_none_yet(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail[("GET", "/v1/breakers")] = (200, {"breakers": []})
    assert admin(fake, token_file, "breakers") == 0
    assert capsys.readouterr().out == (
        "no circuit breakers (a route's breaker appears once the route is used)\n"
    )
    assert admin(fake, token_file, "--json", "breakers") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_metrics_prints_the_raw_text_even_with_json(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "metrics") == 0
    assert capsys.readouterr().out == METRICS
    assert admin(fake, token_file, "--json", "metrics") == 0
    assert capsys.readouterr().out == METRICS
    assert [r.path for r in fake.requests] == ["/metrics", "/metrics"]


# --- changing -----------------------------------------------------------------------------


def test_start_child_with_spec(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {"id": "echo2", "actor": "callboard.actors.examples:Echo", "restart": "transient"}
    assert admin(fake, token_file, "start-child", "root", "--spec", json.dumps(spec)) == 0
    assert capsys.readouterr().out == "started echo2 under root\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/supervisors/root/children", f"Bearer {TOKEN}", {"spec": spec}
    )


def test_start_child_with_args_and_id(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["start-child", "pool", "--args", '{"greeting": "hi"}', "--id", "w9", "--json"]
    assert admin(fake, token_file, *argv) == 0
    assert json.loads(capsys.readouterr().out) == {"id": "w9"}
    assert only_request(fake).body == {"args": {"greeting": "hi"}, "id": "w9"}
    assert admin(fake, token_file, "start-child", "pool", "--args", "{}") == 0
    assert capsys.readouterr().out == "started pool-1 under pool\n"
    assert fake.requests[1].body == {"args": {}}


@pytest.mark.parametrize(
    "argv",
    [
        ["start-child", "root"],  # neither --spec nor --args
        ["start-child", "root", "--spec", "{}", "--args", "{}"],
        ["start-child", "root", "--spec", '{"id": "x"}', "--id", "y"],
        ["start-child", "root", "--spec", "{not json"],
        ["start-child", "root", "--args", "[1, 2]"],  # not an object
        ["ask", "echo", "Ping", "{'n': 1}"],
        ["ask", "echo", "Ping", '{"n": 1}', "--timeout", "0"],
        ["tell", "echo", "Ping"],
        ["tell", "echo", "Ping", "3"],
        ["breakers", "--open", "echo", "--close", "echo"],
        ["breakers", "--open"],
        ["queues"],
        ["dlq"],
        ["dlq", "list"],
        ["dlq", "frob", "jobs"],
        ["dlq", "list", "jobs", "--limit", "0"],
        ["dlq", "list", "jobs", "--limit", "many"],
        ["dlq", "list", "jobs", "--offset", "-1"],
        ["dlq", "replay", "jobs", "--id"],
        ["dlq", "purge", "jobs"],  # every dead letter, without --yes
        ["dlq", "purge", "jobs", "--json"],
        ["enqueue", "jobs", "shop.Order"],
        ["enqueue", "jobs", "shop.Order", "[1]"],
        ["enqueue", "jobs", "shop.Order", "{}", "--priority", "10"],
        ["enqueue", "jobs", "shop.Order", "{}", "--priority", "-1"],
        ["publish", "orders.eu", "shop.Order"],
        ["publish", "orders.eu", "shop.Order", "{n: 1}"],
        ["terminate"],
        ["frobnicate"],
        ["--timeout", "soon", "status"],
        ["--url", "ftp://example.com", "status"],
    ],
)
def test_usage_errors_exit_2_without_a_request(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert admin(fake, token_file, *argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: callboard admin" in err
    assert fake.requests == []


def test_bad_json_argument_message(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "ask", "echo", "Ping", "{n: 1}") == 2
    assert "argument JSON: not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "method", "suffix", "done"),
    [
        ("terminate", "POST", "/terminate", "terminated leaf under sub"),
        ("restart", "POST", "/restart", "restarted leaf under sub"),
        ("delete", "DELETE", "", "deleted leaf from sub"),
    ],
)
def test_child_commands_find_the_supervisor_in_the_tree(
    fake: FakeDaemon,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    method: str,
    suffix: str,
    done: str,
) -> None:
    assert admin(fake, token_file, command, "leaf") == 0
    out, err = capsys.readouterr()
    assert (out, err) == (done + "\n", "")
    assert [(r.method, r.path) for r in fake.requests] == [
        (method, f"/v1/supervisors/root/children/leaf{suffix}"),  # 404: not under root
        ("GET", "/v1/tree"),
        (method, f"/v1/supervisors/sub/children/leaf{suffix}"),
    ]


def test_terminate_a_child_of_root_takes_one_request(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "terminate", "echo") == 0
    assert capsys.readouterr().out == "terminated echo under root\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/supervisors/root/children/echo/terminate", f"Bearer {TOKEN}", None
    )


def test_explicit_sup_is_not_second_guessed(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "restart", "w1", "--sup", "pool", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True}
    assert only_request(fake).path == "/v1/supervisors/pool/children/w1/restart"
    assert admin(fake, token_file, "restart", "leaf", "--sup", "pool") == 1
    assert "pool has no child 'leaf'" in capsys.readouterr().err
    assert len(fake.requests) == 2  # no tree lookup


def test_terminate_unknown_child_reports_the_daemons_404(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "terminate", "ghost") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "callboard admin: not_found: root has no child 'ghost' (HTTP 404)\n"
        '  details: {"reason": "not_found"}\n'
    )
    assert [r.path for r in fake.requests] == [
        "/v1/supervisors/root/children/ghost/terminate",
        "/v1/tree",
    ]


def test_ask_prints_reply_type_and_payload(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ask", "echo", "callboard.examples.Ping", '{"n": 7}', "--timeout", "2.5"]
    assert admin(fake, token_file, *argv) == 0
    assert capsys.readouterr().out == 'callboard.examples.Pong\n{\n  "n": 7\n}\n'
    assert only_request(fake) == Recorded(
        "POST",
        "/v1/actors/echo/ask",
        f"Bearer {TOKEN}",
        {"type": "callboard.examples.Ping", "payload": {"n": 7}, "timeout": 2.5},
    )


def test_ask_json_and_default_timeout(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "--json", "ask", "echo", "Ping", '{"n": 1}') == 0
    assert json.loads(capsys.readouterr().out) == {
        "type": "callboard.examples.Pong",
        "payload": {"n": 1},
    }
    assert only_request(fake).body["timeout"] == 5.0


def test_ask_without_reply_value(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail[("POST", "/v1/actors/sink/ask")] = (200, {"type": None, "payload": None})
    assert admin(fake, token_file, "ask", "sink", "Ping", "{}") == 0
    assert capsys.readouterr().out == "no reply value (the handler returned nothing)\n"


def test_tell(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "tell", "echo", "Ping", '{"n": 2}') == 0
    assert capsys.readouterr().out == "sent Ping to echo\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/actors/echo/tell", f"Bearer {TOKEN}", {"type": "Ping", "payload": {"n": 2}}
    )
    assert admin(fake, token_file, "tell", "echo", "Ping", "{}", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"accepted": True}


def test_kill(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "kill", "echo") == 0
    assert capsys.readouterr().out == "killed echo (pid 4321)\n"
    assert only_request(fake) == Recorded("POST", "/v1/actors/echo/kill", f"Bearer {TOKEN}", None)


def test_breakers_open_and_close(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "breakers", "--open", "host->echo") == 0
    assert capsys.readouterr().out == "forced host->echo open\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/breakers", f"Bearer {TOKEN}", {"route": "host->echo", "state": "open"}
    )
    assert admin(fake, token_file, "breakers", "--close", "reward_model") == 0
    assert capsys.readouterr().out == (
        "forced echo2->reward_model closed\n"
        "forced host->reward_model closed\n"
        "forced w1->reward_model closed\n"
    )
    assert fake.requests[-1].body == {"route": "reward_model", "state": "closed"}
    assert admin(fake, token_file, "--json", "breakers", "--open", "host->echo") == 0
    [changed] = json.loads(capsys.readouterr().out)
    assert (changed["route"], changed["state"], changed["forced"]) == ("host->echo", "open", True)


def test_breakers_unknown_route_exit_1(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "breakers", "--open", "host->ghost") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "callboard admin: no_such_breaker: no circuit breaker for 'host->ghost' (HTTP 404)\n"
        '  details: {"detail": "", "route": "host->ghost"}\n'
    )


def test_queues(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "queues", "jobs") == 0
    out, err = capsys.readouterr()
    assert (out, err) == (QUEUE_TEXT, "")
    assert only_request(fake) == Recorded("GET", "/v1/queues/jobs", f"Bearer {TOKEN}", None)
    assert admin(fake, token_file, "queues", "jobs", "--json") == 0
    assert json.loads(capsys.readouterr().out) == QUEUE_STATS


def test_queues_without_any_depth(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = {"queue": "jobs", "depth_by_priority": {str(p): 0 for p in range(10)},
             "consumers": {}}  # fmt: skip
    fake.fail[("GET", "/v1/queues/jobs")] = (200, {"stats": stats})
    assert admin(fake, token_file, "queues", "jobs") == 0
    assert capsys.readouterr().out == (
        "queue              jobs\ndepth_by_priority  -\nconsumers          -\n"
    )


def test_unknown_queue_exit_1(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "queues", "nope") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "callboard admin: no_such_actor: no queue named 'nope' (HTTP 404)\n"
        '  details: {"actor": "queue.nope", "queue": "nope"}\n'
    )
    assert admin(fake, token_file, "dlq", "list", "we/ird") == 1
    assert fake.requests[-1].path == "/v1/queues/we%2Fird/dead-letters?limit=100&offset=0"


def test_dlq_list(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "dlq", "list", "jobs") == 0
    out, err = capsys.readouterr()
    assert (out, err) == (DLQ_TEXT, "")
    assert only_request(fake) == Recorded(
        "GET", "/v1/queues/jobs/dead-letters?limit=100&offset=0", f"Bearer {TOKEN}", None
    )
    assert admin(fake, token_file, "dlq", "list", "jobs", "--json") == 0
    assert json.loads(capsys.readouterr().out) == DEAD_LETTERS


def test_dlq_list_pages(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "dlq", "list", "jobs", "--limit", "1", "--offset", "1") == 0
    assert capsys.readouterr().out == (
        "ID  TYPE        REASON    DELIVERIES  DEAD AT               DETAIL\n"
        "m2  shop.Order  rejected           5  2026-11-18T11:06:42Z  -\n"
        "(the first 1; more with --offset 2)\n"
    )
    assert fake.requests[-1].path == "/v1/queues/jobs/dead-letters?limit=1&offset=1"
    assert admin(fake, token_file, "dlq", "list", "jobs", "--offset", "3") == 0
    assert capsys.readouterr().out == "no dead letters in jobs from offset 3\n"
    fake.fail[("GET", "/v1/queues/jobs/dead-letters")] = (200, {"dead_letters": []})
    assert admin(fake, token_file, "dlq", "list", "jobs") == 0
    assert capsys.readouterr().out == "no dead letters in jobs\n"
    assert admin(fake, token_file, "--json", "dlq", "list", "jobs") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_dlq_replay_all_or_some(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "dlq", "replay", "jobs") == 0
    assert capsys.readouterr().out == "replayed 3 dead letters of jobs\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/queues/jobs/dead-letters/replay", f"Bearer {TOKEN}", {"ids": None}
    )
    assert admin(fake, token_file, "dlq", "replay", "jobs", "--id", "m1") == 0
    assert capsys.readouterr().out == "replayed 1 dead letter of jobs\n"
    assert fake.requests[-1].body == {"ids": ["m1"]}
    argv = ["dlq", "replay", "jobs", "--id", "m1", "--id", "m2", "--id", "gone"]
    assert admin(fake, token_file, *argv) == 0
    assert capsys.readouterr().out == (
        "replayed 2 dead letters of jobs (1 of the 3 ids given are not dead letters of jobs)\n"
    )
    assert fake.requests[-1].body == {"ids": ["m1", "m2", "gone"]}
    assert admin(fake, token_file, "--json", "dlq", "replay", "jobs") == 0
    assert json.loads(capsys.readouterr().out) == {"replayed": 3}


def test_dlq_purge_some_or_all_with_yes(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "dlq", "purge", "jobs", "--id", "m2") == 0
    assert capsys.readouterr().out == "purged 1 dead letter of jobs\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/queues/jobs/dead-letters/purge", f"Bearer {TOKEN}", {"ids": ["m2"]}
    )
    assert admin(fake, token_file, "dlq", "purge", "jobs", "--yes") == 0
    assert capsys.readouterr().out == "purged 3 dead letters of jobs\n"
    assert fake.requests[-1].body == {"ids": None}
    assert admin(fake, token_file, "dlq", "purge", "jobs", "--yes", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 3}


def test_dlq_purge_all_needs_yes(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "dlq", "purge", "jobs") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: callboard admin dlq purge ")
    assert err.endswith(
        "callboard admin dlq purge: error: purging every dead letter of jobs cannot be undone: "
        "pass --yes to confirm (or --id ID to purge some)\n"
    )
    assert fake.requests == []


def test_enqueue(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["enqueue", "jobs", "shop.Order", '{"n": 1}', "--priority", "9", "--id", "o-1"]
    assert admin(fake, token_file, *argv) == 0
    assert capsys.readouterr().out == "enqueued shop.Order on jobs (id o-1)\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/queues/jobs/messages", f"Bearer {TOKEN}",
        {"type": "shop.Order", "data": {"n": 1}, "priority": 9, "id": "o-1"},
    )  # fmt: skip
    assert admin(fake, token_file, "--json", "enqueue", "jobs", "shop.Order", "{}") == 0
    assert json.loads(capsys.readouterr().out) == {"id": "generated-1"}
    assert fake.requests[-1].body == {"type": "shop.Order", "data": {}, "priority": 0, "id": None}


def test_enqueue_invalid_message_exit_1(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail[("POST", "/v1/queues/jobs/messages")] = _error(
        400, "invalid_message", "unknown message type 'shop.Ordr'", reason="unknown_type"
    )
    assert admin(fake, token_file, "enqueue", "jobs", "shop.Ordr", "{}") == 1
    assert capsys.readouterr().err == (
        "callboard admin: invalid_message: unknown message type 'shop.Ordr' (HTTP 400)\n"
        '  details: {"reason": "unknown_type"}\n'
    )


def test_publish(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "publish", "orders.eu", "shop.Order", '{"n": 2}') == 0
    assert capsys.readouterr().out == "published shop.Order on orders.eu to 2 subscriptions\n"
    assert only_request(fake) == Recorded(
        "POST", "/v1/bus/publish", f"Bearer {TOKEN}",
        {"topic": "orders.eu", "type": "shop.Order", "data": {"n": 2}},
    )  # fmt: skip
    assert admin(fake, token_file, "publish", "orders.eu", "shop.Order", "{}", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"subscribers": 2}


def test_publish_invalid_topic_exit_1(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(fake, token_file, "publish", "orders..eu", "shop.Order", "{}") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        "callboard admin: invalid_request: invalid request body: 1 error(s) (HTTP 400)\n"
    )
    assert '"loc": ["topic"]' in err


def test_bus(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "bus") == 0
    out, err = capsys.readouterr()
    assert (out, err) == (BUS_TEXT, "")
    assert only_request(fake) == Recorded("GET", "/v1/bus", f"Bearer {TOKEN}", None)
    assert admin(fake, token_file, "bus", "--json") == 0
    assert json.loads(capsys.readouterr().out) == BUS_STATS
    idle = {"published": 0, "durable": {}, "subscriptions": {}}
    fake.fail[("GET", "/v1/bus")] = (200, {"stats": idle})
    assert admin(fake, token_file, "bus") == 0
    assert capsys.readouterr().out == "published  0\ndurable    -\n\nno subscriptions\n"


def test_stop(fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(fake, token_file, "stop") == 0
    assert capsys.readouterr().out == "stop requested: the daemon is shutting down\n"
    assert only_request(fake) == Recorded("POST", "/v1/stop", f"Bearer {TOKEN}", None)


# --- error replies: exit 1 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (404, "no_such_actor", "no actor named 'nobody'"),
        (409, "already_present", "a child 'echo' already exists"),
        (502, "remote_error", "the actor failed: boom"),
        (504, "ask_timeout", "no reply within 5 s"),
        (400, "invalid_message", "unknown message type 'Pnig'"),
    ],
)
def test_error_replies_exit_1_with_code_and_message(
    fake: FakeDaemon,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
    code: str,
    message: str,
) -> None:
    fake.fail[("POST", "/v1/actors/nobody/ask")] = _error(status, code, message)
    assert admin(fake, token_file, "ask", "nobody", "Ping", "{}") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"callboard admin: {code}: {message} (HTTP {status})\n"


def test_error_reply_without_the_contracts_body(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail[("GET", "/v1/status")] = (502, "<html>Bad Gateway</html>")
    assert admin(fake, token_file, "status") == 1
    assert capsys.readouterr().err == (
        "callboard admin: http_502: Bad Gateway: <html>Bad Gateway</html> (HTTP 502)\n"
    )


def test_success_reply_that_is_not_json_exits_1(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail[("GET", "/v1/tree")] = (200, "not json")
    assert admin(fake, token_file, "tree") == 1
    assert "unexpected reply from the daemon" in capsys.readouterr().err


def test_redirects_are_not_followed(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other, elsewhere = _start()
    try:

        def redirect(method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
            fake.requests.append(Recorded(method, path, auth, body))
            return 302, {}

        fake.answer = redirect  # type: ignore[method-assign]
        assert admin(fake, token_file, "status") == 1
        assert "redirects are not followed" in capsys.readouterr().err
        assert elsewhere.requests == []
    finally:
        other.shutdown()
        other.server_close()


# --- cannot connect / refused: exit 3 -----------------------------------------------------


def test_wrong_token_is_401_exit_3(
    fake: FakeDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    assert admin(fake, wrong, "status") == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "callboard admin: unauthorized (HTTP 401): missing or unknown bearer token: the daemon "
        f"at {fake.url} did not accept the token in {wrong} (from --token-file); pass "
        "--token-file with a valid token\n"
    )
    assert only_request(fake).auth == "Bearer nope"


def test_forbidden_is_403_exit_3_naming_the_role(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.forbidden.add("/v1/stop")
    assert admin(fake, token_file, "stop") == 3
    err = capsys.readouterr().err
    assert err.startswith(
        "callboard admin: forbidden (HTTP 403): token 'ops' (viewer) may not do this: "
    )
    assert "'stop' needs the admin role or higher" in err
    assert "pass --token-file" in err


def test_forbidden_breakers_open_names_its_own_role(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.forbidden.add("/v1/breakers")
    assert admin(fake, token_file, "breakers", "--close", "echo") == 3
    err = capsys.readouterr().err
    assert "may not run 'breakers --close'; 'breakers --close' needs the operator role" in err
    assert admin(fake, token_file, "breakers") == 3
    assert "'breakers' needs the viewer role or higher" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "path", "command", "role"),
    [
        (["queues", "jobs"], "/v1/queues/jobs", "queues", "viewer"),
        (["dlq", "list", "jobs"], "/v1/queues/jobs/dead-letters", "dlq list", "viewer"),
        (["dlq", "replay", "jobs"], "/v1/queues/jobs/dead-letters/replay", "dlq replay",
         "operator"),
        (["dlq", "purge", "jobs", "--yes"], "/v1/queues/jobs/dead-letters/purge", "dlq purge",
         "admin"),
        (["enqueue", "jobs", "T", "{}"], "/v1/queues/jobs/messages", "enqueue", "operator"),
        (["publish", "a.b", "T", "{}"], "/v1/bus/publish", "publish", "operator"),
        (["bus"], "/v1/bus", "bus", "viewer"),
    ],
)  # fmt: skip
def test_forbidden_queue_and_bus_commands_name_their_role(
    fake: FakeDaemon,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    path: str,
    command: str,
    role: str,
) -> None:
    fake.forbidden.add(path)
    assert admin(fake, token_file, *argv) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("callboard admin: forbidden (HTTP 403): ")
    assert f"may not run '{command}'; '{command}' needs the {role} role or higher; " in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_refused_exit_3(token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["admin", "--url", url, "--token-file", str(token_file), "status"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"callboard admin: cannot connect to {url}: Connection refused")
    assert "(URL from --url); is the daemon running?" in err


def test_no_reply_within_timeout_exit_3(
    fake: FakeDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.delay = 1.0
    assert admin(fake, token_file, "--timeout", "0.2", "status") == 3
    err = capsys.readouterr().err
    assert f"no reply from {fake.url} within 0.2 s; pass --timeout to wait longer" in err


def test_missing_token_file_exit_3(fake: FakeDaemon, tmp_path: Path, capsys: Any) -> None:
    assert admin(fake, tmp_path / "absent", "status") == 3
    assert capsys.readouterr().err == (
        f"callboard admin: token file {tmp_path / 'absent'} (from --token-file) does not "
        "exist; pass --token-file\n"
    )
    assert fake.requests == []


# --- discovery ----------------------------------------------------------------------------


def _write_state(state: Path, url: str, token_file: str | None, pid: int | None = None) -> None:
    state.mkdir(parents=True, exist_ok=True)
    info = {"url": url, "pid": os.getpid() if pid is None else pid, "token_file": token_file}
    (state / "daemon.json").write_text(json.dumps(info), encoding="utf-8")


def test_state_dir_daemon_json(
    fake: FakeDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    secret = tmp_path / "elsewhere" / "gen.token"
    secret.parent.mkdir()
    secret.write_text(TOKEN)
    _write_state(state, fake.url, str(secret))
    (state / "admin.token").write_text("not-this-one")  # daemon.json's token_file wins
    assert main(["admin", "--state-dir", str(state), "--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS
    assert only_request(fake).auth == f"Bearer {TOKEN}"


def test_state_dir_token_falls_back_to_admin_token(
    fake: FakeDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    _write_state(state, fake.url, None)
    (state / "admin.token").write_text(TOKEN + "\n")
    assert main(["admin", "--state-dir", str(state), "tree"]) == 0
    assert capsys.readouterr().out == TREE_TEXT


def test_state_dir_without_token_exit_3(
    fake: FakeDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    _write_state(state, fake.url, None)
    assert main(["admin", "--state-dir", str(state), "status"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"callboard admin: no token file found in {state} ")
    assert err.endswith("; pass --token-file or set CALLBOARD_ADMIN_TOKEN_FILE\n")
    assert fake.requests == []


def test_state_dir_without_daemon_json_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "--state-dir", str(tmp_path), "status"]) == 3
    assert capsys.readouterr().err == (
        f"callboard admin: no daemon.json in {tmp_path}: is the daemon running (callboard run)? "
        "Pass --url, or --state-dir / --config for the daemon's state dir\n"
    )


def test_stale_daemon_json_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    state = tmp_path / "state"
    _write_state(state, f"http://127.0.0.1:{_closed_port()}", None, pid=gone.pid)
    (state / "admin.token").write_text(TOKEN)
    assert main(["admin", "--state-dir", str(state), "status"]) == 3
    err = capsys.readouterr().err
    assert f"the daemon's pid {gone.pid} is not running, so the daemon.json is stale" in err


def test_environment_variables(
    fake: FakeDaemon,
    token_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALLBOARD_ADMIN_URL", fake.url)
    monkeypatch.setenv("CALLBOARD_ADMIN_TOKEN_FILE", str(token_file))
    assert main(["admin", "--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS
    # Flags win over the environment.
    monkeypatch.setenv("CALLBOARD_ADMIN_URL", f"http://127.0.0.1:{_closed_port()}")
    assert main(["admin", "--url", fake.url, "status"]) == 0
    capsys.readouterr()
    assert len(fake.requests) == 2


def test_url_flag_with_token_from_state_dir(
    fake: FakeDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "admin.token").write_text(TOKEN)
    assert main(["admin", "--url", fake.url, "--state-dir", str(state), "status"]) == 0
    assert only_request(fake).auth == f"Bearer {TOKEN}"


def test_config_file_state_dir(
    fake: FakeDaemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "from-config"
    _write_state(state, fake.url, "admin.token")  # relative: inside the state dir
    (state / "admin.token").write_text(TOKEN)
    config = tmp_path / "callboard.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(state))}\n")
    assert main(["admin", "--config", str(config), "--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS

    # CALLBOARD_DAEMON__STATE_DIR overrides the file, as it does for the daemon.
    other = tmp_path / "from-env"
    monkeypatch.setenv("CALLBOARD_DAEMON__STATE_DIR", str(other))
    assert main(["admin", "--config", str(config), "status"]) == 3
    assert f"no daemon.json in {other}" in capsys.readouterr().err


def test_env_state_dir_without_config(
    fake: FakeDaemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "env-state"
    _write_state(state, fake.url, None)
    (state / "admin.token").write_text(TOKEN)
    monkeypatch.setenv("CALLBOARD_DAEMON__STATE_DIR", str(state))
    monkeypatch.setenv("CALLBOARD_SYSTEM__NOT_A_KEY", "1")  # unrelated and invalid: ignored
    assert main(["admin", "status"]) == 0


def test_default_state_dir(
    fake: FakeDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = Path(DaemonSettings().state_dir)
    assert state == tmp_path / "data" / "callboard"
    _write_state(state, fake.url, None)
    (state / "admin.token").write_text(TOKEN)
    assert main(["admin", "--json", "tree"]) == 0
    assert json.loads(capsys.readouterr().out) == TREE


def test_invalid_config_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[daemon]\napi_port = -1\n")
    assert main(["admin", "--config", str(config), "status"]) == 1
    assert f"invalid configuration in {config}" in capsys.readouterr().err


# --- https --------------------------------------------------------------------------------


@pytest.fixture
def tls_fake(tmp_path: Path) -> Iterator[tuple[FakeDaemon, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server, fake = _start(ctx)
    yield fake, cert
    server.shutdown()
    server.server_close()


def test_https_with_cacert_and_insecure(
    tls_fake: tuple[FakeDaemon, Path], token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, cert = tls_fake
    assert fake.url.startswith("https://")
    assert admin(fake, token_file, "--cacert", str(cert), "--json", "status") == 0
    assert json.loads(capsys.readouterr().out) == STATUS

    assert admin(fake, token_file, "status") == 3  # self-signed: not trusted by default
    err = capsys.readouterr().err
    assert "TLS certificate verification failed" in err
    assert "pass --cacert FILE" in err

    assert admin(fake, token_file, "--insecure", "status") == 0
    capsys.readouterr()
    assert [r.path for r in fake.requests] == ["/v1/status", "/v1/status"]


# --- the library and the renderers --------------------------------------------------------


def test_client_library(fake: FakeDaemon) -> None:
    client = AdminClient(fake.url + "/", TOKEN, timeout=5)
    assert client.url == fake.url
    assert client.healthz() == {"ok": True}
    assert fake.requests[-1].auth is None  # /healthz needs no token
    assert client.readyz() == {"ready": True}
    assert client.find_supervisor("leaf") == "sub"
    assert client.find_supervisor("root") is None
    assert client.find_supervisor("ghost") is None
    with pytest.raises(ValueError, match="either spec or args"):
        client.start_child("root")
    assert client.breakers() == BREAKERS
    assert [b["route"] for b in client.set_breaker("host->echo", "open")] == ["host->echo"]
    fake.fail[("GET", "/v1/breakers")] = (200, {"items": BREAKERS})  # breaks the contract
    with pytest.raises(ProtocolError, match="expected a breakers list"):
        client.breakers()


def test_client_library_queues_and_bus(fake: FakeDaemon) -> None:
    client = AdminClient(fake.url, TOKEN, timeout=5)
    assert client.queue_stats("jobs") == QUEUE_STATS
    assert client.dead_letters("jobs") == DEAD_LETTERS
    assert client.dead_letters("jobs", limit=2, offset=1) == DEAD_LETTERS[1:3]
    assert fake.requests[-1].path == "/v1/queues/jobs/dead-letters?limit=2&offset=1"
    assert client.replay_dead_letters("jobs") == 3
    assert fake.requests[-1].body == {"ids": None}
    assert client.purge_dead_letters("jobs", ["m1", "x"]) == 1
    assert fake.requests[-1].body == {"ids": ["m1", "x"]}
    assert client.enqueue("jobs", "shop.Order", {"n": 1}, priority=5, msg_id="o-9") == "o-9"
    assert fake.requests[-1].body == {"type": "shop.Order", "data": {"n": 1}, "priority": 5,
                                      "id": "o-9"}  # fmt: skip
    assert client.bus_stats() == BUS_STATS
    assert client.publish("orders.eu", "shop.Order", {}) == 2
    # Replies that break the contract.
    for method, path, reply, call in (
        ("GET", "/v1/queues/jobs", {"stats": []}, lambda: client.queue_stats("jobs")),
        ("GET", "/v1/queues/jobs/dead-letters", {}, lambda: client.dead_letters("jobs")),
        ("POST", "/v1/queues/jobs/dead-letters/replay", {"replayed": True},
         lambda: client.replay_dead_letters("jobs")),
        ("POST", "/v1/queues/jobs/dead-letters/purge", {"purged": "3"},
         lambda: client.purge_dead_letters("jobs")),
        ("POST", "/v1/queues/jobs/messages", {"id": 7}, lambda: client.enqueue("jobs", "T", {})),
        ("POST", "/v1/bus/publish", {"subscribers": None}, lambda: client.publish("a", "T", {})),
        ("GET", "/v1/bus", [], client.bus_stats),
    ):  # fmt: skip
        fake.fail[(method, path)] = (200, reply)
        with pytest.raises(ProtocolError, match=f"{method} {path}"):
            call()


def test_find_parent() -> None:
    assert find_parent(TREE, "echo") == "root"
    assert find_parent(TREE, "w1") == "pool"
    assert find_parent(TREE, "leaf") == "sub"
    assert find_parent(TREE, "nope") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"),
     (86399, "23h59m"), (90061, "1d01h"), ("x", "-"), (True, "-")],
)  # fmt: skip
def test_fmt_duration(seconds: Any, text: str) -> None:
    assert _render.fmt_duration(seconds) == text


def test_fmt_value() -> None:
    assert [_render.fmt_value(v) for v in (None, True, False, "x", 3, 1.5, {"a": [1]})] == [
        "-",
        "yes",
        "no",
        "x",
        "3",
        "1.5",
        '{"a":[1]}',
    ]


def test_tree_of_a_lone_root() -> None:
    node = _node("root", "supervisor", "failed", 1, 0, "shutdown", strategy="one_for_one")
    node["children"] = []
    assert _render.tree(node) == (
        "root  supervisor(one_for_one)  failed  pid 1  restarts 0  last exit: shutdown"
    )


def test_tree_marks_unresponsive_supervisors() -> None:
    node = _node("root", "supervisor", "running", 1, 0, None, strategy="one_for_one")
    node["children"] = [
        _node("a", "supervisor", "running", 2, 0, None, strategy="one_for_one", unresponsive=True),
        _node("b", "supervisor", "running", 3, 1, "killed", strategy="one_for_all",
              unresponsive=True, children=[]),
    ]  # fmt: skip
    assert _render.tree(node).splitlines() == [
        "root   supervisor(one_for_one)  running  pid 1  restarts 0",
        "├── a  supervisor(one_for_one)  running  pid 2  restarts 0  (unresponsive)",
        "└── b  supervisor(one_for_all)  running  pid 3  restarts 1  last exit: killed  "
        "(unresponsive)",
    ]


def test_no_line_ends_in_spaces() -> None:
    for text in (_render.tree(TREE), _render.status_lines(STATUS)):
        assert all(line == line.rstrip() for line in text.splitlines())


# --- python -m callboard ------------------------------------------------------------------


def test_python_dash_m_callboard_admin_subprocess(
    fake: FakeDaemon, token_file: Path, tmp_path: Path
) -> None:
    root = str(Path(callboard.config.__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    base = [sys.executable, "-m", "callboard", "admin", "--url", fake.url]
    ok = subprocess.run(
        [*base, "--token-file", str(token_file), "tree"],
        capture_output=True, text=True, encoding="utf-8", env=env, cwd=tmp_path, timeout=60,
        check=False,
    )  # fmt: skip
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, TREE_TEXT, "")

    env["CALLBOARD_ADMIN_TOKEN_FILE"] = str(tmp_path / "no-such-token")
    refused = subprocess.run(
        [*base, "status"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 3
    assert "does not exist; pass --token-file" in refused.stderr
