"""Tiered store defects found by the session-28 audit, each on real Redis and PostgreSQL servers.

* A log whose entries were all trimmed (``session.clear()``) keeps its numbering in
  PostgreSQL, but its copy into Redis used to leave it out: after the partition left Redis,
  a write-behind append started the history again at seq 1 (PostgreSQL then gave the
  replayed one ``last + 1``: the tiers disagreed on every later seq).
* Write-behind with ``on_hot_failure=fail`` and Redis down: reads used to fall back to
  PostgreSQL, which lacks the batches still queued — a reader saw an older value after a
  newer one, and the newer one again when Redis came back.
* Write-through with Redis refusing writes (out of memory): the write PostgreSQL committed used
  to raise StoreError (not "maybe applied": a caller retrying appended it twice).
* Write-behind with ``on_hot_failure=write-through``: a batch whose Redis reply was lost (Redis
  ran it, queue entry included) used to be written to PostgreSQL directly as well — and then
  replayed from the queue: the message was in PostgreSQL twice. Redis down before the call (it
  could not connect: nothing sent) still falls back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import redis as redis_py
import redis.connection

import statekeel
from statekeel import UnavailableError
from statekeel.backends.postgres import PostgresBackend
from statekeel.backends.tiered.hydrate import drop
from statekeel.testing.servers import PostgresServer, RedisServer
from test_tiered import _open, _tiers, pg, rd, urls  # noqa: F401 - the servers and store helpers it uses

def _seqs(store: statekeel.Store) -> list[tuple[int, str]]:
    found = store.find_session("s")
    return [(m.seq, m.value["content"]) for m in found.messages()] if found is not None else []


@pytest.mark.parametrize("mode", ["write-behind", "write-through"])
def test_a_cleared_history_goes_on_numbering_after_its_partition_left_redis(urls: tuple[str, str], mode: str) -> None:
    with _open(urls, mode) as store:
        s, tiers = store.session("s"), _tiers(store)
        for text in "abc":
            s.append({"role": "user", "content": text})
        assert s.clear() == 3  # "seqs keep counting up"
        tiers.flush()
        drop(tiers.hot, ["session/s"])  # evicted (or Redis restarted empty): copied in again on the next write
        s.append({"role": "user", "content": "d"})
        assert _seqs(store) == [(4, "d")]
        tiers.flush()
        with statekeel.open(urls[1]) as cold:
            assert _seqs(cold) == [(4, "d")]  # PostgreSQL numbered the replayed append the same
        s.append({"role": "user", "content": "e"})
        assert _seqs(store) == [(4, "d"), (5, "e")]  # from Redis
        tiers.flush()
        drop(tiers.hot, ["session/s"])
        assert _seqs(store) == [(4, "d"), (5, "e")]  # from PostgreSQL


def test_an_emptied_log_copied_into_redis_stays_hidden_with_its_expiry(urls: tuple[str, str]) -> None:
    with _open(urls, "write-behind") as store:
        s, tiers = store.session("s", ttl=3600), _tiers(store)
        s.append({"role": "user", "content": "a"})
        s.clear()
        other = store.session("s2")  # its id starts like "s": its partition is not "session/s"
        other.append({"role": "user", "content": "z"})
        other.clear()
        tiers.flush()
        drop(tiers.hot, ["session/s"])
        assert tiers.cold.log_info("session/s/history") is None
        assert isinstance(tiers.cold, PostgresBackend)
        emptied = tiers.cold.emptied_logs("session/s", "session/s/")
        assert [(i.log, i.first_seq, i.last_seq) for i in emptied] == [("session/s/history", 2, 1)]
        s.state.put("k", 1)  # copies the partition in (write-behind writes only to cached partitions)
        assert tiers.hot.log_info("session/s/history") is None  # emptied: hidden, as in PostgreSQL
        assert tiers.hot.read("session/s/history") == [] and tiers.hot.scan_logs("session/s/") == []
        s.append({"role": "user", "content": "b"})
        info = tiers.hot.log_info("session/s/history")
        assert info is not None and info.first_seq == info.last_seq == 2 and info.expires_at is not None


def test_write_behind_reads_fail_instead_of_going_back_in_time_while_redis_is_down(
    urls: tuple[str, str], rd: RedisServer
) -> None:
    with _open(urls, "write-behind") as store:
        state = store.session("s").state
        state.put("k", 1)
        _tiers(store).flush()
        state.put("k", 2)  # acknowledged: in Redis and its queue, not yet in PostgreSQL
        assert state.get("k") == 2
        rd.kill()
        with pytest.raises(UnavailableError, match="on_hot_failure=fail"):
            state.get("k")  # PostgreSQL would answer 1
        with pytest.raises(UnavailableError, match="on_hot_failure=fail"):
            store.storage.scan("")  # a listing would miss the queued batch too
        rd.start()  # the AOF kept it
        assert state.get("k") == 2


def test_write_behind_falling_back_to_postgres_reads_postgres_while_redis_is_down(
    urls: tuple[str, str], rd: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``on_hot_failure=write-through`` chose availability: reads and writes go to PostgreSQL (logged)."""
    with _open(urls, "write-behind", on_hot_failure="write-through") as store:
        state = store.session("s").state
        state.put("k", 1)
        _tiers(store).flush()
        rd.kill()
        with caplog.at_level(logging.WARNING, logger="statekeel.tiered"):
            state.put("k", 2, expect=1)
            assert state.get("k") == 2
        assert "Redis unavailable" in caplog.text


def test_write_behind_does_not_write_through_a_batch_redis_may_have_taken(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(urls, "write-behind", on_hot_failure="write-through") as store:
        s, tiers = store.session("s"), _tiers(store)
        s.append({"role": "user", "content": "a"})
        tiers.flush()
        tiers.hydrator.wait()  # background copies done: the lost reply is the test's own write's
        real = redis.connection.AbstractConnection.read_response
        lose, ours = [True], threading.get_ident()

        def reply_lost(self: Any, *args: Any, **kwargs: Any) -> Any:
            reply = real(self, *args, **kwargs)  # Redis ran the command ...
            if threading.get_ident() == ours and (lose.pop() if lose else False):
                self.disconnect()
                raise redis_py.ConnectionError("the connection broke before the reply arrived")  # ... its reply is lost
            return reply

        monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", reply_lost)
        with pytest.raises(UnavailableError) as err:
            s.append({"role": "user", "content": "b"})
        assert err.value.maybe_applied
        monkeypatch.undo()
        tiers.flush()
        assert _seqs(store) == [(1, "a"), (2, "b")]  # Redis took it, the queue replayed it ...
        with statekeel.open(urls[1]) as cold:
            assert _seqs(cold) == [(1, "a"), (2, "b")]  # ... once


def test_a_write_through_write_postgres_committed_succeeds_while_redis_refuses_writes(
    pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis out of memory refuses the cache update: the write is committed in PostgreSQL, so it
    returns (it used to raise StoreError — and a caller retrying it appended it twice)."""
    with RedisServer(extra_args=["--maxmemory-policy", "noeviction"]) as full:
        urls = (f"{full.url}?timeout=2", f"{pg.url}?schema=tiered_audit_full&timeout=3")
        with _open(urls, "write-through") as store:
            s = store.session("s")
            s.append({"role": "user", "content": "a"})
            raw = redis_py.Redis(port=full.port)
            _fill(raw)  # past maxmemory: Redis refuses every write script now
            with caplog.at_level(logging.WARNING, logger="statekeel.tiered"):
                s.append({"role": "user", "content": "b"})
            assert "wrote PostgreSQL only" in caplog.text
            with statekeel.open(urls[1]) as cold:
                assert _seqs(cold) == [(1, "a"), (2, "b")]
            raw.config_set("maxmemory", 0)
            raw.close()
            _tiers(store).maintenance.tick()  # the cache flagged dirty is dropped once Redis takes writes again
            assert _seqs(store) == [(1, "a"), (2, "b")]


def _fill(raw: redis_py.Redis) -> None:
    """Make Redis refuse every write: memory in use above ``maxmemory`` (policy noeviction)."""
    raw.set("filler", b"x" * (1 << 20))
    raw.config_set("maxmemory", int(raw.info("memory")["used_memory"]) - (512 << 10))
