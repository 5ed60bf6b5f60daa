"""DynamoDB listings cost O(page): Queries only, each asking for its page (issue 15 item 6, issue 17).

On the real client talking to the real local server (moto's, started here), a botocore
hook records every request and how many items each reply carried:

* ``store.sessions()``'s first page is one Query of the session index asking for its page
  (not a 1 MB page of the whole index) and two BatchGetItems — whatever the session count;
* listing memory namespaces, event streams and LangGraph store namespaces — prefixes
  spanning many partitions — merges the Queries of a few fixed item collections instead of
  Scanning the table (tenants' namespaces too);
* a table written with the version-1 layout (those namespaces under ``p<partition>``) is
  migrated on open, and a handle opened with ``migrate=False`` refuses it, naming the command;
  a migration killed halfway is finished by the next open, two openers at once both succeed,
  and a migrator working from a stale Scan page never puts an old copy over a newer write;
* pages merged across the shards are in key order, with nothing repeated or left out when
  items are added or deleted between pages, expired items and other tenants' left out.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

import statekeel
from dynamodb_server import raw, server, table_name, url  # noqa: F401 - fixtures
from statekeel.backends import open_backend
from statekeel.backends.dynamodb import SCHEMA_VERSION, DynamoDBBackend, schema
from statekeel.backends.dynamodb.items import META_KEY
from statekeel.errors import MigrationRequiredError, SchemaTooNewError
from statekeel.features.events import list_streams
from statekeel.core import layout
from statekeel.backends.dynamodb.items import record_key
from statekeel.protocol import Append, Delete, Expire, Load, LoadEntries, Put


class _Sent:
    """Every request a backend's client sends from now on, with the items each reply carried."""

    def __init__(self, store: statekeel.Store) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.items: list[tuple[str, int]] = []
        events = store.storage._table.client.meta.events  # type: ignore[attr-defined]
        events.register("before-parameter-build.dynamodb", self._call)
        events.register("after-call.dynamodb", self._reply)

    def _call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def _reply(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        self.items.append((model.name, int(parsed.get("Count", 0))))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def reset(self) -> None:
        self.calls.clear()
        self.items.clear()


def _sessions(store: statekeel.Store, first: int, count: int) -> None:
    """Sessions ``s<first>``… written as the API writes them: a template session's records
    and history loaded under each new id (Load/LoadEntries, 8 sessions a batch — quick on moto)."""
    store.session("tpl").append("m")
    backend, src = store.storage, layout.session_prefix("tpl")
    records = [*backend.scan(src), backend.get(layout.session_index_key("tpl"))]
    entries = backend.read(layout.history_log("tpl"))
    for lo in range(first, first + count, 8):
        ops: list[Any] = []
        for sid in (f"s{i:04d}" for i in range(lo, min(lo + 8, first + count))):
            for rec in records:
                assert rec is not None
                key = layout.session_index_key(sid) if rec.key.startswith("idx/") else \
                    layout.session_prefix(sid) + rec.key[len(src):]  # fmt: skip
                ops.append(Load(replace(rec, key=key)))
            log = layout.history_log(sid)
            ops.append(LoadEntries(log, tuple(replace(e, log=log) for e in entries)))
        backend.apply(ops)


def test_the_first_page_of_sessions_costs_the_same_requests_and_items_at_any_size(url: str) -> None:
    with statekeel.open(url) as store:
        _sessions(store, 0, 104)
        sent = _Sent(store)
        small = store.sessions()
        at_104, read_104 = sent.names(), sent.items[:]
        _sessions(store, 104, 40)
        sent.reset()
        large = store.sessions()
        assert [s.id for s in small.items] == [s.id for s in large.items] == [f"s{i:04d}" for i in range(50)]
        assert large.next == small.next == "s0049"
        assert sent.names() == at_104 == ["Query", "BatchGetItem", "BatchGetItem"], sent.names()
        queries = [params for name, params in sent.calls if name == "Query"]
        assert queries and all(0 < params.get("Limit", 0) <= 100 for params in queries), queries
        assert sent.items == read_104 and sum(n for name, n in sent.items if name == "Query") <= 100, sent.items
        assert all(s.status == "active" for s in large.items)


def test_listings_across_partitions_of_memory_events_and_the_langgraph_store_are_queries(url: str) -> None:
    with statekeel.open(url) as store:
        for i in range(12):
            store.memory(("user", f"u{i:02d}"), embedder=None).put("k", f"likes tea {i}")
            store.events(f"stream{i:02d}").append("created", {"n": i})
            store.storage.apply([Put(f"lgstore/nns{i:02d}/=item", b"{}", "json")])
        sent = _Sent(store)
        spaces = store.memory_namespaces()
        streams = list_streams(store, limit=5)
        later = list_streams(store, after="stream04", limit=3)
        items = store.storage.scan("lgstore/", limit=4)
        assert spaces == [("user", f"u{i:02d}") for i in range(12)]
        assert streams == [f"stream{i:02d}" for i in range(5)] and later == ["stream05", "stream06", "stream07"]
        assert [r.key for r in items] == [f"lgstore/nns{i:02d}/=item" for i in range(4)]
        assert "Scan" not in sent.names() and set(sent.names()) == {"Query"}, sent.names()
        assert all(0 < params.get("Limit", 0) <= 500 for _, params in sent.calls), sent.calls  # the callers' pages


def test_a_tenants_memory_namespaces_are_listed_by_queries(url: str) -> None:
    with statekeel.open(url) as store:
        acme = store.tenant("acme")
        for i in range(5):
            acme.memory(("team", f"t{i}"), embedder=None).put("k", f"note {i}")
        store.memory(("team", "outside"), embedder=None).put("k", "not acme's")
        sent = _Sent(store)
        assert acme.memory_namespaces() == [("team", f"t{i}") for i in range(5)]
        assert "Scan" not in sent.names(), sent.names()


# -- existing tables: the version-1 layout is migrated --------------------------------------
def _to_version_1(raw: Any, table: str) -> int:
    """Rewrite the table as the version-1 code laid it out: every item of a sharded collection
    (``n<namespace>#<shard>``) back under ``p<partition>``, and the schema item at version 1."""
    items = [i for page in raw.get_paginator("scan").paginate(TableName=table) for i in page["Items"]]
    moved = 0
    for item in items:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        if "#" not in pk or not pk.startswith("n"):
            continue
        name = sk[1:].split("\0", 1)[0]
        part = "/".join(name.split("/", 2)[:2])
        raw.put_item(TableName=table, Item={**item, "pk": {"S": "p" + part}})
        raw.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
        moved += 1
    raw.put_item(TableName=table, Item={**META_KEY, "version": {"N": "1"}})
    return moved


def _write_everything(store: statekeel.Store) -> None:
    store.session("s1").append("hello", "there")
    store.memory(("user", "u1"), embedder=None).put("k", "likes tea")
    store.memory(("user", "u2"), embedder=None).put("k", "likes coffee")
    store.events("orders").append("created", {"id": 7})
    store.tenant("acme").memory(("team", "t"), embedder=None).put("k", "acme's")


def test_a_version_1_table_is_migrated_on_open_and_everything_reads_back(url: str, raw: Any) -> None:
    with statekeel.open(url) as store:
        _write_everything(store)
    assert _to_version_1(raw, table_name(url)) >= 8
    check = open_backend(url, migrate=False)
    status = check.migrate(check=True)
    check.close()
    assert status.current == 1 and status.target == SCHEMA_VERSION == 2 and len(status.pending) == 1
    with statekeel.open(url) as store:
        assert store.session("s1").history() == ["hello", "there"]
        assert store.memory_namespaces() == [("user", "u1"), ("user", "u2")]
        assert [m.value for m in store.memory(("user", "u1"), embedder=None).items()] == ["likes tea"]
        assert [e.data for e in store.events("orders").read()] == [{"id": 7}]
        assert list_streams(store) == ["orders"]
        assert store.tenant("acme").memory_namespaces() == [("team", "t")]
        store.events("orders").append("paid", {"id": 7})
        assert [e.type for e in store.events("orders").read()] == ["created", "paid"]
    left = [i["pk"]["S"] for p in raw.get_paginator("scan").paginate(TableName=table_name(url)) for i in p["Items"]]
    assert not [pk for pk in left if pk.startswith(("pmemory/", "pevents/", "pacme~memory/"))], left


def test_a_handle_opened_without_migrating_refuses_a_version_1_table_naming_the_command(url: str, raw: Any) -> None:
    with statekeel.open(url) as store:
        _write_everything(store)
    _to_version_1(raw, table_name(url))
    backend = open_backend(url, migrate=False)
    with pytest.raises(MigrationRequiredError, match="statekeel migrate"):
        backend.scan("memory/")
    with pytest.raises(MigrationRequiredError, match="statekeel migrate"):
        backend.apply([Put("events/x/meta", b"{}", "json")])
    assert backend.get("session/s1/meta") is not None  # sessions did not move: still readable
    backend.close()
    assert raw.get_item(TableName=table_name(url), Key={"pk": {"S": "pevents/x"}, "sk": {"S": "kevents/x/meta"}}).get(
        "Item") is None  # fmt: skip


# -- the migration is resumable and safe with several migrators -------------------------------
class _Killed(BaseException):
    """A process killed mid-migration (not an Exception: nothing may catch it)."""


def _old_items(raw: Any, table: str) -> list[dict[str, Any]]:
    """The items still under a version-1 ``p<partition>`` of a listed namespace."""
    items = [i for page in raw.get_paginator("scan").paginate(TableName=table) for i in page["Items"]]
    return [i for i in items if i["pk"]["S"].startswith(("pmemory/", "pevents/", "plgstore/", "pacme~"))]


def test_a_migrator_whose_scan_is_stale_neither_overwrites_nor_resurrects_what_was_written_since(
    url: str, raw: Any
) -> None:
    """Two processes open a version-1 table at once: the first moves everything, records version 2
    and its caller writes; the second moves what its (older) Scan page listed. Its moves must not
    put the version-1 copy over the newer value, nor bring back what was deleted since."""
    with statekeel.open(url) as store:
        _write_everything(store)
    _to_version_1(raw, table_name(url))
    stale = _old_items(raw, table_name(url))
    assert stale
    with statekeel.open(url) as store:  # the first migrator, then its writes
        store.memory(("user", "u1"), embedder=None).put("k", "now likes coffee")
        store.memory(("user", "u2"), embedder=None).delete("k")
        store.events("orders").append("paid", {"id": 7})
        backend = store.storage
        assert isinstance(backend, DynamoDBBackend)
        schema._move(backend._table, stale)  # the second migrator's moves, from its stale page
        assert _old_items(raw, table_name(url)) == []
        copies = [i for i in stale if "u1" in i["pk"]["S"] + i["sk"]["S"] and "u2" not in i["pk"]["S"] + i["sk"]["S"]]
        assert copies
        for item in copies:  # a version-1 copy beside its moved item (an older process wrote it meanwhile)
            raw.put_item(TableName=table_name(url), Item=item)
        schema._move(backend._table, copies)  # moved again: the newer item is kept, the stale copy dropped
        assert _old_items(raw, table_name(url)) == []
    with statekeel.open(url) as store:
        assert [m.value for m in store.memory(("user", "u1"), embedder=None).items()] == ["now likes coffee"]
        assert [m.value for m in store.memory(("user", "u2"), embedder=None).items()] == []
        assert [e.type for e in store.events("orders").read()] == ["created", "paid"]


def test_a_migration_killed_halfway_is_finished_by_the_next_open_and_nothing_is_lost(url: str, raw: Any) -> None:
    with statekeel.open(url) as store:
        _write_everything(store)
        for i in range(30):  # more than one move transaction
            store.memory(("user", f"v{i:02d}"), embedder=None).put("k", f"note {i}")
    _to_version_1(raw, table_name(url))
    before = len(_old_items(raw, table_name(url)))
    backend = open_backend(url, migrate=False)
    assert isinstance(backend, DynamoDBBackend)
    commits = itertools.count()

    def kill_at_the_second(**_: Any) -> None:
        if next(commits) == 1:
            raise _Killed

    backend._table.client.meta.events.register("before-call.dynamodb.TransactWriteItems", kill_at_the_second)
    with pytest.raises(_Killed):
        backend.migrate()
    backend.close()
    assert 0 < len(_old_items(raw, table_name(url))) < before  # half moved: version 1 still recorded
    with statekeel.open(url, migrate=False) as store, pytest.raises(MigrationRequiredError):
        store.memory_namespaces()  # version 1 is still recorded: a handle that does not migrate refuses
    with statekeel.open(url) as store:
        expected = [("user", "u1"), ("user", "u2"), *(("user", f"v{i:02d}") for i in range(30))]
        assert store.memory_namespaces() == expected
        assert [m.value for m in store.memory(("user", "v29"), embedder=None).items()] == ["note 29"]
        assert [e.data for e in store.events("orders").read()] == [{"id": 7}]
        assert store.tenant("acme").memory_namespaces() == [("team", "t")]
    assert _old_items(raw, table_name(url)) == []


def test_two_handles_opening_a_version_1_table_at_once_both_migrate_it_and_list_everything(url: str, raw: Any) -> None:
    with statekeel.open(url) as store:
        _write_everything(store)
        for i in range(30):
            store.memory(("user", f"v{i:02d}"), embedder=None).put("k", f"note {i}")
    _to_version_1(raw, table_name(url))
    barrier = threading.Barrier(2)

    def open_and_list() -> list[tuple[str, ...]]:
        barrier.wait()
        with statekeel.open(url) as store:
            return store.memory_namespaces()

    with ThreadPoolExecutor(2) as pool:
        listed = [f.result() for f in [pool.submit(open_and_list) for _ in range(2)]]
    expected = [("user", "u1"), ("user", "u2")] + [("user", f"v{i:02d}") for i in range(30)]
    assert listed == [expected, expected]
    assert _old_items(raw, table_name(url)) == []


# -- a newer schema is refused and never set back ---------------------------------------------
def _recorded_version(raw: Any, table: str) -> int:
    return int(raw.get_item(TableName=table, Key=META_KEY, ConsistentRead=True)["Item"]["version"]["N"])


def test_a_table_at_a_newer_schema_version_is_refused_naming_the_upgrade_and_left_as_it_is(
    url: str, raw: Any
) -> None:
    with statekeel.open(url) as store:
        _write_everything(store)
    newer = {**META_KEY, "version": {"N": str(SCHEMA_VERSION + 1)}}
    raw.put_item(TableName=table_name(url), Item=newer)
    for attempt in (lambda: statekeel.open(url), lambda: open_backend(url, migrate=False).migrate(check=True)):
        with pytest.raises(SchemaTooNewError, match="upgrade the statekeel package"):
            attempt()
    assert raw.get_item(TableName=table_name(url), Key=META_KEY)["Item"] == newer


def _migrate_while_another_records(url: str, raw: Any, version: int) -> Any:
    """Migrate a version-1 table with a handle opened without migrating, while another migrator
    records ``version`` between this one's moves and its own record of the version."""
    with statekeel.open(url) as store:
        _write_everything(store)
    _to_version_1(raw, table_name(url))
    backend = open_backend(url, migrate=False)
    assert isinstance(backend, DynamoDBBackend)

    def the_other_records_first(params: dict[str, Any], **_: Any) -> None:
        if params.get("Item", {}).get("sk") == META_KEY["sk"]:
            raw.put_item(TableName=table_name(url), Item={**META_KEY, "version": {"N": str(version)}})

    backend._table.client.meta.events.register("before-parameter-build.dynamodb.PutItem", the_other_records_first)
    try:
        return backend.migrate()
    finally:
        backend.close()


def test_a_newer_migrator_racing_this_one_is_never_set_back(url: str, raw: Any) -> None:
    """A newer statekeel (version 3) records its version while this one moves items: this one's
    record of version 2 must not overwrite it, and it refuses the table."""
    with pytest.raises(SchemaTooNewError, match="upgrade the statekeel package"):
        _migrate_while_another_records(url, raw, SCHEMA_VERSION + 1)
    assert _recorded_version(raw, table_name(url)) == SCHEMA_VERSION + 1


def test_a_migrator_of_the_same_version_racing_this_one_leaves_both_succeeding(url: str, raw: Any) -> None:
    assert _migrate_while_another_records(url, raw, SCHEMA_VERSION).up_to_date
    assert _recorded_version(raw, table_name(url)) == SCHEMA_VERSION
    with statekeel.open(url) as store:
        assert store.memory_namespaces() == [("user", "u1"), ("user", "u2")]


# -- pages across the shards ----------------------------------------------------------------
def _walk(page: Any, between: Any = None, limit: int = 3) -> list[str]:
    """Every name a listing returns, ``limit`` a page, following ``after``; ``between(n)`` runs
    after page ``n``."""
    out: list[str] = []
    after: str | None = None
    for n in itertools.count():
        names = page(after, limit)
        out += names
        if len(names) < limit:
            return out
        after = names[-1]
        if between is not None:
            between(n)
    raise AssertionError("unreachable")


def test_pages_across_the_shards_are_ordered_complete_and_skip_expired_deleted_and_other_tenants(url: str) -> None:
    backend = open_backend(url)
    try:
        names = [f"memory/n{chr(97 + i % 20)}{i:02d}/=k" for i in range(40)]  # 40 partitions: every shard
        backend.apply([Put(key, b"{}", "json") for key in names[:20]])
        backend.apply([Put(key, b"{}", "json") for key in names[20:]])
        backend.apply([Put("memory/nzz/=gone", b"{}", "json", expires_at=2.0)], now=1.0)  # expired at once
        backend.apply([Put("acme~memory/nb00/=k", b"{}", "json"), Put("session/x/meta", b"{}", "json")])
        shards = {str(record_key(key)["pk"]["S"]) for key in names}
        assert len(shards) == 4, shards
        keys = _walk(lambda after, limit: [r.key for r in backend.scan("memory/", after=after, limit=limit)])
        assert keys == sorted(names)
        deleted, added = sorted(names)[10], ["memory/na99/=k", "memory/nzy/=k", "memory/nb00/=j"]  # 1 ahead, 2 behind

        def change(n: int) -> None:  # after the first page (na00, na20, nb01): delete one ahead, add
            if n == 0:
                backend.apply([Delete(deleted), *(Put(key, b"{}", "json") for key in added)])

        keys = _walk(lambda after, limit: [r.key for r in backend.scan("memory/", after=after, limit=limit)], change)
        assert keys == sorted({*names, "memory/nzy/=k"} - {deleted})  # those added behind the cursor come later
        assert [r.key for r in backend.scan("acme~memory/")] == ["acme~memory/nb00/=k"]  # and not in memory/
        backend.apply([Append(f"events/s{i:02d}/log", ((b"{}", "json"),)) for i in range(9)])
        backend.apply([Append("events/old/log", ((b"{}", "json"),)), Expire("events/old/", 2.0)], now=1.0)
        logs = _walk(lambda after, limit: [i.log for i in backend.scan_logs("events/", after=after, limit=limit)])
        assert logs == [f"events/s{i:02d}/log" for i in range(9)]
    finally:
        backend.close()
