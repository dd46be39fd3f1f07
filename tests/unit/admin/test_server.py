"""callboard.admin: the admin API over real HTTP(S) against a real System (local transport)."""

from __future__ import annotations

import contextlib
import email.message
import http.client
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import callboard
from callboard import (
    AskTimeout,
    ConfigError,
    InvalidMessage,
    NoSuchActor,
    NoSuchBreaker,
    RemoteError,
    StartFailed,
    SupervisorError,
    System,
    SystemFailed,
    SystemNotRunning,
)
from callboard.actors.examples import Ping
from callboard.admin import MAX_BODY_BYTES, AdminServer, load_tokens
from callboard.admin._errors import ApiError, from_exception
from callboard.admin._routes import Call, Reply, resolve
from callboard.config import DaemonSettings
from callboard.errors import CallboardError
from callboard.observability import configure_logging
from callboard.queues._protocol import AddDeadLetter, Item
from callboard.security import AuditLog, TokenStore, new_secret

CONFIG: dict[str, Any] = {
    "system": {"transport": "local", "log_level": "error"},
    "supervisor": {
        "children": [
            {"id": "echo", "actor": "callboard.actors.examples:Echo"},
            {"id": "echo2", "actor": "callboard.actors.examples:Echo"},
            {
                "id": "pool",
                "supervisor": {
                    "strategy": "simple_one_for_one",
                    "children": [
                        {
                            "id": "job",
                            "actor": "callboard.actors.examples:Echo",
                            "restart": "transient",
                        }
                    ],
                },
            },
        ]
    },
}

SECRETS = {"admin": new_secret(), "operator": new_secret(), "viewer": new_secret()}
TOKEN_IDS = {"admin": "ops-admin", "operator": "ci-operator", "viewer": "dash-viewer"}
PING = "callboard.examples.Ping"


def token_store() -> TokenStore:
    store = TokenStore()
    for role, secret in SECRETS.items():
        store.add(TOKEN_IDS[role], role, secret)
    return store


@dataclass
class Answer:
    status: int
    headers: email.message.Message
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> dict[str, Any]:
        err = self.json["error"]
        assert set(err) == {"code", "message", "details"}
        assert isinstance(err["code"], str) and isinstance(err["message"], str)
        assert isinstance(err["details"], dict)
        return err  # type: ignore[no-any-return]


def request(
    url: str, method: str, path: str, body: Any = None, *, role: str | None = "admin",
    secret: str | None = None, raw: bytes | None = None, context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:  # fmt: skip
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method)
    if secret is None and role is not None:
        secret = SECRETS[role]
    if secret is not None:
        req.add_header("Authorization", f"Bearer {secret}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            return Answer(resp.status, resp.headers, resp.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, exc.headers, exc.read().decode())


@dataclass
class Api:
    system: System
    server: AdminServer
    audit_path: Path

    @property
    def url(self) -> str:
        return self.server.url

    def __call__(self, method: str, path: str, body: Any = None, **kw: Any) -> Answer:
        return request(self.url, method, path, body, **kw)

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def last_audit(self, path: str) -> dict[str, Any]:
        return [line for line in self.audit() if line["path"] == path][-1]


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with System.start(CONFIG) as sys_:
        yield sys_


@pytest.fixture(scope="module")
def api(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with served(system, tmp_path_factory.mktemp("audit") / "audit.log") as answer:
        yield answer


@contextlib.contextmanager
def served(system: System, audit_path: Path) -> Iterator[Api]:
    """An admin server (real HTTP, its own audit log) in front of ``system``."""
    audit = AuditLog(audit_path)
    server = AdminServer(system, token_store(), audit, "127.0.0.1", 0)
    server.start()
    try:
        yield Api(system, server, audit_path)
    finally:
        server.close()
        audit.close()


def serve(system: System, tmp_path: Path, **kw: Any) -> tuple[AdminServer, AuditLog]:
    audit = AuditLog(tmp_path / "audit.log")
    server = AdminServer(system, token_store(), audit, "127.0.0.1", 0, **kw)
    server.start()
    return server, audit


# -- the server itself ---------------------------------------------------------------------


def test_url_shows_the_port_picked_and_a_taken_port_refuses(api: Api, tmp_path: Path) -> None:
    assert api.url.startswith("http://127.0.0.1:")
    port = int(api.url.rsplit(":", 1)[1])
    assert port == api.server.port and port > 0
    other = AdminServer(api.system, token_store(), AuditLog(tmp_path / "a.log"), "127.0.0.1", port)
    with pytest.raises(OSError):
        other.start()
    with pytest.raises(RuntimeError):
        _ = other.url  # never started
    other.close()  # harmless


def test_close_stops_serving_and_is_idempotent(system: System, tmp_path: Path) -> None:
    server, audit = serve(system, tmp_path)
    url = server.url
    assert request(url, "GET", "/healthz").status == 200
    server.close()
    server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/healthz", timeout=5)
    audit.close()


def test_healthz_needs_no_token_reveals_nothing_and_is_not_audited(api: Api) -> None:
    answer = api("GET", "/healthz", role=None)
    assert answer.status == 200 and answer.json == {"ok": True}
    assert answer.headers["Content-Type"] == "application/json"
    assert "python" not in (answer.headers["Server"] or "").lower()
    assert not [line for line in api.audit() if line["path"] == "/healthz"]


def test_readyz(api: Api) -> None:
    answer = api("GET", "/readyz", role="viewer")
    assert answer.status == 200 and answer.json == {"ready": True}
    assert api("GET", "/readyz", role=None).status == 401
    line = api.last_audit("/readyz")
    assert line["action"] == "health" and line["outcome"] == "unauthorized"


# -- read-only endpoints ----------------------------------------------------------------------


def test_status(api: Api) -> None:
    answer = api("GET", "/v1/status", role="viewer")
    assert answer.status == 200
    status = answer.json
    assert status["version"] == callboard.__version__
    assert status["api_url"] == api.url
    assert status["transport"] == "local" and status["failed"] is None
    assert status["workers"] == 2 and status["supervisors"] == 1
    assert status["host_pid"] == os.getpid()


def test_tree_children_count_and_childspec(api: Api) -> None:
    tree = api("GET", "/v1/tree", role="viewer").json
    assert tree["id"] == "root"
    assert [c["id"] for c in tree["children"]][:3] == ["echo", "echo2", "pool"]
    rows = api("GET", "/v1/supervisors/root/children", role="viewer").json
    assert [r["id"] for r in rows][:3] == ["echo", "echo2", "pool"]
    assert rows[0]["status"] == "running"
    count = api("GET", "/v1/supervisors/root/count", role="viewer").json
    assert set(count) == {"specs", "active", "supervisors", "workers"}
    assert count["supervisors"] == 1
    spec = api("GET", "/v1/supervisors/root/children/echo", role="viewer").json
    assert spec["id"] == "echo" and spec["actor"] == "callboard.actors.examples:Echo"
    assert api.last_audit("/v1/supervisors/root/children/echo")["target"] == "root/echo"
    # Path segments are percent-decoded; the query string is ignored.
    assert api("GET", "/v1/supervisors/ro%6Ft/count?x=1").status == 200


def test_messages_lists_every_registered_type_with_its_schema(api: Api) -> None:
    answer = api("GET", "/v1/messages", role="viewer")
    assert answer.status == 200
    listed = {m["name"]: m for m in answer.json["messages"]}
    assert set(listed) >= set(callboard.messages.registered_types())
    ping = listed[PING]
    assert ping["version"] == 1
    assert ping["schema"]["properties"]["n"]["type"] == "integer"
    assert ping["schema"]["required"] == ["n"]


def test_metrics_is_prometheus_text(api: Api) -> None:
    assert api("POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": 1}}).status == 200
    answer = api("GET", "/metrics", role="viewer")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'callboard_messages_handled_total{actor="echo"' in answer.text
    assert api.last_audit("/metrics")["action"] == "metrics"


# -- talking to actors ------------------------------------------------------------------------


def test_ask_and_tell(api: Api) -> None:
    answer = api(
        "POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": 41}}, role="operator"
    )
    assert answer.status == 200
    assert answer.json == {"type": "callboard.examples.Pong", "payload": {"n": 41}}
    relay = api(
        "POST", "/v1/actors/echo2/ask",
        {"type": "callboard.examples.Relay", "payload": {"n": 7, "via": "echo"}, "timeout": 10},
    )  # fmt: skip
    assert relay.json == {"type": "callboard.examples.Pong", "payload": {"n": 7}}
    told = api("POST", "/v1/actors/echo/tell", {"type": PING, "payload": {"n": 1}}, role="operator")
    assert told.status == 202 and told.json == {"accepted": True}
    line = api.last_audit("/v1/actors/echo/tell")
    assert line["action"] == "tell" and line["target"] == "echo"
    assert line["message_type"] == PING and line["status"] == 202


def test_many_concurrent_requests(api: Api) -> None:
    def ask(n: int) -> Any:
        return api("POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": n}}).json

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, range(24)))
    assert [r["payload"]["n"] for r in replies] == list(range(24))


def test_unknown_type_and_invalid_payload_are_400_with_pydantic_errors(api: Api) -> None:
    bad_type = api("POST", "/v1/actors/echo/ask", {"type": "no.such.Type", "payload": {}})
    assert bad_type.status == 400
    err = bad_type.error
    assert err["code"] == "invalid_message" and err["details"]["reason"] == "unknown_type"
    assert err["details"]["errors"] == [
        {"loc": ["type"], "msg": "unknown message type", "type": "unknown_type"}
    ]
    bad_payload = api("POST", "/v1/actors/echo/tell", {"type": PING, "payload": {"n": "many"}})
    assert bad_payload.status == 400
    err = bad_payload.error
    assert err["code"] == "invalid_message" and err["details"]["reason"] == "invalid_fields"
    [e] = err["details"]["errors"]
    assert e["loc"] == ["payload", "n"] and e["type"] == "int_parsing" and e["msg"]
    extra = api("POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": 1, "m": 2}})
    assert extra.error["details"]["errors"][0]["type"] == "extra_forbidden"
    newer = api("POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": 1}, "version": 9})
    assert newer.status == 400 and newer.error["details"]["reason"] == "bad_version"
    line = api.last_audit("/v1/actors/echo/tell")
    assert line["outcome"] == "error:invalid_message" and line["status"] == 400


def test_bad_json_and_bad_request_bodies_are_400(api: Api) -> None:
    broken = api("POST", "/v1/actors/echo/ask", raw=b'{"type": ')
    assert broken.status == 400 and broken.error["code"] == "invalid_json"
    assert set(broken.error["details"]) == {"line", "column"}
    not_object = api("POST", "/v1/actors/echo/ask", [1, 2])
    assert not_object.status == 400 and not_object.error["code"] == "invalid_request"
    no_type = api("POST", "/v1/actors/echo/ask", {"payload": {"n": 1}})
    assert no_type.status == 400 and no_type.error["code"] == "invalid_request"
    assert no_type.error["details"]["errors"][0]["loc"] == ["type"]
    bad_timeout = api("POST", "/v1/actors/echo/ask", {"type": PING, "timeout": -1})
    assert bad_timeout.error["details"]["errors"][0]["loc"] == ["timeout"]
    not_utf8 = api("POST", "/v1/actors/echo/ask", raw=b"\xff\xfe\xfd{")
    assert not_utf8.status == 400 and not_utf8.error["code"] == "invalid_json"
    deep = api("POST", "/v1/actors/echo/ask", raw=b"[" * 200_000)
    assert deep.status == 400 and deep.error["code"] == "invalid_json"


def test_body_over_one_mib_is_413(api: Api) -> None:
    payload = b'{"type": "x", "payload": {"s": "' + b"a" * MAX_BODY_BYTES + b'"}}'
    answer = api("POST", "/v1/actors/echo/ask", raw=payload)
    assert answer.status == 413
    assert answer.error["code"] == "payload_too_large"
    assert answer.error["details"]["limit"] == MAX_BODY_BYTES
    assert api.last_audit("/v1/actors/echo/ask")["outcome"] == "error:payload_too_large"


def test_ask_errors_map_to_statuses(api: Api) -> None:
    nobody = api("POST", "/v1/actors/nobody/ask", {"type": PING, "payload": {"n": 1}})
    assert nobody.status == 404 and nobody.error["code"] == "no_such_actor"
    assert nobody.error["details"] == {"actor": "nobody"}
    # echo2's handler asks a name that does not exist: it crashes (and is restarted).
    crashed = api(
        "POST", "/v1/actors/echo2/ask",
        {"type": "callboard.examples.Relay", "payload": {"n": 1, "via": "nobody"}},
    )  # fmt: skip
    assert crashed.status == 502 and crashed.error["code"] == "crashed"
    assert api.last_audit("/v1/actors/echo2/ask")["outcome"] == "error:crashed"
    late = api("POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": 1}, "timeout": 1e-9})
    assert late.status == 504 and late.error["code"] == "timeout"


def test_kill_on_the_local_transport_is_an_error_not_a_crash(api: Api) -> None:
    answer = api("POST", "/v1/actors/echo/kill")
    assert answer.status == 409
    assert answer.error["code"] == "refused" and "tcp" in answer.error["message"]
    assert api("GET", "/readyz").status == 200
    nobody = api("POST", "/v1/actors/nobody/kill")
    assert nobody.status == 409  # the transport check comes first on local


# -- child administration ---------------------------------------------------------------------


def test_child_lifecycle_start_terminate_restart_delete(api: Api) -> None:
    spec = {"id": "extra", "actor": "callboard.actors.examples:Echo", "restart": "transient"}
    started = api("POST", "/v1/supervisors/root/children", {"spec": spec}, role="operator")
    assert started.status == 201 and started.json == {"id": "extra"}
    assert started.headers["Location"] == "/v1/supervisors/root/children/extra"
    assert api.last_audit("/v1/supervisors/root/children")["target"] == "root/extra"
    pong = api("POST", "/v1/actors/extra/ask", {"type": PING, "payload": {"n": 3}})
    assert pong.json["payload"] == {"n": 3}

    again = api("POST", "/v1/supervisors/root/children", {"spec": spec})
    assert again.status == 409 and again.error["code"] == "already_started"
    running = api("POST", "/v1/supervisors/root/children/extra/restart", role="operator")
    assert running.status == 409 and running.error["code"] == "running"
    busy = api("DELETE", "/v1/supervisors/root/children/extra")
    assert busy.status == 409 and busy.error["code"] == "running"

    stopped = api("POST", "/v1/supervisors/root/children/extra/terminate", role="operator")
    assert stopped.status == 200 and stopped.json == {"ok": True}
    gone = api("POST", "/v1/actors/extra/ask", {"type": PING, "payload": {"n": 3}})
    assert gone.status == 502 and gone.error["code"] == "not_running"
    present = api("POST", "/v1/supervisors/root/children", {"spec": spec})
    assert present.status == 409 and present.error["code"] == "already_present"
    assert api("POST", "/v1/supervisors/root/children/extra/restart").json == {"ok": True}
    assert api("POST", "/v1/actors/extra/ask", {"type": PING, "payload": {"n": 4}}).status == 200
    assert api("POST", "/v1/supervisors/root/children/extra/terminate").status == 200
    deleted = api("DELETE", "/v1/supervisors/root/children/extra", role="operator")
    assert deleted.status == 200 and deleted.json == {"ok": True}
    missing = api("GET", "/v1/supervisors/root/children/extra")
    assert missing.status == 404 and missing.error["code"] == "not_found"
    line = api.last_audit("/v1/supervisors/root/children/extra")
    assert line["action"] == "get_childspec" and line["outcome"] == "error:not_found"


def test_simple_one_for_one_children(api: Api) -> None:
    first = api("POST", "/v1/supervisors/pool/children", {"args": {}})
    assert first.status == 201 and first.json["id"].startswith("pool-")
    named = api("POST", "/v1/supervisors/pool/children", {"args": {}, "id": "job-7"})
    assert named.json == {"id": "job-7"}
    assert api("POST", "/v1/actors/job-7/ask", {"type": PING, "payload": {"n": 7}}).status == 200
    dup = api("POST", "/v1/supervisors/pool/children", {"id": "job-7"})
    assert dup.status == 409 and dup.error["code"] == "already_started"
    sofo = api("POST", "/v1/supervisors/pool/children/job-7/restart")
    assert sofo.status == 409 and sofo.error["code"] == "simple_one_for_one"
    assert api("POST", "/v1/supervisors/pool/children/job-7/terminate").status == 200
    count = api("GET", "/v1/supervisors/pool/count").json
    assert count["specs"] == 1  # dynamic children are forgotten once terminated


def test_child_administration_errors(api: Api) -> None:
    worker = api("GET", "/v1/supervisors/echo/children")
    assert worker.status == 409 and worker.error["code"] == "not_a_supervisor"
    nobody = api("GET", "/v1/supervisors/nobody/count")
    assert nobody.status == 404 and nobody.error["code"] == "no_such_actor"
    invalid = api(
        "POST", "/v1/supervisors/root/children", {"spec": {"id": "x", "restart": "often"}}
    )
    assert invalid.status == 400 and invalid.error["code"] == "invalid_child_spec"
    locs = [e["loc"] for e in invalid.error["details"]["errors"]]
    assert ["spec", "restart"] in locs
    both = api("POST", "/v1/supervisors/root/children", {"spec": {"id": "x"}, "args": {}})
    assert both.status == 400 and both.error["code"] == "invalid_request"
    broken = api(
        "POST", "/v1/supervisors/root/children",
        {"spec": {"id": "broken", "actor": "callboard.actors.examples:NoSuchClass"}},
    )  # fmt: skip
    assert broken.status == 502 and broken.error["code"] == "start_failed"
    assert broken.error["details"]["child"] == "broken"
    assert "NoSuchClass" in broken.error["details"]["reason"]
    assert api("GET", "/v1/supervisors/root/children/broken").status == 404  # not kept


# -- auth, roles, routes ----------------------------------------------------------------------


def test_missing_or_bad_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    for kw in ({"role": None}, {"secret": "not-a-token"}, {"secret": ""}):
        answer = api("GET", "/v1/status", **kw)
        assert answer.status == 401, kw
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.error["code"] == "unauthorized"
    near_miss = SECRETS["admin"][:-1]
    answer = api("GET", "/v1/status", secret=near_miss)
    assert answer.status == 401 and near_miss not in answer.text
    assert near_miss not in api.audit_path.read_text()
    basic = api("GET", "/v1/tree", role=None, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status == 401
    # An unknown path without a token reveals nothing either.
    assert api("GET", "/v1/secret-place", role=None).status == 401
    line = api.last_audit("/v1/secret-place")
    assert line["token_id"] is None and line["role"] is None and line["outcome"] == "unauthorized"


def test_roles(api: Api) -> None:
    cases = [
        ("viewer", "POST", "/v1/supervisors/root/children/echo/restart", "restart_child"),
        ("viewer", "POST", "/v1/actors/echo/ask", "ask"),
        ("viewer", "POST", "/v1/actors/echo/tell", "tell"),
        ("operator", "POST", "/v1/actors/echo/kill", "kill"),
        ("operator", "POST", "/v1/stop", "stop"),
        ("viewer", "POST", "/v1/breakers", "set_breaker"),
    ]
    for role, method, path, action in cases:
        answer = api(method, path, {"type": PING, "payload": {"n": 1}}, role=role)
        assert answer.status == 403, (role, path)
        assert answer.error["code"] == "forbidden"
        assert answer.error["details"]["action"] == action
        line = api.last_audit(path)
        assert line["outcome"] == "denied" and line["status"] == 403
        assert line["token_id"] == TOKEN_IDS[role] and line["role"] == role
    assert api.system.running  # nothing was stopped


def test_unknown_route_404_and_wrong_method_405(api: Api) -> None:
    missing = api("GET", "/v1/nothing-here", role="viewer")
    assert missing.status == 404 and missing.error["code"] == "not_found"
    assert api("GET", "/v1/tree/", role="viewer").status == 404
    wrong = api("GET", "/v1/stop", role="viewer")
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"
    assert wrong.error["code"] == "method_not_allowed"
    child = api("PUT", "/v1/supervisors/root/children/echo", {})
    assert child.status == 405 and child.headers["Allow"] == "DELETE, GET"
    assert api("POST", "/healthz", role=None).status == 405  # public path: no token needed


def test_audit_lines_are_json_with_token_id_and_never_the_secret(api: Api) -> None:
    api("GET", "/v1/status", role="viewer")
    api("POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": 5}}, role="operator")
    api("GET", "/v1/status", secret=SECRETS["admin"] + "x")
    text = api.audit_path.read_text()
    for secret in SECRETS.values():
        assert secret not in text
    lines = api.audit()
    for line in lines:
        assert {"time", "token_id", "role", "action", "target", "outcome", "status"} <= set(line)
        assert line["path"] != "/healthz"
    ask = api.last_audit("/v1/actors/echo/ask")
    assert ask["token_id"] == "ci-operator" and ask["role"] == "operator"
    assert ask["action"] == "ask" and ask["target"] == "echo" and ask["outcome"] == "ok"
    assert ask["method"] == "POST" and ask["status"] == 200
    assert ask["remote"].startswith("127.0.0.1:")
    bad = api.last_audit("/v1/status")
    assert bad["token_id"] is None and bad["outcome"] == "unauthorized" and bad["status"] == 401
    assert stat.S_IMODE(api.audit_path.stat().st_mode) == 0o600


def test_requests_are_logged_without_secrets(api: Api, tmp_path: Path) -> None:
    log_file = tmp_path / "admin.log"
    configure_logging("info", str(log_file))
    try:
        api("GET", "/v1/tree", role="viewer")
        api("GET", "/v1/tree", secret="wrong-" + SECRETS["viewer"])
    finally:
        configure_logging("error")
    text = log_file.read_text()
    assert all(secret not in text for secret in SECRETS.values())
    events = [json.loads(line) for line in text.splitlines()]
    requests = [e for e in events if e["event"] == "admin_request"]
    assert [(e["status"], e["token_id"]) for e in requests] == [(200, "dash-viewer"), (401, None)]
    for event in requests:
        assert event["method"] == "GET" and event["path"] == "/v1/tree"
        assert isinstance(event["duration_ms"], float) and event["duration_ms"] >= 0


def test_unexpected_exception_is_500_generic_logged_and_the_server_lives_on(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("private detail /etc/shadow")

    monkeypatch.setattr(api.system, "tree", broken)
    log_file = tmp_path / "admin.log"
    configure_logging("info", str(log_file))
    try:
        answer = api("GET", "/v1/tree")
    finally:
        configure_logging("error")
    assert answer.status == 500
    assert answer.error["code"] == "internal_error"
    assert "private" not in answer.text
    assert api.last_audit("/v1/tree")["outcome"] == "error:internal_error"
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    [logged] = [e for e in events if e["event"] == "admin_internal_error"]
    assert "private detail" in logged["exception"]
    monkeypatch.undo()
    assert api("GET", "/v1/tree").status == 200


def test_keep_alive_survives_errors_with_unread_bodies(api: Api) -> None:
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = json.dumps({"type": PING, "payload": {"n": 1}})
        for auth, want in ((None, 401), (SECRETS["viewer"], 403), (SECRETS["admin"], 200)):
            headers = {"Content-Type": "application/json"}
            if auth:
                headers["Authorization"] = f"Bearer {auth}"
            conn.request("POST", "/v1/actors/echo/ask", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == want
    finally:
        conn.close()


def test_malformed_requests_get_the_json_error_shape(api: Api) -> None:
    host, port = api.url.removeprefix("http://").split(":")

    def raw(data: bytes) -> tuple[int, dict[str, Any]]:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    status, body = raw(b"NONSENSE\r\n\r\n")
    assert status == 400 and set(body["error"]) == {"code", "message", "details"}
    status, body = raw(b"BREW /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and body["error"]["code"] == "not_implemented"
    status, body = raw(
        b"POST /v1/actors/echo/ask HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Bearer " + SECRETS["admin"].encode() + b"\r\n\r\n0\r\n\r\n"
    )
    assert status == 411 and body["error"]["code"] == "length_required"


# -- circuit breakers -------------------------------------------------------------------------

BREAKER_CONFIG: dict[str, Any] = {
    "system": {"transport": "local", "log_level": "error"},
    "supervisor": {
        "children": [
            {"id": "echo", "actor": "callboard.actors.examples:Echo"},
            {"id": "echo2", "actor": "callboard.actors.examples:Echo"},
        ]
    },
    "policies": {"echo": {"breaker": {"min_calls": 2, "size": 4}}},
}


@pytest.fixture(scope="module")
def breaker_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with System.start(BREAKER_CONFIG) as own:
        with served(own, tmp_path_factory.mktemp("breaker-audit") / "audit.log") as answer:
            yield answer


def test_breakers_are_listed_and_forced_open_and_closed(breaker_api: Api) -> None:
    api = breaker_api
    ping = {"type": PING, "payload": {"n": 1}}
    assert api("POST", "/v1/actors/echo/ask", ping).status == 200  # the route is used
    listed = api("GET", "/v1/breakers", role="viewer")
    assert listed.status == 200
    [host] = listed.json["breakers"]
    assert (host["route"], host["state"], host["forced"]) == ("host->echo", "closed", False)
    assert host["counts"]["calls"] == 1 and host["calls_in_window"] == 1

    opened = api("POST", "/v1/breakers", {"route": "host->echo", "state": "open"}, role="operator")
    assert opened.status == 200
    [snap] = opened.json["changed"]
    assert (snap["route"], snap["state"], snap["forced"]) == ("host->echo", "open", True)
    assert snap["next_trial_s"] is None
    line = api.last_audit("/v1/breakers")
    assert (line["action"], line["target"], line["state"]) == ("set_breaker", "host->echo", "open")
    assert line["outcome"] == "ok" and line["token_id"] == "ci-operator"
    failed = api("POST", "/v1/actors/echo/ask", ping)
    assert failed.status == 502 and failed.error["code"] == "circuit_open"

    # A bare target: every caller's breaker for it (the host's and echo2's).
    closed = api("POST", "/v1/breakers", {"route": "echo", "state": "closed"})
    assert closed.status == 200
    assert {(b["route"], b["state"]) for b in closed.json["changed"]} == {
        ("host->echo", "closed"),
        ("echo2->echo", "closed"),
    }
    assert api("POST", "/v1/actors/echo/ask", ping).status == 200
    routes = [b["route"] for b in api("GET", "/v1/breakers").json["breakers"]]
    assert routes == ["echo2->echo", "host->echo"]


def test_set_breaker_errors(breaker_api: Api) -> None:
    api = breaker_api
    bad_state = api("POST", "/v1/breakers", {"route": "echo", "state": "half_open"})
    assert bad_state.status == 400 and bad_state.error["code"] == "invalid_request"
    assert [e["loc"] for e in bad_state.error["details"]["errors"]] == [["state"]]
    bad_route = api("POST", "/v1/breakers", {"route": "a->b->c", "state": "open"})
    assert bad_route.status == 400 and bad_route.error["code"] == "invalid_request"
    [err] = bad_route.error["details"]["errors"]
    assert err["loc"] == ["route"] and "invalid_route" in err["msg"]
    incomplete = api("POST", "/v1/breakers", {"route": "echo", "force": True})
    assert incomplete.status == 400
    assert {e["type"] for e in incomplete.error["details"]["errors"]} == {
        "missing",
        "extra_forbidden",
    }
    assert api("POST", "/v1/breakers").status == 400  # no body at all

    none = api("POST", "/v1/breakers", {"route": "host->echo2", "state": "open"})
    assert none.status == 404 and none.error["code"] == "no_such_breaker"
    assert none.error["details"]["route"] == "host->echo2"
    assert "host->echo2" in none.error["details"]["detail"]
    line = api.last_audit("/v1/breakers")
    assert line["outcome"] == "error:no_such_breaker" and line["target"] == "host->echo2"
    nobody = api("POST", "/v1/breakers", {"route": "nobody->echo", "state": "open"})
    assert nobody.status == 404 and nobody.error["code"] == "no_such_actor"
    # Nothing was left forced by the refusals.
    assert not [b for b in api("GET", "/v1/breakers").json["breakers"] if b["forced"]]


def test_set_breaker_value_error_is_400(breaker_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(route: str, state: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        raise ValueError("invalid_route: refused")

    monkeypatch.setattr(breaker_api.system, "set_breaker", refuse)
    answer = breaker_api("POST", "/v1/breakers", {"route": "echo", "state": "open"})
    assert answer.status == 400 and answer.error["code"] == "invalid_request"
    assert answer.error["message"] == "invalid_route: refused"


def test_breakers_roles(breaker_api: Api) -> None:
    api = breaker_api
    assert api("GET", "/v1/breakers", role="viewer").status == 200
    denied = api("POST", "/v1/breakers", {"route": "echo", "state": "open"}, role="viewer")
    assert denied.status == 403 and denied.error["details"] == {
        "action": "set_breaker",
        "role": "viewer",
        "required": "operator",
    }
    assert not [b for b in api("GET", "/v1/breakers").json["breakers"] if b["forced"]]
    assert api("GET", "/v1/breakers", role=None).status == 401
    wrong = api("DELETE", "/v1/breakers")
    assert wrong.status == 405 and wrong.headers["Allow"] == "GET, POST"


# -- queues and the bus -----------------------------------------------------------------------

QUEUE_CONFIG: dict[str, Any] = {
    "system": {"transport": "local", "log_level": "error"},
    "supervisor": {"children": [{"id": "echo", "actor": "callboard.actors.examples:Echo"}]},
    "queues": {"jobs": {"durable": False}, "other": {"durable": False}},
    "bus": {"enabled": True},
}
DLQ = "/v1/queues/jobs/dead-letters"


@pytest.fixture(scope="module")
def queue_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The services subtree (queues ``jobs`` and ``other``, the bus) on the local transport."""
    with System.start(QUEUE_CONFIG) as own:
        with served(own, tmp_path_factory.mktemp("queue-audit") / "audit.log") as answer:
            yield answer


@pytest.fixture
def dead(queue_api: Api) -> Iterator[list[str]]:
    """Three dead letters on ``jobs``, oldest first, with ids no other test uses (a replayed
    one stays on the queue); no dead letter is left afterwards."""
    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i}" for i in range(3)]
    for i, msg_id in enumerate(ids):
        item = Item(id=msg_id, type=PING, data={"n": i})
        queue_api.system.ask("queue.jobs", AddDeadLetter(item=item, reason="test", detail="boom"))
    yield ids
    queue_api.system.purge_dead_letters("jobs")


def test_queue_stats(queue_api: Api) -> None:
    api = queue_api
    answer = api("GET", "/v1/queues/jobs", role="viewer")
    assert answer.status == 200 and set(answer.json) == {"stats"}
    stats = answer.json["stats"]
    assert (stats["queue"], stats["durable"]) == ("jobs", False)
    assert {"ready", "in_flight", "dead_letters", "depth_by_priority", "consumers"} <= set(stats)
    line = api.last_audit("/v1/queues/jobs")
    assert (line["action"], line["target"], line["outcome"]) == ("queue_stats", "jobs", "ok")
    # The queue the runtime adds for what could not be delivered anywhere.
    assert api("GET", "/v1/queues/dead_letters").json["stats"]["queue"] == "dead_letters"


def test_unknown_queue_is_404_and_a_bad_name_400(queue_api: Api) -> None:
    api = queue_api
    for method, suffix, body in (
        ("GET", "", None),
        ("GET", "/dead-letters", None),
        ("POST", "/dead-letters/replay", {"ids": None}),
        ("POST", "/dead-letters/purge", {"ids": None}),
        ("POST", "/messages", {"type": PING, "data": {"n": 1}}),
    ):
        nobody = api(method, "/v1/queues/nope" + suffix, body)
        assert nobody.status == 404, suffix
        assert nobody.error["code"] == "no_such_actor"
        assert nobody.error["details"] == {"actor": "queue.nope", "queue": "nope"}
        assert "no queue named 'nope'" in nobody.error["message"]
    for name in ("bad.name", "a%2Fb", "x" * 65, "%20"):
        bad = api("GET", f"/v1/queues/{name}")
        assert bad.status == 400, name
        assert bad.error["code"] == "invalid_request"
        [err] = bad.error["details"]["errors"]
        assert err["loc"] == ["path", "name"] and err["type"] == "string_pattern_mismatch"
    assert api("GET", "/v1/queues/" + "x" * 64).status == 404  # 64 characters: a valid name
    line = api.last_audit("/v1/queues/a%2Fb")
    assert line["outcome"] == "error:invalid_request" and line["target"] == "a/b"


def test_dead_letters_are_listed_oldest_first(queue_api: Api, dead: list[str]) -> None:
    answer = queue_api("GET", DLQ, role="viewer")
    assert answer.status == 200 and set(answer.json) == {"dead_letters"}
    listed = answer.json["dead_letters"]
    assert [d["id"] for d in listed] == dead
    first = listed[0]
    assert (first["type"], first["data"], first["reason"], first["detail"]) == (
        PING, {"n": 0}, "test", "boom",
    )  # fmt: skip
    assert {"version", "priority", "deliveries", "dead_at", "history"} <= set(first)
    assert queue_api("GET", "/v1/queues/other/dead-letters").json == {"dead_letters": []}
    assert queue_api.last_audit(DLQ)["action"] == "dead_letters"


def _endpoint(api: Api, method: str, path: str, query: str = "", body: Any = None) -> Reply:
    """Call a route's endpoint directly, as the server does, with a query string."""
    res = resolve(method, path)
    assert res.route is not None
    call = Call(api.system, res.params, body or {}, api.url, None, query=query)
    return res.route.endpoint(call)


def test_dead_letters_limit_and_offset(queue_api: Api, dead: list[str]) -> None:
    def page(query: str) -> list[str]:
        reply = _endpoint(queue_api, "GET", DLQ, query)
        return [d["id"] for d in reply.body["dead_letters"]]

    assert page("") == dead
    assert page("limit=2") == dead[:2]
    assert page("offset=1") == dead[1:]
    assert page("limit=1&offset=1") == [dead[1]]
    assert page("offset=3") == []


@pytest.mark.parametrize(
    ("query", "loc", "kind"),
    [
        ("limit=0", ["query", "limit"], "greater_than_equal"),
        ("limit=10001", ["query", "limit"], "less_than_equal"),
        ("offset=-1", ["query", "offset"], "greater_than_equal"),
        ("limit=many", ["query", "limit"], "int_parsing"),
        ("limit=", ["query", "limit"], "int_parsing"),
        ("limit=1&limit=2", ["query", "limit"], "repeated"),
        ("page=2", ["query", "page"], "extra_forbidden"),
        ("limit", ["query"], "value_error"),
    ],
)
def test_dead_letters_bad_query_is_400(
    queue_api: Api, query: str, loc: list[str], kind: str
) -> None:
    with pytest.raises(ApiError) as info:
        _endpoint(queue_api, "GET", DLQ, query)
    err = info.value
    assert (err.status, err.code) == (400, "invalid_request")
    [e] = err.details["errors"]
    assert (e["loc"], e["type"]) == (loc, kind)


def test_dead_letters_query_over_http(queue_api: Api, dead: list[str]) -> None:
    answer = queue_api("GET", DLQ + "?limit=1&offset=1")
    assert [d["id"] for d in answer.json["dead_letters"]] == [dead[1]]


def test_replay_dead_letters_by_id_then_all(queue_api: Api, dead: list[str]) -> None:
    api = queue_api
    before = api.system.queue_stats("jobs")["ready"]
    some = api("POST", DLQ + "/replay", {"ids": [dead[0], "unknown"]}, role="operator")
    assert some.status == 200 and some.json == {"replayed": 1}
    line = api.last_audit(DLQ + "/replay")
    assert (line["action"], line["target"], line["all"]) == ("replay_dead_letters", "jobs", False)
    assert [d["id"] for d in api("GET", DLQ).json["dead_letters"]] == dead[1:]
    assert api("POST", DLQ + "/replay", {"ids": []}).json == {"replayed": 0}
    every = api("POST", DLQ + "/replay", {"ids": None}, role="operator")
    assert every.json == {"replayed": 2} and api.last_audit(DLQ + "/replay")["all"] is True
    assert api("GET", DLQ).json == {"dead_letters": []}
    stats = api.system.queue_stats("jobs")
    assert stats["ready"] == before + 3 and stats["dead_letters"] == 0


def test_purge_dead_letters_by_id_then_all(queue_api: Api, dead: list[str]) -> None:
    api = queue_api
    before = api.system.queue_stats("jobs")["ready"]
    some = api("POST", DLQ + "/purge", {"ids": [dead[1], dead[1], "unknown"]}, role="admin")
    assert some.status == 200 and some.json == {"purged": 1}
    line = api.last_audit(DLQ + "/purge")
    assert (line["action"], line["target"], line["all"]) == ("purge_dead_letters", "jobs", False)
    assert [d["id"] for d in api("GET", DLQ).json["dead_letters"]] == [dead[0], dead[2]]
    assert api("POST", DLQ + "/purge", {"ids": []}).json == {"purged": 0}  # not "all"
    every = api("POST", DLQ + "/purge", {"ids": None})
    assert every.json == {"purged": 2} and api.last_audit(DLQ + "/purge")["all"] is True
    assert api("GET", DLQ).json == {"dead_letters": []}
    assert api.system.queue_stats("jobs")["ready"] == before  # gone, not back on the queue


@pytest.mark.parametrize("action", ["replay", "purge"])
def test_replay_and_purge_bodies_are_strict(queue_api: Api, dead: list[str], action: str) -> None:
    path = f"{DLQ}/{action}"
    for body, kinds in (
        (None, {"missing"}),  # no body: ids must be given, null meaning all
        ({}, {"missing"}),
        ({"ids": dead[0]}, {"list_type"}),
        ({"ids": [""]}, {"string_too_short"}),
        ({"ids": ["x" * 129]}, {"string_too_long"}),
        ({"ids": None, "all": True}, {"extra_forbidden"}),
    ):
        answer = queue_api("POST", path, body)
        assert answer.status == 400, body
        assert answer.error["code"] == "invalid_request"
        assert {e["type"] for e in answer.error["details"]["errors"]} == kinds, body
    assert len(queue_api("GET", DLQ).json["dead_letters"]) == 3  # nothing was touched


def test_enqueue(queue_api: Api) -> None:
    api = queue_api
    path = "/v1/queues/other/messages"
    before = api.system.queue_stats("other")
    body = {"type": PING, "data": {"n": 5}, "priority": 9, "id": "m-1"}
    answer = api("POST", path, body, role="operator")
    assert answer.status == 202 and answer.json == {"id": "m-1"}
    line = api.last_audit(path)
    assert (line["action"], line["target"], line["message_type"]) == ("enqueue", "other", PING)
    stats = api.system.queue_stats("other")
    assert stats["ready"] == before["ready"] + 1
    assert stats["depth_by_priority"][9] == before["depth_by_priority"][9] + 1
    again = api("POST", path, body)  # the same id: a duplicate, dropped
    assert again.status == 202 and again.json == {"id": "m-1"}
    stats = api.system.queue_stats("other")
    assert stats["ready"] == before["ready"] + 1
    assert stats["duplicates_total"] == before["duplicates_total"] + 1
    fresh = api("POST", path, {"type": PING, "data": {"n": 6}})
    assert fresh.status == 202 and isinstance(fresh.json["id"], str) and fresh.json["id"]
    assert fresh.json["id"] != "m-1"
    stats = api.system.queue_stats("other")
    assert stats["depth_by_priority"][0] == before["depth_by_priority"][0] + 1


def test_enqueue_validates_the_message_and_the_body(queue_api: Api) -> None:
    api = queue_api
    path = "/v1/queues/jobs/messages"
    before = api.system.queue_stats("jobs")["enqueued_total"]
    unknown = api("POST", path, {"type": "no.such.Type", "data": {}})
    assert unknown.status == 400 and unknown.error["code"] == "invalid_message"
    assert unknown.error["details"]["reason"] == "unknown_type"
    bad = api("POST", path, {"type": PING, "data": {"n": "many"}})
    assert bad.status == 400 and bad.error["details"]["reason"] == "invalid_fields"
    [e] = bad.error["details"]["errors"]
    assert e["loc"] == ["data", "n"] and e["type"] == "int_parsing"
    assert api.last_audit(path)["message_type"] == PING
    for body, loc in (
        ({"type": PING, "data": {"n": 1}, "priority": 10}, ["priority"]),
        ({"type": PING, "data": {"n": 1}, "priority": -1}, ["priority"]),
        ({"type": PING, "data": {"n": 1}, "id": ""}, ["id"]),
        ({"type": PING, "data": {"n": 1}, "payload": {}}, ["payload"]),
        ({"type": PING, "data": [1]}, ["data"]),
        ({"data": {"n": 1}}, ["type"]),
    ):
        answer = api("POST", path, body)
        assert answer.status == 400 and answer.error["code"] == "invalid_request", body
        assert [e["loc"] for e in answer.error["details"]["errors"]] == [loc], body
    assert api.system.queue_stats("jobs")["enqueued_total"] == before  # nothing was enqueued


def test_bus_stats_and_publish(queue_api: Api) -> None:
    api = queue_api
    with api.system.subscribe("orders.#") as sub:
        published = api("POST", "/v1/bus/publish",
                        {"topic": "orders.eu", "type": PING, "data": {"n": 3}},
                        role="operator")  # fmt: skip
        assert published.status == 200 and published.json == {"subscribers": 1}
        assert sub.get(10) == ("orders.eu", Ping(n=3))
        line = api.last_audit("/v1/bus/publish")
        assert (line["action"], line["target"], line["message_type"]) == (
            "publish", "orders.eu", PING,
        )  # fmt: skip
        nobody = api("POST", "/v1/bus/publish", {"topic": "invoices", "type": PING,
                                                 "data": {"n": 1}})  # fmt: skip
        assert nobody.json == {"subscribers": 0}
        stats = api("GET", "/v1/bus", role="viewer")
        assert stats.status == 200 and set(stats.json) == {"stats"}
        assert stats.json["stats"]["published"] >= 2
        [entry] = [s for s in stats.json["stats"]["subscriptions"].values()
                   if s["pattern"] == "orders.#"]  # fmt: skip
        assert entry["subscriber"] is None and entry["offered"] == 1
        assert api.last_audit("/v1/bus")["action"] == "bus_stats"


def test_publish_errors(queue_api: Api) -> None:
    api = queue_api
    for topic in ("orders..eu", "orders.*", "orders.#", "", "a b"):
        bad = api("POST", "/v1/bus/publish", {"topic": topic, "type": PING, "data": {"n": 1}})
        assert bad.status == 400 and bad.error["code"] == "invalid_request", topic
        [err] = bad.error["details"]["errors"]
        assert err["loc"] == ["topic"], topic
    bad = api("POST", "/v1/bus/publish", {"topic": "orders..eu", "type": PING})
    assert "invalid_topic" in bad.error["details"]["errors"][0]["msg"]
    unknown = api("POST", "/v1/bus/publish", {"topic": "a", "type": "no.such.Type"})
    assert unknown.status == 400 and unknown.error["details"]["reason"] == "unknown_type"
    invalid = api("POST", "/v1/bus/publish", {"topic": "a", "type": PING, "data": {}})
    assert invalid.status == 400 and invalid.error["code"] == "invalid_message"
    assert invalid.error["details"]["errors"][0]["loc"] == ["data", "n"]
    extra = api("POST", "/v1/bus/publish", {"topic": "a", "type": PING, "data": {"n": 1},
                                            "priority": 1})  # fmt: skip
    assert extra.status == 400 and extra.error["details"]["errors"][0]["type"] == "extra_forbidden"


def test_queue_and_bus_roles(queue_api: Api, dead: list[str]) -> None:
    api = queue_api
    before = api.system.queue_stats("jobs")["enqueued_total"]
    for path in ("/v1/queues/jobs", DLQ, "/v1/bus"):
        assert api("GET", path, role="viewer").status == 200, path
    cases = [
        ("viewer", DLQ + "/replay", {"ids": None}, "replay_dead_letters", "operator"),
        ("viewer", "/v1/queues/jobs/messages", {"type": PING, "data": {"n": 1}}, "enqueue",
         "operator"),
        ("viewer", "/v1/bus/publish", {"topic": "a", "type": PING, "data": {"n": 1}}, "publish",
         "operator"),
        ("operator", DLQ + "/purge", {"ids": None}, "purge_dead_letters", "admin"),
    ]  # fmt: skip
    for role, path, body, action, need in cases:
        answer = api("POST", path, body, role=role)
        assert answer.status == 403, (role, path)
        assert answer.error["details"] == {"action": action, "role": role, "required": need}
        line = api.last_audit(path)
        assert line["outcome"] == "denied" and line["token_id"] == TOKEN_IDS[role]
    assert [d["id"] for d in api("GET", DLQ).json["dead_letters"]] == dead  # all still there
    assert api.system.queue_stats("jobs")["enqueued_total"] == before
    assert api("GET", "/v1/bus", role=None).status == 401


def test_queue_and_bus_routes_and_methods(queue_api: Api) -> None:
    api = queue_api
    for method, path, allow in (
        ("GET", "/v1/queues/jobs/messages", "POST"),
        ("POST", "/v1/queues/jobs", "GET"),
        ("DELETE", DLQ, "GET"),
        ("GET", DLQ + "/purge", "POST"),
        ("POST", "/v1/bus", "GET"),
        ("GET", "/v1/bus/publish", "POST"),
    ):
        answer = api(method, path)
        assert answer.status == 405 and answer.headers["Allow"] == allow, (method, path)
    assert api("GET", "/v1/queues").status == 404
    assert api("GET", "/v1/queues/jobs/nothing").status == 404


def test_without_queues_or_bus_the_services_are_404(api: Api) -> None:
    bus = api("GET", "/v1/bus")
    assert bus.status == 404 and bus.error["code"] == "no_such_actor"
    assert bus.error["details"] == {"actor": "bus"}
    assert "[bus] enabled = true" in bus.error["message"]
    publish = api("POST", "/v1/bus/publish", {"topic": "a", "type": PING, "data": {"n": 1}})
    assert publish.status == 404 and publish.error["details"] == {"actor": "bus"}
    queue = api("GET", "/v1/queues/jobs")
    assert queue.status == 404
    assert queue.error["details"] == {"actor": "queue.jobs", "queue": "jobs"}


# -- stop -------------------------------------------------------------------------------------


def test_stop_answers_202_then_calls_on_stop(system: System, tmp_path: Path) -> None:
    stopped = threading.Event()
    sent: list[bool] = []

    def on_stop() -> None:
        sent.append(True)
        stopped.set()

    server, audit = serve(system, tmp_path, on_stop=on_stop)
    try:
        answer = request(server.url, "POST", "/v1/stop")
        assert answer.status == 202 and answer.json == {"stopping": True}
        assert stopped.wait(10)
        assert sent == [True]
        assert system.running  # on_stop decides what stopping means
        line = json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])
        assert (line["action"], line["outcome"], line["token_id"]) == ("stop", "ok", "ops-admin")
    finally:
        server.close()
        audit.close()


def test_stop_without_on_stop_stops_the_system_then_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with System.start(CONFIG) as own:
        stopped = threading.Event()
        real_stop = own.stop

        def stop() -> None:
            real_stop()
            stopped.set()

        monkeypatch.setattr(own, "stop", stop)
        server, audit = serve(own, tmp_path)
        try:
            assert request(server.url, "POST", "/v1/stop").status == 202
            assert stopped.wait(30)
            assert not own.running
            ready = request(server.url, "GET", "/readyz")
            assert ready.status == 503 and ready.error["code"] == "not_ready"
            status = request(server.url, "GET", "/v1/status")
            assert status.status == 503 and status.error["code"] == "system_not_running"
            ask = request(
                server.url, "POST", "/v1/actors/echo/ask", {"type": PING, "payload": {"n": 1}}
            )
            assert ask.status == 503
            assert request(server.url, "GET", "/healthz").status == 200  # the API process lives
        finally:
            server.close()
            audit.close()


# -- TLS --------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        import datetime as dt

        from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
        from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found, unused-ignore]
        from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found, unused-ignore]
        from cryptography.x509.oid import NameOID  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl tool is available")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return cert, key
    import ipaddress

    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pkey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(pkey, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


def test_tls(system: System, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server, audit = serve(system, tmp_path, tls_cert=str(cert), tls_key=str(key))
    try:
        assert server.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        answer = request(server.url, "GET", "/v1/status", role="viewer", context=context)
        assert answer.status == 200 and answer.json["api_url"] == server.url
        assert request(server.url, "GET", "/v1/status", role=None, context=context).status == 401
        # Plain HTTP to the TLS port fails for that client only.
        plain = server.url.replace("https://", "http://")
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            request(plain, "GET", "/healthz", role=None)
        # A client that does not trust the certificate is refused by its own TLS check.
        with pytest.raises(urllib.error.URLError):
            request(server.url, "GET", "/healthz", role=None, context=ssl.create_default_context())
        assert request(server.url, "GET", "/healthz", role=None, context=context).status == 200
    finally:
        server.close()
        audit.close()


def test_tls_needs_both_files_and_readable_ones(system: System, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    with pytest.raises(ValueError):
        AdminServer(system, token_store(), audit, "127.0.0.1", 0, tls_cert="c.pem")
    server = AdminServer(
        system, token_store(), audit, "127.0.0.1", 0,
        tls_cert=str(tmp_path / "missing.pem"), tls_key=str(tmp_path / "missing.key"),
    )  # fmt: skip
    with pytest.raises(OSError):
        server.start()
    audit.close()


# -- tokens -----------------------------------------------------------------------------------


def test_load_tokens_generates_an_admin_token_once_and_reuses_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = DaemonSettings(state_dir=str(state))
    store, path = load_tokens(settings)
    assert path == state / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert len(secret) >= 32
    token = store.authenticate(secret)
    assert token is not None and (token.id, token.role) == ("admin", "admin")
    again, path2 = load_tokens(settings)
    assert path2 == path and path.read_text().strip() == secret
    assert again.authenticate(secret) is not None and len(again) == 1


def test_load_tokens_reads_configured_secret_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "viewer.secret").write_text("viewer-secret\n")
    elsewhere = tmp_path / "ops.secret"
    elsewhere.write_text("  ops-secret  \n")
    settings = DaemonSettings(
        state_dir=str(state),
        tokens=[
            {"id": "ci-viewer", "role": "viewer", "secret_file": "viewer.secret"},
            {"id": "ops", "role": "admin", "secret_file": str(elsewhere)},
        ],
    )
    store, path = load_tokens(settings)
    assert path is None and not (state / "admin.token").exists()
    viewer, ops = store.authenticate("viewer-secret"), store.authenticate("ops-secret")
    assert viewer is not None and (viewer.id, viewer.role) == ("ci-viewer", "viewer")
    assert ops is not None and (ops.id, ops.role) == ("ops", "admin")
    assert store.authenticate("nope") is None


def test_load_tokens_refuses_missing_files_and_shared_secrets(tmp_path: Path) -> None:
    missing = DaemonSettings(
        state_dir=str(tmp_path),
        tokens=[{"id": "a", "role": "viewer", "secret_file": "absent.secret"}],
    )
    with pytest.raises(ConfigError) as info:
        load_tokens(missing)
    assert info.value.errors[0][0] == "daemon.tokens.0.secret_file"
    (tmp_path / "one").write_text("same")
    (tmp_path / "two").write_text("same")
    shared = DaemonSettings(
        state_dir=str(tmp_path),
        tokens=[
            {"id": "a", "role": "viewer", "secret_file": "one"},
            {"id": "b", "role": "admin", "secret_file": "two"},
        ],
    )
    with pytest.raises(ConfigError, match="same secret"):
        load_tokens(shared)


# -- the error mapping, for the errors a healthy local system cannot produce ----------------


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidMessage("oversized", "too big"), 400, "invalid_message"),
        (NoSuchActor("x"), 404, "no_such_actor"),
        (NoSuchBreaker("a->b", "a did not answer"), 404, "no_such_breaker"),
        (SupervisorError("not_found"), 404, "not_found"),
        (SupervisorError("invalid_child_spec", "bad"), 400, "invalid_child_spec"),
        (SupervisorError("running"), 409, "running"),
        (SupervisorError("restarting"), 409, "restarting"),
        (SupervisorError("already_present"), 409, "already_present"),
        (SupervisorError("already_started"), 409, "already_started"),
        (SupervisorError("simple_one_for_one"), 409, "simple_one_for_one"),
        (SupervisorError("not_a_supervisor"), 409, "not_a_supervisor"),
        (RemoteError("out_of_stock", "none left", {"sku": 1}), 502, "out_of_stock"),
        (StartFailed("w", "boom"), 502, "start_failed"),
        (AskTimeout("late"), 504, "timeout"),
        (SystemFailed("root gave up"), 503, "system_failed"),
        (SystemNotRunning("stopped"), 503, "system_not_running"),
        (CallboardError("nope"), 409, "refused"),
        (KeyError("secret"), 500, "internal_error"),
    ],
)
def test_error_mapping(exc: Exception, status: int, code: str) -> None:
    err = from_exception(exc)
    assert (err.status, err.code) == (status, code)
    assert set(err.body()["error"]) == {"code", "message", "details"}
    if status == 500:
        assert "secret" not in json.dumps(err.body())
    if isinstance(exc, RemoteError):
        assert err.details == {"sku": 1}
    if isinstance(exc, StartFailed):
        assert err.details == {"child": "w", "reason": "boom"}
    if isinstance(exc, NoSuchBreaker):
        assert err.details == {"route": "a->b", "detail": "a did not answer"}
