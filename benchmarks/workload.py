"""The reference chat-turn workload (identical payloads to shared/bench/peers).

Each turn is one ~200-byte user message and one ~800-byte assistant message,
generated with ``random.Random(7)`` exactly as the peer scripts do, so every
system persists byte-identical text.
"""
from __future__ import annotations

import os
import random
import statistics
import string

ALPHABET = string.ascii_letters + "     "


def make_turns(n: int) -> list[tuple[str, str]]:
    rnd = random.Random(7)

    def text(k: int) -> str:
        return "".join(rnd.choice(ALPHABET) for _ in range(k))

    return [(text(200), text(800)) for _ in range(n)]


def payload_bytes(turns: list[tuple[str, str]]) -> int:
    return sum(len(u) + len(a) for u, a in turns)


def latency_stats(lat_s: list[float]) -> dict:
    """Median and p99 in ms, p99 computed exactly like the peer scripts."""
    lat = sorted(lat_s)
    return {
        "median_ms_per_turn": round(statistics.median(lat) * 1e3, 3),
        "p99_ms_per_turn": round(lat[max(int(len(lat) * 0.99) - 1, 0)] * 1e3, 3),
        "total_s": round(sum(lat), 3),
    }


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def sqlite_checkpointed_bytes(db_path: str, workdir: str) -> int:
    """Size of the work dir after ``PRAGMA wal_checkpoint(TRUNCATE)`` on db_path."""
    import sqlite3

    if os.path.exists(db_path):
        c = sqlite3.connect(db_path)
        try:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            c.close()
    return dir_bytes(workdir)
