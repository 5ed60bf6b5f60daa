"""Group commit across threads (:class:`statekeel.protocol.group.ThreadGroup`) on the SQLite and
files backends: batches queued while another thread holds the write lock are committed together,
each caller keeps exactly its own outcome, and a batch is never committed behind its caller's back.

Grouping is made deterministic by holding the backend's write lock while the threads queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import ConflictError, InvalidInputError
from statekeel.protocol import Append, Op, Put
from statekeel.protocol.group import ThreadGroup


@pytest.fixture(params=["sqlite", "files"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path / 'g.db'}" if request.param == "sqlite" else f"file://{tmp_path / 'g'}"
    with statekeel.open(url) as store:
        yield store.storage


def _write_lock(backend: Any) -> AbstractContextManager[object]:
    return backend._lock if hasattr(backend, "_conn") else backend._locked(True)  # type: ignore[no-any-return]


def _queued(group: ThreadGroup, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(group.queue) < n:
        assert time.monotonic() < deadline, "the threads never queued their batches"
        time.sleep(0.001)


def _in_threads(backend: Any, batches: list[list[Op]]) -> list[Any]:
    """Apply each batch from its own thread while the write lock is held, so they all queue; then
    release it. Each thread's result or exception, in order."""
    outcomes: list[Any] = [None] * len(batches)

    def run(i: int) -> None:
        try:
            outcomes[i] = backend.apply(batches[i])
        except Exception as exc:  # noqa: BLE001 - compared by the test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    with _write_lock(backend):
        for t in threads:
            t.start()
        _queued(backend._group, len(batches))
    for t in threads:
        t.join(30)
    return outcomes


def test_batches_queued_together_are_committed_together(backend: Any) -> None:
    before = backend._group.commits
    outcomes = _in_threads(backend, [[Put(f"g/x/k{i}", b"1", "json"), Append("g/x/log", ((b"%d" % i, "json"),))]
                                     for i in range(4)])
    assert backend._group.commits == before + 1 and backend._group.batches >= 4
    firsts = sorted(out[1] for out in outcomes)
    assert firsts == [1, 2, 3, 4]  # each caller got its own append's seq
    assert all(out[0].version == 1 for out in outcomes)
    assert [e.seq for e in backend.read("g/x/log")] == [1, 2, 3, 4]
    assert all(backend.get(f"g/x/k{i}") is not None for i in range(4))


def test_a_refused_batch_of_a_group_fails_alone(backend: Any) -> None:
    backend.apply([Put("g/x/taken", b"0", "json")])
    outcomes = _in_threads(backend, [
        [Put("g/x/a", b"1", "json")],
        [Put("g/x/taken", b"1", "json", expect=None)],  # a conflict
        [Put("g/x/b", b"1", "json")],
    ])
    assert isinstance(outcomes[1], ConflictError) and outcomes[1].key == "g/x/taken"
    assert outcomes[0][0].key == "g/x/a" and outcomes[2][0].key == "g/x/b"
    assert backend.get("g/x/taken").data == b"0"  # type: ignore[union-attr]
    assert backend.get("g/x/a") is not None and backend.get("g/x/b") is not None


def test_a_bad_batch_is_refused_before_it_joins_a_group(backend: Any) -> None:
    with pytest.raises(InvalidInputError):
        backend.apply([Put("g/x/a", "not bytes", "json")])  # type: ignore[arg-type]
    assert backend._group.queue == []


def test_a_thread_alone_commits_each_batch_as_it_comes(backend: Any) -> None:
    before = (backend._group.commits, backend._group.batches)
    for i in range(3):
        backend.apply([Put(f"g/x/s{i}", b"1", "json")])
    assert all(backend.get(f"g/x/s{i}") is not None for i in range(3)) and backend._group.queue == []
    if hasattr(backend, "_conn"):  # SQLite takes its lock directly when nobody waits: no leader commits
        assert (backend._group.commits, backend._group.batches) == before
    else:  # files: each batch leads a group of one
        assert (backend._group.commits, backend._group.batches) == (before[0] + 3, before[1] + 3)


def test_a_batch_with_its_own_clock_is_committed_alone(backend: Any) -> None:
    before = backend._group.commits
    rec = backend.apply([Put("g/x/t", b"1", "json")], now=1_000_000_000.0)[0]
    assert rec.updated_at == 1_000_000_000.0 and backend._group.commits == before


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt in the leader's thread."""


def test_when_the_leader_is_interrupted_the_others_commit_their_own(tmp_path: Path) -> None:
    with statekeel.open(f"sqlite:///{tmp_path / 'i.db'}") as store:
        backend: Any = store.storage
        commit: Callable[..., Any] = backend._commit
        calls = []

        def interrupted_once(ops: Any, now: Any = None) -> Any:
            calls.append(len(ops))
            if len(calls) == 1:
                raise _Interrupt
            return commit(ops, now)

        backend._group._apply = interrupted_once
        outcomes: list[Any] = [None, None]

        def run(i: int) -> None:
            try:
                outcomes[i] = backend.apply([Put(f"g/x/k{i}", b"1", "json")])
            except _Interrupt as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        with backend._lock:
            for t in threads:
                t.start()
            _queued(backend._group, 2)
        for t in threads:
            t.join(30)
        interrupted = [o for o in outcomes if isinstance(o, _Interrupt)]
        assert len(interrupted) == 1  # the leader's own caller sees it; the other batch was committed again
        done = outcomes.index(next(o for o in outcomes if isinstance(o, list)))
        assert backend.get(f"g/x/k{done}") is not None
        assert backend.get(f"g/x/k{1 - done}") is None  # the interrupted leader's batch: not written
        assert backend._group.queue == []


def test_a_batch_whose_lock_was_refused_is_never_committed_later(tmp_path: Path) -> None:
    """The caller got an error: no later leader may commit its batch behind its back. (On the files
    backend, whose every batch goes through the group; SQLite queues only when the lock is taken.)"""
    with statekeel.open(f"file://{tmp_path / 'r'}") as store:
        backend: Any = store.storage
        real = backend._group._locked
        refused = [True]

        def locked() -> Any:
            if refused.pop() if refused else False:
                raise InvalidInputError("refused")
            return real()

        backend._group._locked = locked
        with pytest.raises(InvalidInputError):
            backend.apply([Put("g/x/never", b"1", "json")])
        backend.apply([Put("g/x/next", b"1", "json")])
        assert backend.get("g/x/never") is None and backend.get("g/x/next") is not None
