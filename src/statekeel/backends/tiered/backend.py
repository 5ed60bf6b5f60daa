"""The tiered backend: Redis in front of PostgreSQL, behind the ordinary protocol.

Reads of one partition come from Redis (hydrating the partition from PostgreSQL
first if Redis does not hold it); listings across partitions come from
PostgreSQL (after a write-behind store replayed its queue, so they see every
accepted write). Writes follow :mod:`.writes`; the flusher, eviction and cache
resets are :mod:`.maintenance`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from ...errors import ConfigurationError, ConflictError, CorruptionError, StatekeelError, UnavailableError
from ...protocol import Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Put, Record, keys
from ...protocol.capabilities import SupportsLogRewrite
from ...protocol.checks import check_ops
from .._closed import closed
from .._url import ParsedURL
from .config import Mode, OnHotFailure, Settings
from .divergence import problems
from .hydrate import Hydrator, LocksPartitions, drop, hydrate
from .maintenance import Maintenance
from .names import DIRTY, LEASE, MARKERS, QUEUE, SPANNING, is_reserved, lock, marker, prefix_partition
from .writes import (MarkerVersions, NextSeqs, behind_batch, behind_partitions, partitions, removes_entries,
                     spans_partitions, through_hot)

log = logging.getLogger("statekeel.tiered")

_T = TypeVar("_T")
_HYDRATE_TRIES = 5
_BEHIND_TRIES = 50
"""Write-behind attempts: hydrations (at most ``_HYDRATE_TRIES``) and retries after another writer
moved a partition's marker on."""


def _open(url: str | Backend, migrate: bool) -> Backend:
    if isinstance(url, Backend):
        return url
    from .. import open_backend  # the registry imports this package lazily

    return open_backend(url, migrate=migrate)


class TieredBackend(Backend):
    """Redis (hot) over PostgreSQL (cold); see docs/tiered.md for where the authority lies.

    Open it with ``statekeel.open("tiered://?hot=…&cold=…&mode=…")`` or build it:
    ``TieredBackend(hot="redis://…", cold="postgresql://…", mode="write-behind")``
    (``hot``/``cold`` may also be open backends), then ``statekeel.Store(backend)``.
    """

    def __init__(
        self,
        url: ParsedURL | None = None,
        *,
        hot: str | Backend | None = None,
        cold: str | Backend | None = None,
        mode: Mode | None = None,
        flush_every: int | None = None,
        flush_interval: float | None = None,
        hot_ttl: float | None = None,
        on_hot_failure: OnHotFailure | None = None,
        lease: float | None = None,
        migrate: bool = True,
    ) -> None:
        given = {k: v for k, v in dict(mode=mode, flush_every=flush_every, flush_interval=flush_interval,
                 hot_ttl=hot_ttl, on_hot_failure=on_hot_failure, lease=lease).items() if v is not None}  # fmt: skip
        if url is not None:
            if hot is not None or cold is not None or given:
                raise ConfigurationError(
                    f"{url.redacted}: give the tiers and {', '.join(given) or 'options'} in the tiered:// URL "
                    "or as keywords of TieredBackend(hot=, cold=, ...), not both"
                )
            settings = Settings.from_url(url)
            hot, cold = settings.hot, settings.cold
        else:
            if hot is None or cold is None:
                raise ConfigurationError("TieredBackend needs hot= (a redis:// URL) and cold= (a postgresql:// URL)")
            names = [b.url if isinstance(b, Backend) else b for b in (hot, cold)]
            settings = Settings(names[0], names[1], **given)  # type: ignore[arg-type]
        self.settings = settings
        self.cold = _open(cold, migrate)
        try:
            self.hot = _open(hot, migrate)
        except UnavailableError:
            self.cold.close()
            raise
        if self.hot.batch_scope != "store":
            raise ConfigurationError("the hot tier must be a single Redis node (not a cluster): its queue spans partitions")
        if not isinstance(self.cold, LocksPartitions) or self.cold.pool_max < 2:
            self.hot.close()
            self.cold.close()
            raise ConfigurationError(
                f"{self.cold.url}: the cold tier must be PostgreSQL with pool_max of at least 2 (a copy into "
                "Redis holds one connection while it reads through another); drop ?pool_max= or raise it"
            )
        self.locks: LocksPartitions = self.cold
        self.url = Settings(self.hot.url, self.cold.url, *_rest(settings)).url()
        self.short_messages = self.hot.short_messages and self.cold.short_messages  # both keep values as bytes
        self.behind = settings.mode == "write-behind"
        self.maintenance = Maintenance(self.hot, self.cold, settings)
        self.hydrator = Hydrator(self.hot, self.cold)
        self._versions = MarkerVersions()
        self._seqs = NextSeqs(self.hot)
        self._partition_of: dict[str, str] = {}
        self._closed = False
        if migrate:  # migrate=False: a check or a read-only role, which can neither flush nor evict
            self.maintenance.start()

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        found = self._read([keys.partition(key)], lambda b: b.get(key, include_expired=include_expired))
        if found is None and include_expired:  # Redis deletes expired keys itself; PostgreSQL keeps them
            return self._listing(lambda: self.cold.get(key, include_expired=True))
        return found

    def get_many(self, keys_: Sequence[str]) -> list[Record | None]:
        parts = sorted({keys.partition(k) for k in keys_})
        return self._read(parts, lambda b: b.get_many(keys_)) if keys_ else []

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        part = prefix_partition(prefix)
        if part is not None:
            return self._read([part], lambda b: b.scan(prefix, after=after, limit=limit))
        return self._listing(lambda: _visible(self.cold.scan, prefix, after, limit, lambda r: r.key))

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        part = prefix_partition(prefix)
        if part is not None:
            return self._read([part], lambda b: b.scan_logs(prefix, after=after, limit=limit))
        return self._listing(lambda: _visible(self.cold.scan_logs, prefix, after, limit, lambda i: i.log))

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        return self._read(
            [keys.partition(log)], lambda b: b.read(log, start=start, stop=stop, limit=limit, reverse=reverse)
        )

    def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        return self._read([keys.partition(log)], lambda b: b.read_values(log, limit=limit, reverse=reverse))

    def log_info(self, log: str) -> LogInfo | None:
        return self._read([keys.partition(log)], lambda b: b.log_info(log))

    def _read(self, parts: list[str], fn: Callable[[Backend], _T]) -> _T:
        """``fn`` on Redis if it caches ``parts``; else on PostgreSQL, while the partitions are
        copied into Redis in the background (PostgreSQL is current for a partition Redis lacks:
        write-behind never evicts one with queued batches). While Redis is down: PostgreSQL.

        The markers are read before and after: if any changed (a write, or the partition dropped
        and copied in again while ``fn`` read it), the read is done again. If writes keep changing
        them, write-through reads PostgreSQL (the authority, current); write-behind returns the last
        Redis read whose partitions were still cached (PostgreSQL lags there).

        Redis down: write-behind with ``on_hot_failure=fail`` raises UnavailableError — PostgreSQL
        may lack batches Redis acknowledged, and a reader must not see an older value than one it
        read before (``write-through`` falls back to PostgreSQL, as its writes do)."""
        try:
            for attempt in range(_HYDRATE_TRIES):
                before = self._markers(parts)
                if before is None:
                    break
                found = fn(self.hot)
                after = self._markers(parts)
                if after == before or (after is not None and self.behind and attempt == _HYDRATE_TRIES - 1):
                    return found
        except UnavailableError as exc:
            self._degrade("reading from PostgreSQL", exc)
        with self.hydrator.pauses.reading():  # the copies it started wait for a pause
            return fn(self.cold)

    def _degrade(self, doing: str, exc: UnavailableError) -> None:
        """Redis (or the flush) failed under a read: go on from PostgreSQL, logged — unless write-behind
        fails fast (PostgreSQL may lack acknowledged writes still queued in Redis)."""
        if self.behind and self.settings.on_hot_failure == "fail":
            cause = exc.args[0] if exc.args else exc
            raise UnavailableError(
                f"statekeel tiered (write-behind): {cause} — Redis holds acknowledged writes PostgreSQL may "
                "not have yet, so reads wait for it (on_hot_failure=fail); retry once it answers"
            ) from exc
        log.warning("statekeel tiered: Redis unavailable, %s (%s)", doing, exc)

    def _markers(self, parts: list[str]) -> list[tuple[float, float]] | None:
        """The markers' stamps if Redis caches every partition of ``parts``; else None, and the
        missing ones start hydrating."""
        found = self.hot.get_many([marker(p) for p in parts])
        missing = [p for p, rec in zip(parts, found) if rec is None]
        self.hydrator.start(missing)
        return None if missing else [(r.created_at, r.updated_at) for r in found if r is not None]

    def _listing(self, fn: Callable[[], _T]) -> _T:
        """A listing across partitions, from PostgreSQL — after the queue reached it (write-behind)."""
        if self.behind:
            try:
                done = self.maintenance.catch_up()
            except UnavailableError as exc:
                if self._answers():
                    raise  # PostgreSQL failed, which the listing reads: not Redis' (or the fallback's) business
                self._degrade("listing from PostgreSQL without the queued writes", exc)
            except CorruptionError as exc:  # flushing stopped (a diverged queue): not damage a walk could skip
                raise UnavailableError(
                    f"statekeel tiered (write-behind): a listing across partitions was not done, as PostgreSQL "
                    f"lacks writes Redis acknowledged and flushing has stopped: {exc}"
                ) from exc
            else:
                if done is None:
                    raise self._stalled("a listing across partitions (read from PostgreSQL)")
        return fn()

    def _answers(self) -> bool:
        """Whether Redis answers (after a failure that may have been either tier's)."""
        try:
            self.hot.log_info(QUEUE)
        except UnavailableError:
            return False
        return True

    def _stalled(self, what: str) -> UnavailableError:
        wait = 2 * self.settings.lease
        return UnavailableError(
            f"statekeel tiered (write-behind): another process holds the flusher lease and replayed nothing "
            f"for {wait:g} s, so PostgreSQL lacks writes Redis acknowledged; {what} would miss them and was "
            f"not done — retry; if it lasts, the process holding {LEASE!r} in Redis is stuck: stop it "
            "(its lease then runs out)"
        )

    # -- writes --------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        if not ops:
            return []
        now = time.time() if now is None else now
        if self.behind:
            parts = behind_partitions(ops, self._partition_of)
            if parts is not None:
                if removes_entries(ops, now):
                    return self._behind_after_flush(ops, parts, now)
                return self._write_behind(ops, parts, now)
            self.flush()  # a cross-partition Expire lands after everything queued before it
        return self._write_through(ops, now)

    def _behind_after_flush(self, ops: Sequence[Op], parts: list[str], now: float) -> list[OpResult]:
        """A write-behind batch that trims or expires log entries now: queued only once everything
        queued for its partitions before it is in PostgreSQL. Their markers are read, the queue is
        replayed, and the batch checks the markers at exactly what was read — a write to one of the
        partitions meanwhile (whose entries this batch may remove) moves it: the batch is refused,
        and the queue replayed again. Otherwise the flusher would replay such Appends by reference
        after their entries went, as placeholders only this batch removes in PostgreSQL (:mod:`.refs`).
        With PostgreSQL (or the flusher) unavailable it is queued behind the rest like any write
        (write-behind keeps accepting): the earlier Appends are then replayed as placeholders that this
        batch, replayed with them, removes. A partition Redis does not cache has nothing queued."""
        for _ in range(_BEHIND_TRIES):
            try:
                fenced = self._versions.fence(self.hot, parts)
                self.flush()
            except UnavailableError as exc:
                log.warning("statekeel tiered: the queue could not be replayed before a trim (%s); the trim is "
                            "queued behind it", exc)  # fmt: skip
                return self._write_behind(ops, parts, now)
            try:
                return self._write_behind(ops, parts, now, fenced=fenced)
            except ConflictError as exc:
                if not exc.key.startswith(MARKERS):
                    raise  # the caller's
        raise UnavailableError(
            "statekeel tiered: other writers kept writing to the partition while a trim waited for the queue "
            "to be replayed; nothing was written — retry"
        )

    def _write_through(self, ops: Sequence[Op], now: float) -> list[OpResult]:
        parts = partitions(ops)
        try:
            spanning = [SPANNING] if any(spans_partitions(op) for op in ops) else []
            results = self.locks.apply_sharing(ops, [lock(p) for p in parts], now=now, exclusive=spanning)
        except ConflictError:
            self._forget(parts, now)  # the caller may have read a stale copy from Redis
            raise
        try:
            through_hot(self.hot, ops, parts, results, now)
        except StatekeelError as exc:  # down, out of memory, ...: the write is committed all the same
            log.warning("statekeel tiered: Redis not updated, wrote PostgreSQL only (degraded): %s", exc)
            self.maintenance.flag_dirty()  # committed: never raises (PostgreSQL down: flagged later)
        return results

    def _forget(self, parts: list[str], now: float) -> None:
        try:
            drop(self.hot, parts, now)
        except StatekeelError:  # Redis down or full: its copy may be stale, so its whole cache goes later
            self.maintenance.flag_dirty()

    def _write_behind(self, ops: Sequence[Op], parts: list[str], now: float, fenced: bool = False
                      ) -> list[OpResult]:  # fmt: skip
        """``fenced``: the markers were read just now (:meth:`_behind_after_flush`): a moved one is raised."""
        hydrations, guess = 0, True
        for _ in range(_BEHIND_TRIES):
            try:
                pinned, mine, seqs = self._seqs.pin(ops, guess)
                results = self.hot.apply(behind_batch(ops, pinned, seqs, parts, self._versions, now), now=now)
            except ConflictError as exc:
                guess = False  # contended: from now on this write queues its items inline, as it retries
                if fenced and exc.key.startswith(MARKERS):
                    raise  # another write reached the partition since the markers were read
                if self._seqs.refused(exc, mine):
                    continue  # another writer appended to the log (or it expired)
                missing = self._versions.refused(exc)  # re-raises a conflict of the caller's ops
                if missing is not None:
                    if hydrations == _HYDRATE_TRIES:
                        break
                    hydrations += 1
                    for part in self._uncached(parts, missing):  # all at once: one refused attempt, not one each
                        hydrate(self.hot, self.cold, part)
                continue
            except UnavailableError as exc:
                if self.settings.on_hot_failure == "fail" or exc.maybe_applied:
                    raise  # maybe applied: the batch may be in Redis and its queue — PostgreSQL would get it twice
                log.warning("statekeel tiered: Redis unavailable, writing through to PostgreSQL: %s", exc)
                flagged = self.cold.apply([*ops, Put(DIRTY, b"true", "json")], now=now)  # one transaction
                return flagged[: len(ops)]
            self._versions.learn(parts, results)
            mine_results = results[len(parts) : len(parts) + len(ops)]
            self._seqs.learn(pinned, mine_results)
            self.maintenance.queued_one()
            return mine_results
        raise UnavailableError(
            "statekeel tiered: a partition kept leaving Redis, or other writers kept moving it on, while "
            "being written; nothing was written — retry"
        )

    def _uncached(self, parts: list[str], refused: str) -> list[str]:
        """``refused`` (a batch found it not cached) and the other partitions of ``parts`` Redis lacks."""
        others = [p for p in parts if p != refused]
        found = self.hot.get_many([marker(p) for p in others]) if others else []
        for part, rec in zip(others, found):
            if rec is None:
                self._versions.refused_missing(part)
        return [refused, *(p for p, rec in zip(others, found) if rec is None)]

    def flush(self) -> int:
        """Write-behind: replay every queued batch into PostgreSQL now; how many this call replayed
        (0 if the process holding the flusher lease replayed them). UnavailableError if that process
        replayed nothing for twice the lease (it may be stuck)."""
        if not self.behind:
            return 0
        done = self.maintenance.catch_up()
        if done is None:
            raise self._stalled("flushing the queue")
        return done

    # -- housekeeping --------------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        """PostgreSQL's expired rows (after the queue reached it: a queued write may expire or renew
        one), then Redis' (Redis drops expired keys itself; this clears what it has not yet)."""
        done = self._listing(lambda: self.cold.purge_expired(limit=limit))
        return done + (self.hot.purge_expired(limit=limit - done) if done < limit else 0)

    def integrity_check(self) -> list[str]:
        """Write-behind: Redis' queue diverged from what PostgreSQL replayed (a failover to a replica
        behind it) — whether the next flush reconciles it, or flushing stopped (``statekeel doctor``)."""
        return problems(self.hot, self.cold)

    def rewrite_log(self) -> None:
        """Redis's AOF rewritten from its current data (erasure: the destroyed keys were cached there)."""
        if isinstance(self.hot, SupportsLogRewrite):
            self.hot.rewrite_log()

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        """Both tiers' migrations; the version is the sum of theirs."""
        cold, hot = self.cold.migrate(check=check), self.hot.migrate(check=check)
        return MigrationStatus(cold.current + hot.current, cold.target + hot.target, [*cold.pending, *hot.pending])

    def close(self) -> None:
        """Stop the maintenance thread, flush what is queued (best effort), close both tiers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.maintenance.stop()
        self.hydrator.stop()
        try:
            self.maintenance.flag_missed()
        except StatekeelError as exc:  # as a process killed before updating Redis: stale until the next write or eviction
            log.warning("statekeel tiered: closing without flagging Redis' cache stale (%s)", exc)
        try:
            if self.behind:
                self.maintenance.flush()
        except (UnavailableError, CorruptionError) as exc:  # a CorruptionError was logged as an error already
            log.warning("statekeel tiered: closing with batches still queued in Redis (%s)", exc)
        finally:
            self.hot.close()
            self.cold.close()
            self.hot = self.cold = closed(self.url)  # every later call: StoreClosedError naming this store


def _rest(s: Settings) -> tuple[Mode, int, float, float, OnHotFailure, float]:
    return s.mode, s.flush_every, s.flush_interval, s.hot_ttl, s.on_hot_failure, s.lease


def _visible(
    fn: Callable[..., list[_T]], prefix: str, after: str | None, limit: int, key: Callable[[_T], str]
) -> list[_T]:
    """A page of ``fn`` without the tiered backend's own keys (fetching on past them)."""
    out: list[_T] = []
    while len(out) < limit:
        want = limit - len(out)
        page = fn(prefix, after=after, limit=want)
        out += [x for x in page if not is_reserved(key(x))]
        if len(page) < want:
            break
        after = key(page[-1])
    return out
