"""PostgreSQL storage and reads of issue 15: how a history is stored (short messages in
``bytea``), schema version 4 (no index on ``sk_logs.id``, entries' index at fillfactor 100)
and its migration from version 3, the bulk-checked reload and the batched ``log_info_many``.

Everything runs on the real PostgreSQL server the test session shares, one schema per test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import statekeel
from statekeel import CorruptionError
from statekeel.backends.postgres.migrations import MIGRATIONS, migration_sql
from statekeel.backends.postgres.rows import signed
from statekeel.core import layout
from statekeel.protocol import Append, LogInfo, Put
from statekeel.protocol.integrity import entry_sum
from statekeel.testing.servers import ServerPool

_schemas = itertools.count()


@pytest.fixture
def schema() -> str:
    return f"sk_storage_{next(_schemas)}"


@pytest.fixture
def server_url(statekeel_servers: ServerPool) -> str:
    return statekeel_servers.postgres().url


@pytest.fixture
def url(server_url: str, schema: str) -> str:
    return f"{server_url}?schema={schema}"


@pytest.fixture
def sql(server_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain psycopg connection: how the tests reach under the store."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        yield conn


def _indexes(sql: psycopg.Connection[Any], schema: str, table: str) -> dict[str, list[str] | None]:
    rows = sql.execute(
        "SELECT c.relname, c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = %s AND t.relname = %s", [schema, table],
    ).fetchall()  # fmt: skip
    return {name: options for name, options in rows}


# -- how a history is stored ------------------------------------------------------------
def test_plain_messages_are_stored_as_their_content_in_bytea(url: str, schema: str, sql: Any) -> None:
    with statekeel.open(url) as store:
        s = store.session("s1")
        s.append({"role": "user", "content": "héllo"}, {"role": "assistant", "content": "hi"}, {"k": [1]}, "x")
        assert s.history() == [{"role": "user", "content": "héllo"}, {"role": "assistant", "content": "hi"},
                               {"k": [1]}, "x"]  # fmt: skip
    rows = sql.execute(f'SELECT seq, codec, data, doc::text FROM "{schema}".sk_entries ORDER BY seq').fetchall()
    assert rows == [
        (1, "msg:user", "héllo".encode(), None), (2, "msg:assistant", b"hi", None),
        (3, "json", None, '{"k":[1]}'), (4, "json", None, '"x"'),
    ]  # fmt: skip


def test_a_reload_of_mixed_rows_returns_what_read_returns(url: str) -> None:
    """JSON in ``doc``, short messages and compressed values in ``data``: one bulk check."""
    with statekeel.open(url, compress="zlib") as store:
        s = store.session("mixed")
        s.append({"role": "user", "content": "q"}, {"n": 1}, {"big": "y" * 2000}, {"role": "tool", "content": "r"})
        backend, log = store.backend, layout.history_log("mixed")
        assert backend.read_values(log) == [(e.data, e.codec) for e in backend.read(log)]
        assert [c for _, c in backend.read_values(log)] == ["msg:user", "json", "json+zlib", "msg:tool"]
        assert backend.read_values(log, limit=2, reverse=True) == [(e.data, e.codec) for e in backend.read(log)][2:]
        assert s.history(last=1) == [{"role": "tool", "content": "r"}]


def test_a_damaged_short_message_is_named_by_the_reload(url: str, schema: str, sql: Any) -> None:
    with statekeel.open(url) as store:
        s = store.session("s")
        s.append({"role": "user", "content": "abc"}, {"role": "assistant", "content": "def"})
        sql.execute(f"UPDATE \"{schema}\".sk_entries SET data = 'abd' WHERE seq = 1")
        with pytest.raises(CorruptionError) as caught:
            s.history()
        assert caught.value.seq == 1 and caught.value.key == layout.history_log("s")


# -- schema version 4 and its migration ---------------------------------------------------
def test_a_new_store_has_no_index_on_log_ids_and_a_full_entries_index(url: str, schema: str, sql: Any) -> None:
    with statekeel.open(url):
        pass
    assert set(_indexes(sql, schema, "sk_logs")) == {"sk_logs_name_key", "sk_logs_expiry"}
    assert _indexes(sql, schema, "sk_entries") == {"sk_entries_pkey": ["fillfactor=100"]}


def test_a_version_3_store_migrates_to_4_and_keeps_its_data(url: str, schema: str, sql: Any) -> None:
    for version in range(1, 4):  # the schema as the previous release left it
        for stmt in migration_sql(schema, version):
            sql.execute(stmt)
    log, codec, data = "session/old/history", "json", b'{"role":"user","content":"kept"}'
    sql.execute(f"""INSERT INTO "{schema}".sk_logs (name, first_seq, last_seq, created_at, updated_at)
                    VALUES (%s, 1, 1, 1, 1)""", [log])  # fmt: skip
    sql.execute(f"""INSERT INTO "{schema}".sk_entries (log_id, seq, doc, codec, created_at, checksum)
                    SELECT id, 1, %s, %s, 1, %s FROM "{schema}".sk_logs""",
                [data.decode(), codec, signed(entry_sum(log, codec, data, 1))])
    with statekeel.open(url, migrate=False) as store:
        status = store.backend.migrate(check=True)
        assert (status.current, status.target) == (3, len(MIGRATIONS)) == (3, 4)
        assert any("DROP CONSTRAINT sk_logs_pkey" in s for s in status.pending)
    with statekeel.open(url) as store:
        assert store.backend.migrate(check=True).up_to_date
        assert store.backend.read_values(log) == [(data, codec)]
        store.backend.apply([Append(log, ((b"new", "msg:user"),))])
        store.backend.apply([Put("app/_/state/k", b"1", "json")])
        assert store.backend.read_values(log) == [(data, codec), (b"new", "msg:user")]
        assert store.backend.purge_expired() == 0
    assert "sk_logs_pkey" not in _indexes(sql, schema, "sk_logs")


# -- log_info of many logs in one query ----------------------------------------------------
def test_log_info_many_matches_log_info_one_by_one(url: str) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        b.apply([Append("l/a", ((b"1", "json"), (b"2", "json"))), Append("l/gone", ((b"1", "json"),), expires_at=1.0)])
        logs = ["l/b", "l/a", "l/gone", "l/a", "l/never"]
        assert b.log_info_many(logs) == [b.log_info(log) for log in logs]
        assert [i.last_seq if isinstance(i, LogInfo) else None for i in b.log_info_many(logs)] == [
            None, 2, None, 2, None]  # fmt: skip
        assert b.log_info_many([]) == []


def test_listing_sessions_reads_their_histories_bounds_in_one_query(url: str, monkeypatch: Any) -> None:
    with statekeel.open(url) as store:
        for n in range(5):
            store.session(f"s{n}").append("m" * (n + 1))
        single: list[str] = []
        original = store.backend.log_info  # counts calls; the reads still go to PostgreSQL
        monkeypatch.setattr(store.backend, "log_info", lambda log: single.append(log) or original(log))
        page = store.sessions(limit=3)
        assert [i.id for i in page] == ["s0", "s1", "s2"]
        assert single == []  # the page's bounds came from log_info_many
