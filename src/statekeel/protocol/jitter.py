"""Backoff jitter for retries, from a generator of statekeel's own.

Not the global :mod:`random`: a caller may seed that one for a reproducible run (a retry must not
consume its sequence), and contenders seeded alike would back off in step.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = ["JITTER", "backoff"]

JITTER: Final = random.Random()


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` of a compare-and-set: up to 0.5 ms doubling per attempt,
    at most 20 ms, drawn uniformly."""
    return JITTER.uniform(0, min(0.02, 0.0005 * 2 ** min(attempt, 6)))
