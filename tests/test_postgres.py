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
import multiprocessing as mp
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
import pytest
from conftest import missing, running

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
from statekeel.backends.postgres import PostgresBackend, map_error
from statekeel.backends.postgres.config import dsn
from statekeel.backends.postgres.migrations import MIGRATIONS
from statekeel.protocol import (
    ANY,
    KEEP,
    Append,
    Delete,
    Entry,
    Expire,
    Load,
    LoadEntries,
    LogInfo,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
    keys,
)
from statekeel.testing.servers import DEFAULT_PG_USER, PostgresServer, find_binary, free_port


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the module; every test works in its own schema."""
    # deadlocks are detected after deadlock_timeout: keep the retry test short
    yield from running(PostgresServer(settings={"deadlock_timeout": "100ms"}))


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


@pytest.fixture(scope="module")
def pgbouncer(server: PostgresServer) -> Iterator[str]:
    """PgBouncer in transaction mode in front of the server; its URL (skipped when not installed)."""
    binary = find_binary("pgbouncer", ["/usr/sbin", "/usr/local/sbin"])
    if binary is None:
        missing("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    # not under pytest's private tmp: the account PgBouncer runs as must reach it
    folder, port = Path(tempfile.mkdtemp(prefix="statekeel-pgbouncer-", dir="/tmp")), free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\npostgres = host=127.0.0.1 port={server.port} dbname=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder}/users.txt\npool_mode = transaction\n"
        f"logfile = {folder}/pgbouncer.log\nignore_startup_parameters = extra_float_digits\n"
    )
    account = pwd.getpwnam(DEFAULT_PG_USER) if os.geteuid() == 0 else None  # it refuses to run as root
    if account is not None:
        for path in (folder, *folder.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
    out = (folder / "out.txt").open("wb")
    proc = subprocess.Popen(
        [binary, str(folder / "pgbouncer.ini")], stdout=out, stderr=subprocess.STDOUT,
        user=account.pw_uid if account else None, group=account.pw_gid if account else None,
    )  # fmt: skip
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            time.sleep(0.05)
    if proc.poll() is not None or time.monotonic() >= deadline:
        proc.kill()
        out.close()
        missing(f"pgbouncer did not start: {(folder / 'out.txt').read_text()[-500:]}")
    yield url
    proc.terminate()
    proc.wait(10)
    out.close()
    shutil.rmtree(folder, ignore_errors=True)


def _tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])
    return sorted(r[0] for r in rows)


# -- URLs and schemas -----------------------------------------------------------
def test_url_options_are_stripped_and_the_password_redacted() -> None:
    parsed = parse("postgresql://u:secret@db:5432/app?schema=x&pool_max=3&timeout=2&prepare=off&sslmode=disable")
    assert dsn(parsed) == "postgresql://u:secret@db:5432/app?sslmode=disable"
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
        assert (status.current, status.target, status.up_to_date) == (0, len(MIGRATIONS), False)
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


def test_roles_given_only_a_schema_can_migrate_it_and_readers_can_check(
    server: PostgresServer, schema: str, sql: Any
) -> None:
    owner, reader = f"{schema}_owner", f"{schema}_reader"
    sql.execute(f'CREATE ROLE "{owner}" LOGIN; CREATE ROLE "{reader}" LOGIN')
    sql.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"')  # no CREATE on the database
    as_owner = f"postgresql://{owner}@127.0.0.1:{server.port}/postgres?schema={schema}"
    with statekeel.open(as_owner) as store:
        store.app.put("k", 1)
    sql.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{reader}";'
                f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{reader}"')  # fmt: skip
    as_reader = f"postgresql://{reader}@127.0.0.1:{server.port}/postgres?schema={schema}"
    with statekeel.open(as_reader, migrate=False) as store:
        assert store.backend.migrate(check=True).up_to_date
        assert store.app.get("k") == 1
        with pytest.raises(ConfigurationError, match="privilege"):
            store.app.put("k", 2)


def test_handles_opening_a_new_schema_at_once_migrate_it_once(url: str, schema: str, sql: Any) -> None:
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
    versions = sql.execute(f'SELECT version FROM "{schema}".statekeel_schema ORDER BY version').fetchall()
    assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_through_pgbouncer_in_transaction_mode(pgbouncer: str, schema: str) -> None:
    url = f"{pgbouncer}?schema={schema}&prepare=off&pool_min=0&pool_max=3"
    with statekeel.open(url) as store:  # the migration itself goes through PgBouncer
        s = store.session("s")
        for i in range(10):
            s.append({"i": i}, state={"n": i})
        with pytest.raises(ConflictError):
            store.app.put("k", 1, expect=3)
        with s.batch() as b:  # touches one row twice: the pipelined path
            b.put("x", 1)
            b.put("x", 2)
        assert [m["i"] for m in s.history(last=3)] == [7, 8, 9] and s.state.get("x") == 2
        assert store.backend.migrate(check=True).up_to_date


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
    # a plain chat message is stored short: the role in the codec, the content's bytes in data
    messages = sql.execute(f"SELECT codec, convert_from(data, 'UTF8') FROM \"{schema}\".sk_entries").fetchall()
    assert messages == [("msg:user", "hi")]
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


# -- same behaviour as memory:// ----------------------------------------------------
_KEYS = ["a/1", "a/2", "a/3", "b/1", "a/1x"]
_LOGS = ["a/l", "a/m", "b/l", "a/1"]
_PAST, _FUTURE = time.time() - 1000, time.time() + 10**6
SEEDS = int(os.environ.get("STATEKEEL_PG_DIFF_SEEDS", "12"))


def _random_op(r: random.Random) -> Any:
    kind = r.choice(["put", "put", "delete", "append", "append", "touch", "expire", "trim", "load",
                     "load_entries", "rewrite"])  # fmt: skip
    data, codec = r.choice([b"1", b'{"x":1}', b"\x00\xff", b"[1,2]"]), r.choice(["json", "tjson1"])
    exp = r.choice([None, _PAST, _FUTURE])
    if kind == "put":
        return Put(r.choice(_KEYS), data, codec, r.choice([ANY, None, 1, 2, 3]), r.choice([exp, KEEP]))
    if kind == "delete":
        return Delete(r.choice(_KEYS), r.choice([ANY, None, 1, 2]))
    if kind == "append":
        return Append(r.choice(_LOGS), tuple((data, codec) for _ in range(r.randint(0, 5))), r.choice([exp, KEEP]))
    if kind == "touch":
        return Touch(r.choice(_KEYS + _LOGS), r.choice([exp, KEEP]))
    if kind == "expire":
        return Expire(r.choice(["a/", "b/", "a/1", ""]), exp)
    if kind == "trim":
        return Trim(r.choice(_LOGS), r.randint(0, 6))
    if kind == "load":
        return Load(Record(r.choice(_KEYS), data, codec, r.randint(1, 5), 1000.0, 2000.0, exp))
    if kind == "load_entries":
        log = r.choice(_LOGS)
        seqs = [r.randint(1, 8) for _ in range(r.randint(0, 4))]
        return LoadEntries(log, tuple(Entry(log, q, data, codec, 1000.0 + q) for q in seqs), exp)
    return Rewrite(r.choice(_LOGS), r.randint(0, 5), data, codec)


def _random_batch(r: random.Random) -> list[Any]:
    ops = [_random_op(r) for _ in range(r.randint(1, 4))]
    if any(getattr(op, "expect", ANY) is not ANY for op in ops):
        # memory checks every compare-and-set against the state before the batch;
        # PostgreSQL (like SQLite) applies in order: keep batches where both agree
        ops = [op for op in ops if isinstance(op, (Put, Delete, Trim, Rewrite))]
        ops = [Put(op.key, op.data, op.codec, op.expect, _FUTURE) if isinstance(op, Put) else op for op in ops]
    return ops


def _normal(x: Any) -> Any:
    """Values compared across backends: clock readings of the call itself become "now"."""
    if isinstance(x, list):
        return [_normal(i) for i in x]
    if isinstance(x, (Record, Entry, LogInfo)):
        return tuple("now" if isinstance(v, float) and _PAST < v < _FUTURE else v for v in astuple(x))
    return x


def _everything(b: Any) -> list[Any]:
    out: list[Any] = [b.get(k, include_expired=i) for k in _KEYS for i in (False, True)]
    out += [b.scan("a/"), b.scan("", after="a/2", limit=3), b.get_many(_KEYS)]
    out += [b.scan_logs("a/"), b.scan_logs("", after="a/l", limit=2)]
    for log in _LOGS:
        out += [b.read(log), b.log_info(log), b.read(log, limit=2, reverse=True), b.read(log, start=2, limit=2)]
    normal: list[Any] = _normal(out)
    return normal


def _outcome(b: Any, ops: list[Any]) -> Any:
    try:
        return _normal(b.apply(ops))
    except ConflictError as exc:
        return ("conflict", exc.key, exc.expected, exc.actual)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_batches_behave_exactly_like_memory(url: str, seed: int) -> None:
    r = random.Random(seed)
    with statekeel.open(url) as pg, statekeel.open(f"memory://pg-diff-{seed}") as mem:
        for step in range(30):
            ops = _random_batch(r)
            assert _outcome(pg.backend, ops) == _outcome(mem.backend, ops), (step, ops)
            assert _everything(pg.backend) == _everything(mem.backend), (step, ops)
        while pg.backend.purge_expired(limit=3) + mem.backend.purge_expired(limit=3):
            pass  # which expired rows go first may differ; what is left may not
        assert _everything(pg.backend) == _everything(mem.backend)


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


def test_batches_locking_rows_in_opposite_orders_never_fail(url: str, sql: Any) -> None:
    deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    before = sql.execute(deadlocks).fetchone()[0]
    with statekeel.open(url) as store:
        b = store.backend
        errors: list[BaseException] = []

        def work(order: tuple[str, str]) -> None:
            try:
                for _ in range(100):
                    b.apply([Put(f"k/x/{order[0]}", b"1", "json"), Put(f"k/x/{order[1]}", b"2", "json")])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(o,)) for o in [("a", "b"), ("b", "a")]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert b.get("k/x/a").version == b.get("k/x/b").version == 200  # type: ignore[union-attr]
    time.sleep(0.6)  # the statistics collector reports with a delay
    print(f"\npostgres: {sql.execute(deadlocks).fetchone()[0] - before} deadlocks detected and retried")


def test_a_batch_chosen_as_deadlock_victim_is_retried(url: str, schema: str, server: PostgresServer) -> None:
    # A waiting session looks for a deadlock once, deadlock_timeout after it began to wait. Only the
    # batch's session may find this one (the other waits 60 s): 5 s after it began to wait — at the
    # default 1 s, a loaded machine once closed the cycle only after the batch's one look, and the
    # other session found it 60 s later and was the victim.
    with statekeel.open(f"{url}&options=-c%20deadlock_timeout%3D5s") as store, psycopg.connect(server.url) as other:
        b = store.backend
        b.apply([Put("k/x/a", b"1", "json"), Put("k/x/b", b"1", "json")])
        lock = f'UPDATE "{schema}".sk_kv SET codec = codec WHERE key = %s'
        other.execute("SET deadlock_timeout = '60s'")
        other.execute(lock, ["k/x/b"])  # holds b
        errors: list[BaseException] = []
        batch = threading.Thread(target=_apply_catching, args=(b, errors))
        batch.start()  # locks a, then waits for b
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
        with psycopg.connect(server.url, autocommit=True) as watcher:
            while watcher.execute(waiting).fetchone() == (0,):
                time.sleep(0.005)
        other.execute(lock, ["k/x/a"])  # closes the cycle; the batch, waiting longer, is the victim
        other.commit()
        batch.join()
        assert errors == []
        assert b.get("k/x/a").version == b.get("k/x/b").version == 2  # type: ignore[union-attr]


def _apply_catching(b: Any, errors: list[BaseException]) -> None:
    try:
        b.apply([Put("k/x/a", b"2", "json"), Put("k/x/b", b"2", "json")])
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_a_conflict_names_the_first_failing_operation_and_writes_nothing(url: str) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        b.apply([Put("k/x/a", b"1", "json"), Put("k/x/b", b"1", "json")])
        with pytest.raises(ConflictError) as info:
            b.apply([Put("k/x/c", b"1", "json"), Put("k/x/a", b"2", "json", expect=5),
                     Put("k/x/b", b"2", "json", expect=None)])  # fmt: skip
        assert (info.value.key, info.value.expected, info.value.actual) == ("k/x/a", 5, 1)
        assert b.get("k/x/c") is None and b.get("k/x/a").data == b"1"  # type: ignore[union-attr]


def test_a_large_batch_runs_as_statements_psycopg_caches_and_stays_one_transaction(url: str) -> None:
    from psycopg import _queries

    from statekeel.backends.postgres import sql as pg_sql
    from statekeel.backends.postgres.plan import Planner

    # psycopg re-converts every execute of a longer statement (~0.3 ms for six puts): if it
    # changes its limits, ours must follow
    assert (pg_sql.CACHED_BYTES, pg_sql.CACHED_PARAMS) == (
        _queries.MAX_CACHED_STATEMENT_LENGTH, _queries.MAX_CACHED_STATEMENT_PARAMS)  # fmt: skip
    ops: list[Any] = [Put(f"k/x/{i}", b'{"v": %d}' % i, "json") for i in range(9)]
    ops += [Append("k/l/a", ((b"1", "json"), (b"2", "json"))), Delete("k/x/gone"), Touch("k/x/0", None)]
    plan = Planner("a_schema", pg_sql.build("a_schema")).batch(ops, False, time.time())
    assert len(plan.stmts) > 1
    for query, params in plan.stmts:
        assert len(query.encode()) <= pg_sql.CACHED_BYTES and len(params) <= pg_sql.CACHED_PARAMS
    with statekeel.open(url) as pg, statekeel.open("memory://pg-large-batch") as mem:
        assert _normal(pg.backend.apply(ops)) == _normal(mem.backend.apply(ops))
        assert _everything(pg.backend) == _everything(mem.backend)
        # a conflict in the last statement: nothing of the first ones is written either
        again = [Put(f"k/x/{i}", b"0", "json", expect=ANY) for i in range(9)] + [Put("k/x/8", b"0", "json", expect=7)]
        with pytest.raises(ConflictError) as info:
            pg.backend.apply(again[:8] + again[9:])
        assert (info.value.key, info.value.expected, info.value.actual) == ("k/x/8", 7, 1)
        assert [r.data if r else None for r in pg.backend.get_many([f"k/x/{i}" for i in range(9)])] == [
            b'{"v": %d}' % i for i in range(9)]  # fmt: skip


# -- faults -----------------------------------------------------------------------------
def test_a_conflict_in_a_pipelined_batch_logs_nothing(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with statekeel.open(url) as store:
        b = store.backend
        for _ in range(20):  # the same key thrice: one statement per op, pipelined
            with pytest.raises(ConflictError):
                b.apply([Put("k/x/a", b"1", "json", expect=5), Put("k/x/a", b"2", "json"),
                         Put("k/x/a", b"3", "json")])  # fmt: skip
        assert b.get("k/x/a") is None
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []


def test_every_driver_error_is_translated() -> None:
    classes: set[type[BaseException]] = {psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed,
                                         psycopg_pool.TooManyRequests}  # fmt: skip
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


def test_a_wrong_database_or_user_is_a_configuration_error(server: PostgresServer) -> None:
    for wrong in [f"postgres@127.0.0.1:{server.port}/no_such_db", f"nobody@127.0.0.1:{server.port}/postgres"]:
        with pytest.raises(ConfigurationError, match="does not exist"):
            statekeel.open(f"postgresql://{wrong}?timeout=2")


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
