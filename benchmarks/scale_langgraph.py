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

``scale.py --mode lgstore``: LangGraph's long-term store (``BaseStore``) as a memory-keeping node
uses it, C users at once; one turn = ``aget`` of the user's profile, ``asearch`` of their newest
5 memories, ``aput`` of a new one (a 200-byte text). statekeel: ``StatekeelStore(async_store)``
(``abatch`` on the asyncio driver since session 42; ``--before``: on the worker); PostgreSQL only:
LangGraph's own ``AsyncPostgresStore`` on a pool of 10.
"""

from __future__ import annotations

import asyncio
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

    tag = next(_ids)
    async with _pool(dsn) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        graph = chat_graph(saver, turns)
        return float(await gather(c, turns, _turn(graph, f"lg{tag}")))


def _pool(dsn: str) -> Any:
    """A psycopg pool as LangGraph's PostgreSQL classes want it, of statekeel's pool size."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    return AsyncConnectionPool(dsn, min_size=1, max_size=POOL, kwargs=kwargs)


def _turn(graph: Any, tag: str) -> Any:
    async def one(n: int, i: int, u: str, a: str) -> None:
        await graph.ainvoke({"messages": [{"role": "user", "content": u}], "turn": i},
                            {"configurable": {"thread_id": f"{tag}-{n}"}})

    return one


async def statekeel_memory(url: str, c: int, turns: list[tuple[str, str]], native: bool, gather: Any) -> float:
    from statekeel.integrations.langgraph import StatekeelStore

    tag = next(_ids)
    async with await open_store(url, native) as store:
        memory = StatekeelStore(store)
        await asyncio.to_thread(memory.build_index)  # as a store's first search would (on the worker)
        return float(await gather(c, turns, _memory_turn(memory, f"sk{tag}")))


async def langgraph_pg_store(dsn: str, c: int, turns: list[tuple[str, str]], gather: Any) -> float:
    from langgraph.store.postgres.aio import AsyncPostgresStore

    tag = next(_ids)
    async with _pool(dsn) as pool:
        store = AsyncPostgresStore(pool)  # type: ignore[arg-type]
        await store.setup()
        return float(await gather(c, turns, _memory_turn(store, f"lg{tag}")))


def _memory_turn(store: Any, tag: str) -> Any:
    async def one(n: int, i: int, u: str, a: str) -> None:
        ns = ("users", f"{tag}-{n}", "memories")
        await store.aget(ns, "profile")
        await store.asearch(ns, limit=5)
        await store.aput(ns, f"m{i}", {"text": u, "turn": i})

    return one
