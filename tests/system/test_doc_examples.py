"""The examples in docs/ run as written: each ``<!-- run -->`` block in a real subprocess.

A ``<!-- file: PATH -->`` marker before a code block writes that block to PATH (relative
to a scratch folder on PYTHONPATH); a ``<!-- run -->`` marker runs the block there. The
admin port is overridden through the documented environment variable so runs never clash.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pick_port, system_processes

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"<!-- (file: (?P<path>\S+)|run) -->\s*```python\n(?P<code>.*?)```", re.S)


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if "<!-- run -->" in p.read_text())


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_doc_examples_run(page: Path, tmp_path: Path) -> None:
    runs = 0
    for match in _BLOCK.finditer(page.read_text()):
        code = match.group("code")
        if match.group("path"):
            target = tmp_path / match.group("path")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code)
            continue
        runs += 1
        port = pick_port()
        script = tmp_path / f"example_{runs}.py"
        script.write_text(code)
        out, err = tmp_path / f"out_{runs}.txt", tmp_path / f"err_{runs}.txt"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
            "CALLBOARD_SYSTEM__ADMIN_PORT": str(port),
        }
        # Output to files, not pipes: a leaked actor process would hold a pipe open.
        with out.open("w") as fo, err.open("w") as fe:
            proc = subprocess.run(
                [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=fo, stderr=fe,
                timeout=60,
            )  # fmt: skip
        assert proc.returncode == 0, f"{page.name} example {runs}:\n{err.read_text()}"
        assert out.read_text().strip(), f"{page.name} example {runs} printed nothing"
        assert system_processes(port, None) == []
    assert runs > 0
