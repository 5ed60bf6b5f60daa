"""The write-behind flusher: replays the Redis queue into PostgreSQL, once, in order.

Exactly once: each replayed batch commits in PostgreSQL together with the
watermark record (:data:`.names.WATERMARK`: the queue's epoch, the batch's
queue seq and its identity — :mod:`.watermark`), written with compare-and-set on
the watermark's version. A batch
replayed after a crash finds the watermark already past it and is skipped; two
flushers racing (a paused one whose lease ran out) cannot both commit the same
batch — the loser's watermark write conflicts and it stops. The watermark is
written FIRST in the transaction: the loser's conflict is then on the watermark,
not on one of the batch's own compare-and-sets (which the winner's replay also
moved on), so it stops instead of taking the batch for a refused one.

One flusher at a time: a lease record in Redis (:data:`.names.LEASE`, a put
with ``expect=None`` and an expiry), renewed while flushing. A process that
dies holding it blocks flushing for at most the lease's length; then any
process takes over where the watermark says.

The queue's epoch is its log's ``created_at``: if Redis lost everything (a
restart without its AOF, FLUSHALL), the queue starts again with a new epoch and
is replayed from its start, not skipped. The flusher reads the epoch once, so it
must know that every page it reads and every trim it makes is of that queue: the
lease is created at a random version, and a wipe takes it with the queue. Each page
read is followed by a renewal (compare-and-set on that version), and each trim is
in the same Redis batch as one: after a wipe either fails, and the flusher stops
(:class:`LeaseHeld`) before replaying a batch of the new queue under the old
epoch's watermark or trimming the new queue's unreplayed batches. What it
committed before is of the old queue, and the watermark's own compare-and-set in
PostgreSQL stops it committing over a flusher of the new one.

Grouped: a cold tier with :class:`AppliesBatches` (PostgreSQL) gets a group of
queued batches — at most a page, :data:`GROUP_BYTES` of entries and
:data:`GROUP_OPS` ops — in ONE transaction, each batch with its own clock, the
watermark put first: one commit and one round trip for the group instead of one
per batch. If PostgreSQL refuses a batch of the group (the tiers diverged), the
whole group rolled back and is replayed again one batch per transaction, so only
the refused batch goes to the dead letters.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from ...errors import ConflictError, CorruptionError
from ...protocol import Append, Backend, Delete, Entry, Load, LogInfo, Op, OpResult, Put, Record, Trim
from . import batches, divergence
from .names import DEAD, LEASE, QUEUE, WATERMARK
from .refs import resolve
from .watermark import Watermark as _Watermark
from .watermark import watermark

__all__ = ["AppliesBatches", "Flushed", "Lease", "LeaseHeld", "flush_queue", "noop_batch", "watermark"]

log = logging.getLogger("statekeel.tiered")

READ_PAGE = 200
"""Queue entries read at a time (the queue is trimmed after each page)."""
GROUP_BYTES = 1 << 20
"""A group of batches replayed in one transaction stops growing past this many bytes of queue entries ..."""
GROUP_OPS = 2_000
"""... or this many ops (a batch larger than either is a group of its own): a transaction that stays
short — its locks, the pipeline's memory on both sides, and the work redone if a batch is refused."""


@runtime_checkable
class AppliesBatches(Protocol):
    """A cold tier that applies several batches, each with its own clock, in one transaction."""

    def apply_batches(self, batches: Sequence[tuple[Sequence[Op], float]]) -> list[list[OpResult]]:
        """See :meth:`statekeel.backends.postgres.PostgresBackend.apply_batches`."""


class LeaseHeld(Exception):
    """Another flusher holds the lease (or took it over): stop flushing."""


class Lease:
    """The flusher lease in Redis, held by this object while ``version`` is set.

    Taken at a random version (not 1), so a lease this object did not take — another
    process's, after a Redis wipe took this one — never matches its compare-and-set."""

    def __init__(self, hot: Backend, seconds: float) -> None:
        self.hot = hot
        self.seconds = seconds
        self.token = secrets.token_hex(8).encode()
        self.version: int | None = None
        self.until = 0.0

    def acquire(self) -> bool:
        now = time.time()
        version = secrets.randbelow(1 << 46) + 2  # under 10**14: Lua writes larger numbers in e-notation
        taken = Record(LEASE, self.token, "raw", version, now, now, now + self.seconds)
        try:  # only if nobody holds it; then at the random version
            self.hot.apply([Put(LEASE, self.token, "raw", expect=None), Load(taken)], now=now)
        except ConflictError:
            return False
        self.version, self.until = version, now + self.seconds
        return True

    def renew(self) -> None:
        """Extend the lease if half of it has passed; :class:`LeaseHeld` if it was lost."""
        if time.time() >= self.until - self.seconds / 2:
            self.hold()

    def hold(self) -> None:
        """Extend the lease now; :class:`LeaseHeld` if it was lost (taken over, or wiped with the queue)."""
        self.guarded([])

    def guarded(self, ops: Sequence[Op], now: float | None = None) -> list[OpResult]:
        """``ops`` in one Redis batch with a renewal of the lease; :class:`LeaseHeld` (nothing
        written) if this object does not hold it any more."""
        now = time.time() if now is None else now
        try:
            results = self.hot.apply(
                [Put(LEASE, self.token, "raw", expect=self.version, expires_at=now + self.seconds), *ops], now=now
            )
        except ConflictError as exc:
            if exc.key != LEASE:
                raise
            self.version = None
            raise LeaseHeld() from None
        assert isinstance(results[0], Record)
        self.version, self.until = results[0].version, now + self.seconds
        return results[1:]

    def release(self) -> None:
        if self.version is not None:
            try:
                self.hot.apply([Delete(LEASE, expect=self.version)])
            except ConflictError:
                pass  # it expired and someone else holds it: nothing of ours to release
            self.version = None


class Flushed(NamedTuple):
    """What :func:`flush_queue` did."""

    replayed: int
    """Batches replayed."""
    seq: int
    """The queue seq PostgreSQL now holds everything up to."""
    reconciled: bool
    """The queue had diverged from what PostgreSQL replayed (:mod:`.divergence`): Redis' cache is
    flagged dirty and must be dropped once the queue is replayed."""


def flush_queue(hot: Backend, cold: Backend, lease: Lease, *, follow: bool = False) -> Flushed:
    """Replay the batches queued when it starts into ``cold`` (the caller holds ``lease``);
    ``follow``: also those queued meanwhile, until the queue is empty.

    The last replayed entry stays in the queue, so the queue keeps its epoch and its
    numbering (an empty log reports no bounds); the watermark skips it next time, and names it:
    the first page is read from it, and a different entry there (or the queue ending below it)
    means Redis' queue diverged — reconciled first (:mod:`.divergence`), never skipped.

    Not following is what keeps a busy queue's flushes in pages: a flusher that chased the
    writers read, replayed and trimmed a few batches at a time — a Redis write (an fsync under
    ``appendfsync always``) and a PostgreSQL commit every few turns, competing with the turns.
    """
    info = hot.log_info(QUEUE)
    if info is None:
        return Flushed(0, 0, False)
    mark = _Watermark(cold, info.created_at)
    reconciled = divergence.diverged(hot, mark, info) and _reconcile(hot, cold, mark, info, lease)
    done = 0
    start = max(mark.seq + 1, info.first_seq)
    check = mark.id is not None and info.first_seq <= mark.seq < info.last_seq  # read with the first page
    if start - 1 > info.first_seq and not check:  # replayed before a crash, not trimmed yet
        lease.guarded([Trim(QUEUE, before=start - 1)])
    grouped = isinstance(cold, AppliesBatches)
    end = None if follow else info.last_seq
    while end is None or start <= end:
        limit = READ_PAGE if end is None else min(READ_PAGE, end - start + 1)
        entries = hot.read(QUEUE, start=start - check, limit=limit + check)
        if check:
            check = False
            lease.hold()  # as below: a wipe since the queue was read would look like a diverged queue
            if not entries or not mark.matches(entries[0]):
                reconciled = _reconcile(hot, cold, mark, info, lease)
                start = mark.seq + 1
                continue
            entries = entries[1:]
        if not entries:
            break
        lease.hold()  # the lease survived the read, so Redis was not wiped: these are the epoch's entries
        for group in _groups(hot, entries, grouped):
            _replay_group(hot, cold, mark, group)
            done += len(group)
            lease.renew()
        start = entries[-1].seq + 1
        lease.guarded([Trim(QUEUE, before=start - 1)])
    return Flushed(done, mark.seq, reconciled)


def _reconcile(hot: Backend, cold: Backend, mark: _Watermark, info: LogInfo, lease: Lease) -> bool:
    """Redis' queue diverged: the watermark back to where it agrees with PostgreSQL (under the lease)."""
    try:
        divergence.reconcile(hot, cold, mark, info, lease.hold)
    except ConflictError as exc:
        if exc.key == WATERMARK:
            raise LeaseHeld() from None  # another flusher moved it: it owns the queue now
        raise
    return True


@dataclass(frozen=True, slots=True)
class _Queued:
    """A queue entry and the batch it holds."""

    entry: Entry
    """The entry in the Redis queue (its seq is what the watermark counts)."""
    ops: list[Op]
    """The batch's ops."""
    now: float
    """The batch's clock: the time Redis wrote it, which PostgreSQL stores too."""


def _groups(hot: Backend, entries: Sequence[Entry], grouped: bool) -> Iterator[list[_Queued]]:
    """``entries`` decoded (Appends by reference read back from ``hot``: :mod:`.refs`), in groups
    replayed one transaction each (one batch each unless ``grouped``).

    An entry that cannot be decoded or resolved ends the replay there (as it did one batch at a
    time): the groups before it are still replayed, then its :class:`CorruptionError` is raised.
    """
    decoded: list[tuple[Sequence[batches.Queued], float, str]] = []
    error: CorruptionError | None = None
    for entry in entries:
        where = f"{QUEUE}#{entry.seq}"
        try:
            queued, now = batches.decode(entry.data, where, entry.codec)
        except CorruptionError as exc:
            error = exc
            break
        decoded.append((queued, now, where))
    resolved, unresolved = resolve(hot, decoded)
    error = unresolved or error
    group: list[_Queued] = []
    size = count = 0
    for entry, ops, (_, now, _) in zip(entries, resolved, decoded):
        if group and (not grouped or size + len(entry.data) > GROUP_BYTES or count + len(ops) > GROUP_OPS):
            yield group
            group, size, count = [], 0, 0
        group.append(_Queued(entry, ops, now))
        size, count = size + len(entry.data), count + len(ops)
    if group:
        yield group
    if error is not None:
        raise error


def _replay_group(hot: Backend, cold: Backend, mark: _Watermark, group: list[_Queued]) -> None:
    """Replay ``group`` in one transaction, the watermark moved to its last entry in it;
    one batch per transaction if PostgreSQL refuses one of them."""
    if len(group) == 1 or not isinstance(cold, AppliesBatches):
        for queued in group:
            _replay(hot, cold, mark, queued.entry, (queued.ops, queued.now))
        return
    last = group[-1]
    try:
        results = cold.apply_batches([(mark.ops([q.entry for q in group]), last.now), *((q.ops, q.now) for q in group)])
    except ConflictError as exc:
        if exc.key == WATERMARK:
            raise LeaseHeld() from None  # another flusher committed it: it owns the queue now
        for queued in group:  # nothing of the group was written: find the refused batch alone
            _replay(hot, cold, mark, queued.entry, (queued.ops, queued.now))
        return
    mark.advanced(last.entry, results[0][0])


def _replay(
    hot: Backend, cold: Backend, mark: _Watermark, entry: Entry, decoded: tuple[list[Op], float] | None = None
) -> None:
    """Replay one queued batch in its own transaction; a batch PostgreSQL refuses goes to the dead letters."""
    if decoded is None:
        queued = next(_groups(hot, [entry], False))[0]
        decoded = queued.ops, queued.now
    ops, now = decoded
    try:
        results = cold.apply([*mark.ops([entry]), *ops], now=now)
    except ConflictError as exc:
        if exc.key == WATERMARK:
            raise LeaseHeld() from None  # another flusher committed it: it owns the queue now
        _dead_letter(hot, entry, ops, now, exc)
        results = cold.apply(mark.ops([entry]), now=now)
    mark.advanced(entry, results[0])


def _dead_letter(hot: Backend, entry: Entry, ops: list[Op], now: float, exc: ConflictError) -> None:
    """Keep a batch PostgreSQL refused (the tiers diverged) in Redis, logged, instead of dropping it —
    whole (its Appends by reference read back), as the entries it named may be trimmed later."""
    log.error(
        "statekeel tiered: PostgreSQL refused queued batch %s on replay (%s); it is kept in Redis under %r "
        "for inspection and the flusher goes on", entry.seq, exc, DEAD,
    )  # fmt: skip
    hot.apply([Append(DEAD, ((batches.encode(ops, now), batches.CODEC),))])


def noop_batch() -> bytes:
    """A queue entry with no ops: replaying it only moves the watermark."""
    ops: list[Op] = []
    return batches.encode(ops, time.time())
