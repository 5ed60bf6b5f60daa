"""Issue 16: ``s.context()`` build time against history length (target <= 20 ms, flat).

    python benchmarks/bench_context.py                          # every backend (PostgreSQL/Redis when they start)
    python benchmarks/bench_context.py --backends sqlite --sizes 1000,100000 --calls 50 --out context.json

For each backend and each history length, one session is filled with that many chat
messages (alternating user/assistant, ``--text`` bytes of content each, appended 5,000 per
batch), summarised every 250 messages up to 500 before the newest (``s.summarize`` with a
deterministic summariser), and given the other sections too: three standing orders, a
five-key user profile, two open decisions and a waiting run. Then ``--calls`` builds of
``s.context(budget=4000)`` per length are timed (medians and p90, in ms), the lengths
interleaved call by call (order rotating), each followed by a ``s.history(last=20)`` as a
reference read; the load average is printed with each row. The session has no long-term
memory search (``memory=False``): that cost is the memory search's own (benchmarks/bench_memory.py).

Every build also reports how many history entries it read and how many backend calls it made
(counting wrappers around the real backend): the evidence that the cost does not grow with the
history, and the round trips it costs on PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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


class Calls:
    """The real backend, with every backend call counted (each is a round trip on PostgreSQL/Redis)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kw: Any) -> Any:
            self.calls += 1
            return found(*args, **kw)

        return counted


def measure(urls: dict[int, str], calls: int) -> dict[int, dict[str, Any]]:
    """Builds of every size interleaved call by call (the order rotating), so load lands on all alike."""
    out: dict[int, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        stores = {size: stack.enter_context(statekeel.open(url)) for size, url in urls.items()}
        sessions = {size: store.find_session("bench") for size, store in stores.items()}
        for s in sessions.values():
            assert s is not None
            s.context(budget=4000, memory=False)  # warm caches and connections
        ctx: dict[int, list[float]] = {size: [] for size in urls}
        hist: dict[int, list[float]] = {size: [] for size in urls}
        sizes = list(urls)
        for n in range(calls):
            for size in sizes[n % len(sizes):] + sizes[: n % len(sizes)]:
                s = sessions[size]
                assert s is not None
                t0 = time.perf_counter()
                ws = s.context(budget=4000, memory=False)
                ctx[size].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                s.history(last=20)
                hist[size].append(time.perf_counter() - t0)
        for size, store in stores.items():
            out[size] = {
                "context_ms_median": round(statistics.median(ctx[size]) * 1000, 2),
                "context_ms_p90": round(sorted(ctx[size])[int(len(ctx[size]) * 0.9)] * 1000, 2),
                "history20_ms_median": round(statistics.median(hist[size]) * 1000, 3),
                **_counted(store), "load_avg": round(os.getloadavg()[0], 1),
            }
    return out


def _counted(store: statekeel.Store) -> dict[str, Any]:
    """History entries read and backend calls made by one build."""
    inner = store.backend
    counting, calls = Counting(inner), Calls(inner)
    store.backend = counting  # type: ignore[assignment]
    found = store.find_session("bench")
    assert found is not None
    ws = found.context(budget=4000, memory=False)
    store.backend = calls  # type: ignore[assignment]
    found.context(budget=4000, memory=False)
    store.backend = inner
    return {"entries_read": counting.entries["read"], "backend_calls": calls.calls, "tokens": ws.tokens,
            "messages_kept": len(ws.section("messages")), "summaries_kept": len(ws.section("summaries")),
            "dropped": len(ws.dropped)}


def _urls(names: list[str], tmp: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """memory and files here; SQLite, PostgreSQL, Redis from bench_lifecycle's servers."""
    found = {n: (f"memory://ctx" if n == "memory" else f"file://{tmp}/files") for n in names if n in ("memory", "files")}
    others = stack.enter_context(urls([n for n in names if n not in found], tmp))
    return {n: found.get(n) or others[n] for n in names if n in found or n in others}


def _sized(url: str, tmp: Path, size: int) -> str:
    if url.startswith(("memory://", "file://")):
        return f"{url}-{size}"
    return _fresh(url, tmp, f"ctx-{size}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="memory,sqlite,files,postgres,redis")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--text", type=int, default=120, help="bytes of content per message")
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        for name, url in _urls(args.backends.split(","), Path(d), stack).items():
            sized: dict[int, str] = {}
            for size in (int(x) for x in args.sizes.split(",")):
                sized[size] = _sized(url, Path(d), size)
                t0 = time.perf_counter()
                build(sized[size], size, args.text)
                print(json.dumps({name: {size: {"fill_s": round(time.perf_counter() - t0, 1)}}}), flush=True)
            for size, row in measure(sized, args.calls).items():
                results.setdefault(name, {})[size] = row
                print(json.dumps({name: {size: row}}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
