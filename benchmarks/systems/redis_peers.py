"""Redis rows: raw redis-py (AOF always) and OpenAI Agents SDK RedisSession (as peer_redis.py).

The runner flushes the server before each system and configures
appendonly yes / appendfsync always; storage is what the keys take (MEMORY USAGE, summed).
"""
from __future__ import annotations

import asyncio
import json
import time

from benchmarks.systems import best_ms


def _used_memory(r) -> int:
    """What the keys take: ``MEMORY USAGE`` of every key, summed (all of each value, SAMPLES 0).

    Not ``INFO memory``'s ``used_memory``: FLUSHALL between rows keeps what the first row of a
    run grew (the Lua script cache and VM, allocator arenas, the AOF buffers of turning AOF on), so
    the first Redis row of a run was charged ~0.4 MB the later ones were not."""
    return sum(r.memory_usage(key, samples=0) or 0 for key in r.scan_iter(count=1000))


def prepare(url: str):
    """Same durability for every Redis row: AOF on, fsync before every reply; empty db."""
    import redis

    r = redis.Redis.from_url(url)
    r.config_set("appendonly", "yes")
    r.config_set("appendfsync", "always")
    r.flushall()
    return r, _used_memory(r)


def raw_redis(turns, ctx):
    r, m0 = prepare(ctx["redis_url"])
    lat = []
    for i, (u, a) in enumerate(turns):
        t = time.perf_counter()
        p = r.pipeline(transaction=True)
        p.rpush("t1:m", json.dumps({"role": "user", "content": u}), json.dumps({"role": "assistant", "content": a}))
        p.hset("t1:s", "turn", i)
        p.execute()
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    items = r.lrange("t1:m", 0, -1)
    load = time.perf_counter() - t
    assert len(items) == 2 * len(turns)
    best = best_ms(lambda: r.lrange("t1:m", 0, -1))
    as_messages = best_ms(lambda: list(map(json.loads, r.lrange("t1:m", 0, -1))))
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "reload_best_ms": best, "reload_messages_best_ms": as_messages,
            "storage_bytes": _used_memory(r) - m0}


def openai_redis(turns, ctx):
    from agents.extensions.memory import RedisSession

    url = ctx["redis_url"]
    r, m0 = prepare(url)
    lat = []

    async def run():
        s = RedisSession.from_url("t1", url=url)
        for u, a in turns:
            t = time.perf_counter()
            await s.add_items([{"role": "user", "content": u}, {"role": "assistant", "content": a}])
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        items = await s.get_items()
        dt = time.perf_counter() - t
        assert len(items) == 2 * len(turns)
        return dt

    load = asyncio.run(run())
    return {"lat": lat, "reload_ms": round(load * 1e3, 2), "storage_bytes": _used_memory(r) - m0}
