"""Runs ONE system in its own process and prints one JSON line (used by run.py).

    python -m benchmarks.worker SYSTEM TURNS WORKDIR [--pg-dsn DSN] [--redis-url URL]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback

from benchmarks.systems import BY_NAME
from benchmarks.workload import latency_stats, make_turns, payload_bytes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("system")
    ap.add_argument("turns", type=int)
    ap.add_argument("workdir")
    ap.add_argument("--pg-dsn")
    ap.add_argument("--redis-url")
    a = ap.parse_args(argv)
    spec = BY_NAME[a.system]
    out = {"system": spec.name, "backend": spec.backend, "durability": spec.durability, "turns": a.turns}
    turns = make_turns(a.turns)
    ctx = {"workdir": a.workdir, "pg_dsn": a.pg_dsn, "redis_url": a.redis_url}
    t0 = time.perf_counter()
    pg_db = None
    try:
        if spec.backend == "postgres":
            if not a.pg_dsn:
                raise RuntimeError("no PostgreSQL server")
            from benchmarks.systems.pg_peers import fresh_database

            pg_db = "skb_" + "".join(ch if ch.isalnum() else "_" for ch in spec.name)
            ctx["pg_dsn"] = fresh_database(a.pg_dsn, pg_db)
        if spec.backend == "redis" and not a.redis_url:
            raise RuntimeError("no Redis server")
        mod_name, fn_name = spec.target.split(":")
        fn = getattr(importlib.import_module(f"benchmarks.systems.{mod_name}"), fn_name)
        res = fn(turns, ctx)
    except BaseException as e:  # report, never crash the suite
        out["error"] = f"{type(e).__name__}: {e}"[:500]
        out["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
        print(json.dumps(out), flush=True)
        return 0
    finally:
        if pg_db:
            try:
                from benchmarks.systems.pg_peers import drop_database

                drop_database(a.pg_dsn, pg_db)
            except Exception:
                pass
    if spec.kind == "turns":
        out.update(latency_stats(res.pop("lat")))
        out["payload_bytes"] = payload_bytes(turns)
    else:
        out.pop("turns")
    out.update(res)
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)  # > cores: other work was running, numbers noisy
    if spec.name.startswith("statekeel"):
        import statekeel

        out["statekeel_from"] = os.path.dirname(statekeel.__file__)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
