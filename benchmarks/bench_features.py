"""Projection rebuilds and checkpoint restores cost O(change since the last snapshot), not O(history).

    python benchmarks/bench_features.py --quick     # 100,000 events, < 1 minute
    python benchmarks/bench_features.py             # 1,000,000 events

All on SQLite files (WAL, ``synchronous=FULL``) in one temp dir, measured in one run:

* ``projection``: a stream of N events (appended 10,000 per batch); a fold
  counting events by type and summing a field is rebuilt
  - ``cold``: no snapshot (every one of the N events replayed), and
  - ``warm``: from a projection snapshot 1,000 events back (``snapshot_every=1000``).
  Target: warm <= 1/100 of cold.
* ``checkpoint restore``: sessions of 50 state keys (200 bytes each) with 10,
  100 and 1,000 checkpoints (2 keys changed between checkpoints, the default
  ``full_every=20``); restore time of random checkpoints should stay flat as
  the count grows. Measured interleaved (one random restore per count per
  round, from checkpoint i+1 back to i so the state written back is the same
  size for every count), with ``synchronous=FULL`` and ``NORMAL``; ``rebuild`` is the read side alone (``state_at``: one header read and
  one ``get_many`` of at most ``full_every`` bodies). The storage of the
  incremental bodies is compared with what full snapshots every time would take.

One JSON object per line on stdout (``"bench"`` names the measurement), then a
line per ratio; progress on stderr. ``--out FILE`` also writes them all.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import statekeel  # noqa: E402
from statekeel import Event  # noqa: E402
from statekeel.features.checkpoints import body_key, state_at  # noqa: E402

BATCH = 10_000
SNAPSHOT_BACK = 1_000


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def fold(state: dict[str, Any], event: Event) -> dict[str, Any]:
    state[event.type] = state.get(event.type, 0) + 1
    state["total"] = state.get("total", 0) + event.data["n"]
    return state


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def append_events(stream: Any, start: int, count: int) -> None:
    types = ("task_created", "task_started", "task_done")
    for lo in range(start, start + count, BATCH):
        hi = min(lo + BATCH, start + count)
        stream.append_many([(types[i % 3], {"task_id": f"T{i % 5000}", "n": i}) for i in range(lo, hi)])


def bench_projection(url: str, events: int, rows: list[dict[str, Any]]) -> None:
    with statekeel.open(url) as store:
        stream = store.events("bench")
        t0 = time.perf_counter()
        append_events(stream, 0, events - SNAPSHOT_BACK)
        log(f"appended {events - SNAPSHOT_BACK:,} events in {time.perf_counter() - t0:.1f} s")
        # a projection run that stores its snapshot at events - 1,000 (a multiple of 1,000)
        prep = stream.projection(fold, {}, snapshot_every=SNAPSHOT_BACK, name="warm")
        append_events(stream, events - SNAPSHOT_BACK, SNAPSHOT_BACK)
        assert stream.last_seq == events and prep.seq == events - SNAPSHOT_BACK
        cold_s, cold = timed(lambda: stream.projection(fold, {}, snapshot_every=None, name="cold"), 1)
        log(f"cold rebuild: {cold.replayed:,} events in {cold_s:.2f} s")
        warm_s, warm = timed(lambda: stream.projection(fold, {}, snapshot_every=None, name="warm"), 7)
        log(f"warm rebuild: {warm.replayed:,} events in {warm_s * 1000:.1f} ms")
        assert warm.state == cold.state and warm.snapshot_seq == events - SNAPSHOT_BACK
    rows.append({"bench": "projection_rebuild", "mode": "cold", "events": events, "replayed": cold.replayed,
                 "seconds": round(cold_s, 4), "events_per_s": round(cold.replayed / cold_s)})
    rows.append({"bench": "projection_rebuild", "mode": "warm", "events": events, "replayed": warm.replayed,
                 "snapshot_seq": warm.snapshot_seq, "seconds": round(warm_s, 5)})
    rows.append({"ratio": "projection_warm_vs_cold", "value": round(warm_s / cold_s, 5), "target": "<= 0.01",
                 "floor": SNAPSHOT_BACK / events,
                 "note": "warm replays 1,000 of the events, so the ratio cannot go below floor; "
                         "the 1/100 target is for 1,000,000 events"})


def build_checkpoints(store: Any, count: int, rng: random.Random) -> tuple[Any, float]:
    s = store.session(f"cp-{count}")
    s.append({"role": "user", "content": "start"}, state={f"k{i:02d}": "v" * 200 for i in range(50)})
    t0 = time.perf_counter()
    for n in range(count):
        s.append({"role": "assistant", "content": f"turn {n}"},
                 state={f"k{rng.randrange(50):02d}": f"{n}-" + "w" * 200 for _ in range(2)})
        s.checkpoint(f"turn-{n}")
    made = time.perf_counter() - t0
    log(f"{count:>5} checkpoints made in {made:.1f} s")
    return s, made


def bench_restore(
    tmp: str, counts: list[int], rounds: int, rows: list[dict[str, Any]]
) -> dict[str, dict[int, float]]:
    """Restore random checkpoints, interleaving the counts round by round so each sees
    the same fsync weather. Each timed restore goes from checkpoint i+1 back to i,
    so the state to write back (<= 2 keys) is the same whatever the count."""
    rng = random.Random(7)
    stores = {c: statekeel.open(f"sqlite:///{tmp}/cp-{c}.db") for c in counts}
    fast = {c: statekeel.open(f"sqlite:///{tmp}/cp-{c}.db?durability=normal") for c in counts}
    try:
        built = {c: build_checkpoints(stores[c], c, rng) for c in counts}
        cps = {c: built[c][0].checkpoints() for c in counts}
        times: dict[str, dict[int, list[float]]] = {k: {c: [] for c in counts} for k in ("full", "normal", "rebuild")}
        for _ in range(rounds):
            for c in counts:
                i = rng.randrange(len(cps[c]) - 1)
                for mode, store in (("full", stores[c]), ("normal", fast[c])):
                    s = store.session(f"cp-{c}")
                    s.restore(cps[c][i + 1])
                    t = time.perf_counter()
                    s.restore(cps[c][i])
                    times[mode][c].append(time.perf_counter() - t)
                t = time.perf_counter()
                state_at(built[c][0], cps[c][i])  # the read side alone
                times["rebuild"][c].append(time.perf_counter() - t)
        med = {k: {c: statistics.median(v[c]) for c in counts} for k, v in times.items()}
        for c in counts:
            s, store = built[c][0], stores[c]
            stored = sum(len(store.backend.get(body_key(s.id, x.id)).data) for x in cps[c])
            full_size = len(store.backend.get(body_key(s.id, cps[c][0].id)).data)
            log(f"{c:>5} checkpoints: restore median {med['full'][c] * 1000:.2f} ms (synchronous=FULL), "
                f"{med['normal'][c] * 1000:.2f} ms (NORMAL); rebuild {med['rebuild'][c] * 1000:.2f} ms")
            rows.append({
                "bench": "checkpoint_restore", "checkpoints": c, "restores": rounds,
                "restore_median_ms": round(med["full"][c] * 1000, 3),
                "restore_p90_ms": round(sorted(times["full"][c])[int(rounds * 0.9)] * 1000, 3),
                "restore_median_ms_sync_normal": round(med["normal"][c] * 1000, 3),
                "rebuild_median_ms": round(med["rebuild"][c] * 1000, 3),
                "create_ms_per_checkpoint": round(built[c][1] / c * 1000, 3),
                "body_bytes_total": stored, "body_bytes_if_all_full": full_size * c,
                "storage_vs_full_snapshots": round(stored / (full_size * c), 3),
            })
        return {"restore": med["full"], "restore_sync_normal": med["normal"], "rebuild": med["rebuild"]}
    finally:
        for store in (*stores.values(), *fast.values()):
            store.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 events instead of 1,000,000 (< 1 minute)")
    ap.add_argument("--events", type=int, help="events in the projection stream")
    ap.add_argument("--counts", default="10,100,1000", help="checkpoint counts (default 10,100,1000)")
    ap.add_argument("--restores", type=int, default=60, help="random restores per checkpoint count (default 60)")
    ap.add_argument("--out", help="also write every row to this JSON file")
    args = ap.parse_args(argv)
    events = args.events or (100_000 if args.quick else 1_000_000)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skb-features-") as tmp:
        bench_projection(f"sqlite:///{tmp}/events.db", events, rows)
        counts = [int(x) for x in args.counts.split(",")]
        medians = bench_restore(tmp, counts, args.restores, rows)
    for what, by_count in medians.items():
        for low in counts[:-1]:
            rows.append({"ratio": f"checkpoint_{what}_{counts[-1]}_vs_{low}",
                         "value": round(by_count[counts[-1]] / by_count[low], 2), "target": "flat (~1)",
                         **({"note": f"with {low} checkpoints no chain reaches full_every=20 deltas, "
                                     "so its restores read fewer bodies"} if low < 20 else {})})
    for row in rows:
        print(json.dumps(row))
    log(f"total {time.perf_counter() - started:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
