"""Supervision: restart policy (pure) and the supervisor actor that applies it."""

from callboard.supervisors._policy import EXIT_REASONS, RestartIntensity, should_restart

__all__ = ["EXIT_REASONS", "RestartIntensity", "should_restart"]
