"""Issue 12 costs: a turn with a lease vs without, a keyed turn, delete_session, gc.

    python benchmarks/bench_lifecycle.py                      # SQLite; PostgreSQL/Redis when they start
    python benchmarks/bench_lifecycle.py --turns 300 --big 100000 --gc-sessions 200 --out lifecycle.json

Rows, measured side by side in one run (figures are ratios of medians taken in the
same run, interleaved, so a noisy machine moves both sides alike):

* ``turn``: the reference chat turn (a 200-byte user message, an 800-byte assistant
  message and a small state update in one ``append``) on a session opened without a
  lease, with ``lease="30s"`` (every write fenced: one more Put in the same batch), and
  with an ``idempotency_key`` (a create-only Put and a ``log_info`` read);
* ``delete_session``: one session of ``--big`` messages deleted (one batch that expires
  everything of it), then the purge that frees its bytes;
* ``gc``: ``--gc-sessions`` sessions of ``--gc-messages`` messages each, a store-wide
  cap keeping 10 messages, then ``store.gc()`` and (SQLite) ``VACUUM``: sessions per
  second, messages dropped per second, bytes before and after.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import statekeel  # noqa: E402
from statekeel import Retention  # noqa: E402
from statekeel.protocol.capabilities import SupportsReclaim  # noqa: E402

USER = {"role": "user", "content": "u" * 200}
ASSISTANT = {"role": "assistant", "content": "a" * 800}


@contextlib.contextmanager
def urls(backends: list[str], tmp: Path) -> Iterator[dict[str, str]]:
    """A store URL per backend that can run here (servers from statekeel.testing.servers)."""
    out: dict[str, str] = {}
    stack = contextlib.ExitStack()
    with stack:
        for name in backends:
            if name == "sqlite":
                out[name] = f"sqlite:///{tmp}/bench.db"
            elif name in ("postgres", "redis"):
                try:
                    from statekeel.testing.servers import PostgresServer, RedisServer
                    server = stack.enter_context(PostgresServer() if name == "postgres" else RedisServer())
                    out[name] = server.url
                except Exception as exc:  # noqa: BLE001 - a missing server is reported, not fatal
                    print(f"{name}: skipped ({exc})", file=sys.stderr)
        yield out


def turn_costs(url: str, turns: int, repeats: int) -> dict[str, float]:
    """Median seconds per turn: plain, leased, keyed — interleaved turn by turn (round robin over
    three sessions, the order rotating), so machine noise lands on every kind alike."""
    samples: dict[str, list[float]] = {"plain": [], "lease": [], "keyed": []}
    kinds = list(samples)
    with statekeel.open(url) as store:
        warm = store.session("warm-up")
        for i in range(turns):
            warm.append(USER, ASSISTANT, state={"turn": i})
        for rep in range(repeats):
            sessions = {k: store.session(f"{k}-{rep}", lease="30s" if k == "lease" else None) for k in kinds}
            for i in range(turns):
                for kind in kinds[i % 3:] + kinds[:i % 3]:
                    key = f"t{i}" if kind == "keyed" else None
                    t0 = time.perf_counter()
                    sessions[kind].append(USER, ASSISTANT, state={"turn": i}, idempotency_key=key)
                    samples[kind].append(time.perf_counter() - t0)
            sessions["lease"].release()
    return {k: statistics.median(v) for k, v in samples.items()}


def delete_cost(url: str, messages: int) -> dict[str, float]:
    with statekeel.open(url) as store:
        s = store.session("big")
        chunk = [{"i": i, "text": "m" * 200} for i in range(1000)]
        for _ in range(messages // 1000):
            s.append(*chunk)
        t0 = time.perf_counter()
        store.delete_session("big")
        deleted = time.perf_counter() - t0
        t0 = time.perf_counter()
        purged = store.purge_expired(batch=10_000)
        purge = time.perf_counter() - t0
    return {"messages": messages, "delete_seconds": deleted, "purge_seconds": purge, "purged": purged}


def _sqlite_bytes(url: str) -> int | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def gc_cost(url: str, sessions: int, messages: int, text_bytes: int = 400) -> dict[str, Any]:
    with statekeel.open(url) as store:
        t0 = time.perf_counter()
        for n in range(sessions):
            for start in range(0, messages, 500):
                store.session(f"gc-{n}").append(
                    *({"i": i, "text": "g" * text_bytes} for i in range(start, min(start + 500, messages))))
        fill = time.perf_counter() - t0
        store.set_retention(Retention(messages=10))
        before = _sqlite_bytes(url)
        t0 = time.perf_counter()
        report = store.gc()
        took = time.perf_counter() - t0
        vacuum = None
        if isinstance(store.storage, SupportsReclaim):  # what `statekeel gc` runs next
            t0 = time.perf_counter()
            store.storage.reclaim()
            vacuum = time.perf_counter() - t0
    return {
        "fill_seconds": fill,
        "sessions": report.sessions, "messages_dropped": report.messages_dropped, "gc_seconds": took,
        "sessions_per_s": report.sessions / took, "messages_dropped_per_s": report.messages_dropped / took,
        "vacuum_seconds": vacuum, "bytes_before": before, "bytes_after": _sqlite_bytes(url),
    }


def _fresh(url: str, tmp: Path, tag: str) -> str:
    """A separate store per measurement (SQLite file, PostgreSQL schema, Redis prefix)."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///{tmp}/{tag}.db"
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{'schema' if url.startswith('postgres') else 'prefix'}={tag.replace('-', '_')}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgres,redis")
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", type=int, default=100_000, help="messages in the session delete_session removes")
    ap.add_argument("--gc-sessions", type=int, default=200)
    ap.add_argument("--gc-messages", type=int, default=200)
    ap.add_argument("--gc-text", type=int, default=400, help="bytes of text per message in the gc store")
    ap.add_argument("--gc-only", action="store_true", help="only the gc figures (SQLite): e.g. a 1 GB store")
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, urls(args.backends.split(","), Path(d)) as found:
        for name, url in found.items():
            if args.gc_only:
                if name == "sqlite":
                    results[name] = {"gc": gc_cost(_fresh(url, Path(d), "gc"), args.gc_sessions, args.gc_messages,
                                                   args.gc_text)}  # fmt: skip
                    print(json.dumps(results), flush=True)
                continue
            turns = turn_costs(_fresh(url, Path(d), "turns"), args.turns, args.repeats)
            row: dict[str, Any] = {
                "turn_ms": {k: round(v * 1000, 3) for k, v in turns.items()},
                "lease_vs_plain": round(turns["lease"] / turns["plain"], 3),
                "keyed_vs_plain": round(turns["keyed"] / turns["plain"], 3),
                "delete": delete_cost(_fresh(url, Path(d), "delete"), args.big),
            }
            if name == "sqlite":
                row["gc"] = gc_cost(_fresh(url, Path(d), "gc"), args.gc_sessions, args.gc_messages, args.gc_text)
            results[name] = row
            print(json.dumps({name: row}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
