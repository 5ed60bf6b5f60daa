"""The write-behind flusher: replays the Redis queue into PostgreSQL, once, in order.

Exactly once: each replayed batch commits in PostgreSQL together with the
watermark record (:data:`.names.WATERMARK`: the queue's epoch and the batch's
queue seq), written with compare-and-set on the watermark's version. A batch
replayed after a crash finds the watermark already past it and is skipped; two
flushers racing (a paused one whose lease ran out) cannot both commit the same
batch — the loser's watermark write conflicts and it stops.

One flusher at a time: a lease record in Redis (:data:`.names.LEASE`, a put
with ``expect=None`` and an expiry), renewed while flushing. A process that
dies holding it blocks flushing for at most the lease's length; then any
process takes over where the watermark says.

The queue's epoch is its log's ``created_at``: if Redis lost everything (a
restart without its AOF, FLUSHALL), the queue starts again with a new epoch and
is replayed from its start, not skipped.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from ...errors import ConflictError
from ...protocol import Append, Backend, Delete, Entry, Op, Put, Record, Trim
from . import batches
from .names import DEAD, LEASE, QUEUE, WATERMARK

log = logging.getLogger("statekeel.tiered")

READ_PAGE = 200


class LeaseHeld(Exception):
    """Another flusher holds the lease (or took it over): stop flushing."""


class Lease:
    """The flusher lease in Redis, held by this object while ``version`` is set."""

    def __init__(self, hot: Backend, seconds: float) -> None:
        self.hot = hot
        self.seconds = seconds
        self.token = secrets.token_hex(8).encode()
        self.version: int | None = None
        self.until = 0.0

    def acquire(self) -> bool:
        try:
            self._put(expect=None)
        except ConflictError:
            return False
        return True

    def renew(self) -> None:
        """Extend the lease if half of it has passed; :class:`LeaseHeld` if it was lost."""
        if time.time() < self.until - self.seconds / 2:
            return
        try:
            self._put(expect=self.version)
        except ConflictError:
            self.version = None
            raise LeaseHeld() from None

    def release(self) -> None:
        if self.version is not None:
            try:
                self.hot.apply([Delete(LEASE, expect=self.version)])
            except ConflictError:
                pass  # it expired and someone else holds it: nothing of ours to release
            self.version = None

    def _put(self, expect: int | None) -> None:
        now = time.time()
        (rec,) = self.hot.apply([Put(LEASE, self.token, "raw", expect=expect, expires_at=now + self.seconds)], now=now)
        assert isinstance(rec, Record)
        self.version, self.until = rec.version, now + self.seconds


def flush_queue(hot: Backend, cold: Backend, lease: Lease) -> tuple[int, int]:
    """Replay every queued batch into ``cold`` (the caller holds ``lease``).

    Returns (batches replayed, the queue seq PostgreSQL now holds everything up to).
    The last replayed entry stays in the queue, so the queue keeps its epoch and its
    numbering (an empty log reports no bounds); the watermark skips it next time.
    """
    info = hot.log_info(QUEUE)
    if info is None:
        return 0, 0
    mark = _Watermark(cold, info.created_at)
    done = 0
    start = max(mark.seq + 1, info.first_seq)
    if start - 1 > info.first_seq:  # replayed before a crash, not trimmed yet
        hot.apply([Trim(QUEUE, before=start - 1)])
    while entries := hot.read(QUEUE, start=start, limit=READ_PAGE):
        for entry in entries:
            _replay(hot, cold, mark, entry)
            done += 1
        start = entries[-1].seq + 1
        lease.renew()
        hot.apply([Trim(QUEUE, before=start - 1)])
    return done, mark.seq


class _Watermark:
    """The last queue seq PostgreSQL committed, for the queue of one epoch."""

    def __init__(self, cold: Backend, epoch: float) -> None:
        self.cold = cold
        self.epoch = epoch
        rec = cold.get(WATERMARK)
        self.version = rec.version if rec is not None else None
        doc = json.loads(rec.data) if rec is not None else {}
        self.seq = int(doc.get("seq", 0)) if doc.get("epoch") == repr(epoch) else 0

    def op(self, seq: int) -> Put:
        data = json.dumps({"epoch": repr(self.epoch), "seq": seq}).encode()
        return Put(WATERMARK, data, "json", expect=self.version)

    def advanced(self, seq: int, rec: object) -> None:
        assert isinstance(rec, Record)
        self.seq, self.version = seq, rec.version


def _replay(hot: Backend, cold: Backend, mark: _Watermark, entry: Entry) -> None:
    ops, now = batches.decode(entry.data, f"{QUEUE}#{entry.seq}", entry.codec)
    try:
        results = cold.apply([*ops, mark.op(entry.seq)], now=now)
    except ConflictError as exc:
        if exc.key == WATERMARK:
            raise LeaseHeld() from None  # another flusher committed it: it owns the queue now
        _dead_letter(hot, entry, exc)
        results = cold.apply([mark.op(entry.seq)], now=now)
    mark.advanced(entry.seq, results[-1])


def _dead_letter(hot: Backend, entry: Entry, exc: ConflictError) -> None:
    """Keep a batch PostgreSQL refused (the tiers diverged) in Redis, logged, instead of dropping it."""
    log.error(
        "statekeel tiered: PostgreSQL refused queued batch %s on replay (%s); it is kept in Redis under %r "
        "for inspection and the flusher goes on", entry.seq, exc, DEAD,
    )  # fmt: skip
    hot.apply([Append(DEAD, ((entry.data, entry.codec),))])


def noop_batch() -> bytes:
    """A queue entry with no ops: replaying it only moves the watermark."""
    ops: list[Op] = []
    return batches.encode(ops, time.time())
