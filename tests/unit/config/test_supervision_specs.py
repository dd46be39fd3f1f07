"""The OTP supervisor contract of the config: flags, child specs, nested supervisors,
defaults, and every rejection reason with the key path it is reported at."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from callboard.config import (
    Backoff,
    ChildSpec,
    Config,
    Liveness,
    SupervisorFlags,
    SupervisorSpec,
    dump_config,
    load_config,
)
from callboard.errors import ConfigError

# What users write: a root with a worker, a nested supervisor as a [supervisor...] table
# of an array item, and one more level below it as an inline table.
TREE = """\
[supervisor]
strategy = "one_for_all"
intensity = 5
period = 10.0

[[supervisor.children]]
id = "db"
actor = "pkg.db:Pool"
args = { size = 4 }

[[supervisor.children]]
id = "workers"
restart = "transient"

[supervisor.children.supervisor]
strategy = "rest_for_one"
auto_shutdown = "any_significant"

[[supervisor.children.supervisor.children]]
id = "fetcher"
actor = "pkg.work:Fetcher"
restart = "transient"
significant = true
backoff = { min = 0.5, max = 8.0 }
liveness = { interval = 2.0, timeout = 1.0 }

[[supervisor.children.supervisor.children]]
id = "pool"
supervisor = { strategy = "simple_one_for_one", children = [
  { id = "job", actor = "pkg.work:Job", restart = "temporary", shutdown = "brutal_kill" },
] }
"""


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith("CALLBOARD_"):
            monkeypatch.delenv(var)
    yield


def from_toml(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "callboard.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={})


def toml_errors(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    path = tmp_path / "callboard.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.source == str(path)
    return info.value.errors


def dict_errors(supervisor: dict[str, Any], env: dict[str, str] | None = None) -> list[Any]:
    with pytest.raises(ConfigError) as info:
        load_config({"supervisor": supervisor}, env=env or {})
    assert info.value.source == "<dict>"
    return info.value.errors


def worker(cid: str, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "actor": "m:A", **extra}


def nested(cid: str, *children: dict[str, Any], **flags: Any) -> dict[str, Any]:
    return {"id": cid, "supervisor": {**flags, "children": list(children)}}


# --- the shape -------------------------------------------------------------------------


def test_nested_tree_from_toml(tmp_path: Path) -> None:
    cfg = from_toml(tmp_path, TREE)
    root = cfg.supervisor
    assert isinstance(root, SupervisorSpec)
    assert (root.id, root.strategy, root.intensity, root.period) == ("root", "one_for_all", 5, 10)
    db, workers = root.children
    assert not db.is_supervisor and db.actor == "pkg.db:Pool" and db.args == {"size": 4}
    assert workers.is_supervisor and workers.actor is None
    assert workers.restart == "transient"
    sub = workers.supervisor
    assert isinstance(sub, SupervisorFlags) and not isinstance(sub, SupervisorSpec)
    assert (sub.strategy, sub.auto_shutdown) == ("rest_for_one", "any_significant")
    fetcher, pool = sub.children
    assert fetcher.significant and fetcher.restart == "transient"
    assert fetcher.backoff == Backoff(min=0.5, max=8.0, jitter=0.1, reset_after=10.0)
    assert fetcher.liveness == Liveness(interval=2.0, timeout=1.0)
    assert pool.supervisor is not None
    assert pool.supervisor.strategy == "simple_one_for_one"
    (job,) = pool.supervisor.children
    assert (job.id, job.restart, job.shutdown) == ("job", "temporary", "brutal_kill")
    assert [(loc, c.id) for loc, c in root.walk()] == [
        (("children", 0), "db"),
        (("children", 1), "workers"),
        (("children", 1, "supervisor", "children", 0), "fetcher"),
        (("children", 1, "supervisor", "children", 1), "pool"),
        (("children", 1, "supervisor", "children", 1, "supervisor", "children", 0), "job"),
    ]


def test_defaults() -> None:
    cfg = load_config(
        {"supervisor": {"children": [worker("w"), nested("s", worker("w2"))]}}, env={}
    )
    root = cfg.supervisor
    assert (root.id, root.strategy, root.intensity, root.period) == ("root", "one_for_one", 3, 5)
    assert root.auto_shutdown == "never"
    w, s = root.children
    assert (w.restart, w.shutdown, w.significant, w.args) == ("permanent", 5.0, False, {})
    assert (w.backoff, w.liveness, w.supervisor) == (None, None, None)
    # OTP: 5000 ms for a worker, infinity for a supervisor (its subtree needs the time).
    assert s.shutdown == "infinity"
    assert s.supervisor is not None and s.supervisor.children[0].shutdown == 5.0
    assert s.supervisor.auto_shutdown == "never"
    assert (s.supervisor.strategy, s.supervisor.intensity, s.supervisor.period) == (
        "one_for_one",
        3,
        5.0,
    )


def test_shutdown_kind_default_is_filled_in_and_explicit_values_win() -> None:
    assert ChildSpec(id="a", actor="m:A").shutdown == 5.0
    assert ChildSpec(id="s", supervisor=SupervisorFlags()).shutdown == "infinity"
    explicit = ChildSpec.model_validate({"id": "s", "supervisor": {}, "shutdown": 30})
    assert explicit.shutdown == 30.0 and isinstance(explicit.shutdown, float)
    assert ChildSpec.model_validate({"id": "a", "actor": "m:A", "shutdown": None}).shutdown == 5.0
    assert ChildSpec.model_validate({"id": "a", "actor": "m:A", "shutdown": 0}).shutdown == 0.0
    assert ChildSpec(id="a", actor="m:A", shutdown="infinity").shutdown == "infinity"


def test_backoff_defaults() -> None:
    assert Backoff() == Backoff(min=0.0, max=30.0, jitter=0.1, reset_after=10.0)
    cfg = load_config({"supervisor": {"children": [worker("w", backoff={})]}}, env={})
    assert cfg.supervisor.children[0].backoff == Backoff()
    assert Backoff(min=30.0).max == 30.0  # max == min is fine


def test_empty_and_default_configs_still_load() -> None:
    assert load_config({}, env={}) == Config()
    default = load_config(env={})
    assert [c.id for _, c in default.supervisor.walk()] == [
        "echo", "pipeline", "knowledge_base", "decision_support", "reward_model",
        "rejection_sampling", "reasoning_engine",
    ]  # fmt: skip
    assert default.supervisor.auto_shutdown == "never"


@pytest.mark.parametrize(
    ("supervisor", "what"),
    [
        (
            {
                "auto_shutdown": "any_significant",
                "children": [worker("w", restart="transient", significant=True)],
            },
            "significant transient under any_significant",
        ),
        (
            {
                "auto_shutdown": "all_significant",
                "children": [
                    worker("a", restart="temporary", significant=True),
                    worker("b", restart="transient", significant=True),
                    worker("c"),
                ],
            },
            "significant temporary/transient under all_significant",
        ),
        (
            {"strategy": "simple_one_for_one", "children": [worker("tpl")]},
            "simple_one_for_one with one (permanent) template",
        ),
        (
            {"strategy": "simple_one_for_one", "children": [worker("tpl", restart="temporary")]},
            "simple_one_for_one with a temporary template",
        ),
        (
            {"auto_shutdown": "any_significant", "children": [worker("w")]},
            "auto_shutdown without significant children",
        ),
        (
            {
                "children": [
                    nested(
                        "sub",
                        worker("w", restart="temporary", significant=True),
                        auto_shutdown="any_significant",
                    )
                ]
            },
            "auto_shutdown on a nested supervisor only",
        ),
        (
            {
                "children": [
                    worker("w", shutdown="infinity", liveness={"interval": 1, "timeout": 5}),
                    worker("x", shutdown=0, backoff={"min": 1, "max": 1, "jitter": 0}),
                    worker("y", backoff={"jitter": 1, "reset_after": 0}),
                ]
            },
            "edge values",
        ),
        ({"intensity": 0, "period": 0.001, "children": []}, "zero intensity, tiny period"),
    ],
)
def test_valid_combinations(supervisor: dict[str, Any], what: str) -> None:
    assert load_config({"supervisor": supervisor}, env={}).supervisor is not None, what


def test_significant_nested_supervisor_child_is_allowed() -> None:
    cfg = load_config(
        {
            "supervisor": {
                "auto_shutdown": "all_significant",
                "children": [
                    {**nested("sub", worker("w")), "restart": "transient", "significant": True}
                ],
            }
        },
        env={},
    )
    assert cfg.supervisor.children[0].significant


# --- rejections: each reason at its key path -------------------------------------------

STRATEGIES = "one_for_one, one_for_all, rest_for_one, simple_one_for_one"


REJECTIONS: list[tuple[dict[str, Any], str, str]] = [
    (
        {"strategy": "one_for_none"},
        "supervisor.strategy",
        f"invalid_strategy: 'one_for_none' is not one of {STRATEGIES}",
    ),
    (
        {"strategy": 1},
        "supervisor.strategy",
        f"invalid_strategy: 1 is not one of {STRATEGIES}",
    ),
    ({"intensity": -1}, "supervisor.intensity", "invalid_intensity: -1 is not an integer >= 0"),
    (
        {"intensity": 1.5},
        "supervisor.intensity",
        "invalid_intensity: 1.5 is not an integer >= 0",
    ),
    (
        {"intensity": True},
        "supervisor.intensity",
        "invalid_intensity: True is not an integer >= 0",
    ),
    ({"period": 0}, "supervisor.period", "invalid_period: 0 is not a number of seconds > 0"),
    (
        {"period": "soon"},
        "supervisor.period",
        "invalid_period: 'soon' is not a number of seconds > 0",
    ),
    (
        {"auto_shutdown": "always"},
        "supervisor.auto_shutdown",
        "invalid_auto_shutdown: 'always' is not one of never, any_significant, all_significant",
    ),
    (
        {"children": [worker("a", restart="sometimes")]},
        "supervisor.children.0.restart",
        "invalid_restart_type: 'sometimes' is not one of permanent, transient, temporary",
    ),
    (
        {"children": [worker("a", shutdown=-1)]},
        "supervisor.children.0.shutdown",
        "invalid_shutdown: -1 is not a number of seconds >= 0, 'brutal_kill' or 'infinity'",
    ),
    (
        {"children": [worker("a", shutdown="never")]},
        "supervisor.children.0.shutdown",
        "invalid_shutdown: 'never' is not a number of seconds >= 0, 'brutal_kill' or 'infinity'",
    ),
    (
        {"children": [worker("a", shutdown=float("inf"))]},
        "supervisor.children.0.shutdown",
        "invalid_shutdown: inf is not a number of seconds >= 0, 'brutal_kill' or 'infinity'",
    ),
    (
        {"children": [worker("a", shutdown=True)]},
        "supervisor.children.0.shutdown",
        "invalid_shutdown: True is not a number of seconds >= 0, 'brutal_kill' or 'infinity'",
    ),
    (
        {
            "auto_shutdown": "any_significant",
            "children": [worker("a", significant=True)],
        },
        "supervisor.children.0.significant",
        "invalid_significant: a significant child must be transient or temporary, not "
        "permanent (a permanent child is always restarted, so it never ends for good)",
    ),
    (
        {
            "auto_shutdown": "any_significant",
            "children": [worker("a", restart="temporary", significant="yes")],
        },
        "supervisor.children.0.significant",
        "invalid_significant: 'yes' is not a boolean",
    ),
    (
        {"children": [worker("a"), worker("b", restart="transient", significant=True)]},
        "supervisor.children.1.significant",
        "bad_combination: 'b' is significant but its supervisor has auto_shutdown = "
        "'never' (use any_significant or all_significant, or make it not significant)",
    ),
    (
        {
            "strategy": "simple_one_for_one",
            "auto_shutdown": "any_significant",
            "children": [worker("tpl", restart="temporary", significant=True)],
        },
        "supervisor.auto_shutdown",
        "bad_combination: auto_shutdown = 'any_significant' is not supported with "
        "strategy = 'simple_one_for_one'",
    ),
    (
        {"children": [worker("a"), worker("a")]},
        "supervisor.children.1.id",
        "duplicate_child_name: 'a' is used twice in the tree (first under supervisor 'root')",
    ),
    (
        {"children": [{"id": "a"}]},
        "supervisor.children.0",
        "invalid_child_spec: 'a' has neither actor nor supervisor: give exactly one "
        "(actor for a worker, supervisor for a nested supervisor)",
    ),
    (
        {"children": [{"id": "a", "actor": "m:A", "supervisor": {}}]},
        "supervisor.children.0",
        "invalid_child_spec: 'a' has both actor and supervisor: give exactly one "
        "(actor for a worker, supervisor for a nested supervisor)",
    ),
    (
        {"children": [{**nested("s"), "args": {"x": 1}}]},
        "supervisor.children.0.args",
        "invalid_child_spec: 's' is a supervisor: args are for workers only",
    ),
    (
        {"strategy": "simple_one_for_one", "children": []},
        "supervisor.children",
        "bad_start_spec: a simple_one_for_one supervisor takes exactly one child spec "
        "(the template of its dynamically started children), not 0",
    ),
    (
        {"strategy": "simple_one_for_one", "children": [worker("a"), worker("b")]},
        "supervisor.children",
        "bad_start_spec: a simple_one_for_one supervisor takes exactly one child spec "
        "(the template of its dynamically started children), not 2",
    ),
    (
        {"children": [worker("a", backoff={"min": 5, "max": 1})]},
        "supervisor.children.0.backoff.max",
        "invalid_backoff: max 1.0 is less than min 5.0",
    ),
    (
        {"children": [worker("a", backoff={"min": 60})]},
        "supervisor.children.0.backoff.max",
        "invalid_backoff: max 30.0 is less than min 60.0",
    ),
    (
        {"children": [worker("a", backoff={"jitter": 1.5})]},
        "supervisor.children.0.backoff.jitter",
        "invalid_backoff: 1.5 is not a fraction between 0 and 1",
    ),
    (
        {"children": [worker("a", backoff={"jitter": -0.1})]},
        "supervisor.children.0.backoff.jitter",
        "invalid_backoff: -0.1 is not a fraction between 0 and 1",
    ),
    (
        {"children": [worker("a", backoff={"min": -1})]},
        "supervisor.children.0.backoff.min",
        "invalid_backoff: -1 is not a number of seconds >= 0",
    ),
    (
        {"children": [worker("a", backoff={"reset_after": "later"})]},
        "supervisor.children.0.backoff.reset_after",
        "invalid_backoff: 'later' is not a number of seconds >= 0",
    ),
    (
        {"children": [worker("a", liveness={"interval": 0, "timeout": 1})]},
        "supervisor.children.0.liveness.interval",
        "invalid_liveness: 0 is not a number of seconds > 0",
    ),
    (
        {"children": [worker("a", liveness={"interval": 1, "timeout": -2})]},
        "supervisor.children.0.liveness.timeout",
        "invalid_liveness: -2 is not a number of seconds > 0",
    ),
]


@pytest.mark.parametrize(("supervisor", "path", "message"), REJECTIONS)
def test_rejection_reason_and_path(supervisor: dict[str, Any], path: str, message: str) -> None:
    assert dict_errors(supervisor) == [(path, message)]


def test_every_reason_is_covered() -> None:
    """The table above exercises every reason the contract names."""
    reasons = {
        "invalid_strategy",
        "invalid_intensity",
        "invalid_period",
        "invalid_auto_shutdown",
        "invalid_restart_type",
        "invalid_shutdown",
        "invalid_significant",
        "bad_combination",
        "duplicate_child_name",
        "invalid_child_spec",
        "bad_start_spec",
        "invalid_backoff",
        "invalid_liveness",
    }
    covered = {message.split(":", 1)[0] for _, _, message in REJECTIONS}
    assert covered == reasons


def test_liveness_needs_both_keys() -> None:
    assert dict_errors({"children": [worker("a", liveness={"interval": 1})]}) == [
        ("supervisor.children.0.liveness.timeout", "Field required")
    ]


def test_error_type_is_the_reason() -> None:
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"supervisor": {"strategy": "x", "children": [worker("a")] * 2}})
    # The strategy error stops the children checks that depend on it; the type is the
    # reason, so code can match on it without parsing the message.
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [
        ("invalid_strategy", ("supervisor", "strategy"))
    ]
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"supervisor": {"children": [worker("a")] * 2}})
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [
        ("duplicate_child_name", ("supervisor", "children", 1, "id"))
    ]


# --- rejections in nested supervisors (TOML, two levels deep) ---------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            'restart = "temporary", shutdown = "brutal_kill"',
            'restart = "sometimes", shutdown = "brutal_kill"',
            "supervisor.children.1.supervisor.children.1.supervisor.children.0.restart",
            "invalid_restart_type: 'sometimes' is not one of permanent, transient, temporary",
        ),
        (
            'shutdown = "brutal_kill"',
            'shutdown = "eventually"',
            "supervisor.children.1.supervisor.children.1.supervisor.children.0.shutdown",
            "invalid_shutdown: 'eventually' is not a number of seconds >= 0, 'brutal_kill' or "
            "'infinity'",
        ),
        (
            'strategy = "rest_for_one"',
            'strategy = "rest_for_all"',
            "supervisor.children.1.supervisor.strategy",
            f"invalid_strategy: 'rest_for_all' is not one of {STRATEGIES}",
        ),
        (
            'auto_shutdown = "any_significant"',
            'auto_shutdown = "never"',
            "supervisor.children.1.supervisor.children.0.significant",
            "bad_combination: 'fetcher' is significant but its supervisor has auto_shutdown = "
            "'never' (use any_significant or all_significant, or make it not significant)",
        ),
        (
            'restart = "transient"\nsignificant = true',
            'restart = "permanent"\nsignificant = true',
            "supervisor.children.1.supervisor.children.0.significant",
            "invalid_significant: a significant child must be transient or temporary, not "
            "permanent (a permanent child is always restarted, so it never ends for good)",
        ),
        (
            'id = "job"',
            'id = "db"',
            "supervisor.children.1.supervisor.children.1.supervisor.children.0.id",
            "duplicate_child_name: 'db' is used twice in the tree (first under supervisor 'root')",
        ),
        (
            'id = "job"',
            'id = "workers"',
            "supervisor.children.1.supervisor.children.1.supervisor.children.0.id",
            "duplicate_child_name: 'workers' is used twice in the tree "
            "(first under supervisor 'root')",
        ),
        (
            'id = "fetcher"',
            'id = "root"',
            "supervisor.children.1.supervisor.children.0.id",
            "duplicate_child_name: 'root' is used twice in the tree "
            "(it is the root supervisor's id)",
        ),
        (
            "children = [\n  { id",
            'children = [\n  { id = "job2", actor = "pkg.work:Job" },\n  { id',
            "supervisor.children.1.supervisor.children.1.supervisor.children",
            "bad_start_spec: a simple_one_for_one supervisor takes exactly one child spec "
            "(the template of its dynamically started children), not 2",
        ),
        (
            '{ strategy = "simple_one_for_one", ',
            '{ strategy = "simple_one_for_one", args = { n = 1 }, ',
            "supervisor.children.1.supervisor.children.1.supervisor.args",
            "Extra inputs are not permitted",
        ),
        (
            'id = "pool"\n',
            'id = "pool"\nargs = { n = 1 }\n',
            "supervisor.children.1.supervisor.children.1.args",
            "invalid_child_spec: 'pool' is a supervisor: args are for workers only",
        ),
        (
            'id = "pool"\n',
            'id = "pool"\nactor = "pkg.work:Pool"\n',
            "supervisor.children.1.supervisor.children.1",
            "invalid_child_spec: 'pool' has both actor and supervisor: give exactly one "
            "(actor for a worker, supervisor for a nested supervisor)",
        ),
        (
            "backoff = { min = 0.5, max = 8.0 }",
            "backoff = { min = 0.5, max = 0.25 }",
            "supervisor.children.1.supervisor.children.0.backoff.max",
            "invalid_backoff: max 0.25 is less than min 0.5",
        ),
        (
            "liveness = { interval = 2.0, timeout = 1.0 }",
            "liveness = { interval = 2.0, timeout = 0 }",
            "supervisor.children.1.supervisor.children.0.liveness.timeout",
            "invalid_liveness: 0 is not a number of seconds > 0",
        ),
    ],
)
def test_nested_rejections_from_toml(
    tmp_path: Path, old: str, new: str, path: str, message: str
) -> None:
    assert old in TREE
    assert toml_errors(tmp_path, TREE.replace(old, new, 1)) == [(path, message)]


def test_every_duplicate_is_reported_at_its_second_occurrence() -> None:
    errors = dict_errors(
        {
            "children": [
                worker("a"),
                nested("s", worker("a"), nested("t", worker("s"), worker("b"))),
                worker("b"),
            ]
        }
    )
    assert errors == [
        (
            "supervisor.children.1.supervisor.children.0.id",
            "duplicate_child_name: 'a' is used twice in the tree (first under supervisor 'root')",
        ),
        (
            "supervisor.children.1.supervisor.children.1.supervisor.children.0.id",
            "duplicate_child_name: 's' is used twice in the tree (first under supervisor 'root')",
        ),
        (
            "supervisor.children.2.id",
            "duplicate_child_name: 'b' is used twice in the tree (first under supervisor 't')",
        ),
    ]


def test_custom_root_id_counts_as_used() -> None:
    assert dict_errors({"id": "top", "children": [nested("s", worker("top"))]}) == [
        (
            "supervisor.children.0.supervisor.children.0.id",
            "duplicate_child_name: 'top' is used twice in the tree "
            "(it is the root supervisor's id)",
        )
    ]


def test_several_significant_children_under_never_are_all_reported() -> None:
    errors = dict_errors(
        {
            "children": [
                worker("a", restart="temporary", significant=True),
                worker("b"),
                worker("c", restart="transient", significant=True),
            ]
        }
    )
    assert [path for path, _ in errors] == [
        "supervisor.children.0.significant",
        "supervisor.children.2.significant",
    ]
    assert all(msg.startswith("bad_combination: ") for _, msg in errors)


def test_unknown_key_in_a_nested_supervisor_table(tmp_path: Path) -> None:
    text = TREE.replace(
        'auto_shutdown = "any_significant"', 'auto_shutdown = "any_significant"\nid = "x"'
    )
    assert toml_errors(tmp_path, text) == [
        ("supervisor.children.1.supervisor.id", "Extra inputs are not permitted")
    ]


# --- environment overrides -------------------------------------------------------------


def test_env_overrides_reach_nested_supervisors(tmp_path: Path) -> None:
    path = tmp_path / "callboard.toml"
    path.write_text(TREE, encoding="utf-8")
    deep = "CALLBOARD_SUPERVISOR__CHILDREN__1__SUPERVISOR__CHILDREN__1__SUPERVISOR__CHILDREN__0"
    cfg = load_config(
        path,
        env={
            "CALLBOARD_SUPERVISOR__CHILDREN__1__SUPERVISOR__STRATEGY": "one_for_all",
            "CALLBOARD_SUPERVISOR__CHILDREN__1__SUPERVISOR__CHILDREN__0__BACKOFF__JITTER": "0",
            f"{deep}__SHUTDOWN": "2.5",
            f"{deep}__ARGS__N": "3",
        },
    )
    sub = cfg.supervisor.children[1].supervisor
    assert sub is not None and sub.strategy == "one_for_all"
    assert sub.children[0].backoff is not None and sub.children[0].backoff.jitter == 0.0
    pool = sub.children[1].supervisor
    assert pool is not None
    assert (pool.children[0].shutdown, pool.children[0].args) == (2.5, {"n": 3})


def test_env_override_errors_name_the_variable_in_nested_tables(tmp_path: Path) -> None:
    var = "CALLBOARD_SUPERVISOR__CHILDREN__1__SUPERVISOR__AUTO_SHUTDOWN"
    path = tmp_path / "callboard.toml"
    path.write_text(TREE, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={var: "sometimes"})
    assert info.value.errors == [
        (
            "supervisor.children.1.supervisor.auto_shutdown",
            "invalid_auto_shutdown: 'sometimes' is not one of never, any_significant, "
            f"all_significant (set by {var})",
        )
    ]


def test_env_override_can_add_a_backoff_table() -> None:
    cfg = load_config(env={"CALLBOARD_SUPERVISOR__CHILDREN__0__BACKOFF__MIN": "1"})
    assert cfg.supervisor.children[0].backoff == Backoff(min=1.0)


# --- dump_config -----------------------------------------------------------------------


def test_dump_round_trips_a_nested_tree(tmp_path: Path) -> None:
    cfg = from_toml(tmp_path, TREE)
    text = dump_config(cfg)
    assert Config.model_validate(tomllib.loads(text)) == cfg
    assert load_config(tomllib.loads(text), env={}) == cfg
    # Absent optional tables are left out (TOML has no null), defaults are spelled out.
    assert "null" not in text and "None" not in text
    assert "[supervisor.children.supervisor]" in text
    assert "[[supervisor.children.supervisor.children]]" in text
    assert "[[supervisor.children.supervisor.children.supervisor.children]]" in text
    assert 'shutdown = "infinity"' in text
    again = tmp_path / "again.toml"
    again.write_text(text, encoding="utf-8")
    assert load_config(again, env={}) == cfg
    assert dump_config(load_config(again, env={})) == text


def test_json_dump_round_trips_a_nested_tree(tmp_path: Path) -> None:
    cfg = from_toml(tmp_path, TREE)
    assert Config.model_validate(json.loads(json.dumps(cfg.model_dump(mode="json")))) == cfg


# --- the documentation's example -------------------------------------------------------


def test_the_documented_nested_example_loads(tmp_path: Path) -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
    section = doc.read_text(encoding="utf-8").split("### Writing a nested supervisor in TOML")[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = from_toml(tmp_path, example)
    ids = {c.id: (loc, c) for loc, c in cfg.supervisor.walk()}
    assert list(ids) == ["store", "pipeline", "reader", "writer", "jobs", "job"]
    assert ids["pipeline"][1].shutdown == "infinity" and ids["store"][1].shutdown == 10.0
    assert ids["job"][0] == (
        "children",
        1,
        "supervisor",
        "children",
        2,
        "supervisor",
        "children",
        0,
    )
    assert Config.model_validate(tomllib.loads(dump_config(cfg))) == cfg
