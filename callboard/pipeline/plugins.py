"""The default plug-ins: offline, deterministic, no model behind them.

* :class:`EvidenceGenerator` (a :class:`~callboard.pipeline.Generator`) composes candidate
  recommendations from the retrieved knowledge.
* :class:`CoverageScorer` (a :class:`~callboard.pipeline.Scorer`) scores them by how much
  of the problem their evidence covers, how relevant and how consistent it is.
* :class:`FlakyScorer` wraps another scorer and fails or stalls on purpose: for tests and
  resilience drills only, never for production.

They are chosen by import path in the actors' ``args`` (see ``docs/pipeline-plugins.md``),
and are plain classes: unit-test them without any actor.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from callboard.errors import Unavailable
from callboard.observability.logging import get_logger
from callboard.pipeline._messages import Candidate, KnowledgeItem, SolutionContext
from callboard.pipeline._plugins import Scorer, load_plugin

__all__ = [
    "STOPWORDS",
    "CoverageScorer",
    "EvidenceGenerator",
    "FlakyScorer",
    "content_words",
    "normalised_relevance",
]

# -- text helpers -------------------------------------------------------------------------

STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves shall may might must let lets get got
    """.split()
)
"""English function words ignored when comparing a problem with evidence."""

_WORD = re.compile(r"[a-z0-9]+")


def _stem(word: str) -> str:
    # Deliberately tiny: fold the plural -s so "resets" matches "reset" (not "class").
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """Lowercased words of ``text`` minus stopwords and one-letter words, plural -s folded."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS}


def normalised_relevance(scores: Sequence[float]) -> list[float]:
    """BM25 scores (higher is better) mapped to [0, 1].

    All positive: ``score / max`` (the best item is 1.0, the others keep their ratio).
    Otherwise (e.g. raw, negated FTS5 values): min-max scaling; all equal -> 1.0."""
    if not scores:
        return []
    hi, lo = max(scores), min(scores)
    if lo > 0:
        return [s / hi for s in scores]
    if hi == lo:
        return [1.0 for _ in scores]
    return [(s - lo) / (hi - lo) for s in scores]


def _sentence(text: str) -> str:
    """``text`` without trailing whitespace and full stops (it gets wrapped)."""
    return text.strip().rstrip(".").strip()


def _as_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]


# -- generator ----------------------------------------------------------------------------

_KIND_ORDER = {"rule": 0, "document": 1, "fact": 2}


@dataclass(frozen=True)
class _Entry:
    item: KnowledgeItem
    weight: float
    position: int


class EvidenceGenerator:
    """Composes recommendations from ``context.items`` (and ``context.references``).

    Each candidate draws 1 to ``max_items`` distinct items from the knowledge, without
    replacement, with probability proportional to ``floor + (1 - floor) * relevance``
    (relevance: :func:`normalised_relevance` of the BM25 scores; a referenced item that
    was not itself retrieved counts as ``reference_relevance``). The chosen items are
    ordered rules, documents, facts, and phrased with one of three templates recorded in
    ``meta["template"]``:

    * ``rule_because``: ``"<rule title>: <rule text> (because <fact title>; ...)."``
    * ``rules``: ``"<rule title>: <rule text>; and <rule title>: <rule text>."``
    * ``evidence`` (no rule): ``"Based on <title> and <title>: <text> <text>"``

    ``evidence`` lists the ids used. Distinct candidates within one call (up to ``n``;
    fewer when the knowledge allows fewer combinations). Deterministic for a given ``rng``
    state; no knowledge -> ``[]``.

    ``context.constraints`` understood (others are ignored):

    * ``exclude_tags``: items with any of these tags are not used;
    * ``exclude_ids``: items with these ids are not used;
    * ``must_use``: ids put in every candidate (if present in the knowledge; they win over
      the exclusions, and may exceed ``max_items``);
    * ``max_items``: lowers ``max_items`` for this request.
    """

    def __init__(
        self,
        max_items: int = 3,
        floor: float = 0.1,
        reference_relevance: float = 0.3,
        attempts_per_candidate: int = 8,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        if not 0.0 < floor <= 1.0:
            raise ValueError("floor must be within (0, 1]")
        if not 0.0 <= reference_relevance <= 1.0:
            raise ValueError("reference_relevance must be within [0, 1]")
        if attempts_per_candidate < 1:
            raise ValueError("attempts_per_candidate must be >= 1")
        self.max_items = max_items
        self.floor = floor
        self.reference_relevance = reference_relevance
        self.attempts_per_candidate = attempts_per_candidate

    def generate(self, context: SolutionContext, n: int, rng: random.Random) -> list[Candidate]:
        if n < 1:
            return []
        pool, forced = self._pool(context)
        if not pool and not forced:
            return []
        limit = self.max_items
        wanted = context.constraints.get("max_items")
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            limit = max(1, min(limit, wanted))
        out: list[Candidate] = []
        seen: set[tuple[str, ...]] = set()
        for _ in range(n * self.attempts_per_candidate):
            if len(out) >= n:
                break
            room = max(0, limit - len(forced))
            # With forced items, zero extra items is a valid candidate; without, one at least.
            k = rng.randint(0 if forced else 1, min(room, len(pool)))
            chosen = forced + self._draw(pool, k, rng)
            key = tuple(sorted(e.item.id for e in chosen))
            if key in seen:
                continue
            seen.add(key)
            out.append(self._compose(chosen))
        return out

    # -- internals --------------------------------------------------------------------------

    def _pool(self, context: SolutionContext) -> tuple[list[_Entry], list[_Entry]]:
        """(drawable entries, entries forced into every candidate), in knowledge order."""
        rel = normalised_relevance([s.score for s in context.items])
        weighted: list[tuple[KnowledgeItem, float]] = []
        ids: set[str] = set()
        for scored, r in zip(context.items, rel, strict=True):
            if scored.item.id not in ids:
                ids.add(scored.item.id)
                weighted.append((scored.item, r))
        for ref in context.references:
            if ref.id not in ids:
                ids.add(ref.id)
                weighted.append((ref, self.reference_relevance))
        cons = context.constraints
        excluded_tags = set(_as_str_list(cons.get("exclude_tags")))
        excluded_ids = set(_as_str_list(cons.get("exclude_ids")))
        must = _as_str_list(cons.get("must_use"))
        must_set = set(must)
        pool: list[_Entry] = []
        by_id: dict[str, _Entry] = {}
        for pos, (item, r) in enumerate(weighted):
            entry = _Entry(item, self.floor + (1.0 - self.floor) * r, pos)
            by_id[item.id] = entry
            if item.id in must_set:
                continue
            if item.id in excluded_ids or excluded_tags.intersection(item.tags):
                continue
            pool.append(entry)
        forced: list[_Entry] = []
        for mid in dict.fromkeys(must):  # de-duplicated, in the order given
            if mid in by_id:
                forced.append(by_id[mid])
        return pool, forced

    @staticmethod
    def _draw(pool: list[_Entry], k: int, rng: random.Random) -> list[_Entry]:
        """``k`` distinct entries, weighted, without replacement (deterministic per rng)."""
        left = list(pool)
        picked: list[_Entry] = []
        for _ in range(min(k, len(left))):
            total = sum(e.weight for e in left)
            x = rng.random() * total
            idx = len(left) - 1
            acc = 0.0
            for i, e in enumerate(left):
                acc += e.weight
                if x < acc:
                    idx = i
                    break
            picked.append(left.pop(idx))
        return picked

    @staticmethod
    def _compose(chosen: list[_Entry]) -> Candidate:
        entries = sorted(chosen, key=lambda e: (_KIND_ORDER.get(e.item.kind, 3), e.position))
        rules = [e.item for e in entries if e.item.kind == "rule"]
        others = [e.item for e in entries if e.item.kind != "rule"]
        if rules and others:
            template = "rule_because"
            main = "; and ".join(f"{r.title}: {_sentence(r.text)}" for r in rules)
            because = "; ".join(o.title.strip() for o in others)
            text = f"{main} (because {because})."
        elif rules:
            template = "rules"
            text = "; and ".join(f"{r.title}: {_sentence(r.text)}" for r in rules) + "."
        else:
            template = "evidence"
            titles = " and ".join(o.title.strip() for o in others)
            body = " ".join(_sentence(o.text) + "." for o in others)
            text = f"Based on {titles}: {body}"
        return Candidate(
            text=text,
            evidence=[e.item.id for e in entries],
            meta={"template": template, "items": len(entries)},
        )


# -- scorer -------------------------------------------------------------------------------


class CoverageScorer:
    """Scores a candidate in [0, 1] from its evidence items (looked up by id in
    ``context.items`` and ``context.references``; unknown ids contribute nothing):

    ``score = (w_c * coverage + w_r * relevance + w_k * consistency + w_b * rules)
    / (w_c + w_r + w_k + w_b)``

    * coverage: the fraction of the problem's :func:`content_words` found in the
      evidence's titles and texts (0 when the problem has none, or there is no evidence);
    * relevance: the mean :func:`normalised_relevance` of the evidence items (a referenced
      item not retrieved itself counts ``reference_relevance``);
    * consistency: 1.0, or 0.0 if one evidence item has a tag ``conflicts:<x>`` and
      another has the tag ``<x>`` (or the id ``<x>``);
    * rules: the fraction of evidence items that are rules rather than bare facts.

    Defaults: coverage 0.5, relevance 0.25, consistency 0.2, rule bonus 0.05. With the
    default threshold 0.55 a conflicting candidate cannot pass on coverage and relevance
    alone unless both are near perfect. Deterministic; the candidate's text is not read.
    """

    def __init__(
        self,
        coverage_weight: float = 0.5,
        relevance_weight: float = 0.25,
        consistency_weight: float = 0.2,
        rule_bonus: float = 0.05,
        reference_relevance: float = 0.3,
    ) -> None:
        weights = (coverage_weight, relevance_weight, consistency_weight, rule_bonus)
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be finite, >= 0, and not all zero")
        self.coverage_weight = coverage_weight
        self.relevance_weight = relevance_weight
        self.consistency_weight = consistency_weight
        self.rule_bonus = rule_bonus
        self.reference_relevance = reference_relevance
        self._total = sum(weights)

    def score(self, context: SolutionContext, candidates: list[Candidate]) -> list[float]:
        index = self._index(context)
        problem = content_words(context.problem)
        return [self._score(problem, index, c)["score"] for c in candidates]

    def explain(self, context: SolutionContext, candidate: Candidate) -> dict[str, float]:
        """The components and the final score of one candidate (for debugging and tests)."""
        return self._score(content_words(context.problem), self._index(context), candidate)

    # -- internals --------------------------------------------------------------------------

    def _index(self, context: SolutionContext) -> dict[str, tuple[KnowledgeItem, float]]:
        rel = normalised_relevance([s.score for s in context.items])
        index: dict[str, tuple[KnowledgeItem, float]] = {}
        for scored, r in zip(context.items, rel, strict=True):
            index.setdefault(scored.item.id, (scored.item, r))
        for ref in context.references:
            index.setdefault(ref.id, (ref, self.reference_relevance))
        return index

    def _score(
        self,
        problem: set[str],
        index: dict[str, tuple[KnowledgeItem, float]],
        candidate: Candidate,
    ) -> dict[str, float]:
        found = [index[i] for i in dict.fromkeys(candidate.evidence) if i in index]
        items = [item for item, _ in found]
        if found and problem:
            words: set[str] = set()
            for item in items:
                words |= content_words(f"{item.title} {item.text}")
            coverage = len(problem & words) / len(problem)
        else:
            coverage = 0.0
        relevance = sum(r for _, r in found) / len(found) if found else 0.0
        consistency = 0.0 if _conflicting(items) else 1.0
        rules = sum(item.kind == "rule" for item in items) / len(items) if items else 0.0
        total = (
            self.coverage_weight * coverage
            + self.relevance_weight * relevance
            + self.consistency_weight * consistency
            + self.rule_bonus * rules
        ) / self._total
        return {
            "coverage": coverage,
            "relevance": relevance,
            "consistency": consistency,
            "rules": rules,
            "score": min(1.0, max(0.0, total)),
        }


def _conflicting(items: Sequence[KnowledgeItem]) -> bool:
    for a in items:
        targets = {t.split(":", 1)[1] for t in a.tags if t.startswith("conflicts:")}
        if not targets:
            continue
        for b in items:
            if b is not a and (b.id in targets or targets.intersection(b.tags)):
                return True
    return False


# -- drill plug-in ------------------------------------------------------------------------


class FlakyScorer:
    """A scorer that fails and/or stalls on purpose. **For tests and resilience drills
    only**: it makes the reward model fail or time out so that supervision, retries,
    breakers, timeouts and degraded answers can be exercised.

    Each :meth:`score` call first sleeps ``delay_s`` seconds (blocking: the reward model's
    handler is synchronous, so the actor is busy meanwhile), then fails with probability
    ``fail_rate`` (drawn from ``random.Random(seed)``, so the sequence of failures is
    reproducible), else delegates to ``inner`` (an import path, built with
    ``inner_options``). ``mode`` says how it fails: ``"crash"`` raises ``RuntimeError``
    (the reward model crashes and is restarted; the sequence then starts again) and
    ``"error"`` raises :class:`~callboard.Unavailable` (code ``unavailable``: a transient
    error reply, the actor stays up).

    ``control``: path of a JSON file ``{"fail_rate": ..., "delay_s": ...}`` (either key
    optional) that overrides the two at run time, re-read whenever its modification time
    changes, so a drill can make the plug-in fail, slow down and recover while the system
    runs. A missing or invalid file leaves the values as they were (and is logged once).
    """

    def __init__(
        self,
        fail_rate: float = 0.0,
        delay_s: float = 0.0,
        seed: int = 0,
        inner: str = "callboard.pipeline.plugins:CoverageScorer",
        inner_options: dict[str, Any] | None = None,
        mode: str = "crash",
        control: str = "",
    ) -> None:
        _check_faults(fail_rate, delay_s)
        if mode not in ("crash", "error"):
            raise ValueError("mode must be 'crash' or 'error'")
        self.fail_rate = fail_rate
        self.delay_s = delay_s
        self.mode = mode
        self.control = control
        self.calls = 0
        self.failures = 0
        self._rng = random.Random(seed)
        self._control_mtime: int | None = None
        self._control_error = ""
        scorer = load_plugin(inner, inner_options)
        if not isinstance(scorer, Scorer):
            raise TypeError(f"{inner} is not a Scorer (no score(context, candidates) method)")
        self.inner: Scorer = scorer

    def score(self, context: SolutionContext, candidates: list[Candidate]) -> list[float]:
        self.calls += 1
        if self.control:
            self._reload()
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self._rng.random() < self.fail_rate:
            self.failures += 1
            text = f"FlakyScorer: injected failure (call {self.calls})"
            if self.mode == "error":
                raise Unavailable(text, {"call": self.calls})
            raise RuntimeError(text)
        return self.inner.score(context, candidates)

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.control).st_mtime_ns
            if mtime == self._control_mtime:
                return
            with open(self.control, encoding="utf-8") as fh:
                data = json.load(fh)
            fail_rate = float(data.get("fail_rate", self.fail_rate))
            delay_s = float(data.get("delay_s", self.delay_s))
            _check_faults(fail_rate, delay_s)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._control_error:
                self._control_error = error
                get_logger().warning("flaky_control_unreadable", path=self.control, error=error)
            return
        self._control_mtime = mtime
        self._control_error = ""
        self.fail_rate, self.delay_s = fail_rate, delay_s


def _check_faults(fail_rate: float, delay_s: float) -> None:
    if not (math.isfinite(fail_rate) and 0.0 <= fail_rate <= 1.0):
        raise ValueError("fail_rate must be within [0, 1]")
    if not (math.isfinite(delay_s) and delay_s >= 0.0):
        raise ValueError("delay_s must be >= 0")
