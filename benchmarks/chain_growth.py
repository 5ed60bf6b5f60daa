#!/usr/bin/env python3
"""A tamper-evident turn against the number of records in its session (issue 11's per-turn cost).

    python benchmarks/chain_growth.py                 # SQLite, durability=normal

A chained store keeps one head record per partition listing every log and record written in
it (version, MAC, expiry), written again in every batch. Until session 45 it was written whole,
so a turn's cost grew with what its session holds (the state keys it has set, every idempotency
key — each one a record kept for 24 hours); since then a head past 32 records lists them in
buckets and a batch rewrites the root and the buckets it touches. Two tables, each against the
same turns on a plain store:

  state keys   sessions holding 1, 50, 200, 1,000 and 10,000 state keys, then 1,500 reference turns
  idempotency  3,000 reference turns, each with its own idempotency key: the first and the last
               200 turns' medians
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))

import statekeel  # noqa: E402
from statekeel.core import layout  # noqa: E402

U, A = "u" * 200, "a" * 800


def _store(d: str, name: str, chain: bool) -> statekeel.Store:
    opts = {"integrity": statekeel.Integrity(key=b"c" * 32)} if chain else {}
    return statekeel.open(f"sqlite:///{d}/{name}.db?durability=normal", **opts)


def _head_bytes(store: statekeel.Store, session: str) -> str:
    """The session's root head and its largest bucket, in bytes (a turn rewrites the root and its buckets)."""
    part = f"session/{session}"
    rec = store.storage.get(layout.chain_head_key(part))
    if rec is None:
        return "-"
    buckets = [len(r.data) for r in store.storage.scan(layout.chain_head_key(part) + "~", limit=10_000)]
    return f"{len(rec.data)}" + (f" + {max(buckets)} ({len(buckets)} buckets)" if buckets else "")


def state_keys(d: str, n: int, chain: bool, turns: int = 1500) -> tuple[float, str]:
    with _store(d, f"keys{n}{chain}", chain) as store:
        s = store.session("t1")
        for k in range(n):
            s.state.put(f"key{k}", {"v": k})
        lat = []
        for i in range(turns):
            t = time.perf_counter()
            s.append({"role": "user", "content": U}, {"role": "assistant", "content": A}, state={"turn": i})
            lat.append(time.perf_counter() - t)
        return statistics.median(lat) * 1e6, _head_bytes(store, "t1")


def idempotency(d: str, chain: bool, turns: int = 3000) -> tuple[float, float, str]:
    with _store(d, f"idem{chain}", chain) as store:
        s = store.session("t1")
        lat = []
        for i in range(turns):
            t = time.perf_counter()
            s.append({"role": "user", "content": U}, {"role": "assistant", "content": A}, state={"turn": i},
                     idempotency_key=f"turn-{i}")
            lat.append(time.perf_counter() - t)
        return statistics.median(lat[:200]) * 1e6, statistics.median(lat[-200:]) * 1e6, _head_bytes(store, "t1")


def main() -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, SQLite normal")
    with tempfile.TemporaryDirectory() as d:
        print("state keys | off µs/turn | chain µs/turn | chain ÷ off | head bytes (root + largest bucket)")
        for n in (1, 50, 200, 1000, 10000):
            off, _ = state_keys(d, n, False)
            chain, head = state_keys(d, n, True)
            print(f"{n:10d} | {off:10.1f} | {chain:13.1f} | {chain / off:11.2f} | {head}")
        print("idempotency key per turn | first 200 µs/turn | last 200 of 3,000 µs/turn | head bytes")
        for chain in (False, True):
            first, last, head = idempotency(d, chain)
            print(f"{'chain' if chain else 'off':24s} | {first:17.1f} | {last:25.1f} | {head}")


if __name__ == "__main__":
    main()
