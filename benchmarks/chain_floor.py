#!/usr/bin/env python3
"""Where a tamper-evident turn's cost goes (issue 11: chain ≤ 1.15× off per turn).

    python benchmarks/chain_floor.py                       # SQLite FULL, 1,500 turns
    python benchmarks/chain_floor.py --durability normal --turns 3000

One process, the reference turn (a 200-byte and an 800-byte message and a state put)
given to each store in turn, the order alternating turn by turn; medians of per-turn
ratios to ``off``:

  off            a plain store
  encrypted      encryption on
  chain          tamper-evident (integrity=)
  chain-no-head  the same chain without writing its partition head: every value still gets
                 its trailer and MAC, every put its compare-and-set, but the head record
                 (what detects a deleted tail, and what an anchor pins) is neither encoded,
                 MACed nor put. An attribution row only — such a store would not detect
                 what issue 11 asks for — to show what the rest of the chain costs alone.
  plan only      planning the chain's batch (trailers, MACs, the head encoded and MACed)
                 with nothing applied: its CPU, in µs, beside the turns

It reaches into the chained backend (``store.backend``) for the last two rows.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(REPO, "src"), REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

import statekeel  # noqa: E402
from benchmarks.workload import make_turns  # noqa: E402
from statekeel.core.chain_ops import as_given  # noqa: E402
from statekeel.core.chain_plan import BatchPlan  # noqa: E402
from statekeel.core.chained import ChainedBackend  # noqa: E402
from statekeel.protocol import ANY, KEEP, Append, Op, OpResult, Put  # noqa: E402
from statekeel.protocol.checks import check_ops  # noqa: E402

KEY = b"c" * 32


def _headless(backend: ChainedBackend) -> None:
    """``backend`` planning and applying its batches without the head puts (attribution only)."""

    def planned(self: ChainedBackend, ops: list[Op], now: float | None) -> tuple[BatchPlan, list[Op]]:
        plan = BatchPlan(self, time.time() if now is None else now)
        sealed = [plan.seal(op) for op in ops]
        plan.order = []  # no head put: nothing for finish() to remember from the results
        return plan, sealed

    def finish(plan: BatchPlan, ops: list[Op], results: list[OpResult]) -> list[OpResult]:
        for part, (version, head, created) in plan.heads.items():
            backend._heads[part] = (version, head, created)  # the next batch plans on from this head
        return [as_given(op, r) for op, r in zip(ops, results)]

    backend.planned = types.MethodType(planned, backend)  # type: ignore[method-assign]

    def apply(ops: list[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)  # as ChainedBackend.apply (one writer: no conflicts to retry)
        plan, batch = backend.planned(ops, now)
        return finish(plan, ops, backend._inner.apply(batch, now=plan.clock))

    backend.apply = apply  # type: ignore[method-assign, assignment]


def run(durability: str, turns: int) -> dict[str, Any]:
    d = tempfile.mkdtemp(prefix="skchain-")
    opts: dict[str, dict[str, Any]] = {
        "off": {}, "encrypted": {"encryption": statekeel.Encryption(master_key=KEY)},
        "chain": {"integrity": statekeel.Integrity(key=KEY)}, "chain-no-head": {"integrity": statekeel.Integrity(key=KEY)},
    }
    stores = {m: statekeel.open(f"sqlite:///{d}/{m}.db?durability={durability}", **o) for m, o in opts.items()}
    chained = stores["chain-no-head"].backend
    assert isinstance(chained, ChainedBackend)
    _headless(chained)
    planner = stores["chain"].backend
    assert isinstance(planner, ChainedBackend)
    sessions = {m: s.session("t1") for m, s in stores.items()}
    lat: dict[str, list[float]] = {m: [] for m in stores}
    plan_us: list[float] = []
    names = list(stores)
    for i, (u, a) in enumerate(make_turns(turns)):
        order = names[i % len(names):] + names[: i % len(names)]
        for m in order:
            t = time.perf_counter()
            sessions[m].append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
            lat[m].append(time.perf_counter() - t)
        ops: list[Op] = [Append("session/t1/history", ((u.encode(), "msg:user"), (a.encode(), "msg:assistant")), KEEP),
                         Put("session/t1/state/turn", str(i).encode(), "json", ANY, KEEP)]
        t = time.perf_counter()
        planner.planned(ops, None)  # planned, not applied: the cached head stays as the last turn left it
        plan_us.append(time.perf_counter() - t)
    for s in stores.values():
        s.close()
    return {
        "durability": durability, "turns": turns, "load_avg_1m": round(os.getloadavg()[0], 2),
        "median_us": {m: round(statistics.median(v) * 1e6, 1) for m, v in lat.items()},
        "vs_off": {m: round(statistics.median(x / y for x, y in zip(v, lat["off"])), 3) for m, v in lat.items() if m != "off"},
        "plan_only_us": round(statistics.median(plan_us) * 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--durability", choices=("full", "normal"), default="full")
    ap.add_argument("--turns", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=1, help="runs; each one's ratios are printed, then their medians")
    a = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, SQLite durability={a.durability}")
    runs = []
    for _ in range(a.repeat):
        runs.append(run(a.durability, a.turns))
        print(runs[-1], flush=True)
    if a.repeat > 1:
        print({"median_vs_off": {m: statistics.median(r["vs_off"][m] for r in runs) for m in runs[0]["vs_off"]},
               "median_plan_only_us": statistics.median(r["plan_only_us"] for r in runs)})


if __name__ == "__main__":
    main()
