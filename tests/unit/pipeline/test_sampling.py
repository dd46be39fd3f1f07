"""The rejection-sampling loop as plain code, plus one run of the two actors in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import pytest

from callboard import RemoteError, System
from callboard.pipeline import (
    Candidate,
    KnowledgeItem,
    NoAcceptableSolution,
    Sample,
    ScoredItem,
    Selected,
    SolutionContext,
)
from callboard.pipeline._sampling import Done, RejectionSampler

# -- helpers ----------------------------------------------------------------------------------


def scripted(*rounds: Sequence[str]) -> Callable[[int], list[Candidate]]:
    """A generator returning the given texts, one list per round (then nothing)."""
    batches: Iterator[Sequence[str]] = iter(rounds)

    def generate(k: int) -> list[Candidate]:
        return [Candidate(text=t) for t in next(batches, [])][:k]

    return generate


def table(values: dict[str, float]) -> Callable[[Sequence[Candidate]], list[float]]:
    """A scorer looking each candidate's text up in ``values``; remembers what it saw."""
    calls: list[list[str]] = []

    def score(cands: Sequence[Candidate]) -> list[float]:
        calls.append([c.text for c in cands])
        return [values[c.text] for c in cands]

    score.calls = calls  # type: ignore[attr-defined]
    return score


def sampler(
    threshold: float = 0.6, n: int = 3, max_rounds: int = 3, allow_degraded: bool = False
) -> RejectionSampler:
    return RejectionSampler(threshold, n, max_rounds, allow_degraded)


# -- the loop ---------------------------------------------------------------------------------


def test_accepts_in_the_first_round() -> None:
    score = table({"a": 0.2, "b": 0.9, "c": 0.7})
    sel = sampler().run(scripted(["a", "b", "c"], ["d"]), score)
    assert sel.best.text == "b" and sel.score == 0.9 and not sel.degraded
    assert sel.stats.model_dump() == {
        "generated": 3,
        "accepted": 2,
        "rounds": 1,
        "rejection_rate": pytest.approx(1 / 3),
    }
    assert [(r.candidate.text, r.accepted, r.round) for r in sel.records] == [
        ("a", False, 1),
        ("b", True, 1),
        ("c", True, 1),
    ]
    assert sel.records[0].reason == "score 0.20 below threshold 0.60"
    assert sel.records[1].reason == sel.records[2].reason == ""
    assert score.calls == [["a", "b", "c"]]  # type: ignore[attr-defined]


def test_threshold_is_inclusive() -> None:
    sel = sampler(threshold=0.5).run(scripted(["a"]), table({"a": 0.5}))
    assert sel.records[0].accepted


def test_several_rounds_then_early_stop() -> None:
    score = table({"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.8, "e": 0.95, "f": 0.99})
    s = sampler(max_rounds=5)
    sel = s.run(scripted(["a", "b"], ["c"], ["d", "e"], ["f"]), score)
    assert sel.best.text == "e" and sel.score == 0.95
    assert sel.stats.rounds == 3 and sel.stats.generated == 5 and sel.stats.accepted == 2
    assert sel.stats.rejection_rate == pytest.approx(3 / 5)
    assert [r.round for r in sel.records] == [1, 1, 2, 3, 3]
    assert score.calls == [["a", "b"], ["c"], ["d", "e"]]  # type: ignore[attr-defined]
    assert s.done is not None and s.done.selected == sel


def test_step_api_drives_the_loop() -> None:
    s = sampler(max_rounds=2)
    step = s.start(scripted(["a", "b"], ["c"]))
    assert isinstance(step, list) and [c.text for c in step] == ["a", "b"] and s.round == 1
    step = s.add_scores([0.1, 0.2])
    assert isinstance(step, list) and [c.text for c in step] == ["c"] and s.round == 2
    step = s.add_scores([0.7])
    assert isinstance(step, Done)
    assert step.result().best.text == "c"
    with pytest.raises(RuntimeError):
        s.add_scores([0.5])
    with pytest.raises(RuntimeError):
        s.start(scripted(["x"]))


def test_generator_asked_for_n_and_extra_candidates_are_dropped() -> None:
    asked: list[int] = []

    def generate(k: int) -> list[Candidate]:
        asked.append(k)
        return [Candidate(text=str(i)) for i in range(10)]

    s = sampler(n=4, max_rounds=1, allow_degraded=True)
    sel = s.run(generate, lambda cands: [0.1] * len(cands))
    assert asked == [4] and sel.stats.generated == 4


def test_duplicates_are_dropped_within_and_across_rounds() -> None:
    score = table({"a": 0.1, "b": 0.2, "c": 0.9})
    s = sampler(max_rounds=3)
    sel = s.run(scripted(["a", "b", "a "], ["b", "a"], ["b", "c"]), score)
    assert [r.candidate.text for r in sel.records] == ["a", "b", "c"]
    assert s.duplicates == 4
    # Round 2 had nothing new: it costs a round but no scoring call.
    assert score.calls == [["a", "b"], ["c"]]  # type: ignore[attr-defined]
    assert sel.stats.rounds == 3 and sel.stats.generated == 3


def test_nothing_accepted_raises_with_stats_and_records() -> None:
    s = sampler(threshold=0.6, max_rounds=2)
    with pytest.raises(NoAcceptableSolution) as info:
        s.run(scripted(["a", "b"], ["c"]), table({"a": 0.4, "b": 0.41, "c": 0.2}))
    err = info.value
    assert err.code == "no_acceptable_solution"
    assert "best score 0.41" in str(err)
    assert {k: err.details[k] for k in ("generated", "accepted", "rounds", "rejection_rate")} == {
        "generated": 3,
        "accepted": 0,
        "rounds": 2,
        "rejection_rate": 1.0,
    }
    assert err.details["threshold"] == 0.6 and err.details["best_score"] == 0.41
    assert [r["reason"] for r in err.details["records"]] == [
        "score 0.40 below threshold 0.60",
        "score 0.41 below threshold 0.60",
        "score 0.20 below threshold 0.60",
    ]


def test_degraded_returns_the_best_rejected() -> None:
    s = sampler(threshold=0.6, max_rounds=2, allow_degraded=True)
    sel = s.run(scripted(["a", "b"], ["c"]), table({"a": 0.4, "b": 0.41, "c": 0.2}))
    assert sel.degraded and sel.best.text == "b" and sel.score == 0.41
    assert sel.stats.accepted == 0 and sel.stats.rejection_rate == 1.0
    assert all(not r.accepted and r.reason for r in sel.records)


def test_nothing_generated_is_never_degraded() -> None:
    calls: list[int] = []

    def generate(k: int) -> list[Candidate]:
        calls.append(k)
        return []

    s = sampler(max_rounds=3, allow_degraded=True)
    step = s.start(generate)
    assert isinstance(step, Done) and step.selected is None
    assert len(calls) == 3
    with pytest.raises(NoAcceptableSolution) as info:
        step.result()
    assert "no candidates generated" in str(info.value)
    assert info.value.details["generated"] == 0
    assert info.value.details["rejection_rate"] == 0.0
    assert info.value.details["best_score"] is None


def test_ties_go_to_the_first_generated() -> None:
    sel = sampler().run(scripted(["a", "b", "c"]), table({"a": 0.7, "b": 0.9, "c": 0.9}))
    assert sel.best.text == "b"
    deg = sampler(max_rounds=2, allow_degraded=True).run(
        scripted(["a"], ["b", "c"]), table({"a": 0.5, "b": 0.5, "c": 0.4})
    )
    assert deg.best.text == "a"
    # The same inputs give the same answer, every time.
    again = sampler().run(scripted(["a", "b", "c"]), table({"a": 0.7, "b": 0.9, "c": 0.9}))
    assert again == sel


def test_finish_early_uses_what_was_scored() -> None:
    s = sampler(max_rounds=3, allow_degraded=True)
    step = s.start(scripted(["a", "b"], ["c"]))
    assert isinstance(step, list)
    step = s.add_scores([0.3, 0.5])
    assert isinstance(step, list)
    done = s.finish()  # e.g. the reward model timed out on round 2
    assert done.result().best.text == "b" and done.result().degraded
    assert done.stats.rounds == 2 and done.stats.generated == 2

    strict = sampler(max_rounds=3)
    assert isinstance(strict.start(scripted(["a"])), list)
    with pytest.raises(NoAcceptableSolution):
        strict.finish().result()


def test_bad_scores_are_refused() -> None:
    s = sampler()
    assert isinstance(s.start(scripted(["a", "b"])), list)
    with pytest.raises(ValueError, match="1 scores for 2"):
        s.add_scores([0.5])
    with pytest.raises(ValueError, match="non-finite"):
        s.add_scores([0.5, float("nan")])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"n": 0},
        {"max_rounds": 0},
    ],
)
def test_invalid_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        sampler(**kwargs)  # type: ignore[arg-type]


# -- the actors, in one process -----------------------------------------------------------------


def _context() -> SolutionContext:
    def item(
        id: str, kind: Literal["fact", "rule"], title: str, text: str, score: float
    ) -> ScoredItem:
        return ScoredItem(item=KnowledgeItem(id=id, kind=kind, title=title, text=text), score=score)

    return SolutionContext(
        problem="How should admin password resets be verified?",
        items=[
            item(
                "r1",
                "rule",
                "Admin password resets",
                "Verify admin password resets with a second factor.",
                9.0,
            ),
            item("f1", "fact", "Phishing", "Most account takeovers start with phishing.", 4.0),
            item("f2", "fact", "Help desk", "The help desk handles resets by phone.", 2.0),
        ],
    )


@pytest.fixture
def pipeline() -> Iterator[System]:
    config = {
        "system": {"transport": "local", "log_level": "error"},
        "supervisor": {
            "children": [
                {"id": "reward_model", "actor": "callboard.pipeline.reward_model:RewardModel"},
                {
                    "id": "rejection_sampling",
                    "actor": "callboard.pipeline.rejection_sampling:RejectionSampling",
                    "args": {"n": 4, "threshold": 0.55},
                },
                {
                    "id": "strict_sampling",
                    "actor": "callboard.pipeline.rejection_sampling:RejectionSampling",
                    "args": {"threshold": 1.0, "max_rounds": 2},
                },
                {
                    # Calls 1 and 2 pass, call 3 raises (random.Random(0): 0.84, 0.76, 0.42).
                    "id": "flaky_rm",
                    "actor": "callboard.pipeline.reward_model:RewardModel",
                    "args": {
                        "scorer": "callboard.pipeline.plugins:FlakyScorer",
                        "scorer_options": {"fail_rate": 0.5, "seed": 0},
                    },
                },
                {
                    "id": "degraded_sampling",
                    "actor": "callboard.pipeline.rejection_sampling:RejectionSampling",
                    "args": {
                        "reward_model": "flaky_rm",
                        "threshold": 1.0,
                        "n": 2,
                        "allow_degraded": True,
                    },
                },
                {
                    "id": "orphan_sampling",
                    "actor": "callboard.pipeline.rejection_sampling:RejectionSampling",
                    "args": {"reward_model": "nobody", "allow_degraded": True},
                },
            ]
        },
    }
    with System.start(config) as system:
        yield system


def test_actors_select_deterministically_per_seed(pipeline: System) -> None:
    ctx = _context()
    sel = pipeline.ask("rejection_sampling", Sample(context=ctx, seed=7), timeout=5)
    assert isinstance(sel, Selected)
    assert sel.score >= 0.55 and not sel.degraded
    assert "r1" in sel.best.evidence
    assert sel.stats.generated == len(sel.records) >= 1
    again = pipeline.ask("rejection_sampling", Sample(context=ctx, seed=7), timeout=5)
    assert again == sel
    unseeded = pipeline.ask("rejection_sampling", Sample(context=ctx), timeout=5)
    assert isinstance(unseeded, Selected)


def test_actors_report_business_errors(pipeline: System) -> None:
    with pytest.raises(RemoteError) as info:
        pipeline.ask("strict_sampling", Sample(context=_context(), seed=1), timeout=5)
    assert info.value.code == "no_acceptable_solution"
    assert info.value.details["rounds"] == 2
    assert info.value.details["accepted"] == 0

    with pytest.raises(RemoteError) as info:
        pipeline.ask("rejection_sampling", Sample(context=SolutionContext(problem="x")), timeout=5)
    assert info.value.code == "no_acceptable_solution"

    # No reward model by that name, and nothing scored yet: nothing to degrade to.
    with pytest.raises(RemoteError) as info:
        pipeline.ask("orphan_sampling", Sample(context=_context(), seed=1), timeout=5)
    assert info.value.code == "stage_failed"
    assert info.value.details["stage"] == "reward_model"
    assert info.value.details["cause"] == "NoSuchActor"
    assert info.value.details["target"] == "nobody"


def test_a_failing_reward_model_degrades_to_what_was_scored(pipeline: System) -> None:
    sel = pipeline.ask("degraded_sampling", Sample(context=_context(), seed=3), timeout=5)
    assert isinstance(sel, Selected) and sel.degraded
    assert {r.round for r in sel.records} == {1, 2}  # round 3 was never scored
    assert sel.score == max(r.score for r in sel.records) < 1.0
