"""Long-term memory benchmark (issue 16): recall, search latency per backend, embedding throughput.

    python benchmarks/bench_memory.py                 # recall + 10k latency on every backend: a few minutes
    python benchmarks/bench_memory.py --sizes 10000,100000 --backends sqlite,postgres   # the by-hand 100k run
    python benchmarks/bench_memory.py --out memory.json

**Labelled set — real text, built offline.** Every public function, class and method of ~60
standard-library modules whose docstring has a one-line summary (4+ words) and a body
(12+ words) gives one pair: the *body* is stored as a memory, the *summary* is the query,
and the right answer is that body. Summary and body are written by the same author about
the same thing in different words — a paraphrase pair — and share few exact words, which is
what separates full text from vectors. Recall@10 = share of queries whose body is in the top 10.

**Latency.** Stores of N memories (the docstring bodies, then sentences of them recombined
by ``random.Random(7)`` up to N) on each backend, default embedder (WordLlama, 256 dims);
p50/p99 of 60 hybrid searches (summaries as queries) and of 60 text-only searches, one
warm-up first (it fills the in-process cache, features/memory/cache.py); then ``after_write``:
five searches each right after a put by the same handle (patched into its cache), and
``after_other_write``: the same after a put by another handle (the cache re-reads the namespace). SQLite and PostgreSQL
(with and without pgvector, ``pgserver``'s build) search their native index; for them the same
store is also searched in process (``in_process_*``). Every figure is printed with the load.

**Embedding throughput.** Texts/s of the default embedder over 10,000 texts per batch size
(``embed_texts_per_s``: batch_1 … batch_1024), sizes interleaved, median of 3 rounds.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import statekeel
from statekeel.features.memory import Memory
from statekeel.features.memory.embedding import default_embedder

MODULES = (
    "abc argparse array ast asyncio base64 bisect bz2 calendar cmath codecs collections concurrent.futures "
    "configparser contextlib copy csv ctypes dataclasses datetime decimal difflib dis doctest email.message "
    "enum fnmatch fractions ftplib functools gettext glob gzip hashlib heapq hmac html.parser http.client "
    "http.cookiejar imaplib inspect io ipaddress itertools json locale logging lzma mailbox math mimetypes "
    "multiprocessing numbers operator optparse os pathlib pickle pickletools platform plistlib poplib pprint "
    "queue random re reprlib sched secrets selectors shelve shlex shutil signal smtplib socket sqlite3 ssl "
    "statistics string struct subprocess tarfile tempfile textwrap threading timeit tokenize traceback "
    "typing unittest urllib.parse urllib.request uuid warnings weakref xml.dom.minidom xml.etree.ElementTree "
    "zipfile zlib"
).split()
_WORDS = re.compile(r"\w+")


def labelled_pairs() -> list[tuple[str, str]]:
    """``(summary, body)`` of stdlib docstrings, deduplicated, in a fixed order."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for obj in _public_objects(module):
            pair = _pair(inspect.getdoc(obj) or "")
            if pair is not None and pair[1] not in seen:
                seen.add(pair[1])
                out.append(pair)
    return out


def _public_objects(module: Any) -> Iterator[Any]:
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        yield obj
        if inspect.isclass(obj):
            yield from (m for n, m in sorted(vars(obj).items()) if not n.startswith("_") and callable(m))


def _pair(doc: str) -> tuple[str, str] | None:
    summary, _, body = doc.strip().partition("\n")
    body = " ".join(body.split())
    if len(_WORDS.findall(summary)) < 4 or len(_WORDS.findall(body)) < 12 or summary in body:
        return None
    return summary.strip(), body[:1500]


def filler(pool: list[str], n: int) -> list[str]:
    """``n`` texts: the pool, then sentences of it recombined (fixed seed)."""
    sentences = [s.strip() for text in pool for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 3]
    rng = random.Random(7)
    out = list(pool[:n])
    while len(out) < n:
        out.append(" ".join(rng.sample(sentences, 3)))
    return out


def recall(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Recall@10 of each mode over the labelled set (SQLite; every backend ranks alike, tests check it)."""
    with tempfile.TemporaryDirectory() as tmp, statekeel.open(f"sqlite:///{tmp}/recall.db") as store:
        mem = store.memory(("bench",), dedup=False)
        mem.put_many([{"key": f"d{i}", "value": body} for i, (_, body) in enumerate(pairs)])
        found = {mode: 0 for mode in ("hybrid", "vector", "text")}
        for i, (query, _) in enumerate(pairs):
            for mode in found:
                keys = {h.key for h in mem.search(query, limit=10, mode=mode)}  # type: ignore[arg-type]
                found[mode] += f"d{i}" in keys
    return {mode: hits / len(pairs) for mode, hits in found.items()}


def throughput(texts: list[str], batches: tuple[int, ...] = (1, 16, 64, 256, 1024)) -> dict[str, int]:
    """Texts per second through the default embedder (WordLlama) per batch size, interleaved:
    each round runs every batch size once over the same 3,000 texts; median of 3 rounds."""
    from statekeel.features.memory.embedding import Embedding

    base = default_embedder(required=True)
    assert base is not None
    embedders = {b: Embedding(base._fn, base.name, base.dim, batch_size=b) for b in batches}
    base(texts[:64])
    rates: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(3):
        for b, embed in embedders.items():
            sample = texts[-3000:]  # recombined sentences: texts of like length, as stored memories are
            t0 = time.perf_counter()
            embed(sample)
            rates[b].append(len(sample) / (time.perf_counter() - t0))
    return {f"batch_{b}": round(statistics.median(r)) for b, r in rates.items()}


def latency(url: str, texts: list[str], queries: list[str]) -> dict[str, Any]:
    """Load ``texts`` into a fresh store at ``url``; p50/p99 ms of hybrid and text searches."""
    with statekeel.open(url) as store:
        mem = store.memory(("bench", "load"), dedup=False)
        t0 = time.perf_counter()
        mem.put_many([{"key": f"m{i:06d}", "value": t} for i, t in enumerate(texts)])
        load = time.perf_counter() - t0
        out: dict[str, Any] = {"load_s": round(load, 1), "native": type(mem._index).__name__ if mem._index else "-"}
        for mode in ("hybrid", "text"):
            mem.search(queries[0], mode=mode)  # type: ignore[arg-type]
            times = []
            for q in queries:
                t = time.perf_counter()
                mem.search(q, limit=10, mode=mode)  # type: ignore[arg-type]
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            out[mode] = _pcts(times)
        out["after_write"] = _after_write(mem, queries)
        with statekeel.open(url) as other:  # another handle: its writes make this one re-read
            out["after_other_write"] = _after_write(mem, queries, Memory(other, ("bench", "load"), dedup=False))
        if mem._index is not None:  # the same store searched in process (the cache), for comparison
            plain = Memory(store, ("bench", "load"), native=False)
            t = time.perf_counter()
            plain.search(queries[0])
            out["in_process_first_ms"] = round((time.perf_counter() - t) * 1000, 1)
            times = []
            for q in queries:
                t = time.perf_counter()
                plain.search(q, limit=10)
                times.append((time.perf_counter() - t) * 1000)
            out["in_process_hybrid"] = _pcts(sorted(times))
    return out


def _pcts(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"p50": round(statistics.median(times), 2), "p99": round(times[max(0, int(len(times) * 0.99) - 1)], 2)}


def _after_write(mem: Memory, queries: list[str], writer: Memory | None = None) -> dict[str, float]:
    """A hybrid search right after a put: p50/p99 of 5. The handle's own put is patched into its
    cache; a put by another handle (``writer``: another process, as far as the cache can tell)
    makes the search re-read the namespace."""
    times = []
    for n, q in enumerate(queries[:5]):
        (writer or mem).put(f"late{n}{'o' if writer else ''}", q + " (written just before the search)")
        t = time.perf_counter()
        mem.search(q, limit=10)
        times.append((time.perf_counter() - t) * 1000)
    return _pcts(times)


def _urls(backends: list[str], stack: ExitStack, tmp: str) -> Iterator[tuple[str, str]]:
    from statekeel.testing.servers import PostgresServer, RedisServer
    from statekeel.testing.servers.pgvector import PgvectorServer

    for n, name in enumerate(backends):
        if name == "memory":
            yield name, f"memory://bench-{n}"
        elif name == "sqlite":
            yield name, f"sqlite:///{tmp}/bench-{n}.db"
        elif name == "files":
            yield name, f"file://{tmp}/files-{n}"
        elif name == "redis":
            yield name, stack.enter_context(RedisServer()).url
        elif name == "postgres":
            yield name, stack.enter_context(PostgresServer()).url + f"?schema=bench{n}"
        elif name == "pgvector":
            yield name, stack.enter_context(PgvectorServer()).url + f"?schema=bench{n}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backends", default="memory,sqlite,files,redis,postgres,pgvector")
    parser.add_argument("--sizes", default="10000", help="comma-separated store sizes (100000: by hand)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: recall,embed")
    args = parser.parse_args(argv)
    skip = set(args.skip.split(","))
    pairs = labelled_pairs()
    results: dict[str, Any] = {"pairs": len(pairs)}
    print(f"labelled set: {len(pairs)} (summary, body) pairs from {len(MODULES)} stdlib modules", flush=True)
    if "recall" not in skip:
        results["recall@10"] = recall(pairs)
        print("recall@10:", results["recall@10"], flush=True)
    bodies = [b for _, b in pairs]
    if "embed" not in skip:
        results["embed_texts_per_s"] = throughput(filler(bodies, 10_000))
        results["embed_load_avg"] = round(os.getloadavg()[0], 1)
        print("embedding throughput (texts/s by batch size):", results["embed_texts_per_s"], flush=True)
    queries = [q for q, _ in pairs[:: max(1, len(pairs) // 60)]][:60]
    results["latency"] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            texts = filler(bodies, size)
            for name, url in _urls(args.backends.split(","), stack, tmp):
                row = latency(url, texts, queries)
                row["load_avg"] = round(os.getloadavg()[0], 1)
                results["latency"][f"{name}@{size}"] = row
                print(f"{name:9} {size:>7}: {json.dumps(row)}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
