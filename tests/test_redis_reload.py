"""Whole-history reloads on Redis: the short form of chat messages, one MULTI/EXEC snapshot
instead of a script, and the bulk check of every frame (backends/redis/values.py).

Real ``redis-server`` (AOF, appendfsync always), sync and asyncio API; damage is made
with raw Redis commands on the stored list, never through statekeel.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import statekeel
from conftest import start_server
from statekeel import CorruptionError
from statekeel.testing.servers import RedisServer

_prefixes = itertools.count()
MESSAGES: list[Any] = [
    {"role": "user", "content": "héllo | 4|json"},
    {"role": "assistant", "content": "x" * 700},
    {"role": "tool", "content": "42", "name": "calc"},  # not a plain message: stays json
    [1, 2, {"a": None}],
    {"content": "reversed keys", "role": "user"},  # other key order: stays json, order kept
]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = start_server(RedisServer())
    yield srv
    srv.stop()


@pytest.fixture
def prefix() -> str:
    return f"rl{next(_prefixes)}"


@pytest.fixture
def url(server: RedisServer, prefix: str) -> str:
    return f"{server.url}?prefix={prefix}"


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(server.url)
    yield r
    r.close()


def _list_key(raw: redis.Redis, prefix: str, sid: str) -> bytes:
    (key,) = raw.keys(f"{prefix}:{{session/{sid}}}:log:*")
    return bytes(key)


async def _async_history(url: str, sid: str, last: int | None = None) -> list[Any]:
    store = await statekeel.open_async(url)
    async with store:
        return await (await store.session(sid)).history(last)


def test_plain_messages_are_stored_short_and_read_back_equal(url: str, raw: redis.Redis, prefix: str) -> None:
    with statekeel.open(url) as store:
        s = store.session("c")
        s.append(*MESSAGES)
        frames = raw.lrange(_list_key(raw, prefix, "c"), 0, -1)
        assert [b"|8|msg:user" in f for f in frames] == [True, False, False, False, False]
        assert b"|13|msg:assistant" in frames[1] and frames[2].count(b"|4|json") == 1
        assert s.history() == MESSAGES and s.history(last=2) == MESSAGES[-2:]
        assert list(s.history()[4]) == ["content", "role"]
    assert asyncio.run(_async_history(url, "c")) == MESSAGES
    assert asyncio.run(_async_history(url, "c", 3)) == MESSAGES[-3:]


def test_a_reload_is_one_snapshot_without_a_script(url: str, raw: redis.Redis) -> None:
    with statekeel.open(url) as store:
        s = store.session("snap")
        for i in range(50):
            s.append({"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"})
        for read in (s.history, lambda: asyncio.run(_async_history(url, "snap"))):
            raw.config_resetstat()
            assert len(read()) == 100
            stats = raw.info("commandstats")
            assert "cmdstat_evalsha" not in stats, "READ_LOG copies every element into Lua and back"
            assert stats["cmdstat_exec"]["calls"] == 1 and stats["cmdstat_lrange"]["calls"] == 1
        raw.config_resetstat()  # the newest few: READ_TAIL, which copies only those through Lua
        assert len(s.history(last=5)) == 5
        stats = raw.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 1 and "cmdstat_exec" not in stats


@pytest.mark.parametrize("api", ["sync", "async"])
def test_one_changed_byte_in_a_short_message_raises_naming_the_entry(
    url: str, raw: redis.Redis, prefix: str, api: str
) -> None:
    with statekeel.open(url) as store:
        s = store.session("d")
        s.append(*MESSAGES)
        key = _list_key(raw, prefix, "d")
        frame = bytes(raw.lindex(key, 1))
        raw.lset(key, 1, frame[:-1] + b"y")  # the assistant's last content byte: x -> y
        with pytest.raises(CorruptionError) as err:
            s.history() if api == "sync" else asyncio.run(_async_history(url, "d"))
        assert err.value.seq == 2 and "session/d/history" in str(err.value)
        assert raw.lindex(key, 1) == frame[:-1] + b"y"  # a read changes nothing


def test_a_list_that_does_not_match_its_header_is_read_by_the_script(url: str, raw: redis.Redis, prefix: str) -> None:
    """An element pushed by hand past the header's last seq: the snapshot does not add up, so the
    READ_LOG script reads the range the header names (what every read did before)."""
    with statekeel.open(url) as store:
        s = store.session("m")
        s.append(*MESSAGES[:2])
        raw.rpush(_list_key(raw, prefix, "m"), b"stray")
        assert s.history() == MESSAGES[:2]
        assert asyncio.run(_async_history(url, "m")) == MESSAGES[:2]
