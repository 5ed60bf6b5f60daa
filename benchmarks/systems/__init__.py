"""Registry of benchmarked systems.

Each entry names a function ``fn(turns, ctx) -> dict`` (ctx: workdir, pg_dsn,
redis_url) returning ``lat`` (per-turn seconds), ``reload_ms``, ``storage_bytes``
and optional extras. ``baseline`` marks the raw driver whose median the other
rows of the same (backend, durability) are divided by.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    name: str
    backend: str
    target: str  # "module:function" under benchmarks.systems
    durability: str = "full"
    baseline: bool = False
    slow: bool = False  # uses --slow-turns (LangGraph: O(n^2) checkpoints)
    kind: str = "turns"  # "turns" or "scaling"
    note: str = ""


SYSTEMS = [
    Spec("raw-sqlite-wal", "sqlite", "sqlite_raw:raw_wal_full", baseline=True,
         note="sqlite3 WAL synchronous=FULL, as peer_turns.py raw-sqlite-wal (messages only)"),
    Spec("raw-sqlite-wal+state", "sqlite", "sqlite_raw:raw_wal_full_state",
         note="raw baseline plus the state upsert in the same transaction"),
    Spec("openai-sqlite", "sqlite", "sqlite_peers:openai_sqlite", note="OpenAI Agents SDK SQLiteSession"),
    Spec("langgraph-sqlite", "sqlite", "sqlite_peers:langgraph_sqlite", slow=True, note="LangGraph SqliteSaver"),
    Spec("statekeel-sqlite", "sqlite", "statekeel_sys:sk_sqlite", note="statekeel sqlite:/// (synchronous=FULL)"),
    Spec("raw-sqlite-wal-normal", "sqlite", "sqlite_raw:raw_wal_normal", durability="normal", baseline=True,
         note="sqlite3 WAL synchronous=NORMAL"),
    Spec("raw-sqlite-wal-normal+state", "sqlite", "sqlite_raw:raw_wal_normal_state", durability="normal",
         note="raw NORMAL baseline plus the state upsert the reference turn includes"),
    Spec("statekeel-sqlite-normal", "sqlite", "statekeel_sys:sk_sqlite_normal", durability="normal",
         note="statekeel sqlite:///...?durability=normal"),
    Spec("statekeel-sqlite-normal-noguard", "sqlite", "statekeel_sys:sk_sqlite_normal_noguard", durability="normal",
         note="as above with secret_guard='off' (attribution: cost of the secret scan)"),
    Spec("statekeel-sqlite-encrypted", "sqlite", "statekeel_sys:sk_sqlite_encrypted",
         note="statekeel sqlite:/// with AES-GCM encryption at rest"),
    Spec("statekeel-sqlite-chain", "sqlite", "statekeel_sys:sk_sqlite_chain",
         note="statekeel sqlite:/// tamper-evident (integrity='chain')"),
    Spec("statekeel-sqlite-chain-encrypted", "sqlite", "statekeel_sys:sk_sqlite_chain_encrypted",
         note="statekeel sqlite:/// tamper-evident and encrypted"),
    Spec("statekeel-sqlite-async", "sqlite", "statekeel_sys:sk_sqlite_async",
         note="statekeel asyncio API: await s.append(...)"),
    Spec("raw-files-append", "files", "statekeel_sys:raw_files_append", baseline=True,
         note="JSON lines appended to one file + fdatasync per turn (no state, no atomic batch)"),
    Spec("statekeel-files", "files", "statekeel_sys:sk_files", note="statekeel file:/// (flock, journal, fsync)"),
    Spec("statekeel-history-scaling", "sqlite", "statekeel_sys:sk_history_scaling", kind="scaling",
         note="history(last=20): 100,000-message vs 1,000-message session"),
    Spec("raw-pg", "postgres", "pg_peers:raw_pg", baseline=True,
         note="psycopg 3, autocommit + transaction(), as peer_pg.py"),
    Spec("langgraph-pg", "postgres", "pg_peers:langgraph_pg", slow=True, note="LangGraph PostgresSaver"),
    Spec("statekeel-pg", "postgres", "statekeel_sys:sk_pg", note="statekeel postgresql://"),
    Spec("statekeel-pg-encrypted", "postgres", "statekeel_sys:sk_pg_encrypted",
         note="statekeel postgresql:// with AES-GCM encryption at rest"),
    Spec("statekeel-pg-chain", "postgres", "statekeel_sys:sk_pg_chain",
         note="statekeel postgresql:// tamper-evident (integrity='chain')"),
    Spec("statekeel-pg-chain-encrypted", "postgres", "statekeel_sys:sk_pg_chain_encrypted",
         note="statekeel postgresql:// tamper-evident and encrypted"),
    Spec("statekeel-pg-async", "postgres", "statekeel_sys:sk_pg_async", note="statekeel asyncio API on PostgreSQL"),
    Spec("raw-redis", "redis", "redis_peers:raw_redis", baseline=True,
         note="redis-py MULTI rpush+hset, AOF always, as peer_redis.py"),
    Spec("openai-redis", "redis", "redis_peers:openai_redis", note="OpenAI Agents SDK RedisSession"),
    Spec("statekeel-redis", "redis", "statekeel_sys:sk_redis", note="statekeel redis://"),
    Spec("statekeel-redis-async", "redis", "statekeel_sys:sk_redis_async", note="statekeel asyncio API on Redis"),
]

BY_NAME = {s.name: s for s in SYSTEMS}

RELOAD_TRIES = 5


def best_ms(fn, tries: int = RELOAD_TRIES) -> float:
    """The fastest of ``tries`` calls of ``fn`` in ms: the steady reload cost, compared across rows as
    ``reload_vs_raw`` (the first call, with its cold caches, stays in ``reload_ms``). A raw row also reports
    ``reload_messages_best_ms``: the fetch turned into message dicts (tuples → dicts; Redis: JSON parsed), what
    ``history()`` returns — ``reload_vs_raw_messages`` compares with that."""
    import time

    best = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best * 1e3, 3)


def to_messages(rows) -> list[dict]:
    """``(role, content)`` rows as the message dicts an agent uses: the raw rows' ``reload_messages_best_ms``
    (``reload_vs_raw_messages``: statekeel's ``history()`` returns dicts, a raw fetch returns tuples)."""
    return [{"role": role, "content": content} for role, content in rows]
