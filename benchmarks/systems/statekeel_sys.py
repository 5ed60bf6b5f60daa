"""statekeel rows, written against the public API only:

    store = statekeel.open(url); s = store.session("t1")
    s.append(user_msg, assistant_msg, state={"turn": i}); s.history(last=20); s.history()
    store.close()
"""
from __future__ import annotations

import os
import statistics
import time

from benchmarks.systems import best_ms
from benchmarks.workload import dir_bytes, sqlite_checkpointed_bytes


def _turn_loop(store, turns):
    s = store.session("t1")
    lat = []
    for i, (u, a) in enumerate(turns):
        t = time.perf_counter()
        s.append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    msgs = s.history()
    load = time.perf_counter() - t
    assert len(msgs) == 2 * len(turns), f"history() returned {len(msgs)} messages, expected {2 * len(turns)}"
    assert msgs[-1]["content"] == turns[-1][1] and msgs[0]["content"] == turns[0][0]
    return lat, load, best_ms(s.history)


def _sqlite(turns, ctx, query: str = "", **options):
    import statekeel

    d = ctx["workdir"]
    db = os.path.join(d, "state.db")
    store = statekeel.open(f"sqlite:///{db}{query}", **options)
    try:
        lat, load, best = _turn_loop(store, turns)
        uncheckpointed = dir_bytes(d)
    finally:
        store.close()
    return {
        "lat": lat,
        "reload_ms": round(load * 1e3, 2), "reload_best_ms": best,
        "storage_bytes": sqlite_checkpointed_bytes(db, d),
        "storage_bytes_uncheckpointed": uncheckpointed,
    }


def sk_sqlite(turns, ctx):
    return _sqlite(turns, ctx)


def sk_sqlite_normal(turns, ctx):
    return _sqlite(turns, ctx, "?durability=normal")


def sk_sqlite_normal_noguard(turns, ctx):
    """Attribution row: the same with the secret guard's scan switched off."""
    return _sqlite(turns, ctx, "?durability=normal", secret_guard="off")


def sk_pg(turns, ctx):
    import statekeel
    from benchmarks.systems.pg_peers import db_size

    store = statekeel.open(ctx["pg_dsn"])
    s0 = db_size(ctx["pg_dsn"])  # after the schema exists, as raw_pg measures after its CREATE TABLE
    try:
        lat, load, best = _turn_loop(store, turns)
    finally:
        store.close()
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best, "storage_bytes": db_size(ctx["pg_dsn"]) - s0}


def sk_redis(turns, ctx):
    import statekeel
    from benchmarks.systems.redis_peers import _used_memory, prepare

    r, m0 = prepare(ctx["redis_url"])
    store = statekeel.open(ctx["redis_url"])
    try:
        lat, load, best = _turn_loop(store, turns)
    finally:
        store.close()
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best, "storage_bytes": _used_memory(r) - m0}


# -- encryption on (issue: per-turn cost encrypted vs plain) ------------------
def _key():
    import statekeel

    return statekeel.Encryption(master_key=b"k" * 32)


def sk_sqlite_encrypted(turns, ctx):
    return _sqlite(turns, ctx, encryption=_key())


def _chain():
    import statekeel

    return statekeel.Integrity(key=b"c" * 32)


def sk_sqlite_chain(turns, ctx):
    return _sqlite(turns, ctx, integrity=_chain())


def sk_sqlite_chain_encrypted(turns, ctx):
    return _sqlite(turns, ctx, integrity=_chain(), encryption=_key())


def _pg(turns, ctx, **options):
    import statekeel
    from benchmarks.systems.pg_peers import db_size

    store = statekeel.open(ctx["pg_dsn"], **options)
    s0 = db_size(ctx["pg_dsn"])  # after the schema exists, as raw_pg measures after its CREATE TABLE
    try:
        lat, load, best = _turn_loop(store, turns)
    finally:
        store.close()
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best, "storage_bytes": db_size(ctx["pg_dsn"]) - s0}


def sk_pg_chain(turns, ctx):
    return _pg(turns, ctx, integrity=_chain())


def sk_pg_chain_encrypted(turns, ctx):
    return _pg(turns, ctx, integrity=_chain(), encryption=_key())


def sk_pg_encrypted(turns, ctx):
    import statekeel
    from benchmarks.systems.pg_peers import db_size

    store = statekeel.open(ctx["pg_dsn"], encryption=_key())
    s0 = db_size(ctx["pg_dsn"])  # after the schema exists, as raw_pg measures after its CREATE TABLE
    try:
        lat, load, best = _turn_loop(store, turns)
    finally:
        store.close()
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best, "storage_bytes": db_size(ctx["pg_dsn"]) - s0}


# -- the asyncio API ----------------------------------------------------------
def _async_rows(url, turns):
    import asyncio

    import statekeel

    async def run():
        store = await statekeel.open_async(url)
        try:
            s = await store.session("t1")
            lat = []
            for i, (u, a) in enumerate(turns):
                t = time.perf_counter()
                await s.append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
                lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            msgs = await s.history()
            load = time.perf_counter() - t
            assert len(msgs) == 2 * len(turns)
            return lat, load
        finally:
            await store.aclose()

    lat, load = asyncio.run(run())
    return {"lat": lat, "reload_ms": round(load * 1e3, 2)}


def sk_sqlite_async(turns, ctx):
    return _async_rows(f"sqlite:///{os.path.join(ctx['workdir'], 'state.db')}", turns)


def sk_pg_async(turns, ctx):
    return _async_rows(ctx["pg_dsn"], turns)


def sk_redis_async(turns, ctx):
    from benchmarks.systems.redis_peers import prepare

    prepare(ctx["redis_url"])
    return _async_rows(ctx["redis_url"], turns)


# -- files backend vs raw append + fsync of the same bytes ---------------------
def sk_files(turns, ctx):
    import statekeel

    root = os.path.join(ctx["workdir"], "store")
    store = statekeel.open(f"file://{root}")
    try:
        lat, load, best = _turn_loop(store, turns)
    finally:
        store.close()
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best, "storage_bytes": dir_bytes(root)}


def raw_files_append(turns, ctx):
    """The floor: both messages as JSON lines appended to one file, fdatasync per turn (no state)."""
    import json

    path = os.path.join(ctx["workdir"], "history.jsonl")
    lat = []
    with open(path, "ab") as fh:
        for seq, (u, a) in enumerate(turns):
            t = time.perf_counter()
            lines = (json.dumps({"seq": 2 * seq + 1, "role": "user", "content": u}) + "\n"
                     + json.dumps({"seq": 2 * seq + 2, "role": "assistant", "content": a}) + "\n")
            fh.write(lines.encode())
            fh.flush()
            os.fdatasync(fh.fileno())
            lat.append(time.perf_counter() - t)
    def reload():
        with open(path, "rb") as fh:
            return [json.loads(line) for line in fh]

    t = time.perf_counter()
    msgs = reload()
    load = time.perf_counter() - t
    assert len(msgs) == 2 * len(turns)
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best_ms(reload),
            "storage_bytes": os.path.getsize(path)}


SMALL, BIG, CHUNK, REPEAT = 1_000, 100_000, 100, 300


def _build(s, turns, n_messages):
    msgs = []
    for u, a in turns[: CHUNK // 2]:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    for _ in range(n_messages // CHUNK):
        s.append(*msgs)


def sk_history_scaling(turns, ctx):
    """history(last=20) on a 100,000-message session vs a 1,000-message session (same store)."""
    import statekeel

    url = f"sqlite:///{os.path.join(ctx['workdir'], 'state.db')}"
    store = statekeel.open(url)
    t = time.perf_counter()
    try:
        _build(store.session("small"), turns, SMALL)
        _build(store.session("big"), turns, BIG)
    finally:
        store.close()
    build_s = time.perf_counter() - t

    store = statekeel.open(url)  # reopen: nothing cached from the build
    try:
        small, big = store.session("small"), store.session("big")
        first = {}
        for name, s in (("small", small), ("big", big)):
            t = time.perf_counter()
            got = s.history(last=20)
            first[name] = (time.perf_counter() - t) * 1e3
            assert len(got) == 20, len(got)
        times = {"small": [], "big": []}
        for _ in range(REPEAT):
            for name, s in (("small", small), ("big", big)):
                t = time.perf_counter()
                s.history(last=20)
                times[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        n_big = len(big.history())  # also proves the big session really holds BIG messages
        full_big_ms = (time.perf_counter() - t) * 1e3
        assert n_big == BIG and len(small.history()) == SMALL, (n_big, BIG)
    finally:
        store.close()
    m_small = statistics.median(times["small"]) * 1e3
    m_big = statistics.median(times["big"]) * 1e3
    return {
        "history_last20_ms_1k": round(m_small, 4),
        "history_last20_ms_100k": round(m_big, 4),
        "history_last20_ratio_100k_vs_1k": round(m_big / m_small, 3),
        "history_last20_first_call_ms_1k": round(first["small"], 3),
        "history_last20_first_call_ms_100k": round(first["big"], 3),
        "history_full_ms_100k": round(full_big_ms, 1),
        "build_s": round(build_s, 2),
        "repeats": REPEAT,
        "storage_bytes": dir_bytes(ctx["workdir"]),
    }
