"""The PostgreSQL backend itself: the connection pool, reads, batches and migrations."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from ...errors import ConflictError, NotAStoreError, SchemaTooNewError, StatekeelError, UnavailableError, translate
from ...protocol import Append, Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Record
from ...protocol.checks import check_ops
from ...protocol.keys import prefix_end
from .._url import ParsedURL
from ..tenant import TenantBackend
from . import rows as checked
from . import sql
from .config import Settings, connect_kwargs, dsn, tenant_setting
from .cursors import Conn, Connection, pipelined
from .errors import RACES, RETRIES, map_error
from .migrations import MIGRATIONS, SCHEMA_EXISTS, SCHEMA_TABLES, migration_sql
from .ops import Params, Row, clamp
from .plan import Planner, Stmt, run_together
from .search import PostgresMemoryIndex  # store.memory()'s native index (issue 16)

__all__ = ["PostgresBackend", "tenant_setting"]


# -- reads ---------------------------------------------------------------------
def _read_params(log: str, start: int, stop: int | None, limit: int | None, reverse: bool) -> Params:
    """Parameters of ``read``/``read_values``: ``[start, stop)``, then ``limit`` seqs from the chosen end."""
    limit = None if limit is None else clamp(limit)
    return {
        "log": log, "start": clamp(start), "stop": None if stop is None else clamp(stop), "now": time.time(),
        "ahead": None if reverse else limit, "behind": limit if reverse else None,
    }  # fmt: skip


def _live_log(log: str, row: Row, now: float) -> LogInfo | None:
    """A ``first_seq, last_seq, created_at, updated_at, expires_at`` row as the log's bounds,
    or None when the log is empty or expired."""
    first, last, created, updated, expires = row
    if last < first or (expires is not None and expires <= now):
        return None
    return LogInfo(log, first, last, created, updated, expires)


# -- the backend ---------------------------------------------------------------
class PostgresBackend(Backend):
    """A psycopg connection pool on one schema; safe for threads and many processes."""

    short_messages = True
    """Plain chat messages go to ``data`` (``bytea``) as their content's bytes, codec ``msg:<role>``,
    not to the ``json`` column: ~30 bytes less per message than ``{"role": …, "content": …}`` (the
    storage target of issue 15) and no JSON parse on reload. Other JSON values keep ``doc``."""

    def __init__(self, url: ParsedURL, *, migrate: bool = True, tenant: str | None = None) -> None:
        self.url = url.redacted
        cfg = Settings.from_url(url)
        self.schema = cfg.schema
        self.pool_max = cfg.pool_max
        self._q = sql.build(cfg.schema)
        self._plan = Planner(cfg.schema, self._q)
        self._closed = False
        self._parsed = url
        self._tenants: dict[str, PostgresBackend] = {}
        self._tenant = tenant
        """The tenant every session of this pool belongs to (row-level security), or None."""
        libpq_url, kwargs = dsn(url), connect_kwargs(url, cfg, tenant)
        # a tenant's pool (for_tenant) keeps no idle connection and one worker thread, and opens at
        # its first call: a server handling many tenants, or only their asyncio views, pays for
        # none of it until a tenant's sync call needs a connection
        self._connections: ConnectionPool[Conn] = ConnectionPool(
            libpq_url, connection_class=Connection, kwargs=kwargs, min_size=0 if tenant else cfg.pool_min,
            max_size=cfg.pool_max, timeout=cfg.timeout, open=False, name="statekeel",
            num_workers=1 if tenant else 3,
        )  # fmt: skip
        self._opened = tenant is None
        self._opening = threading.Lock()
        if tenant is not None:  # the store itself connected with this URL: nothing new to check
            return
        with self._guard():
            # one direct connection first: a wrong URL or password fails now, clearly
            with Connection.connect(libpq_url, **kwargs) as conn:
                if migrate:
                    self._migrate(conn, check=False)
            self._connections.open(wait=False)

    @property
    def _pool(self) -> ConnectionPool[Conn]:
        """The connection pool, opened at the first call that needs it (a tenant's; the store's
        opened with the store). Opening twice is harmless (psycopg locks it)."""
        if not self._opened:
            with self._opening:
                if not self._opened:
                    self._connections.open(wait=False)
                    self._opened = True
        return self._connections

    # -- plumbing ------------------------------------------------------------
    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate driver errors; after a broken connection, weed out the others."""
        try:
            with translate(self._map_error):
                yield
        except UnavailableError as exc:
            if not isinstance(exc.__cause__, RACES):
                self._drop_broken()
            raise

    def _map_error(self, exc: BaseException) -> StatekeelError | None:
        return map_error(exc, self.url)

    def _drop_broken(self) -> None:
        """Test the idle connections so that the next call gets a working one."""
        try:
            self._pool.check()
        except Exception:  # noqa: BLE001 - closed pool or server still down: the next call retries
            pass

    def _rows(self, query: str, params: Params) -> list[Row]:
        with self._guard(), self._pool.connection() as conn:
            return conn.sk_cursor().execute(query, params, binary=True, prepare=True).fetchall()

    def _execute(self, stmts: Sequence[Stmt], wanted: Sequence[int]) -> list[Row | None]:
        """Run ``stmts`` as one transaction in one round trip; first rows of ``wanted``.

        ``prepare=True``: psycopg 3.3 forgets to un-register a statement whose
        automatic preparation (at the 5th use) falls in a pipeline that an
        earlier statement aborted, and then fails with "prepared statement
        does not exist"; preparing on first use takes a path it checks.
        """
        if not stmts:
            return []
        with self._pool.connection() as conn:
            if len(stmts) == 1:
                cursor = conn.sk_cursor().execute(*stmts[0], binary=True, prepare=True)
                return [cursor.fetchone() for _ in wanted]
            cursors = pipelined(conn, stmts)
            return [cursors[i].fetchone() for i in wanted]

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        rows = self._rows(self._q.get, {"key": key})
        rec = checked.record(rows[0]) if rows else None
        if rec is None or include_expired or rec.expires_at is None or rec.expires_at > time.time():
            return rec
        return None

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        if not keys:
            return []
        return checked.in_order(keys, self._rows(self._q.get_many, {"keys": list(keys), "now": time.time()}))

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        if limit <= 0:
            return []
        query, lo = (self._q.scan_after, after) if after is not None and after >= prefix else (
            self._q.scan_from, prefix)
        params = {"lo": lo, "hi": prefix_end(prefix), "now": time.time(), "limit": clamp(limit)}
        return [checked.record(r) for r in self._rows(query, params)]

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        rows = self._read_rows(log, start, stop, limit, reverse)
        return [Entry(log, seq, data, codec, created) for seq, data, codec, created, _ in rows]

    def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        """History reloads: the rows checked in bulk (:func:`.rows.values_if_intact`); a damaged row or
        one from before checksums re-reads through :meth:`read`, which names the entry."""
        if limit is not None and limit <= 0:
            return []
        rows = self._rows(self._q.read_values, _read_params(log, 1, None, limit, reverse))
        values = checked.values_if_intact(log, rows)
        if values is None:
            return [(r[1], r[2]) for r in self._read_rows(log, 1, None, limit, reverse)]
        return values

    def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """The records and the log's values in one round trip: the two queries pipelined on one
        connection (one implicit transaction, one snapshot), as the asyncio backend does."""
        if not keys or (limit is not None and limit <= 0):
            return super().get_many_and_values(keys, log, limit=limit, reverse=reverse)
        stmts = [(self._q.get_many, {"keys": list(keys), "now": time.time()}),
                 (self._q.read_values, _read_params(log, 1, None, limit, reverse))]  # fmt: skip
        with self._guard(), self._pool.connection() as conn:
            records, rows = [c.fetchall() for c in pipelined(conn, stmts)]
        values = checked.values_if_intact(log, rows)
        return checked.in_order(keys, records), self.read_values(log, limit=limit, reverse=reverse) if values is None else values

    def _read_rows(self, log: str, start: int, stop: int | None, limit: int | None, reverse: bool) -> Sequence[Row]:
        """The verified rows of :meth:`read`."""
        if limit is not None and limit <= 0:
            return []
        return checked.entries(log, self._rows(self._q.read, _read_params(log, start, stop, limit, reverse)))

    def log_info(self, log: str) -> LogInfo | None:
        rows = self._rows(self._q.log_info, {"log": log})
        return _live_log(log, rows[0], time.time()) if rows else None

    def log_info_many(self, logs: Sequence[str]) -> list[LogInfo | None]:
        """One query for a page of logs (a listing of sessions), not one per log."""
        if not logs:
            return []
        now = time.time()
        found = {r[0]: _live_log(r[0], r[1:], now) for r in self._rows(self._q.log_info_many, {"logs": list(logs)})}
        return [found.get(log) for log in logs]

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        if limit <= 0:
            return []
        query, lo = (self._q.scan_logs_after, after) if after is not None and after >= prefix else (
            self._q.scan_logs_from, prefix)
        rows = self._rows(query, {"lo": lo, "hi": prefix_end(prefix), "now": time.time(), "limit": clamp(limit)})
        return [LogInfo(*r) for r in rows]

    def emptied_logs(self, name: str, prefix: str | None) -> list[LogInfo]:
        """The live logs named ``name`` or under ``prefix`` whose entries were all trimmed: :meth:`scan_logs`
        hides them, yet their next append goes on from ``last_seq + 1`` (the tiered backend copies that)."""
        lo, hi = (prefix, prefix_end(prefix)) if prefix is not None else ("", "")
        rows = self._rows(self._q.scan_emptied_logs, {"name": name, "lo": lo, "hi": hi, "now": time.time()})
        return [LogInfo(*r) for r in rows]

    # -- writes --------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        return self._apply_holding(ops, now, ())

    def _apply_holding(self, ops: Sequence[Op], now: float | None, locks: Sequence[Stmt]) -> list[OpResult]:
        """:meth:`apply`, with ``locks`` (statements taking advisory locks) run first in its transaction."""
        check_ops(ops, now)
        if not ops:
            return []
        try:
            with self._guard():
                return self._apply_retrying(ops, now, locks)
        except ConflictError as err:
            raise self._with_last_seq(err, ops) from None

    def _with_last_seq(self, err: ConflictError, ops: Sequence[Op]) -> ConflictError:
        """An ``Append(at=...)`` conflict names the log's last seq (SQL's sk_conflict looks up records)."""
        if err.actual is not None or not any(isinstance(op, Append) and op.log == err.key for op in ops):
            return err
        rows = self._rows(self._q.log_info, {"log": err.key})
        live = rows and (rows[0][4] is None or rows[0][4] > time.time())
        return ConflictError(err.key, err.expected, int(rows[0][1]) if live else 0)

    def _apply_retrying(self, ops: Sequence[Op], now: float | None, locks: Sequence[Stmt]) -> list[OpResult]:
        raw = False
        for attempt in range(1, RETRIES + 1):
            try:
                return self._apply_once(ops, raw, now, locks)
            except psycopg.Error as exc:
                if attempt == RETRIES:
                    raise
                raw = self._prepare_retry(exc, ops, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare_retry(self, exc: psycopg.Error, ops: Sequence[Op], raw: bool) -> bool:
        """Make ``ops`` runnable again after ``exc`` (nothing was applied), or re-raise it.

        Returns whether "json" payloads must go to ``data`` as bytes.
        """
        if isinstance(exc, pg_errors.InvalidTextRepresentation) and not raw:
            return True  # a "json" payload PostgreSQL's json type rejects: keep its bytes
        if exc.sqlstate == sql.DEAD_LOG_SQLSTATE:
            self._execute(self._plan.dead_logs(ops, time.time()), [])
            return raw
        if isinstance(exc, RACES):
            return raw
        raise exc

    def _apply_once(self, ops: Sequence[Op], raw: bool, clock: float | None, locks: Sequence[Stmt]) -> list[OpResult]:
        plan = self._plan.batch(ops, raw, time.time() if clock is None else clock).after(locks)
        return plan.finish(self._execute(plan.stmts, plan.wanted))

    # -- partition locks: a tiered store's copies into Redis and its write-through writes ---------
    def apply_sharing(
        self, ops: Sequence[Op], locks: Sequence[str], *, now: float | None = None, exclusive: Sequence[str] = ()
    ) -> list[OpResult]:
        """:meth:`apply`, holding advisory locks ``locks`` in shared mode (and ``exclusive`` in
        exclusive mode, taken first) until it commits, in the same transaction and round trip: it
        waits while :meth:`exclusively` holds one of ``locks``, or anything holds one of ``exclusive``."""
        held = [(sql.LOCK_EXCLUSIVE, {"lock": self._lock_name(name)}) for name in sorted(set(exclusive))]
        held += [(sql.LOCK_SHARED, {"lock": self._lock_name(name)}) for name in sorted(set(locks) - set(exclusive))]
        return self._apply_holding(ops, now, held)

    @contextmanager
    def exclusively(self, lock: str, *, wait: float, sharing: Sequence[str] = ()) -> Iterator[None]:
        """Hold advisory lock ``lock`` exclusively (and ``sharing`` in shared mode, taken first;
        waiting at most ``wait`` seconds for each) for the ``with`` body: no :meth:`apply_sharing`
        naming ``lock``, or naming one of ``sharing`` as exclusive, commits meanwhile. They are held
        by a transaction of one pooled connection; the body must not need every other one."""
        with self._guard(), self._pool.connection() as conn:
            conn.execute("BEGIN")
            try:
                conn.execute(sql.LOCK_WAIT, {"wait": f"{max(1, round(wait * 1000))}ms"})
                for name in sorted(set(sharing)):
                    conn.execute(sql.LOCK_SHARED, {"lock": self._lock_name(name)})
                conn.execute(sql.LOCK_EXCLUSIVE, {"lock": self._lock_name(lock)})
                with translate(lambda exc: None):  # the body's errors are its own, not PostgreSQL's
                    yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _lock_name(self, lock: str) -> str:
        return f"{self.schema}/{lock}"

    def apply_batches(self, batches: Sequence[tuple[Sequence[Op], float]]) -> list[list[OpResult]]:
        """Apply several ``(ops, now)`` batches in order in ONE transaction (one pipeline, one
        round trip); each batch's results.

        Each batch runs with its own clock and sees the writes of those before it, as
        :meth:`apply` one batch at a time would; they commit together or not at all (the
        first refused compare-and-set raises :class:`ConflictError` and nothing is written).
        The write-behind flusher of a tiered store replays a page of its queue with it.
        """
        every = [op for ops, _ in batches for op in ops]
        try:
            with self._guard():
                return self._batches_retrying(batches)
        except ConflictError as err:
            raise self._with_last_seq(err, every) from None

    def _batches_retrying(self, batches: Sequence[tuple[Sequence[Op], float]]) -> list[list[OpResult]]:
        """:meth:`apply_batches` with :meth:`_prepare_retry`'s retries, except that a dead log is
        dropped just before each batch, at that batch's clock (``careful``): an earlier batch of
        the group may renew a log that is expired by now, as it would have one batch at a time."""
        raw = careful = False
        for attempt in range(1, RETRIES + 1):
            plans = [self._plan.batch(ops, raw, now) for ops, now in batches]
            if careful:
                plans = [p.after(self._plan.dead_logs(ops, now)) for p, (ops, now) in zip(plans, batches)]
            try:
                return run_together(plans, self._execute)
            except psycopg.Error as exc:
                dead = exc.sqlstate == sql.DEAD_LOG_SQLSTATE
                bad_json = isinstance(exc, pg_errors.InvalidTextRepresentation) and not raw
                if attempt == RETRIES or not (dead or bad_json or isinstance(exc, RACES)):
                    raise
                careful, raw = careful or dead, raw or bad_json
        raise AssertionError("unreachable")  # pragma: no cover

    # -- housekeeping --------------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        if limit <= 0:
            return 0
        with self._guard():
            for attempt in itertools.count(1):
                try:
                    rows = self._execute([(self._q.purge, {"now": time.time(), "limit": clamp(limit)})], [0])
                    return int(rows[0][0]) if rows[0] else 0
                except RACES:
                    if attempt >= RETRIES:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        with self._guard(), self._pool.connection() as conn:
            return self._migrate(conn, check)

    def _migrate(self, conn: Conn, check: bool) -> MigrationStatus:
        target = len(MIGRATIONS)
        current = self._schema_version(conn, target)
        pending = [s for v in range(current + 1, target + 1) for s in migration_sql(self.schema, v)]
        if check or current == target:
            return MigrationStatus(current, target, pending)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_id(self.schema)])
            current = self._schema_version(conn, target)  # another process may have migrated meanwhile
            # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
            # schema is there: skip it for roles that were only given the schema
            exists = conn.execute(SCHEMA_EXISTS, {"schema": self.schema}).fetchone() is not None
            for version in range(current + 1, target + 1):
                for stmt in migration_sql(self.schema, version):
                    if not (exists and stmt.startswith("CREATE SCHEMA")):
                        conn.execute(stmt)
        return MigrationStatus(target, target, [])

    def _schema_version(self, conn: Conn, target: int) -> int:
        tables = {r[0] for r in conn.execute(SCHEMA_TABLES, {"schema": self.schema})}
        if "statekeel_schema" not in tables:
            if tables:
                raise NotAStoreError(
                    f"schema {self.schema!r} at {self.url} already holds tables "
                    f"({', '.join(sorted(tables))}) that are not a statekeel store; "
                    "choose another one with ?schema=NAME"
                )
            return 0
        row = conn.execute(self._q.schema_version).fetchone()
        current = int(row[0]) if row else 0
        if current > target:
            raise SchemaTooNewError(
                f"schema {self.schema!r} at {self.url} has statekeel schema version {current}, newer "
                f"than this statekeel understands ({target}); upgrade the statekeel package"
            )
        return current

    def for_tenant(self, name: str) -> Backend:
        """Tenant ``name``'s view: its own pool, whose rows PostgreSQL's row-level
        security keeps apart, and the key prefix every backend uses."""
        child = self._tenants.get(name)
        if child is None:
            child = self._tenants[name] = PostgresBackend(self._parsed, migrate=False, tenant=name)
        return TenantBackend(child, name)

    # -- memory index (issue 16: the derived index lives in backends/postgres/search.py) --
    def memory_index(self) -> PostgresMemoryIndex:
        """The native memory index (tsvector + GIN, pgvector if installed), created on first use."""
        index: PostgresMemoryIndex | None = self.__dict__.get("_memory_index")
        if index is None:
            index = self.__dict__["_memory_index"] = PostgresMemoryIndex(self)
        return index

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for child in self._tenants.values():
            child.close()
        with self._opening:
            self._opened = True  # a pool never opened stays closed: a later call is refused, not reconnected
        try:
            self._connections.close()
        except Exception:  # noqa: BLE001 - closing a pool that never opened
            pass


def _lock_id(schema: str) -> int:
    """A stable advisory-lock key for migrating ``schema``."""
    digest = hashlib.sha256(f"statekeel-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
