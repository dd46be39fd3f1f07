"""Durable message queues: storage and state machine (:mod:`callboard.queues._store`).

Pure logic plus SQLite, with an injectable clock; the queue actor drives it.
"""

from callboard.queues._store import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    DeadLetter,
    Delivery,
    EnqueueResult,
    FsyncMode,
    HistoryEntry,
    MemoryStore,
    MessageInfo,
    MessageState,
    MessageTuple,
    NackResult,
    NewMessage,
    QueueStats,
    QueueStore,
    SqliteStore,
    StoreLimits,
)

__all__ = [
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "DeadLetter",
    "Delivery",
    "EnqueueResult",
    "FsyncMode",
    "HistoryEntry",
    "MemoryStore",
    "MessageInfo",
    "MessageState",
    "MessageTuple",
    "NackResult",
    "NewMessage",
    "QueueStats",
    "QueueStore",
    "SqliteStore",
    "StoreLimits",
]
