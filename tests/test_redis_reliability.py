"""The Redis backend under bad input and damaged bytes, on a real ``redis-server``.

* A batch is all or nothing: every op is checked in Python before anything is
  sent, and the APPLY script checks what could fail inside Redis (foreign key
  types, damaged header fields) before its first write — Redis does not roll
  back a script that fails midway. Each test compares every stored Redis key
  (DUMP and absolute expiry) before and after the refused batch.
* Per-record checksums: bytes changed behind statekeel's back (HSET of a record
  field, LSET of a log element) raise CorruptionError naming the record or
  entry, and ``statekeel doctor`` exits 1 listing it.
* ``redis://`` options: unknown ones and non-finite timeouts are refused.
* Lone surrogates in keys, logs or codec names are InvalidInputError.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

import statekeel
from conftest import running
from statekeel import ConfigurationError, ConflictError, CorruptionError, InvalidInputError, NotAStoreError
from statekeel.cli import main
from statekeel.protocol import (
    Append,
    Delete,
    Entry,
    Expire,
    Load,
    LoadEntries,
    Op,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
)
from statekeel.protocol.integrity import entry_sum
from statekeel.testing.servers import RedisServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One real Redis (AOF, appendfsync always) for the module; tests use their own prefix."""
    yield from running(RedisServer())


_prefixes = itertools.count()


@pytest.fixture
def prefix() -> str:
    return f"rel{next(_prefixes)}"


@pytest.fixture
def url(server: RedisServer, prefix: str) -> str:
    return f"{server.url}?prefix={prefix}"


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(server.url)
    yield r
    r.close()


@pytest.fixture
def store(url: str) -> Iterator[statekeel.Store]:
    with statekeel.open(url) as s:
        yield s


Snapshot = dict[bytes, tuple[bytes | None, Any]]


def snapshot(r: redis.Redis, prefix: str) -> Snapshot:
    """Every Redis key of the store, byte for byte, with its absolute expiry."""
    found = sorted(r.scan_iter(match=f"{prefix}:*", count=1000))
    return {k: (r.dump(k), r.execute_command("PEXPIRETIME", k)) for k in found}


LOG = "session/s1/history"
STATE = "session/s1/state/k"


def _seed(store: statekeel.Store) -> None:
    """A record at version 1 and a log with one entry, both with an expiry."""
    exp = time.time() + 3600
    store.backend.apply([Append(LOG, ((b'"m0"', "json"),), expires_at=exp), Put(STATE, b"0", "json", expires_at=exp)])


# -- D5: all or nothing ------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")
_E = Entry(LOG, 2, b"1", "json", 1000.0)
COPY = "session/s1/copy"
BAD_OPS: dict[str, Op] = {
    "put expiry nan": Put(STATE, b"1", "json", expires_at=NAN),
    "put expiry inf": Put(STATE, b"1", "json", expires_at=INF),
    "put expiry -inf": Put(STATE, b"1", "json", expires_at=-INF),
    "put expiry past PEXPIREAT's range": Put(STATE, b"1", "json", expires_at=1e300),
    "put data not bytes": Put(STATE, None, "json"),  # type: ignore[arg-type]
    "append expiry nan": Append("session/s1/other", ((b"1", "json"),), expires_at=NAN),
    "touch expiry nan": Touch(STATE, expires_at=NAN),
    "expire nan": Expire("session/s1/", NAN),
    "trim before past 2**53": Trim(LOG, 2**64),
    "rewrite seq past 2**53": Rewrite(LOG, 2**63, b"1", "json"),
    "load version past 2**53": Load(Record(STATE, b"1", "json", 2**60, 1.0, 2.0, None)),
    "load created_at nan": Load(Record(STATE, b"1", "json", 3, NAN, 2.0, None)),
    "load expiry inf": Load(Record(STATE, b"1", "json", 3, 1.0, 2.0, INF)),
    "load entries seq past 2**53": LoadEntries(COPY, (Entry(COPY, 2**60, b"1", "json", 1.0),)),
    "load entries created_at nan": LoadEntries(COPY, (Entry(COPY, 1, b"1", "json", NAN),)),
    "load entries expiry nan": LoadEntries("session/s1/copy", (_E,), expires_at=NAN),
}


@pytest.mark.parametrize("bad", list(BAD_OPS), ids=list(BAD_OPS))
def test_a_batch_with_one_bad_op_writes_nothing(store: statekeel.Store, raw: redis.Redis, prefix: str,
                                                bad: str) -> None:  # fmt: skip
    _seed(store)
    before = snapshot(raw, prefix)
    ops = [Append(LOG, ((b'"m1"', "json"),)), Put(STATE, b"1", "json"), BAD_OPS[bad]]
    with pytest.raises(InvalidInputError):
        store.backend.apply(ops)
    assert snapshot(raw, prefix) == before
    assert store.backend.get(STATE).data == b"0"  # type: ignore[union-attr]


@pytest.mark.parametrize("expect", [2**60, 2**53, -1, -(2**60)])
def test_an_expect_no_version_can_match_is_a_conflict_as_on_memory(store: statekeel.Store, raw: redis.Redis,
                                                                   prefix: str, expect: int) -> None:
    """-1 once matched a missing record (the script's -1 means "none"); 2**60 is no exact Lua number."""
    _seed(store)
    before = snapshot(raw, prefix)
    for ops in ([Append(LOG, ((b'"m1"', "json"),)), Put(STATE, b"1", "json", expect=expect)],
                [Append(LOG, ((b'"m1"', "json"),)), Put("session/s1/state/new", b"1", "json", expect=expect)],
                [Append(LOG, ((b'"m1"', "json"),)), Delete(STATE, expect=expect)]):  # fmt: skip
        with pytest.raises(ConflictError) as err:
            store.backend.apply(ops)
        assert err.value.expected == expect
    assert snapshot(raw, prefix) == before


def test_session_batch_with_a_nan_ttl_keeps_history_and_state(store: statekeel.Store, raw: redis.Redis,
                                                              prefix: str) -> None:  # fmt: skip
    """D5 as users met it: the append was kept and the state value 0 became None."""
    s = store.session("s1")
    s.append("hello", state={"k": 0})
    before = snapshot(raw, prefix)
    with pytest.raises(InvalidInputError), s.batch() as b:
        b.append("lost?")
        b.put("k", 1, ttl=float("nan"))
    assert snapshot(raw, prefix) == before
    assert s.history() == ["hello"] and s.state.get("k") == 0


def test_the_script_refuses_a_foreign_key_type_before_its_first_write(store: statekeel.Store,
                                                                      raw: redis.Redis, prefix: str) -> None:
    """Python cannot see the server's keys: the script checks them before writing anything."""
    _seed(store)
    raw.set(f"{prefix}:{{session/s1}}:kv:session/s1/state/foreign", "someone else's")
    before = snapshot(raw, prefix)
    with pytest.raises(NotAStoreError):
        store.backend.apply([Append(LOG, ((b'"m1"', "json"),)), Put("session/s1/state/foreign", b"1", "json")])
    assert snapshot(raw, prefix) == before


def test_the_script_refuses_a_damaged_version_field_before_its_first_write(store: statekeel.Store,
                                                                           raw: redis.Redis, prefix: str) -> None:
    _seed(store)
    raw.hset(f"{prefix}:{{session/s1}}:kv:{STATE}", "v", "one")
    before = snapshot(raw, prefix)
    with pytest.raises(CorruptionError) as err:
        store.backend.apply([Append(LOG, ((b'"m1"', "json"),)), Put(STATE, b"1", "json")])
    assert err.value.key == STATE
    assert snapshot(raw, prefix) == before


def test_the_script_refuses_a_damaged_log_header_before_its_first_write(store: statekeel.Store,
                                                                        raw: redis.Redis, prefix: str) -> None:
    _seed(store)
    raw.hset(f"{prefix}:{{session/s1}}:logh:{LOG}", "l", "many")
    before = snapshot(raw, prefix)
    with pytest.raises(CorruptionError) as err:
        store.backend.apply([Put(STATE, b"1", "json"), Append(LOG, ((b'"m1"', "json"),))])
    assert err.value.key == LOG
    assert snapshot(raw, prefix) == before


# -- checksums --------------------------------------------------------------------------------
def _kv(prefix: str, key: str) -> str:
    return f"{prefix}:{{{'/'.join(key.split('/')[:2])}}}:kv:{key}"


def _log(prefix: str, log: str) -> str:
    return f"{prefix}:{{{'/'.join(log.split('/')[:2])}}}:log:{log}"


def _doctor(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["doctor", url])
    return result.exit_code, result.output


def _one_digit_changed(data: bytes) -> bytes:
    """The last digit changed: inside the value (a frame starts with its checksum and created_at)."""
    i = max(i for i, ch in enumerate(data) if chr(ch).isdigit())
    return data[:i] + str((int(chr(data[i])) + 1) % 10).encode() + data[i + 1 :]


DAMAGE: dict[str, Callable[[redis.Redis, str], None]] = {
    "a digit of the data": lambda r, k: r.hset(k, "d", _one_digit_changed(r.hget(k, "d") or b"")),
    "the version": lambda r, k: r.hset(k, "v", "3"),
    "the codec": lambda r, k: r.hset(k, "c", "json+zlib"),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_record_raises_on_every_read_and_doctor_lists_it(url: str, store: statekeel.Store,
                                                                   raw: redis.Redis, prefix: str,
                                                                   damage: str) -> None:  # fmt: skip
    store.app.put("ticket", {"id": 991})
    store.app.put("ticket", {"id": 992})
    store.app.put("other", {"id": 1})
    key = "app/_/state/ticket"
    DAMAGE[damage](raw, _kv(prefix, key))
    reads: list[Callable[[], object]] = [
        lambda: store.backend.get(key), lambda: store.backend.get_many(["app/_/state/other", key]),
        lambda: store.backend.scan("app/"), lambda: store.backend.scan(""), lambda: store.app.get("ticket"),
    ]
    for read in reads:
        with pytest.raises(CorruptionError, match="ticket") as err:
            read()
        assert err.value.key == key
    assert store.app.get("other") == {"id": 1}  # an undamaged neighbour still reads
    code, out = _doctor(url)
    assert code == 1 and "ticket" in out, out


def test_a_damaged_log_entry_raises_naming_its_seq_and_doctor_lists_it(url: str, store: statekeel.Store,
                                                                       raw: redis.Redis, prefix: str) -> None:
    s = store.session("s1")
    s.append("m-100", "m-200", "m-300")
    history = _log(prefix, LOG)
    raw.lset(history, 1, _one_digit_changed(raw.lindex(history, 1) or b""))
    for read in [lambda: store.backend.read(LOG), lambda: store.backend.read(LOG, limit=2, reverse=True),
                 lambda: store.backend.read_values(LOG), s.history]:  # fmt: skip
        with pytest.raises(CorruptionError, match="entry 2") as err:
            read()
        assert (err.value.key, err.value.seq) == (LOG, 2)
    assert [e.seq for e in store.backend.read(LOG, start=3)] == [3]
    code, out = _doctor(url)
    assert code == 1 and "history" in out, out


def test_entry_checksums_cover_the_seq(store: statekeel.Store, raw: redis.Redis, prefix: str) -> None:
    """Two identical entries swapped in place: only the seq tells them apart."""
    store.backend.apply([Append(LOG, ((b'"same"', "json"), (b'"same"', "json")))])
    history = _log(prefix, LOG)
    first, second = raw.lrange(history, 0, 1)
    assert first != second
    raw.lset(history, 0, second)
    raw.lset(history, 1, first)
    with pytest.raises(CorruptionError) as err:
        store.backend.read(LOG)
    assert (err.value.key, err.value.seq) == (LOG, 1)


def test_the_history_fast_path_checks_each_entry_at_its_own_seq(store: statekeel.Store, raw: redis.Redis,
                                                                 prefix: str) -> None:
    """read_values checks a whole reply at once; two identical json entries swapped must still fail."""
    store.backend.apply([Append(LOG, ((b'"same"', "json"), (b'"same"', "json"), (b'"x"', "json")))])
    assert store.backend.read_values(LOG) == [(b'"same"', "json"), (b'"same"', "json"), (b'"x"', "json")]
    history = _log(prefix, LOG)
    first, second = raw.lrange(history, 0, 1)
    raw.lset(history, 0, second)
    raw.lset(history, 1, first)
    with pytest.raises(CorruptionError, match="entry 1") as err:
        store.backend.read_values(LOG)
    assert (err.value.key, err.value.seq) == (LOG, 1)


def test_ops_after_a_load_or_import_in_one_batch_see_it(store: statekeel.Store) -> None:
    """The script reuses a header it read for its checks only when one op names it."""
    b = store.backend
    b.apply([Append("k/x/log", ((b"0", "json"),)), Put("k/x/a", b"0", "json")])
    b.apply([Load(Record("k/x/a", b"1", "json", 7, 1.0, 1.0, None)), Put("k/x/a", b"2", "json"),
             LoadEntries("k/x/log", (Entry("k/x/log", 5, b"5", "json", 1.0),)),
             Append("k/x/log", ((b"6", "json"),))])  # fmt: skip
    assert b.get("k/x/a").version == 8  # type: ignore[union-attr]
    assert [(e.seq, e.data) for e in b.read("k/x/log")] == [(1, b"0"), (5, b"5"), (6, b"6")]


def test_two_writers_on_one_log_keep_valid_checksums(url: str, store: statekeel.Store) -> None:
    """Each handle seals an append's checksums with the seq it expects; the script corrects a stale guess."""
    with statekeel.open(url) as other:
        for i in range(4):
            (store if i % 2 else other).backend.apply([Append(LOG, ((b"%d" % i, "json"), (b"x", "json")))])
        store.backend.apply([Append(LOG, ())])
        store.backend.apply([Trim(LOG, 4)])
        other.backend.apply([Append(LOG, ((b"after trim", "json"),))])
    assert [(e.seq, e.data) for e in store.backend.read(LOG)] == [
        (4, b"x"), (5, b"2"), (6, b"x"), (7, b"3"), (8, b"x"), (9, b"after trim")]  # fmt: skip


def test_copies_rewrites_and_loads_store_valid_checksums(store: statekeel.Store, raw: redis.Redis,
                                                         prefix: str) -> None:  # fmt: skip
    b = store.backend
    b.apply([Load(Record("k/x/a", b"1", "json", 7, 1.0, 2.0, None)),
             LoadEntries("k/x/log", (Entry("k/x/log", 5, b"5", "json", 1.5), Entry("k/x/log", 9, b"9", "json", 2.5))),
             Append("k/x/log", ((b"10", "json"),))])  # fmt: skip
    b.apply([Rewrite("k/x/log", 9, b"99", "json+x"), Put("k/x/a", b"2", "json")])
    assert [(e.seq, e.data, e.codec) for e in b.read("k/x/log")] == [
        (5, b"5", "json"), (9, b"99", "json+x"), (10, b"10", "json")]  # fmt: skip
    assert b.get("k/x/a").version == 8  # type: ignore[union-attr]
    raw.hset(_kv(prefix, "k/x/a"), "v", "7")
    with pytest.raises(CorruptionError):
        b.get("k/x/a")
    raw.lset(_log(prefix, "k/x/log"), 4, raw.lindex(_log(prefix, "k/x/log"), 0) or b"")  # entry 5's bytes at 9
    with pytest.raises(CorruptionError, match="entry 9"):
        b.read("k/x/log", start=6)


def test_data_written_before_checksums_reads_unchecked(store: statekeel.Store, raw: redis.Redis,
                                                       prefix: str) -> None:  # fmt: skip
    store.app.put("old", 1)
    store.session("s1").append("kept")
    raw.hdel(_kv(prefix, "app/_/state/old"), "s")
    history = _log(prefix, LOG)
    frame = raw.lindex(history, -1) or b""
    assert frame[:1] == b"#"
    raw.rpush(history, frame[5:])  # the frame without its checksum, as the first layout wrote it
    raw.hincrby(f"{prefix}:{{session/s1}}:logh:{LOG}", "l", 1)
    assert store.app.get("old") == 1
    assert store.session("s1").history() == ["kept", "kept"]
    store.app.put("old", 2)  # the next write adds the checksum
    assert raw.hget(_kv(prefix, "app/_/state/old"), "s") is not None
    old_entry = store.backend.read(LOG, start=2)[0]
    store.backend.apply([Rewrite(LOG, 2, b'"re"', "json")])  # re-encoding an old entry adds its checksum
    assert (raw.lindex(history, -1) or b"")[:1] == b"#"
    assert store.backend.read(LOG, start=2)[0].created_at == old_entry.created_at
    assert store.session("s1").history() == ["kept", "re"]


# -- D8: redis:// options ----------------------------------------------------------------------
@pytest.mark.parametrize("query, match", [
    ("prefx=a", r"did you mean \?prefix="),
    ("socket_timeout=5", "socket_timeout"),  # statekeel's ?timeout= sets it
    ("retry_on_timeout=true", "retry_on_timeout"),  # would re-send a batch whose reply was lost
    ("bogus=1", "bogus"),
    ("timeout=nan", "finite"),
    ("timeout=inf", "finite"),
    ("timeout=0", "positive"),
    ("timeout=-1", "positive"),
])  # fmt: skip
def test_bad_url_options_are_configuration_errors(server: RedisServer, query: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        statekeel.open(f"{server.url}?{query}")


def test_passed_through_options_reach_redis(server: RedisServer, raw: redis.Redis) -> None:
    url = f"{server.url}?prefix=opts&db=2&client_name=sk-test&health_check_interval=30&max_connections=4&timeout=5"
    with statekeel.open(url) as store:
        store.app.put("k", 1)
        names = [c["name"] for c in raw.client_list()]
        assert "sk-test" in names
    assert raw.exists("opts:statekeel") == 0
    db2 = redis.Redis(host=raw.connection_pool.connection_kwargs["host"],
                      port=raw.connection_pool.connection_kwargs["port"], db=2)  # fmt: skip
    assert db2.exists("opts:statekeel") == 1
    db2.close()


# -- D9: lone surrogates -----------------------------------------------------------------------
def test_lone_surrogates_are_invalid_input(store: statekeel.Store, raw: redis.Redis, prefix: str) -> None:
    _seed(store)
    before = snapshot(raw, prefix)
    b = store.backend
    for call in [
        lambda: b.get("app/_/state/\udc80"), lambda: b.get_many(["app/_/state/\udc80"]),
        lambda: b.scan("app/\udc80"), lambda: b.scan("", after="a\udc80"), lambda: b.read("x/y/\ud800"),
        lambda: b.log_info("x/y/\ud800"), lambda: b.scan_logs("x\udc80"),
        lambda: b.apply([Append(LOG, ((b"1", "json"),)), Put("app/_/state/\udc80", b"1", "json")]),
        lambda: b.apply([Append(LOG, ((b"1", "json"),)), Put(STATE, b"1", "js\udc80n")]),
        lambda: b.apply([Put(STATE, b"1", "json"), Append(LOG, ((b"1", "\udc80"),))]),
        lambda: b.apply([Put(STATE, b"1", "json"), Expire("session/\udc80", None)]),
    ]:
        with pytest.raises(InvalidInputError, match="surrogate"):
            call()
    assert snapshot(raw, prefix) == before


def test_checksum_slot_is_four_bytes_after_a_marker(store: statekeel.Store, raw: redis.Redis, prefix: str) -> None:
    """The frame layout the doc describes: ``#``, the checksum (>I4), then the first layout's frame."""
    store.backend.apply([Append(LOG, ((b'"a"', "json"), (b'"b"', "json")))])
    frames = raw.lrange(_log(prefix, LOG), 0, -1)
    sums = [struct.unpack(">I", f[1:5])[0] for f in frames]
    assert sums == [entry_sum(LOG, "json", b'"a"', 1), entry_sum(LOG, "json", b'"b"', 2)]
    assert not math.isnan(float(frames[0][5:].split(b"|")[0]))


def test_a_database_the_server_does_not_have_is_a_configuration_error(server: RedisServer) -> None:
    """The server has 16 databases: /99 is in the range a URL may say, but not on this server. It
    was a plain StoreError ("DB index is out of range") that said nothing of the setting."""
    for url in (server.url.rsplit("/", 1)[0] + "/99", server.url.rsplit("/", 1)[0] + "/0?db=99"):
        with pytest.raises(ConfigurationError, match="below the server's `databases` setting"):
            statekeel.open(url)
    with statekeel.open(server.url.rsplit("/", 1)[0] + "/15") as store:  # the highest there is
        store.session("s").append({"role": "user", "content": "hi"})
