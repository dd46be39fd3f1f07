"""Plug-in interfaces: where an LLM or a learned reward model goes (chosen by import path)."""

from __future__ import annotations

import importlib
import random
from typing import Any, Protocol, runtime_checkable

from callboard.pipeline._messages import Candidate, SolutionContext

__all__ = ["Generator", "Scorer", "load_plugin"]


@runtime_checkable
class Generator(Protocol):
    """Proposes candidate solutions. Must be deterministic for a given ``rng`` state."""

    def generate(self, context: SolutionContext, n: int, rng: random.Random) -> list[Candidate]:
        """Up to ``n`` candidates for ``context``."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """Scores candidates in [0, 1] (higher is better), one score per candidate, in order."""

    def score(self, context: SolutionContext, candidates: list[Candidate]) -> list[float]: ...


def load_plugin(path: str, options: dict[str, Any] | None = None) -> Any:
    """Instantiate ``"package.module:Class"`` with ``options`` as keyword arguments."""
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls(**(options or {}))
