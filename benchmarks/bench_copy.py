"""Copy throughput: ``copy_store`` from SQLite into PostgreSQL (and other targets).

    python benchmarks/bench_copy.py                 # 1,000,000 records, SQLite -> PostgreSQL
    python benchmarks/bench_copy.py --n 100000      # fewer
    python benchmarks/bench_copy.py --targets files,sqlite --n 50000

The source is a SQLite store holding N records (~60-byte JSON values, one scope)
plus N/10 log entries in N/1000 sessions. PostgreSQL is a throw-away local server
from ``statekeel.testing.servers`` (fsync on). When PostgreSQL is not available the
script says so and measures SQLite -> files and SQLite -> SQLite instead.

Reports records/s for the copy itself and, separately, for the verification pass
(which reads both stores completely once more).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from statekeel.backends import open_backend  # noqa: E402
from statekeel.portability import copy_store, verify_stores  # noqa: E402
from statekeel.protocol import Append, Put  # noqa: E402


def make_source(url: str, n: int) -> None:
    b = open_backend(url)
    try:
        for start in range(0, n, 10_000):
            b.apply([Put(f"app/_/state/k{i:08d}", json.dumps({"i": i, "pad": "x" * 40}).encode(), "json")
                     for i in range(start, min(n, start + 10_000))])
        msg = json.dumps({"role": "user", "content": "m" * 200}).encode()
        for s in range(max(1, n // 1000)):
            b.apply([Append(f"session/s{s:06d}/history", ((msg, "json"),) * 100)])
    finally:
        b.close()


def target_url(name: str, work: str, pg: Any) -> str:
    if name == "postgres":
        return str(pg.url)
    if name == "files":
        return f"file://{work}/files-target"
    return f"sqlite:///{work}/target.db"


def run(name: str, src: str, work: str, pg: Any, page: int) -> dict[str, Any]:
    dst = target_url(name, work, pg)
    t = time.perf_counter()
    report = copy_store(src, dst, verify=False, page=page)
    copy_s = time.perf_counter() - t
    t = time.perf_counter()
    verify_stores(src, dst)
    verify_s = time.perf_counter() - t
    items = report.records + report.entries
    return {
        "target": name, "records": report.records, "entries": report.entries, "page": page,
        "copy_s": round(copy_s, 2), "items_per_s": round(items / copy_s),
        "records_per_s": round(report.records / copy_s),
        "verify_s": round(verify_s, 2), "verify_items_per_s": round(items / verify_s),
    }


def start_postgres() -> Any:
    try:
        from statekeel.testing.servers import PostgresServer, ServerUnavailable

        import statekeel.backends.postgres  # noqa: F401 - the backend must exist too
    except ImportError as exc:
        print(f"PostgreSQL backend not available ({exc}); measuring SQLite -> files and SQLite -> SQLite", file=sys.stderr)
        return None
    try:
        return PostgresServer().start()
    except ServerUnavailable as exc:
        print(f"PostgreSQL server not available ({exc}); measuring SQLite -> files and SQLite -> SQLite", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description="copy_store throughput")
    ap.add_argument("--n", type=int, default=1_000_000, help="records in the source (default 1,000,000)")
    ap.add_argument("--targets", default="postgres", help="comma-separated: postgres, files, sqlite")
    ap.add_argument("--page", type=int, default=500, help="records per Load batch (copy_store's page)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the server
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    pg = start_postgres() if "postgres" in targets else None
    if "postgres" in targets and pg is None:
        targets = [t for t in targets if t != "postgres"] or ["files", "sqlite"]
    work = tempfile.mkdtemp(prefix="bench-copy-", dir=os.getcwd())
    rows = []
    try:
        src = f"sqlite:///{work}/source.db"
        t = time.perf_counter()
        make_source(src, args.n)
        print(f"source: {args.n:,} records + {max(1, args.n // 1000) * 100:,} entries "
              f"built in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        for name in targets:
            rows.append(run(name, src, work, pg, args.page))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"when": time.strftime("%Y-%m-%d %H:%M"), "n": args.n, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
