"""CreditLedger: credit per consumer, incarnations, round robin."""

from __future__ import annotations

from callboard.queues._dispatch import CreditLedger


def test_credit_is_prefetch_minus_what_is_held() -> None:
    ledger = CreditLedger()
    state, replaced = ledger.register("w", "addr1", 3)
    assert not replaced and state.credit == 3
    ledger.delivered("w", ["a", "b"])
    assert state.credit == 1
    assert ledger.settled("w", ["a", "zzz"]) == 1  # only what it held counts
    assert state.credit == 2
    assert ledger.plan() == [(state, 2)]


def test_a_registration_from_the_same_address_refreshes_prefetch_and_keeps_holdings() -> None:
    ledger = CreditLedger()
    ledger.register("w", "addr1", 3)
    ledger.delivered("w", ["a"])
    state, replaced = ledger.register("w", "addr1", 5)
    assert not replaced and state.in_flight == {"a"} and state.credit == 4


def test_a_registration_from_another_address_is_a_new_incarnation() -> None:
    ledger = CreditLedger()
    ledger.register("w", "addr1", 3)
    ledger.delivered("w", ["a", "b"])
    state, replaced = ledger.register("w", "addr2", 3)
    assert replaced and state.in_flight == set() and state.address == "addr2"


def test_forget_returns_what_the_consumer_held() -> None:
    ledger = CreditLedger()
    ledger.register("w", "a", 2)
    ledger.delivered("w", ["x", "y"])
    assert ledger.forget("w") == {"x", "y"}
    assert ledger.get("w") is None and ledger.forget("w") == set()
    assert ledger.settled("w", ["x"]) == 0


def test_dropped_ids_free_credit_wherever_they_were() -> None:
    ledger = CreditLedger()
    ledger.register("a", 1, 2)
    ledger.register("b", 2, 2)
    ledger.delivered("a", ["1", "2"])
    ledger.delivered("b", ["3"])
    ledger.dropped(["2", "3"])
    assert ledger.snapshot() == {
        "a": {"prefetch": 2, "in_flight": 1},
        "b": {"prefetch": 2, "in_flight": 0},
    }


def test_plan_rotates_the_first_consumer_and_skips_those_without_credit() -> None:
    ledger = CreditLedger()
    for name in ("a", "b", "c"):
        ledger.register(name, name, 1)
    firsts = [ledger.plan()[0][0].name for _ in range(3)]
    assert firsts == ["a", "b", "c"]
    ledger.delivered("b", ["x"])
    assert [s.name for s, _ in ledger.plan()] in (["a", "c"], ["c", "a"])
    assert CreditLedger().plan() == []
