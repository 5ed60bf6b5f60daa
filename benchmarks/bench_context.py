"""Issue 16: ``s.context()`` build time against history length (target <= 20 ms, flat).

    python benchmarks/bench_context.py                          # SQLite; PostgreSQL/Redis when they start
    python benchmarks/bench_context.py --sizes 1000,10000,100000 --calls 50 --out context.json

For each backend and each history length, one session is filled with that many chat
messages (alternating user/assistant, ``--text`` bytes of content each, appended 5,000 per
batch), summarised every 250 messages up to 500 before the newest (``s.summarize`` with a
deterministic summariser), and given the other sections too: three standing orders, a
five-key user profile, two open decisions and a waiting run. Then ``--calls`` builds of
``s.context(budget=4000)`` are timed (medians and p90, in ms), interleaved with the same
number of ``s.history(last=20)`` calls as a reference read. The session has no long-term
memory search (``memory=False``): that cost is the memory search's own (benchmarks/bench_memory.py).

Every build also reports how many history entries it read (a counting wrapper around the
real backend), the evidence that the cost does not grow with the history.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import statekeel  # noqa: E402
from bench_lifecycle import _fresh, urls  # noqa: E402


class Counting:
    """The real backend, with the history entries its reads return counted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.entries: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, log: str, **kw: Any) -> Any:
        out = self._inner.read(log, **kw)
        self.entries["read"] += len(out)
        return out


def build(url: str, messages: int, text: int) -> None:
    with statekeel.open(url) as store:
        store.app.put("standing_orders", ["Answer in the user's language.", "Refunds over 100 EUR need a human.",
                                          "Never promise a delivery date."])
        for key in ("name", "plan", "language", "timezone", "notes"):
            store.user("u-bench").put(key, f"{key} of the benchmark user")
        s = store.session("bench", user="u-bench")
        for first in range(0, messages, 5000):
            s.append(*({"role": "user" if i % 2 else "assistant", "content": f"{i} " + "x" * text}
                       for i in range(first, min(first + 5000, messages))))
        for upto in range(250, messages - 499, 250):
            s.summarize(upto=upto, fn=lambda ms: f"{len(ms)} messages about an order, " + "s" * 300)
        for n in range(2):
            s.decide(f"refund order {n}", rationale="late", action={"refund": n}).__enter__()
        with store.run("bench-run") as run:
            run.wait_for("approve", prompt="Publish the report?")


def measure(url: str, calls: int) -> dict[str, Any]:
    with statekeel.open(url) as store:
        s = store.find_session("bench")
        assert s is not None
        s.context(budget=4000, memory=False)  # warm caches and connections
        ctx, hist = [], []
        for _ in range(calls):
            t0 = time.perf_counter()
            ws = s.context(budget=4000, memory=False)
            ctx.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            s.history(last=20)
            hist.append(time.perf_counter() - t0)
        inner = store.backend
        counting = Counting(inner)
        store.backend = counting  # type: ignore[assignment]
        found = store.find_session("bench")
        assert found is not None
        found.context(budget=4000, memory=False)
        store.backend = inner
    return {
        "context_ms_median": round(statistics.median(ctx) * 1000, 2),
        "context_ms_p90": round(sorted(ctx)[int(len(ctx) * 0.9)] * 1000, 2),
        "history20_ms_median": round(statistics.median(hist) * 1000, 3),
        "entries_read": counting.entries["read"], "tokens": ws.tokens,
        "messages_kept": len(ws.section("messages")), "summaries_kept": len(ws.section("summaries")),
        "dropped": len(ws.dropped),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgres,redis")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--text", type=int, default=120, help="bytes of content per message")
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, urls(args.backends.split(","), Path(d)) as found:
        for name, url in found.items():
            for size in (int(x) for x in args.sizes.split(",")):
                fresh = _fresh(url, Path(d), f"ctx-{size}")
                t0 = time.perf_counter()
                build(fresh, size, args.text)
                row = {"fill_s": round(time.perf_counter() - t0, 1), **measure(fresh, args.calls)}
                results.setdefault(name, {})[size] = row
                print(json.dumps({name: {size: row}}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
