"""The reasoning pipeline (spec §1.2, §3.1): KnowledgeBase, ReasoningEngine,
RejectionSampling, RewardModel and DecisionSupport, each an actor."""

from callboard.pipeline._messages import *  # noqa: F403
from callboard.pipeline._messages import __all__ as _messages_all
from callboard.pipeline._plugins import Generator, Scorer, load_plugin

__all__ = [*_messages_all, "Generator", "Scorer", "load_plugin"]
