"""Counting an AsyncStore's worker hops: what the native-path tests of the adapters assert on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statekeel import AsyncStore


def count_worker_calls(store: AsyncStore) -> list[str]:
    """Every call the store's worker runs from now on, by name (the worker itself is unchanged)."""
    calls: list[str] = []
    submit = store._worker._submit

    async def counted(fn: Callable[[], Any], tracked: bool) -> Any:
        calls.append(getattr(fn, "__qualname__", repr(fn)))
        return await submit(fn, tracked)

    store._worker._submit = counted  # type: ignore[method-assign]
    return calls
