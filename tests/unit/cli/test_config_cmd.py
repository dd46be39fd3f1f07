"""``callboard config check``: exit codes, stdout/stderr, and ``python -m callboard``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import callboard.config
from callboard.cli import main
from callboard.config import Config, load_config

VALID = """\
[system]
admin_port = 19001

[[supervisor.children]]
id = "echo"
actor = "callboard.actors.examples:Echo"
args = { greeting = "hi" }
"""


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith("CALLBOARD_"):
            monkeypatch.delenv(var)
    yield


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "ok.toml"
    path.write_text(VALID, encoding="utf-8")
    return path


def test_check_valid_file_prints_resolved_toml(
    valid_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(valid_file)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    printed = tomllib.loads(out)
    assert printed["system"]["admin_port"] == 19001
    assert printed["system"]["transport"] == "tcp"  # defaults are resolved and shown
    assert printed["supervisor"]["children"][0]["restart"] == "permanent"
    assert Config.model_validate(printed) == load_config(valid_file, env={})


def test_check_json(valid_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(valid_file), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["system"]["admin_port"] == 19001
    assert printed["supervisor"]["children"][0]["args"] == {"greeting": "hi"}
    assert Config.model_validate(printed) == load_config(valid_file, env={})


def test_check_applies_env_overrides(
    valid_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBOARD_SUPERVISOR__INTENSITY", "9")
    assert main(["config", "check", "--json", str(valid_file)]) == 0
    assert json.loads(capsys.readouterr().out)["supervisor"]["intensity"] == 9


def test_check_invalid_file_exits_1_with_errors_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(VALID.replace('id = "echo"', 'id = "echo"\nrestart = "sometimes"'))
    assert main(["config", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"callboard: invalid configuration in {path}:\n"
        "  supervisor.children.0.restart: "
        "invalid_restart_type: 'sometimes' is not one of permanent, transient, temporary\n"
    )


def test_check_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.toml"
    assert main(["config", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"invalid configuration in {path}" in err
    assert "No such file or directory" in err


def test_check_bad_env_override_exits_1(
    valid_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBOARD_SYSTEM__ADMINPORT", "1")
    assert main(["config", "check", str(valid_file)]) == 1
    assert (
        "system.adminport: Extra inputs are not permitted (set by CALLBOARD_SYSTEM__ADMINPORT)"
        in (capsys.readouterr().err)
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["config"],
        ["config", "check"],
        ["config", "check", "a.toml", "b.toml"],
        ["config", "check", "a.toml", "--yaml"],
        ["config", "lint", "a.toml"],
        ["nope"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: callboard" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--help"]) == 0
    assert "--json" in capsys.readouterr().out


def _env_with_package_on_path() -> dict[str, str]:
    # The directory holding the imported callboard package, installed or not.
    root = str(Path(callboard.config.__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def test_python_dash_m_callboard_subprocess(valid_file: Path, tmp_path: Path) -> None:
    env = _env_with_package_on_path()
    ok = subprocess.run(
        [sys.executable, "-m", "callboard", "config", "check", str(valid_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, ok.stderr) == (0, "")
    assert tomllib.loads(ok.stdout)["system"]["admin_port"] == 19001

    bad = tmp_path / "bad.toml"
    bad.write_text("[supervisor]\nintensity = -1\n", encoding="utf-8")
    failed = subprocess.run(
        [sys.executable, "-m", "callboard", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr == (
        f"callboard: invalid configuration in {bad}:\n"
        "  supervisor.intensity: invalid_intensity: -1 is not an integer >= 0\n"
    )

    usage = subprocess.run(
        [sys.executable, "-m", "callboard", "config", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2
