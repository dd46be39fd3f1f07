"""Topic names, subscription patterns, and the index that finds a topic's subscribers.

Topics are dot-separated names (``business.orders.big``). Patterns follow the AMQP topic
exchange: ``*`` stands for exactly one segment, ``#`` for zero or more, anywhere and any
number of times (``a.#`` matches ``a`` and ``a.b.c``; ``#.c`` matches ``c`` and ``x.y.c``).

The bus matches every published message against every subscription, so
:class:`SubscriptionIndex` keeps the patterns in a trie over segments (cost grows with the
topic, not with the number of subscriptions) and remembers recent answers in a small LRU
cache that any change empties. Pure: no I/O, no threads, no locks (one actor owns it).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = [
    "MAX_SEGMENTS",
    "MAX_TOPIC_LENGTH",
    "InvalidTopic",
    "SubscriptionIndex",
    "topic_matches",
    "validate_pattern",
    "validate_topic",
]

MAX_SEGMENTS = 32
"""At most this many dot-separated segments in a topic or pattern."""

MAX_TOPIC_LENGTH = 256
"""At most this many characters in a topic or pattern."""

ONE = "*"
ANY = "#"

_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")

K = TypeVar("K", bound=Hashable)


class InvalidTopic(ValueError):
    """A topic or pattern that breaks the naming rules; the message names the culprit."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid_topic: {value!r}: {reason}")


def _split(value: str, *, wildcards: bool) -> list[str]:
    kind = "pattern" if wildcards else "topic"
    if not isinstance(value, str):
        raise InvalidTopic(repr(value), f"a {kind} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidTopic(value, f"a {kind} cannot be empty")
    if len(value) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(
            value, f"{len(value)} characters, a {kind} has at most {MAX_TOPIC_LENGTH}"
        )
    segments = value.split(".")
    if len(segments) > MAX_SEGMENTS:
        raise InvalidTopic(value, f"{len(segments)} segments, a {kind} has at most {MAX_SEGMENTS}")
    for i, segment in enumerate(segments, 1):
        if _SEGMENT.fullmatch(segment):
            continue
        if segment in (ONE, ANY):
            if wildcards:
                continue
            raise InvalidTopic(
                value, f"segment {i} {segment!r} is a wildcard; only patterns may use one"
            )
        if not segment:
            raise InvalidTopic(value, f"segment {i} is empty (leading, trailing or double dot)")
        allowed = "letters, digits, '_', '-'" + (", or exactly '*' or '#'" if wildcards else "")
        raise InvalidTopic(value, f"segment {i} {segment!r} may only hold {allowed}")
    return segments


def validate_topic(topic: str) -> str:
    """``topic`` unchanged if it is a concrete topic name; raises :class:`InvalidTopic`."""
    _split(topic, wildcards=False)
    return topic


def validate_pattern(pattern: str) -> str:
    """``pattern`` unchanged if it is a valid subscription pattern; raises
    :class:`InvalidTopic`."""
    _split(pattern, wildcards=True)
    return pattern


def _segments_match(pattern: list[str], topic: list[str]) -> bool:
    # A set of pattern positions (an NFA walk): linear in len(pattern) * len(topic) even
    # with several '#', where naive backtracking would be exponential.
    end = len(pattern)

    def closure(positions: set[int]) -> set[int]:
        out: set[int] = set()
        for p in positions:
            out.add(p)
            while p < end and pattern[p] == ANY:  # '#' may match zero segments
                p += 1
                out.add(p)
        return out

    states = closure({0})
    for segment in topic:
        following: set[int] = set()
        for p in states:
            if p == end:
                continue
            token = pattern[p]
            if token == ANY:
                following.add(p)  # '#' swallows this segment and may take more
            elif token == ONE or token == segment:
                following.add(p + 1)
        if not following:
            return False
        states = closure(following)
    return end in states


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` is one the subscription ``pattern`` asks for.

    Both are validated first (:class:`InvalidTopic`): a typo never silently matches."""
    return _segments_match(_split(pattern, wildcards=True), _split(topic, wildcards=False))


class _Node(Generic[K]):
    """One pattern segment; ``keys`` subscribed to the pattern that ends here."""

    __slots__ = ("children", "keys")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        self.keys: set[K] = set()


class SubscriptionIndex(Generic[K]):
    """Which keys (subscribers) subscribed to which patterns, matched fast per topic.

    :meth:`match` returns each key once, in the order the keys first subscribed; a key
    that drops all its patterns and subscribes again counts as a new subscriber.
    ``len()`` is the number of (pattern, key) subscriptions.
    """

    def __init__(self, cache_size: int = 1024) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, not {cache_size}")
        self._root: _Node[K] = _Node()
        self._patterns: dict[K, dict[str, None]] = {}  # key -> its patterns, in add order
        self._rank: dict[K, int] = {}  # key -> when it first subscribed
        self._next_rank = 0
        self._size = 0
        self._cache: OrderedDict[str, tuple[K, ...]] = OrderedDict()
        self._cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return key in self._patterns

    def keys(self) -> list[K]:
        """Every subscribed key, in the order they first subscribed."""
        return list(self._patterns)

    def patterns(self, key: K) -> list[str]:
        """The patterns ``key`` subscribed to, in the order it added them."""
        return list(self._patterns.get(key, ()))

    def add(self, pattern: str, key: K) -> bool:
        """Subscribe ``key`` to ``pattern``; False if it already was (nothing changes)."""
        segments = _split(pattern, wildcards=True)
        mine = self._patterns.get(key)
        if mine is not None and pattern in mine:
            return False
        node = self._root
        for segment in segments:
            node = node.children.setdefault(segment, _Node())
        node.keys.add(key)
        if mine is None:
            mine = self._patterns[key] = {}
            self._rank[key] = self._next_rank
            self._next_rank += 1
        mine[pattern] = None
        self._size += 1
        self._cache.clear()
        return True

    def remove_pattern(self, pattern: str, key: K) -> bool:
        """Unsubscribe ``key`` from ``pattern``; False if it was not subscribed to it."""
        mine = self._patterns.get(key)
        if mine is None or pattern not in mine:
            return False
        del mine[pattern]
        if not mine:
            del self._patterns[key]
            del self._rank[key]
        self._unlink(pattern.split("."), key)
        self._size -= 1
        self._cache.clear()
        return True

    def remove(self, key: K) -> int:
        """Unsubscribe ``key`` from all its patterns; how many there were."""
        mine = self._patterns.pop(key, None)
        if mine is None:
            return 0
        del self._rank[key]
        for pattern in mine:
            self._unlink(pattern.split("."), key)
        self._size -= len(mine)
        self._cache.clear()
        return len(mine)

    def _unlink(self, segments: list[str], key: K) -> None:
        path = [self._root]
        for segment in segments:
            path.append(path[-1].children[segment])
        path[-1].keys.discard(key)
        # Prune the branch bottom-up so that removed patterns cost nothing to match.
        for depth in range(len(segments), 0, -1):
            node = path[depth]
            if node.keys or node.children:
                break
            del path[depth - 1].children[segments[depth - 1]]

    def match(self, topic: str) -> list[K]:
        """The keys with a pattern matching ``topic``: each once, in subscription order.

        Raises :class:`InvalidTopic` for a malformed topic."""
        cached = self._cache.get(topic)
        if cached is not None:
            self._cache.move_to_end(topic)
            self.cache_hits += 1
            return list(cached)
        self.cache_misses += 1
        found = self._collect(_split(topic, wildcards=False))
        result = tuple(sorted(found, key=self._rank.__getitem__))
        if self._cache_size:
            self._cache[topic] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return list(result)

    def _collect(self, topic: list[str]) -> set[K]:
        end = len(topic)
        found: set[K] = set()
        # (node, segments consumed, node is a '#'); `seen` keeps several '#' from
        # revisiting the same state, bounding the walk by nodes * segments.
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[_Node[K], int, bool]] = [(self._root, 0, False)]
        while stack:
            node, i, is_any = stack.pop()
            state = (id(node), i)
            if state in seen:
                continue
            seen.add(state)
            if i == end:
                found.update(node.keys)
            else:
                if is_any:
                    stack.append((node, i + 1, True))  # '#' swallows one more segment
                literal = node.children.get(topic[i])
                if literal is not None:
                    stack.append((literal, i + 1, False))
                one = node.children.get(ONE)
                if one is not None:
                    stack.append((one, i + 1, False))
            many = node.children.get(ANY)
            if many is not None:
                stack.append((many, i, True))  # '#' matching zero segments
        return found
