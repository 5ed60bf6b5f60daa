"""The OpenAI Agents SDK and Google ADK adapters against the frameworks' own storage, one run.

    .venv/bin/python benchmarks/frameworks_bench.py                      # 1,000 turns, 10,000 sessions
    .venv/bin/python benchmarks/frameworks_bench.py --turns 200 --sessions 2000   # a quick look

OpenAI Agents SDK, per turn = ``add_items([user, assistant])`` (the reference workload: a
200-byte user message and an 800-byte reply), then ``get_items(limit=20)`` and
``get_items()`` on the N-turn session: ``StatekeelSession`` on SQLite and Redis vs the
SDK's ``SQLiteSession`` and ``RedisSession`` (same server, AOF fsync always), and the floor: the
raw ``sqlite3`` driver behind the same thread hop (``--repeat`` runs; each figure their median).

Google ADK, per turn = ``append_event`` of the user's event and of the model's event
(with a ``state_delta``), then ``get_session(num_recent_events=20)``: our
``StatekeelSessionService`` on SQLite vs ADK's ``DatabaseSessionService`` on SQLite
(aiosqlite; needs ``pip install "google-adk[db]"`` for SQLAlchemy, see
``benchmarks/requirements.txt``); then ``list_sessions`` (median of five, the two interleaved) of an app holding ``--sessions`` sessions: ADK's full
listing on both, and our paged listing's first page (``page_size=100``). Last, our paged
listing at ``--list-counts`` sessions (bulk-written) on ``--list-backends``: first and a middle page.

    .venv/bin/python benchmarks/frameworks_bench.py --frameworks openai --durability full,normal --list-counts ""

``--durability normal``: OpenAI on SQLite with both sessions and the floor at ``synchronous=NORMAL``
(ours ``?durability=normal``; the SDK's SQLiteSession, which leaves the library default — FULL in
this build — through a subclass), so the per-turn figure is the adapters' own cost, not an fsync.

Each pair of systems runs interleaved, call by call (writes, then reads), so a loaded machine
slows both alike. Medians of per-call times; the ratio column is theirs / ours (> 1: statekeel
faster): the median over ``--repeat`` runs of each run's own ratio (listings: one run). The load
average at the start and the end is printed with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks.systems.redis_peers import prepare  # noqa: E402
from benchmarks.workload import make_turns  # noqa: E402


async def _median_ms(call: Callable[[], Awaitable[Any]], n: int = 30) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e3, 3)


async def _openai(sessions: dict[str, Any], turns: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """The systems take turns call by call — writes, then reads (interleaved: a loaded machine
    slows both alike)."""
    lat: dict[str, list[float]] = {name: [] for name in sessions}
    for u, a in turns:
        for name, session in sessions.items():
            t = time.perf_counter()
            await session.add_items([{"role": "user", "content": u}, {"role": "assistant", "content": a}])
            lat[name].append(time.perf_counter() - t)
    for session in sessions.values():
        assert len(await session.get_items()) == 2 * len(turns)
    tail = await _interleaved(sessions, lambda s: s.get_items(limit=20), 30)
    whole = await _interleaved(sessions, lambda s: s.get_items(), 5)
    return {name: {"turn_ms": round(statistics.median(lat[name]) * 1e3, 3), "get_items20_ms": tail[name],
                   "get_items_all_ms": whole[name]} for name in sessions}  # fmt: skip


async def _interleaved(systems: dict[str, Any], call: Callable[[Any], Awaitable[Any]], n: int) -> dict[str, float]:
    """Median ms of ``call(system)``, the systems alternating call by call."""
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(n):
        for name, system in systems.items():
            t = time.perf_counter()
            await call(system)
            times[name].append(time.perf_counter() - t)
    return {name: round(statistics.median(ts) * 1e3, 3) for name, ts in times.items()}


class _RawSqlite:
    """The floor for an async SQLite session: the raw driver (WAL, ``synchronous`` as both
    sessions) inserting the turn's items in one transaction, through ``asyncio.to_thread`` like
    the SDK's session (a durable commit must not block the event loop)."""

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        import sqlite3

        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, sid TEXT, data TEXT)")
        self._db.execute("CREATE INDEX m_sid ON m (sid, id)")

    def _add(self, items: list[Any]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT INTO m (sid, data) VALUES ('t1', ?)", [(json.dumps(i),) for i in items])
        self._db.execute("COMMIT")

    async def add_items(self, items: list[Any]) -> None:
        await asyncio.to_thread(self._add, items)

    def _get(self, limit: int | None) -> list[Any]:
        rows = self._db.execute("SELECT data FROM m WHERE sid = 't1' ORDER BY id DESC LIMIT ?", (limit or -1,))
        return [json.loads(r[0]) for r in rows][::-1]

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return await asyncio.to_thread(self._get, limit)

    def close(self) -> None:
        self._db.close()


def _sdk_sqlite_session(session_id: str, path: str, synchronous: str) -> Any:
    """The SDK's ``SQLiteSession``. It sets WAL and leaves ``synchronous`` at the library's
    default — FULL in this build (``DEFAULT_WAL_SYNCHRONOUS=2``), so every ``add_items``
    commit is one fdatasync, as ours (checked with strace) — or, for ``normal``, NORMAL."""
    from agents import SQLiteSession

    class _Normal(SQLiteSession):  # type: ignore[misc]
        @staticmethod
        def _configure_connection(conn: Any) -> None:
            SQLiteSession._configure_connection(conn)
            conn.execute("PRAGMA synchronous=NORMAL")

    return (SQLiteSession if synchronous == "full" else _Normal)(session_id, path)


def openai_rows(
    backends: list[str], turns: list[tuple[str, str]], redis_url: str | None, durability: str = "full"
) -> list[dict[str, Any]]:
    from statekeel.integrations.openai_agents import StatekeelSession

    rows = []
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="fwb-") as d:
            pair = {"StatekeelSession": StatekeelSession.from_url("t1", f"sqlite:///{d}/sk.db?durability={durability}"),
                    "SQLiteSession": _sdk_sqlite_session("t1", f"{d}/sdk.db", durability),
                    "raw sqlite3 floor": _RawSqlite(f"{d}/raw.db", durability.upper())}  # fmt: skip
            backend = "sqlite" if durability == "full" else f"sqlite-{durability}"
            for name, row in asyncio.run(_openai(pair, turns)).items():
                rows.append({"framework": "openai", "backend": backend, "system": name, **row})
            for session in pair.values():
                session.close()
    if "redis" in backends and redis_url and durability == "full":
        from agents.extensions.memory import RedisSession

        prepare(redis_url)
        ours = StatekeelSession.from_url("t1", redis_url)

        async def both() -> dict[str, dict[str, Any]]:
            theirs = RedisSession.from_url("sdk-t1", url=redis_url)
            return await _openai({"StatekeelSession": ours, "RedisSession": theirs}, turns)

        for name, row in asyncio.run(both()).items():
            rows.append({"framework": "openai", "backend": "redis", "system": name, **row})
        ours.close()
    return rows


async def _adk(services: dict[str, Any], turns: list[tuple[str, str]], sessions: int) -> dict[str, dict[str, Any]]:
    """The services take turns call by call (interleaved: a loaded machine slows both alike)."""
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.adk.sessions.base_session_service import GetSessionConfig
    from google.genai import types

    def event(author: str, role: str, text: str, delta: dict[str, Any] | None = None) -> Event:
        return Event(author=author, invocation_id="inv", content=types.Content(role=role, parts=[types.Part(text=text)]),
                     actions=EventActions(state_delta=delta or {}))  # fmt: skip

    opened = {name: await svc.create_session(app_name="bench", user_id="u", session_id="t1")
              for name, svc in services.items()}  # fmt: skip
    lat: dict[str, list[float]] = {name: [] for name in services}
    for i, (u, a) in enumerate(turns):
        for name, svc in services.items():
            t = time.perf_counter()
            await svc.append_event(opened[name], event("user", "user", u))
            await svc.append_event(opened[name], event("agent", "model", a, {"turn": i}))
            lat[name].append(time.perf_counter() - t)
    recent = GetSessionConfig(num_recent_events=20)
    reads: dict[str, list[float]] = {name: [] for name in services}
    for _ in range(30):
        for name, svc in services.items():
            t = time.perf_counter()
            got = await svc.get_session(app_name="bench", user_id="u", session_id="t1", config=recent)
            reads[name].append(time.perf_counter() - t)
            assert got is not None and len(got.events) == 20
    for i in range(sessions):
        for svc in services.values():
            await svc.create_session(app_name="many", user_id=f"user{i % 100}", session_id=f"s{i:06d}")
    listings: dict[str, list[float]] = {name: [] for name in services}
    for round_ in range(LIST_ROUNDS):  # interleaved, each system first in turn: one listing is a noisy figure
        order = list(services.items())
        for name, svc in order if round_ % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            listed = await svc.list_sessions(app_name="many")
            listings[name].append(time.perf_counter() - t)
            assert len(listed.sessions) == sessions
    rows: dict[str, dict[str, Any]] = {}
    for name, svc in services.items():
        rows[name] = {"turn_ms": round(statistics.median(lat[name]) * 1e3, 3),
                      "get_session20_ms": round(statistics.median(reads[name]) * 1e3, 3),
                      "list_all_ms": round(statistics.median(listings[name]) * 1e3, 1)}  # fmt: skip
        if hasattr(svc, "list_sessions_page"):
            rows[name]["list_first_page_ms"] = await _median_ms(
                lambda: svc.list_sessions_page(app_name="many", page_size=100), 10)
    return rows


LIST_ROUNDS = 5
"""ADK's full ``list_sessions``: each system lists the app this many times, interleaved (the median is reported)."""


def bulk_adk_sessions(store: Any, app: str, start: int, stop: int, batch: int = 2000) -> None:
    """Write ADK sessions ``start`` .. ``stop - 1`` of ``app`` (100 users) straight through the
    protocol, ``batch`` per atomic batch: the records ``create_session`` writes (session record,
    index entry, the adapter's head), so 100,000 sessions take seconds, not an fsync each."""
    from statekeel.core import layout
    from statekeel.integrations.adk import _layout as L
    from statekeel.protocol import Put

    codec, now, ops = store.codec, time.time(), []
    for i in range(start, stop):
        user = f"user{i % 100}"
        sid = L.session_key(app, user, f"s{i:06d}")
        for key, value in ((layout.session_meta_key(sid), {"user": user, "status": "active", "ttl": None}),
                           (layout.session_index_key(sid), {}),
                           (layout.state_key("session", sid, L.HEAD), {"t": now + i * 1e-3})):  # fmt: skip
            data, name = codec.encode(value, "bulk", key)
            ops.append(Put(key, data, name, None))
        if len(ops) >= 3 * batch:
            store.backend.apply(ops)
            ops = []
    if ops:
        store.backend.apply(ops)


def listing_rows(urls: dict[str, str], counts: list[int]) -> list[dict[str, Any]]:
    """``list_sessions_page`` (100 a page): the first page and one from the middle, at each
    session count in ``counts`` (grown in place), per backend."""
    import statekeel
    from statekeel.integrations.adk import StatekeelSessionService

    rows = []
    for backend, url in urls.items():
        store = statekeel.open(url)
        service = StatekeelSessionService(store)
        built = 0
        for count in counts:
            t = time.perf_counter()
            bulk_adk_sessions(store, "many", built, count)
            build_s, built = time.perf_counter() - t, count
            middle = f"adk/many/user50/s{count // 2:06d}"

            async def pages() -> tuple[float, float]:
                page = await service.list_sessions_page(app_name="many", page_size=100, page_token=middle)
                assert len(page.sessions) == 100 and page.next_page_token is not None
                first = await _median_ms(lambda: service.list_sessions_page(app_name="many", page_size=100), 10)
                later = await _median_ms(
                    lambda: service.list_sessions_page(app_name="many", page_size=100, page_token=middle), 10)
                return first, later

            first, later = asyncio.run(pages())
            rows.append({"framework": "adk", "backend": backend, "system": "StatekeelSessionService",
                         "sessions_listed": count, "list_first_page_ms": first, "list_middle_page_ms": later,
                         "build_s": round(build_s, 1)})  # fmt: skip
        asyncio.run(service.close())
        store.close()
    return rows


def adk_rows(turns: list[tuple[str, str]], sessions: int) -> list[dict[str, Any]]:
    from google.adk.sessions import DatabaseSessionService

    from statekeel.integrations.adk import StatekeelSessionService

    with tempfile.TemporaryDirectory(prefix="fwb-") as d:
        ours = StatekeelSessionService.from_url(f"sqlite:///{d}/sk.db")  # opened off the loop

        async def both() -> dict[str, dict[str, Any]]:
            theirs = DatabaseSessionService(f"sqlite+aiosqlite:///{d}/adk.db")
            try:
                return await _adk({"StatekeelSessionService": ours, "DatabaseSessionService": theirs}, turns, sessions)
            finally:
                await theirs.close()
                await ours.close()

        return [{"framework": "adk", "backend": "sqlite", "system": name, **row} for name, row in asyncio.run(both()).items()]


_PEER = {"StatekeelSession": {"sqlite": "SQLiteSession", "redis": "RedisSession"},
         "StatekeelSessionService": {"sqlite": "DatabaseSessionService"}}  # fmt: skip
_COLUMNS = ("turn_ms", "get_items20_ms", "get_items_all_ms", "get_session20_ms", "list_all_ms", "list_first_page_ms",
            "sessions_listed", "list_middle_page_ms")


def _peer(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The framework's own implementation measured beside ``row`` (same backend, same run)."""
    name = _PEER.get(row["system"], {}).get(row["backend"].split("-")[0])
    return next((r for r in rows if r["backend"] == row["backend"] and r["system"] == name), None)


def _ratios(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, float]:
    """theirs / ours for each column both have (> 1: statekeel faster), within one run."""
    peer = _peer(row, rows)
    if peer is None:
        return {}
    return {c: peer[c] / row[c] for c in _COLUMNS if c in row and c in peer and row[c] and c != "sessions_listed"}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| framework | backend | system | " + " | ".join(_COLUMNS) + " | theirs / ours (same columns) |",
             "|---" * (len(_COLUMNS) + 4) + "|"]  # fmt: skip
    for r in rows:
        ratios = ", ".join(f"{c}: {v:.2f}x" for c, v in r.get("ratios", _ratios(r, rows)).items())
        cells = " | ".join(f"{r[c]}" if c in r else "" for c in _COLUMNS)
        lines.append(f"| {r['framework']} | {r['backend']} | {r['system']} | {cells} | {ratios} |")
    return "\n".join(lines)


def _medians(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (backend, system): the median of each figure over the runs (and the runs' count),
    and ``ratios``: the median over the runs of each run's own theirs / ours — each ratio is taken
    from one interleaved run, never from figures of different runs."""
    out = []
    for rows in zip(*runs):
        merged = dict(rows[0], runs=len(rows))
        for c in _COLUMNS:
            if c in rows[0]:
                merged[c] = round(statistics.median(r[c] for r in rows), 3)
        per_run = [_ratios(row, run) for row, run in zip(rows, runs)]
        merged["ratios"] = {c: round(statistics.median(r[c] for r in per_run), 2) for c in per_run[0]}
        merged["runs_figures"] = [{c: r[c] for c in _COLUMNS if c in r} for r in rows]  # each run's own
        out.append(merged)
    return out


def _load() -> str:
    """The 1/5/15-minute load averages, reported with the figures (2 cores shared: noisy)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _listing_urls(stack: ExitStack, backends: list[str]) -> dict[str, str]:
    """A fresh store per backend for the listing rows (servers started here, stopped at exit)."""
    from statekeel.testing.servers import PostgresServer, RedisServer

    urls = {}
    for backend in backends:
        if backend == "sqlite":
            urls[backend] = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory(prefix='fwb-'))}/list.db"
        elif backend == "postgres":
            urls[backend] = stack.enter_context(PostgresServer()).url + "?schema=fwb_list"
        elif backend == "redis":
            urls[backend] = stack.enter_context(RedisServer()).url
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--frameworks", default="openai,adk")
    parser.add_argument("--list-counts", default="10000,100000",
                        help="ADK list_sessions_page at these session counts (bulk-built; '' to skip)")
    parser.add_argument("--list-backends", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=3, help="OpenAI and ADK runs; figures and ratios: their median")
    parser.add_argument("--durability", default="full",
                        help="OpenAI on SQLite at these settings: full (both sessions' default here), normal")
    args = parser.parse_args()
    turns = make_turns(args.turns)
    backends, frameworks = args.backends.split(","), args.frameworks.split(",")
    rows: list[dict[str, Any]] = []
    started = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {_load()}"
    with ExitStack() as stack:
        from statekeel.testing.servers import RedisServer

        redis_url = stack.enter_context(RedisServer()).url if "redis" in backends and "openai" in frameworks else None
        if "openai" in frameworks:
            for durability in args.durability.split(","):
                runs = [openai_rows(backends, turns, redis_url, durability) for _ in range(args.repeat)]
                rows += _medians(runs)
        if "adk" in frameworks:
            rows += _medians([adk_rows(turns, args.sessions) for _ in range(args.repeat)])
        counts = [int(c) for c in args.list_counts.split(",") if c]
        if "adk" in frameworks and counts:
            rows += listing_rows(_listing_urls(stack, args.list_backends.split(",")), counts)
    for row in rows:
        print(json.dumps({"turns": args.turns, "sessions": args.sessions, **row}))
    print(table(rows), file=sys.stderr)
    print(f"started {started}; ended {time.strftime('%H:%M:%S', time.gmtime())} UTC, load {_load()}", file=sys.stderr)


if __name__ == "__main__":
    main()
