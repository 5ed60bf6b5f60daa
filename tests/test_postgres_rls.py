"""Tenant isolation on PostgreSQL is enforced by row-level security, not only by queries.

The application connects as an ordinary (non-owner, non-superuser) role, as
docs/postgres.md describes; even raw SQL on such a connection sees and writes
only the rows of the tenant its session belongs to.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import statekeel
from statekeel.backends.postgres import tenant_setting
from statekeel.testing.servers import PostgresServer, ServerUnavailable

SCHEMA = "rls_test"
APP_ROLE = "agent_app"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    try:
        srv = PostgresServer().start()
    except ServerUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def app_url(server: PostgresServer) -> str:
    """Migrate as the owner, then hand the application a non-owner role (docs/postgres.md)."""
    statekeel.open(f"{server.url}?schema={SCHEMA}").close()
    with psycopg.connect(server.url, autocommit=True) as c:
        c.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
        c.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {APP_ROLE}")
        c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {APP_ROLE}")
        c.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {APP_ROLE}")
        c.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {SCHEMA} TO {APP_ROLE}")
    return server.url.replace("postgres@", f"{APP_ROLE}@", 1) + f"?schema={SCHEMA}"


def _raw(server: PostgresServer, tenant: str | None) -> psycopg.Connection[Any]:
    options = f"-c statekeel.tenant={tenant_setting(tenant)}" if tenant is not None else ""
    url = server.url.replace("postgres@", f"{APP_ROLE}@", 1)
    return psycopg.connect(url, autocommit=True, options=options)


def test_raw_sql_sees_only_the_connections_tenant(server: PostgresServer, app_url: str) -> None:
    with statekeel.open(app_url, migrate=False) as store:
        store.tenant("acme").app.put("plan", "acme's plan")
        store.tenant("globex").app.put("plan", "globex's plan")
        store.app.put("plan", "untenanted")
        assert store.tenant("acme").app.get("plan") == "acme's plan"
    with _raw(server, "acme") as c:
        keys = [r[0] for r in c.execute(f"SELECT key FROM {SCHEMA}.sk_kv")]
    assert keys and all(k.startswith("acme~") for k in keys), keys
    with _raw(server, "globex") as c:
        keys = [r[0] for r in c.execute(f"SELECT key FROM {SCHEMA}.sk_kv")]
    assert keys and all(k.startswith("globex~") for k in keys), keys
    with _raw(server, None) as c:  # no tenant set: only untenanted rows
        keys = [r[0] for r in c.execute(f"SELECT key FROM {SCHEMA}.sk_kv")]
    assert keys and not any("~" in k.split("/")[0] for k in keys), keys


def test_a_tenant_cannot_write_rows_of_another(server: PostgresServer, app_url: str) -> None:
    with statekeel.open(app_url, migrate=False) as store:
        store.tenant("victim").app.put("k", "safe")
    with _raw(server, "attacker") as c:
        assert c.execute(f"UPDATE {SCHEMA}.sk_kv SET doc = '\"owned\"' WHERE key LIKE 'victim~%'").rowcount == 0
        assert c.execute(f"DELETE FROM {SCHEMA}.sk_kv WHERE key LIKE 'victim~%'").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # WITH CHECK: no row for another tenant
            c.execute(
                f"INSERT INTO {SCHEMA}.sk_kv (key, doc, codec, version, created_at, updated_at, tenant)"
                " VALUES ('victim~app/_/state/x', '1', 'json', 1, 0, 0, %s)",
                (tenant_setting("victim"),),
            )
    with statekeel.open(app_url, migrate=False) as store:
        assert store.tenant("victim").app.get("k") == "safe"


def test_row_level_security_is_forced_on_every_table(server: PostgresServer, app_url: str) -> None:
    with psycopg.connect(server.url, autocommit=True) as c:
        rows = c.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND relkind = 'r'"
            " AND relname LIKE 'sk_%%'",
            (SCHEMA,),
        ).fetchall()
    assert sorted(r[0] for r in rows) == ["sk_entries", "sk_kv", "sk_logs"]
    assert all(r[1] and r[2] for r in rows), rows


def test_tenant_sessions_and_history_work_through_rls(app_url: str) -> None:
    with statekeel.open(app_url, migrate=False) as store:
        acme = store.tenant("acme-2")
        s = acme.session("s1", user="u")
        s.append({"role": "user", "content": "hi"}, state={"turn": 1})
        assert s.history() == [{"role": "user", "content": "hi"}]
        assert [i.id for i in acme.sessions()] == ["s1"]
        assert list(store.tenant("other-2").sessions()) == []


def test_async_tenant_handles_run_natively_as_their_tenant(server: PostgresServer, app_url: str) -> None:
    """``AsyncStore.tenant(...)`` runs its hot paths on an asyncio pool of the tenant's own, which
    connects as the tenant as the sync view's does: every row it writes carries the tenant (raw SQL
    as that tenant sees it, as another sees none of it), and a query on that pool — even one that
    names another tenant's keys — sees the tenant's rows only."""
    from statekeel.backends.tenant_aio import AsyncTenantBackend

    async def main() -> list[str]:
        async with statekeel.open_async(app_url, migrate=False) as store:
            await store.tenant("victim-a").app.put("secret", "victim's")
            acme = store.tenant("acme-a")
            s = await acme.session("s1", user="u")
            await s.append({"role": "user", "content": "hi"}, state={"turn": 1})
            await acme.app.put("plan", "acme's plan")
            assert await s.history() == [{"role": "user", "content": "hi"}]
            assert store._worker._executor._threads == set()  # nothing ran on the worker
            lane = acme._lane
            assert lane is not None and type(lane.backend) is AsyncTenantBackend
            pool_backend = lane.backend._inner  # the tenant's own asyncio pool
            assert pool_backend is not store._lane.backend  # type: ignore[union-attr]
            seen = [r[0] for r in await pool_backend._rows(f"SELECT key FROM {SCHEMA}.sk_kv", {})]
            assert await pool_backend.get("victim-a~app/_/state/secret") is None
            return seen

    seen = asyncio.run(main())
    assert seen and all(k.startswith("acme-a~") for k in seen), seen
    with _raw(server, "acme-a") as c:
        rows = c.execute(f"SELECT key, tenant FROM {SCHEMA}.sk_kv WHERE key LIKE 'acme-a~%%'").fetchall()
    assert {r[1] for r in rows} == {tenant_setting("acme-a")} and len(rows) >= 3, rows
    with _raw(server, "victim-a") as c:
        assert c.execute(f"SELECT count(*) FROM {SCHEMA}.sk_kv WHERE key LIKE 'acme-a~%%'").fetchone() == (0,)
    with statekeel.open(app_url, migrate=False) as store:  # the sync view reads what the loop wrote
        assert store.tenant("acme-a").app.get("plan") == "acme's plan"
        assert store.tenant("acme-a").session("s1").history() == [{"role": "user", "content": "hi"}]


def test_tenant_views_cost_no_thread_or_connection_until_a_sync_call(app_url: str) -> None:
    """Each tenant has a pool of its own (row-level security is per connection): opening a view
    makes no connection and starts no thread (a server with thousands of tenants would otherwise
    hold thousands of pools' threads); its asyncio view runs on an asyncio pool (no thread); the
    first sync call opens the tenant's sync pool, with one worker thread."""
    with statekeel.open(app_url, migrate=False) as store:
        store.app.put("warm", 1)
        before = threading.active_count()
        views = [store.tenant(f"lazy-{n}") for n in range(20)]
        assert threading.active_count() == before
        assert views[3].app.get("k") is None  # a sync call: this tenant's pool opens now
        assert threading.active_count() <= before + 2  # its scheduler and one worker

    async def native() -> None:
        async with statekeel.open_async(app_url, migrate=False) as astore:
            await astore.app.put("warm", 1)
            before = threading.active_count()
            for n in range(20):
                await astore.tenant(f"lazy-{n}").app.put("k", n)  # on each tenant's asyncio pool
            assert threading.active_count() == before  # the sync pools were never needed
            assert await astore.tenant("lazy-3").call(lambda st: st.app.get("k")) == 3  # on the worker
            assert threading.active_count() <= before + 3  # the worker, and lazy-3's sync pool

    asyncio.run(native())
