"""LangGraph's store: ``StatekeelStore.search`` against LangGraph's ``SqliteStore`` (langgraph_bench.py's
store rows, ``--store-items``)."""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from typing import Any

from langgraph.store.base import PutOp


def store_search(items: int, reps: int = 7) -> list[dict[str, Any]]:
    """``store.search`` on ``items`` items of one namespace, statekeel's store vs LangGraph's
    ``SqliteStore`` (both on SQLite files), interleaved, median of ``reps``: a filter that
    matches a tenth of them and a page of 10, and a page of 10 without a filter."""
    from langgraph.store.sqlite import SqliteStore

    from statekeel.integrations.langgraph import StatekeelStore

    ns = ("users", "u1", "memories")
    with tempfile.TemporaryDirectory(prefix="lgs-") as d:
        ours = StatekeelStore.from_url(f"sqlite:///{d}/sk.db")
        conn = sqlite3.connect(f"{d}/lg.db", check_same_thread=False, isolation_level=None)
        theirs = SqliteStore(conn)
        theirs.setup()
        for store in (ours, theirs):
            for start in range(0, items, 500):
                store.batch([PutOp(ns, f"k{i:06d}", {"text": f"memory {i} " + "x" * 200, "kind": f"k{i % 10}",
                                                     "score": i % 100}) for i in range(start, min(items, start + 500))])  # fmt: skip
        cases = {"search_filter_ms": {"filter": {"kind": "k3"}, "limit": 10},
                 "search_filter_op_ms": {"filter": {"score": {"$gte": 95}}, "limit": 10},
                 "search_page_ms": {"limit": 10}}  # fmt: skip
        ours.search(ns, limit=1)  # a store written before the index builds it on its first search
        times: dict[tuple[str, str], list[float]] = {}
        for rep in range(reps):
            for name, store in (("statekeel-store", ours), ("SqliteStore", theirs)):
                for case, kw in cases.items():
                    t = time.perf_counter()
                    found = store.search(ns, **kw)
                    times.setdefault((name, case), []).append(time.perf_counter() - t)
                    assert len(found) == min(10, items // 20 if "op" in case else items // 10)
                j = items - 1 - rep  # a new item (in a namespace of its own), then one written over (same fields)
                for where, key, i in ((ns[:2] + ("new",), f"n{rep}", rep), (ns, f"k{j:06d}", j)):
                    t = time.perf_counter()
                    store.put(where, key, {"text": f"memory {i} " + "y" * 200, "kind": f"k{i % 10}", "score": i % 100})
                    times.setdefault((name, "put_ms"), []).append(time.perf_counter() - t)
        ours.close()
        conn.close()
    return [{"system": name, "backend": "sqlite", "items": items,
             **{case: round(statistics.median(times[(name, case)]) * 1e3, 3) for case in [*cases, "put_ms"]}}
            for name in ("statekeel-store", "SqliteStore")]  # fmt: skip
