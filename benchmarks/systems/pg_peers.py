"""PostgreSQL rows: raw psycopg 3 and LangGraph PostgresSaver (as peer_pg.py).

Each system gets its own freshly created database (ctx["pg_dsn"]); storage is the
growth of pg_database_size(current_database()) over the run.
"""
from __future__ import annotations

import time

from benchmarks.systems import best_ms, to_messages


def db_size(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("select pg_database_size(current_database())").fetchone()[0]


def raw_pg(turns, ctx):
    import psycopg

    dsn = ctx["pg_dsn"]
    lat = []
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("create table m(sid text, seq int, role text, content text, primary key(sid,seq))")
        s0 = db_size(dsn)
        for i, (u, a) in enumerate(turns):
            t = time.perf_counter()
            with c.transaction():
                c.execute(
                    "insert into m values('t1',%s,%s,%s),('t1',%s,%s,%s)",
                    (2 * i, "user", u, 2 * i + 1, "assistant", a),
                )
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        rows = c.execute("select role, content from m where sid='t1' order by seq").fetchall()
        load = time.perf_counter() - t
        assert len(rows) == 2 * len(turns)
        best = best_ms(lambda: c.execute("select role, content from m where sid='t1' order by seq").fetchall())
        as_messages = best_ms(lambda: to_messages(c.execute("select role, content from m where sid='t1' order by seq").fetchall()))
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best,
            "reload_messages_best_ms": as_messages, "storage_bytes": db_size(dsn) - s0}


def langgraph_pg(turns, ctx):
    from langgraph.checkpoint.postgres import PostgresSaver

    from benchmarks.systems.sqlite_peers import _graph

    dsn = ctx["pg_dsn"]
    app_graph = _graph(turns)
    s0 = db_size(dsn)
    lat = []
    with PostgresSaver.from_conn_string(dsn) as saver:
        saver.setup()
        app = app_graph.compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "t1"}}
        for i, (u, _a) in enumerate(turns):
            t = time.perf_counter()
            app.invoke({"messages": [{"role": "user", "content": u}], "turn": i}, cfg)
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        st = app.get_state(cfg)
        load = time.perf_counter() - t
        assert len(st.values["messages"]) == 2 * len(turns)
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "storage_bytes": db_size(dsn) - s0}


def fresh_database(admin_dsn: str, name: str) -> str:
    """(Re)create database `name` on the server of admin_dsn; return its DSN."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'drop database if exists "{name}"')
        c.execute(f'create database "{name}"')
    if "://" in admin_dsn:  # keep URL form (statekeel.open takes postgresql:// URLs)
        base, _, query = admin_dsn.partition("?")
        head, _, _db = base.rpartition("/")
        return f"{head}/{name}" + (f"?{query}" if query else "")
    return make_conninfo(**{**conninfo_to_dict(admin_dsn), "dbname": name})


def drop_database(admin_dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'drop database if exists "{name}" with (force)')
