"""Topic and pattern validation, AMQP-style matching, and the subscription index."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callboard.bus import (
    MAX_SEGMENTS,
    MAX_TOPIC_LENGTH,
    InvalidTopic,
    SubscriptionIndex,
    topic_matches,
    validate_pattern,
    validate_topic,
)

# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic", ["a", "business.orders.big", "A-1_b.c-D", ".".join(["x"] * MAX_SEGMENTS)]
)
def test_valid_topics_come_back_unchanged(topic: str) -> None:
    assert validate_topic(topic) == topic
    assert validate_pattern(topic) == topic


@pytest.mark.parametrize("pattern", ["#", "*", "a.#", "#.c", "a.*.c", "#.a.#.b.*", "#.#"])
def test_valid_patterns_come_back_unchanged(pattern: str) -> None:
    assert validate_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("topic", "says"),
    [
        ("", "cannot be empty"),
        ("a..b", "segment 2 is empty"),
        (".a", "segment 1 is empty"),
        ("a.", "segment 2 is empty"),
        ("a.b c", "segment 2 'b c'"),
        ("a.b/c", "segment 2 'b/c'"),
        ("a.*", "segment 2 '*' is a wildcard"),
        ("#", "segment 1 '#' is a wildcard"),
        ("a.b#", "segment 2 'b#'"),
        ("ä", "segment 1 'ä'"),
        (".".join(["x"] * (MAX_SEGMENTS + 1)), f"at most {MAX_SEGMENTS}"),
        ("x" * (MAX_TOPIC_LENGTH + 1), f"at most {MAX_TOPIC_LENGTH}"),
    ],
)
def test_invalid_topics_name_the_culprit(topic: str, says: str) -> None:
    with pytest.raises(InvalidTopic, match="invalid_topic") as info:
        validate_topic(topic)
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.value == topic


@pytest.mark.parametrize(
    ("pattern", "says"),
    [("a.**", "segment 2 '**'"), ("a.#b", "segment 2 '#b'"), ("*.", "segment 2 is empty")],
)
def test_invalid_patterns_name_the_culprit(pattern: str, says: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_pattern(pattern)
    assert says in str(info.value)


def test_a_non_string_is_invalid() -> None:
    with pytest.raises(InvalidTopic, match="must be a string, not int"):
        validate_topic(3)  # type: ignore[arg-type]


def test_the_length_limit_is_inclusive() -> None:
    topic = "x" * MAX_TOPIC_LENGTH
    assert validate_topic(topic) == topic


# -- matching -----------------------------------------------------------------------------

CASES = [
    ("a.#", "a", True),
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b", False),
    ("a.#", "ab", False),
    ("#", "a", True),
    ("#", "a.b.c.d", True),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.b.c", False),
    ("#.c", "c", True),
    ("#.c", "x.c", True),
    ("#.c", "x.y.c", True),
    ("#.c", "x.c.d", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.b", "a.b", True),
    ("a.b", "a.B", False),
    ("a.#.b.#", "a.b", True),
    ("a.#.b.#", "a.x.y.b.z", True),
    ("a.#.b.#", "a.x.y", False),
    ("#.#", "a", True),
    ("*.#", "a", True),
    ("#.*", "a.b.c", True),
    ("*.*.#", "a", False),
    ("a.#.#.c", "a.c", True),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), CASES)
def test_topic_matches_follows_amqp(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


def test_matching_validates_both_sides() -> None:
    with pytest.raises(InvalidTopic):
        topic_matches("a..b", "a.b")
    with pytest.raises(InvalidTopic, match="wildcard"):
        topic_matches("#", "a.*")


def test_many_hashes_do_not_backtrack_exponentially() -> None:
    pattern = ".".join(["#"] * 15 + ["z"])
    topic = ".".join(["a"] * 31)
    assert topic_matches(pattern, topic) is False
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add(pattern, "k")
    assert index.match(topic) == []


# -- the index ----------------------------------------------------------------------------


def test_match_returns_each_key_once_in_first_subscription_order() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("a.#", "first")
    index.add("#.c", "second")
    index.add("a.*.c", "third")
    index.add("a.b.c", "first")  # a second pattern matching the same topic
    index.add("#", "fourth")
    assert index.match("a.b.c") == ["first", "second", "third", "fourth"]
    assert index.match("c") == ["second", "fourth"]
    assert index.match("z") == ["fourth"]
    assert len(index) == 5


def test_add_is_idempotent_and_len_counts_subscriptions() -> None:
    index: SubscriptionIndex[int] = SubscriptionIndex()
    assert index.add("a.b", 1) is True
    assert index.add("a.b", 1) is False
    assert index.add("a.b", 2) is True
    assert index.add("a.*", 1) is True
    assert len(index) == 3
    assert index.patterns(1) == ["a.b", "a.*"]
    assert index.patterns(3) == []
    assert index.keys() == [1, 2]
    assert 1 in index and 3 not in index


def test_add_rejects_an_invalid_pattern_and_changes_nothing() -> None:
    index: SubscriptionIndex[int] = SubscriptionIndex()
    with pytest.raises(InvalidTopic):
        index.add("a..b", 1)
    assert len(index) == 0 and 1 not in index


def test_remove_drops_every_pattern_of_a_key() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("a.#", "k")
    index.add("b", "k")
    index.add("a.b", "other")
    assert index.remove("k") == 2
    assert index.remove("k") == 0
    assert index.match("a.b") == ["other"]
    assert index.match("b") == []
    assert index.patterns("k") == []
    assert len(index) == 1


def test_remove_pattern_drops_one_subscription() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("a.#", "k")
    index.add("a.b", "k")
    assert index.remove_pattern("a.#", "k") is True
    assert index.remove_pattern("a.#", "k") is False
    assert index.remove_pattern("a.b", "nobody") is False
    assert index.remove_pattern("not..valid", "k") is False
    assert index.match("a.b") == ["k"]
    assert index.match("a.c") == []
    assert index.patterns("k") == ["a.b"]


def test_a_key_that_resubscribes_after_leaving_counts_as_new() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("#", "a")
    index.add("#", "b")
    index.remove_pattern("#", "a")
    index.add("#", "a")
    assert index.match("x") == ["b", "a"]


def test_removing_prunes_the_trie() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("a.b.c.d", "k")
    index.add("a.#", "j")
    index.remove("k")
    index.remove("j")
    assert index._root.children == {}


def test_the_cache_is_used_and_invalidated_by_every_change() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("a.*", "x")
    assert index.match("a.b") == ["x"]
    assert index.match("a.b") == ["x"]
    assert (index.cache_hits, index.cache_misses) == (1, 1)
    index.add("a.b", "y")
    assert index.match("a.b") == ["x", "y"]
    index.remove_pattern("a.*", "x")
    assert index.match("a.b") == ["y"]
    index.remove("y")
    assert index.match("a.b") == []
    assert index.cache_hits == 1


def test_the_cache_is_bounded_lru() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex(cache_size=2)
    index.add("#", "x")
    index.match("a")
    index.match("b")
    index.match("a")  # a is now the most recently used
    index.match("c")  # evicts b
    assert list(index._cache) == ["a", "c"]
    hits = index.cache_hits
    index.match("b")
    assert index.cache_hits == hits


def test_a_returned_list_does_not_alias_the_cache() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("#", "x")
    index.match("a").append("intruder")
    assert index.match("a") == ["x"]


def test_no_cache() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex(cache_size=0)
    index.add("#", "x")
    assert index.match("a") == index.match("a") == ["x"]
    assert index.cache_hits == 0
    with pytest.raises(ValueError, match="cache_size"):
        SubscriptionIndex(cache_size=-1)


def test_match_rejects_an_invalid_topic() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    with pytest.raises(InvalidTopic):
        index.match("a.*")


# -- properties ---------------------------------------------------------------------------

# A tiny alphabet so that random patterns and topics often match.
words = st.sampled_from(["a", "b", "c"])
topics = st.lists(words, min_size=1, max_size=6).map(".".join)
patterns = st.lists(st.sampled_from(["a", "b", "c", "*", "#"]), min_size=1, max_size=5).map(
    ".".join
)


def reference_match(pattern: list[str], topic: list[str]) -> bool:
    """The AMQP definition, written recursively: obviously right, exponentially slow."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference_match(rest, topic) or (bool(topic) and reference_match(pattern, topic[1:]))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and reference_match(rest, topic[1:])


@given(patterns, topics)
@settings(max_examples=500)
def test_topic_matches_agrees_with_the_definition(pattern: str, topic: str) -> None:
    expected = reference_match(pattern.split("."), topic.split("."))
    assert topic_matches(pattern, topic) is expected


ops = st.lists(
    st.tuples(st.sampled_from(["add", "add", "add", "remove", "remove_pattern"]), patterns,
              st.integers(0, 5)),
    max_size=40,
)  # fmt: skip


@given(ops, st.lists(topics, min_size=1, max_size=8), st.integers(0, 3))
@settings(max_examples=300)
def test_index_match_equals_brute_force(
    operations: list[tuple[str, str, int]], probes: list[str], cache_size: int
) -> None:
    index: SubscriptionIndex[int] = SubscriptionIndex(cache_size=cache_size)
    model: dict[int, list[str]] = {}  # key -> its patterns; dict order = subscription order
    for op, pattern, key in operations:
        if op == "add":
            assert index.add(pattern, key) is (pattern not in model.get(key, []))
            if pattern not in model.setdefault(key, []):
                model[key].append(pattern)
        elif op == "remove":
            assert index.remove(key) == len(model.pop(key, []))
        else:
            present = pattern in model.get(key, [])
            assert index.remove_pattern(pattern, key) is present
            if present:
                model[key].remove(pattern)
                if not model[key]:
                    del model[key]
        for topic in probes:  # interleaved, so stale cache entries would show
            expected = [k for k, ps in model.items() if any(topic_matches(p, topic) for p in ps)]
            assert index.match(topic) == expected
        assert len(index) == sum(len(ps) for ps in model.values())
        assert {k: index.patterns(k) for k in model} == model
