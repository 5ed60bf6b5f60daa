"""Concurrency scaling: statekeel's asyncio API against the raw async drivers, and N sync processes.

    python benchmarks/run.py --scale                       # PostgreSQL and Redis, C = 1, 8, 32, 128
    python benchmarks/scale.py --backends postgres --turns 20 --repeat 3 --out scale.json
    python benchmarks/scale.py --mode encrypted --before   # also chain, both: native and on the worker
    python benchmarks/scale.py --mode tenant --before      # the sessions of 8 tenants, through tenant views
    python benchmarks/scale.py --mode idem --before        # every turn with an idempotency key
    python benchmarks/scale.py --mode events --before      # every turn two events of the conversation's stream
    python benchmarks/scale.py --mode adk --before         # ADK's session service: a Runner's turn (scale_adk.py)
    python benchmarks/scale.py --mode langgraph --before   # a LangGraph graph's ainvoke (scale_langgraph.py)
    python benchmarks/scale.py --mode lgstore --before     # LangGraph's long-term store: aget, asearch, aput

What each row does, per reference turn (benchmarks/workload.py: a ~200-byte user
message and a ~800-byte assistant message):

* statekeel async: ``await s.append(user, assistant, state={"turn": i})`` — one
  atomic, durable batch — on C sessions of one ``open_async`` store, C coroutines
  (``--mode tenant``: session n opened through ``store.tenant(f"t{n % 8}")``);
* raw async: the same writes with the driver alone — psycopg ``AsyncConnectionPool``
  (the same pool size as statekeel's default, 10), one transaction inserting both
  messages and upserting the state row; ``redis.asyncio``, one MULTI/EXEC
  (RPUSH both, HSET the state) — on C conversations, C coroutines;
* sync processes: N processes, each one conversation through the sync API
  (``s.append`` as above), against N processes doing the raw sync writes;
* latency: one conversation, one call at a time: ``await s.append(...)`` against the
  sync ``s.append(...)`` (blocks of calls alternated on one thread, event loop idle
  between async blocks).

An async run times at least ``--min-turns`` turns in all (C=1: 2,000 turns of one
conversation; C=128: 40 each), after one untimed turn per conversation that opens the
connections and writes each session once, on both sides.

Every (row, C) is run ``--repeat`` times, the statekeel and raw runs alternated, and
the ratios are paired run by run (the machine is shared: interleaving keeps the
two sides of a ratio under the same load). Throughput is turns per second of wall time.
Servers are durable: PostgreSQL fsync=on, synchronous_commit=on; Redis appendfsync always.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from benchmarks.workload import make_turns  # noqa: E402

CONCURRENCY = (1, 8, 32, 128)
PROCESSES = (1, 2, 4, 8)
POOL = 10  # statekeel's default ?pool_max: the raw pool gets the same
_ids = itertools.count()

PG_SETUP = (
    "CREATE TABLE IF NOT EXISTS raw_m (sid text, seq int, role text, content text, PRIMARY KEY (sid, seq));"
    "CREATE TABLE IF NOT EXISTS raw_s (sid text, k text, v jsonb, PRIMARY KEY (sid, k))"
)
PG_MSGS = "INSERT INTO raw_m VALUES (%s, %s, 'user', %s), (%s, %s, 'assistant', %s)"
PG_STATE = ("INSERT INTO raw_s VALUES (%s, 'turn', %s) ON CONFLICT (sid, k) DO UPDATE SET v = excluded.v")


def _msgs(u: str, a: str) -> tuple[dict[str, str], dict[str, str]]:
    return {"role": "user", "content": u}, {"role": "assistant", "content": a}


# -- async rows: one coroutine per conversation ------------------------------------------------
async def _gather(c: int, turns: list[tuple[str, str]], one: Callable[[int, int, str, str], Awaitable[None]]) -> float:
    """Turns per second of C conversations at once; each conversation's first turn is not timed (it
    opens the connections both sides need and writes each session once)."""
    numbered = list(enumerate(turns))

    async def conversation(n: int, todo: list[tuple[int, tuple[str, str]]]) -> None:
        for i, (u, a) in todo:
            await one(n, i, u, a)

    await asyncio.gather(*(conversation(n, numbered[:1]) for n in range(c)))
    t = time.perf_counter()
    await asyncio.gather(*(conversation(n, numbered[1:]) for n in range(c)))
    return c * (len(numbered) - 1) / (time.perf_counter() - t)


def _turns_for(c: int, a: argparse.Namespace) -> list[tuple[str, str]]:
    """Each of C conversations' turns: ``--turns``, or more so that a run times ``--min-turns`` in all
    (40 turns of one conversation last ~25 ms: a run that short measures the machine's hiccups),
    plus the untimed first."""
    return make_turns(max(a.turns, -(-a.min_turns // c)) + 1)


async def statekeel_async(
    url: str, c: int, turns: list[tuple[str, str]], native: bool = True, mode: str = "plain"
) -> float:
    """``native=False``: every call on the store's worker thread (``STATEKEEL_ASYNC_NATIVE=0``),
    as before issue 15 — the "before" rows. ``mode``: ``encrypted`` (``encryption=``), ``chain``
    (``integrity=``) or ``both`` — on PostgreSQL and Redis natively since session 39 — or ``tenant``
    (each session in one of 8 tenants' views: natively since session 40) or ``idem`` (every append with
    an idempotency key: natively since session 40; the raw rows write no key) or ``events`` (each turn
    two events appended to the conversation's stream, no state: natively since session 40)."""
    import statekeel

    tag = next(_ids)
    if not native:
        os.environ["STATEKEEL_ASYNC_NATIVE"] = "0"
    options: dict[str, Any] = {}
    if mode in ("encrypted", "both"):
        options["encryption"] = statekeel.Encryption(master_key=b"k" * 32)
    if mode in ("chain", "both"):
        options["integrity"] = statekeel.Integrity(key=b"c" * 32)
    try:
        store = await statekeel.open_async(url, **options)
        # a tenant's view picks its lane when opened: still with the switch as the store had it
        views = [store.tenant(f"t{n % 8}") if mode == "tenant" else store for n in range(c)]
    finally:
        os.environ.pop("STATEKEEL_ASYNC_NATIVE", None)
    async with store:
        sessions = [await views[n].session(f"scale-{tag}-{n}") for n in range(c)]

        keyed = mode == "idem"
        streams = [store.events(f"scale-{tag}-{n}") for n in range(c)] if mode == "events" else []

        async def one(n: int, i: int, u: str, a: str) -> None:
            if streams:  # the turn as two events of the conversation's stream, one atomic batch
                await streams[n].append_many([("user", {"content": u}), ("assistant", {"content": a})])
                return
            key = f"turn-{i}" if keyed else None  # each turn's key, as an agent retrying it would send
            await sessions[n].append(*_msgs(u, a), state={"turn": i}, idempotency_key=key)

        return await _gather(c, turns, one)


async def raw_pg_async(dsn: str, c: int, turns: list[tuple[str, str]]) -> float:
    from psycopg_pool import AsyncConnectionPool

    tag = next(_ids)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=POOL, kwargs={"autocommit": True}) as pool:
        async with pool.connection() as conn:
            await conn.execute(PG_SETUP)

        async def one(n: int, i: int, u: str, a: str) -> None:
            sid = f"raw-{tag}-{n}"
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(PG_MSGS, (sid, 2 * i, json.dumps(_msgs(u, a)[0]), sid, 2 * i + 1,
                                             json.dumps(_msgs(u, a)[1])))
                await conn.execute(PG_STATE, (sid, json.dumps(i)))

        return await _gather(c, turns, one)


async def raw_redis_async(url: str, c: int, turns: list[tuple[str, str]]) -> float:
    import redis.asyncio as aredis

    tag = next(_ids)
    # a blocking pool of the size statekeel's client gets (redis-py's default, 100): C=128 waits, not fails
    client = aredis.Redis(connection_pool=aredis.BlockingConnectionPool.from_url(url, max_connections=100))
    try:
        async def one(n: int, i: int, u: str, a: str) -> None:
            user, assistant = _msgs(u, a)
            pipe = client.pipeline(transaction=True)
            pipe.rpush(f"raw{tag}:{n}:m", json.dumps(user), json.dumps(assistant))
            pipe.hset(f"raw{tag}:{n}:s", "turn", i)
            await pipe.execute()

        return await _gather(c, turns, one)
    finally:
        await client.aclose()


# -- sync rows: N processes, one conversation each ---------------------------------------------------
def _proc(kind: str, url: str, n_turns: int, tag: str, start: Any, out: Any) -> None:
    turns = make_turns(n_turns)
    if kind == "statekeel":
        import statekeel

        with statekeel.open(url) as store:
            s = store.session(tag)
            start.wait()
            t = time.perf_counter()
            for i, (u, a) in enumerate(turns):
                s.append(*_msgs(u, a), state={"turn": i})
    elif url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PG_SETUP)
            start.wait()
            t = time.perf_counter()
            for i, (u, a) in enumerate(turns):
                user, assistant = _msgs(u, a)
                with conn.transaction():
                    conn.execute(PG_MSGS, (tag, 2 * i, json.dumps(user), tag, 2 * i + 1, json.dumps(assistant)))
                    conn.execute(PG_STATE, (tag, json.dumps(i)))
    else:
        import redis

        r = redis.Redis.from_url(url)
        start.wait()
        t = time.perf_counter()
        for i, (u, a) in enumerate(turns):
            user, assistant = _msgs(u, a)
            pipe = r.pipeline(transaction=True)
            pipe.rpush(f"{tag}:m", json.dumps(user), json.dumps(assistant))
            pipe.hset(f"{tag}:s", "turn", i)
            pipe.execute()
    out.put((t, time.perf_counter()))


def processes(kind: str, url: str, n: int, n_turns: int) -> float:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(n), ctx.Queue()
    tag = f"p{os.getpid()}-{next(_ids)}"
    procs = [ctx.Process(target=_proc, args=(kind, url, n_turns, f"{tag}-{k}", start, out)) for k in range(n)]
    for p in procs:
        p.start()
    spans = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    return n * n_turns / (max(e for _, e in spans) - min(s for s, _ in spans))


# -- latency: one call at a time ---------------------------------------------------------------------
def latency(url: str, calls: int, blocks: int) -> dict[str, float]:
    """Median ms of one append, async (native path) and sync, alternating blocks of calls."""
    import statekeel

    turns = make_turns(calls)
    loop = asyncio.new_event_loop()
    sync_ms: list[float] = []
    async_ms: list[float] = []
    tag = next(_ids)
    try:
        astore = loop.run_until_complete(statekeel.open_async(url))
        with statekeel.open(url) as store:
            s = store.session(f"lat-sync-{tag}")
            a_s = loop.run_until_complete(astore.session(f"lat-async-{tag}"))

            async def async_block() -> None:
                for i, (u, a) in enumerate(turns):
                    t = time.perf_counter()
                    await a_s.append(*_msgs(u, a), state={"turn": i})
                    async_ms.append((time.perf_counter() - t) * 1e3)

            for _ in range(blocks):
                for i, (u, a) in enumerate(turns):
                    t = time.perf_counter()
                    s.append(*_msgs(u, a), state={"turn": i})
                    sync_ms.append((time.perf_counter() - t) * 1e3)
                loop.run_until_complete(async_block())
        loop.run_until_complete(astore.aclose())
    finally:
        loop.close()
    sync_med, async_med = statistics.median(sync_ms), statistics.median(async_ms)
    return {"sync_ms": round(sync_med, 3), "async_ms": round(async_med, 3), "ratio": round(async_med / sync_med, 3)}


# -- the run -------------------------------------------------------------------------------------------
def _paired(name: str, mine: Callable[[], float], raw: Callable[[], float], repeat: int) -> dict[str, Any]:
    """Alternate the two sides ``repeat`` times; ratios paired run by run, and their median."""
    pairs = []
    for k in range(repeat):
        first, second = (mine, raw) if k % 2 == 0 else (raw, mine)
        a, b = first(), second()
        pairs.append((a, b) if k % 2 == 0 else (b, a))
    ratios = [m / r for m, r in pairs]
    row = {"row": name, "statekeel_tps": [round(m) for m, _ in pairs], "raw_tps": [round(r) for _, r in pairs],
           "ratios": [round(x, 3) for x in ratios], "median_ratio": round(statistics.median(ratios), 3)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def run_sqlite(a: argparse.Namespace) -> list[dict[str, Any]]:
    """SQLite (FULL): the async API's group commit against the same calls on the worker alone."""
    import tempfile

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sk-scale-") as tmp:
        url = f"sqlite:///{tmp}/scale.db"
        for c in a.concurrency:
            turns = _turns_for(c, a)
            rows.append(_paired(
                f"sqlite async C={c}: group commit / worker only",
                lambda c=c, turns=turns: asyncio.run(statekeel_async(url, c, turns)),
                lambda c=c, turns=turns: asyncio.run(statekeel_async(url, c, turns, native=False)),
                a.repeat,
            ))
    return rows


def run_backend(backend: str, server_url: str, a: argparse.Namespace) -> list[dict[str, Any]]:
    if backend == "postgres":
        sk_url, raw_async, raw_url = f"{server_url}?schema=sk_scale", raw_pg_async, server_url
    else:
        sk_url, raw_async, raw_url = f"{server_url}?prefix=skscale", raw_redis_async, server_url
    rows: list[dict[str, Any]] = []
    mode = a.mode
    secure_url = sk_url.replace("sk_scale", f"sk_scale_{mode}").replace("skscale", f"skscale{mode}")
    for c in a.concurrency:
        turns = _turns_for(c, a)
        if mode == "adk":
            rows += _adk_rows(backend, secure_url, raw_url, c, turns, a)
            continue
        if mode == "langgraph":
            rows += _langgraph_rows(backend, secure_url, raw_url, c, a)
            continue
        if mode == "lgstore":
            rows += _lgstore_rows(backend, secure_url, raw_url, c, turns, a)
            continue
        if mode != "plain":
            rows.append(_paired(
                f"{backend} async C={c}, {mode}",
                lambda c=c, turns=turns: asyncio.run(statekeel_async(secure_url, c, turns, mode=mode)),
                lambda c=c, turns=turns: asyncio.run(raw_async(raw_url, c, turns)),
                a.repeat,
            ))
            if a.before:
                rows.append(_paired(
                    f"{backend} async C={c}, {mode}, all on the worker (before)",
                    lambda c=c, turns=turns: asyncio.run(statekeel_async(secure_url, c, turns, False, mode)),
                    lambda c=c, turns=turns: asyncio.run(raw_async(raw_url, c, turns)),
                    a.repeat,
                ))
            continue
        rows.append(_paired(
            f"{backend} async C={c}",
            lambda c=c, turns=turns: asyncio.run(statekeel_async(sk_url, c, turns)),
            lambda c=c, turns=turns: asyncio.run(raw_async(raw_url, c, turns)),
            a.repeat,
        ))
        if a.before:
            rows.append(_paired(
                f"{backend} async C={c}, all on the worker (before)",
                lambda c=c, turns=turns: asyncio.run(statekeel_async(sk_url, c, turns, native=False)),
                lambda c=c, turns=turns: asyncio.run(raw_async(raw_url, c, turns)),
                a.repeat,
            ))
    for n in [] if a.mode != "plain" else a.processes:
        rows.append(_paired(
            f"{backend} sync N={n}",
            lambda n=n: processes("statekeel", sk_url, n, a.turns),
            lambda n=n: processes("raw", raw_url, n, a.turns),
            a.repeat,
        ))
    if a.mode != "plain":
        return rows
    lat = latency(sk_url, a.latency_calls, a.repeat)
    lat["row"] = f"{backend} latency async/sync"
    print(json.dumps(lat), file=sys.stderr, flush=True)
    rows.append(lat)
    return rows


def _adk_rows(backend: str, url: str, raw_url: str, c: int, turns: list[tuple[str, str]], a: argparse.Namespace
              ) -> list[dict[str, Any]]:
    """``--mode adk`` (benchmarks/scale_adk.py): ADK's session service, native (and ``--before``: on
    the worker), against a session service on the raw async driver, for C conversations."""
    from benchmarks import scale_adk

    raw = scale_adk.raw_pg_adk if backend == "postgres" else scale_adk.raw_redis_adk
    sides = [("", True)] + ([(", all on the worker (before)", False)] if a.before else [])
    return [_paired(
        f"{backend} ADK C={c}{label}",
        lambda native=native: asyncio.run(scale_adk.statekeel_adk(url, c, turns, native, _gather)),
        lambda: asyncio.run(raw(raw_url, c, turns, _gather)),
        a.repeat,
    ) for label, native in sides]


def _langgraph_rows(backend: str, url: str, raw_url: str, c: int, a: argparse.Namespace) -> list[dict[str, Any]]:
    """``--mode langgraph`` (benchmarks/scale_langgraph.py): the LangGraph saver natively, against
    LangGraph's AsyncPostgresSaver (PostgreSQL) and (``--before``) against itself on the worker."""
    from benchmarks import scale_langgraph as lg

    turns = lg.turns_for(c, make_turns(101), a.min_turns)
    return _against_langgraph(backend, f"LangGraph C={c}", "AsyncPostgresSaver", a,
                              lambda native: lg.statekeel_graph(url, c, turns, native, _gather),
                              lambda: lg.langgraph_pg(raw_url, c, turns, _gather))  # fmt: skip


def _lgstore_rows(backend: str, url: str, raw_url: str, c: int, turns: list[tuple[str, str]],
                  a: argparse.Namespace) -> list[dict[str, Any]]:  # fmt: skip
    """``--mode lgstore`` (benchmarks/scale_langgraph.py): LangGraph's long-term store natively,
    against LangGraph's AsyncPostgresStore (PostgreSQL) and (``--before``) against itself on the worker."""
    from benchmarks import scale_langgraph as lg

    return _against_langgraph(backend, f"LangGraph store C={c}", "AsyncPostgresStore", a,
                              lambda native: lg.statekeel_memory(url, c, turns, native, _gather),
                              lambda: lg.langgraph_pg_store(raw_url, c, turns, _gather))  # fmt: skip


def _against_langgraph(backend: str, name: str, theirs: str, a: argparse.Namespace,
                       ours: Callable[[bool], Awaitable[float]], lg_pg: Callable[[], Awaitable[float]],
                       ) -> list[dict[str, Any]]:  # fmt: skip
    """statekeel natively ÷ LangGraph's own PostgreSQL class, and (``--before``) ÷ itself on the worker."""
    native = lambda: asyncio.run(ours(True))  # noqa: E731
    rows = []
    if backend == "postgres":
        rows.append(_paired(f"postgres {name}: statekeel / {theirs}", native, lambda: asyncio.run(lg_pg()), a.repeat))
    if a.before:
        rows.append(_paired(f"{backend} {name}: native / all on the worker (before)", native,
                            lambda: asyncio.run(ours(False)), a.repeat))  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| row | statekeel turns/s | raw turns/s | ratio per run | median ratio |", "|---|---|---|---|---|"]
    for r in rows:
        if "ratios" in r:
            out.append(f"| {r['row']} | {', '.join(map(str, r['statekeel_tps']))} | "
                       f"{', '.join(map(str, r['raw_tps']))} | {', '.join(map(str, r['ratios']))} | "
                       f"**{r['median_ratio']}** |")
        else:
            out.append(f"| {r['row']} | async {r['async_ms']} ms | sync {r['sync_ms']} ms | | **{r['ratio']}** |")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="postgres,redis")
    ap.add_argument("--turns", type=int, default=40, help="turns per conversation, at least (default 40)")
    ap.add_argument("--min-turns", type=int, default=2000,
                    help="turns an async run times in all, at least: C=1 runs 2,000 turns, C=128 40 each (default 2000)")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=list(CONCURRENCY))
    ap.add_argument("--processes", type=lambda s: [int(x) for x in s.split(",") if x], default=list(PROCESSES))
    ap.add_argument("--repeat", type=int, default=3, help="alternated runs per row (default 3)")
    ap.add_argument("--latency-calls", type=int, default=200, help="calls per latency block (default 200)")
    ap.add_argument("--pg-url", help="use this PostgreSQL server instead of starting one")
    ap.add_argument("--redis-url", help="use this Redis server instead of starting one")
    ap.add_argument("--before", action="store_true",
                    help="also the async rows with every call on the worker (STATEKEEL_ASYNC_NATIVE=0)")
    ap.add_argument("--mode", choices=("plain", "encrypted", "chain", "both", "tenant", "idem", "events", "adk",
                                       "langgraph", "lgstore"),
                    default="plain",
                    help="the async rows on an encrypted (encryption=), tamper-evident (integrity=) or both store, "
                         "through 8 tenants' views, with an idempotency key per turn, or as two events per turn "
                         "(raw: the same writes), or ADK's session service (benchmarks/scale_adk.py), or a LangGraph "
                         "graph, or its long-term store (benchmarks/scale_langgraph.py), instead; "
                         "no process or latency rows then")
    ap.add_argument("--out", help="also write the rows as JSON here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.servers import postgres_server, redis_server

    a = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    head = (f"# statekeel --scale {started:%Y-%m-%d %H:%M UTC}; {platform.machine()} {os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.1f}; {a.turns} turns per conversation, repeat {a.repeat}")
    print(head, file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    for backend in [b.strip() for b in a.backends.split(",") if b.strip()]:
        if backend == "sqlite":
            rows += run_sqlite(a)
            continue
        given = a.pg_url if backend == "postgres" else a.redis_url
        if given:
            rows += run_backend(backend, given, a)
            continue
        server, _ = postgres_server() if backend == "postgres" else redis_server()
        with server:
            rows += run_backend(backend, server.url, a)
    print(head + "\n\n" + table(rows))
    if a.out:
        Path(a.out).write_text(json.dumps({"started": started.isoformat(), "args": vars(a), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
