"""One flipped bit in a stored record or log entry is always detected (issue 10, suite part 4).

CRC-32 catches every single-bit error, so the property is strict: whichever bit of a stored
value, codec name or checksum flips, reading it through the API raises ``CorruptionError``
naming the record (and the seq for an entry) — never a wrong value, never a raw exception.
Stored directly in the database, bypassing statekeel: SQLite's tables and Redis's hashes and
list elements. (The files backend's record files, lines and journals are fuzzed in
tests/test_files_reliability.py; PostgreSQL's damage tests are in tests/test_postgres_reliability.py.)
"""

from __future__ import annotations

import itertools
from collections import Counter
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeel
from conftest import running
from statekeel.errors import CorruptionError
from statekeel.testing.servers import RedisServer

from .conftest import Reporter, scale

FLIPS = settings(
    max_examples=scale(200, 5000), deadline=None, derandomize=not os.environ.get("STATEKEEL_RELIABILITY"),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
MESSAGE = {"role": "assistant", "content": "Your refund of 42.50 EUR is on its way."}
TICKET = {"id": 991, "status": "open", "amount": "42.50"}


def _flip(raw: bytes, bit: int) -> bytes:
    bit %= len(raw) * 8
    out = bytearray(raw)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _reads_fail(store: statekeel.Store, what: str) -> None:
    """Every way of reading the damaged item raises CorruptionError naming it."""
    if what == "record":
        for read in (lambda: store.app.get("ticket"), lambda: store.backend.scan("")):
            with pytest.raises(CorruptionError) as caught:
                read()
            assert caught.value.key.endswith("ticket") and caught.value.seq is None
    else:
        s = store.session("s")
        for read in (s.history, lambda: s.history(last=1), lambda: s.messages(start=2)):
            with pytest.raises(CorruptionError) as caught:
                read()  # type: ignore[operator]
            assert caught.value.key.endswith("history") and caught.value.seq == 2


# -- SQLite ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sqlite_pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("flips") / "pristine.db"
    with statekeel.open(f"sqlite:///{path}") as store:
        store.app.put("ticket", TICKET)
        store.session("s").append({"role": "user", "content": "where is my refund?"}, MESSAGE)
        store.backend.checkpoint_wal()  # type: ignore[attr-defined]
    return path.read_bytes()


_n = itertools.count()
_RAN: Counter[str] = Counter()
"""Examples run per backend, for the report."""


@pytest.fixture(scope="module", autouse=True)
def _report(reliability_report: Reporter) -> Iterator[None]:
    yield
    for backend, examples in sorted(_RAN.items()):
        reliability_report("fuzzing", backend, target="one flipped bit in a stored record or entry",
                           examples=examples, found=[])


@FLIPS
@given(what=st.sampled_from(["record", "entry"]), column=st.sampled_from(["data", "codec", "checksum"]),
       bit=st.integers(min_value=0))
def test_a_flipped_bit_in_sqlite_is_always_detected(
    sqlite_pristine: bytes, tmp_path: Path, what: str, column: str, bit: int
) -> None:
    _RAN["sqlite"] += 1
    path = tmp_path / f"flip{next(_n)}.db"
    path.write_bytes(sqlite_pristine)
    table, where = ("sk_kv", "key LIKE '%ticket'") if what == "record" else ("sk_entries", "id & 4294967295 = 2")
    with sqlite3.connect(path) as raw:
        (value,) = raw.execute(f"SELECT {column} FROM {table} WHERE {where}").fetchone()
        if column == "checksum":
            damaged: Any = value ^ (1 << (bit % 32))
        elif column == "codec":  # one of the low five bits of one character: still ASCII text
            at = bit % len(value)
            damaged = value[:at] + chr(ord(value[at]) ^ (1 << (bit // len(value) % 5))) + value[at + 1:]
        else:
            damaged = _flip(value, bit)
        raw.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (damaged,))
    with statekeel.open(f"sqlite:///{path}") as store:
        _reads_fail(store, what)
    path.unlink()


# -- Redis ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running(RedisServer())


@pytest.fixture(scope="module")
def redis_store(redis_server: RedisServer) -> Iterator[tuple[statekeel.Store, redis.Redis]]:
    url = f"{redis_server.url}?prefix=flips"
    raw = redis.Redis.from_url(redis_server.url)
    with statekeel.open(url) as store:
        store.app.put("ticket", TICKET)
        store.session("s").append({"role": "user", "content": "where is my refund?"}, MESSAGE)
        yield store, raw
    raw.close()


def _redis_item(raw: redis.Redis, what: str) -> tuple[bytes, str]:
    pattern = "flips:*:kv:*ticket" if what == "record" else "flips:*:log:*history"
    (key,) = list(raw.scan_iter(match=pattern))
    return key, "hash" if what == "record" else "list"


@FLIPS
@given(what=st.sampled_from(["record", "entry"]), bit=st.integers(min_value=0))
def test_a_flipped_bit_in_redis_is_always_detected(
    redis_store: tuple[statekeel.Store, redis.Redis], what: str, bit: int
) -> None:
    _RAN["redis"] += 1
    store, raw = redis_store
    key, kind = _redis_item(raw, what)
    if kind == "hash":
        original = raw.hget(key, "d")
        raw.hset(key, "d", _flip(original, bit))
    else:
        original = raw.lindex(key, 1)
        head = original.index(b"|", 5)  # '#', 4 checksum bytes, created_at: not covered, left alone
        body = original[head:]
        raw.lset(key, 1, original[:head] + _flip(body, bit))
    try:
        _reads_fail(store, what)
    finally:
        if kind == "hash":
            raw.hset(key, "d", original)
        else:
            raw.lset(key, 1, original)


@FLIPS
@given(bit=st.integers(min_value=0, max_value=31))
def test_a_flipped_bit_in_a_redis_entry_checksum_is_detected(
    redis_store: tuple[statekeel.Store, redis.Redis], bit: int
) -> None:
    _RAN["redis"] += 1
    store, raw = redis_store
    key, _ = _redis_item(raw, "entry")
    original = raw.lindex(key, 1)
    raw.lset(key, 1, original[:1] + _flip(original[1:5], bit) + original[5:])
    try:
        _reads_fail(store, "entry")
    finally:
        raw.lset(key, 1, original)


