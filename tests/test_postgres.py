"""The PostgreSQL backend on a real, throwaway PostgreSQL server.

What the shared conformance suite cannot see: ``?schema=`` isolation,
migrations checked and printed as SQL, foreign and newer schemas refused,
eight processes racing on compare-and-set, a server restart in the middle of
a stream of appends, JSON values queryable with SQL, the read plan, and the
error mapping. No fakes: every test talks to a server started here (skipped
when the PostgreSQL binaries are missing, failed when ``CI`` is set).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
import pytest

import statekeel
from statekeel import (
    ConfigurationError,
    ConflictError,
    NotAStoreError,
    SchemaTooNewError,
    StatekeelError,
    UnavailableError,
    UsageError,
)
from statekeel.backends import parse
from statekeel.backends.postgres import PostgresBackend, _dsn, map_error
from statekeel.protocol import Append, Put, keys
from statekeel.testing.servers import PostgresServer, ServerUnavailable, free_port


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the module; every test works in its own schema."""
    try:
        srv = PostgresServer().start()
    except ServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so a PostgreSQL that cannot start fails the run: {exc}")
        pytest.skip(str(exc))
    yield srv
    srv.stop()


_schemas = itertools.count()


@pytest.fixture
def schema() -> str:
    return f"sk_pg_{next(_schemas)}"


@pytest.fixture
def url(server: PostgresServer, schema: str) -> str:
    return f"{server.url}?schema={schema}"


@pytest.fixture
def sql(server: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    """A plain psycopg connection, for looking at what the backend stored."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        yield conn


def _tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])
    return sorted(r[0] for r in rows)


# -- URLs and schemas -----------------------------------------------------------
def test_url_options_are_stripped_and_the_password_redacted() -> None:
    parsed = parse("postgresql://u:secret@db:5432/app?schema=x&pool_max=3&timeout=2&prepare=off&sslmode=disable")
    assert _dsn(parsed) == "postgresql://u:secret@db:5432/app?sslmode=disable"
    assert "secret" not in parsed.redacted
    for bad in ["schema=", "schema=pg_x", "pool_min=5&pool_max=2", "timeout=0", "timeout=soon", "prepare=maybe"]:
        with pytest.raises(ConfigurationError):
            PostgresBackend(parse(f"postgresql://127.0.0.1:1/x?{bad}"))


def test_schemas_isolate_stores(server: PostgresServer, schema: str) -> None:
    with statekeel.open(f"{server.url}?schema={schema}_a") as a, statekeel.open(
        f"{server.url}?schema={schema}_b"
    ) as b:
        a.app.put("k", "in a")
        b.app.put("k", "in b")
        a.session("s").append("only a")
        assert (a.app.get("k"), b.app.get("k")) == ("in a", "in b")
        assert b.session("s").history() == []
    with statekeel.open(f"{server.url}?schema={schema}_b") as again:
        assert again.app.get("k") == "in b"


def test_a_schema_name_is_quoted_never_interpolated(server: PostgresServer, sql: Any) -> None:
    weird = 'Odd "name"; DROP TABLE x; --'
    with statekeel.open(f"{server.url}?schema={weird}") as store:
        store.app.put("k", 1)
        assert store.app.get("k") == 1
    assert "sk_kv" in _tables(sql, weird)


def test_check_prints_the_pending_sql_and_changes_nothing(url: str, schema: str, sql: Any) -> None:
    with statekeel.open(url, migrate=False) as store:
        status = store.backend.migrate(check=True)
        assert (status.current, status.target, status.up_to_date) == (0, 1, False)
        assert any("CREATE TABLE" in s and f'"{schema}".sk_kv' in s for s in status.pending)
        assert sql.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()[0] == 0
    with sql.transaction():  # what a DBA does with `statekeel migrate --print-sql`
        for stmt in status.pending:
            sql.execute(stmt)
    with statekeel.open(url, migrate=False) as store:
        assert store.backend.migrate(check=True).up_to_date
        store.app.put("k", {"v": 1})
        assert store.app.get("k") == {"v": 1}


def test_the_printed_sql_also_runs_outside_a_transaction(url: str, sql: Any) -> None:
    with statekeel.open(url, migrate=False) as store:
        pending = store.backend.migrate(check=True).pending
    for stmt in pending:  # autocommit: one statement at a time
        sql.execute(stmt)
    with statekeel.open(url, migrate=False) as store:
        assert store.backend.migrate(check=True).up_to_date


def test_a_schema_holding_other_tables_is_not_a_store(url: str, schema: str, sql: Any) -> None:
    sql.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".invoices (id int)')
    with pytest.raises(NotAStoreError, match="invoices"):
        statekeel.open(url)
    assert _tables(sql, schema) == ["invoices"]


def test_a_newer_schema_is_refused(url: str, schema: str, sql: Any) -> None:
    statekeel.open(url).close()
    sql.execute(f'INSERT INTO "{schema}".statekeel_schema (version) VALUES (99)')
    with pytest.raises(SchemaTooNewError, match="upgrade"):
        statekeel.open(url)
    with statekeel.open(url, migrate=False) as store, pytest.raises(SchemaTooNewError):
        store.backend.migrate(check=True)


def test_processes_opening_a_new_schema_at_once_migrate_it_once(url: str, schema: str, sql: Any) -> None:
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            statekeel.open(url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sql.execute(f'SELECT version FROM "{schema}".statekeel_schema').fetchall() == [(1,)]


# -- values -------------------------------------------------------------------------
def test_json_values_are_queryable_with_sql(url: str, schema: str, sql: Any) -> None:
    with statekeel.open(url) as store:
        store.app.put("ticket", {"status": "open", "id": 991})
        store.app.put("nul", {"status": "open", "note": "a\x00b"})  # json can hold it, ->> could not
        store.app.put("when", {"at": time.time(), "tags": {"x"}})  # tjson1: not plain JSON
        store.session("s").append({"role": "user", "content": "hi"})
        assert store.app.get("nul") == {"status": "open", "note": "a\x00b"}
    key = keys.join("app", "_", "state", "ticket")
    status = sql.execute(f"SELECT doc ->> 'status' FROM \"{schema}\".sk_kv WHERE key = %s", [key]).fetchone()
    assert status == ("open",)
    opened = sql.execute(f"SELECT count(*) FROM \"{schema}\".sk_kv WHERE doc ->> 'status' = 'open'").fetchone()
    assert opened == (1,)  # the row with \u0000 is kept as bytes, so the query does not fail on it
    roles = sql.execute(f"SELECT doc ->> 'role' FROM \"{schema}\".sk_entries").fetchall()
    assert roles == [("user",)]
    stored = sql.execute(f"SELECT codec, doc IS NULL FROM \"{schema}\".sk_kv WHERE key LIKE '%%when'").fetchone()
    assert stored[0] == "tjson1" and stored[1] is True


def test_json_text_comes_back_byte_for_byte(url: str) -> None:
    raw = [b'{"b":1,"a":[1.0,2e3],"a":"dup"}', b'"\\u00e9\\u0000 \\ud83d\\ude00"', b"{not json", b"\xff\xfe"]
    with statekeel.open(url) as store:
        b = store.backend
        b.apply([Put(f"k/x/{i}", data, "json") for i, data in enumerate(raw)])
        b.apply([Append("l/x/log", tuple((data, "json") for data in raw))])
        assert [b.get(f"k/x/{i}").data for i in range(len(raw))] == raw  # type: ignore[union-attr]
        assert [e.data for e in b.read("l/x/log")] == raw
        assert list(store.app.put("order", {"z": 1, "a": 2}).value) == ["z", "a"]
        assert list(store.app.get("order")) == ["z", "a"]


# -- reads ----------------------------------------------------------------------------
def test_reading_the_tail_touches_only_the_tail(url: str, schema: str, sql: Any) -> None:
    with statekeel.open(url) as store:
        s = store.session("big")
        for chunk in range(20):
            s.append(*[{"i": chunk * 250 + i} for i in range(250)])
        assert [m["i"] for m in s.history(last=3)] == [4997, 4998, 4999]
        read_sql = store.backend._q.read  # type: ignore[attr-defined]
    log = keys.join("session", "big", "history")
    params = {"log": log, "start": 1, "stop": None, "ahead": None, "behind": 20, "now": time.time()}
    plan = sql.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + read_sql, params).fetchone()[0]
    nodes = _plan_nodes(plan[0]["Plan"])
    scans = [n for n in nodes if n.get("Relation Name") == "sk_entries"]
    assert scans and all(n["Node Type"] == "Index Scan" for n in scans)
    assert sum(n["Actual Rows"] for n in scans) == 20


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


# -- concurrency ----------------------------------------------------------------------
def _increment(url: str, n: int) -> int:
    with statekeel.open(url) as store:
        for _ in range(n):
            store.app.update("n", lambda v: v + 1, default=0)
        return int(store.stats["cas_retries"])


def test_eight_processes_times_500_compare_and_set_increments(url: str) -> None:
    statekeel.open(url).close()
    with mp.get_context("spawn").Pool(8) as pool:
        retries = pool.starmap(_increment, [(url, 500)] * 8)
    with statekeel.open(url) as store:
        assert store.app.get("n") == 4000
    print(f"\npostgres: 4000 increments from 8 processes, {sum(retries)} compare-and-set retries "
          f"({sum(retries) / 4000:.2f} per increment)")  # fmt: skip


def test_batches_locking_rows_in_opposite_orders_never_fail(url: str) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        errors: list[BaseException] = []

        def work(order: tuple[str, str]) -> None:
            try:
                for i in range(150):
                    b.apply([Put(f"k/x/{order[0]}", b"1", "json"), Put(f"k/x/{order[1]}", b"2", "json")])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(o,)) for o in [("a", "b"), ("b", "a")] * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert b.get("k/x/a").version == b.get("k/x/b").version == 600  # type: ignore[union-attr]


def test_a_conflict_names_the_first_failing_operation_and_writes_nothing(url: str) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        b.apply([Put("k/x/a", b"1", "json"), Put("k/x/b", b"1", "json")])
        with pytest.raises(ConflictError) as info:
            b.apply([Put("k/x/c", b"1", "json"), Put("k/x/a", b"2", "json", expect=5),
                     Put("k/x/b", b"2", "json", expect=None)])  # fmt: skip
        assert (info.value.key, info.value.expected, info.value.actual) == ("k/x/a", 5, 1)
        assert b.get("k/x/c") is None and b.get("k/x/a").data == b"1"  # type: ignore[union-attr]


# -- faults -----------------------------------------------------------------------------
def test_every_driver_error_is_translated() -> None:
    classes = {psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed, psycopg_pool.TooManyRequests}
    classes |= {c for c in vars(psycopg.errors).values() if isinstance(c, type) and issubclass(c, psycopg.Error)}
    for cls in classes:
        mapped = map_error(cls("boom"), "postgresql://db")
        assert isinstance(mapped, StatekeelError), cls
    assert isinstance(map_error(psycopg.OperationalError("server closed the connection"), "x"), UnavailableError)
    assert map_error(ValueError("not a driver error"), "x") is None


def test_a_server_that_is_not_there_is_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="retry"):
        statekeel.open(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?timeout=1")
    assert time.monotonic() - started < 10


def test_close_is_idempotent_and_a_closed_store_says_so(url: str) -> None:
    store = statekeel.open(url)
    store.close()
    store.close()
    with pytest.raises(UsageError, match="closed"):
        store.app.get("k")


def test_restart_mid_stream_loses_no_returned_append(server: PostgresServer, url: str) -> None:
    store = statekeel.open(url + "&timeout=20")
    s = store.session("stream")
    returned: list[tuple[int, int]] = []
    failures = 0
    restarter = threading.Timer(0.3, server.restart)
    restarter.start()
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 2.0 or i < 50:
        for attempt in itertools.count():
            try:
                s.append({"i": i, "attempt": attempt})
            except UnavailableError:
                failures += 1
                time.sleep(0.05)
                continue
            returned.append((i, attempt))
            break
        i += 1
    restarter.join()
    assert failures >= 1  # the restart broke the connection the writer held
    stored = Counter((m["i"], m["attempt"]) for m in s.history())
    assert all(stored[r] == 1 for r in returned)
    assert {m["i"] for m in s.history()} == set(range(i))
    assert s.append("after") == len(s)  # the same handle works, no reopening
    store.close()


def test_a_server_down_gives_unavailable_then_the_next_call_reconnects(server: PostgresServer, url: str) -> None:
    with statekeel.open(url + "&timeout=1") as store:
        store.app.put("k", 1)
        server.kill()
        try:
            with pytest.raises(UnavailableError, match="retry"):
                store.app.put("k", 2)
            with pytest.raises(UnavailableError):
                store.app.get("k")
        finally:
            server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                assert store.app.get("k") == 1
                break
            except UnavailableError:
                assert time.monotonic() < deadline, "the store did not reconnect"
                time.sleep(0.2)
        store.app.put("k", 3)
        assert store.app.get("k") == 3
