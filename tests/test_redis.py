"""The Redis/Valkey backend on real ``redis-server`` processes.

What the shared conformance suite cannot see: the cluster-safe key layout,
native expiry on every Redis key, eight processes racing on compare-and-set,
a ``kill -9`` of Redis in the middle of a stream of appends, ``?prefix=``
isolation, and the layout marker. No fakes: every test talks to a server
started here (skipped when ``redis-server`` is missing, failed when ``CI`` is set).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

import statekeel
from conftest import start_server
from statekeel import ConfigurationError, NotAStoreError, SchemaTooNewError, UnavailableError
from statekeel.backends.memory import MemoryBackend
from statekeel.protocol import KEEP, Append, Entry, Expire, LoadEntries, Put, Rewrite, Trim, keys
from statekeel.testing.servers import RedisServer, free_port


def _start(server: RedisServer) -> RedisServer:
    return start_server(server)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One real Redis (AOF, appendfsync always) for the module; tests use their own prefix."""
    srv = _start(RedisServer())
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[RedisServer]:
    """A one-node Redis Cluster owning every slot: Redis itself refuses cross-slot scripts."""
    srv = _start(RedisServer(extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                         "--cluster-port", str(free_port())]))  # fmt: skip
    r = redis.Redis.from_url(srv.url)
    r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    deadline = time.monotonic() + 10
    while b"cluster_state:ok" not in r.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "the one-node cluster did not come up"
        time.sleep(0.05)
    yield srv
    srv.stop()


_prefixes = itertools.count()


@pytest.fixture
def prefix() -> str:
    return f"t{next(_prefixes)}"


@pytest.fixture
def url(server: RedisServer, prefix: str) -> str:
    return f"{server.url}?prefix={prefix}"


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(server.url)
    yield r
    r.close()


def _keys(r: redis.Redis, prefix: str) -> list[str]:
    return sorted(k.decode() for k in r.scan_iter(match=f"{prefix}:*", count=1000))


def _session_workload(store: statekeel.Store, sid: str, ttl: Any = None) -> None:
    s = store.session(sid, user="u-7", ttl=ttl)
    for turn in range(5):
        s.append({"role": "user", "content": f"q{turn}"}, {"role": "assistant", "content": f"a{turn}"},
                 state={"turn": turn})  # fmt: skip
    s.state.put("ticket", {"id": 991}, expect=None)
    s.state.update("ticket", lambda t: {**t, "status": "open"})
    s.state.delete("ticket")
    s.state.put("ticket", {"id": 992})
    s.heartbeat()
    s.mark_crashed()
    store.session(sid)  # reopening a crashed session resumes it
    assert s.history(last=2) == [{"role": "user", "content": "q4"}, {"role": "assistant", "content": "a4"}]


# -- 1. cluster safety ----------------------------------------------------------------
def test_every_partition_lives_in_one_hash_slot(url: str, raw: redis.Redis, prefix: str) -> None:
    with statekeel.open(url) as store:
        for sid in ["support-42", "a/b", "{tag}", "x%y", "日本"]:
            _session_workload(store, sid, ttl="1h")
        store.app.put("k", 1)
        store.user("u-7").put("k", 2)
    by_tag: dict[str, set[int]] = {}
    for key in _keys(raw, prefix):
        if "{" in key:
            tag = key[key.index("{") + 1 : key.index("}")]
            by_tag.setdefault(tag, set()).add(key_slot(key.encode()))
    assert "session/support-42" in by_tag and "session/a%2Fb" in by_tag and "session/%7Btag%7D" in by_tag
    assert {tag: len(slots) for tag, slots in by_tag.items()} == dict.fromkeys(by_tag, 1)


def test_scripts_touch_one_slot_on_a_real_cluster_node(cluster_node: RedisServer) -> None:
    """Cluster mode makes Redis check every key a script touches against its slot."""
    with statekeel.open(f"{cluster_node.url}?prefix=c") as store:
        _session_workload(store, "support-42", ttl="1h")
        _session_workload(store, "other")
        assert {i.id for i in store.sessions()} == {"support-42", "other"}
        assert len(store.backend.scan("")) > 5  # a registry walk, partition by partition
        store.purge_expired()
        with pytest.raises(ConfigurationError, match="Cluster"):  # documented: one partition per batch
            store.backend.apply([Put("a/x/k", b"1", "json"), Put("b/y/k", b"1", "json")])


def test_every_feature_stays_in_one_slot_per_batch(cluster_node: RedisServer) -> None:
    """Decisions, checkpoints, events, notes and runs, on a node that refuses cross-slot scripts."""
    with statekeel.open(f"{cluster_node.url}?prefix=f") as store:
        s = store.session("s1", ttl="1h")
        s.append("hi", state={"k": 1})
        with s.decide("refund order 991", rationale="late", action="payments.refund(991)"):
            pass
        assert list(store.decisions(incomplete=True)) == []
        cp = s.checkpoint("before-tool")
        s.append("after")
        s.restore(cp)
        assert s.fork(cp, into="s2").history() == ["hi"]
        events = store.events("orders")
        for i in range(5):
            events.append("task_created", {"task_id": i})
        assert events.project(lambda n, e: n + 1, 0, snapshot_every=2) == 5
        s.notes.write("observer", {"issues": []})
        assert store.run("report").step("generate", lambda: "words") == "words"
        store.purge_expired()


def test_the_asyncio_api_stays_in_one_slot_per_batch(cluster_node: RedisServer) -> None:
    """The native asyncio path splits a session's batch the way the sync one does: index ops first,
    each batch in one slot (a cluster node refuses anything else)."""
    import asyncio

    async def main() -> tuple[list[Any], Any, set[str]]:
        async with statekeel.open_async(f"{cluster_node.url}?prefix=a") as store:
            s = await store.session("s1", ttl="1h", user="u-1")
            for i in range(3):
                await s.append({"role": "user", "content": f"q{i}"}, state={"turn": i})
            other = await store.session("s2")
            await other.append("hello")
            return await s.history(last=2), await s.state.get("turn"), {i.id for i in await store.sessions()}

    history, turn, ids = asyncio.run(main())
    assert history == [{"role": "user", "content": "q1"}, {"role": "user", "content": "q2"}]
    assert turn == 2 and ids == {"s1", "s2"}


def test_batches_spanning_partitions_work_on_one_node(url: str) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        # the Expire must also reach the partitions the same batch creates
        b.apply([Put("a/x/k", b"1", "json"), Append("b/y/log", ((b"1", "json"),)),
                 Expire("", time.time() + 60)])  # fmt: skip
        assert b.get("a/x/k").expires_at is not None  # type: ignore[union-attr]
        assert b.log_info("b/y/log").expires_at is not None  # type: ignore[union-attr]


# -- 2. native expiry on every Redis key --------------------------------------------------
def test_every_key_of_a_ttl_session_has_a_ttl(url: str, raw: redis.Redis, prefix: str) -> None:
    with statekeel.open(url) as store:
        for sid in ["s1", "s2"]:
            _session_workload(store, sid, ttl="1h")
        s = store.session("s1")
        s.append("renewed", state={"k": 1})
        store.backend.apply([Trim(keys.join("session", "s1", "history"), 10**6)])  # the list goes away...
        s.append("after a full trim")  # ...and comes back with the log's expiry
    owned = [k for k in _keys(raw, prefix) if k not in (f"{prefix}:statekeel", f"{prefix}:partitions")]
    assert any(":log:" in k for k in owned) and any(":logh:" in k for k in owned)
    assert any(k.endswith(":keys") for k in owned) and any(k.endswith(":exp") for k in owned)
    no_ttl = {k: raw.pttl(k) for k in owned if raw.pttl(k) <= 0}
    assert no_ttl == {}


def test_index_keys_expire_with_their_latest_member(url: str, raw: redis.Redis, prefix: str) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        now = time.time()
        b.apply([Put("p/x/a", b"1", "json", expires_at=now + 50),
                 Put("p/x/b", b"1", "json", expires_at=now + 100)])  # fmt: skip
        index = f"{prefix}:{{p/x}}:keys"
        assert 99_000 < raw.pttl(index) <= 100_001
        b.apply([Put("p/x/c", b"1", "json")])  # a member without expiry: the index must stay
        assert raw.pttl(index) == -1
        b.apply([Expire("p/x/", now + 10)])
        assert 9_000 < raw.pttl(index) <= 10_001 and 0 < raw.pttl(f"{prefix}:{{p/x}}:kv:p/x/c") <= 10_001
        b.apply([Expire("p/x/", None)])
        assert raw.pttl(index) == -1 and raw.pttl(f"{prefix}:{{p/x}}:kv:p/x/c") == -1


def test_purge_cleans_indexes_and_registry_then_a_write_registers_again(
    url: str, raw: redis.Redis, prefix: str
) -> None:
    with statekeel.open(url) as store:
        s = store.session("brief", ttl=1)  # long enough for the append on a loaded machine
        s.append("hi", state={"k": 1})
        store.app.put("keep", 1)
        store.backend.apply([Put("k/x/gone", b"1", "json", expires_at=time.time() + 0.2),
                             Put("k/x/stays", b"1", "json")])  # fmt: skip
        time.sleep(1.2)
        assert store.purge_expired(batch=2) >= 1  # k/x/gone's index entries (its partition's index lives on)
        assert store.backend.purge_expired() == 0
        members = {m.decode() for m in raw.zrange(f"{prefix}:partitions", 0, -1)}
        assert members == {"app/_", "app/_/", "k/x", "k/x/"}  # the session's partitions are gone
        assert raw.zrange(f"{prefix}:{{k/x}}:keys", 0, -1) == [b"k/x/stays"]
        assert _keys(raw, f"{prefix}:{{session/brief}}") == []
        # this handle remembers registering session/brief; the script tells it the partition is new
        again = store.session("brief", ttl=60)
        again.append("back")
        assert "session/brief/meta" in [r.key for r in store.backend.scan("session/")]
        assert [i.log for i in store.backend.scan_logs("")] == ["session/brief/history"]


def test_scan_skips_and_cleans_members_whose_key_vanished(url: str, raw: redis.Redis, prefix: str) -> None:
    with statekeel.open(url) as store:
        for k in "abc":
            store.app.put(k, k)
        raw.delete(f"{prefix}:{{app/_}}:kv:app/_/state/b")  # as if Redis had expired it
        assert list(store.app.keys()) == ["a", "c"]
        assert raw.zrange(f"{prefix}:{{app/_}}:keys", 0, -1) == [b"app/_/state/a", b"app/_/state/c"]


# -- 3. key order across partitions --------------------------------------------------------
ADVERSARIAL_KEYS = [
    "a", "a/b", "a/b/c", "a/b!/x", "a/b%2F/x", "a/b-2/x", "a/b/c/d", "a/bc/x", "a/a/x", "ab/c/d",
    "a/b/ ", "b", "b/", "b//x", "a/日本/x", "a/b\x7f/x", "c/d/e",
]  # fmt: skip


def test_scans_match_the_memory_backend_in_order_and_pages(url: str) -> None:
    mem = MemoryBackend()
    with statekeel.open(url) as store:
        for backend in (store.backend, mem):
            backend.apply([Put(k, k.encode(), "json") for k in reversed(ADVERSARIAL_KEYS)])
            backend.apply([Append(k + "/log", ((b"1", "json"),)) for k in ADVERSARIAL_KEYS[:6]])
        for prefix in ["", "a", "a/", "a/b", "a/b/", "a/b!", "b", "zz"]:
            for limit in (1, 3, 100):
                want = _all_pages(mem, prefix, limit)
                assert _all_pages(store.backend, prefix, limit) == want, (prefix, limit)
            want = [i.log for i in mem.scan_logs(prefix)]
            assert [i.log for i in store.backend.scan_logs(prefix)] == want, prefix


def _all_pages(backend: Any, prefix: str, limit: int) -> list[str]:
    seen, after = [], None
    while page := backend.scan(prefix, after=after, limit=limit):
        seen += [r.key for r in page]
        after = page[-1].key
    return seen


# -- 4. logs as lists -----------------------------------------------------------------------
def test_imported_gaps_rewrite_and_trim(url: str) -> None:
    mem = MemoryBackend()
    entries = tuple(Entry("l/x/log", seq, str(seq).encode(), "json", 1000.0 + seq) for seq in (3, 4, 7, 8))
    with statekeel.open(url) as store:
        results = []
        for b in (store.backend, mem):
            ops = [LoadEntries("l/x/log", entries), Rewrite("l/x/log", 7, b"seven", "x|y"),
                   Rewrite("l/x/log", 5, b"gap", "json"), Trim("l/x/log", 8),
                   Append("l/x/log", ((b"9", "json"),))]  # fmt: skip
            got = [b.apply([op])[0] for op in ops]
            tail = b.read("l/x/log", limit=1, reverse=True)
            results.append((got, b.read("l/x/log"), b.log_info("l/x/log"), tail))
        redis_side, memory_side = results
        assert redis_side[0] == memory_side[0] == [4, True, False, 3, 9]
        assert [(e.seq, e.data, e.codec) for e in redis_side[1]] == [(8, b"8", "json"), (9, b"9", "json")]
        assert redis_side[1][0] == memory_side[1][0]
        assert redis_side[2] is not None and memory_side[2] is not None
        assert redis_side[2].first_seq == memory_side[2].first_seq == 8
        assert redis_side[3][0].seq == 9


def test_tail_read_walks_from_the_end(url: str, raw: redis.Redis) -> None:
    with statekeel.open(url) as store:
        s = store.session("long")
        for chunk in range(20):
            s.append(*range(chunk * 1000, chunk * 1000 + 1000))
        raw.config_resetstat()
        assert s.history(last=3) == [19_997, 19_998, 19_999]
        stats = raw.info("commandstats")  # one round trip: READ_TAIL, with the session's view record
        assert stats["cmdstat_evalsha"]["calls"] == 1 and stats["cmdstat_lrange"]["calls"] == 1
        assert "cmdstat_exec" not in stats and "cmdstat_llen" not in stats  # LRANGE -3 -1 alone: O(3)


# -- 5. eight processes, compare-and-set ---------------------------------------------------
def _increment(url: str, n: int) -> int:
    with statekeel.open(url) as store:
        for _ in range(n):
            store.app.update("n", lambda v: v + 1, default=0)
        return int(store.stats["cas_retries"])


@pytest.mark.slow
def test_eight_processes_times_500_increments(url: str) -> None:
    statekeel.open(url).close()
    with mp.get_context("spawn").Pool(8) as pool:
        retries = pool.starmap(_increment, [(url, 500)] * 8)
    with statekeel.open(url) as store:
        assert store.app.get("n") == 4000
        assert store.app.item("n").version == 4000  # type: ignore[union-attr]
    print(f"\nredis: 4000 increments by 8 processes, {sum(retries)} compare-and-set retries "
          f"({sum(retries) / 4000:.2f} per increment)")  # fmt: skip


# -- 6. kill -9 mid-stream -------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_acknowledged_append(server: RedisServer, url: str) -> None:
    store = statekeel.open(url)
    s = store.session("stream")
    returned: list[tuple[int, int]] = []
    failures = Counter[str]()
    halfway = threading.Event()

    def writer() -> None:
        for i in range(300):
            for attempt in itertools.count():
                try:
                    s.append({"i": i, "attempt": attempt})
                except UnavailableError as exc:
                    assert "retry" in str(exc)
                    failures["unavailable"] += 1
                    time.sleep(0.02)
                    continue
                returned.append((i, attempt))
                break
            if i == 100:
                halfway.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert halfway.wait(30)
    server.kill()  # SIGKILL: no shutdown, no final fsync
    time.sleep(0.3)
    server.start()  # replays the AOF on the same port
    thread.join(60)
    assert not thread.is_alive()
    messages = s.messages()
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))  # no gaps, no reuse
    stored = Counter((m.value["i"], m.value["attempt"]) for m in messages)
    assert all(stored[r] == 1 for r in returned), "an acknowledged append is missing or doubled"
    assert max(stored.values()) == 1
    assert [i for i, _ in returned] == list(range(300))
    assert failures["unavailable"] >= 1, "the kill did not hit the stream"
    assert s.append("still works without reopening") == len(messages) + 1
    store.close()


def test_unreachable_server_raises_unavailable_with_retry_advice() -> None:
    with pytest.raises(UnavailableError, match="retry"):
        statekeel.open(f"redis://127.0.0.1:{free_port()}/0?timeout=2")


def test_scripts_come_back_after_script_flush(url: str, raw: redis.Redis) -> None:
    with statekeel.open(url) as store:
        store.session("s").append("one")
        raw.script_flush()
        store.session("s").append("two")
        raw.script_flush()
        assert store.session("s").history() == ["one", "two"]


# -- 7. prefixes and the layout marker --------------------------------------------------------
def test_prefixes_isolate_stores_on_one_server(server: RedisServer, raw: redis.Redis) -> None:
    a = statekeel.open(f"{server.url}?prefix=iso-a")
    b = statekeel.open(f"{server.url}?prefix=iso-b")
    a.app.put("k", "a")
    b.app.put("k", "b")
    a.session("s").append("in a")
    b.session("s", ttl=1).append("in b")
    assert (a.app.get("k"), b.app.get("k")) == ("a", "b")
    assert a.session("s").history() == ["in a"]
    time.sleep(1.1)
    b.purge_expired()
    assert a.session("s").history() == ["in a"] and [i.id for i in a.sessions()] == ["s"]
    assert [r.key for r in b.backend.scan("")] == ["app/_/state/k"]
    assert all(k.startswith(("iso-a:", "iso-b:")) for k in _keys(raw, "iso-?"))
    a.close()
    b.close()
    with pytest.raises(ConfigurationError, match="prefix"):
        statekeel.open(f"{server.url}?prefix=bad{{tag}}")


def test_a_newer_layout_recorded_while_this_one_migrated_is_never_set_back(
    server: RedisServer, raw: redis.Redis, prefix: str
) -> None:
    """migrate() read layout 0 (an empty store); before it recorded its own, a newer statekeel
    recorded 99. The marker keeps 99 and this one refuses the store, naming the upgrade."""
    with statekeel.open(f"{server.url}?prefix={prefix}", migrate=False) as store:
        backend = store.backend
        raw.hset(f"{prefix}:statekeel", "layout", 99)
        backend._layout_version = lambda: 0  # type: ignore[method-assign]  # what it read before the race
        with pytest.raises(SchemaTooNewError, match="upgrade"):
            backend.migrate()
    assert raw.hget(f"{prefix}:statekeel", "layout") == b"99"


def test_layout_marker_and_foreign_data(server: RedisServer, raw: redis.Redis, prefix: str) -> None:
    url = f"{server.url}?prefix={prefix}"
    with statekeel.open(url, migrate=False) as store:
        status = store.backend.migrate(check=True)
        assert (status.current, status.target, len(status.pending)) == (0, 2, 2)
    assert _keys(raw, prefix) == []  # check=True wrote nothing
    with statekeel.open(url) as store:
        assert store.backend.migrate(check=True).up_to_date
    with statekeel.open(f"{url}w", migrate=False) as store:  # written before any migrate()
        store.app.put("k", 1)
    with statekeel.open(f"{url}w") as store:
        assert store.app.get("k") == 1 and store.backend.migrate(check=True).up_to_date
    raw.hset(f"{prefix}:statekeel", "layout", 99)
    with pytest.raises(SchemaTooNewError, match="upgrade"):
        statekeel.open(url)
    raw.set(f"{prefix}x:unrelated", "someone else's")
    with pytest.raises(NotAStoreError, match="prefix"):
        statekeel.open(f"{server.url}?prefix={prefix}x")
    raw.set(f"{prefix}y:statekeel", "not a hash")
    with pytest.raises(NotAStoreError):
        statekeel.open(f"{server.url}?prefix={prefix}y")


def test_timestamps_and_expiry_round_trip_exactly(url: str) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        exp = time.time() + 123.456789
        rec = b.apply([Put("k/x/a", b"1", "json", expires_at=exp)])[0]
        got = b.get("k/x/a")
        assert got == rec and got is not None and got.expires_at == exp
        b.apply([Append("k/x/log", ((b"1", "json"),), expires_at=KEEP)])
        entry = b.read("k/x/log")[0]
        info = b.log_info("k/x/log")
        assert info is not None and entry.created_at == info.created_at == info.updated_at
