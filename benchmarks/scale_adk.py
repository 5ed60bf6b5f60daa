"""``scale.py --mode adk``: Google ADK's session service under C concurrent conversations.

One turn, as an ADK ``Runner`` makes it: ``get_session(num_recent_events=20)``, then
``append_event`` of the user's event and of the model's event (with ``state_delta={"turn": i}``)
— the reference workload's two messages as ADK events. statekeel: ``StatekeelSessionService``
given an ``AsyncStore`` (native on PostgreSQL and Redis since session 41; ``--before``: every call on
the store's worker). Raw: what a session service written on the async driver alone would do for
the same turn — read the newest 20 events and the session's state and parse them into ADK objects,
then per event one transaction storing the event's JSON and its state (PostgreSQL: INSERT + UPSERT
in a transaction on an ``AsyncConnectionPool`` of 10; Redis: ``LRANGE`` + ``HGETALL``, and a MULTI/EXEC
of RPUSH + HSET per event). The raw side neither checks a stale writer nor deduplicates a
redelivered event, which statekeel's batch does (compare-and-set on the session's head, an
idempotency key from the event's content).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

_ids = itertools.count()
POOL = 10


def _events(u: str, a: str, i: int) -> tuple[Any, Any]:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    now = time.time()
    user = Event(author="user", invocation_id=f"i{i}", timestamp=now,
                 content=types.Content(role="user", parts=[types.Part(text=u)]))
    model = Event(author="agent", invocation_id=f"i{i}", timestamp=now + 1e-6, actions=EventActions(state_delta={"turn": i}),
                  content=types.Content(role="model", parts=[types.Part(text=a)]))
    return user, model


async def open_store(url: str, native: bool) -> Any:
    """An AsyncStore on ``url``; ``native=False``: every call on its worker (``STATEKEEL_ASYNC_NATIVE=0``)."""
    import statekeel

    if not native:
        os.environ["STATEKEEL_ASYNC_NATIVE"] = "0"
    try:
        return await statekeel.open_async(url)
    finally:
        os.environ.pop("STATEKEEL_ASYNC_NATIVE", None)


async def statekeel_adk(url: str, c: int, turns: list[tuple[str, str]], native: bool, gather: Any) -> float:
    from google.adk.sessions.base_session_service import GetSessionConfig

    from statekeel.integrations.adk import StatekeelSessionService

    tag = next(_ids)
    store = await open_store(url, native)
    recent = GetSessionConfig(num_recent_events=20)
    async with store:
        service = StatekeelSessionService(store)
        for n in range(c):
            await service.create_session(app_name="bench", user_id="u", session_id=f"s{tag}-{n}")

        async def one(n: int, i: int, u: str, a: str) -> None:
            session = await service.get_session(app_name="bench", user_id="u", session_id=f"s{tag}-{n}", config=recent)
            assert session is not None
            user, model = _events(u, a, i)
            await service.append_event(session, user)
            await service.append_event(session, model)

        return float(await gather(c, turns, one))


PG_SETUP = (
    "CREATE TABLE IF NOT EXISTS adk_e (sid text, seq bigserial, ev jsonb, PRIMARY KEY (sid, seq));"
    "CREATE TABLE IF NOT EXISTS adk_s (sid text PRIMARY KEY, state jsonb, t double precision)"
)


async def raw_pg_adk(dsn: str, c: int, turns: list[tuple[str, str]], gather: Any) -> float:
    from google.adk.events.event import Event
    from psycopg_pool import AsyncConnectionPool

    tag = next(_ids)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=POOL, kwargs={"autocommit": True}) as pool:
        async with pool.connection() as conn:
            await conn.execute(PG_SETUP)

        async def store_event(sid: str, event: Any) -> None:
            delta = event.actions.state_delta if event.actions else {}
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("INSERT INTO adk_e (sid, ev) VALUES (%s, %s)", (sid, event.model_dump_json(exclude_none=True)))
                await conn.execute("INSERT INTO adk_s VALUES (%s, %s, %s) ON CONFLICT (sid) DO UPDATE"
                                   " SET state = adk_s.state || excluded.state, t = excluded.t",
                                   (sid, json.dumps(delta), event.timestamp))

        async def one(n: int, i: int, u: str, a: str) -> None:
            sid = f"raw-{tag}-{n}"
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT ev::text FROM adk_e WHERE sid = %s ORDER BY seq DESC LIMIT 20", (sid,))
                events = [Event.model_validate_json(r[0]) for r in reversed(await cur.fetchall())]
                cur = await conn.execute("SELECT state::text FROM adk_s WHERE sid = %s", (sid,))
                row = await cur.fetchone()
                state = json.loads(row[0]) if row else {}
            assert len(events) <= 20 and isinstance(state, dict)
            user, model = _events(u, a, i)
            await store_event(sid, user)
            await store_event(sid, model)

        return float(await gather(c, turns, one))


async def raw_redis_adk(url: str, c: int, turns: list[tuple[str, str]], gather: Any) -> float:
    import redis.asyncio as aredis
    from google.adk.events.event import Event

    tag = next(_ids)
    client = aredis.Redis(connection_pool=aredis.BlockingConnectionPool.from_url(url, max_connections=100))
    try:
        async def store_event(key: str, event: Any) -> None:
            delta = event.actions.state_delta if event.actions else {}
            pipe = client.pipeline(transaction=True)
            pipe.rpush(f"{key}:e", event.model_dump_json(exclude_none=True))
            pipe.hset(f"{key}:s", mapping={"t": event.timestamp, **{k: json.dumps(v) for k, v in delta.items()}})
            await pipe.execute()

        async def one(n: int, i: int, u: str, a: str) -> None:
            key = f"rawadk{tag}:{n}"
            pipe = client.pipeline(transaction=False)
            pipe.lrange(f"{key}:e", -20, -1)
            pipe.hgetall(f"{key}:s")
            raw_events, raw_state = await pipe.execute()
            events = [Event.model_validate_json(e) for e in raw_events]
            state = {k: json.loads(v) for k, v in raw_state.items() if k != b"t"}
            assert len(events) <= 20 and isinstance(state, dict)
            user, model = _events(u, a, i)
            await store_event(key, user)
            await store_event(key, model)

        return float(await gather(c, turns, one))
    finally:
        await client.aclose()
