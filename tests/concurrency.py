"""Running one piece of test work in several threads at once (imported by tests as ``concurrency``)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def in_threads(work: Callable[[int], None], threads: int = 4) -> None:
    """``work(n)`` for n in range(threads), each in its own thread, all started together (a barrier);
    the first failure of any thread is raised here, in the calling thread."""
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:  # collected and re-raised in the calling thread
            failures.append(exc)

    running = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    if failures:
        raise failures[0]
