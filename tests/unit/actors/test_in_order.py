"""InOrder: batches of one stream handed on in the order they were sent."""

from __future__ import annotations

from callboard.actors._ordering import InOrder


def play(order: InOrder, epoch: str, batch: int, log: list[str]) -> list[str]:
    before = len(log)
    for run in order.offer(epoch, batch, lambda: log.append(f"{epoch}{batch}")):
        run()
    return log[before:]


def test_batches_in_order_run_at_once() -> None:
    order, log = InOrder(), list[str]()
    assert play(order, "a", 1, log) == ["a1"]
    assert play(order, "a", 2, log) == ["a2"]
    assert order.waiting == 0


def test_a_batch_that_overtook_another_waits_for_it() -> None:
    order, log = InOrder(), list[str]()
    assert play(order, "a", 2, log) == []
    assert play(order, "a", 3, log) == []
    assert order.waiting == 2
    assert play(order, "a", 1, log) == ["a1", "a2", "a3"]
    assert order.waiting == 0 and order.next == 4


def test_a_new_epoch_flushes_the_old_stragglers_then_starts_from_one() -> None:
    order, log = InOrder(), list[str]()
    play(order, "a", 1, log)
    assert play(order, "a", 3, log) == []  # a2 never comes: its sender restarted
    assert play(order, "b", 2, log) == ["a3"]
    assert play(order, "b", 1, log) == ["b1", "b2"]


def test_skip_gap_gives_up_on_a_lost_batch() -> None:
    order, log = InOrder(), list[str]()
    play(order, "a", 1, log)
    play(order, "a", 3, log)
    play(order, "a", 4, log)
    for run in order.skip_gap():
        run()
    assert log == ["a1", "a3", "a4"] and order.next == 5
    assert play(order, "a", 5, log) == ["a5"]


def test_unnumbered_and_stale_batches_run_at_once() -> None:
    order, log = InOrder(), list[str]()
    assert play(order, "", 0, log) == ["0"]
    play(order, "a", 1, log)
    assert play(order, "a", 1, log) == ["a1"]  # re-sent: not held forever
