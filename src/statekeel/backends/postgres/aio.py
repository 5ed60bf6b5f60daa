"""The PostgreSQL backend on psycopg's ``AsyncConnectionPool``: the asyncio API's hot paths, no thread hop.

It sits beside a :class:`~.backend.PostgresBackend` of the same store and
shares everything but the I/O with it: the SQL text (:mod:`.sql`), how each op
becomes a fragment and its result (:mod:`.ops`), the statements a batch runs and
how its results are read (:mod:`.plan`, the sync backend's planner), the row
checks and checksums (:mod:`.rows`) and the error translation (:mod:`.errors`).
The schema was migrated when the sync backend opened. Each event loop gets its
own pool, opened at its first call there (a store used in a second ``asyncio.run``,
or from threads each running a loop), closed when that loop's run ends or by
:meth:`aclose` (:mod:`.._loop_end`).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...errors import ConflictError, StoreClosedError, UnavailableError, translate
from ...protocol import Append, Entry, LogInfo, Op, OpResult, Record
from ...protocol.aio import AsyncBackend
from ...protocol.checks import check_ops
from ...protocol.keys import prefix_end
from .._loop_end import PerLoop
from . import rows as checked
from . import sql
from .backend import PostgresBackend, _live_log, _read_params
from .cursors import kept_cursor
from .config import Settings, connect_kwargs, dsn
from .errors import RACES, RETRIES
from .ops import Params, Row, clamp
from .plan import Stmt

__all__ = ["AsyncPostgresBackend"]


class _AsyncConnection(psycopg.AsyncConnection[Row]):
    """A connection that keeps its cursors (:class:`.cursors.Connection`, for asyncio)."""

    _sk_cursors: list[psycopg.AsyncCursor[Row]] | None = None

    def sk_cursor(self, i: int = 0) -> psycopg.AsyncCursor[Row]:
        """Cursor ``i`` of a pipeline (:func:`.cursors.kept_cursor`)."""
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


class _LoopPool:
    """One loop's pool, opened on the loop's first call, and how opening it last failed."""

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool[_AsyncConnection] | None = None
        self.opening = asyncio.Lock()
        self.failed: tuple[float, str] | None = None
        """When opening the pool last failed, and why: the calls that waited for that attempt
        fail with it instead of each waiting the whole timeout again in turn."""
        self.made: weakref.WeakSet[_AsyncConnection] = weakref.WeakSet()
        """Every connection the pool made (its ``configure`` hook adds them)."""

    async def configure(self, conn: _AsyncConnection) -> None:
        self.made.add(conn)

    async def close(self) -> None:
        if self.pool is None:
            return
        try:
            await self.pool.close()
        except asyncio.CancelledError:
            # The loop's run is ending: asyncio.run cancelled the pool's workers with every other
            # task, and the pool's close stops at the first cancelled worker, before closing its
            # connections. Close the idle ones here; one still running a query (a call being
            # cancelled with the loop's tasks) goes back to the pool, which closes it (it is closed).
            for conn in list(self.made):
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    await conn.close()


class AsyncPostgresBackend(AsyncBackend):
    """The hot operations of the store's PostgreSQL backend, on an asyncio connection pool."""

    def __init__(self, sync: PostgresBackend) -> None:
        self.url = sync.url
        self.batch_scope = sync.batch_scope
        self._sync = sync
        self._q = sync._q  # the same prepared SQL text
        url = sync._parsed
        cfg = Settings.from_url(url)
        # a tenant's pool (PostgresBackend.for_tenant) connects as the tenant, as the sync one does:
        # row-level security keeps its rows apart, and it keeps no idle connection open
        self._conninfo, self._kwargs = dsn(url), connect_kwargs(url, cfg, sync._tenant)
        self._sizes = (0 if sync._tenant else cfg.pool_min, cfg.pool_max, cfg.timeout)
        self._loops: PerLoop[_LoopPool] = PerLoop(_LoopPool, _LoopPool.close, "statekeel-aio-pool-guard")
        """Each loop's pool (:mod:`.._loop_end`): a pool serves the loop that opened it."""
        self._closed = False

    # -- plumbing ------------------------------------------------------------
    async def _open_pool(self) -> AsyncConnectionPool[_AsyncConnection]:
        if self._closed:
            raise StoreClosedError.of(self.url, "statekeel.open_async()")
        lp = self._loops.get()
        asked = time.monotonic()
        async with lp.opening:
            if lp.pool is None:
                failed = lp.failed
                if failed is not None and failed[0] >= asked:  # it failed while this call waited for it
                    raise PoolTimeout(failed[1])
                low, high, timeout = self._sizes
                pool = AsyncConnectionPool(
                    self._conninfo, connection_class=_AsyncConnection, kwargs=self._kwargs, min_size=low,
                    max_size=high, timeout=timeout, open=False, name="statekeel-aio", configure=lp.configure,
                )  # fmt: skip
                try:  # its first connection made before any call asks for one: a call finding none
                    # would start a second one too, which the loop's end would find still connecting
                    await pool.open(wait=True, timeout=timeout)
                except BaseException as exc:
                    await pool.close()
                    if isinstance(exc, Exception):  # not this caller's cancellation
                        lp.failed = (time.monotonic(), str(exc))
                    raise
                lp.pool = pool
            return lp.pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_AsyncConnection]:
        """A pooled connection; driver errors translated as the sync backend translates them."""
        try:
            with translate(self._sync._map_error):
                lp = self._loops.current()
                pool = None if lp is None else lp.pool
                if pool is None:
                    pool = await self._open_pool()
                async with pool.connection() as conn:
                    yield conn
        except UnavailableError as exc:
            if not isinstance(exc.__cause__, RACES) and (lp := self._loops.current()) is not None and lp.pool:
                await self._drop_broken(lp.pool)
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
        return checked.in_order(keys, await self._rows(self._q.get_many, {"keys": list(keys), "now": time.time()}))

    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        if limit <= 0:
            return []
        return [checked.record(r) for r in await self._rows(*self._scan_stmt(prefix, after, limit))]

    async def scan_many(self, scans: Sequence[tuple[str, str | None, int]]) -> list[list[Record]]:
        """The scans pipelined on one connection: one round trip, one snapshot."""
        if len(scans) < 2 or any(limit <= 0 for _, _, limit in scans):
            return await super().scan_many(scans)
        async with self._connection() as conn:
            cursors = await _pipelined(conn, [self._scan_stmt(*scan) for scan in scans])
            return [[checked.record(r) for r in await c.fetchall()] for c in cursors]

    def _scan_stmt(self, prefix: str, after: str | None, limit: int) -> Stmt:
        query, lo = (self._q.scan_after, after) if after is not None and after >= prefix else (
            self._q.scan_from, prefix)
        return query, {"lo": lo, "hi": prefix_end(prefix), "now": time.time(), "limit": clamp(limit)}

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
        return await self._intact(log, rows, limit, reverse)

    async def _intact(self, log: str, rows: Sequence[Row], limit: int | None, reverse: bool) -> list[tuple[bytes, str]]:
        """The values of ``read_values`` rows, checked in bulk; any row in doubt: all re-read through :meth:`read`."""
        values = checked.values_if_intact(log, rows)
        if values is None:
            return [(r[1], r[2]) for r in await self._read_rows(log, 1, None, limit, reverse)]
        return values

    async def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """The records and the log's values in one round trip on one connection: the two queries
        pipelined (one implicit transaction, so one snapshot)."""
        if not keys or (limit is not None and limit <= 0):
            return await super().get_many_and_values(keys, log, limit=limit, reverse=reverse)
        stmts = [(self._q.get_many, {"keys": list(keys), "now": time.time()}),
                 (self._q.read_values, _read_params(log, 1, None, limit, reverse))]  # fmt: skip
        async with self._connection() as conn:
            cursors = await _pipelined(conn, stmts)
            records, rows = await cursors[0].fetchall(), await cursors[1].fetchall()
        return checked.in_order(keys, records), await self._intact(log, rows, limit, reverse)

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
        await self._loops.aclose()
