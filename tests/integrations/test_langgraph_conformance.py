"""LangGraph's own checkpointer conformance suite (langgraph-checkpoint-conformance), on every backend.

The suite detects a capability only when its async method is overridden, and its
overall level ignores what it did not detect, so each capability is asserted by name.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

import statekeel
from statekeel.integrations.langgraph import StatekeelSaver

EVERY_CAPABILITY = sorted(c.value for c in ALL_CAPABILITIES)


def test_the_suite_knows_the_capabilities_we_assert() -> None:
    assert EVERY_CAPABILITY == [
        "copy_thread", "delete_for_runs", "delete_thread", "get_tuple", "list", "prune", "put", "put_writes",
    ]  # fmt: skip


def test_langgraph_conformance_passes_every_capability(store_url: str) -> None:
    """Each capability suite gets a fresh saver on its own tenant of one store."""
    store = statekeel.open(store_url)
    counter = itertools.count()

    @checkpointer_test(name=f"StatekeelSaver[{store_url.split(':')[0]}]")
    async def factory() -> AsyncIterator[StatekeelSaver]:
        saver = StatekeelSaver(store.tenant(f"suite{next(counter)}"))
        yield saver
        await asyncio.to_thread(saver.close)

    try:
        report = asyncio.run(validate(factory))
    finally:
        store.close()
    results = {name: (r.detected, r.passed, r.failures) for name, r in report.results.items()}
    assert sorted(results) == EVERY_CAPABILITY
    for name in EVERY_CAPABILITY:
        detected, passed, failures = results[name]
        assert detected, f"{name} was not detected"
        assert passed, f"{name} failed: {failures}"
    assert all(r.tests_passed > 0 for r in report.results.values())


def test_langgraph_conformance_passes_on_a_saver_given_an_async_store(store_url: str) -> None:
    """The same suite with each saver given an AsyncStore's tenant handle: on PostgreSQL and Redis its
    ``aput``/``aput_writes`` run on the asyncio driver (statekeel/integrations/langgraph/_io.py)."""
    counter = itertools.count()

    async def main() -> object:
        async with statekeel.open_async(store_url) as store:

            @checkpointer_test(name=f"StatekeelSaver[async {store_url.split(':')[0]}]")
            async def factory() -> AsyncIterator[StatekeelSaver]:
                saver = StatekeelSaver(store.tenant(f"suite{next(counter)}"))
                yield saver
                saver.close()

            return await validate(factory)

    report: Any = asyncio.run(main())
    results = {name: (r.detected, r.passed, r.failures) for name, r in report.results.items()}
    assert sorted(results) == EVERY_CAPABILITY
    for name in EVERY_CAPABILITY:
        detected, passed, failures = results[name]
        assert detected and passed, f"{name}: detected {detected}, failures {failures}"
    assert all(r.tests_passed > 0 for r in report.results.values())
