"""Queued Appends by reference, read back from Redis when the flusher replays them.

A write-behind batch writes its Appends into Redis' copy of each log and, in the same
atomic batch, a queue entry that names them (:class:`.batches.AppendRef`: the log, the
seq of the first item, the codecs) instead of holding their bytes again. Replaying it,
the flusher reads those entries from Redis and replays the Append with its own ``at``
(usually none: PostgreSQL numbers it, which after a failover may differ from Redis). An
entry at that seq with the batch's clock as its ``created_at`` is the one the batch wrote
(a rewrite — key rotation — may have re-encoded it since; the rewrite is queued after the
batch, so PostgreSQL ends the same).

An entry that is not there any more is accounted for only if Redis' log no longer holds
that seq as written: trimmed (its first seq is past it), expired (the log is gone), or
expired and started again (created after the batch). The batch itself did that (it trims
what it appends) or the log's expiry did: a batch that trims or expires now is queued only
once everything queued for its partitions is in PostgreSQL
(:meth:`.backend.TieredBackend._behind_after_flush`). The item is replayed as an empty
placeholder, which that trim or expiry removes in PostgreSQL too. Anything else — the log
still claims the seq but the entry is missing or another one — means Redis lost data it
acknowledged (an eviction policy other than ``noeviction``): the flush stops with a
:class:`CorruptionError` naming the batch, the queue kept, rather than replay a batch it
cannot reconstruct.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import CorruptionError
from ...protocol import Append, Backend, Entry, LogInfo, Op
from .batches import AppendRef, Queued

__all__ = ["resolve"]

_SPAN = 4
"""A log's references in a page are read in one range unless it is this many times longer than
what they name (plus 64 seqs): a page's Appends to one log are usually back to back."""


def resolve(
    hot: Backend, batches: Sequence[tuple[Sequence[Queued], float, str]]
) -> tuple[list[list[Op]], CorruptionError | None]:
    """Each batch's ops with its Appends by reference read back from ``hot``, in order, as far as the
    first batch that cannot be (then its error; the batches before it are returned)."""
    entries = _read(hot, [ref for ops, _, _ in batches for ref in ops if isinstance(ref, AppendRef)])
    infos: dict[str, LogInfo | None] = {}
    out: list[list[Op]] = []
    for ops, now, where in batches:
        try:
            out.append([_append(hot, op, now, entries, infos, where) if isinstance(op, AppendRef) else op
                        for op in ops])  # fmt: skip
        except CorruptionError as exc:
            return out, exc
    return out, None


def _read(hot: Backend, refs: list[AppendRef]) -> dict[tuple[str, int], Entry]:
    """The entries ``refs`` name that Redis holds, by (log, seq): one read per log where they are close."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for ref in refs:
        spans.setdefault(ref.log, []).append((ref.seq, ref.seq + len(ref.codecs)))
    found: dict[tuple[str, int], Entry] = {}
    for log, ranges in spans.items():
        lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
        named = sum(b - a for a, b in ranges)
        for start, stop in [(lo, hi)] if hi - lo <= _SPAN * named + 64 else ranges:
            for entry in hot.read(log, start=start, stop=stop):
                found[log, entry.seq] = entry
    return found


def _append(hot: Backend, ref: AppendRef, now: float, entries: dict[tuple[str, int], Entry],
            infos: dict[str, LogInfo | None], where: str) -> Append:  # fmt: skip
    items = []
    for seq, codec in enumerate(ref.codecs, ref.seq):
        entry = entries.get((ref.log, seq))
        if entry is not None and entry.created_at == now:
            items.append((entry.data, entry.codec))
            continue
        if ref.log not in infos:
            infos[ref.log] = hot.log_info(ref.log)
        info = infos[ref.log]
        if info is not None and info.first_seq <= seq and info.created_at <= now:
            have = "no entry" if entry is None else f"an entry written at {entry.created_at!r}"
            raise CorruptionError(
                f"the write-behind queue entry {where} appended entry {seq} of {ref.log!r} at {now!r}, and Redis "
                f"still holds that log from before it but has {have} there: Redis lost acknowledged data (is its "
                "maxmemory-policy noeviction?). The entry stays in the queue; see docs/tiered.md",
                where,
            )
        items.append((b"", codec))  # trimmed by this batch or expired: removed in PostgreSQL too
    return Append(ref.log, tuple(items), ref.expires_at, ref.at)
