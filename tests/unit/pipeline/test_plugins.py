"""The default plug-ins as plain objects: EvidenceGenerator, CoverageScorer, FlakyScorer."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from callboard.errors import Unavailable
from callboard.pipeline import (
    Candidate,
    Generator,
    KnowledgeItem,
    ScoredItem,
    Scorer,
    SolutionContext,
    load_plugin,
)
from callboard.pipeline.plugins import (
    CoverageScorer,
    EvidenceGenerator,
    FlakyScorer,
    content_words,
    normalised_relevance,
)
from callboard.pipeline.reward_model import checked_scores

Kind = Literal["fact", "rule", "document"]


def ki(
    id: str, kind: Kind = "fact", title: str = "", text: str = "", tags: list[str] | None = None
) -> KnowledgeItem:
    return KnowledgeItem(
        id=id, kind=kind, title=title or id.upper(), text=text or f"About {id}.", tags=tags or []
    )


def context(
    items: list[tuple[KnowledgeItem, float]],
    problem: str = "How do we rotate database credentials safely?",
    references: list[KnowledgeItem] | None = None,
    **constraints: Any,
) -> SolutionContext:
    return SolutionContext(
        problem=problem,
        constraints=constraints,
        items=[ScoredItem(item=i, score=s) for i, s in items],
        references=references or [],
    )


def knowledge() -> list[tuple[KnowledgeItem, float]]:
    return [
        (
            ki(
                "rot",
                "rule",
                "Rotate credentials",
                "Rotate database credentials every 90 days.",
                ["security"],
            ),
            8.0,
        ),
        (ki("vault", "fact", "Vault", "The vault issues short-lived database passwords."), 6.0),
        (ki("dual", "rule", "Dual control", "Credential changes need two people.", ["ops"]), 4.0),
        (
            ki("freeze", "fact", "Change freeze", "No changes during the quarter close.", ["ops"]),
            1.0,
        ),
        (ki("legacy", "document", "Legacy DB", "The legacy database has no rotation API."), 0.5),
    ]


# -- helpers ------------------------------------------------------------------------------------


def test_content_words_drop_stopwords_and_fold_plurals() -> None:
    assert content_words("How do we rotate the Database credentials, safely?") == {
        "rotate",
        "database",
        "credential",
        "safely",
    }
    assert content_words("a class of resets, status") == {"class", "reset", "status"}


def test_normalised_relevance() -> None:
    assert normalised_relevance([]) == []
    assert normalised_relevance([8.0, 4.0, 2.0]) == [1.0, 0.5, 0.25]
    assert normalised_relevance([-1.0, -3.0, -5.0]) == [1.0, 0.5, 0.0]
    assert normalised_relevance([0.0, 0.0]) == [1.0, 1.0]


def test_they_satisfy_the_protocols_and_load_by_path() -> None:
    assert isinstance(EvidenceGenerator(), Generator)
    assert isinstance(CoverageScorer(), Scorer)
    assert isinstance(FlakyScorer(), Scorer)
    gen = load_plugin("callboard.pipeline.plugins:EvidenceGenerator", {"max_items": 2})
    assert isinstance(gen, EvidenceGenerator) and gen.max_items == 2


# -- EvidenceGenerator --------------------------------------------------------------------------


def test_generator_is_deterministic_per_seed() -> None:
    gen, ctx = EvidenceGenerator(), context(knowledge())
    a = gen.generate(ctx, 6, random.Random(42))
    b = gen.generate(ctx, 6, random.Random(42))
    assert a == b and len(a) == 6
    others = [gen.generate(ctx, 6, random.Random(seed)) for seed in range(5)]
    assert any(o != a for o in others)


def test_generator_candidates_are_distinct_readable_and_cite_their_items() -> None:
    gen, ctx = EvidenceGenerator(), context(knowledge())
    ids = {i.id for i, _ in knowledge()}
    cands = gen.generate(ctx, 8, random.Random(1))
    assert len({c.text for c in cands}) == len(cands) == 8
    assert len({tuple(sorted(c.evidence)) for c in cands}) == len(cands)
    by_id = {i.id: i for i, _ in knowledge()}
    for c in cands:
        assert 1 <= len(c.evidence) <= 3 and set(c.evidence) <= ids
        assert c.meta["template"] in {"rule_because", "rules", "evidence"}
        assert c.meta["items"] == len(c.evidence)
        for item_id in c.evidence:
            assert by_id[item_id].title in c.text
    rule_because = next(c for c in cands if c.meta["template"] == "rule_because")
    assert "(because " in rule_because.text and rule_because.text.endswith(").")
    # Rules come first in the text and in the evidence list.
    kinds = [by_id[i].kind for i in rule_because.evidence]
    assert kinds == sorted(kinds, key=["rule", "document", "fact"].index)


def test_generator_templates() -> None:
    gen = EvidenceGenerator()
    rot, vault = knowledge()[0][0], knowledge()[1][0]
    one_rule = gen.generate(context([(rot, 1.0)]), 3, random.Random(0))
    assert [c.text for c in one_rule] == [
        "Rotate credentials: Rotate database credentials every 90 days."
    ]
    both = gen.generate(
        context([(rot, 1.0), (vault, 1.0)], must_use=["rot", "vault"]), 3, random.Random(0)
    )
    assert [c.text for c in both] == [
        "Rotate credentials: Rotate database credentials every 90 days (because Vault)."
    ]
    facts = gen.generate(context([(vault, 1.0)]), 3, random.Random(0))
    assert facts[0].text == "Based on Vault: The vault issues short-lived database passwords."
    assert facts[0].meta["template"] == "evidence"


def test_generator_prefers_relevant_items() -> None:
    gen, ctx = EvidenceGenerator(max_items=1), context(knowledge())
    counts: dict[str, int] = {}
    for seed in range(200):
        for c in gen.generate(ctx, 1, random.Random(seed)):
            counts[c.evidence[0]] = counts.get(c.evidence[0], 0) + 1
    assert counts["rot"] > counts["dual"] > counts["legacy"]


def test_generator_respects_constraints() -> None:
    gen = EvidenceGenerator()
    ctx = context(knowledge(), exclude_tags=["ops"], exclude_ids=["legacy"])
    for seed in range(20):
        for c in gen.generate(ctx, 6, random.Random(seed)):
            assert set(c.evidence) <= {"rot", "vault"}

    ctx = context(knowledge(), must_use=["freeze", "missing"])
    for seed in range(20):
        for c in gen.generate(ctx, 6, random.Random(seed)):
            assert "freeze" in c.evidence and "missing" not in c.evidence  # missing: ignored
            assert len(c.evidence) <= 3

    ctx = context(knowledge(), max_items=1)
    assert all(len(c.evidence) == 1 for c in gen.generate(ctx, 6, random.Random(3)))

    # must_use beats the exclusions; with everything else excluded, one candidate is left.
    ctx = context(
        knowledge(),
        must_use=["dual"],
        exclude_tags=["ops", "security"],
        exclude_ids=["vault", "legacy"],
    )
    assert [c.evidence for c in gen.generate(ctx, 6, random.Random(0))] == [["dual"]]


def test_generator_uses_references() -> None:
    ref = ki("policy", "rule", "Key policy", "Keys live in the vault only.")
    ctx = context(knowledge()[:1], references=[ref])
    seen = {
        i
        for s in range(10)
        for c in EvidenceGenerator().generate(ctx, 3, random.Random(s))
        for i in c.evidence
    }
    assert seen == {"rot", "policy"}


def test_generator_without_knowledge_returns_nothing() -> None:
    gen = EvidenceGenerator()
    assert gen.generate(SolutionContext(problem="anything"), 5, random.Random(0)) == []
    everything_excluded = context(
        knowledge(), exclude_tags=["security", "ops"], exclude_ids=["vault", "legacy"]
    )
    assert gen.generate(everything_excluded, 5, random.Random(0)) == []
    assert gen.generate(context(knowledge()), 0, random.Random(0)) == []


def test_generator_returns_fewer_when_combinations_run_out() -> None:
    ctx = context(knowledge()[:2])  # 2 items: 3 non-empty subsets
    assert len(EvidenceGenerator().generate(ctx, 10, random.Random(0))) == 3


def test_generator_options_are_checked() -> None:
    with pytest.raises(ValueError):
        EvidenceGenerator(max_items=0)
    with pytest.raises(ValueError):
        EvidenceGenerator(floor=0.0)


# -- CoverageScorer -----------------------------------------------------------------------------


def test_scores_are_in_range_one_per_candidate_and_deterministic() -> None:
    ctx = context(knowledge())
    cands = EvidenceGenerator().generate(ctx, 8, random.Random(5))
    cands += [Candidate(text="no evidence"), Candidate(text="unknown", evidence=["nope"])]
    scorer = CoverageScorer()
    scores = scorer.score(ctx, cands)
    assert len(scores) == len(cands)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == scorer.score(ctx, cands)
    assert scores[-1] == scores[-2] == pytest.approx(0.2 / 1.0)  # only consistency


def test_coverage_raises_the_score() -> None:
    ctx = context(knowledge())
    scorer = CoverageScorer()
    on_topic = Candidate(text="x", evidence=["rot"])  # rotate, database, credential
    off_topic = Candidate(text="y", evidence=["freeze"])
    a, b = scorer.explain(ctx, on_topic), scorer.explain(ctx, off_topic)
    assert a["coverage"] == pytest.approx(3 / 4) and b["coverage"] == 0.0
    assert a["score"] > 0.55 > b["score"]
    # Coverage alone (other weights zero) is exactly the covered fraction.
    only = CoverageScorer(relevance_weight=0, consistency_weight=0, rule_bonus=0)
    assert only.score(ctx, [on_topic]) == [pytest.approx(0.75)]


def test_relevance_and_rule_bonus() -> None:
    ctx = context(knowledge())
    scorer = CoverageScorer()
    e = scorer.explain(ctx, Candidate(text="x", evidence=["rot", "dual"]))
    assert e["relevance"] == pytest.approx((1.0 + 0.5) / 2)
    assert e["rules"] == 1.0
    rel = CoverageScorer(coverage_weight=0, consistency_weight=0, rule_bonus=0)
    assert rel.score(ctx, [Candidate(text="x", evidence=["freeze"])]) == [pytest.approx(1 / 8)]
    bonus = CoverageScorer(coverage_weight=0, relevance_weight=0, consistency_weight=0)
    assert bonus.score(ctx, [Candidate(text="x", evidence=["rot", "vault"])]) == [0.5]


def test_conflicting_evidence_is_penalised() -> None:
    now = ki(
        "now", "rule", "Rotate now", "Rotate database credentials today.", ["conflicts:freeze"]
    )
    frozen = ki("frz", "fact", "Freeze", "Database changes are frozen.", ["freeze"])
    calm = ki("calm", "fact", "Calm", "Database credentials are stable.", ["ops"])
    ctx = context([(now, 5.0), (frozen, 5.0), (calm, 5.0)])
    scorer = CoverageScorer()
    clash = scorer.explain(ctx, Candidate(text="x", evidence=["now", "frz"]))
    fine = scorer.explain(ctx, Candidate(text="y", evidence=["now", "calm"]))
    assert clash["consistency"] == 0.0 and fine["consistency"] == 1.0
    assert clash["score"] == pytest.approx(fine["score"] - 0.2)
    # A conflict may also name an item id, and it does not matter which side declares it.
    by_id = ki("later", "rule", "Later", "Wait.", ["conflicts:now"])
    ctx2 = context([(now, 1.0), (by_id, 1.0)])
    assert scorer.explain(ctx2, Candidate(text="z", evidence=["later", "now"]))["consistency"] == 0


def test_scorer_options_are_checked() -> None:
    with pytest.raises(ValueError):
        CoverageScorer(coverage_weight=-1)
    with pytest.raises(ValueError):
        CoverageScorer(0, 0, 0, 0)


# -- FlakyScorer --------------------------------------------------------------------------------


def test_flaky_scorer_fails_at_the_configured_rate_reproducibly() -> None:
    ctx = context(knowledge())
    cands = [Candidate(text="x", evidence=["rot"])]

    def pattern(seed: int, rate: float, calls: int = 400) -> list[bool]:
        flaky = FlakyScorer(fail_rate=rate, seed=seed)
        out = []
        for _ in range(calls):
            try:
                assert flaky.score(ctx, cands) == CoverageScorer().score(ctx, cands)
                out.append(False)
            except RuntimeError as exc:
                assert "injected failure" in str(exc)
                out.append(True)
        assert flaky.calls == calls and flaky.failures == sum(out)
        return out

    p = pattern(seed=3, rate=0.25)
    assert p == pattern(seed=3, rate=0.25)
    assert 0.18 < sum(p) / len(p) < 0.32
    assert p != pattern(seed=4, rate=0.25)
    assert not any(pattern(seed=3, rate=0.0, calls=50))
    assert all(pattern(seed=3, rate=1.0, calls=50))


def test_flaky_scorer_delays_and_wraps_any_scorer() -> None:
    ctx = context(knowledge())
    flaky = FlakyScorer(
        delay_s=0.01,
        inner="callboard.pipeline.plugins:CoverageScorer",
        inner_options={
            "coverage_weight": 1,
            "relevance_weight": 0,
            "consistency_weight": 0,
            "rule_bonus": 0,
        },
    )
    started = time.perf_counter()
    assert flaky.score(ctx, [Candidate(text="x", evidence=["rot"])]) == [pytest.approx(0.75)]
    assert time.perf_counter() - started >= 0.01
    with pytest.raises(ValueError):
        FlakyScorer(fail_rate=2)
    with pytest.raises(TypeError):
        FlakyScorer(inner="callboard.pipeline.plugins:EvidenceGenerator")


def test_flaky_scorer_error_mode_raises_unavailable() -> None:
    ctx = context(knowledge())
    cands = [Candidate(text="x", evidence=["rot"])]
    flaky = FlakyScorer(fail_rate=1.0, mode="error")
    with pytest.raises(Unavailable) as info:
        flaky.score(ctx, cands)
    assert info.value.code == "unavailable"
    assert not isinstance(info.value, RuntimeError)  # an error reply, not a crash
    assert "injected failure" in str(info.value)
    assert (flaky.calls, flaky.failures) == (1, 1)
    assert FlakyScorer(fail_rate=0.0, mode="error").score(ctx, cands) == CoverageScorer().score(
        ctx, cands
    )
    with pytest.raises(RuntimeError, match="injected failure"):
        FlakyScorer(fail_rate=1.0).score(ctx, cands)  # the default mode still crashes
    for bad in ("explode", "", "ERROR"):
        with pytest.raises(ValueError, match="mode"):
            FlakyScorer(mode=bad)


def _control(path: Path, text: str, ns: int) -> None:
    """Replace the control file atomically and give it a distinct modification time."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    os.utime(path, ns=(ns, ns))


def test_flaky_scorer_control_file_changes_faults_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(knowledge())
    cands = [Candidate(text="x", evidence=["rot"])]
    expected = CoverageScorer().score(ctx, cands)
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # plugins calls time.sleep
    path = tmp_path / "flaky.json"
    flaky = FlakyScorer(fail_rate=0.0, mode="error", control=str(path))

    def fails() -> bool:
        try:
            assert flaky.score(ctx, cands) == expected
        except Unavailable:
            return True
        return False

    assert not fails()  # no file yet: the constructor's values hold
    _control(path, '{"fail_rate": 1.0}', 1_000_000_000)
    assert fails()
    assert (flaky.fail_rate, flaky.delay_s) == (1.0, 0.0)

    _control(path, '{"fail_rate": 0.0, "delay_s": 0.0}', 2_000_000_000)
    assert not fails()
    assert (flaky.fail_rate, flaky.delay_s) == (0.0, 0.0)

    _control(path, '{"delay_s": 0.25}', 3_000_000_000)  # one key: the other is kept
    assert not fails()
    assert (flaky.fail_rate, flaky.delay_s) == (0.0, 0.25)
    assert slept == [0.25]
    _control(path, '{"fail_rate": 1.0, "delay_s": 0}', 4_000_000_000)
    assert fails()
    assert slept == [0.25]


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "",
        '{"fail_rate": 1.5}',
        '{"fail_rate": -0.1}',
        '{"fail_rate": NaN}',
        '{"fail_rate": "often"}',
        '{"fail_rate": null}',
        '{"delay_s": -1}',
        '{"delay_s": Infinity}',
        "[0.0]",
        "0.0",
    ],
)
def test_flaky_scorer_bad_control_file_keeps_the_previous_values(tmp_path: Path, text: str) -> None:
    ctx = context(knowledge())
    cands = [Candidate(text="x", evidence=["rot"])]
    path = tmp_path / "flaky.json"
    _control(path, '{"fail_rate": 1.0}', 1_000_000_000)
    flaky = FlakyScorer(fail_rate=0.0, mode="error", control=str(path))
    with pytest.raises(Unavailable):
        flaky.score(ctx, cands)

    _control(path, text, 2_000_000_000)
    with pytest.raises(Unavailable):
        flaky.score(ctx, cands)
    assert (flaky.fail_rate, flaky.delay_s) == (1.0, 0.0)

    _control(path, '{"fail_rate": 0.0}', 3_000_000_000)  # a good file is read again
    assert flaky.score(ctx, cands) == CoverageScorer().score(ctx, cands)


def test_flaky_scorer_missing_control_file_keeps_the_values(tmp_path: Path) -> None:
    ctx = context(knowledge())
    cands = [Candidate(text="x", evidence=["rot"])]
    path = tmp_path / "flaky.json"
    _control(path, '{"fail_rate": 1.0}', 1_000_000_000)
    flaky = FlakyScorer(mode="error", control=str(path))
    with pytest.raises(Unavailable):
        flaky.score(ctx, cands)
    path.unlink()
    with pytest.raises(Unavailable):
        flaky.score(ctx, cands)
    assert flaky.fail_rate == 1.0
    _control(path, '{"fail_rate": 0.0}', 2_000_000_000)  # back again: read
    assert flaky.score(ctx, cands) == CoverageScorer().score(ctx, cands)


# -- the reward model's checks ------------------------------------------------------------------


def test_checked_scores_clamps_and_refuses_plugin_bugs() -> None:
    assert checked_scores([-0.5, 0.25, 1, 7.0], 4) == [0.0, 0.25, 1.0, 1.0]
    with pytest.raises(ValueError, match="2 scores for 3"):
        checked_scores([0.1, 0.2], 3)
    for bad in ([float("nan")], [float("inf")], ["0.5"], [True], [None]):
        with pytest.raises(ValueError):
            checked_scores(bad, 1)
    with pytest.raises(ValueError):
        checked_scores("1", 1)
