"""PostgreSQL: client CPU of a batch of puts as one statement vs cut into statements psycopg caches.

psycopg converts a statement's ``%(name)s`` placeholders once and caches the result only for
statements of at most 4,096 bytes and 50 parameters; a longer one is converted again on every
execute. A batch of six or more puts (a LangGraph checkpoint's records) is such a statement,
so the backend cuts it into several (:func:`statekeel.backends.postgres.sql.split`), run in
one pipeline: one transaction, one round trip. This script times the ways on one store,
alternating batch by batch: ``one`` lifts the limits (one statement, as before), ``split``
keeps them, ``per-op`` runs one statement per operation (how a batch writing one row twice
runs, and how batches of more than 16 operations ran before). Client CPU
(``time.thread_time``) is the figure; wall time is printed beside it.

    python benchmarks/bench_pg_batches.py --sizes 3,6,12,24,64 --batches 400
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import statekeel  # noqa: E402
from statekeel.backends.postgres import plan, sql  # noqa: E402
from statekeel.protocol import ANY, Put  # noqa: E402
from statekeel.testing.servers import ServerPool  # noqa: E402

_LIMITS = (sql.CACHED_BYTES, sql.CACHED_PARAMS)
_JOINED = plan.one_statement
MODES = ("one", "split", "per-op")


def _mode(name: str) -> None:
    """Benchmark instrumentation (the tests never patch these): ``one`` lifts the limits, so every
    batch is one statement; ``per-op`` plans every batch as if two of its ops wrote one row."""
    sql.CACHED_BYTES, sql.CACHED_PARAMS = _LIMITS if name != "one" else (1 << 40, 1 << 40)
    sql.split.cache_clear()
    plan.one_statement = _JOINED if name != "per-op" else (lambda ops, steps, parts: False)  # type: ignore[assignment]


def measure(backend: Any, size: int, batches: int) -> dict[str, Any]:
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    wall: dict[str, list[float]] = {m: [] for m in MODES}
    value = b'{"v": "' + b"x" * 800 + b'"}'
    for i in range(batches):
        for mode in MODES[i % 3 :] + MODES[: i % 3]:
            _mode(mode)
            ops = [Put(f"b/{mode}/{size}/{k}", value, "json", expect=ANY) for k in range(size)]
            backend.apply(ops)  # the cut computed, the statements prepared: what a steady writer sees
            t, c = time.perf_counter(), time.thread_time()
            backend.apply(ops)
            cpu[mode].append(time.thread_time() - c)
            wall[mode].append(time.perf_counter() - t)
    _mode("split")
    skip = batches // 8  # the first batches prepare statements on the server
    med = {m: statistics.median(v[skip:]) * 1000 for m, v in cpu.items()}
    wmed = {m: statistics.median(v[skip:]) * 1000 for m, v in wall.items()}
    return {
        "puts": size,
        "statements": len(sql.split(("put_any",) * size, (8,) * size, backend.schema)) - 1,
        "cpu_ms": {m: round(v, 3) for m, v in med.items()},
        "wall_ms": {m: round(v, 3) for m, v in wmed.items()},
        "cpu_split_vs_one": round(med["split"] / med["one"], 3),
        "cpu_split_vs_per_op": round(med["split"] / med["per-op"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="3,6,12,24,64", help="puts per batch, comma-separated")
    ap.add_argument("--batches", type=int, default=400, help="batches per size and mode")
    args = ap.parse_args()
    pool = ServerPool(required=True)
    try:
        with statekeel.open(f"{pool.postgres().url}?schema=bench_batches") as store:
            rows = [measure(store.backend, int(n), args.batches) for n in args.sizes.split(",")]
    finally:
        pool.stop()
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
