"""Tiered Redis-hot / PostgreSQL-cold store vs plain Redis and plain PostgreSQL (issue 17).

Four stores get the same reference turns (a 200-byte user and an 800-byte
assistant message plus a state put) *interleaved* — turn i goes to each store
in a rotating order, so noise falls on all alike:

* plain Redis (AOF ``appendfsync always``) and tiered **write-behind** over it
  (a turn returns once Redis accepted it and its queue entry; target <= 1.2x);
* plain PostgreSQL and tiered **write-through** (a turn returns once PostgreSQL
  committed; Redis is updated after).

Each session is read once before the timed turns, so the tiered ones are cached in Redis (as
an agent's session is: it reads its history each turn).

Then, one store at a time, the round trips and bytes per turn each tier sees
(Redis ``INFO stats``: commands and network input; PostgreSQL
``pg_stat_database``: committed transactions, i.e. statements in autocommit), and
the hydration of a cold 10,000-message session (Redis holds none of it; the
first read copies the partition into Redis) against the same read on plain
PostgreSQL (target <= 1.5x), median of interleaved rounds, and the cost of one
flush of ``--turns`` queued write-behind turns (wall and CPU time of the
flushing thread, PostgreSQL round trips and transactions).

    python benchmarks/bench_tiered.py --turns 1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import redis  # noqa: E402

import statekeel  # noqa: E402
from statekeel.backends.tiered import TieredBackend, tiered_url  # noqa: E402
from statekeel.backends.tiered.hydrate import drop, hydrate  # noqa: E402
from statekeel.backends.tiered.names import QUEUE, WATERMARK, marker  # noqa: E402
from statekeel.testing.servers import ServerPool  # noqa: E402

STORES = ("redis", "write-behind", "postgres", "write-through")


def _urls(servers: ServerPool) -> dict[str, str]:
    rd, pg = servers.redis().url, servers.postgres().url
    return {
        "redis": f"{rd}?prefix=b_r",
        "write-behind": tiered_url(f"{rd}?prefix=b_wb", f"{pg}?schema=b_wb", mode="write-behind"),
        "postgres": f"{pg}?schema=b_pg",
        "write-through": tiered_url(f"{rd}?prefix=b_wt", f"{pg}?schema=b_wt", mode="write-through"),
    }


def _turn(session: Any, i: int) -> None:
    session.append({"role": "user", "content": f"question {i} " + "u" * 180},
                   {"role": "assistant", "content": f"answer {i} " + "a" * 780}, state={"turn": i})  # fmt: skip


def per_turn(stores: dict[str, statekeel.Store], turns: int) -> dict[str, Any]:
    sessions = {name: store.session("t1") for name, store in stores.items()}
    for name, store in stores.items():  # an agent reads its history: the session is cached in Redis
        _turn(sessions[name], -1)
        if isinstance(store.storage, TieredBackend):
            _cache(store, sessions[name])
    lat: dict[str, list[float]] = {name: [] for name in STORES}
    for i in range(turns):
        for name in STORES[i % 4 :] + STORES[: i % 4]:
            t = time.perf_counter()
            _turn(sessions[name], i)
            lat[name].append(time.perf_counter() - t)
    ratio = {  # the median of per-round ratios: both stores of a round saw the same noise
        "write-behind / redis": statistics.median(a / b for a, b in zip(lat["write-behind"], lat["redis"])),
        "write-through / postgres": statistics.median(a / b for a, b in zip(lat["write-through"], lat["postgres"])),
    }
    return {"median_ms": {n: round(statistics.median(v) * 1e3, 3) for n, v in lat.items()},
            "ratio": {k: round(v, 2) for k, v in ratio.items()}}  # fmt: skip


def _cache(store: statekeel.Store, session: Any) -> None:
    """Read ``session`` until its partition is in Redis (a miss copies it in the background)."""
    tiers = store.storage
    assert isinstance(tiers, TieredBackend)
    for _ in range(50):
        session.history(last=1)
        tiers.hydrator.wait()
        if tiers.hot.get(marker(f"session/{session.id}")) is not None:
            return
    raise RuntimeError(f"session {session.id} never got cached in Redis")


def traffic(stores: dict[str, statekeel.Store], servers: ServerPool, turns: int) -> dict[str, Any]:
    """Round trips per turn to each tier (counted in the client: one Redis send — a command or a
    pipeline — or one PostgreSQL statement or pipeline is one) and the bytes Redis received
    (its own ``total_net_input_bytes``), one store at a time."""
    rd = redis.Redis(port=servers.redis().port)
    out: dict[str, Any] = {}
    with _counting() as count:
        for name in STORES:
            session = stores[name].session("traffic")
            _turn(session, -1)  # the session exists ...
            if isinstance(stores[name].storage, TieredBackend):
                _cache(stores[name], session)  # ... and is cached in Redis, as for an agent that reads it
            before = {**count, "redis_bytes_in": rd.info("stats")["total_net_input_bytes"]}
            for i in range(turns):
                _turn(session, i)
            if isinstance(stores[name].storage, TieredBackend):
                stores[name].storage.flush()  # write-behind: the replay into PostgreSQL is part of the cost
            after = {**count, "redis_bytes_in": rd.info("stats")["total_net_input_bytes"] - 1}  # -1: INFO itself
            out[name] = {k: round((after[k] - before[k]) / turns, 2) for k in after}
    return out


@contextlib.contextmanager
def _counting() -> Iterator[dict[str, int]]:
    """Count round trips in the drivers (benchmark instrumentation; the tests never patch drivers)."""
    from redis.connection import Connection

    from statekeel.backends.postgres.backend import PostgresBackend

    count = {"redis_round_trips": 0, "pg_round_trips": 0}
    saved = Connection.send_packed_command, PostgresBackend._rows, PostgresBackend._execute

    def counted(fn: Any, key: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            count[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    Connection.send_packed_command = counted(saved[0], "redis_round_trips")  # type: ignore[method-assign]
    PostgresBackend._rows = counted(saved[1], "pg_round_trips")  # type: ignore[method-assign]
    PostgresBackend._execute = counted(saved[2], "pg_round_trips")  # type: ignore[method-assign]
    try:
        yield count
    finally:
        Connection.send_packed_command, PostgresBackend._rows, PostgresBackend._execute = saved  # type: ignore[method-assign]


def loss_window(servers: ServerPool, turns: int) -> dict[str, Any]:
    """Write-behind with the default flush_every/flush_interval: after each turn, how many accepted
    batches are not in PostgreSQL yet and how old the oldest is — what a wipe of Redis would lose."""
    rd, pg = servers.redis().url, servers.postgres().url
    store = statekeel.open(tiered_url(f"{rd}?prefix=b_loss", f"{pg}?schema=b_loss", mode="write-behind"))
    backend = store.storage
    assert isinstance(backend, TieredBackend)
    session, depth, age = store.session("loss"), [], []
    try:
        for i in range(turns):
            _turn(session, i)
            pending = _pending(backend)
            depth.append(len(pending))
            age.append(time.time() - pending[0].created_at if pending else 0.0)
    finally:
        store.close()
    return {"turns": turns, "flush_every": backend.settings.flush_every, "flush_interval_s": backend.settings.flush_interval,
            "pending_batches_median": statistics.median(depth), "pending_batches_max": max(depth),
            "oldest_pending_s_max": round(max(age), 3)}  # fmt: skip


def _pending(backend: TieredBackend) -> list[Any]:
    info = backend.hot.log_info(QUEUE)
    mark = backend.cold.get(WATERMARK)
    doc = json.loads(mark.data) if mark is not None else {}
    done = int(doc["seq"]) if info is not None and doc.get("epoch") == repr(info.created_at) else 0
    return backend.hot.read(QUEUE, start=done + 1) if info is not None else []


def flush_cost(servers: ServerPool, turns: int) -> dict[str, Any]:
    """One flush of ``turns`` queued write-behind turns: the replay into PostgreSQL (grouped: a page
    of the queue per transaction). Transactions are the ids PostgreSQL assigned meanwhile."""
    rd, pg = servers.redis().url, servers.postgres().url
    url = tiered_url(f"{rd}?prefix=b_fl", f"{pg}?schema=b_fl", mode="write-behind", flush_every=10**6,
                     flush_interval=3600)  # fmt: skip
    with statekeel.open(url) as store, _counting() as count, _xids(pg) as xid:
        backend = store.storage
        assert isinstance(backend, TieredBackend)
        session = store.session("flush")
        for i in range(turns):
            _turn(session, i)
        trips, first = count["pg_round_trips"], xid()
        wall, cpu = time.perf_counter(), time.thread_time()
        batches = backend.flush()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        return {"batches": batches, "flush_ms": round(wall * 1e3, 1), "flush_cpu_ms": round(cpu * 1e3, 1),
                "pg_round_trips": count["pg_round_trips"] - trips, "pg_transactions": xid() - first - 1}  # fmt: skip


@contextlib.contextmanager
def _xids(url: str) -> Iterator[Callable[[], int]]:
    """A function returning a new PostgreSQL transaction id each call (they count write transactions)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        yield lambda: int(conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchall()[0][0])


def hydration(servers: ServerPool, messages: int, rounds: int) -> dict[str, Any]:
    """A cold ``messages``-message session read through the tiered store (Redis empty) vs plain PostgreSQL."""
    rd, pg = servers.redis().url, servers.postgres().url
    cold_url = f"{pg}?schema=b_hyd"
    with statekeel.open(cold_url) as cold:
        s = cold.session("long")
        for i in range(0, messages, 100):
            s.append(*({"role": "user", "content": f"m{j} " + "x" * 200} for j in range(i, i + 100)))
    plain = statekeel.open(cold_url)
    tiered = statekeel.open(tiered_url(f"{rd}?prefix=b_hyd", cold_url))
    backend = tiered.storage
    assert isinstance(backend, TieredBackend)
    cold_ms, hot_ms, hydrate_ms, install_ms = [], [], [], []
    try:
        for _ in range(rounds):
            drop(backend.hot, ["session/long"])
            hydrate_ms.append(_timed(lambda: _read(tiered)))  # served from PostgreSQL, copied into Redis beside it
            backend.hydrator.wait()
            hot_ms.append(_timed(lambda: _read(tiered)))
            cold_ms.append(_timed(lambda: _read(plain)))
            drop(backend.hot, ["session/long"])
            install_ms.append(_timed(lambda: hydrate(backend.hot, backend.cold, "session/long")))
    finally:
        plain.close()
        tiered.close()
    return {
        "messages": messages,
        "postgres_read_ms": round(statistics.median(cold_ms) * 1e3, 2),
        "tiered_cold_read_ms": round(statistics.median(hydrate_ms) * 1e3, 2),
        "tiered_hot_read_ms": round(statistics.median(hot_ms) * 1e3, 2),
        "copy_into_redis_ms": round(statistics.median(install_ms) * 1e3, 2),
        "ratio": round(statistics.median(h / c for h, c in zip(hydrate_ms, cold_ms)), 2),
    }


def _read(store: statekeel.Store) -> None:
    found = store.find_session("long")
    assert found is not None and found.history()


def _timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--traffic-turns", type=int, default=200)
    ap.add_argument("--loss-turns", type=int, default=500)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    servers = ServerPool(required=True)
    try:
        stores = {name: statekeel.open(url) for name, url in _urls(servers).items()}
        try:
            result = {"turns": args.turns, "per_turn": per_turn(stores, args.turns),
                      "traffic_per_turn": traffic(stores, servers, args.traffic_turns)}  # fmt: skip
        finally:
            for store in stores.values():
                store.close()
        result["flush"] = flush_cost(servers, args.turns)
        result["loss_window"] = loss_window(servers, args.loss_turns)
        result["hydration"] = hydration(servers, args.messages, args.rounds)
        print(json.dumps(result, indent=2))
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
