"""Small defects found in session 30, each with the test that shows it."""

from __future__ import annotations

from typing import Any

from statekeel.cli.health import _Problems, _walk
from statekeel.errors import CorruptionError


def test_a_listing_that_fails_at_the_same_place_after_a_skip_ends_the_doctor_walk() -> None:
    """`statekeel doctor` walks records page by page and steps over a damaged one by its key. A
    listing that fails as a whole (its error names a key the walk cannot step over) looped forever."""
    calls: list[int] = []

    def fetch(limit: int) -> list[Any]:
        calls.append(limit)
        if len(calls) > 50:
            raise AssertionError("the walk loops")
        raise CorruptionError("flushing has stopped; do this", "_statekeel_tier/queue")

    problems = _Problems()
    page_of = _walk(fetch, lambda err: None, problems)
    assert page_of() == []
    assert problems[0] == "flushing has stopped" and "the walk stopped there" in problems[1]
    assert len(calls) <= 4


def test_a_walk_steps_over_damage_and_goes_on() -> None:
    items, after = ["a", "b", "bad", "c", "d"], [""]

    def fetch(limit: int) -> list[str]:
        rest = [k for k in items if k > after[0]][:limit]
        if "bad" in rest:  # a page holding a damaged record raises as a whole
            raise CorruptionError("record 'bad' is damaged; restore it", "bad")
        return rest

    def skip(err: CorruptionError) -> None:
        after[0] = err.key

    problems, seen = _Problems(), []
    page_of = _walk(fetch, skip, problems)
    while page := page_of():
        seen += page
        after[0] = page[-1]
    assert seen == ["a", "b", "c", "d"] and problems == ["record 'bad' is damaged"]
