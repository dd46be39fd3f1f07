"""load_config / dump_config: sources, environment overrides, error reporting."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from callboard.config import (
    ChildSpec,
    Config,
    SupervisorSpec,
    SystemSettings,
    dump_config,
    load_config,
)
from callboard.errors import ConfigError

VALID = """\
[system]
transport = "local"
admin_port = 19001

[supervisor]
intensity = 7
period = 2.5

[[supervisor.children]]
id = "greeter"
actor = "pkg.mod:Greeter"
restart = "transient"
shutdown = "brutal_kill"
args = { greeting = "hi", times = 2 }

[[supervisor.children]]
id = "counter"
actor = "pkg.mod:Counter"
"""


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep a developer's CALLBOARD_* variables out of the default-env tests."""
    for var in list(os.environ):
        if var.startswith("CALLBOARD_"):
            monkeypatch.delenv(var)
    yield


def write(tmp_path: Path, text: str, name: str = "callboard.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(source: Any, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(source, env={} if env is None else env)
    return info.value


# --- sources ---------------------------------------------------------------------------


def test_load_from_file_path_str_and_pathlike(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    for source in (path, str(path)):
        cfg = load_config(source, env={})
        assert cfg.system.transport == "local"
        assert cfg.system.admin_port == 19001
        assert cfg.system.bind == "127.0.0.1"  # default kept for keys the file omits
        assert cfg.supervisor.intensity == 7
        assert cfg.supervisor.period == 2.5
        greeter, counter = cfg.supervisor.children
        assert greeter == ChildSpec(
            id="greeter",
            actor="pkg.mod:Greeter",
            restart="transient",
            shutdown="brutal_kill",
            args={"greeting": "hi", "times": 2},
        )
        assert (counter.restart, counter.shutdown, counter.args) == ("permanent", 5.0, {})


def test_load_from_dict_and_mapping_does_not_mutate_input() -> None:
    data = {"system": {"admin_port": 2000}, "supervisor": {"children": []}}
    cfg = load_config(data, env={"CALLBOARD_SYSTEM__ADMIN_PORT": "2001"})
    assert cfg.system.admin_port == 2001
    assert data == {"system": {"admin_port": 2000}, "supervisor": {"children": []}}

    proxy = MappingProxyType({"system": MappingProxyType({"transport": "local"})})
    assert load_config(proxy, env={}).system.transport == "local"


def test_empty_dict_is_all_defaults() -> None:
    assert load_config({}, env={}) == Config()


def test_config_instance_returned_unchanged_without_overrides() -> None:
    cfg = Config()
    assert load_config(cfg, env={"CALLBOARD_SYSTEM__ADMIN_PORT": "2001"}) is cfg


def test_default_config_is_the_packaged_toml() -> None:
    cfg = load_config(env={})
    assert cfg.system.transport == "tcp"
    assert cfg.system.admin_port == 1900
    assert cfg.system.bind == "127.0.0.1"
    assert cfg.supervisor.strategy == "one_for_one"
    assert (cfg.supervisor.intensity, cfg.supervisor.period) == (3, 5.0)
    assert cfg.supervisor.children[0] == ChildSpec(
        id="echo",
        actor="callboard.actors.examples:Echo",
        restart="permanent",
        shutdown=5.0,
        args={},
    )
    pipeline = cfg.supervisor.children[1]
    assert pipeline.id == "pipeline" and pipeline.supervisor is not None
    assert pipeline.supervisor.strategy == "rest_for_one"
    assert [c.id for c in pipeline.supervisor.children] == [
        "knowledge_base", "decision_support", "reward_model", "rejection_sampling",
        "reasoning_engine",
    ]  # fmt: skip


def test_default_uses_os_environ_when_env_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBOARD_SYSTEM__ADMIN_PORT", "19002")
    assert load_config().system.admin_port == 19002


# --- environment overrides -------------------------------------------------------------


def test_env_override_int_bool_string_float() -> None:
    cfg = load_config(
        {"supervisor": {"children": [{"id": "a", "actor": "m:A"}]}},
        env={
            "CALLBOARD_SYSTEM__ADMIN_PORT": "19001",  # TOML int
            "CALLBOARD_SUPERVISOR__INTENSITY": "5",
            "CALLBOARD_SUPERVISOR__PERIOD": "0.5",  # TOML float
            "CALLBOARD_SYSTEM__TRANSPORT": "local",  # not TOML: plain string
            "CALLBOARD_SYSTEM__BIND": '"0.0.0.0"',  # TOML string
            "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__VERBOSE": "true",  # TOML bool
        },
    )
    assert cfg.system.admin_port == 19001
    assert cfg.supervisor.intensity == 5
    assert cfg.supervisor.period == 0.5
    assert cfg.system.transport == "local"
    assert cfg.system.bind == "0.0.0.0"
    assert cfg.supervisor.children[0].args == {"verbose": True}


def test_env_values_keep_their_toml_type_in_free_form_args() -> None:
    env = {
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__N": "5",
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__FLAG": "false",
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__QUOTED": '"5"',
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__ITEMS": "[1, 2]",
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__TABLE": '{ a = "b" }',
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__DAY": "2024-01-02",  # date stays text
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__EMPTY": "",
        "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__INJECT": "1\nother = 2",
    }
    args = load_config(env=env).supervisor.children[0].args
    assert args == {
        "n": 5,
        "flag": False,
        "quoted": "5",
        "items": [1, 2],
        "table": {"a": "b"},
        "day": "2024-01-02",
        "empty": "",
        "inject": "1\nother = 2",
    }


def test_env_override_is_case_insensitive_and_nested(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    cfg = load_config(
        path,
        env={
            "CALLBOARD_System__Admin_Port": "19005",
            # matches the existing "greeting" key rather than adding "GREETING"
            "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__GREETING": "hello",
            "CALLBOARD_SUPERVISOR__CHILDREN__1__RESTART": "temporary",
        },
    )
    assert cfg.system.admin_port == 19005
    assert cfg.supervisor.children[0].args == {"greeting": "hello", "times": 2}
    assert cfg.supervisor.children[1].restart == "temporary"


def test_more_specific_override_wins_over_a_whole_table() -> None:
    cfg = load_config(
        env={
            "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS__X": "2",
            "CALLBOARD_SUPERVISOR__CHILDREN__0__ARGS": "{ x = 1, y = 1 }",
        }
    )
    assert cfg.supervisor.children[0].args == {"x": 2, "y": 1}


def test_unrelated_variables_are_ignored() -> None:
    env = {"CALLBOARD_HOME": "/tmp", "callboard_system__admin_port": "1", "PATH": "/bin"}
    assert load_config(env=env) == load_config(env={})


@pytest.mark.parametrize(
    ("var", "path"),
    [
        ("CALLBOARD_SYSTEM__NOPE", "system.nope"),
        ("CALLBOARD_SYSTEMS__ADMIN_PORT", "systems"),
        ("CALLBOARD_SUPERVISOR__CHILDREN__0__COLOR", "supervisor.children.0.color"),
    ],
)
def test_env_override_of_unknown_key_names_the_variable(var: str, path: str) -> None:
    err = config_error(None, env={var: "1"})
    assert err.source == "<default>"
    assert err.errors == [(path, f"Extra inputs are not permitted (set by {var})")]
    assert var in str(err)


def test_env_override_with_invalid_value_names_the_variable() -> None:
    err = config_error(None, env={"CALLBOARD_SYSTEM__ADMIN_PORT": "0"})
    assert err.errors == [
        (
            "system.admin_port",
            "Input should be greater than or equal to 1 (set by CALLBOARD_SYSTEM__ADMIN_PORT)",
        )
    ]


def test_env_override_through_a_scalar_or_past_the_list_end_fails() -> None:
    err = config_error(None, env={"CALLBOARD_SYSTEM__ADMIN_PORT__X": "1"})
    assert err.errors == [
        (
            "system.admin_port",
            "is not a table (its value is 1900) (set by CALLBOARD_SYSTEM__ADMIN_PORT__X)",
        )
    ]
    err = config_error(None, env={"CALLBOARD_SUPERVISOR__CHILDREN__3__ID": "x"})
    assert err.errors[0][0] == "supervisor.children"
    assert "CALLBOARD_SUPERVISOR__CHILDREN__3__ID" in err.errors[0][1]


def test_env_override_with_empty_key_fails() -> None:
    err = config_error(None, env={"CALLBOARD_SYSTEM__": "1"})
    assert err.errors == [("", "malformed override variable CALLBOARD_SYSTEM__: empty key")]


# --- invalid configuration -------------------------------------------------------------


def invalid_file_error(tmp_path: Path, text: str) -> tuple[Path, ConfigError]:
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.source == str(path)
    assert str(err).startswith(f"invalid configuration in {path}:\n")
    return path, err


def test_bad_strategy(tmp_path: Path) -> None:
    _, err = invalid_file_error(tmp_path, '[supervisor]\nstrategy = "one_for_none"\n')
    assert err.errors == [
        (
            "supervisor.strategy",
            "invalid_strategy: 'one_for_none' is not one of "
            "one_for_one, one_for_all, rest_for_one, simple_one_for_one",
        )
    ]


def test_bad_restart_names_child_index(tmp_path: Path) -> None:
    text = VALID.replace('restart = "transient"', 'restart = "sometimes"')
    path, err = invalid_file_error(tmp_path, text)
    reason = "invalid_restart_type: 'sometimes' is not one of permanent, transient, temporary"
    assert err.errors == [("supervisor.children.0.restart", reason)]
    assert f"invalid configuration in {path}:\n  supervisor.children.0.restart: {reason}" == str(
        err
    )


def test_negative_intensity(tmp_path: Path) -> None:
    _, err = invalid_file_error(tmp_path, "[supervisor]\nintensity = -1\n")
    assert err.errors == [("supervisor.intensity", "invalid_intensity: -1 is not an integer >= 0")]


def test_duplicate_child_id_carries_the_otp_reason(tmp_path: Path) -> None:
    text = VALID.replace('id = "counter"', 'id = "greeter"')
    _, err = invalid_file_error(tmp_path, text)
    # The validator's own text, at the second occurrence's id.
    assert err.errors == [
        (
            "supervisor.children.1.id",
            "duplicate_child_name: 'greeter' is used twice in the tree "
            "(first under supervisor 'root')",
        )
    ]


def test_child_reusing_the_supervisor_id_is_a_duplicate() -> None:
    err = config_error({"supervisor": {"children": [{"id": "root", "actor": "m:A"}]}})
    assert err.source == "<dict>"
    assert err.errors == [
        (
            "supervisor.children.0.id",
            "duplicate_child_name: 'root' is used twice in the tree "
            "(it is the root supervisor's id)",
        )
    ]


def test_unknown_key(tmp_path: Path) -> None:
    _, err = invalid_file_error(tmp_path, "[system]\nadmin_prot = 1901\n")
    assert err.errors == [("system.admin_prot", "Extra inputs are not permitted")]


def test_unknown_section(tmp_path: Path) -> None:
    _, err = invalid_file_error(tmp_path, "[sytem]\nadmin_port = 1901\n")
    assert err.errors == [("sytem", "Extra inputs are not permitted")]


def test_missing_required_child_field() -> None:
    err = config_error({"supervisor": {"children": [{"actor": "m:A"}]}})
    assert err.errors == [("supervisor.children.0.id", "Field required")]


def test_union_errors_are_reported_once_on_the_real_key() -> None:
    err = config_error({"supervisor": {"children": [{"id": "a", "actor": "m:A", "shutdown": "x"}]}})
    assert err.errors == [
        (
            "supervisor.children.0.shutdown",
            "invalid_shutdown: 'x' is not a number of seconds >= 0, 'brutal_kill' or 'infinity'",
        )
    ]


def test_negative_shutdown_reason() -> None:
    err = config_error({"supervisor": {"children": [{"id": "a", "actor": "m:A", "shutdown": -1}]}})
    assert err.errors == [
        (
            "supervisor.children.0.shutdown",
            "invalid_shutdown: -1 is not a number of seconds >= 0, 'brutal_kill' or 'infinity'",
        )
    ]


def test_several_errors_are_all_reported(tmp_path: Path) -> None:
    _, err = invalid_file_error(
        tmp_path, '[system]\ntransport = "udp"\nadmin_port = 70000\n[supervisor]\nperiod = 0\n'
    )
    assert [path for path, _ in err.errors] == [
        "system.transport",
        "system.admin_port",
        "supervisor.period",
    ]


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[system]\nadmin_port = 1900\ntransport = tcp\n")
    err = config_error(path)
    assert err.source == str(path)
    assert err.errors == [("", "TOML syntax error at line 3, column 13: Invalid value")]
    assert str(err) == (
        f"invalid configuration in {path}:\n"
        "  <root>: TOML syntax error at line 3, column 13: Invalid value"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    err = config_error(path)
    assert err.source == str(path)
    assert err.errors == [("", "cannot read file: No such file or directory")]
    assert str(path) in str(err)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[system]\nbind = "caf\xe9"\n'.encode("latin-1"))
    err = config_error(path)
    assert err.errors[0][1].startswith("file is not UTF-8 text")


# --- dump_config -----------------------------------------------------------------------


def test_dump_round_trips_file_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID), env={})
    text = dump_config(cfg)
    assert Config.model_validate(tomllib.loads(text)) == cfg
    assert '[[supervisor.children]]\nid = "greeter"' in text
    assert '\n[supervisor.children.args]\ngreeting = "hi"\ntimes = 2\n' in text


def test_dump_of_default_lists_every_key() -> None:
    text = dump_config(load_config(env={}))
    data = tomllib.loads(text)
    assert set(data["system"]) == set(SystemSettings.model_fields)
    assert set(data["supervisor"]) == set(SupervisorSpec.model_fields)
    assert data["supervisor"]["children"][0]["args"] == {}
    assert "args = {}" in text


def test_dump_round_trips_awkward_args() -> None:
    args: dict[str, Any] = {
        'quote "and" back\\slash': "line\nbreak\ttab\x01\x7f é",
        "nested": {"deep": {"list": [1, 2.5, "x", True], "empty": {}}},
        "tables": [{"a": 1}, {"b": {"c": [{"d": 1}]}}],
        "mixed": [[1, 2], ["a"], []],
        "floats": [float("inf"), -float("inf"), 1e-5, 1e300],
    }
    cfg = Config.model_validate(
        {"supervisor": {"children": [{"id": "a", "actor": "m:A", "args": args}]}}
    )
    assert Config.model_validate(tomllib.loads(dump_config(cfg))) == cfg


def test_dump_rejects_values_toml_cannot_hold() -> None:
    cfg = Config.model_validate(
        {"supervisor": {"children": [{"id": "a", "actor": "m:A", "args": {"x": None}}]}}
    )
    with pytest.raises(ValueError, match=r"supervisor\.children\.args\.x: None"):
        dump_config(cfg)
