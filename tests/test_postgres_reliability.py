"""PostgreSQL reliability (issue 10) on a real, throwaway server: per-record checksums,
URL options refused by name, and integers PostgreSQL cannot hold refused as bad input.

Damage is done the way it happens — bytes changed under the store, with plain
SQL through psycopg — and every test checks that the store names the damaged
record instead of returning it, and that nothing the failed call touched changed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from click.testing import CliRunner

import statekeel
from conftest import running
from statekeel import ConfigurationError, CorruptionError, InvalidInputError
from statekeel.backends import parse
from statekeel.backends.postgres import PostgresBackend, tenant_setting
from statekeel.backends.postgres.migrations import migration_sql
from statekeel.cli import main
from statekeel.protocol import ANY, Append, Delete, Entry, Load, LoadEntries, Put, Record, Rewrite, Trim
from statekeel.protocol.integrity import entry_sum, record_sum
from statekeel.testing.servers import PostgresServer


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the module; every test works in its own schema."""
    yield from running(PostgresServer())


_schemas = itertools.count()
_CHECKSUMS = 3
"""The schema version that added the checksum columns."""


@pytest.fixture
def schema() -> str:
    return f"sk_rel_{next(_schemas)}"


@pytest.fixture
def url(server: PostgresServer, schema: str) -> str:
    return f"{server.url}?schema={schema}"


@pytest.fixture
def sql(server: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    """A plain psycopg connection: how the tests reach under the store."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def backend(url: str) -> Iterator[PostgresBackend]:
    b = PostgresBackend(parse(url))
    yield b
    b.close()


def _unsigned(stored: int | None) -> int | None:
    return None if stored is None else stored & 0xFFFFFFFF


def _doctor(url: str) -> Any:
    return CliRunner().invoke(main, ["doctor", url])


# -- every write path stores the checksum ------------------------------------------
def test_every_write_path_stores_a_checksum_that_matches(backend: PostgresBackend, schema: str, sql: Any) -> None:
    b = backend
    b.apply([Put("k/any", b'{"a": 1}', "json")])
    b.apply([Put("k/any", b'{"a": 2}', "json", expect=1)])  # put_version: version 2
    b.apply([Put("k/new", b"\x00\xffbytes", "bin", expect=None)])  # bytea, create-only
    b.apply([Put("k/dead", b"1", "json", expires_at=1.0)])  # expired at once: the next put is version 1
    b.apply([Put("k/dead", b"2", "json")])
    b.apply([Load(Record("k/loaded", b'"copied"', "json", 7, 1.0, 2.0, None))])
    b.apply([Append("l/short", ((b'"m1"', "json"), (b"\x01", "bin")))])  # scalar VALUES path
    b.apply([Append("l/long", tuple((f'"e{i}"'.encode(), "json") for i in range(9)))])  # array path
    b.apply([Append("l/short", ((b'"m3"', "json"),)), Put("k/any", b"3", "json")])  # one statement
    entries = tuple(Entry("l/loaded", s, f'"x{s}"'.encode(), "json", 1.0) for s in (4, 5, 6))
    b.apply([LoadEntries("l/loaded", entries)])
    b.apply([Rewrite("l/long", 3, b'"rewritten"', "json")])
    b.apply([Put("k/pipelined", b"1", "json"), Put("k/pipelined", b"2", "json")])  # same row: pipeline

    kv = sql.execute(f'SELECT key, coalesce(data, convert_to(doc::text, \'UTF8\')), codec, version, checksum'
                     f' FROM "{schema}".sk_kv').fetchall()  # fmt: skip
    assert len(kv) == 5
    for key, data, codec, version, stored in kv:
        assert _unsigned(stored) == record_sum(key, codec, bytes(data), version), key
    assert {k: v for k, _, _, v, _ in kv} == {"k/any": 3, "k/new": 1, "k/dead": 1, "k/loaded": 7, "k/pipelined": 2}
    entries_rows = sql.execute(
        f"SELECT l.name, e.seq, coalesce(e.data, convert_to(e.doc::text, 'UTF8')), e.codec, e.checksum"
        f' FROM "{schema}".sk_entries e JOIN "{schema}".sk_logs l ON l.id = e.log_id'
    ).fetchall()
    assert len(entries_rows) == 3 + 9 + 3
    for log, seq, data, codec, stored in entries_rows:
        assert _unsigned(stored) == entry_sum(log, codec, bytes(data), seq), (log, seq)
    # and every read path verifies them without complaint
    assert [r.key for r in b.scan("k/")] == ["k/any", "k/dead", "k/loaded", "k/new", "k/pipelined"]
    assert len(b.read("l/long")) == 9 and b.read_values("l/short")[-1] == (b'"m3"', "json")


# -- damage is detected, named, and listed by doctor ------------------------------------
_DAMAGE = {
    "a digit of the value": "doc = replace(doc::text, '41', '42')::json",
    "the version": "version = version + 1",
    "the codec": "codec = 'json+zlib'",
}


@pytest.mark.parametrize("damage", list(_DAMAGE))
def test_a_damaged_record_raises_corruption_naming_it(url: str, schema: str, sql: Any, damage: str) -> None:
    with statekeel.open(url) as store:
        store.app.put("ticket", {"id": 41, "status": "open"})
        store.app.put("other", {"fine": True})
        key = next(r.key for r in store.backend.scan("") if r.key.endswith("ticket"))
        assert sql.execute(f'UPDATE "{schema}".sk_kv SET {_DAMAGE[damage]} WHERE key = %s', [key]).rowcount == 1
        before = sql.execute(f'SELECT * FROM "{schema}".sk_kv ORDER BY key').fetchall()
        for read in (lambda: store.app.get("ticket"), lambda: store.backend.get(key),
                     lambda: store.backend.get_many([key]), lambda: store.backend.scan("")):  # fmt: skip
            with pytest.raises(CorruptionError, match="damaged") as caught:
                read()
            assert caught.value.key == key and caught.value.seq is None
        with pytest.raises(CorruptionError):  # a compare-and-set update reads first: refused, nothing written
            store.app.update("ticket", lambda t: {**t, "status": "closed"})
        assert store.app.get("other") == {"fine": True}
        assert sql.execute(f'SELECT * FROM "{schema}".sk_kv ORDER BY key').fetchall() == before
    result = _doctor(url)
    assert result.exit_code == 1, result.output
    assert "ticket" in result.output and "Traceback" not in result.output


_ENTRY_DAMAGE = {  # what to run (on the log's entries), and the seq then found damaged
    "a character of the value": (["UPDATE {e} SET doc = replace(doc::text, 'late', 'lat3')::json WHERE seq = 2"], 2),
    "the codec": (["UPDATE {e} SET codec = 'bin' WHERE seq = 2"], 2),
    "the seq": (["DELETE FROM {e} WHERE seq = 3", "UPDATE {e} SET seq = 3 WHERE seq = 2"], 3),
}


@pytest.mark.parametrize("damage", list(_ENTRY_DAMAGE))
def test_a_damaged_log_entry_raises_corruption_naming_it(url: str, schema: str, sql: Any, damage: str) -> None:
    statements, damaged = _ENTRY_DAMAGE[damage]
    with statekeel.open(url) as store:
        s = store.session("support-42")
        s.append("hello", "My order is late", "sorry")
        (log,) = [r[0] for r in sql.execute(f'SELECT name FROM "{schema}".sk_logs')]
        for stmt in statements:
            entries = f'"{schema}".sk_entries'
            assert sql.execute(stmt.format(e=entries), []).rowcount == 1
        for read in (lambda: store.backend.read(log), lambda: store.backend.read_values(log),
                     lambda: store.backend.read(log, limit=2, reverse=True), lambda: s.history()):  # fmt: skip
            with pytest.raises(CorruptionError, match="damaged") as caught:
                read()
            assert caught.value.key == log and caught.value.seq == damaged
        assert [e.seq for e in store.backend.read(log, limit=1)] == [1]  # undamaged entries still read
    result = _doctor(url)
    assert result.exit_code == 1, result.output
    assert "support-42" in result.output and "Traceback" not in result.output


def test_entries_without_a_checksum_read_unchecked_beside_checked_ones(url: str, schema: str, sql: Any) -> None:
    """A log holding rows from before checksums (NULL) and rows with one: ``read()`` returns them all
    (a NULL is read unchecked), and a damaged row among them is still named."""
    with statekeel.open(url) as store:
        store.session("s").append("one", "two", "three")
        (log,) = [r[0] for r in sql.execute(f'SELECT name FROM "{schema}".sk_logs')]
        entries = f'"{schema}".sk_entries'
        assert sql.execute(f"UPDATE {entries} SET checksum = NULL WHERE seq = 1", []).rowcount == 1
        assert [e.seq for e in store.backend.read(log)] == [1, 2, 3]
        assert sql.execute(f"UPDATE {entries} SET codec = 'bin' WHERE seq = 3", []).rowcount == 1
        with pytest.raises(CorruptionError, match="damaged") as caught:
            store.backend.read(log)
        assert caught.value.key == log and caught.value.seq == 3


def test_a_healthy_store_passes_doctor(url: str) -> None:
    with statekeel.open(url) as store:
        store.session("s").append("a", "b")
        store.app.put("k", {"v": 1})
    result = _doctor(url)
    assert result.exit_code == 0 and "healthy" in result.output, result.output


# -- stores written before checksums keep opening --------------------------------------
def test_a_store_from_before_checksums_migrates_and_its_old_rows_read_unchecked(
    url: str, schema: str, sql: Any
) -> None:
    for version in range(1, _CHECKSUMS):  # the schema as the release before checksums left it
        for stmt in migration_sql(schema, version):
            sql.execute(stmt)
    sql.execute(f'INSERT INTO "{schema}".sk_kv (key, doc, codec, version, created_at, updated_at)'
                " VALUES ('app/_/state/old', '\"legacy\"', 'json', 3, 1, 1)")  # fmt: skip
    with statekeel.open(url) as store:  # migrates: a nullable column, no rewrite of the table
        assert store.backend.migrate(check=True).up_to_date
        assert store.backend.get("app/_/state/old") == Record("app/_/state/old", b'"legacy"', "json", 3, 1, 1, None)
        store.backend.apply([Put("app/_/state/old", b'"renewed"', "json", expect=3)])
    stored = sql.execute(f'SELECT version, checksum FROM "{schema}".sk_kv').fetchone()
    assert stored[0] == 4 and _unsigned(stored[1]) == record_sum("app/_/state/old", "json", b'"renewed"', 4)


def test_the_migration_is_printed_for_a_dba_and_adds_only_nullable_columns(url: str, schema: str, sql: Any) -> None:
    for version in range(1, _CHECKSUMS):
        for stmt in migration_sql(schema, version):
            sql.execute(stmt)
    with statekeel.open(url, migrate=False) as store:
        pending = store.backend.migrate(check=True).pending
    assert any("ADD COLUMN checksum integer" in s for s in pending)
    assert all("NOT NULL" not in s for s in pending)


# -- URL options (D8) -------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "hint"),
    [("schemaa=x", "did you mean ?schema="), ("sslmod=disable", "did you mean ?sslmode="),
     ("pool_size=3", "pool_max"), ("bogus=1", "unknown option ?bogus=")],
)  # fmt: skip
def test_unknown_options_are_refused_by_name(query: str, hint: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown option") as caught:
        statekeel.open(f"postgresql://127.0.0.1:1/x?{query}")
    assert hint in str(caught.value) and "sslrootcert" in str(caught.value)


@pytest.mark.parametrize("query", ["timeout=nan", "timeout=inf", "timeout=-inf", "pool_max=inf", "pool_min=nan"])
def test_non_finite_numbers_are_refused(query: str) -> None:
    with pytest.raises(ConfigurationError, match="finite"):
        statekeel.open(f"postgresql://127.0.0.1:1/x?{query}")


@pytest.mark.parametrize("query", ["sslmode=bogus", "connect_timeout=soon", "target_session_attrs=any-old"])
def test_libpq_values_it_refuses_are_configuration_errors(query: str) -> None:
    with pytest.raises(ConfigurationError, match="fix"):
        statekeel.open(f"postgresql://127.0.0.1:1/x?{query}")


def test_libpq_parameters_are_passed_on(url: str, sql: Any) -> None:
    name = "statekeel-reliability-test"
    with statekeel.open(f"{url}&application_name={name}&sslmode=disable&connect_timeout=5"
                        "&keepalives=1&target_session_attrs=read-write") as store:  # fmt: skip
        store.app.put("k", 1)
        seen = sql.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name])
        assert seen.fetchone()[0] >= 1


# -- integers PostgreSQL cannot hold ------------------------------------------------
@pytest.mark.parametrize("expect", [10**30, -(10**30), 2**63, True, False, 1.0, "1"])
def test_an_expect_that_is_not_a_bigint_is_bad_input(backend: PostgresBackend, expect: Any) -> None:
    backend.apply([Put("k", b"1", "json")])
    for op in (Put("k", b"2", "json", expect=expect), Delete("k", expect=expect)):
        with pytest.raises(InvalidInputError, match="expect="):
            backend.apply([op])
    rec = backend.get("k")
    assert rec is not None and (rec.data, rec.version) == (b"1", 1)


def test_huge_limits_and_bounds_mean_everything_not_an_error(backend: PostgresBackend) -> None:
    b = backend
    b.apply([Put(f"k/{i}", b"1", "json") for i in range(3)])
    b.apply([Append("log", tuple((b"1", "json") for _ in range(5)))])
    huge = 10**30
    assert len(b.scan("k/", limit=huge)) == 3 and len(b.scan_logs("", limit=huge)) == 1
    assert [e.seq for e in b.read("log", start=-huge, stop=huge, limit=huge)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in b.read("log", limit=huge, reverse=True)] == [1, 2, 3, 4, 5]
    assert b.read("log", start=huge) == [] and b.read("log", stop=-huge) == []
    assert b.read_values("log", limit=2**63, reverse=True) == [(b"1", "json")] * 5
    assert b.purge_expired(limit=huge) == 0
    assert b.apply([Trim("log", huge)]) == [5]  # trims everything, as memory:// does
    assert b.log_info("log") is None


def test_a_version_postgresql_cannot_store_is_bad_input_and_writes_nothing(backend: PostgresBackend) -> None:
    backend.apply([Put("k", b"1", "json"), Append("log", ((b"1", "json"),))])
    with pytest.raises(InvalidInputError, match="out of PostgreSQL's range"):
        backend.apply([Put("k", b"3", "json", expect=ANY), Load(Record("j", b"2", "json", 10**30, 1.0, 1.0, None))])
    rec = backend.get("k")
    assert rec is not None and (rec.data, rec.version) == (b"1", 1) and backend.get("j") is None
    assert backend.apply([Rewrite("log", 10**30, b"2", "json")]) == [False]  # no such entry, like memory://


def test_a_tenant_pool_keeps_the_urls_options_and_its_own_tenant(url: str, schema: str, sql: Any) -> None:
    name = "statekeel-tenant-options"
    intruder = tenant_setting("intruder")
    options = quote(f"-c application_name={name} -c statekeel.tenant={intruder}")
    with statekeel.open(f"{url}&options={options}") as store:
        store.tenant("acme").app.put("plan", "acme's plan")
        seen = sql.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name])
        assert seen.fetchone()[0] >= 2  # the root pool's connection and the tenant's
    tenants = sql.execute(f'SELECT tenant FROM "{schema}".sk_kv').fetchall()
    assert tenants == [(tenant_setting("acme"),)]


@pytest.mark.parametrize("option", ["-c no_such_setting=1", "-c statement_timeout=soon"])
def test_a_server_option_the_server_refuses_is_a_configuration_error(url: str, option: str) -> None:
    with pytest.raises(ConfigurationError, match="fix the URL"):
        statekeel.open(f"{url}&options={quote(option)}")



def test_doctor_lists_every_damaged_record_and_entry_and_reads_past_them(url: str, schema: str, sql: Any) -> None:
    with statekeel.open(url) as store:
        for i in range(5):
            store.app.put(f"k{i}", {"n": 41})
        store.session("chat").append("one 41", "two 41", "three 41")
    sql.execute(f"""UPDATE "{schema}".sk_kv SET doc = replace(doc::text, '41', '42')::json"""
                " WHERE key LIKE '%%k1' OR key LIKE '%%k3'")  # fmt: skip
    sql.execute(f"""UPDATE "{schema}".sk_entries SET doc = replace(doc::text, '41', '44')::json WHERE seq = 2""")
    result = CliRunner().invoke(main, ["doctor", url, "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["records"]["counts"]["damaged"] == 2 and checks["records"]["counts"]["verified"] >= 3
    assert checks["logs"]["counts"]["damaged"] == 1 and checks["logs"]["counts"]["verified"] == 2
    problems = " ".join(report["problems"])
    assert "k1" in problems and "k3" in problems and "entry 2 of log" in problems


@pytest.mark.parametrize("query", ["timeout=1e300", "timeout=86401", "pool_max=1e12", "pool_min=1e6&pool_max=1e6"])
def test_absurd_sizes_and_timeouts_are_refused_before_connecting(query: str) -> None:
    with pytest.raises(ConfigurationError, match="pool_max <= 10000|up to 86400|pool_m(in|ax)=.* from [01] to 10,000"):
        statekeel.open(f"postgresql://127.0.0.1:1/x?{query}")
