"""Per-turn cost of encryption and tamper-evident mode vs neither, measured turn by turn (issue 11).

Four stores on the same backend — off, encrypted, chained, both — get the same
reference turns (a user and an assistant message plus a state put, durable
before the call returns) *interleaved*: turn i goes to each store in turn,
in an order shuffled each round, so disk and CPU noise fall on all four alike.
(Not a rotation: in one, each mode always follows the same other mode, which
leaves the caches warm for the code they share — a bias of up to 30 µs a turn
between modes, measured by ``chain_minimum.py``.) Reported: each
store's median turn and its ratio to "off" (the median of per-round ratios),
and the whole-history reload (2 × turns messages) with decryption and chain
checks, best of 20 (the modes interleaved). Each turn's CPU time in this process (``time.thread_time``) is
reported beside the wall clock (``cpu_vs_off``): on a shared machine it moves far less
with the load, and it is where encryption and the chain cost (for PostgreSQL and Redis
it leaves out the server's work). ``--repeat N`` runs the whole comparison N times on fresh stores and
reports each ratio's median over the runs (and every run), with the load average before each.

    python benchmarks/bench_integrity.py --backends sqlite,postgres,redis --turns 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import statekeel  # noqa: E402
from statekeel.testing.servers import ServerPool  # noqa: E402

MODES = ("off", "encrypted", "chain", "both")
RELOADS = 20
"""Whole-history reloads per mode (interleaved); the best of them is reported."""


def _options(mode: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if mode in ("encrypted", "both"):
        options["encryption"] = statekeel.Encryption(master_key=b"k" * 32)
    if mode in ("chain", "both"):
        options["integrity"] = statekeel.Integrity(key=b"c" * 32)
    return options


def _url(backend: str, tmp: Path, mode: str, servers: ServerPool) -> str:
    """A fresh store per run and mode (a schema or prefix named after the run's temp dir: ``--repeat``
    must not append each run's turns to the last run's session)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp}/{mode}.db"
    run = tmp.name.replace("-", "_").lower()
    if backend == "postgres":
        return f"{servers.postgres().url}?schema=bench_{mode}_{run}"
    return f"{servers.redis().url}?prefix=bench_{mode}_{run}"


def run(backend: str, turns: int, servers: ServerPool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        stores = {m: statekeel.open(_url(backend, Path(d), m, servers), **_options(m)) for m in MODES}
        try:
            sessions = {m: s.session("t1") for m, s in stores.items()}
            lat: dict[str, list[float]] = {m: [] for m in MODES}
            cpu: dict[str, list[float]] = {m: [] for m in MODES}
            order, shuffle = list(MODES), random.Random(turns).shuffle
            for i in range(turns):
                user, assistant = f"question {i} " + "u" * 180, f"answer {i} " + "a" * 780
                shuffle(order)  # a new order each round: each mode follows each other alike
                for m in order:
                    t, c = time.perf_counter(), time.thread_time()
                    sessions[m].append({"role": "user", "content": user},
                                       {"role": "assistant", "content": assistant}, state={"turn": i})
                    lat[m].append(time.perf_counter() - t)
                    cpu[m].append(time.thread_time() - c)
            best = {m: float("inf") for m in MODES}
            for _ in range(RELOADS):  # the modes interleaved, each one's best kept: noise falls on all alike
                for m in MODES:
                    best[m] = min(best[m], _timed(sessions[m].history))
            reload = {m: round(b * 1e3, 2) for m, b in best.items()}
        finally:
            for s in stores.values():
                s.close()
    out: dict[str, Any] = {"turns": turns, "median_ms": {m: round(statistics.median(v) * 1e3, 3) for m, v in lat.items()}}
    out["vs_off"] = {m: round(statistics.median(a / b for a, b in zip(lat[m], lat["off"])), 3) for m in MODES[1:]}
    out["cpu_us"] = {m: round(statistics.median(v) * 1e6, 1) for m, v in cpu.items()}
    out["cpu_vs_off"] = {m: round(sum(cpu[m]) / sum(cpu["off"]), 3) for m in MODES[1:]}
    out["reload_ms"] = reload
    out["reload_vs_off"] = {m: round(reload[m] / reload["off"], 2) for m in MODES[1:]}
    return out


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median over runs of each ratio and time, with the runs themselves."""
    out: dict[str, Any] = {"repeat": len(runs), "load_avg_1m": [r["load_avg_1m"] for r in runs]}
    for field in ("median_ms", "vs_off", "cpu_us", "cpu_vs_off", "reload_ms", "reload_vs_off"):
        out[field] = {m: statistics.median(r[field][m] for r in runs) for m in runs[0][field]}
    out["runs"] = runs
    return out


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per backend; ratios are the median over them")
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"load_avg_1m": os.getloadavg()[0]}
    pool = ServerPool(required=False)
    try:
        for backend in args.backends.split(","):
            runs = []
            for _ in range(args.repeat):
                load = os.getloadavg()[0]
                runs.append({"load_avg_1m": round(load, 2), **run(backend, args.turns, pool)})
                print(json.dumps({backend: runs[-1]}), flush=True)
            results[backend] = _summary(runs)
            print(json.dumps({backend: {k: v for k, v in results[backend].items() if k != "runs"}}), flush=True)
    finally:
        pool.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
