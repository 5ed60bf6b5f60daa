"""What a batch writes, decided without I/O: a snapshot of the items it reads in, the items to write out.

:func:`plan` replays the ops on an overlay of the snapshot exactly as the memory
backend applies them, and returns the results plus the writes: full item puts
and deletes of records and log headers (each conditioned on the write token it
was read with, or on not existing), the new log entries, and the entries a Trim
left unreachable (deleted after the commit). The backend only executes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...protocol import ANY, KEEP, Append, Delete, Entry, Expire, Load, LoadEntries, Op, OpResult, Put, Record
from ...errors import InvalidInputError
from ...protocol import Rewrite, Touch, Trim, op_target, refreshable
from ...protocol.batch import check_batch
from ...protocol.integrity import entry_sum, record_sum
from .._dispatch import handlers
from .items import Head, Item, Stored, alive, entry_item, entry_key, head_item, head_key, record_item, record_key
from .items import token

__all__ = ["Snapshot", "Plan", "plan"]


@dataclass
class Snapshot:
    """The stored items a batch depends on, read (strongly consistent) before planning."""

    records: dict[str, Stored | None] = field(default_factory=dict)
    heads: dict[str, Head | None] = field(default_factory=dict)
    entries: dict[tuple[str, int], tuple[Entry, str] | None] = field(default_factory=dict)
    """Entries a Rewrite names, with their generation."""
    under: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    """For each Expire prefix: the stored record keys and log names under it."""
    seqs: dict[str, list[int]] = field(default_factory=dict)
    """For each Trimmed log: the seqs of its visible entries below the Trim's bound."""
    refreshed: bool = False
    """Updated from a cancelled transaction's returned items: current enough to plan again on."""
    raw: dict[tuple[str, str], Item] = field(default_factory=dict)
    """The items as read (``(pk, sk)``): what a batch too large for one transaction tags."""
    cached: bool = False
    """The headers are what this handle last wrote, not read now: a failed precondition
    must be judged again on a fresh read before it is reported."""


@dataclass
class Plan:
    """The writes of one batch and its results."""

    results: list[OpResult]
    core: list[Item]
    """TransactWriteItems elements (records, headers, rewritten entries)."""
    entries: list[Item]
    """New entry items; in the commit transaction when they fit, else written ahead."""
    heads: dict[str, Head | None]
    """Each log header the commit writes, as written (None: deleted)."""
    garbage: list[tuple[Item, str]]
    """Keys of entries made unreachable (trimmed), with their generation: deleted after
    the commit, each only if it still carries that generation."""


class _Overlay:
    """The snapshot with the batch's ops applied so far."""

    def __init__(self, snap: Snapshot, now: float, split: bool) -> None:
        self.snap, self.now, self.split = snap, now, split
        self.records: dict[str, Stored | None] = dict(snap.records)
        self.heads: dict[str, Head | None] = dict(snap.heads)
        self.new_entries: dict[tuple[str, int], tuple[Entry, str]] = {}
        self.rewritten: dict[tuple[str, int], tuple[Entry, str]] = {}
        self.trimmed: list[tuple[str, int, str]] = []
        self.split_logs: set[str] = set()

    def live_record(self, key: str) -> Stored | None:
        found = self.records.get(key)
        return found if found is not None and alive(found.record.expires_at, self.now) else None

    def live_head(self, log: str) -> Head | None:
        head = self.heads.get(log)
        if head is None or not alive(head.expires_at, self.now):
            return None
        return head

    def visible_head(self, log: str) -> Head | None:
        head = self.live_head(log)
        return head if head is not None and head.last >= head.first else None


def _new_head(log: str, first: int, created: float) -> Head:
    return Head(log, first, first - 1, created, created, None, ((first, token()),), "")


def _put(ov: _Overlay, op: Put) -> Record:
    old = ov.live_record(op.key)
    prev = old.record if old else None
    expires = (prev.expires_at if prev else None) if op.expires_at is KEEP else op.expires_at
    assert not isinstance(expires, type(KEEP))
    version = prev.version + 1 if prev else 1
    rec = Record(op.key, op.data, op.codec, version, prev.created_at if prev else ov.now, ov.now, expires)
    ov.records[op.key] = Stored(rec, record_sum(op.key, op.codec, op.data, version), token())
    return rec


def _delete(ov: _Overlay, op: Delete) -> bool:
    existed = ov.live_record(op.key) is not None
    ov.records[op.key] = None
    return existed


def _load(ov: _Overlay, op: Load) -> Record:
    rec = op.record
    ov.records[rec.key] = Stored(rec, record_sum(rec.key, rec.codec, rec.data, rec.version), token())
    return rec


def _add_entry(ov: _Overlay, head: Head, entry: Entry) -> None:
    ov.new_entries[(entry.log, entry.seq)] = (entry, head.gen_at(entry.seq))


def _fresh_range(ov: _Overlay, head: Head, start: int) -> Head:
    """In a batch too large for one transaction, a log's new entries start a new generation."""
    if not ov.split or head.log in ov.split_logs:
        return head
    ov.split_logs.add(head.log)
    return replace(head, gens=(*(g for g in head.gens if g[0] < start), (start, token())))


def _append(ov: _Overlay, op: Append) -> int:
    head = ov.live_head(op.log) or _new_head(op.log, 1, ov.now)
    first = head.last + 1
    head = _fresh_range(ov, head, first)
    for i, (data, codec) in enumerate(op.items):
        _add_entry(ov, head, Entry(op.log, first + i, data, codec, ov.now))
    expires = head.expires_at if op.expires_at is KEEP else op.expires_at
    assert not isinstance(expires, type(KEEP))
    ov.heads[op.log] = replace(head, last=head.last + len(op.items), updated_at=ov.now, expires_at=expires)
    return first


def _load_entries(ov: _Overlay, op: LoadEntries) -> int:
    head = ov.live_head(op.log)
    if head is None:
        if not op.entries:
            return 0
        head = _new_head(op.log, op.entries[0].seq, op.entries[0].created_at)
    written = 0
    for e in op.entries:
        if e.seq > head.last:  # judged entry by entry: repeated and out-of-order seqs are skipped
            head = _fresh_range(ov, head, e.seq) if written == 0 else head
            _add_entry(ov, head, Entry(op.log, e.seq, e.data, e.codec, e.created_at))
            head = replace(head, last=e.seq, updated_at=max(head.updated_at, e.created_at))
            written += 1
    ov.heads[op.log] = replace(head, expires_at=op.expires_at)
    return written


def _touch(ov: _Overlay, op: Touch) -> bool:
    found = ov.live_record(op.key)
    if op.refresh is not None and not refreshable(None if found is None else found.record, op.refresh, ov.now):
        return False  # a TTL refresh: only the version read, still expiring
    if found is not None:
        exp = found.record.expires_at if op.expires_at is KEEP else op.expires_at
        assert not isinstance(exp, type(KEEP))
        ov.records[op.key] = replace(found, record=replace(found.record, updated_at=ov.now, expires_at=exp), token=token())
        return True
    head = ov.visible_head(op.key)
    if head is None:
        return False
    exp = head.expires_at if op.expires_at is KEEP else op.expires_at
    assert not isinstance(exp, type(KEEP))
    ov.heads[op.key] = replace(head, updated_at=ov.now, expires_at=exp)
    return True


def _expire(ov: _Overlay, op: Expire) -> int:
    keys, logs = ov.snap.under.get(op.prefix, ([], []))
    count = 0
    for key in sorted({*keys, *(k for k in ov.records if k.startswith(op.prefix))}):
        found = ov.live_record(key)
        if found is not None:
            ov.records[key] = replace(found, record=replace(found.record, expires_at=op.expires_at), token=token())
            count += 1
    for log in sorted({*logs, *(n for n in ov.heads if n.startswith(op.prefix))}):
        head = ov.live_head(log)
        if head is not None:
            ov.heads[log] = replace(head, expires_at=op.expires_at)
            count += 1
    return count


def _trim(ov: _Overlay, op: Trim) -> int:
    head = ov.heads.get(op.log)
    if head is None:
        return 0
    bound = min(op.before, head.last + 1)
    if bound <= head.first:
        return 0
    was = ov.snap.heads.get(op.log)
    stored = {s for s in ov.snap.seqs.get(op.log, []) if was is not None and was.gen_at(s) == head.gen_at(s)}
    fresh = {s for (log, s) in ov.new_entries if log == op.log}
    gone = sorted(s for s in stored | fresh if head.first <= s < bound)
    ov.trimmed.extend((op.log, s, head.gen_at(s)) for s in gone)
    for s in gone:
        ov.new_entries.pop((op.log, s), None)
    ov.heads[op.log] = replace(head, first=bound, gens=_gens_from(head.gens, bound))
    return len(gone)


def _gens_from(gens: tuple[tuple[int, str], ...], first: int) -> tuple[tuple[int, str], ...]:
    """The ranges still needed once entries below ``first`` are gone."""
    keep = [g for g in gens if g[0] > first]
    below = [g for g in gens if g[0] <= first]
    return (*below[-1:], *keep)


def _rewrite(ov: _Overlay, op: Rewrite) -> bool:
    head = ov.visible_head(op.log)
    key = (op.log, op.seq)
    old = ov.rewritten.get(key) or ov.new_entries.get(key) or ov.snap.entries.get(key)
    if head is None or old is None or not head.first <= op.seq <= head.last or old[1] != head.gen_at(op.seq):
        return False
    entry = replace(old[0], data=op.data, codec=op.codec)
    if key in ov.new_entries:
        ov.new_entries[key] = (entry, old[1])
    else:
        ov.rewritten[key] = (entry, old[1])
    return True


_APPLY: dict[type[Op], Callable[[_Overlay, Any], OpResult]] = {
    Put: _put, Delete: _delete, Append: _append, Touch: _touch, Expire: _expire,
    Trim: _trim, Load: _load, LoadEntries: _load_entries, Rewrite: _rewrite,
}  # fmt: skip
"""The handler of each op type: one row per op."""


def steps(ops: Sequence[Op]) -> None:
    """Refuse a batch holding an op this backend has no row for, or text DynamoDB cannot store
    (a lone surrogate is not UTF-8), before anything is read."""
    handlers(_APPLY, ops, "the dynamodb:// backend")
    for op in ops:
        codecs = [getattr(op, "codec", "")] + [c for _, c in getattr(op, "items", ())]
        for text in (op_target(op), *codecs):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInputError(
                    f"{text!r} is not valid Unicode (it holds a lone surrogate), so DynamoDB cannot store it; "
                    "nothing was written — pass keys, log names and codec names as proper text"
                ) from None


def plan(ops: Sequence[Op], snap: Snapshot, now: float, table: str, *, split: bool) -> Plan:
    """The writes and results of ``ops`` on ``snap`` (ConflictError if a precondition fails).

    ``split``: the batch is too large for one transaction, so each log's new
    entries start a new generation and are written ahead of the commit.
    """
    _check(ops, snap, now)
    ov = _Overlay(snap, now, split)
    results = [_APPLY[type(op)](ov, op) for op in ops]
    guarded = _guarded(ops)
    heads = {log: None if h is None else replace(h, token=token()) for log, h in ov.heads.items()
             if h is not snap.heads.get(log)}  # fmt: skip
    core = [*_record_writes(ov, table, guarded), *_head_writes(ov, heads, table, guarded), *_rewrites(ov, table)]
    entries = [entry_item(e, entry_sum(e.log, e.codec, e.data, e.seq), g) for e, g in ov.new_entries.values()]
    return Plan(results, core, entries, heads, [(entry_key(log, s), g) for log, s, g in ov.trimmed])


def _check(ops: Sequence[Op], snap: Snapshot, now: float) -> None:
    def current(key: str) -> int | None:
        found = snap.records.get(key)
        return found.record.version if found is not None and alive(found.record.expires_at, now) else None

    def next_seq(log: str) -> int:
        head = snap.heads.get(log)
        return 1 if head is None or not alive(head.expires_at, now) else head.last + 1

    def keys_under(prefix: str) -> list[str]:
        return snap.under.get(prefix, ([], []))[0]

    check_batch(ops, now, current, keys_under, next_seq)


def _guarded(ops: Sequence[Op]) -> set[str]:
    """Keys and logs whose precondition must still hold when the batch commits."""
    found: set[str] = set()
    for op in ops:
        if isinstance(op, (Put, Delete)) and op.expect is not ANY:
            found.add(op.key)
        elif isinstance(op, Append) and op.at is not None:
            found.add(op.log)
    return found


def _condition(token_read: str | None) -> dict[str, Any]:
    """Written only if unchanged since read and not locked by a larger batch (:mod:`.intents`);
    if not, the cancellation carries what is stored now."""
    if token_read is None:
        return {"ConditionExpression": "attribute_not_exists(pk)", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    return {"ConditionExpression": "w = :w AND attribute_not_exists(xt)", "ExpressionAttributeValues": {":w": {"S": token_read}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}  # fmt: skip


def _write(table: str, key: Item, item: Item | None, before: str | None, changed: bool) -> Item | None:
    if not changed:
        return {"ConditionCheck": {"TableName": table, "Key": key, **_condition(before)}}
    if item is None:
        if before is None:
            return None
        return {"Delete": {"TableName": table, "Key": key, **_condition(before)}}
    return {"Put": {"TableName": table, "Item": item, **_condition(before)}}


def _record_writes(ov: _Overlay, table: str, guarded: set[str]) -> list[Item]:
    out: list[Item] = []
    for key, now in ov.records.items():
        was = ov.snap.records.get(key)
        changed = now is not was
        if not changed and key not in guarded:
            continue
        item = None if now is None else record_item(now.record, now.checksum or 0, now.token)
        write = _write(table, record_key(key), item, None if was is None else was.token, changed)
        if write is not None:
            out.append(write)
    return out


def _head_writes(ov: _Overlay, heads: dict[str, Head | None], table: str, guarded: set[str]) -> list[Item]:
    out: list[Item] = []
    for log in ov.heads:
        was, now = ov.snap.heads.get(log), heads.get(log)
        changed = log in heads
        if not changed and log not in guarded:
            continue
        item = None if now is None else head_item(now)
        write = _write(table, head_key(log), item, None if was is None else was.token, changed)
        if write is not None:
            out.append(write)
    return out


def _rewrites(ov: _Overlay, table: str) -> list[Item]:
    return [
        {"Put": {"TableName": table, "Item": entry_item(e, entry_sum(e.log, e.codec, e.data, e.seq), g),
                 "ConditionExpression": "attribute_exists(pk)"}}
        for e, g in ov.rewritten.values()
    ]  # fmt: skip
