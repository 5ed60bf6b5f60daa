"""Fixtures of the integration tests: a LangGraph saver on every selected backend; a Redis of a
module's own for the OpenAI session tests that watch its traffic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import statekeel
from statekeel.integrations.langgraph import StatekeelSaver
from statekeel.testing.servers import ServerPool


@pytest.fixture
def saver(store: statekeel.Store) -> Iterator[StatekeelSaver]:
    """A saver on a fresh store of the backend under test."""
    s = StatekeelSaver(store)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A flushed Redis server of the module's own (stopped after it)."""
    pool = ServerPool(required=True)
    try:
        pool.flush_redis()
        yield pool.redis().url
    finally:
        pool.stop()
