"""The LIGHT script (backends/redis/lua_light.py): the everyday batch on a cheaper path, same results.

On a real ``redis-server``. The equivalence test sends each batch, encoded once by
:func:`statekeel.backends.redis.wire.encode`, to APPLY under one prefix and to LIGHT
under another, and compares the replies and every stored key byte for byte (DUMP and
absolute expiry) after each batch — new keys, steady turns, expiry changes, deletes,
conflicts, ``at=``, a wrong seq guess, the write-behind shape across three partitions.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

import statekeel
from conftest import running
from statekeel import NotAStoreError
from statekeel.backends.redis import backend as redis_backend
from statekeel.backends.redis import wire
from statekeel.protocol import KEEP, Append, Delete, Op, Put, Touch
from statekeel.testing.servers import RedisServer

_prefixes = itertools.count()
LOG, KEY, OTHER = "session/l1/history", "session/l1/state/k", "session/l1/state/j"
MARKER, QUEUE = "_statekeel_tier/m/session%2Fl1", "_statekeel_tier/queue"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    yield from running(RedisServer())


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(server.url)
    yield r
    r.close()


def _prefix() -> str:
    return f"lt{next(_prefixes)}"


def _stored(r: redis.Redis, prefix: str) -> dict[bytes, tuple[Any, Any]]:
    """Every Redis key of the store, without its prefix, with its DUMP and absolute expiry."""
    found = sorted(r.scan_iter(match=f"{prefix}:*", count=1000))
    return {k[len(prefix) :]: (r.dump(k), r.execute_command("PEXPIRETIME", k)) for k in found}


def _run(r: redis.Redis, sha: str, prefix: str, ops: Sequence[Op], now: float, guess: dict[str, int]) -> bytes:
    batch = wire.encode(wire.Layout(prefix), ops, now, lambda p, c: [], guess)
    assert batch.light
    return bytes(r.evalsha(sha, len(batch.keys), *batch.keys, repr(now), batch.blob))


def _batches(now: float) -> list[tuple[list[Op], dict[str, int]]]:
    two = ((b'"u"', "msg:user"), (b'"a"', "msg:assistant"))
    return [
        ([Append(LOG, two), Put(KEY, b"1", "json")], {}),  # new log, new record: index writes
        ([Append(LOG, two, expires_at=KEEP), Put(KEY, b"2", "json")], {LOG: 3}),  # the everyday turn
        ([Append(LOG, two, expires_at=KEEP), Put(KEY, b"2", "json")], {LOG: 2}),  # a wrong guess: shifted
        ([Append(LOG, two, expires_at=now + 100), Put(KEY, b"3", "json", expires_at=now + 50)], {LOG: 7}),
        ([Put(KEY, b"4", "json", expires_at=KEEP), Put(OTHER, b"1", "json", expect=None)], {}),
        ([Put(KEY, b"5", "json", expect=9)], {}),  # conflict: version 4 stored
        ([Append(LOG, two, at=3)], {}),  # conflict: 8 entries stored
        ([Delete(OTHER, expect=1), Append(LOG, two, at=9), Put(KEY, b"6", "json", expect=5)], {}),
        ([Delete("session/l1/state/none"), Put(KEY, b"7", "json", expires_at=now - 1)], {}),  # dies at once
        ([Put(MARKER, b"", "json", expect=None), Append(QUEUE, ((b"q", "tier-batch-2"),))], {}),
        ([Put(MARKER, b"", "json", expect=1), Append(LOG, two), Put(KEY, b"8", "json"),
          Append(QUEUE, ((b"q2", "tier-batch-2"),))], {LOG: 11, QUEUE: 2}),  # write-behind's shape
        ([Append(LOG, (), expires_at=None), Delete(KEY, expect=1)], {}),  # an empty append drops the expiry
    ]  # fmt: skip


def test_light_writes_and_answers_exactly_what_apply_does(raw: redis.Redis) -> None:
    now = time.time()
    full, light = _prefix(), _prefix()
    for script in (redis_backend._APPLY, redis_backend._LIGHT):
        raw.script_load(script.source)
    for ops, guess in _batches(now):
        got_full = _run(raw, redis_backend._APPLY.sha, full, ops, now, guess)
        got_light = _run(raw, redis_backend._LIGHT.sha, light, ops, now, guess)
        assert got_light == got_full, ops
        assert _stored(raw, light) == _stored(raw, full), ops
    assert len(_stored(raw, light)) > 8  # the batches wrote: records, logs, indexes of three partitions


def test_only_the_everyday_shape_takes_the_light_script() -> None:
    assert wire.light([Append(LOG, ()), Put(KEY, b"1", "json"), Delete(OTHER), Append(QUEUE, ())])
    assert not wire.light([Put(KEY, b"1", "json"), Put(KEY, b"2", "json")])  # the second sees the first
    assert not wire.light([Put(KEY, b"1", "json"), Delete(KEY)])
    assert not wire.light([Append(LOG, ()), Append(LOG, ())])
    assert not wire.light([Append(LOG, ()), Touch(KEY)])


def test_an_everyday_turn_checks_one_key_type_not_four(server: RedisServer, raw: redis.Redis) -> None:
    """The index sets are not written by a steady turn, so they are not type-checked; the list is."""
    with statekeel.open(f"{server.url}?prefix={_prefix()}") as store:
        s = store.session("t")
        s.append("hello", state={"turn": 0})
        raw.config_resetstat()
        s.append("again", state={"turn": 1})
        stats = raw.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 1 and stats["cmdstat_type"]["calls"] == 1
        assert s.history() == ["hello", "again"] and s.state.get("turn") == 1


def _foreign(r: redis.Redis, key: str) -> None:
    """Replace ``key`` with a string someone else wrote (SET drops the old value whatever its type)."""
    r.set(key, "someone else's")


def test_a_foreign_list_refuses_the_light_batch_before_its_first_write(server: RedisServer,
                                                                       raw: redis.Redis) -> None:  # fmt: skip
    prefix = _prefix()
    with statekeel.open(f"{server.url}?prefix={prefix}") as store:
        store.backend.apply([Append(LOG, ((b'"m0"', "json"),)), Put(KEY, b"0", "json")])
        _foreign(raw, f"{prefix}:{{session/l1}}:log:{LOG}")
        before = _stored(raw, prefix)
        with pytest.raises(NotAStoreError):
            store.backend.apply([Put(KEY, b"1", "json"), Append(LOG, ((b'"m1"', "json"),))])
        assert _stored(raw, prefix) == before


def test_a_foreign_index_refuses_a_light_batch_that_writes_it(server: RedisServer, raw: redis.Redis) -> None:
    prefix = _prefix()
    with statekeel.open(f"{server.url}?prefix={prefix}") as store:
        store.backend.apply([Append(LOG, ((b'"m0"', "json"),)), Put(KEY, b"0", "json")])
        _foreign(raw, f"{prefix}:{{session/l1}}:logs")
        before = _stored(raw, prefix)
        with pytest.raises(NotAStoreError):  # a new record: its key goes into the index
            store.backend.apply([Put(KEY, b"1", "json"), Put(OTHER, b"1", "json")])
        with pytest.raises(NotAStoreError):
            store.backend.apply([Delete(KEY)])
        assert _stored(raw, prefix) == before
