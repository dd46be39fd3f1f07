"""Actors: the :class:`Actor` base users subclass, ``@handler``, ``@consumer``, and the
runtime that hosts them."""

from callboard.actors._actor import Actor, consumer, handler
from callboard.actors._tasks import Future

__all__ = ["Actor", "Future", "consumer", "handler"]
