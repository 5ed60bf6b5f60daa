"""What a turn and a restart read: ``history(last=20)`` and a whole-history reload, per call.

    python benchmarks/bench_reads.py                                   # postgres, redis, sqlite; plain and encrypted
    python benchmarks/bench_reads.py --backends postgres --modes plain,encrypted,chain,both --against HEAD~3

Each (backend, mode) gets a session of ``--turns`` reference turns (a user and an assistant
message and a state put), then ``history(last=20)`` is timed ``--calls`` times and the whole
history ``--calls // 5`` times; the medians are reported, in µs. With ``--against REV`` the same
runs on REV's ``src/`` too, each row alternating between the two trees ``--repeat`` times in
fresh processes on the same servers, and ``vs_against`` is this tree's median ÷ REV's (the median
of the per-repeat ratios): a change's cost or gain, like for like. Real servers
(``statekeel.testing.servers``), loopback: a round trip saved shows at its loopback price.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # not in a worker, whose PYTHONPATH chose the tree to measure
    sys.path[:0] = [str(REPO / "src"), str(REPO)]

from benchmarks.workload import make_turns  # noqa: E402

MODES = ("plain", "encrypted", "chain", "both")


def measure(url: str, mode: str, turns: int, calls: int) -> dict[str, float]:
    """In a worker process: one session of ``turns`` turns, then the two reads timed."""
    import statekeel

    print(statekeel.__file__, file=sys.stderr)
    options: dict[str, Any] = {}
    if mode in ("encrypted", "both"):
        options["encryption"] = statekeel.Encryption(master_key=b"k" * 32)
    if mode in ("chain", "both"):
        options["integrity"] = statekeel.Integrity(key=b"c" * 32)
    with statekeel.open(url, **options) as store:
        s = store.session(f"reads-{mode}-{os.getpid()}-{time.monotonic_ns()}")
        for i, (u, a) in enumerate(make_turns(turns)):
            s.append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
        return {"last20_us": _median_us(lambda: s.history(last=20), calls),
                "whole_us": _median_us(s.history, max(calls // 5, 1))}  # fmt: skip


def _median_us(call: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e6, 1)


def _in_process(src: str, url: str, mode: str, turns: int, calls: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, str(REPO)]))
    code = ("import json, sys; from benchmarks.bench_reads import measure; "
            f"print(json.dumps(measure({url!r}, {mode!r}, {turns}, {calls})))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="postgres,redis,sqlite")
    ap.add_argument("--modes", default="plain,encrypted")
    ap.add_argument("--turns", type=int, default=200, help="turns per session (2 messages each); default 200")
    ap.add_argument("--calls", type=int, default=2000, help="history(last=20) calls timed; a fifth as many reloads")
    ap.add_argument("--repeat", type=int, default=2, help="fresh processes per tree and row, alternated")
    ap.add_argument("--against", metavar="REV", help="also run on REV's src/ and report this tree ÷ REV")
    args = ap.parse_args(argv)
    from benchmarks.run import export_src
    from statekeel.testing.servers import ServerPool

    pool = ServerPool(required=False)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        trees = {"this": str(REPO / "src")}
        if args.against:
            trees[args.against] = export_src(args.against, stack)
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}", flush=True)
        try:
            for backend in args.backends.split(","):
                for mode in args.modes.split(","):  # a store per mode: an encrypted one refuses the others
                    url = (f"{pool.postgres().url}?schema=reads_{mode}" if backend == "postgres"
                           else f"{pool.redis().url}?prefix=reads_{mode}" if backend == "redis"
                           else f"sqlite:///{tmp}/reads-{mode}.db")  # fmt: skip
                    runs: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
                    for _ in range(args.repeat):
                        for name, src in trees.items():
                            runs[name].append(_in_process(src, url, mode, args.turns, args.calls))
                    print(json.dumps({"backend": backend, "mode": mode, **_summary(runs, args.against)}), flush=True)
        finally:
            pool.stop()
    return 0


def _summary(runs: dict[str, list[dict[str, float]]], against: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in ("last20_us", "whole_us"):
        mine = [r[metric] for r in runs["this"]]
        out[metric] = statistics.median(mine)
        if against:
            theirs = [r[metric] for r in runs[against]]
            out[f"{metric}@{against}"] = statistics.median(theirs)
            out[f"{metric}_vs_against"] = round(statistics.median(a / b for a, b in zip(mine, theirs)), 3)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
