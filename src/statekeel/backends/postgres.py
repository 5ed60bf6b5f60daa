"""``postgresql://user:pass@host:5432/db?schema=statekeel`` — PostgreSQL 15+ with psycopg 3.

Tables, all in one schema (``?schema=``, default ``statekeel``)::

    statekeel_schema  version, applied_at             one row per applied migration
    sk_kv             key PK, data | doc, codec, version, created_at, updated_at, expires_at
    sk_logs           id PK, name UNIQUE, first_seq, last_seq, created_at, updated_at, expires_at
    sk_entries        (log_id, seq) PK, data | doc, codec, created_at

Keys and log names use ``COLLATE "C"``, so SQL orders them as Python orders
``str``. Timestamps are float epoch seconds from the client's ``time.time()``,
the clock every backend uses, so expiry behaves exactly as on ``memory://``.

Values: a value whose codec is plain ``json`` goes into ``doc``, a ``json``
column, which keeps the text verbatim — reads return the very bytes written
(key order, ``\\u0000`` escapes and all) while SQL can query it::

    SELECT doc ->> 'status' FROM statekeel.sk_kv WHERE key = 'app/_/state/ticket';

``jsonb`` was not chosen because it reorders keys and rejects ``\\u0000``. A
``json`` text that contains the escape ``\\u0000`` (PostgreSQL's JSON operators
fail on the whole row for it), that is not UTF-8, or that PostgreSQL rejects as
JSON is stored in ``data`` (``bytea``) instead, as is every other codec.

Writes: :meth:`PostgresBackend.apply` turns each operation into data-modifying
CTEs (see :mod:`._pg_sql`) and, when no two operations write the same row,
sends the whole batch as ONE autocommit statement: one network round trip, one
commit, all or nothing. A chat turn (``Append`` of two messages and a ``Put``
of state) is that one statement. Batches whose operations touch the same rows
(each must see the previous one's writes), contain ``Expire`` or ``LoadEntries``,
or are longer than 16 operations run one statement per operation in a psycopg
pipeline on the autocommit connection: the statements before the pipeline's
Sync form one implicit transaction, so it is still one round trip and atomic.

Compare-and-set is the ``WHERE`` clause of the write (``version = expect``, or
``ON CONFLICT … WHERE`` the old row has expired); when nothing was written the
result expression calls ``sk_conflict``, which raises, and the whole batch
rolls back. Appends upsert the log header row — its row lock serialises
appends to one log, so sequence numbers are handed out without gaps — and
insert the entries in the same statement. Appending to an expired log raises
``SK410``; the backend drops that log and runs the batch again, which starts a
new log numbered from 1. A batch that loses a deadlock or serialization race
is rolled back by PostgreSQL and run again (up to 5 times).

Expiry: reads filter ``expires_at > now``; :meth:`~PostgresBackend.purge_expired`
deletes up to ``limit`` records and logs per call (``FOR UPDATE SKIP LOCKED``,
so several purgers do not block each other).

Migrations are plain transactional DDL with schema-qualified names, run under
a transaction-scoped advisory lock: they work inside or outside a transaction
and through PgBouncer in transaction mode. ``migrate(check=True)`` only reads.

URL options (removed before the URL reaches libpq; any other query parameter,
e.g. ``sslmode``, is passed on): ``schema``; ``pool_min`` (default 1) and
``pool_max`` (default 10) connections; ``timeout`` (seconds to connect or to
wait for a free connection, default 10); ``prepare`` (``on``: each statement
is prepared on its first use on a connection; ``off`` for PgBouncer older than
1.21, or without ``max_prepared_statements``, in transaction mode).

Faults: a call whose connection breaks (server restart, reset) raises
:class:`~statekeel.errors.UnavailableError`; the idle connections are then
tested and replaced, so the next call reconnects by itself.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from ..security.tenants import TenantBackend

from ..errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    MigrationRequiredError,
    NotAStoreError,
    SchemaTooNewError,
    StatekeelError,
    StoreError,
    UnavailableError,
    UsageError,
    translate,
)
from ..protocol import (
    Any_,
    Append,
    Backend,
    Delete,
    Entry,
    Expire,
    Keep,
    Load,
    LoadEntries,
    LogInfo,
    MigrationStatus,
    Op,
    OpResult,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
)
from ..protocol import ExpiresAt
from ..protocol.keys import prefix_end
from . import _pg_sql
from ._url import ParsedURL

__all__ = ["PostgresBackend", "map_error"]

Params: TypeAlias = dict[str, Any]
Stmt: TypeAlias = tuple[str, Params]
Part: TypeAlias = tuple[str, Params]
"""A write operation as (fragment name, parameters without the op prefix)."""
Row: TypeAlias = tuple[Any, ...]


class _Connection(psycopg.Connection[Row]):
    """A connection that keeps one cursor: its adapter caches stay warm between calls."""

    _sk_cursor: psycopg.Cursor[Row] | None = None

    def sk_cursor(self) -> psycopg.Cursor[Row]:
        if self._sk_cursor is None:
            self._sk_cursor = self.cursor()
        return self._sk_cursor


Conn: TypeAlias = _Connection

OWN_OPTIONS = ("schema", "pool_min", "pool_max", "timeout", "prepare")
"""Query options statekeel reads itself; the rest of the URL goes to libpq."""

_RETRIES = 5
"""Attempts for a batch that lost a deadlock or serialization race."""

_RACES = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


# -- configuration ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Settings:
    schema: str
    pool_min: int
    pool_max: int
    timeout: float
    prepare_threshold: int | None

    @classmethod
    def from_url(cls, url: ParsedURL) -> _Settings:
        schema = url.option("schema", "statekeel")
        if not schema or "\x00" in schema or len(schema.encode()) > 63 or schema.startswith("pg_"):
            raise ConfigurationError(
                f"?schema={schema!r} in {url.redacted} is not a usable schema name; use 1 to 63 "
                "bytes without NUL and not starting with pg_ (reserved), e.g. ?schema=statekeel"
            )
        pool_min = url.int_option("pool_min", 1)
        pool_max = url.int_option("pool_max", max(10, pool_min))
        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise ConfigurationError(
                f"{url.redacted}: need 0 <= pool_min <= pool_max and pool_max >= 1, "
                f"got pool_min={pool_min} pool_max={pool_max}"
            )
        timeout = url.float_option("timeout", 10.0)
        if not timeout > 0:
            raise ConfigurationError(f"{url.redacted}: ?timeout= must be a positive number of seconds")
        return cls(schema, pool_min, pool_max, timeout, _prepare_threshold(url))


def _prepare_threshold(url: ParsedURL) -> int | None:
    raw = url.option("prepare", "on").lower()
    if raw not in ("on", "off"):
        raise ConfigurationError(f"?prepare={raw!r} in {url.redacted} must be 'on' (default) or 'off'")
    return None if raw == "off" else 5


def _dsn(url: ParsedURL) -> str:
    """The URL for libpq: statekeel's own query options removed."""
    rest = {k: v for k, v in url.options.items() if k not in OWN_OPTIONS}
    return urlunsplit(urlsplit(url.raw)._replace(query=urlencode(rest)))


def _connect_kwargs(url: ParsedURL, cfg: _Settings) -> Params:
    kwargs: Params = {"autocommit": True, "prepare_threshold": cfg.prepare_threshold}
    if "connect_timeout" not in url.options:
        kwargs["connect_timeout"] = max(2, math.ceil(cfg.timeout))
    return kwargs


# -- errors -------------------------------------------------------------------
_RETRYABLE_STATES = ("40001", "40P01", "55P03")
"""Serialization failure, deadlock, lock not available: the batch was rolled back."""

_CONFIG_WORDS = ("password authentication failed", "does not exist", "no pg_hba.conf entry", "role ")


def map_error(exc: BaseException, where: str) -> StatekeelError | None:
    """The statekeel error for a psycopg / pool exception raised while talking to ``where``."""
    if isinstance(exc, (PoolTimeout, TooManyRequests)):
        return _unavailable(exc, where)
    if isinstance(exc, PoolClosed):
        return UsageError(f"the store {where} was closed; open it again with statekeel.open()")
    if isinstance(exc, UnicodeEncodeError):
        return InvalidInputError(f"cannot send {exc.object[exc.start:exc.end]!r} to PostgreSQL: keys, "
                                 "names and codecs must be valid Unicode text (no lone surrogates)")
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    if state == _pg_sql.CONFLICT_SQLSTATE:
        return _conflict(exc)
    if state[:2] in ("28", "3D") or (not state and any(w in str(exc) for w in _CONFIG_WORDS)):
        return ConfigurationError(f"cannot use PostgreSQL at {where}: {_first_line(exc)}; fix the URL")
    if _is_connection(exc, state):
        return _unavailable(exc, where)
    return _map_statement_error(exc, state, where)


def _is_connection(exc: psycopg.Error, state: str) -> bool:
    if not state:  # libpq's own errors: refused, reset, closed
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return state[:2] in ("08", "53", "57") or state == "25006"  # 25006: a read-only standby


def _map_statement_error(exc: psycopg.Error, state: str, where: str) -> StatekeelError:
    why = _first_line(exc)
    if state in _RETRYABLE_STATES:
        return UnavailableError(f"PostgreSQL at {where} kept aborting the batch ({why}) after "
                                f"{_RETRIES} attempts; nothing was written — retry the call")
    if state == "42501":
        return ConfigurationError(f"the PostgreSQL role lacks a privilege at {where} ({why}); grant it, "
                                  "or have an owner run the statements of `statekeel migrate --print-sql`")
    if state in ("42P01", "42703", "3F000", "42883"):
        return MigrationRequiredError(f"the store's schema at {where} is missing or old ({why}); "
                                      "run `statekeel migrate URL` or open it with migrate=True")
    if state == "42939":
        return ConfigurationError(f"PostgreSQL refused a name at {where} ({why}); choose another ?schema=")
    if state[:2] == "22" or isinstance(exc, psycopg.DataError):
        return InvalidInputError(f"PostgreSQL refused a value: {why}; nothing was written")
    return StoreError(f"PostgreSQL error {state or type(exc).__name__} at {where}: {why}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _unavailable(exc: BaseException, where: str) -> UnavailableError:
    return UnavailableError(
        f"PostgreSQL at {where} is unavailable ({_first_line(exc)}); retry the call — "
        "the next call reconnects by itself (raise ?timeout= to wait longer)"
    )


def _conflict(exc: psycopg.Error) -> ConflictError:
    detail = json.loads(exc.diag.message_detail or "{}")
    return ConflictError(str(detail.get("key")), detail.get("expected"), detail.get("actual"))


# -- values -------------------------------------------------------------------
def _payload(data: bytes, codec: str, raw: bool) -> tuple[bytes | None, str | None]:
    """(data, doc): plain JSON goes to the ``json`` column ``doc`` when it can."""
    if raw or codec != "json":
        return data, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, None
    if "\\u0000" in text or "\x00" in text:
        return data, None
    return None, text


def _expiry(expires_at: ExpiresAt) -> tuple[bool, float | None]:
    """(keep, new expiry) as the statements take them."""
    if isinstance(expires_at, Keep):
        return True, None
    return False, expires_at


def _expect(expect: int | None | Any_) -> int | None:
    return None if isinstance(expect, Any_) else expect


# -- operations as fragments ---------------------------------------------------
_MAX_ONE_STATEMENT = 16
"""Larger batches go through the pipeline: one statement per operation."""


def _targets(op: Op) -> set[tuple[str, str]]:
    """The rows an operation writes: ("kv", key) and/or ("log", name)."""
    if isinstance(op, (Put, Delete)):
        return {("kv", op.key)}
    if isinstance(op, Load):
        return {("kv", op.record.key)}
    if isinstance(op, Touch):
        return {("kv", op.key), ("log", op.key)}
    if isinstance(op, (Append, Trim, Rewrite)):
        return {("log", op.log)}
    return {("*", "")}


def _one_statement(ops: Sequence[Op], parts: Sequence[Part | None]) -> bool:
    """Whether ``ops`` can run as one statement: CTEs of one statement do not see
    each other's writes, so no two operations may write the same row."""
    if any(p is None for p in parts) or len(ops) > _MAX_ONE_STATEMENT:
        return False
    if len(ops) == 1:
        return True
    seen: set[tuple[str, str]] = set()
    for op in ops:
        targets = _targets(op)
        if isinstance(op, Expire) or not seen.isdisjoint(targets):
            return False
        seen |= targets
    return True


def _put(op: Put, raw: bool) -> Part:
    data, doc = _payload(op.data, op.codec, raw)
    keep, exp = _expiry(op.expires_at)
    if isinstance(op.expect, Any_):
        kind = "put_any"
    else:
        kind = "put_new" if op.expect is None else "put_version"
    params = {"key": op.key, "data": data, "doc": doc, "codec": op.codec, "keep": keep, "exp": exp,
              "expect": _expect(op.expect)}  # fmt: skip
    return kind, params


def _append(op: Append, raw: bool) -> Part:
    keep, exp = _expiry(op.expires_at)
    n = len(op.items)
    params: Params = {"log": op.log, "n": n, "keep": keep, "exp": exp}
    payloads = [(*_payload(data, codec, raw), codec) for data, codec in op.items]
    if 1 <= n <= _pg_sql.APPEND_VALUES_MAX:
        for i, (data, doc, codec) in enumerate(payloads, 1):
            params[f"data{i}"], params[f"doc{i}"], params[f"codec{i}"] = data, doc, codec
        return f"append{n}", params
    params["datas"] = [p[0] for p in payloads]
    params["docs"] = [p[1] for p in payloads]
    params["codecs"] = [p[2] for p in payloads]
    return "append", params


def _load(r: Record, raw: bool) -> Part:
    data, doc = _payload(r.data, r.codec, raw)
    params = {"key": r.key, "data": data, "doc": doc, "codec": r.codec, "version": r.version,
              "created": r.created_at, "updated": r.updated_at, "exp": r.expires_at}  # fmt: skip
    return "load", params


def _op_result(op: Op, cols: Row, now: float) -> OpResult:
    if isinstance(op, Put):
        return Record(op.key, op.data, op.codec, cols[0], cols[1], now, cols[2])
    if isinstance(op, Load):
        return op.record
    if isinstance(op, (Delete, Touch, Rewrite)):
        return bool(cols[0])
    return int(cols[0])



def _pipelined(conn: Conn, stmts: Sequence[Stmt]) -> list[psycopg.Cursor[Row]]:
    """Run ``stmts`` in one pipeline — one implicit transaction — and raise the first error.

    Errors are caught inside the block so psycopg does not log a warning about
    the follow-up "pipeline aborted" error when it leaves pipeline mode.
    """
    cursors: list[psycopg.Cursor[Row]] = []
    failed: psycopg.Error | None = None
    try:
        with conn.pipeline():
            for query, params in stmts:
                try:
                    cursors.append(conn.execute(query, params, binary=True, prepare=True))
                except psycopg.Error as exc:
                    failed = exc
                    break
    except psycopg.Error as exc:
        raise (failed or exc) from None
    if failed is not None:
        raise failed
    return cursors


# -- the backend ---------------------------------------------------------------
class PostgresBackend(Backend):
    """A psycopg connection pool on one schema; safe for threads and many processes."""

    def __init__(self, url: ParsedURL, *, migrate: bool = True, tenant: str | None = None) -> None:
        self.url = url.redacted
        cfg = _Settings.from_url(url)
        self.schema = cfg.schema
        self._q = _pg_sql.build(cfg.schema)
        self._closed = False
        self._parsed = url
        self._tenants: dict[str, PostgresBackend] = {}
        dsn, kwargs = _dsn(url), _connect_kwargs(url, cfg)
        if tenant is not None:  # row-level security: this pool's sessions belong to the tenant
            kwargs["options"] = f"-c {_pg_sql.TENANT_SETTING}={tenant_setting(tenant)}"
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            dsn, connection_class=_Connection, kwargs=kwargs, min_size=0 if tenant else cfg.pool_min,
            max_size=cfg.pool_max, timeout=cfg.timeout, open=False, name="statekeel",
        )  # fmt: skip
        with self._guard():
            # one direct connection first: a wrong URL or password fails now, clearly
            with _Connection.connect(dsn, **kwargs) as conn:
                if migrate:
                    self._migrate(conn, check=False)
            self._pool.open(wait=False)

    # -- plumbing ------------------------------------------------------------
    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate driver errors; after a broken connection, weed out the others."""
        try:
            with translate(self._map_error):
                yield
        except UnavailableError as exc:
            if not isinstance(exc.__cause__, _RACES):
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
            cursors = _pipelined(conn, stmts)
            return [cursors[i].fetchone() for i in wanted]

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        rows = self._rows(self._q.get, {"key": key})
        rec = Record(*rows[0]) if rows else None
        if rec is None or include_expired or rec.expires_at is None or rec.expires_at > time.time():
            return rec
        return None

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        if not keys:
            return []
        rows = self._rows(self._q.get_many, {"keys": list(keys), "now": time.time()})
        found = {r[0]: Record(*r) for r in rows}
        return [found.get(k) for k in keys]

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        if limit <= 0:
            return []
        query, lo = (self._q.scan_after, after) if after is not None and after >= prefix else (
            self._q.scan_from, prefix)
        rows = self._rows(query, {"lo": lo, "hi": prefix_end(prefix), "now": time.time(), "limit": limit})
        return [Record(*r) for r in rows]

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        if limit is not None and limit <= 0:
            return []
        params = {
            "log": log, "start": start, "stop": stop, "now": time.time(),
            "ahead": None if reverse else limit, "behind": limit if reverse else None,
        }  # fmt: skip
        return [Entry(log, *r) for r in self._rows(self._q.read, params)]

    def log_info(self, log: str) -> LogInfo | None:
        rows = self._rows(self._q.log_info, {"log": log})
        if not rows:
            return None
        first, last, created, updated, expires = rows[0]
        if last < first or (expires is not None and expires <= time.time()):
            return None
        return LogInfo(log, first, last, created, updated, expires)

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        if limit <= 0:
            return []
        query, lo = (self._q.scan_logs_after, after) if after is not None and after >= prefix else (
            self._q.scan_logs_from, prefix)
        rows = self._rows(query, {"lo": lo, "hi": prefix_end(prefix), "now": time.time(), "limit": limit})
        return [LogInfo(*r) for r in rows]

    # -- writes --------------------------------------------------------------
    def apply(self, ops: Sequence[Op]) -> list[OpResult]:
        if not ops:
            return []
        with self._guard():
            return self._apply_retrying(ops)

    def _apply_retrying(self, ops: Sequence[Op]) -> list[OpResult]:
        raw = False
        for attempt in range(1, _RETRIES + 1):
            try:
                return self._apply_once(ops, raw)
            except psycopg.Error as exc:
                if attempt == _RETRIES:
                    raise
                raw = self._prepare_retry(exc, ops, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare_retry(self, exc: psycopg.Error, ops: Sequence[Op], raw: bool) -> bool:
        """Make ``ops`` runnable again after ``exc`` (nothing was applied), or re-raise it.

        Returns whether "json" payloads must go to ``data`` as bytes.
        """
        if isinstance(exc, pg_errors.InvalidTextRepresentation) and not raw:
            return True  # a "json" payload PostgreSQL's json type rejects: keep its bytes
        if exc.sqlstate == _pg_sql.DEAD_LOG_SQLSTATE:
            now = time.time()
            logs = {op.log for op in ops if isinstance(op, Append)}
            self._execute([(self._q.drop_dead_log, {"log": log, "now": now}) for log in logs], [])
            return raw
        if isinstance(exc, _RACES):
            return raw
        raise exc

    def _apply_once(self, ops: Sequence[Op], raw: bool) -> list[OpResult]:
        now = time.time()
        parts = [self._part(op, raw) for op in ops]
        if not _one_statement(ops, parts):
            return self._apply_pipelined(ops, parts, now, raw)
        kinds = tuple(p[0] for p in parts if p is not None)
        params: Params = {"now": now}
        for i, part in enumerate(parts):
            assert part is not None
            params.update({f"o{i}_{k}": v for k, v in part[1].items()})
        row = self._execute([(_pg_sql.batch_sql(kinds, self.schema), params)], [0])[0]
        return self._results(ops, kinds, [row] * len(ops), shared=True, now=now)

    def _apply_pipelined(
        self, ops: Sequence[Op], parts: Sequence[Part | None], now: float, raw: bool
    ) -> list[OpResult]:
        """One statement per operation, in order, in one pipeline: for batches whose
        operations touch the same rows (each must see the previous ones' writes)."""
        plans: list[list[Stmt]] = []
        for op, part in zip(ops, parts):
            if part is None:
                assert isinstance(op, LoadEntries)
                plans.append(self._load_entries(op, now, raw))
                continue
            params = {"now": now, **{f"o0_{k}": v for k, v in part[1].items()}}
            stmt = (_pg_sql.batch_sql((part[0],), self.schema), params)
            # an earlier op of this batch may have expired the log: replace it first
            dead = [(self._q.drop_dead_log, {"log": op.log, "now": now})] if isinstance(op, Append) else []
            plans.append([*dead, stmt])
        ends = list(itertools.accumulate(len(p) for p in plans))
        rows = self._execute([s for p in plans for s in p], [e - 1 for e in ends])
        kinds = tuple(p[0] if p else "load_entries" for p in parts)
        return self._results(ops, kinds, rows, shared=False, now=now)

    @staticmethod
    def _results(
        ops: Sequence[Op], kinds: Sequence[str], rows: Sequence[Row | None], *, shared: bool, now: float
    ) -> list[OpResult]:
        """Each op's result from its columns: consecutive in one ``shared`` row, or its own row."""
        out: list[OpResult] = []
        col = 0
        for op, kind, row in zip(ops, kinds, rows):
            assert row is not None
            width = _pg_sql.FRAGMENTS[kind].width if kind in _pg_sql.FRAGMENTS else 1
            cols = row[col : col + width] if shared else row
            col += width
            out.append(_op_result(op, cols, now))
        return out

    def _part(self, op: Op, raw: bool) -> Part | None:
        """``op`` as (fragment name, parameters); None for LoadEntries (whole statements)."""
        if isinstance(op, Put):
            return _put(op, raw)
        if isinstance(op, Append):
            return _append(op, raw)
        if isinstance(op, Delete):
            kind = "delete_any" if isinstance(op.expect, Any_) else (
                "delete_new" if op.expect is None else "delete_version")
            return kind, {"key": op.key, "expect": _expect(op.expect)}
        if isinstance(op, Touch):
            keep, exp = _expiry(op.expires_at)
            return "touch", {"key": op.key, "keep": keep, "exp": exp}
        if isinstance(op, Expire):
            return "expire", {"lo": op.prefix, "hi": prefix_end(op.prefix), "exp": op.expires_at}
        if isinstance(op, Trim):
            return "trim", {"log": op.log, "before": op.before}
        if isinstance(op, Rewrite):
            data, doc = _payload(op.data, op.codec, raw)
            return "rewrite", {"log": op.log, "seq": op.seq, "data": data, "doc": doc, "codec": op.codec}
        if isinstance(op, Load):
            return _load(op.record, raw)
        return None

    def _load_entries(self, op: LoadEntries, now: float, raw: bool) -> list[Stmt]:
        if not op.entries:
            return [(self._q.set_log_expiry, {"log": op.log, "exp": op.expires_at, "now": now})]
        first = op.entries[0]
        payloads = [_payload(e.data, e.codec, raw) for e in op.entries]
        head = {"log": op.log, "first": first.seq, "created": first.created_at, "exp": op.expires_at}
        body = {
            "log": op.log, "seqs": [e.seq for e in op.entries], "createds": [e.created_at for e in op.entries],
            "datas": [p[0] for p in payloads], "docs": [p[1] for p in payloads],
            "codecs": [e.codec for e in op.entries],
        }  # fmt: skip
        return [
            (self._q.drop_dead_log, {"log": op.log, "now": now}),
            (self._q.load_log_head, head),
            (self._q.load_entries, body),
        ]

    # -- housekeeping --------------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        if limit <= 0:
            return 0
        with self._guard():
            for attempt in itertools.count(1):
                try:
                    rows = self._execute([(self._q.purge, {"now": time.time(), "limit": limit})], [0])
                    return int(rows[0][0]) if rows[0] else 0
                except _RACES:
                    if attempt >= _RETRIES:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        with self._guard(), self._pool.connection() as conn:
            return self._migrate(conn, check)

    def _migrate(self, conn: Conn, check: bool) -> MigrationStatus:
        target = len(_pg_sql.MIGRATIONS)
        current = self._schema_version(conn, target)
        pending = [s for v in range(current + 1, target + 1) for s in _pg_sql.migration_sql(self.schema, v)]
        if check or current == target:
            return MigrationStatus(current, target, pending)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_id(self.schema)])
            current = self._schema_version(conn, target)  # another process may have migrated meanwhile
            # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
            # schema is there: skip it for roles that were only given the schema
            exists = conn.execute(_pg_sql.SCHEMA_EXISTS, {"schema": self.schema}).fetchone() is not None
            for version in range(current + 1, target + 1):
                for stmt in _pg_sql.migration_sql(self.schema, version):
                    if not (exists and stmt.startswith("CREATE SCHEMA")):
                        conn.execute(stmt)
        return MigrationStatus(target, target, [])

    def _schema_version(self, conn: Conn, target: int) -> int:
        tables = {r[0] for r in conn.execute(_pg_sql.SCHEMA_TABLES, {"schema": self.schema})}
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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for child in self._tenants.values():
            child.close()
        try:
            self._pool.close()
        except Exception:  # noqa: BLE001 - closing a pool that never opened
            pass


def tenant_setting(tenant: str) -> str:
    """The value of ``statekeel.tenant`` for a tenant: hex, so any name is a safe option value."""
    return "t" + tenant.encode("utf-8", "surrogatepass").hex()


def _lock_id(schema: str) -> int:
    """A stable advisory-lock key for migrating ``schema``."""
    digest = hashlib.sha256(f"statekeel-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
