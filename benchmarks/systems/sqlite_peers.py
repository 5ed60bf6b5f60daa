"""SQLite peers: OpenAI Agents SDK SQLiteSession and LangGraph SqliteSaver.

Same calls as shared/bench/peers/peer_turns.py.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import time

from benchmarks.workload import dir_bytes, sqlite_checkpointed_bytes


def openai_sqlite(turns, ctx):
    from agents import SQLiteSession

    d = ctx["workdir"]
    db = os.path.join(d, "state.db")
    s = SQLiteSession("t1", db)
    lat = []

    async def run():
        for u, a in turns:
            t = time.perf_counter()
            await s.add_items([{"role": "user", "content": u}, {"role": "assistant", "content": a}])
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        items = await s.get_items()
        dt = time.perf_counter() - t
        assert len(items) == 2 * len(turns)
        return dt

    load = asyncio.run(run())
    uncheckpointed = dir_bytes(d)
    s.close()
    return {
        "lat": lat,
        "reload_ms": round(load * 1e3, 2),
        "storage_bytes": sqlite_checkpointed_bytes(db, d),
        "storage_bytes_uncheckpointed": uncheckpointed,
    }


def _graph(turns):
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    # functional form: class syntax would break under `from __future__ import annotations`
    S = TypedDict("S", {"messages": Annotated[list, add_messages], "turn": int})

    def agent(s):
        i = s["turn"]
        return {"messages": [{"role": "assistant", "content": turns[i][1]}], "turn": i + 1}

    g = StateGraph(S)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    return g


def langgraph_sqlite(turns, ctx):
    from langgraph.checkpoint.sqlite import SqliteSaver

    d = ctx["workdir"]
    db = os.path.join(d, "state.db")
    conn = sqlite3.connect(db, check_same_thread=False)
    app = _graph(turns).compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "t1"}}
    lat = []
    for i, (u, _a) in enumerate(turns):
        t = time.perf_counter()
        app.invoke({"messages": [{"role": "user", "content": u}], "turn": i}, cfg)
        lat.append(time.perf_counter() - t)
    conn.commit()
    t = time.perf_counter()
    st = app.get_state(cfg)
    load = time.perf_counter() - t
    assert len(st.values["messages"]) == 2 * len(turns)
    uncheckpointed = dir_bytes(d)
    conn.close()
    return {
        "lat": lat,
        "reload_ms": round(load * 1e3, 2),
        "storage_bytes": sqlite_checkpointed_bytes(db, d),
        "storage_bytes_uncheckpointed": uncheckpointed,
    }
