#!/usr/bin/env python3
"""statekeel benchmark suite: the reference chat-turn workload (DESIGN.md section 6),
run side by side against statekeel, the raw drivers and the peers in ONE run.

    python benchmarks/run.py --quick            # < 2 minutes
    python benchmarks/run.py                    # 1,000 turns (LangGraph: ~45 s and ~2 GB per backend)
    python benchmarks/run.py --backends sqlite,postgres,redis --out results.json
    python benchmarks/run.py --growth           # history(last=20)/sessions()/session_info at 10^3..10^5
    python benchmarks/run.py --scale            # async C=1..128 / sync N=1..8 processes vs raw (benchmarks/scale.py)
    python benchmarks/run.py --against HEAD~3   # each statekeel row also run on that commit's src/,
                                                # interleaved: ``ratio_vs_against`` = this tree / that one

Every system runs in its own subprocess (fresh temp dir / fresh database / flushed
Redis) and prints one JSON line; this script adds ``ratio_vs_raw`` (median per-turn
latency / the raw driver of the same backend and durability) and ``storage_vs_payload``,
prints the lines on stdout and a human table on stderr.

Workers run with ``.venv-bench/bin/python`` when it exists (see benchmarks/README.md),
else with this interpreter; override with ``--python``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(REPO, "src"), REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchmarks.systems import SYSTEMS, Spec  # noqa: E402

BACKENDS = ("sqlite", "files", "postgres", "redis")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 turns (LangGraph 100); finishes in < 2 minutes")
    ap.add_argument("--turns", type=int, help="turns per system (default 1000, --quick 300)")
    ap.add_argument("--slow-turns", type=int, help="turns for LangGraph rows (default = --turns, --quick 100)")
    ap.add_argument("--backends", default="auto",
                    help="comma list of sqlite,postgres,redis; 'auto' (default) = sqlite plus "
                         "postgres/redis when their servers can be started")
    ap.add_argument("--systems", help="comma list of system names to run (default: all of the backends)")
    ap.add_argument("--list", action="store_true", help="list the systems and exit")
    ap.add_argument("--out", help="also write all rows plus run metadata to this JSON file")
    ap.add_argument("--python", help="interpreter for the workers (default: .venv-bench/bin/python if present)")
    ap.add_argument("--timeout", type=float, help="seconds per system (default 900, --quick 90)")
    ap.add_argument("--keep", action="store_true", help="keep the per-system temp dirs")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole list N times, interleaved; each row is the run with the median "
                         "median (fsync latency on a VM is noisy); default 1")
    ap.add_argument("--against", metavar="REV",
                    help="also run every statekeel row on git revision REV's src/ (interleaved, same run) "
                         "and report ratio_vs_against: the cost of a change, measured like for like")
    ap.add_argument("--scale", action="store_true",  # benchmarks/scale.py (issue 15 item 2)
                    help="concurrency scaling: async C=1,8,32,128 and sync N=1,2,4,8 processes vs the raw drivers")
    ap.add_argument("--growth", action="store_true",
                    help="instead of the turn rows: the growth table (benchmarks/growth.py) — history(last=20), "
                         "sessions() and session_info at 10^3 .. --growth-max messages/sessions")
    ap.add_argument("--growth-max", type=int, default=100_000,
                    help="largest size for --growth (default 10^5; 10^6 by hand, with --backends)")
    return ap.parse_args(argv)


def worker_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    venv = os.path.join(REPO, ".venv-bench", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def export_src(rev: str, stack) -> str:
    """``src/`` of git revision ``rev`` in a temp dir (removed on exit); returns that ``src`` path."""
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="skb-against-"))
    archive = subprocess.run(["git", "-C", REPO, "archive", rev, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return os.path.join(tmp, "src")


def run_worker(py: str, spec: Spec, turns: int, servers: dict, timeout: float, keep: bool,
               src: str | None = None, name: str | None = None) -> dict:
    workdir = tempfile.mkdtemp(prefix=f"skb-{spec.name.replace('+', '_')}-")
    cmd = [py, "-m", "benchmarks.worker", spec.name, str(turns), workdir]
    if servers.get("postgres"):
        cmd += ["--pg-dsn", servers["postgres"]]
    if servers.get("redis"):
        cmd += ["--redis-url", servers["redis"]]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [src or os.path.join(REPO, "src"), REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    base = {"system": name or spec.name, "backend": spec.backend, "durability": spec.durability, "turns": turns}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:.0f} s"}
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return {**json.loads(line), **({"system": name} if name else {})}
            except ValueError:
                break
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**base, "error": f"worker exited {proc.returncode} without a result: {' | '.join(tail)}"[:500]}


def start_servers(backends: list[str], stack) -> tuple[dict, dict]:
    """Returns ({backend: url}, {backend: error}) for postgres/redis."""
    from benchmarks.servers import postgres_server, redis_server

    urls, errors = {}, {}
    for b, factory in (("postgres", postgres_server), ("redis", redis_server)):
        if b not in backends:
            continue
        try:
            server, source = factory()
            srv = stack.enter_context(server)
            urls[b] = srv.url
            print(f"# {b} server: {srv.url} ({source})", file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            errors[b] = f"{b} server could not be started: {type(e).__name__}: {e}"[:300]
            print(f"# {errors[b]}", file=sys.stderr)
    return urls, errors


def finish_row(row: dict, baselines: dict) -> dict:
    if "payload_bytes" in row and "storage_bytes" in row and row["payload_bytes"]:
        row["storage_vs_payload"] = round(row["storage_bytes"] / row["payload_bytes"], 3)
    key = (row["backend"], row.get("durability", "full"))
    base = baselines.get(key)
    if base and row.get("reload_best_ms") and base.get("reload_best_ms"):
        row["reload_vs_raw"] = round(row["reload_best_ms"] / base["reload_best_ms"], 2)
    if base and base is not row and row.get("reload_best_ms") and base.get("reload_messages_best_ms"):
        row["reload_vs_raw_messages"] = round(row["reload_best_ms"] / base["reload_messages_best_ms"], 2)
    if "median_ms_per_turn" in row and base:
        row["ratio_vs_raw"] = round(row["median_ms_per_turn"] / base["median_ms_per_turn"], 2)
        row["baseline"] = base["system"]
        mine, theirs = row.get("median_ms_per_turn_all_runs"), base.get("median_ms_per_turn_all_runs")
        if mine and theirs:  # --repeat: run i vs baseline run i, which shares that moment's fsync noise
            paired = [round(m / b, 2) for m, b in zip(mine, theirs, strict=True) if m and b]
            if paired:
                row["ratio_vs_raw_paired_runs"] = paired
                row["ratio_vs_raw_paired_median"] = round(statistics.median(paired), 2)
        if row.get("turns") != base["turns"]:
            row["ratio_note"] = f"{row['turns']} turns vs baseline's {base['turns']}: not like for like"
    return row


def pick(runs: list[dict]) -> dict:
    """The run with the median median (or the median history ratio); the first error otherwise."""
    for key in ("median_ms_per_turn", "history_last20_ratio_100k_vs_1k"):
        ok = sorted((r for r in runs if key in r), key=lambda r: r[key])
        if ok:
            row = dict(ok[(len(ok) - 1) // 2])
            if len(runs) > 1:
                row["runs"] = len(runs)
                row[f"{key}_all_runs"] = [r.get(key) for r in runs]
            return row
    return dict(runs[0])


def emit(spec: Spec, row: dict, turns: int, baselines: dict, rows: list[dict]) -> None:
    if spec.baseline and "median_ms_per_turn" in row:
        baselines[(spec.backend, spec.durability)] = row
    row = finish_row(row, baselines)
    if spec.slow and row.get("turns") != turns:
        row["note"] = f"LangGraph ran {row.get('turns')} turns (others {turns}); per-turn cost grows with history"
    rows.append(row)
    print(json.dumps(row), flush=True)


def compare_against(rows: list[dict], rev: str) -> None:
    """Add ``ratio_vs_against`` (this tree / ``rev``) to each statekeel row with a twin, paired per run."""
    by_name = {r["system"]: r for r in rows}
    for r in rows:
        twin = by_name.get(f"{r['system']}@{rev}")
        if twin is None or "median_ms_per_turn" not in r or "median_ms_per_turn" not in twin:
            continue
        r["ratio_vs_against"] = round(r["median_ms_per_turn"] / twin["median_ms_per_turn"], 3)
        mine, theirs = r.get("median_ms_per_turn_all_runs"), twin.get("median_ms_per_turn_all_runs")
        if mine and theirs:
            paired = [m / t for m, t in zip(mine, theirs, strict=True) if m and t]
            r["ratio_vs_against_paired_median"] = round(statistics.median(paired), 3)
        print(f"# {r['system']}: {r['median_ms_per_turn']:.4f} ms vs {twin['median_ms_per_turn']:.4f} ms at "
              f"{rev} -> {r['ratio_vs_against']:.3f}x"
              + (f" (paired median {r['ratio_vs_against_paired_median']:.3f}x)"
                 if "ratio_vs_against_paired_median" in r else ""), file=sys.stderr)


def fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f} MB"


def human_table(rows: list[dict]) -> str:
    head = ["system", "backend", "dur", "turns", "median ms", "p99 ms", "× raw", "storage", "× payload", "reload ms",
            "reload best ms (× raw)", "× raw → messages"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    extra = []
    for r in rows:
        if r.get("error"):
            extra.append(f"{r['system']}: ERROR {r['error']}")
            continue
        if "history_last20_ratio_100k_vs_1k" in r:
            extra.append(
                f"{r['system']}: history(last=20) 1k msgs {r['history_last20_ms_1k']:.3f} ms, "
                f"100k msgs {r['history_last20_ms_100k']:.3f} ms -> ratio "
                f"{r['history_last20_ratio_100k_vs_1k']:.2f} (target <= 1.5; median of {r['repeats']}; "
                f"build {r['build_s']} s)")
            continue
        out.append("| " + " | ".join([
            r["system"], r["backend"], r.get("durability", ""), str(r["turns"]),
            f"{r['median_ms_per_turn']:.3f}", f"{r['p99_ms_per_turn']:.3f}",
            (f"{r['ratio_vs_raw']:.2f}" if "ratio_vs_raw" in r else "-")
            + (f" (paired {r['ratio_vs_raw_paired_median']:.2f})" if "ratio_vs_raw_paired_median" in r else ""),
            fmt_bytes(r.get("storage_bytes")),
            f"{r['storage_vs_payload']:.2f}" if "storage_vs_payload" in r else "-",
            f"{r['reload_ms']:.2f}",
            (f"{r['reload_best_ms']:.2f}" if "reload_best_ms" in r else "-")
            + (f" ({r['reload_vs_raw']:.2f})" if "reload_vs_raw" in r else ""),
            f"{r['reload_vs_raw_messages']:.2f}" if "reload_vs_raw_messages" in r else "-",
        ]) + " |")
        if r.get("ratio_note"):
            extra.append(f"{r['system']}: {r['ratio_note']}")
    return "\n".join(out + [""] + extra)


def main(argv=None) -> int:
    import contextlib

    a = parse_args(argv)
    if a.list:
        for s in SYSTEMS:
            print(f"{s.name:28} {s.backend:9} {s.durability:7} {s.note}")
        return 0
    if a.scale:
        from benchmarks.scale import main as scale_main

        return scale_main(["--backends", "postgres,redis" if a.backends == "auto" else a.backends]
                          + (["--turns", str(a.turns)] if a.turns else []) + (["--out", a.out] if a.out else []))
    if a.growth:
        from benchmarks.growth import main as growth_main

        growth_main(["--backends", ",".join(BACKENDS) if a.backends == "auto" else a.backends,
                     "--max", str(a.growth_max)] + (["--out", a.out] if a.out else []))
        return 0
    turns = a.turns or (300 if a.quick else 1000)
    slow_turns = a.slow_turns or (100 if a.quick else turns)
    timeout = a.timeout or (90 if a.quick else 900)
    explicit = a.backends != "auto"
    backends = BACKENDS if not explicit else [b.strip() for b in a.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        print(f"unknown backend(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    wanted = set(a.systems.split(",")) if a.systems else None
    rows: list[dict] = []
    baselines: dict = {}
    specs = [s for s in SYSTEMS if s.backend in backends and (wanted is None or s.name in wanted)]
    py = worker_python(a.python)
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# statekeel benchmarks {started:%Y-%m-%d %H:%M UTC}; workers: {py}; "
          f"turns={turns} (LangGraph {slow_turns}); {os.cpu_count()} cores", file=sys.stderr)
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1) * 0.5:
        print(f"# WARNING: load average {load:.1f} on {os.cpu_count()} cores: other work is running, "
              f"latencies will be noisy (see load_avg_1m per row)", file=sys.stderr)
    if slow_turns != turns:
        print(f"# NOTE: LangGraph rows run {slow_turns} turns, not {turns} (their per-turn cost grows "
              f"with history); their ratio_vs_raw is not like for like", file=sys.stderr)

    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # (spec, name, src): with --against, every statekeel row runs twice, on both trees
        plan = [(spec, spec.name, None) for spec in specs]
        if a.against:
            old = export_src(a.against, stack)
            plan = [row for spec, name, src in plan for row in [(spec, name, src)] + (
                [(spec, f"{name}@{a.against}", old)] if name.startswith("statekeel") else [])]
        runs: dict[str, list[dict]] = {name: [] for _, name, _ in plan}
        needs = sorted({s.backend for s in specs} - {"sqlite"})
        urls, errors = start_servers(needs, stack)
        for rep in range(a.repeat):
            for spec, name, src in plan:
                n = slow_turns if spec.slow else turns
                if spec.backend in errors:
                    row = {"system": name, "backend": spec.backend, "durability": spec.durability,
                           "turns": n, "error": errors[spec.backend]}
                else:
                    row = run_worker(py, spec, n, urls, timeout, a.keep, src, name)
                runs[name].append(row)
                if a.repeat == 1:  # stream
                    emit(spec, pick(runs[name]), turns, baselines, rows)
                print(f"#   [{rep + 1}/{a.repeat}] {name}: "
                      f"{'ERROR' if row.get('error') else row.get('median_ms_per_turn', 'ok')} "
                      f"({row.get('wall_s', '-')} s)", file=sys.stderr, flush=True)
    if a.repeat > 1:
        for spec, name, _ in plan:
            emit(spec, pick(runs[name]), turns, baselines, rows)
    if a.against:
        compare_against(rows, a.against)
    elapsed = time.perf_counter() - t_start
    print("", file=sys.stderr)
    print(human_table(rows), file=sys.stderr)
    print(f"\n# total wall time {elapsed:.1f} s", file=sys.stderr)
    if a.out:
        command = " ".join(["benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:]))
        meta = {"date": started.isoformat(timespec="seconds"), "command": command,
                "cores": os.cpu_count(), "load_avg_at_start": round(load, 2),
                "platform": platform.platform(), "python": platform.python_version(),
                "turns": turns, "slow_turns": slow_turns, "repeat": a.repeat, "wall_s": round(elapsed, 1)}
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
