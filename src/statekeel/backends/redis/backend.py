"""The Redis backend itself: the client, reads, batches (see :mod:`.wire`) and housekeeping."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urlunsplit

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._closed import closed, release
from ...errors import (
    ConfigurationError,
    ConflictError,
    NotAStoreError,
    SchemaTooNewError,
    translate,
)
from ...protocol import Append, Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Record
from ...protocol.checks import check_ops
from ...protocol.keys import partition
from .._url import ParsedURL
from . import lua, lua_light, lua_scan, tail, values, wire
from .aof import rewrite_aof
from .faults import map_error as _map_error
from .records import RECORD_FIELDS as _RECORD_FIELDS
from .records import Script as _Script
from .records import alive as _alive
from .records import opt_float as _opt_float
from .records import record as _record
from .records import text as _text

__all__ = ["RedisBackend", "LAYOUT_VERSION"]

LAYOUT_VERSION = 2
"""The key layout this code writes; recorded in ``PREFIX:statekeel``. 2: records carry a checksum
field and log entries a sealed frame; an older statekeel cannot read those, so the bump makes it
refuse the store with SchemaTooNewError instead (this code reads layout 1 data as it is)."""

_OWN_OPTIONS = ("prefix", "timeout")
_REDIS_OPTIONS = ("db", "client_name", "health_check_interval", "max_connections", "socket_keepalive")
"""redis-py URL options passed through as they are. Left out on purpose: ``socket_timeout`` and
``socket_connect_timeout`` (``?timeout=`` sets both), ``retry_on_timeout`` and ``retry_on_error``
(a batch whose reply was lost must never be re-sent), ``protocol`` (the replies are parsed as RESP2)."""
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
"""Passed through for ``rediss://`` only (a plain connection refuses them)."""
_REGISTRY_PAGE = 200
_REGISTERED_CACHE = 100_000
_T = TypeVar("_T")


_APPLY = _Script(lua.APPLY)
_SCAN_KEYS = _Script(lua_scan.SCAN_KEYS)
_SCAN_LOGS = _Script(lua_scan.SCAN_LOGS)
_READ_LOG = _Script(lua_scan.READ_LOG)
_PURGE = _Script(lua_scan.PURGE)
_CLEAN = _Script(lua_scan.CLEAN)
_LIGHT = _Script(lua_light.LIGHT)  # APPLY for the everyday batch (wire.Batch.light)
_SCRIPTS = (_APPLY, _SCAN_KEYS, _SCAN_LOGS, _READ_LOG, _PURGE, _CLEAN, _LIGHT, tail.SCRIPT)


def _client(url: ParsedURL) -> redis.Redis:
    scheme = "rediss" if url.scheme == "rediss" else "redis"
    url.refuse_unknown(_OWN_OPTIONS + _REDIS_OPTIONS + (_TLS_OPTIONS if scheme == "rediss" else ()))
    timeout = url.float_option("timeout", 10.0)
    if not 0 < timeout <= 86_400:  # far longer is a mistake, and 1e300 overflows the socket's clock
        raise ConfigurationError(
            f"?timeout= in {url.redacted} must be a positive number of seconds up to 86,400 (a day), e.g. ?timeout=10"
        )
    _check_ints(url)
    query = urlencode({k: v for k, v in url.options.items() if k not in _OWN_OPTIONS})
    clean = urlunsplit((scheme, url.netloc, url.path, query, ""))
    try:
        return redis.Redis.from_url(
            clean,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # never re-send a batch whose reply was lost
            decode_responses=False,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{url.redacted} is not a valid Redis URL ({exc})") from exc


_INT_OPTIONS = {"db": (0, 2**31 - 1, 0), "max_connections": (1, 1_000_000, 50), "health_check_interval": (0, 86_400, 30)}
"""redis-py's integer URL options: (lowest, highest, an example) — a database index (Redis's
``databases`` is an int), a pool size (a server takes 10,000 clients by default), seconds."""


def _check_ints(url: ParsedURL) -> None:
    """The integer options redis-py reads, in range: it would take ``?db=10**30`` or ``?max_connections=0``
    and fail at the first command, or never. The database in the path (``/0``) is checked the same way."""
    for name, (low, high, example) in _INT_OPTIONS.items():
        url.int_option(name, example, low=low, high=high)
    db = unquote(url.path).replace("/", "")  # as redis-py reads it
    digits = db.lstrip("0") or "0"
    if db and not (db.isascii() and db.isdigit() and len(digits) <= 10 and int(digits) <= 2**31 - 1):
        shown = db if len(db) <= 40 else db[:20] + "…"
        raise ConfigurationError(
            f"{url.redacted.split('?', 1)[0]}: the database in the path, {shown!r}, must be a whole number from 0 "
            f"to {2**31 - 1:,}, e.g. redis://host:6379/0"
        )


class RedisBackend(Backend):
    """Records, logs and atomic batches on one Redis/Valkey server."""

    short_messages = True  # values are opaque bytes: plain chat messages take the short form

    def __init__(self, url: ParsedURL, *, migrate: bool = True) -> None:
        self.url = url.redacted
        self._layout = wire.Layout(url.option("prefix", "sk"))
        self._redis = _client(url)
        self._purge_cursor: str | None = None
        self._registered: set[str] = set()
        """Partitions this handle registered (or saw registered) since it opened."""
        self._next_seq: dict[str, int] = {}
        """Each log's next seq as this handle's last append left it: the seqs the
        next append's checksums are sealed with (the script corrects a wrong guess)."""
        if self._cluster_enabled():  # a cluster refuses scripts across slots: one partition per batch
            self.batch_scope = "partition"
        if migrate:
            self.migrate()

    def _cluster_enabled(self) -> bool:
        info = self._call(lambda: self._redis.info("cluster"))
        return bool(isinstance(info, dict) and int(info.get("cluster_enabled", 0)))

    # -- plumbing ------------------------------------------------------------
    def _call(self, fn: Callable[[], _T]) -> _T:
        with translate(_map_error):
            return fn()

    def _eval(self, script: _Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return self._call(lambda: self._with_scripts(
            lambda: self._redis.evalsha(script.sha, len(keys), *keys, *args)))  # fmt: skip

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        wire.utf8(key, "the key")
        h = self._call(lambda: self._redis.hmget(self._layout.kv(key), _RECORD_FIELDS))
        rec = _record(key, h)
        if rec is None or include_expired or _alive(rec.expires_at, time.time()):
            return rec
        return None

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._layout.kv(key), _RECORD_FIELDS)
            return pipe.execute()

        if not keys:
            return []
        for key in keys:
            wire.utf8(key, "the key")
        now = time.time()
        found = [_record(k, h) for k, h in zip(keys, self._call(run))]
        return [r if r is not None and _alive(r.expires_at, now) else None for r in found]

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        out: list[Record] = []
        now = time.time()
        for part, lo, hi in self._ranges(prefix, after):
            if len(out) >= limit:
                break
            rows = self._scan_partition(_SCAN_KEYS, "k", part, (lo, hi), limit - len(out), now)
            out += [rec for r in rows if (rec := _record(_text(r[0]), r[1:])) is not None]
        return out

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        out: list[LogInfo] = []
        now = time.time()
        for part, lo, hi in self._ranges(prefix, after):
            if len(out) >= limit:
                break
            rows = self._scan_partition(_SCAN_LOGS, "l", part, (lo, hi), limit - len(out), now)
            out += [LogInfo(_text(r[0]), int(r[1]), int(r[2]), float(r[3]), float(r[4]), _opt_float(r[5]))
                    for r in rows]  # fmt: skip
        return out

    def _scan_partition(
        self, script: _Script, kind: str, part: str, bounds: wire.LexRange, limit: int, now: float
    ) -> list[Any]:
        base = self._layout.base(part)
        index = base + ("keys" if kind == "k" else "logs")
        rows, dead = self._eval(script, [index], [base, bounds[0], bounds[1], limit, repr(now)])
        if dead:  # members whose key Redis expired: drop them now rather than at the next purge
            self._eval(_CLEAN, [index], [base, kind, *dead])
        return list(rows)

    def _ranges(self, prefix: str, after: str | None) -> Iterator[wire.PartitionRange]:
        """The partition intervals holding keys that start with ``prefix``, in key order."""
        wire.utf8(prefix, "the prefix")
        if after is not None:
            wire.utf8(after, "after=")
        if wire.in_one_partition(prefix):
            yield (partition(prefix), *wire.prefix_range(prefix, after))
            return
        lo, hi = wire.registry_start(prefix, after), wire.prefix_range(prefix, None)[1]
        for member in self._registry_members(lo, hi):
            yield wire.member_range(member, after)

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        wire.utf8(log, "the log")
        start = int(start)
        args = [repr(time.time()), start, "" if stop is None else int(stop),
                "" if limit is None else int(limit), "1" if reverse else "0"]  # fmt: skip
        span = values.bounds(limit, reverse) if start <= 1 and stop is None else None
        if span is not None:  # from the log's first entry: read_values' snapshot (no Lua copy of the list)
            head, length, frames = self._call(lambda: self._snapshot(log, span))
            at = values.first_seq(head, length, len(frames), reverse, time.time())
            if at is not None:
                return values.entries(log, at, frames) if at else []
        keys = [self._layout.log_head(log), self._layout.log_data(log)]
        reply = self._eval(_READ_LOG, keys, args)
        return values.entries(log, int(reply[0]), reply[1]) if reply else []

    def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        """History reloads: one MULTI/EXEC snapshot, the frames checked in bulk (:mod:`.values`)."""
        wire.utf8(log, "the log")
        span = values.bounds(limit, reverse)
        if span is not None:
            head, length, frames = self._call(lambda: self._snapshot(log, span))
            first = values.first_seq(head, length, len(frames), reverse, time.time())
            if first is not None:
                return values.from_frames(log, first, frames) if first else []
        args = [repr(time.time()), 1, "", "" if limit is None else int(limit), "1" if reverse else "0"]
        reply = self._eval(_READ_LOG, [self._layout.log_head(log), self._layout.log_data(log)], args)
        return values.from_frames(log, int(reply[0]), reply[1]) if reply else []

    def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """The records and the log's values in one round trip, one snapshot (:mod:`.tail`)."""
        span = values.bounds(limit, reverse)
        if span is None or not keys or not tail.one_round_trip(self.batch_scope, keys, log):
            return super().get_many_and_values(keys, log, limit=limit, reverse=reverse)
        now, layout = time.time(), self._layout
        if limit is not None and reverse:
            return tail.tail_found(keys, log, self._eval(tail.SCRIPT, *tail.tail_call(layout, keys, log, limit, now)), now)

        def snapshot() -> list[Any]:
            pipe = self._redis.pipeline(transaction=True)
            tail.snapshot_into(pipe, layout, keys, log, span)
            return pipe.execute()

        records, found = tail.snapshot_found(keys, log, self._call(snapshot), reverse, now)
        return records, self.read_values(log, limit=limit, reverse=reverse) if found is None else found

    def _snapshot(self, log: str, span: tuple[int, int]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(self._layout.log_head(log), ("f", "l", "ea"))
        pipe.llen(self._layout.log_data(log))
        pipe.lrange(self._layout.log_data(log), *span)
        return pipe.execute()

    def log_info(self, log: str) -> LogInfo | None:
        wire.utf8(log, "the log")
        head = self._layout.log_head(log)
        h: list[Any] = self._call(lambda: self._redis.hmget(head, ("f", "l", "ca", "ua", "ea")))
        if h[0] is None:
            return None
        info = LogInfo(log, int(h[0]), int(h[1]), float(h[2]), float(h[3]), _opt_float(h[4]))
        if not _alive(info.expires_at, time.time()) or info.last_seq < info.first_seq:
            return None
        return info

    # -- writes --------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        if not ops:
            return []
        now = time.time() if now is None else now
        batch = wire.encode(self._layout, ops, now, self._expand, self._next_seq)
        if not batch.owners:  # only Expires over prefixes that hold nothing
            return [0 for _ in ops]
        return self._call(lambda: self._run_batch(ops, batch, now))

    def _run_batch(self, ops: Sequence[Op], batch: wire.Batch, now: float) -> list[OpResult]:
        """One EVALSHA; registry writes only for partitions new to this handle or to the store.

        A partition this handle has not registered yet is registered (ZADD NX)
        in the same round trip, before the script, so it is durable before its
        data. The script reports partitions that were empty before the batch;
        those are registered again afterwards, because purge_expired may have
        dropped them from the registry meanwhile (see :meth:`_unregister`).
        """
        unknown = [p for p in batch.creates.values() if p not in self._registered]
        args = [(_LIGHT if batch.light else _APPLY).sha, len(batch.keys), *batch.keys, repr(now), batch.blob]
        try:
            reply = self._with_scripts(lambda: self._send_batch(args, unknown))
            results, fresh = wire.decode(ops, batch, reply, now)
            if fresh:
                self._register(fresh)
        except ConflictError:
            raise  # nothing written; any registration sent with it still stands
        except BaseException:
            self._registered.difference_update(batch.creates.values())
            raise
        self._applied(batch.creates.values(), ops, results)
        return results

    def _applied(self, created: Iterable[str], ops: Sequence[Op], results: list[OpResult]) -> None:
        """Remember what an applied batch registered and where its logs go on (the async backend
        shares these caches, and this bookkeeping)."""
        if len(self._registered) > _REGISTERED_CACHE:
            self._registered.clear()
        self._registered.update(created)
        if len(self._next_seq) > _REGISTERED_CACHE:
            self._next_seq.clear()
        for op, first in zip(ops, results):
            if isinstance(op, Append) and isinstance(first, int):
                self._next_seq[op.log] = first + len(op.items)

    def _send_batch(self, args: list[Any], register: list[str]) -> Any:
        if not register:
            return self._redis.evalsha(*args)
        pipe = self._redis.pipeline(transaction=False)
        self._register(register, pipe)
        pipe.evalsha(*args)
        return pipe.execute()[1]

    def _register(self, partitions: list[str], client: Any = None) -> None:
        members = {m: 0 for part in partitions for m in wire.registry_members(part)}
        (client or self._redis).zadd(self._layout.registry, members, nx=True)

    def _with_scripts(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn``; if the server lost the scripts (restart, SCRIPT FLUSH), load them and run it again."""
        try:
            return fn()
        except rx.NoScriptError:
            pipe = self._redis.pipeline(transaction=False)
            for script in _SCRIPTS:
                pipe.script_load(script.source)
            pipe.execute()
            return fn()

    def _expand(self, prefix: str, created: Collection[str]) -> list[wire.PartitionRange]:
        """Partition intervals an Expire covers: the registry's, and those the batch creates."""
        if wire.in_one_partition(prefix):
            return list(self._ranges(prefix, None))
        lo, hi = wire.registry_start(prefix, None), wire.prefix_range(prefix, None)[1]
        members = set(self._registry_members(lo, hi))
        members.update(m for part in created for m in wire.registry_members(part) if m.startswith(prefix))
        return [wire.member_range(m, None) for m in sorted(members)]

    # -- housekeeping --------------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        """Clean index entries of records and logs Redis expired, up to ``limit``.

        Redis deletes expired keys itself; what is left are index members and
        registry entries, cleaned here partition by partition. The walk resumes
        where the previous call stopped and returns 0 only after a full round
        found nothing.
        """
        done = 0
        now = time.time()
        if limit <= 0:
            return 0
        members = self._registry_round()
        while chunk := list(itertools.islice(members, _REGISTRY_PAGE)):
            for member, (due, exists) in zip(chunk, self._call(lambda: self._probe(chunk, now))):
                base = self._layout.base(wire.member_range(member, None)[0])
                empty = not exists
                if due:
                    cleaned, empty = self._eval(_PURGE, [base + "exp"], [base, repr(now), limit - done])
                    done += int(cleaned)
                if empty:
                    self._unregister(member, base)
                if done >= limit:
                    self._purge_cursor = member
                    return done
        return done

    def _probe(self, members: list[str], now: float) -> list[tuple[bool, bool]]:
        """For each member's partition: has it expired index entries, does its index exist."""
        pipe = self._redis.pipeline(transaction=False)
        for member in members:
            exp = self._layout.base(wire.member_range(member, None)[0]) + "exp"
            pipe.zrangebyscore(exp, "-inf", repr(now * 1000), 0, 1)
            pipe.exists(exp)
        replies = pipe.execute()
        return [(bool(replies[i]), bool(replies[i + 1])) for i in range(0, len(replies), 2)]

    def _registry_round(self) -> Iterator[str]:
        """Every registry member once, starting after the purge cursor."""
        cursor = self._purge_cursor
        self._purge_cursor = None
        starts = [b"-"] if cursor is None else [b"(" + cursor.encode(), b"-"]
        for number, start in enumerate(starts):
            stop = b"+" if number == 0 else b"[" + str(cursor).encode()
            yield from self._registry_members(start, stop)

    def _registry_members(self, lo: bytes, hi: bytes) -> Iterator[str]:
        while True:
            page: list[Any] = self._call(
                lambda: self._redis.zrangebylex(self._layout.registry, lo, hi, 0, _REGISTRY_PAGE)
            )
            yield from (_text(m) for m in page)
            if len(page) < _REGISTRY_PAGE:
                return
            lo = b"(" + page[-1]

    def _unregister(self, member: str, base: str) -> None:
        """Drop an empty partition from the registry; put it back if a write raced in."""

        def run() -> None:
            self._redis.zrem(self._layout.registry, member)
            if self._redis.exists(base + "exp"):
                self._redis.zadd(self._layout.registry, {member: 0}, nx=True)

        self._call(run)

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        current = self._call(self._layout_version)
        pending = [f"HSET {self._layout.marker} layout {v}" for v in range(current + 1, LAYOUT_VERSION + 1)]
        if pending and not check:  # over an older layout only: a newer statekeel that raced us is not set back
            current = int(self._call(lambda: self._redis.eval(
                lua_scan.RECORD_LAYOUT, 1, self._layout.marker, LAYOUT_VERSION, repr(time.time()))))  # fmt: skip
            pending = []
        if current > LAYOUT_VERSION:
            raise SchemaTooNewError(
                f"the store at {self.url} (prefix {self._layout.prefix!r}) has layout version {current}, "
                f"newer than this statekeel understands ({LAYOUT_VERSION}); upgrade the statekeel package"
            )
        return MigrationStatus(current, LAYOUT_VERSION, pending)

    def _layout_version(self) -> int:
        marker = self._layout.marker
        kind = self._redis.type(marker)
        if kind == b"none":
            if not self._foreign_keys() or self._redis.type(self._layout.registry) == b"zset":
                return 0  # empty, or statekeel data written by a handle opened with migrate=False
            kind = self._redis.type(marker)  # another process may have created the store meanwhile
            if kind == b"none":
                raise NotAStoreError(
                    f"Redis at {self.url} holds keys under {self._layout.prefix + ':'!r} but no statekeel "
                    f"marker ({marker}); use another ?prefix= or database"
                )
        version = self._redis.hget(marker, "layout") if kind == b"hash" else None
        if version is None or not version.isdigit():
            raise NotAStoreError(
                f"{marker} on {self.url} is not a statekeel marker; use another ?prefix= or database"
            )
        return int(version)

    def _foreign_keys(self) -> bool:
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in self._layout.prefix) + ":*"
        return next(iter(self._redis.scan_iter(match=pattern, count=1000)), None) is not None

    def rewrite_log(self) -> None:
        """Rewrite the AOF from the current data (:mod:`.aof`): erasure leaves nothing of the erased in it."""
        if self.batch_scope == "store":  # not on a cluster, whose nodes each keep their own AOF
            self._call(lambda: rewrite_aof(self._redis))

    def close(self) -> None:
        """Drop the connections; later calls raise StoreClosedError (redis-py would reconnect). Idempotent."""
        client, self._redis = self._redis, closed(self.url)
        release(client, rx.RedisError)

