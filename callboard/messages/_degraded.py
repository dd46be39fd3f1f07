"""Which reply objects are degraded answers (from a fallback, or built on one).

A degraded answer is an ordinary message of the expected type, so the mark lives beside
it, not in it: the reply's envelope carries a ``degraded`` flag on the wire, and on
arrival the decoded message object is remembered here. Keyed weakly, so marks vanish with
their messages; a copy of a message (``model_copy``) is not marked.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["is_degraded", "mark_degraded"]

_marked: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def mark_degraded(msg: Any) -> None:
    """Remember ``msg`` as a degraded answer (``None`` and other non-referenceable values
    cannot be marked and are ignored)."""
    try:
        with _lock:
            _marked[id(msg)] = msg
    except TypeError:
        pass


def is_degraded(msg: Any) -> bool:
    """Whether ``msg`` is a degraded answer: it came from a fallback (a static reply, the
    last good reply, a substitute actor) or from a handler that used such an answer."""
    if not _marked:  # the common case, on every reply: no lock
        return False
    with _lock:
        return _marked.get(id(msg)) is msg
