"""Redis' write-behind queue is no longer the one PostgreSQL replayed: detect it, reconcile or stop.

A failover to a replica that had not received the last writes, or Redis restored from an older
copy, keeps the queue's epoch (its log's ``created_at``) but takes its numbering back: batches
written after it get seqs the watermark already passed. Skipping them as replayed would lose
acknowledged writes silently; and Redis' cached partitions lack batches PostgreSQL has.

Detection costs nothing per write and nothing more per flush than one entry's bytes: the
watermark names the entry it replayed last (:func:`.watermark.identity`), which stays in the
queue, and the flush reads it with its first page. The queue ending below the watermark, or a
different entry at its seq, is a divergence. An idle queue (nothing after the watermark) is
checked by its ``updated_at`` — the ``created_at`` of its last entry, which the watermark
records — and read only if that differs.

A copy taken before Redis lost its data brings back a queue of an epoch the watermark had left
(:attr:`.watermark.Watermark.returned`): it is reconciled the same way — resumed after what
PostgreSQL replayed of it, its cache (older than PostgreSQL's data) dropped — instead of being
replayed from its start a second time.

Reconciliation: PostgreSQL's ring of replayed identities (:data:`.watermark.SLOTS` replay
transactions) is compared with Redis' queue, entry by entry; the last seq where both name the
same batch is where they agree (every batch before it is then the same too: a replica or an
older copy holds a prefix of the queue). One transaction moves the watermark back to it, flags
Redis' cache dirty (it is dropped right after the flush) and drops the ring's identities beyond
it; the flush then replays Redis' batches after it — acknowledged, never replayed — planned
against Redis' older state, so one PostgreSQL refuses goes to the dead letters. If the ring
does not reach back to where they agree, nothing is guessed: :class:`CorruptionError`, the
queue is kept, and ``statekeel doctor`` reports it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...errors import CorruptionError
from ...protocol import Backend, Delete, Entry, LogInfo, Op, Put
from .names import DEAD, DIRTY, QUEUE, WATERMARK
from .watermark import ID_LEN, Watermark, identity, marked, slots, split

log = logging.getLogger("statekeel.tiered")

_PAGE = 200
_CAUSE = "Redis failed over to a replica that lacked the last writes, or was restored from an older copy"


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a diverged queue still agrees with PostgreSQL, and what reconciling it changes."""

    agreed: Entry
    """The last entry of Redis' queue PostgreSQL replayed too: the watermark goes back to it."""
    lacking: int
    """Batches PostgreSQL replayed after it that Redis' queue does not hold (Redis' cache lacks them)."""
    new: int
    """Batches in Redis' queue after it that PostgreSQL lacks (acknowledged: they are replayed)."""
    ring: list[Op]
    """The ring's slots cut back to it (they named the batches of the timeline Redis lost)."""


def diverged(hot: Backend, mark: Watermark, info: LogInfo) -> bool:
    """Before a flush reads anything: the queue is of an epoch the watermark had left (a copy from
    before a wipe, :attr:`Watermark.returned`), ends below the watermark, or ends at it with
    another entry there (read only if the queue's ``updated_at`` is not the watermark's entry's).
    A queue going on after the watermark is checked by the flush's first page (:meth:`Watermark.matches`)."""
    if mark.returned or info.last_seq < mark.seq:
        return True
    if mark.id is None or info.last_seq != mark.seq or info.updated_at == mark.at:
        return False
    return _other_entry(hot, mark)


def plan(hot: Backend, cold: Backend, mark: Watermark, info: LogInfo) -> Plan:
    """Where Redis' queue and PostgreSQL agree; :class:`CorruptionError` if the ring cannot tell."""
    epoch = repr(mark.epoch)
    ring = list(slots(cold, epoch))
    ids = {seq: ident for _, first, joined in ring for seq, ident in split(first, joined) if seq <= mark.seq}
    if mark.id is not None:
        ids[mark.seq] = mark.id
    top = min(info.last_seq, mark.seq)
    agreed = None
    for entry in _entries(hot, max(info.first_seq, min(ids, default=top + 1)), top):
        if ids.get(entry.seq) == identity(entry):
            agreed = entry
    if agreed is None or any(seq not in ids for seq in range(agreed.seq + 1, top + 1)):
        raise _undetermined(mark, info, ids)
    cut: list[Op] = []
    for key, first, joined in ring:
        kept = joined[: max(0, agreed.seq + 1 - first) * ID_LEN]
        if kept != joined:
            doc = json.dumps({"epoch": epoch, "first": first, "ids": kept}).encode()
            cut.append(Put(key, doc, "json") if kept else Delete(key))
    return Plan(agreed, mark.seq - agreed.seq, info.last_seq - agreed.seq, cut)


def reconcile(
    hot: Backend, cold: Backend, mark: Watermark, info: LogInfo, held: Callable[[], None] = lambda: None
) -> Plan:
    """Move the watermark back to where Redis' queue and PostgreSQL agree, flag Redis' cache dirty,
    cut the ring back — one transaction — and say so loudly (``held``: called between reading and
    writing; the flusher renews its lease there). ConflictError on the watermark if another
    flusher moved it meanwhile; :class:`CorruptionError` (logged) if the point cannot be told."""
    try:
        found = plan(hot, cold, mark, info)
    except CorruptionError as exc:
        held()  # a Redis wipe while the queue was read is not a divergence: the lease went with it
        log.error("%s", exc)
        raise
    held()  # the flusher's lease renewed: Redis was not wiped while the queue was read
    results = cold.apply([mark.moved_back(found.agreed), Put(DIRTY, b"true", "json"), *found.ring])
    mark.advanced(found.agreed, results[0], turn=mark.turn)
    log.error(
        "statekeel tiered (write-behind): Redis' queue diverged from what PostgreSQL replayed (%s). They agree "
        "up to queue seq %d; PostgreSQL replayed %d more batches Redis lacks, and Redis holds %d acknowledged "
        "batches after it PostgreSQL lacks: replaying those now (one PostgreSQL refuses goes to %r) and dropping "
        "Redis' cache, which lacks PostgreSQL's", _CAUSE, found.agreed.seq, found.lacking, found.new, DEAD,
    )  # fmt: skip
    return found


def problems(hot: Backend, cold: Backend) -> list[str]:
    """What ``statekeel doctor`` reports about the write-behind queue: a divergence, and whether the
    next flush reconciles it. The watermark is read first: a flush running meanwhile only moves it on."""
    rec = cold.get(WATERMARK)
    info = hot.log_info(QUEUE)
    if info is None:
        return []
    mark = Watermark(cold, info.created_at, rec)
    if not _diverged_now(hot, mark, info):
        return []
    try:
        found = plan(hot, cold, mark, info)
    except CorruptionError as exc:
        return [str(exc)]
    return [(
        f"{QUEUE}: Redis' write-behind queue diverged from what PostgreSQL replayed ({_CAUSE}): they agree up "
        f"to seq {found.agreed.seq}; the next flush replays the {found.new} batches PostgreSQL lacks and drops "
        "Redis' cache (a writer's flusher does it within flush_interval, or store.storage.flush())"
    )]


def reached(hot: Backend, cold: Backend, target: tuple[str, int]) -> tuple[tuple[str, int], bool]:
    """(the watermark's epoch and seq, whether PostgreSQL replayed the queue of ``target`` up to its seq).
    A watermark past the seq but naming another entry than Redis' queue holds there is not there: the
    queue diverged, and the flusher reconciles it first."""
    epoch, seq, named = marked(cold)
    if epoch != target[0] or seq < target[1]:
        return (epoch, seq), False
    if named is None:
        return (epoch, seq), True
    found = hot.read(QUEUE, start=seq, limit=1)  # a later flush may have trimmed it: then it moved on
    return (epoch, seq), bool(found) and (found[0].seq != seq or identity(found[0]) == named)


def _diverged_now(hot: Backend, mark: Watermark, info: LogInfo) -> bool:
    """:func:`diverged`, reading the watermark's entry whenever the queue still holds it."""
    if mark.returned or info.last_seq < mark.seq:
        return True
    if mark.id is None or mark.seq < info.first_seq:
        return False
    return _other_entry(hot, mark)


def _other_entry(hot: Backend, mark: Watermark) -> bool:
    """Whether Redis' queue lacks the entry the watermark names at its seq, or holds another there.
    A read starting at a later entry is the queue moved on, as in :func:`reached`: a flush trimmed it
    past the seq after the watermark was read (the doctor holds no lease; a flush under it cannot)."""
    found = hot.read(QUEUE, start=mark.seq, limit=1)
    return not found or (found[0].seq == mark.seq and not mark.matches(found[0]))


def _entries(hot: Backend, start: int, stop: int) -> Iterator[Entry]:
    """Redis' queue entries ``start`` to ``stop`` (both included), a page at a time."""
    while start <= stop and (page := hot.read(QUEUE, start=start, stop=stop + 1, limit=_PAGE)):
        yield from page
        start = page[-1].seq + 1


def _undetermined(mark: Watermark, info: LogInfo, ids: dict[int, str]) -> CorruptionError:
    reach = f"names the batches of seqs {min(ids)} to {max(ids)}" if ids else "names none of this queue's batches"
    return CorruptionError(
        f"statekeel tiered (write-behind): Redis' queue is not the one PostgreSQL replayed ({_CAUSE}), and "
        f"where they part cannot be told: PostgreSQL replayed it up to seq {mark.seq}, Redis' queue holds seqs "
        f"{info.first_seq} to {info.last_seq}, and PostgreSQL's record of replayed batches {reach}. Flushing "
        f"has stopped; the queue is kept in Redis ({QUEUE!r}), nothing was replayed or dropped. Stop the "
        "writers, copy out the batches of Redis' queue PostgreSQL lacks (statekeel cannot tell which), then "
        "drop Redis' data (FLUSHALL) so the store starts again from PostgreSQL (docs/tiered.md, Loss window)",
        QUEUE, mark.seq,
    )  # fmt: skip
