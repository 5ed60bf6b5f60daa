"""Write-behind queue entries name their Appends' items instead of copying them (tiered/refs.py), on
real Redis and PostgreSQL: the flusher reads them back from Redis' log, accounts for entries the batch
itself trimmed or their expiry removed, a trim waits for what was queued before it, and the flush stops —
the queue kept — when Redis lost entries it acknowledged."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import statekeel
from statekeel import CorruptionError, UnavailableError
from statekeel.backends.tiered import batches
from statekeel.backends.tiered.names import DEAD, QUEUE
from statekeel.protocol import Append, Rewrite, Trim
from statekeel.testing.servers import PostgresServer
from test_tiered import _cold_history, _history, _open, _say, _tiers, pg, rd, urls  # noqa: F401


def test_a_turns_queue_entry_names_its_messages_instead_of_copying_them(urls: tuple[str, str]) -> None:
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "hello")
        long = "a distinctive assistant reply " * 30
        store.session("s").append({"role": "user", "content": "q"}, {"role": "assistant", "content": long},
                                  state={"turn": 1})  # fmt: skip
        entry = tiers.hot.read(QUEUE)[-1]
        assert entry.codec == batches.REF_CODEC
        assert b"distinctive" not in entry.data and len(entry.data) < 300
        ops, _ = batches.decode(entry.data, "q", entry.codec)
        (ref,) = [op for op in ops if isinstance(op, batches.AppendRef)]
        assert ref.codecs and ref.at is None  # replayed unpinned: PostgreSQL numbers it, as before
        assert tiers.flush() >= 2
        assert _cold_history(urls) == _history(store) == ["hello", "q", long]
        assert tiers.hot.log_info(DEAD) is None


def test_entries_a_batch_trims_itself_replay_as_placeholders_the_same_batch_removes(urls: tuple[str, str]) -> None:
    """A batch appending three entries and trimming the first two: when it is replayed Redis holds only
    the third, so the first two go to PostgreSQL empty — and the batch's own trim, in the same
    transaction, removes them. PostgreSQL ends as Redis, numbering included."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        log = "session/p/log"
        items = ((b"1", "raw"), (b"2", "raw"), (b"3", "raw"))
        assert tiers.apply([Append(log, items), Trim(log, 3)]) == [1, 2]
        assert tiers.flush() >= 1
        assert [(e.seq, e.data) for e in tiers.cold.read(log)] == [(3, b"3")] == [(e.seq, e.data) for e in tiers.hot.read(log)]
        assert tiers.apply([Append(log, ((b"4", "raw"),))]) == [4]
        tiers.flush()
        assert [(e.seq, e.data) for e in tiers.cold.read(log)] == [(3, b"3"), (4, b"4")]
        assert tiers.hot.log_info(DEAD) is None


def test_a_log_that_expired_before_the_flush_is_replayed_expired_and_started_again(urls: tuple[str, str]) -> None:
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        brief = store.session("brief", ttl=1)
        brief.append({"role": "user", "content": "gone soon"})
        time.sleep(1.5)  # Redis expired it; its queued batch is not replayed yet
        again = store.session("brief")
        again.append({"role": "user", "content": "again"})
        assert tiers.flush() >= 2
        assert [m["content"] for m in store.session("brief").history()] == ["again"]
        with statekeel.open(urls[1]) as cold:
            found = cold.find_session("brief")
            assert found is not None and [m["content"] for m in found.history()] == ["again"]
        assert tiers.hot.log_info(DEAD) is None


def test_an_entry_rewritten_before_the_flush_reaches_postgres_as_rewritten(urls: tuple[str, str]) -> None:
    """Key rotation re-encodes entries in place (Rewrite, queued after the Append): the Append is
    replayed with what Redis holds by then, then the Rewrite — PostgreSQL ends as Redis."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        log = "session/r/log"
        tiers.apply([Append(log, ((b"one", "raw"), (b"two", "raw")))])
        assert tiers.apply([Rewrite(log, 2, b"TWO", "raw")]) == [True]
        assert tiers.flush() == 2
        assert [(e.data, e.codec) for e in tiers.cold.read(log)] == [(b"one", "raw"), (b"TWO", "raw")]
        assert tiers.hot.log_info(DEAD) is None


def test_two_handles_appending_to_one_log_take_turns_on_its_seqs(urls: tuple[str, str]) -> None:
    """Each handle pins its Appends in Redis from its own guess of the log's next seq: a guess the
    other handle made stale is refused and retried, never a gap or a lost message."""
    with _open(urls, "write-behind") as one, _open(urls, "write-behind") as two:
        _say(one, "start")
        errors: list[BaseException] = []

        def write(store: statekeel.Store, who: str) -> None:
            try:
                for i in range(40):
                    store.session("s").append({"role": "user", "content": f"{who}{i}"})
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(s, w)) for s, w in ((one, "x"), (two, "y"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        hot = _history(one)
        assert len(hot) == 81 and sorted(hot[1:]) == sorted([f"x{i}" for i in range(40)] + [f"y{i}" for i in range(40)])
        _tiers(one).flush()
        assert _cold_history(urls) == hot
        assert _tiers(one).hot.log_info(DEAD) is None


def test_an_entry_redis_lost_stops_the_flush_with_the_queue_kept(urls: tuple[str, str]) -> None:
    """A queue entry naming seq 1 of a log Redis still holds from before it, where Redis has another
    entry (written at another time): Redis lost what it acknowledged. Nothing is guessed."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a")
        tiers.flush()
        log = "session/s/history"
        info = tiers.hot.log_info(log)
        assert info is not None
        forged = batches.encode([Append(log, ((b"{}", "json"),))], info.created_at + 100, seqs=[1])
        tiers.hot.apply([Append(QUEUE, ((forged, batches.REF_CODEC),))])
        seq = tiers.hot.log_info(QUEUE).last_seq  # type: ignore[union-attr]
        with pytest.raises(CorruptionError, match=f"{QUEUE}#{seq}.*lost acknowledged data"):
            tiers.flush()
        assert tiers.hot.read(QUEUE)[-1].seq == seq  # kept
        assert _cold_history(urls) == ["a"]


def test_a_trim_waits_until_what_was_queued_before_it_is_in_postgres_with_its_messages(urls: tuple[str, str]) -> None:
    """clear() after queued turns: the queue is replayed first, while Redis still holds the messages its
    entries name — PostgreSQL never commits a placeholder that only the (still queued) trim would remove,
    so losing Redis before the next flush leaves the messages as they were, not emptied."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a", "b")
        log = "session/s/history"
        assert tiers.cold.read(log) == []  # queued only
        store.session("s").clear()
        stored = tiers.cold.read(log)
        assert [e.seq for e in stored] == [1, 2] and all(e.data for e in stored)  # replayed before the trim
        assert _history(store) == []
        tiers.flush()
        assert _cold_history(urls) == []
        _say(store, "c")
        tiers.flush()
        assert _cold_history(urls) == _history(store) == ["c"]


def test_a_turn_queued_between_a_trims_flush_and_the_trim_is_replayed_before_it_too(urls: tuple[str, str]) -> None:
    """Another writer queues a turn after the trimming handle replayed the queue and before its trim
    is accepted: the trim's queue entry was pinned right after what the replay covered, so it is
    refused, the queue replayed again (that turn with its message), and the trim accepted after it."""
    with _open(urls, "write-behind") as trimming, _open(urls, "write-behind") as other:
        _say(other, "a", "b")
        tiers = _tiers(trimming)
        catch_up, calls = tiers.maintenance.catch_up, []

        def catch_up_then_another_turn() -> int | None:
            done = catch_up()
            calls.append(done)
            if len(calls) == 1:
                _say(other, "c")  # queued after this replay, before the trim
            return done

        tiers.maintenance.catch_up = catch_up_then_another_turn  # type: ignore[method-assign]
        trimming.session("s").clear()
        assert len(calls) == 2  # the first attempt was refused: the queue had moved on
        stored = tiers.cold.read("session/s/history")
        assert [e.seq for e in stored] == [1, 2, 3] and all(e.data for e in stored)
        tiers.flush()
        # clear() trims what it saw (up to seq 2): the turn written meanwhile stays, in both tiers
        assert _cold_history(urls) == _history(trimming) == _history(other) == ["c"]
        assert tiers.hot.log_info(DEAD) is None


def test_a_trim_is_accepted_while_postgres_is_down_and_replayed_after_what_it_trims(
    urls: tuple[str, str], pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Write-behind keeps accepting writes while PostgreSQL is down — a clear() too: it cannot wait for
    the queue, so it is queued behind it, and the replay gives PostgreSQL the same end state."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a")
        tiers.flush()
        pg.kill()
        _say(store, "b", "c")
        with caplog.at_level(logging.WARNING, "statekeel.tiered"):
            store.session("s").clear()
        assert "could not be replayed before a trim" in caplog.text
        _say(store, "d")
        assert _history(store) == ["d"]
        pg.restart()
        for _ in range(3):  # the pool replaces the connections the restart broke
            try:
                tiers.flush()
                break
            except UnavailableError:
                continue
        assert _cold_history(urls) == ["d"]
        assert [e.seq for e in tiers.cold.read("session/s/history")] == [4]
        assert tiers.hot.log_info(DEAD) is None
