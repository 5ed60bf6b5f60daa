"""How a batch is written in each mode (the tiers' order, the hot tier's preconditions).

Write-through: PostgreSQL first (the authority: its compare-and-set, versions
and seqs decide), then Redis gets the same ops made exact — each put expects
the version before PostgreSQL's, each append is pinned with ``at=`` to the seq
PostgreSQL gave — so a Redis copy that fell out of step refuses the update and
is dropped instead of drifting. Partitions Redis does not cache get their fence
bumped (see :mod:`.hydrate`).

Write-behind: Redis only, in ONE batch: the ops, a check that each partition
is cached (its marker exists), and the encoded batch appended to the queue — so
the data and its queue entry are accepted together and in Redis' order. The check
is one ``Put(marker, expect=V)`` per partition (:class:`MarkerVersions`): it fails
unless the marker exists at the version this handle last saw, counts the
partition's writes and stamps its ``updated_at`` (idle eviction reads it; eviction
deletes the marker at the version it read, so a write that lands meanwhile stops
it). A marker that moved (another writer of the partition) costs one retry with
the version the conflict reports; a missing one means hydrate, then retry. On Redis
this is two field writes, where a delete-and-recreate of the marker also rewrote
its partition's indexes (a quarter of a turn).

Write-through checks with :class:`Markers` — ``Delete(expect=1)`` then
``Put(expect=None)``, leaving the marker at version 1, so concurrent writers
never conflict on it.

Write-through writes hold their partitions' PostgreSQL advisory locks (shared) until they
commit, and a copy into Redis holds its partition's lock exclusively from reading PostgreSQL
to installing the copy (:mod:`.hydrate`). So a copy never misses a write that committed before
it was installed: such a write either committed before the copy read PostgreSQL, or waited
for the copy to be installed and then finds the partition cached. (Without the lock a copy
that read PostgreSQL just before a commit could be installed just after it, before the
writer's Redis update — and a reader that had seen the write in PostgreSQL would read the
older copy next.) A write that finds its only partition not cached therefore has nothing to
do in Redis: whenever it is copied in, the copy holds the write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ...errors import ConflictError
from ...protocol import ANY, Append, Backend, Delete, Expire, Op, OpResult, Put, Record, Touch, Trim, op_target
from ...protocol import keys
from . import batches
from .hydrate import MARKER_CODEC, drop
from .names import MARKERS, QUEUE, fence, marker, partition_of_marker, prefix_partition


def partitions(ops: Sequence[Op]) -> list[str]:
    """The partitions ``ops`` write, each once, in first-seen order (cross-partition Expires excluded)."""
    seen: dict[str, None] = {}
    for op in ops:
        part = prefix_partition(op.prefix) if isinstance(op, Expire) else keys.partition(op_target(op))
        if part is not None:
            seen.setdefault(part)
    return list(seen)


def removes_entries(ops: Sequence[Op], now: float) -> bool:
    """Whether ``ops`` remove log entries now: a Trim, or an Expire or Touch ending what it reaches.
    Write-behind replays what was queued before such a batch first, while Redis still holds the
    entries its queue entries name (:mod:`.refs`); an expiry in the future (a TTL renewed) does not."""
    for op in ops:
        if type(op) is Trim:
            return True
        if type(op) is Expire or type(op) is Touch:
            when = op.expires_at
            if type(when) is float or type(when) is int:
                if when <= now:
                    return True
    return False


def spans_partitions(op: Op) -> bool:
    """An ``Expire`` of a prefix shorter than one partition (no feature writes one): it names no
    partition, so write-behind writes its batch through, and write-through holds
    :data:`.names.SPANNING` exclusively for it instead of partition locks."""
    return isinstance(op, Expire) and prefix_partition(op.prefix) is None


def behind_partitions(ops: Sequence[Op], memo: dict[str, str]) -> list[str] | None:
    """:func:`partitions` of a write-behind batch, or None if an Expire covers a prefix shorter
    than one partition (the batch is then written through) — in one pass, ``memo`` keeping
    key -> partition across batches (a writer names the same few keys batch after batch; it is
    emptied past :data:`MarkerVersions.LIMIT` entries)."""
    seen: dict[str, None] = {}
    for op in ops:
        part: str | None
        if isinstance(op, Expire):
            if spans_partitions(op):
                return None
            part = keys.partition(op.prefix)
        else:
            target = op_target(op)
            part = memo.get(target)
            if part is None:
                if len(memo) > MarkerVersions.LIMIT:
                    memo.clear()
                part = memo[target] = keys.partition(target)
        seen[part] = None
    return list(seen)


class Markers:
    """The ops that make a batch require its partitions to be cached in Redis."""

    @staticmethod
    def check(parts: Sequence[str]) -> list[Op]:
        """Two ops per partition: fail unless its marker exists; leave it at version 1, stamped now."""
        ops: list[Op] = []
        for part in parts:
            ops += [Delete(marker(part), expect=1), Put(marker(part), b"", MARKER_CODEC, expect=None)]
        return ops

    @staticmethod
    def missing(exc: ConflictError) -> str:
        """The partition a conflict on a marker says is not cached; other conflicts are re-raised."""
        if not exc.key.startswith(MARKERS):
            raise exc
        return partition_of_marker(exc.key)


def bump_fences(parts: Sequence[str]) -> list[Op]:
    return [Put(fence(part), b"", MARKER_CODEC, expect=ANY) for part in parts]


def pinned(ops: Sequence[Op], results: Sequence[OpResult]) -> list[Op]:
    """``ops`` with the preconditions PostgreSQL's results imply, for replaying them on Redis."""
    out: list[Op] = []
    for op, res in zip(ops, results):
        if isinstance(op, Put) and isinstance(res, Record):
            op = replace(op, expect=res.version - 1 if res.version > 1 else None)
        elif isinstance(op, Append) and isinstance(res, int) and not isinstance(res, bool):
            op = replace(op, at=res)
        out.append(op)
    return out


class MarkerVersions:
    """This handle's guess of each cached partition's marker version (write-behind checks)."""

    LIMIT = 10_000
    """Guesses kept; past it they are forgotten (a wrong guess costs one retry)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._names: dict[str, str] = {}
        """Partition -> its marker's key (escaping the partition again costs more than the rest of a check)."""

    def check(self, parts: Sequence[str]) -> list[Op]:
        """One op per partition: fail unless its marker is at the guessed version; count the write."""
        return [Put(self._marker(p), b"", MARKER_CODEC, expect=self._seen.get(p, 1)) for p in parts]

    def _marker(self, part: str) -> str:
        name = self._names.get(part)
        if name is None:
            if len(self._names) > self.LIMIT:
                self._names.clear()
            name = self._names[part] = marker(part)
        return name

    def learn(self, parts: Sequence[str], results: Sequence[OpResult]) -> None:
        """Remember the versions the batch's checks left (results of :meth:`check`'s ops, in order)."""
        if len(self._seen) > self.LIMIT:
            self._seen.clear()
        for part, rec in zip(parts, results):
            if isinstance(rec, Record):
                self._seen[part] = rec.version

    def fence(self, hot: Backend, parts: Sequence[str]) -> bool:
        """Read the markers of ``parts`` now and check against exactly those versions from now on (a
        write to one of them since moves its marker: the check refuses). False if one is not cached."""
        found = hot.get_many([self._marker(p) for p in parts])
        if any(rec is None for rec in found):
            return False
        for part, rec in zip(parts, found):
            assert rec is not None
            self._seen[part] = rec.version
        return True

    def refused_missing(self, part: str) -> None:
        """``part`` is not cached: hydration starts its marker again at version 1."""
        self._seen.pop(part, None)

    def refused(self, exc: ConflictError) -> str | None:
        """After a batch failed on ``exc``: the partition to hydrate (its marker is missing), or
        None when a marker only moved on (the guess is corrected: retry). Re-raises other conflicts."""
        part = Markers.missing(exc)
        if exc.actual is None:
            self.refused_missing(part)
            return part
        self._seen[part] = exc.actual
        return None


class NextSeqs:
    """This handle's guess of the seq each log it appends to gives next: write-behind pins every
    Append in Redis (``at=``), so its queue entry can name the entries instead of holding a second
    copy (:class:`.batches.AppendRef`; the queued Append keeps the caller's ``at``). A wrong guess
    (another writer appended, the log expired) is refused by Redis like a moved marker: the batch is
    retried at the seq Redis reported."""

    def __init__(self, hot: Backend) -> None:
        self._hot = hot
        self._next: dict[str, int] = {}

    def pin(self, ops: Sequence[Op], guess: bool = True) -> tuple[list[Op], set[str], list[int | None]]:
        """``ops`` with each Append that has items and no ``at`` pinned at the guessed seq (``guess``;
        not for a log the caller pins itself in this batch: a conflict on it is then the caller's);
        the logs so pinned; and where each op's items go in Redis, where known (None: queued inline)."""
        given = {op.log for op in ops if type(op) is Append and op.at is not None}
        # logs with an Append left unpinned: all of their Appends are queued inline
        unknown = {op.log for op in ops if type(op) is Append and op.at is None and op.items
                   and (not guess or op.log in given)}  # fmt: skip
        out, mine = list(ops), set()
        seqs = [op.at if type(op) is Append and op.log not in unknown else None for op in ops]
        for i, op in enumerate(ops):
            if type(op) is not Append or op.at is not None or not op.items or op.log in unknown:
                continue
            at = self._next.get(op.log)
            if at is None:
                if len(self._next) > MarkerVersions.LIMIT:
                    self._next.clear()
                info = self._hot.log_info(op.log)
                at = 1 if info is None else info.last_seq + 1
            out[i], seqs[i] = Append(op.log, op.items, op.expires_at, at), at
            self._next[op.log] = at + len(op.items)  # a second Append of the log in the batch follows it
            mine.add(op.log)
        return out, mine, seqs

    def learn(self, ops: Sequence[Op], results: Sequence[OpResult]) -> None:
        """After the batch was accepted: where each log it appended to goes on."""
        for op, first in zip(ops, results):
            if type(op) is Append and op.items and type(first) is int:
                self._next[op.log] = first + len(op.items)

    def refused(self, exc: ConflictError, mine: set[str]) -> bool:
        """Whether ``exc`` refused one of the Appends this handle pinned (forgotten: retry)."""
        for log in mine:
            self._next.pop(log, None)  # every guess of the refused batch is in doubt
        if exc.key not in mine:
            return False
        if isinstance(exc.actual, int):  # the log's last seq, as Redis numbers it (an emptied log may look absent)
            self._next[exc.key] = exc.actual + 1
        return True


def behind_batch(ops: Sequence[Op], pinned: Sequence[Op], seqs: Sequence[int | None], parts: Sequence[str],
                 seen: MarkerVersions, now: float) -> list[Op]:  # fmt: skip
    """The one Redis batch of a write-behind write: checks (one per partition), the ops as ``pinned``,
    and the queue entry of ``ops`` (Appends by reference to their items in this very batch, from ``seqs``)."""
    entry = batches.encode(ops, now, seqs=seqs)
    return [*seen.check(parts), *pinned, Append(QUEUE, ((entry, batches.REF_CODEC),))]


def through_hot(hot: Backend, ops: Sequence[Op], parts: list[str], results: Sequence[OpResult], now: float) -> None:
    """Bring Redis in step after PostgreSQL committed ``ops`` (their :func:`partitions`: ``parts``; see
    the module docstring): one batch when the partitions are cached, or when the only one is not."""
    exact = pinned(ops, results)
    cached = parts
    try:
        for _ in range(4):
            if _update(hot, parts, cached, exact, now):
                return
            if len(parts) == 1:
                return  # not cached: a copy made from now on holds this write
            found = hot.get_many([marker(p) for p in parts])
            cached = [p for p, rec in zip(parts, found) if rec is not None]
    except ConflictError:
        pass  # Redis' copy was out of step (or already held this write: copied in after the commit)
    drop(hot, parts, now)  # read it again from PostgreSQL


def _update(hot: Backend, parts: list[str], cached: list[str], exact: list[Op], now: float) -> bool:
    """Update the partitions ``cached`` in Redis; fence the others as long as they are still not
    cached (``Delete(expect=None)``: a copy installed meanwhile fails this, and the caller tries
    again, so that copy gets this write too). False if a marker was not as ``cached`` says;
    raises ConflictError if a pinned op was refused (Redis is out of step)."""
    absent = [p for p in parts if p not in cached]
    mine = [op for op in exact if not partitions([op]) or partitions([op])[0] in cached] if absent else exact
    still_absent: list[Op] = [Delete(marker(p), expect=None) for p in absent]
    try:
        hot.apply([*Markers.check(cached), *still_absent, *bump_fences(absent), *mine], now=now)
    except ConflictError as exc:
        Markers.missing(exc)  # re-raises a conflict of the pinned ops
        return False
    return True
