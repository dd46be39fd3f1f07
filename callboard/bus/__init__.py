"""The pub/sub bus's pure parts: topic matching and per-subscriber delivery state.

No actors, threads or I/O here: the bus actor owns these and does the sending.
"""

from callboard.bus._buffer import Offer, OfferStatus, Overflow, SubscriberBuffer
from callboard.bus._topics import (
    MAX_SEGMENTS,
    MAX_TOPIC_LENGTH,
    InvalidTopic,
    SubscriptionIndex,
    topic_matches,
    validate_pattern,
    validate_topic,
)

__all__ = [
    "MAX_SEGMENTS",
    "MAX_TOPIC_LENGTH",
    "InvalidTopic",
    "Offer",
    "OfferStatus",
    "Overflow",
    "SubscriberBuffer",
    "SubscriptionIndex",
    "topic_matches",
    "validate_pattern",
    "validate_topic",
]
