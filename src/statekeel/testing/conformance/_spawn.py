"""A store-sharing child process for the conformance tests that need a second process."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import statekeel

__all__ = ["child_process"]


@contextmanager
def child_process(
    target: Callable[..., None], store_url: str, *, events: int = 1, what: str
) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Run ``target(store_url, *events)`` in a spawned process once the store exists; yield it with
    its events after it set the first one (``what`` names it if it never does); kill it on the way
    out if it still runs."""
    statekeel.open(store_url).close()
    ctx = mp.get_context("spawn")
    flags = tuple(ctx.Event() for _ in range(events))
    child = ctx.Process(target=target, args=(store_url, *flags))
    child.start()
    try:
        assert flags[0].wait(60), f"{what} never started"
        yield child, flags
    finally:
        if child.is_alive():
            child.kill()
            child.join()
