"""The PostgreSQL backend on psycopg's ``AsyncConnectionPool``: the asyncio API's hot paths, no thread hop.

It sits beside a :class:`~.backend.PostgresBackend` of the same store and
shares everything but the I/O with it: the SQL text (:mod:`.sql`), how each op
becomes a fragment and its result (:mod:`.ops`), the statements a batch runs and
how its results are read (:mod:`.plan`, the sync backend's planner), the row
checks and checksums (:mod:`.rows`) and the error translation (:mod:`.errors`).
The schema was migrated when the sync backend opened. The pool is opened on
the running loop at the first call; a call from another loop (a store used in a
second ``asyncio.run``) opens a new pool there and leaves the old one to its loop,
whose end closes it (:mod:`.._loop_end`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...errors import ConflictError, UnavailableError, StoreClosedError, translate
from ...protocol import Append, Entry, LogInfo, Op, OpResult, Record
from ...protocol.aio import AsyncBackend
from ...protocol.checks import check_ops
from ...protocol.keys import prefix_end
from .._loop_end import close_at_loop_end, stop_guard
from . import rows as checked
from . import sql
from .backend import PostgresBackend, _live_log, _read_params, kept_cursor
from .config import Settings, connect_kwargs, dsn
from .errors import RACES, RETRIES
from .ops import Params, Row, clamp
from .plan import Stmt

__all__ = ["AsyncPostgresBackend"]


class _AsyncConnection(psycopg.AsyncConnection[Row]):
    """A connection that keeps its cursors (the sync backend's ``_Connection``, for asyncio)."""

    _sk_cursors: list[psycopg.AsyncCursor[Row]] | None = None

    def sk_cursor(self, i: int = 0) -> psycopg.AsyncCursor[Row]:
        """Cursor ``i`` of a pipeline (:func:`.backend.kept_cursor`)."""
        if self._sk_cursors is None:
            self._sk_cursors = []
        return kept_cursor(self._sk_cursors, i, self.cursor)


async def _pipelined(conn: _AsyncConnection, stmts: Sequence[Stmt]) -> list[psycopg.AsyncCursor[Row]]:
    """Run ``stmts`` in one pipeline (one implicit transaction) and raise the first error."""
    cursors: list[psycopg.AsyncCursor[Row]] = []
    failed: psycopg.Error | None = None
    try:
        async with conn.pipeline():
            for i, (query, params) in enumerate(stmts):
                try:
                    cursors.append(await conn.sk_cursor(i).execute(query, params, binary=True, prepare=True))
                except psycopg.Error as exc:
                    failed = exc
                    break
    except psycopg.Error as exc:
        raise (failed or exc) from None
    if failed is not None:
        raise failed
    return cursors


class AsyncPostgresBackend(AsyncBackend):
    """The hot operations of the store's PostgreSQL backend, on an asyncio connection pool."""

    def __init__(self, sync: PostgresBackend) -> None:
        self.url = sync.url
        self.batch_scope = sync.batch_scope
        self._sync = sync
        self._q = sync._q  # the same prepared SQL text
        url = sync._parsed
        cfg = Settings.from_url(url)
        self._conninfo, self._kwargs = dsn(url), connect_kwargs(url, cfg)
        self._sizes = (cfg.pool_min, cfg.pool_max, cfg.timeout)
        self._pool: AsyncConnectionPool[_AsyncConnection] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_failed: tuple[float, str] | None = None
        """When opening this loop's pool last failed, and why: the calls that waited for that
        attempt fail with it instead of each waiting the whole timeout again in turn."""
        self._opening = asyncio.Lock()
        self._guard: asyncio.Task[None] | None = None
        """The task that closes this loop's pool when the loop's run ends (:mod:`.._loop_end`)."""
        self._closed = False

    # -- plumbing ------------------------------------------------------------
    async def _open_pool(self) -> AsyncConnectionPool[_AsyncConnection]:
        if self._closed:
            raise StoreClosedError.of(self.url, "statekeel.open_async()")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a pool (and its lock) serve the loop that opened them
            self._loop, self._pool, self._opening, self._open_failed = loop, None, asyncio.Lock(), None
        asked = time.monotonic()
        async with self._opening:
            if self._pool is None:
                failed = self._open_failed
                if failed is not None and failed[0] >= asked:  # it failed while this call waited for it
                    raise PoolTimeout(failed[1])
                low, high, timeout = self._sizes
                pool = AsyncConnectionPool(
                    self._conninfo, connection_class=_AsyncConnection, kwargs=self._kwargs, min_size=low,
                    max_size=high, timeout=timeout, open=False, name="statekeel-aio",
                )  # fmt: skip
                try:  # its first connection made before any call asks for one: a call finding none
                    # would start a second one too, and one still connecting when the loop ends
                    # (asyncio.run cancelling it) could leave the loop's shutdown waiting forever
                    await pool.open(wait=True, timeout=timeout)
                except BaseException as exc:
                    await pool.close()
                    if isinstance(exc, Exception):  # not this caller's cancellation
                        self._open_failed = (time.monotonic(), str(exc))
                    raise
                self._pool = pool
                self._guard = close_at_loop_end(pool.close, "statekeel-aio-pool-guard")
            return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_AsyncConnection]:
        """A pooled connection; driver errors translated as the sync backend translates them."""
        try:
            with translate(self._sync._map_error):
                pool = self._pool
                if pool is None or self._loop is not asyncio.get_running_loop():
                    pool = await self._open_pool()
                async with pool.connection() as conn:
                    yield conn
        except UnavailableError as exc:
            if not isinstance(exc.__cause__, RACES) and self._pool is not None:
                await self._drop_broken(self._pool)
            raise

    @staticmethod
    async def _drop_broken(pool: AsyncConnectionPool[_AsyncConnection]) -> None:
        try:
            await pool.check()
        except Exception:  # noqa: BLE001 - closed pool or server still down: the next call retries
            pass

    async def _rows(self, query: str, params: Params) -> list[Row]:
        async with self._connection() as conn:
            cursor = await conn.sk_cursor().execute(query, params, binary=True, prepare=True)
            return await cursor.fetchall()

    async def _execute(self, conn: _AsyncConnection, stmts: Sequence[Stmt], wanted: Sequence[int]) -> list[Row | None]:
        """Run ``stmts`` as one transaction in one round trip; first rows of ``wanted``."""
        if not stmts:
            return []
        if len(stmts) == 1:
            cursor = await conn.sk_cursor().execute(*stmts[0], binary=True, prepare=True)
            return [await cursor.fetchone() for _ in wanted]
        cursors = await _pipelined(conn, stmts)
        return [await cursors[i].fetchone() for i in wanted]

    # -- reads ---------------------------------------------------------------
    async def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        rows = await self._rows(self._q.get, {"key": key})
        rec = checked.record(rows[0]) if rows else None
        if rec is None or include_expired or rec.expires_at is None or rec.expires_at > time.time():
            return rec
        return None

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        if not keys:
            return []
        rows = await self._rows(self._q.get_many, {"keys": list(keys), "now": time.time()})
        found = {r[0]: checked.record(r) for r in rows}
        return [found.get(k) for k in keys]

    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        if limit <= 0:
            return []
        query, lo = (self._q.scan_after, after) if after is not None and after >= prefix else (
            self._q.scan_from, prefix)
        params = {"lo": lo, "hi": prefix_end(prefix), "now": time.time(), "limit": clamp(limit)}
        return [checked.record(r) for r in await self._rows(query, params)]

    async def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        rows = await self._read_rows(log, start, stop, limit, reverse)
        return [Entry(log, seq, data, codec, created) for seq, data, codec, created, _ in rows]

    async def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        """The sync backend's fast path: rows checked in bulk, else re-read through :meth:`read`."""
        if limit is not None and limit <= 0:
            return []
        rows = await self._rows(self._q.read_values, _read_params(log, 1, None, limit, reverse))
        values = checked.values_if_intact(log, rows)
        if values is None:
            return [(r[1], r[2]) for r in await self._read_rows(log, 1, None, limit, reverse)]
        return values

    async def _read_rows(
        self, log: str, start: int, stop: int | None, limit: int | None, reverse: bool
    ) -> Sequence[Row]:
        if limit is not None and limit <= 0:
            return []
        return checked.entries(log, await self._rows(self._q.read, _read_params(log, start, stop, limit, reverse)))

    async def log_info(self, log: str) -> LogInfo | None:
        rows = await self._rows(self._q.log_info, {"log": log})
        return _live_log(log, rows[0], time.time()) if rows else None

    # -- writes --------------------------------------------------------------
    async def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        if not ops:
            return []
        try:
            async with self._connection() as conn:
                return await self._apply_retrying(conn, ops, now)
        except ConflictError as err:
            raise await self._with_last_seq(err, ops) from None

    async def _with_last_seq(self, err: ConflictError, ops: Sequence[Op]) -> ConflictError:
        """An ``Append(at=...)`` conflict names the log's last seq (as the sync backend's does)."""
        if err.actual is not None or not any(isinstance(op, Append) and op.log == err.key for op in ops):
            return err
        rows = await self._rows(self._q.log_info, {"log": err.key})
        live = rows and (rows[0][4] is None or rows[0][4] > time.time())
        return ConflictError(err.key, err.expected, int(rows[0][1]) if live else 0)

    async def _apply_retrying(self, conn: _AsyncConnection, ops: Sequence[Op], now: float | None) -> list[OpResult]:
        raw = False
        for attempt in range(1, RETRIES + 1):
            try:
                return await self._apply_once(conn, ops, raw, now)
            except psycopg.Error as exc:
                if attempt == RETRIES:
                    raise
                raw = await self._prepare_retry(conn, exc, ops, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _prepare_retry(self, conn: _AsyncConnection, exc: psycopg.Error, ops: Sequence[Op], raw: bool) -> bool:
        """Make ``ops`` runnable again after ``exc`` (nothing was applied), or re-raise it
        (the sync backend's ``_prepare_retry``, awaited)."""
        if isinstance(exc, pg_errors.InvalidTextRepresentation) and not raw:
            return True  # a "json" payload PostgreSQL's json type rejects: keep its bytes
        if exc.sqlstate == sql.DEAD_LOG_SQLSTATE:
            await self._execute(conn, self._sync._plan.dead_logs(ops, time.time()), [])
            return raw
        if isinstance(exc, RACES):
            return raw
        raise exc

    async def _apply_once(
        self, conn: _AsyncConnection, ops: Sequence[Op], raw: bool, clock: float | None
    ) -> list[OpResult]:
        plan = self._sync._plan.batch(ops, raw, time.time() if clock is None else clock)  # no I/O
        return plan.finish(await self._execute(conn, plan.stmts, plan.wanted))

    # -- housekeeping --------------------------------------------------------
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, None
        guard, self._guard = self._guard, None
        stop_guard(guard)  # it closes the pool too: whichever comes first closes it, the other finds it closed
        if pool is not None:
            try:
                await pool.close()
            except Exception:  # noqa: BLE001 - closing a pool whose loop or server is gone
                pass
