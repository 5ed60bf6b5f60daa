"""``scale.py --mode langgraph``: a LangGraph checkpointer under C concurrent threads.

One turn = ``await graph.ainvoke({"messages": [user message]}, {"thread_id": ...})`` of the
reference chat graph (benchmarks/langgraph_bench.py: one node appending the assistant's reply;
LangGraph reads the thread's newest checkpoint and writes three checkpoints and the node's
writes per turn), C threads at once, each ``--turns`` turns at most (a thread's state grows
every turn; LangGraph's savers store it whole). Systems:

* statekeel: ``StatekeelSaver(async_store)`` — ``aput``/``aput_writes``/``aget_tuple`` on the
  store's asyncio driver since session 41; ``--before``: every call on the worker thread;
* PostgreSQL only: LangGraph's own ``AsyncPostgresSaver`` on a psycopg ``AsyncConnectionPool``
  of 10 connections (statekeel's pool size), the row the ratio is taken against.
"""

from __future__ import annotations

import itertools
from typing import Any

from benchmarks.langgraph_bench import chat_graph
from benchmarks.scale_adk import open_store

_ids = itertools.count()
POOL = 10


def turns_for(c: int, turns: list[tuple[str, str]], min_turns: int) -> list[tuple[str, str]]:
    """At most 100 turns a thread (its state grows), at least 20, about ``min_turns`` in all."""
    return turns[: max(21, min(101, -(-min_turns // c) + 1))]


async def statekeel_graph(url: str, c: int, turns: list[tuple[str, str]], native: bool, gather: Any) -> float:
    from statekeel.integrations.langgraph import StatekeelSaver

    tag = next(_ids)
    async with await open_store(url, native) as store:
        graph = chat_graph(StatekeelSaver(store), turns)
        return float(await gather(c, turns, _turn(graph, f"sk{tag}")))


async def langgraph_pg(dsn: str, c: int, turns: list[tuple[str, str]], gather: Any) -> float:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    tag = next(_ids)
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(dsn, min_size=1, max_size=POOL, kwargs=kwargs) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        graph = chat_graph(saver, turns)
        return float(await gather(c, turns, _turn(graph, f"lg{tag}")))


def _turn(graph: Any, tag: str) -> Any:
    async def one(n: int, i: int, u: str, a: str) -> None:
        await graph.ainvoke({"messages": [{"role": "user", "content": u}], "turn": i},
                            {"configurable": {"thread_id": f"{tag}-{n}"}})

    return one
