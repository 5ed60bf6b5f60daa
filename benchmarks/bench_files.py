"""How the files backend (file:///dir) scales, and where SQLite becomes the better choice.

    python benchmarks/bench_files.py            # the figures in docs/files-backend.md
    python benchmarks/bench_files.py --quick    # smaller counts, ~1 minute
    python benchmarks/bench_files.py --per-turn # only the per-turn figures

Three measurements, each side by side with SQLite (WAL, synchronous=FULL) in the same run:

1. per-turn cost of the DESIGN.md chat turn (200-byte user + 800-byte assistant
   message + a small state update, durable before returning) against the raw
   floor for the same bytes: one append + fdatasync of the messages, plus one
   atomic replace (temp + fsync + rename + folder fsync) of the state file;
2. records: ``get``, the first ``scan`` page (100) and a full paged scan at N
   records in one scope (one folder);
3. logs: ``history(last=20)`` and a full reload at M messages in one session.

Prints a Markdown table per section to stdout; ``--json FILE`` also writes every row.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import statekeel  # noqa: E402
from statekeel.backends import open_backend  # noqa: E402
from statekeel.protocol import Append, Put  # noqa: E402

USER, ASSISTANT = "u" * 200, "a" * 800


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


# -- 1. per turn --------------------------------------------------------------------
def raw_turn_floor(d: str, turns: int) -> list[float]:
    """The same bytes with the same guarantees, by hand: append+fdatasync, atomic replace."""
    log = os.open(os.path.join(d, "history.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lat = []
    for i in range(turns):
        t = time.perf_counter()
        lines = (json.dumps({"role": "user", "content": USER}) + "\n" + json.dumps({"role": "assistant", "content": ASSISTANT}) + "\n")
        os.write(log, lines.encode())
        os.fdatasync(log)
        tmp = os.path.join(d, ".turn.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, json.dumps({"turn": i}).encode())
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, os.path.join(d, "turn.json"))
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        lat.append(time.perf_counter() - t)
    os.close(log)
    return lat


def raw_append_floor(d: str, turns: int) -> list[float]:
    log = os.open(os.path.join(d, "only.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lat = []
    for _ in range(turns):
        t = time.perf_counter()
        lines = (json.dumps({"role": "user", "content": USER}) + "\n" + json.dumps({"role": "assistant", "content": ASSISTANT}) + "\n")
        os.write(log, lines.encode())
        os.fdatasync(log)
        lat.append(time.perf_counter() - t)
    os.close(log)
    return lat


def statekeel_turns(url: str, turns: int, with_state: bool) -> tuple[list[float], float]:
    with statekeel.open(url) as store:  # close() is outside the timing: it checkpoints the files journal
        s = store.session("t1")
        lat = []
        for i in range(turns):
            t = time.perf_counter()
            if with_state:
                s.append({"role": "user", "content": USER}, {"role": "assistant", "content": ASSISTANT}, state={"turn": i})
            else:
                s.append({"role": "user", "content": USER}, {"role": "assistant", "content": ASSISTANT})
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert len(s.history()) == 2 * turns
        return lat, (time.perf_counter() - t) * 1e3


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def per_turn(work: str, turns: int) -> list[dict[str, Any]]:
    rows = []
    for name, make in (("raw floor: append+fdatasync, atomic replace", raw_turn_floor),):
        d = tempfile.mkdtemp(dir=work)
        lat = make(d, turns)
        rows.append({"system": name, "median_ms": statistics.median(lat) * 1e3, "bytes": dir_bytes(d)})
    d = tempfile.mkdtemp(dir=work)
    lat, reload_ms = statekeel_turns(f"file://{d}/store", turns, True)
    rows.append({"system": "statekeel files", "median_ms": statistics.median(lat) * 1e3,
                 "reload_ms": reload_ms, "bytes": dir_bytes(d)})
    d = tempfile.mkdtemp(dir=work)
    lat, reload_ms = statekeel_turns(f"sqlite:///{d}/s.db", turns, True)
    rows.append({"system": "statekeel sqlite (FULL)", "median_ms": statistics.median(lat) * 1e3, "reload_ms": reload_ms})
    d = tempfile.mkdtemp(dir=work)
    lat = raw_append_floor(d, turns)
    rows.append({"system": "raw floor, messages only: append+fdatasync", "median_ms": statistics.median(lat) * 1e3})
    d = tempfile.mkdtemp(dir=work)
    lat, _ = statekeel_turns(f"file://{d}/store", turns, False)
    rows.append({"system": "statekeel files, messages only", "median_ms": statistics.median(lat) * 1e3})
    return rows


# -- 2. records -------------------------------------------------------------------------
def fill_records(url: str, n: int) -> None:
    b = open_backend(url)
    try:
        for start in range(0, n, 1000):
            b.apply([Put(f"app/_/state/k{i:07d}", json.dumps({"i": i, "pad": "x" * 40}).encode(), "json")
                     for i in range(start, min(n, start + 1000))])
    finally:
        b.close()


def full_scan(url: str) -> int:
    b = open_backend(url)
    count, after = 0, None
    try:
        while page := b.scan("app/_/state/", after=after, limit=100):
            count, after = count + len(page), page[-1].key
    finally:
        b.close()
    return count


def records(work: str, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        for kind in ("files", "sqlite"):
            d = tempfile.mkdtemp(dir=work)
            url = f"file://{d}/store" if kind == "files" else f"sqlite:///{d}/s.db"
            t = time.perf_counter()
            fill_records(url, n)
            fill_s = time.perf_counter() - t
            time.sleep(2.1)  # let the folder go quiet, as a store being read mostly is
            b = open_backend(url)
            keys = [f"app/_/state/k{random.randrange(n):07d}" for _ in range(200)]
            it = iter(keys)
            get_ms = median_ms(lambda: b.get(next(it)), 200)
            page_ms = median_ms(lambda: b.scan("app/_/state/", limit=100), 5)
            cold_ms = median_ms(lambda: open_backend(url).scan("app/_/state/", limit=100), 3)
            b.close()
            t = time.perf_counter()
            assert full_scan(url) == n
            rows.append({"backend": kind, "records": n, "get_ms": get_ms, "first_page_ms": page_ms,
                         "first_page_new_handle_ms": cold_ms,
                         "full_scan_s": time.perf_counter() - t, "fill_s": fill_s})
            shutil.rmtree(d)
    return rows


# -- 3. logs ------------------------------------------------------------------------------
def logs(work: str, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    msg = json.dumps({"role": "user", "content": "m" * 200}).encode()
    for m in sizes:
        for kind in ("files", "sqlite"):
            d = tempfile.mkdtemp(dir=work)
            url = f"file://{d}/store" if kind == "files" else f"sqlite:///{d}/s.db"
            with statekeel.open(url) as store:  # close() is outside the timing: it checkpoints the files journal
                s = store.session("big")
                for start in range(0, m, 1000):
                    store.backend.apply([Append("session/big/history", ((msg, "json"),) * min(1000, m - start))])
                append_ms = median_ms(lambda: s.append({"role": "user", "content": "x"}), 20)
                tail_ms = median_ms(lambda: s.history(last=20), 50)
                mid = m // 2
                mid_ms = median_ms(lambda: s.messages(start=mid, stop=mid + 20), 20)
                full_ms = median_ms(lambda: s.history(), 3 if m <= 100_000 else 1)
            rows.append({"backend": kind, "messages": m, "last20_ms": tail_ms, "middle20_ms": mid_ms,
                         "full_reload_ms": full_ms, "append_ms": append_ms})
            shutil.rmtree(d)
    return rows


# -- output -------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    for r in rows:
        cols += [c for c in r if c not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts")
    ap.add_argument("--turns", type=int, default=None)
    ap.add_argument("--json", metavar="FILE", help="also write all rows as JSON")
    ap.add_argument("--dir", default=None, help="where temp stores go (default: a temp dir on the current disk)")
    ap.add_argument("--per-turn", action="store_true", help="only the per-turn section (~10 s)")
    args = ap.parse_args()
    turns = args.turns or (300 if args.quick else 1000)
    rec_sizes = [1_000, 5_000] if args.quick else [1_000, 10_000, 50_000]
    log_sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    work = tempfile.mkdtemp(prefix="bench-files-", dir=args.dir or os.getcwd())
    try:
        results = {"per_turn": per_turn(work, turns)}
        if not args.per_turn:
            results.update(records=records(work, rec_sizes), logs=logs(work, log_sizes))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floors = {False: results["per_turn"][0]["median_ms"], True: results["per_turn"][3]["median_ms"]}
    for r in results["per_turn"]:  # messages-only rows compare with the messages-only floor
        r["ratio_vs_floor"] = r["median_ms"] / floors["messages only" in r["system"]]
    for title, rows in results.items():
        print(f"\n### {title} ({turns} turns)\n" if title == "per_turn" else f"\n### {title}\n")
        print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"when": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(), **results}, f, indent=2)


if __name__ == "__main__":
    main()
