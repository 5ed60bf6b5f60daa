"""Durations given as seconds, timedelta, or text like ``"90s"``, ``"5m"``, ``"2h"``, ``"7d"``.

The rule (finite, positive, at most 100 years) lives in :mod:`statekeel.core.validate`
with the other argument checks; this module keeps the names features and the CLI import.
"""

from __future__ import annotations

from ..core.validate import Duration, maybe_seconds, seconds

__all__ = ["Duration", "maybe_seconds", "seconds"]
