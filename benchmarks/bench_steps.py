"""What a durable run step costs: statekeel ``run.step`` vs a plain call, raw SQLite, DBOS.

    python benchmarks/bench_steps.py                  # 1,000 steps, 3 repeats
    python benchmarks/bench_steps.py --steps 300 --dbos-python .venv-bench/bin/python

Rows, all on SQLite files in one temp dir, measured side by side in one run:

* ``plain call``: the step function called directly (no durability);
* ``raw sqlite3 upsert+commit``: one ``INSERT OR REPLACE`` of a 100-byte result
  and a commit, WAL, ``synchronous=FULL`` — the physical floor of "store a
  result durably" with the standard library;
* ``statekeel run.step`` (``synchronous=FULL``, the default, and ``normal``):
  a fresh run, one step per call — the step record and the run's status in one
  atomic batch;
* ``statekeel replay``: the same run opened again (one prefix scan) and every
  step returning its stored result;
* ``DBOS step`` (DBOS Transact ``@DBOS.step`` inside a ``@DBOS.workflow``) with
  its SQLite system database, run with ``--dbos-python`` (an interpreter that
  has ``pip install dbos``; default: ``.venv-bench/bin/python``, else this one);
  skipped with the reason when DBOS cannot be imported.

Each row is the median over ``--repeat`` runs of the per-step median
(``time.perf_counter`` around each call). Ratios are printed at the end;
``--out FILE`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import statekeel  # noqa: E402

RESULT = "x" * 100


def work(i: int) -> str:
    """The step body: trivial, so what is measured is the step machinery."""
    return f"{i:08d}{RESULT[8:]}"


def per_call(fn: Callable[[int], Any], n: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return times


def bench_plain(tmp: Path, n: int, rep: int) -> list[float]:
    return per_call(work, n)


def bench_raw_sqlite(tmp: Path, n: int, rep: int) -> list[float]:
    db = sqlite3.connect(tmp / f"raw-{rep}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE steps (run TEXT, name TEXT, result TEXT, PRIMARY KEY (run, name))")

    def step(i: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?)", ("r", f"s{i}", work(i)))
        db.execute("COMMIT")

    try:
        return per_call(step, n)
    finally:
        db.close()


def _statekeel(durability: str) -> Callable[[Path, int, int], list[float]]:
    def bench(tmp: Path, n: int, rep: int) -> list[float]:
        with statekeel.open(f"sqlite:///{tmp}/sk-{durability}-{rep}.db?durability={durability}") as store:
            run = store.run("bench")
            return per_call(lambda i: run.step(f"s{i}", work, i), n)

    return bench


def bench_replay(tmp: Path, n: int, rep: int) -> list[float]:
    url = f"sqlite:///{tmp}/sk-replay-{rep}.db"
    with statekeel.open(url) as store:
        first = store.run("bench")
        for i in range(n):
            first.step(f"s{i}", work, i)
    with statekeel.open(url) as store:
        t0 = time.perf_counter()
        run = store.run("bench")  # prefetches every step record
        opened = time.perf_counter() - t0
        times = per_call(lambda i: run.step(f"s{i}", work, i), n)
        assert run.executed == [], "a replay must not run any step"
        return [t + opened / n for t in times]  # the open is part of resuming


_DBOS_CHILD = r"""
import json, logging, os, sys, time
from dbos import DBOS
n, path = int(sys.argv[1]), sys.argv[2]
logging.getLogger("dbos").setLevel(logging.WARNING)
DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{path}", "run_admin_server": False})
RESULT = "x" * 100

@DBOS.step()
def work(i):
    return f"{i:08d}{RESULT[8:]}"

@DBOS.workflow()
def flow(n):
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        work(i)
        times.append(time.perf_counter() - t0)
    return times

DBOS.launch()
print(json.dumps(flow(n)))
DBOS.destroy()
"""


def dbos_python(given: str | None) -> tuple[str | None, str]:
    """An interpreter that can import dbos, or None and why not."""
    candidates = [given] if given else [str(ROOT / ".venv-bench" / "bin" / "python"), sys.executable]
    for py in candidates:
        if py and Path(py).exists():
            ok = subprocess.run([py, "-c", "import dbos"], capture_output=True, text=True)
            if ok.returncode == 0:
                return py, ""
    return None, f"dbos is not importable by {', '.join(c for c in candidates if c)}: pip install dbos"


def bench_dbos(py: str) -> Callable[[Path, int, int], list[float]]:
    def bench(tmp: Path, n: int, rep: int) -> list[float]:
        out = subprocess.run(
            [py, "-c", _DBOS_CHILD, str(n), str(tmp / f"dbos-{rep}.sqlite")],
            capture_output=True, text=True, timeout=3600, cwd=tmp,
        )
        if out.returncode != 0:
            raise RuntimeError(f"DBOS run failed: {out.stderr[-2000:]}")
        times: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
        return times

    return bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dbos-python", metavar="PATH", help="interpreter with dbos installed")
    parser.add_argument("--out", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    rows: dict[str, Callable[[Path, int, int], list[float]]] = {
        "plain call": bench_plain,
        "raw sqlite3 upsert+commit (FULL)": bench_raw_sqlite,
        "statekeel run.step (FULL)": _statekeel("full"),
        "statekeel run.step (NORMAL)": _statekeel("normal"),
        "statekeel replay (memoised)": bench_replay,
    }
    py, why_not = dbos_python(args.dbos_python)
    if py:
        rows["DBOS step (SQLite)"] = bench_dbos(py)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
        for rep in range(args.repeat):  # interleaved, so disk noise hits every row alike
            for name, bench in rows.items():
                times = bench(Path(tmp), args.steps, rep)
                runs[name].append((statistics.median(times), statistics.fmean(times)))
                print(f"  {name} #{rep + 1}: median {runs[name][-1][0] * 1e6:.2f} µs", file=sys.stderr)
        for name, got in runs.items():
            results[name] = {
                "median_us": statistics.median(m for m, _ in got) * 1e6,
                "mean_us": statistics.median(a for _, a in got) * 1e6,
            }
    report(results, args.steps, args.repeat, why_not)
    if args.out:
        Path(args.out).write_text(json.dumps({"steps": args.steps, "repeat": args.repeat, "rows": results,
                                              "dbos_skipped": why_not or None}, indent=2))


def report(results: dict[str, dict[str, float]], steps: int, repeat: int, why_not: str) -> None:
    print(f"\n{steps} steps x {repeat} repeats, SQLite in one temp dir\n")
    print("| row | median µs/step | mean µs/step |\n|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['median_us']:.2f} | {r['mean_us']:.2f} |")
    plain = results["plain call"]["median_us"]
    step = results["statekeel run.step (FULL)"]["median_us"]
    raw = results["raw sqlite3 upsert+commit (FULL)"]["median_us"]
    print("\nratios (medians):")
    print(f"- statekeel step overhead (step - plain call): {step - plain:.1f} µs; step / plain call = {step / plain:,.0f}x")
    print(f"- statekeel step / raw sqlite3 durable upsert (FULL) = {step / raw:.2f}x")
    normal = results["statekeel run.step (NORMAL)"]["median_us"]
    print(f"- statekeel step (NORMAL) / plain call = {normal / plain:,.0f}x")
    replay = results["statekeel replay (memoised)"]["median_us"]
    print(f"- statekeel replayed step / plain call = {replay / plain:,.1f}x ({replay:.2f} µs)")
    if "DBOS step (SQLite)" in results:
        dbos = results["DBOS step (SQLite)"]["median_us"]
        print(f"- DBOS step / plain call = {dbos / plain:,.0f}x; DBOS step / statekeel step = {dbos / step:.1f}x")
    else:
        print(f"- DBOS: skipped ({why_not})")


if __name__ == "__main__":
    main()
