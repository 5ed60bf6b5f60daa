"""The least an encrypted or a tamper-evident turn can cost, beside what statekeel's cost, in one run (issue 11).

Two *floors*, written straight against the backend (``statekeel.backends.open_backend`` and the ops of
``statekeel.protocol``; none of statekeel's encryption or chain code):

* ``sealed`` (for ``encrypted``): every value sealed with AES-GCM (a 12-byte nonce, a 16-byte tag, the
  key version; its place — key and version, or log and seq — as associated data), so every append
  names its seq and every put the version it replaces;
* ``floor`` (for ``chain``): what a hash-chained store with a head per partition does per turn at the
  least — a MAC per message and for the state record (over the value, its place and the tag before
  it), the head encoded and MACed, a 24-byte trailer on every value (the writer's clock and the tag),
  and the head written in the same atomic batch, compare-and-set.

Beside them the backend's own plain turn (the two ops statekeel's plain store sends) and statekeel's
plain, encrypted and chained stores through the public API. All get the same turns interleaved, in an
order shuffled each round (noise, and the caches one mode warms for the next, fall on all alike). With
``--modes chain`` (or ``encrypted``) four handles run, as ``bench_integrity.py`` runs four stores: the
more handles interleave, the colder each one's caches and the higher every ratio. Reported per mode:

* ``vs_off``: statekeel's turn over its plain turn (median of per-round ratios, as
  ``bench_integrity.py``), and ``floor_vs_backend``: the floor's turn over the backend's;
* ``extra_us``: what each adds per turn (its median turn minus the plain one's);
* ``floor_vs_off``: statekeel's plain turn plus the floor's extra, over statekeel's plain turn — the
  best ratio any implementation over this backend could report against statekeel's plain store;
* ``left_us``: what the target (1.1x encrypted, 1.15x chain) leaves for statekeel's own logic above the
  floor (negative: the floor alone is past it).

    python benchmarks/integrity_minimum.py --backends sqlite,postgres,redis --modes chain --turns 2000 --repeat 3
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

REPO = Path(__file__).resolve().parent.parent
for _p in (str(REPO / "src"), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import statekeel  # noqa: E402
from benchmarks.bench_integrity import _url  # noqa: E402  (a fresh schema / prefix per run and mode)
from statekeel.backends import open_backend  # noqa: E402
from statekeel.protocol import ANY, KEEP, Append, Backend, Put, Record  # noqa: E402
from statekeel.testing.servers import ServerPool  # noqa: E402

MODES = ("off", "encrypted", "chain", "backend", "sealed", "floor")
TARGETS = {"encrypted": ("sealed", 1.10), "chain": ("floor", 1.15)}
"""statekeel's mode -> (its floor, the issue's target)."""
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


class Sealed:
    """The least an encrypted turn does, on ``backend``: each value sealed to its place with AES-GCM."""

    def __init__(self, backend: Backend) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.b, self.encrypt = backend, AESGCM(b"s" * 32).encrypt
        self.n, self.seq, self.version = 0, 0, 0
        self.head = bytes([2]) + (1).to_bytes(4, "big")

    def seal(self, data: bytes, where: bytes, pos: int) -> bytes:
        self.n += 1
        nonce = self.n.to_bytes(12, "big")
        return self.head + nonce + self.encrypt(nonce, data, where + pos.to_bytes(8, "big"))

    def turn(self, i: int) -> None:
        user, assistant = (m.encode() for m in _messages(i))
        seq, version = self.seq, self.version
        self.b.apply([
            Append(LOG, ((self.seal(user, b"e" + LOG.encode(), seq + 1), "msg+aesgcm"),
                         (self.seal(assistant, b"e" + LOG.encode(), seq + 2), "msg+aesgcm")), KEEP, seq + 1),
            Put(STATE, self.seal(b'{"turn":%d}' % i, b"r" + STATE.encode(), version + 1), "json+aesgcm",
                version or None, None),
        ])
        self.seq, self.version = seq + 2, version + 1


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


def run(backend: str, turns: int, servers: ServerPool, compared: tuple[str, ...] = tuple(TARGETS)) -> dict[str, Any]:
    """One run comparing the modes ``compared`` (of :data:`TARGETS`) with their floors, the plain store and
    the backend: six handles for both, four for one (``bench_integrity.py`` runs four stores)."""
    modes = [m for m in MODES if m in ("off", "backend") or m in compared or m in (TARGETS[c][0] for c in compared)]
    options: dict[str, dict[str, Any]] = {
        "off": {}, "encrypted": {"encryption": statekeel.Encryption(master_key=b"k" * 32)},
        "chain": {"integrity": statekeel.Integrity(key=b"c" * 32)}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        stores = {m: statekeel.open(_url(backend, tmp, m, servers), **options[m]) for m in modes if m in options}
        raw = {m: open_backend(_url(backend, tmp, m, servers)) for m in modes if m not in options}
        floors: dict[str, Callable[[Backend], Callable[[int], None]]] = {
            "backend": _backend_turn, "sealed": lambda b: Sealed(b).turn, "floor": lambda b: Floor(b).turn}
        try:
            turn = {**{m: _store_turn(s) for m, s in stores.items()}, **{m: floors[m](b) for m, b in raw.items()}}
            lat: dict[str, list[float]] = {m: [] for m in modes}
            order = list(modes)
            shuffle = random.Random(turns).shuffle
            for i in range(turns + 100):
                shuffle(order)  # each mode after each other alike (the one before warms the caches it shares)
                for m in order:
                    t = time.perf_counter()
                    turn[m](i)
                    if i >= 100:  # the first turns create the rows
                        lat[m].append(time.perf_counter() - t)
        finally:
            for store in stores.values():
                store.close()
            for handle in raw.values():
                handle.close()
    med = {m: statistics.median(v) for m, v in lat.items()}

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x / y for x, y in zip(lat[a], lat[b])), 3)

    out: dict[str, Any] = {"median_us": {m: round(v * 1e6, 1) for m, v in med.items()}}
    for mode in compared:
        floor, target = TARGETS[mode]
        extra = med[floor] - med["backend"]
        out[mode] = {
            "vs_off": ratio(mode, "off"),
            "floor_vs_backend": ratio(floor, "backend"),
            "extra_us": {"statekeel": round((med[mode] - med["off"]) * 1e6, 1), "floor": round(extra * 1e6, 1)},
            "floor_vs_off": round((med["off"] + extra) / med["off"], 3),
            "left_us": round(((target - 1) * med["off"] - extra) * 1e6, 1),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite")
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per backend; each figure is the median over them")
    ap.add_argument("--modes", default="encrypted,chain",
                    help="compared in one run: encrypted, chain or both (one: four handles, as bench_integrity.py)")
    args = ap.parse_args(argv)
    compared = tuple(args.modes.split(","))
    pool = ServerPool(required=False)
    try:
        for backend in args.backends.split(","):
            runs = []
            for _ in range(args.repeat):
                runs.append({"load_avg_1m": round(os.getloadavg()[0], 2), **run(backend, args.turns, pool, compared)})
                print(json.dumps({backend: runs[-1]}), flush=True)
            summary = {mode: {k: statistics.median(r[mode][k] for r in runs) for k in
                              ("vs_off", "floor_vs_backend", "floor_vs_off", "left_us")} for mode in compared}
            print(json.dumps({backend: {"repeat": len(runs), **summary}}), flush=True)
    finally:
        pool.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
