"""Shared by the reliability suite: short mode (CI) or long mode (by hand), and its report.

``STATEKEEL_RELIABILITY=long`` raises every count to the long mode's; ``scripts/reliability.py``
sets it, collects what each test reports through the ``reliability_report`` fixture into
``$STATEKEEL_RELIABILITY_REPORT`` (JSON lines), and renders ``docs/reliability.md`` from it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

LONG = os.environ.get("STATEKEEL_RELIABILITY") == "long"


def scale(short: int, long: int) -> int:
    """``short`` in CI, ``long`` in the long mode."""
    return long if LONG else short


Reporter = Callable[..., None]


@pytest.fixture(scope="session")
def reliability_report() -> Iterator[Reporter]:
    """``reliability_report(suite, backend, **figures)`` records what a test ran and found.

    Figures are plain JSON values: counts (``kills=50``), durations in seconds, and
    ``found=[...]`` — a list of problems (empty when nothing was found).
    """
    rows: list[dict[str, Any]] = []

    def add(suite: str, backend: str, **figures: Any) -> None:
        rows.append({"suite": suite, "backend": backend, "mode": "long" if LONG else "short",
                     "at": time.time(), **figures})

    yield add
    target = os.environ.get("STATEKEEL_RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, sort_keys=True) + "\n")
