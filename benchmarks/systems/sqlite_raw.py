"""Raw sqlite3 baselines (same statements as peer_turns.py raw-sqlite-wal)."""
from __future__ import annotations

import os
import sqlite3
import time

from benchmarks.systems import best_ms, to_messages
from benchmarks.workload import dir_bytes, sqlite_checkpointed_bytes


def _run(turns, ctx, synchronous: str, with_state: bool) -> dict:
    d = ctx["workdir"]
    db = os.path.join(d, "state.db")
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={synchronous}")
    c.execute("create table m(sid text, seq int, role text, content text, primary key(sid,seq))")
    if with_state:
        c.execute("create table st(sid text, k text, v text, primary key(sid,k))")
    lat = []
    for i, (u, a) in enumerate(turns):
        t = time.perf_counter()
        c.execute("begin")
        c.execute("insert into m values('t1',?,?,?)", (2 * i, "user", u))
        c.execute("insert into m values('t1',?,?,?)", (2 * i + 1, "assistant", a))
        if with_state:
            c.execute("insert or replace into st values('t1','turn',?)", (str(i),))
        c.execute("commit")
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    rows = c.execute("select role, content from m where sid='t1' order by seq").fetchall()
    load = time.perf_counter() - t
    assert len(rows) == 2 * len(turns)
    best = best_ms(lambda: c.execute("select role, content from m where sid='t1' order by seq").fetchall())
    as_messages = best_ms(lambda: to_messages(c.execute("select role, content from m where sid='t1' order by seq").fetchall()))
    uncheckpointed = dir_bytes(d)
    c.close()
    return {
        "lat": lat,
        "reload_ms": round(load * 1e3, 2),
        "reload_best_ms": best,
        "reload_messages_best_ms": as_messages,
        "storage_bytes": sqlite_checkpointed_bytes(db, d),
        "storage_bytes_uncheckpointed": uncheckpointed,
    }


def raw_wal_full(turns, ctx):
    return _run(turns, ctx, "FULL", with_state=False)


def raw_wal_full_state(turns, ctx):
    return _run(turns, ctx, "FULL", with_state=True)


def raw_wal_normal(turns, ctx):
    return _run(turns, ctx, "NORMAL", with_state=False)


def raw_wal_normal_state(turns, ctx):
    return _run(turns, ctx, "NORMAL", with_state=True)
