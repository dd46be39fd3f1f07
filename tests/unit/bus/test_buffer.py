"""The per-subscriber buffer: FIFO order, overflow policies, the credit window, counters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callboard.bus import Offer, Overflow, SubscriberBuffer


def filled(
    items: int, capacity: int = 10, window: int = 3, overflow: Overflow = "reject"
) -> SubscriberBuffer[int]:
    buf: SubscriberBuffer[int] = SubscriberBuffer(capacity, window, overflow)
    for i in range(items):
        assert buf.offer(i).status == "accepted"
    return buf


def test_items_go_out_in_order_within_the_window() -> None:
    buf = filled(7)
    assert buf.depth == 7 and buf.in_flight == 0 and buf.credit == 3
    assert buf.take() == [0, 1, 2]
    assert buf.depth == 4 and buf.in_flight == 3 and buf.credit == 0
    assert buf.take() == []
    buf.ack(2)
    assert buf.in_flight == 1 and buf.credit == 2
    assert buf.take() == [3, 4]
    buf.ack(3)
    assert buf.take() == [5, 6]
    assert buf.take() == []
    buf.ack(2)
    assert (buf.depth, buf.in_flight, buf.delivered, buf.acked) == (0, 0, 7, 7)


def test_take_with_fewer_items_than_credit() -> None:
    buf = filled(1, window=5)
    assert buf.take() == [0]
    assert buf.take() == []
    buf.offer(1)
    assert buf.take() == [1]
    assert buf.in_flight == 2 and buf.credit == 3


def test_acks_are_cumulative_counts_in_fifo_order() -> None:
    buf = filled(3)
    buf.take()
    buf.ack(0)
    assert buf.in_flight == 3
    buf.ack(1)
    assert buf.reset_in_flight() == [1, 2]


def test_an_ack_beyond_the_in_flight_items_is_an_error() -> None:
    buf = filled(2)
    buf.take()
    with pytest.raises(ValueError, match="ack of 3 items but only 2 are in flight"):
        buf.ack(3)
    assert buf.in_flight == 2 and buf.acked == 0  # nothing changed
    with pytest.raises(ValueError, match="ack count"):
        buf.ack(-1)
    buf.ack(2)
    with pytest.raises(ValueError, match="only 0 are in flight"):
        buf.ack(1)


def test_drop_oldest_evicts_the_oldest_waiting_item() -> None:
    buf = filled(3, capacity=3, window=1, overflow="drop_oldest")
    assert buf.take() == [0]  # in flight: never evicted
    buf.offer(3)
    offer = buf.offer(4)
    assert offer == Offer("dropped_oldest", 1)
    assert offer.queued and offer.evicted == 1
    assert buf.depth == 3 and buf.dropped == 1 and buf.high_watermark == 3
    buf.ack(1)
    assert buf.take() == [2]
    buf.ack(1)
    assert buf.take() == [3]


def test_reject_refuses_the_new_item() -> None:
    buf = filled(2, capacity=2, overflow="reject")
    offer = buf.offer(99)
    assert offer == Offer("rejected")
    assert not offer.queued and offer.evicted is None
    assert buf.rejected == 1 and buf.depth == 2
    assert buf.take() == [0, 1]
    assert buf.offer(2).status == "accepted"  # room again once items are in flight


def test_dead_letter_refuses_the_new_item_for_the_caller_to_file() -> None:
    buf = filled(2, capacity=2, overflow="dead_letter")
    offer = buf.offer(99)
    assert offer == Offer("dead_lettered")
    assert not offer.queued
    assert buf.dead_lettered == 1 and buf.rejected == 0 and buf.depth == 2
    assert buf.take() == [0, 1]


def test_the_capacity_counts_only_waiting_items() -> None:
    buf = filled(2, capacity=2, window=2, overflow="reject")
    buf.take()
    assert buf.offer(2).status == "accepted"
    assert buf.offer(3).status == "accepted"
    assert buf.offer(4).status == "rejected"
    assert buf.depth + buf.in_flight == 4


def test_reset_loses_in_flight_items_of_a_non_durable_subscriber() -> None:
    buf = filled(5)
    buf.take()
    buf.ack(1)
    assert buf.reset_in_flight() == [1, 2]
    assert buf.lost == 2 and buf.in_flight == 0 and buf.credit == 3
    assert buf.take() == [3, 4]
    assert buf.reset_in_flight() == [3, 4]
    assert buf.reset_in_flight() == []
    assert buf.lost == 4


def test_reset_with_requeue_sends_the_in_flight_items_again_first() -> None:
    buf: SubscriberBuffer[int] = SubscriberBuffer(3, 2, "drop_oldest")
    assert [buf.offer(i).status for i in range(5)] == ["accepted"] * 3 + ["dropped_oldest"] * 2
    assert buf.depth == 3  # 0 and 1 were dropped
    assert buf.take() == [2, 3]
    buf.offer(5)
    assert buf.reset_in_flight(requeue=True) == [2, 3]
    assert buf.redelivered == 2 and buf.lost == 0
    assert buf.depth == 4 and buf.high_watermark == 4  # over capacity by up to the window
    assert buf.take() == [2, 3]
    buf.ack(2)
    assert buf.take() == [4, 5]
    assert buf.delivered == 6 and buf.delivered - buf.redelivered == 4  # distinct items


def test_counters_and_snapshot() -> None:
    buf: SubscriberBuffer[str] = SubscriberBuffer(2, 1, "reject")
    for item in "abcd":
        buf.offer(item)
    buf.take()
    buf.ack(1)
    assert buf.snapshot() == {
        "capacity": 2,
        "window": 1,
        "overflow": "reject",
        "depth": 1,
        "in_flight": 0,
        "offered": 4,
        "delivered": 1,
        "acked": 1,
        "dropped": 0,
        "rejected": 2,
        "dead_lettered": 0,
        "lost": 0,
        "redelivered": 0,
        "high_watermark": 2,
    }


def test_high_watermark_remembers_the_deepest_buffer() -> None:
    buf = filled(4, window=10)
    buf.take()
    buf.offer(9)
    assert buf.depth == 1 and buf.high_watermark == 4


def test_none_is_a_valid_item() -> None:
    buf: SubscriberBuffer[None] = SubscriberBuffer(1, 1, "drop_oldest")
    buf.offer(None)
    assert buf.offer(None) == Offer("dropped_oldest", None)
    assert buf.take() == [None]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((0, 1, "reject"), "capacity"),
        ((1, 0, "reject"), "window"),
        ((True, 1, "reject"), "capacity"),
        ((1, 1.5, "reject"), "window"),
        ((1, 1, "drop_newest"), "overflow must be one of drop_oldest, reject, dead_letter"),
    ],
)
def test_bad_configuration_is_refused(args: tuple[Any, Any, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        SubscriberBuffer(*args)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.integers(1, 4)),
        st.tuples(st.just("take"), st.just(0)),
        st.tuples(st.just("ack"), st.integers(0, 4)),
        st.tuples(st.just("reset"), st.booleans().map(int)),
    ),
    max_size=60,
)


@given(
    st.integers(1, 4), st.integers(1, 4), st.sampled_from(["drop_oldest", "reject", "dead_letter"]),
    steps,
)  # fmt: skip
@settings(max_examples=300)
def test_every_offered_item_is_accounted_for(
    capacity: int, window: int, overflow: Overflow, operations: list[tuple[str, int]]
) -> None:
    buf: SubscriberBuffer[int] = SubscriberBuffer(capacity, window, overflow)
    sent: list[int] = []  # the order items left the buffer, first deliveries only
    next_item = 0
    for op, n in operations:
        if op == "offer":
            for _ in range(n):
                buf.offer(next_item)
                next_item += 1
        elif op == "take":
            sent.extend(i for i in buf.take() if i not in sent)
        elif op == "ack":
            buf.ack(min(n, buf.in_flight))
        else:
            buf.reset_in_flight(requeue=bool(n))
        assert buf.in_flight <= window
        assert buf.depth <= capacity + window
        assert buf.offered == (
            buf.rejected + buf.dead_lettered + buf.dropped + buf.depth
            + buf.delivered - buf.redelivered
        )  # fmt: skip
        assert buf.delivered == buf.in_flight + buf.acked + buf.lost + buf.redelivered
        assert buf.high_watermark >= buf.depth
    assert sent == sorted(sent)  # FIFO: never overtaken
