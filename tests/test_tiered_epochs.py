"""Write-behind: Redis restored from a copy taken before it lost its data — on real Redis and PostgreSQL.

A wipe starts a new queue (a new epoch: its log's ``created_at``); the copy brings the old queue
back. Before session 31 the flusher took it for a new queue and replayed it from its start: the
batches PostgreSQL already had were written a second time (``a, b, c, a``), and Redis' restored
cache — older than PostgreSQL's data — kept being read. The watermark now remembers where each
earlier epoch was replayed to, and such a queue is reconciled like a diverged one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import statekeel
from statekeel import CorruptionError
from statekeel.backends.tiered import watermark as tiered_watermark
from statekeel.backends.tiered.names import DIRTY, QUEUE, WATERMARK
from statekeel.testing.servers import RedisServer
from test_tiered import _cold_history, _flushall, _history, _open, _say, _tiers, pg, rd, urls  # noqa: F401
from test_tiered_failover import _copy, _fail_over


def _epochs(tiers: Any) -> tuple[str, list[str]]:
    """The watermark's epoch and the earlier ones it remembers."""
    found = tiers.cold.get(WATERMARK)
    assert found is not None
    doc = json.loads(found.data)
    return doc["epoch"], [p[0] for p in doc["past"]]


def _wipe_and_go_on(store: statekeel.Store, rd: RedisServer, *texts: str) -> None:
    """Redis loses its data; the agent goes on (a new queue, a new epoch) and it is replayed."""
    _flushall(rd)
    _say(store, *texts)
    _tiers(store).flush()


def test_a_copy_from_before_a_wipe_is_not_replayed_a_second_time(
    urls: tuple[str, str], rd: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a")
        tiers.flush()
        backup = _copy(rd, store)  # its queue holds "a" (replayed: the last replayed entry stays queued)
        _say(store, "b")
        tiers.flush()
        first, _ = _epochs(tiers)
        _wipe_and_go_on(store, rd, "c")
        second, past = _epochs(tiers)
        assert second != first and past == [first]
        _fail_over(rd, backup, store)  # Redis restored from the backup: the first epoch's queue, and its cache
        with caplog.at_level(logging.ERROR, "statekeel.tiered"):
            assert tiers.flush() == 0  # "a" was replayed: not again
        assert "diverged" in caplog.text
        assert _epochs(tiers) == (first, [second])
        tiers.maintenance.tick()  # the restored cache, older than PostgreSQL's data, is dropped
        assert tiers.cold.get(DIRTY) is None
        assert _cold_history(urls) == _history(store) == ["a", "b", "c"]
        _say(store, "d")
        tiers.flush()
        assert _cold_history(urls) == _history(store) == ["a", "b", "c", "d"]


def test_batches_lost_in_the_wipe_come_back_with_the_copy_once(urls: tuple[str, str], rd: RedisServer) -> None:
    """The backup holds "b", acknowledged and not yet replayed when Redis lost its data: restoring it
    replays "b" (after what PostgreSQL holds) and nothing else."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a")
        tiers.flush()
        _say(store, "b")
        backup = _copy(rd, store)
        _wipe_and_go_on(store, rd, "c")
        assert _cold_history(urls) == ["a", "c"]  # "b" went with Redis' data (the loss window)
        _fail_over(rd, backup, store)
        assert tiers.flush() == 1
        tiers.maintenance.tick()
        assert _cold_history(urls) == _history(store) == ["a", "c", "b"]
        tiers.flush()  # the cache reset's no-op queue entry
        assert tiers.flush() == 0 and tiers.integrity_check() == []


def test_a_copy_the_record_of_replayed_batches_no_longer_reaches_stops_the_flush(
    urls: tuple[str, str], rd: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's queue ends below where its epoch was replayed to, and the ring no longer names its
    batches: what of it was replayed cannot be told — the flush stops instead of replaying it again."""
    monkeypatch.setattr(tiered_watermark, "SLOTS", 1)  # the ring names the last replay transaction only
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a")
        tiers.flush()
        backup = _copy(rd, store)  # the first epoch's queue ends on "a"
        _say(store, "b")
        tiers.flush()
        _wipe_and_go_on(store, rd, "c")  # the ring's one slot now names the second epoch's "c"
        _fail_over(rd, backup, store)
        for _ in range(2):  # every flush stops there: nothing replayed twice, nothing skipped
            with pytest.raises(CorruptionError, match="cannot be told") as caught:
                tiers.flush()
        assert caught.value.key == QUEUE
        assert _cold_history(urls) == ["a", "b", "c"]
        (problem,) = tiers.integrity_check()
        assert "cannot be told" in problem


def test_the_watermark_remembers_a_bounded_number_of_epochs(urls: tuple[str, str], rd: RedisServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(tiered_watermark, "PAST", 2)
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        epochs = []
        for text in ("a", "b", "c", "d"):
            _wipe_and_go_on(store, rd, text)
            epochs.append(_epochs(tiers)[0])
        assert _epochs(tiers) == (epochs[3], [epochs[2], epochs[1]])
        assert _cold_history(urls) == ["a", "b", "c", "d"]
