"""LangGraph checkpointers on the reference chat workload, side by side in one run.

    .venv/bin/python benchmarks/langgraph_bench.py --turns 200            # a few minutes
    .venv/bin/python benchmarks/langgraph_bench.py --turns 1000           # the issue's run (LangGraph's
                                                                          # savers need ~2 GB of disk)

A LangGraph graph with ``add_messages`` (START -> agent -> END, exactly the graph of
/work/shared/bench/peers), N turns of the reference workload (a 200-byte user message,
an 800-byte assistant message and ``turn = i`` per turn), on:

* ``statekeel-saver``: :class:`StatekeelSaver` on SQLite, PostgreSQL and Redis;
* ``SqliteSaver`` and ``PostgresSaver``: LangGraph's own savers on the same backends;
* ``statekeel-turn``: statekeel's own chat turn (``session.append``) on each backend —
  how much the LangGraph layer adds.

Per row: median and p99 ms per turn, storage (SQLite: files after a WAL checkpoint;
PostgreSQL: growth of the database; Redis: growth of used_memory), ``get_state`` and
``get_state_history(limit=20)`` (median of 20 calls). The table at the end gives the
ratios. PostgreSQL and Redis are throw-away local servers (statekeel.testing.servers).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks.systems.pg_peers import db_size, fresh_database  # noqa: E402
from benchmarks.systems.redis_peers import prepare  # noqa: E402
from benchmarks.workload import latency_stats, make_turns, payload_bytes, sqlite_checkpointed_bytes  # noqa: E402

from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402

CONFIG = {"configurable": {"thread_id": "t1"}}


class S(TypedDict):
    messages: Annotated[list[Any], add_messages]
    turn: int


def chat_graph(saver: Any, turns: list[tuple[str, str]]) -> Any:
    def agent(s: S) -> dict[str, Any]:
        i = s["turn"]
        return {"messages": [{"role": "assistant", "content": turns[i][1]}], "turn": i + 1}

    g = StateGraph(S)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    return g.compile(checkpointer=saver)


def _median_ms(fn: Callable[[], Any], n: int = 20) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e3, 3)


def run_graph(saver: Any, turns: list[tuple[str, str]]) -> dict[str, Any]:
    """Per-turn latency, then ``get_state`` / history on the same saver and (statekeel's saver:
    ``get_state_cold_ms``) on a new saver over the same store, which has nothing in memory."""
    app = chat_graph(saver, turns)
    lat = []
    for i, (user, _) in enumerate(turns):
        t = time.perf_counter()
        app.invoke({"messages": [{"role": "user", "content": user}], "turn": i}, CONFIG)
        lat.append(time.perf_counter() - t)
    assert len(app.get_state(CONFIG).values["messages"]) == 2 * len(turns)
    row = {
        **latency_stats(lat),
        "get_state_ms": _median_ms(lambda: app.get_state(CONFIG)),
        "history20_ms": _median_ms(lambda: list(app.get_state_history(CONFIG, limit=20))),
    }
    core = getattr(saver, "core", None)
    if core is not None:
        from statekeel.integrations.langgraph import StatekeelSaver

        times = []
        for _ in range(5):  # a new saver each time: nothing in memory (graph compiled outside the timing)
            with StatekeelSaver(core) as fresh:
                cold_app = chat_graph(fresh, turns)
                t = time.perf_counter()
                cold_app.get_state(CONFIG)
                times.append(time.perf_counter() - t)
        row["get_state_cold_ms"] = round(statistics.median(times) * 1e3, 3)
    return row


def run_turns(url: str, turns: list[tuple[str, str]]) -> dict[str, Any]:
    import statekeel

    with statekeel.open(url) as store:
        s = store.session("t1")
        lat = []
        for i, (u, a) in enumerate(turns):
            t = time.perf_counter()
            s.append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
            lat.append(time.perf_counter() - t)
        return {**latency_stats(lat), "get_state_ms": _median_ms(lambda: s.history()),
                "history20_ms": _median_ms(lambda: s.history(last=20))}  # fmt: skip


def sqlite_rows(turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from statekeel.integrations.langgraph import StatekeelSaver

    rows = []
    for system in ("statekeel-saver", "SqliteSaver", "statekeel-turn"):
        with tempfile.TemporaryDirectory(prefix="lgb-") as d:
            db = f"{d}/state.db"
            if system == "statekeel-saver":
                with StatekeelSaver.from_url(f"sqlite:///{db}") as saver:
                    row = run_graph(saver, turns)
            elif system == "SqliteSaver":
                conn = sqlite3.connect(db, check_same_thread=False)
                row = run_graph(SqliteSaver(conn), turns)
                conn.commit()
                conn.close()
            else:
                row = run_turns(f"sqlite:///{db}", turns)
            rows.append({"system": system, "backend": "sqlite", **row, "storage_bytes": sqlite_checkpointed_bytes(db, d)})
    return rows


def postgres_rows(admin: str, turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from langgraph.checkpoint.postgres import PostgresSaver

    from statekeel.integrations.langgraph import StatekeelSaver

    rows = []
    for n, system in enumerate(("statekeel-saver", "PostgresSaver", "statekeel-turn")):
        dsn = fresh_database(admin, f"lgbench{n}")
        s0 = db_size(dsn)
        if system == "statekeel-saver":
            with StatekeelSaver.from_url(dsn) as saver:
                row = run_graph(saver, turns)
        elif system == "PostgresSaver":
            with PostgresSaver.from_conn_string(dsn) as pg_saver:
                pg_saver.setup()
                row = run_graph(pg_saver, turns)
        else:
            row = run_turns(dsn, turns)
        rows.append({"system": system, "backend": "postgres", **row, "storage_bytes": db_size(dsn) - s0})
    return rows


def redis_rows(url: str, turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from statekeel.integrations.langgraph import StatekeelSaver

    rows = []
    for system in ("statekeel-saver", "statekeel-turn"):
        r, m0 = prepare(url)
        if system == "statekeel-saver":
            with StatekeelSaver.from_url(url) as saver:
                row = run_graph(saver, turns)
        else:
            row = run_turns(url, turns)
        rows.append({"system": system, "backend": "redis", **row, "storage_bytes": r.info("memory")["used_memory"] - m0})
    return rows


def table(rows: list[dict[str, Any]], payload: int) -> str:
    by = {(r["backend"], r["system"]): r for r in rows}
    peer = {"sqlite": "SqliteSaver", "postgres": "PostgresSaver"}
    lines = ["| backend | system | ms/turn (median) | storage MB | storage / payload | get_state ms | get_state "
             "cold ms | history(20) ms | vs LangGraph saver: time, storage, get_state, cold, history | vs statekeel turn |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lg = by.get((r["backend"], peer.get(r["backend"], "")))
        own = by.get((r["backend"], "statekeel-turn"))
        vs_lg = "" if lg is None or r is lg or r["system"] != "statekeel-saver" else ", ".join([
            f"{lg['median_ms_per_turn'] / r['median_ms_per_turn']:.1f}x faster",
            f"{lg['storage_bytes'] / max(r['storage_bytes'], 1):.0f}x smaller",
            f"{r['get_state_ms'] / lg['get_state_ms']:.2f}x", f"{r['get_state_cold_ms'] / lg['get_state_ms']:.2f}x",
            f"{r['history20_ms'] / lg['history20_ms']:.2f}x"])  # fmt: skip
        cold = f"{r['get_state_cold_ms']:.2f}" if "get_state_cold_ms" in r else ""
        vs_own = f"{r['median_ms_per_turn'] / own['median_ms_per_turn']:.1f}x" if own and r["system"] == "statekeel-saver" else ""
        lines.append(f"| {r['backend']} | {r['system']} | {r['median_ms_per_turn']:.3f} | {r['storage_bytes'] / 1e6:.2f} | "
                     f"{r['storage_bytes'] / payload:.1f} | {r['get_state_ms']:.2f} | {cold} | {r['history20_ms']:.2f} | {vs_lg} | {vs_own} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    args = parser.parse_args()
    turns = make_turns(args.turns)
    backends = args.backends.split(",")
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        from statekeel.testing.servers import PostgresServer, RedisServer

        if "sqlite" in backends:
            rows += sqlite_rows(turns)
        if "postgres" in backends:
            rows += postgres_rows(stack.enter_context(PostgresServer()).url, turns)
        if "redis" in backends:
            rows += redis_rows(stack.enter_context(RedisServer()).url, turns)
    for row in rows:
        print(json.dumps({"turns": args.turns, "payload_bytes": payload_bytes(turns), **row}))
    print(table(rows, payload_bytes(turns)), file=sys.stderr)


if __name__ == "__main__":
    main()
