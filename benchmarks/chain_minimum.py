"""The least a tamper-evident turn must cost, next to what statekeel's chain costs, in one run (issue 11).

A hash-chained store with a head per partition has, per turn, at the least: a MAC per message and for
the state record (over the value, its place and the tag before it), the head encoded and MACed, a
24-byte trailer on every value (the writer's clock and the tag), and the head written in the same
atomic batch, compare-and-set. This script writes exactly that straight against the backend
(``statekeel.backends.open_backend``, the ops of ``statekeel.protocol``; none of statekeel's chain
code) — the *floor* — beside the backend's own plain turn (the two ops statekeel's plain store sends),
and statekeel's plain and chained stores through the public API. The four get the same turns
interleaved in a rotating order (noise falls on all alike). Reported per backend:

* ``floor_vs_backend``: the floor's turn over the backend's plain turn (median of per-round ratios);
* ``chain_vs_off``: statekeel's chained turn over its plain turn (what ``bench_integrity`` reports);
* ``extra_us``: what each adds per turn (median turn minus its plain median), and
  ``floor_vs_off``: statekeel's plain turn plus the floor's extra, over statekeel's plain turn — the
  best ratio any chain over this backend could report against statekeel's plain store;
* ``left_us``: what a 1.15x target leaves for the chain's own logic above the floor (negative: the
  floor alone is past it).

    python benchmarks/chain_minimum.py --backends sqlite,postgres,redis --turns 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import statekeel  # noqa: E402
from statekeel.backends import open_backend  # noqa: E402
from statekeel.protocol import ANY, KEEP, Append, Backend, Put, Record  # noqa: E402
from statekeel.testing.servers import ServerPool  # noqa: E402

MODES = ("off", "chain", "backend", "floor")
TARGET = 1.15
LOG, STATE, HEAD = "session/t1/history", "session/t1/state/turn", "session/t1/~head"


def _messages(i: int) -> tuple[str, str]:
    return f"question {i} " + "u" * 180, f"answer {i} " + "a" * 780


class Floor:
    """The least a chained turn does, on ``backend``: 4 MACs, the head's JSON, trailers, the head put."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend
        key = hashlib.sha256(b"floor mac key").digest().ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(x ^ 0x36 for x in key))
        self.outer = hashlib.sha256(bytes(x ^ 0x5C for x in key))
        self.seq, self.tag = 0, bytes(16)
        self.state_v: int | None = None
        self.head_v: int | None = None
        self.created = time.time()

    def mac(self, *parts: bytes) -> bytes:
        h = self.inner.copy()
        h.update(b"".join(parts))
        o = self.outer.copy()
        o.update(h.digest())
        return o.digest()[:16]

    def turn(self, i: int) -> None:
        clock = time.time()
        stamp = struct.pack(">d", clock)
        user, assistant = (m.encode() for m in _messages(i))
        state = b'{"turn":%d}' % i
        seq = self.seq
        t1 = self.mac(b"e", struct.pack(">Qd", seq + 1, clock), LOG.encode(), b"msg:user", user, self.tag)
        t2 = self.mac(b"e", struct.pack(">Qd", seq + 2, clock), LOG.encode(), b"msg:assistant", assistant, t1)
        version = (self.state_v or 0) + 1
        t3 = self.mac(b"r", struct.pack(">Qdd", version, self.created, clock), STATE.encode(), b"json", state)
        head = json.dumps({"l": {LOG: [1, "0" * 32, seq + 2, t2.hex(), None]},
                           "r": {"session/t1/meta": [1, t3.hex(), self.created, None],
                                 STATE: [version, t3.hex(), self.created, None]}}, separators=(",", ":")).encode()
        t4 = self.mac(b"r", struct.pack(">Qdd", (self.head_v or 0) + 1, self.created, clock), HEAD.encode(), head)
        results = self.b.apply([
            Append(LOG, ((user + stamp + t1, "msg:user+chain"), (assistant + stamp + t2, "msg:assistant+chain")),
                   KEEP, seq + 1),
            Put(STATE, state + stamp + t3, "json+chain", self.state_v, None),
            Put(HEAD, head + stamp + t4, "json+chain", self.head_v, None),
        ], now=clock)
        state_rec, head_rec = results[1], results[2]
        assert isinstance(state_rec, Record) and isinstance(head_rec, Record)
        self.seq, self.tag, self.state_v, self.head_v = seq + 2, t2, state_rec.version, head_rec.version


def _backend_turn(backend: Backend) -> Callable[[int], None]:
    def turn(i: int) -> None:
        user, assistant = (m.encode() for m in _messages(i))
        backend.apply([Append(LOG, ((user, "msg:user"), (assistant, "msg:assistant"))),
                       Put(STATE, b'{"turn":%d}' % i, "json", ANY, None)])

    return turn


def _store_turn(store: statekeel.Store) -> Callable[[int], None]:
    session = store.session("t1")

    def turn(i: int) -> None:
        user, assistant = _messages(i)
        session.append({"role": "user", "content": user}, {"role": "assistant", "content": assistant},
                       state={"turn": i})

    return turn


def _url(backend: str, tmp: Path, mode: str, servers: ServerPool) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/{mode}.db"
    run = tmp.name.replace("-", "_").lower()
    if backend == "postgres":
        return f"{servers.postgres().url}?schema=floor_{mode}_{run}"
    return f"{servers.redis().url}?prefix=floor_{mode}_{run}"


def run(backend: str, turns: int, servers: ServerPool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        off = statekeel.open(_url(backend, tmp, "off", servers))
        chain = statekeel.open(_url(backend, tmp, "chain", servers), integrity=statekeel.Integrity(key=b"c" * 32))
        raw, floor_b = (open_backend(_url(backend, tmp, m, servers)) for m in ("backend", "floor"))
        try:
            floor = Floor(floor_b)
            turn = {"off": _store_turn(off), "chain": _store_turn(chain), "backend": _backend_turn(raw),
                    "floor": floor.turn}
            lat: dict[str, list[float]] = {m: [] for m in MODES}
            order = list(MODES)
            shuffle = random.Random(turns).shuffle
            for i in range(turns + 100):
                shuffle(order)  # each mode after each other alike (the one before warms the caches it shares)
                for m in order:
                    t = time.perf_counter()
                    turn[m](i)
                    if i >= 100:  # the first turns create the rows
                        lat[m].append(time.perf_counter() - t)
        finally:
            off.close()
            chain.close()
            raw.close()
            floor_b.close()
    med = {m: statistics.median(v) for m, v in lat.items()}
    ratio = {(a, b): statistics.median(x / y for x, y in zip(lat[a], lat[b])) for a, b in
             (("chain", "off"), ("floor", "backend"))}
    extra = {"chain": med["chain"] - med["off"], "floor": med["floor"] - med["backend"]}
    return {
        "median_us": {m: round(v * 1e6, 1) for m, v in med.items()},
        "chain_vs_off": round(ratio["chain", "off"], 3),
        "floor_vs_backend": round(ratio["floor", "backend"], 3),
        "extra_us": {m: round(v * 1e6, 1) for m, v in extra.items()},
        "floor_vs_off": round((med["off"] + extra["floor"]) / med["off"], 3),
        "left_us": round(((TARGET - 1) * med["off"] - extra["floor"]) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite")
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per backend; each figure is the median over them")
    args = ap.parse_args(argv)
    pool = ServerPool(required=False)
    try:
        for backend in args.backends.split(","):
            runs = []
            for _ in range(args.repeat):
                runs.append({"load_avg_1m": round(os.getloadavg()[0], 2), **run(backend, args.turns, pool)})
                print(json.dumps({backend: runs[-1]}), flush=True)
            summary = {k: statistics.median(r[k] for r in runs) for k in
                       ("chain_vs_off", "floor_vs_backend", "floor_vs_off", "left_us")}
            print(json.dumps({backend: {"repeat": len(runs), **summary}}), flush=True)
    finally:
        pool.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
