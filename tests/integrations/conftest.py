"""Fixtures for the LangGraph integration tests: a saver on every selected backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import statekeel
from statekeel.integrations.langgraph import StatekeelSaver


@pytest.fixture
def saver(store: statekeel.Store) -> Iterator[StatekeelSaver]:
    """A saver on a fresh store of the backend under test."""
    s = StatekeelSaver(store)
    try:
        yield s
    finally:
        s.close()
