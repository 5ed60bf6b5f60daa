"""What a chained store checks on every read (see :mod:`statekeel.core.chained`).

Each check raises :class:`~statekeel.errors.IntegrityError` naming the record or
the log and seq, and saying what disagrees: a MAC (edited, forged, copied), the
head (deleted, an older version restored, a tail cut), the seqs (a gap), the
clock (a changed timestamp).
"""

from __future__ import annotations

import enum
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final, TypeVar

from ..errors import IntegrityError
from ..protocol import Backend, Entry, LogInfo, Record, keys
from . import layout
from .chain import CLOCK, STEP, TRAILER, ChainKey, Head, LogHead, alive, split_trailer

__all__ = ["MOVED", "READS", "UNREAD", "EntryWindow", "Unread", "against_head", "check_entries", "check_log_info",
           "check_record", "check_records", "check_scan", "consistent", "head_parts", "moved_from", "open_value",
           "unchained"]

T = TypeVar("T")


def _alive(expires: float | None) -> bool:
    return alive(expires, time.time())


def _unchained(codec: str, where: str) -> str:
    if not codec.endswith(STEP):
        raise IntegrityError(f"{where} is stored without its chain MAC (codec {codec!r}) in a tamper-evident "
                             "store: planted or tampered with; it was not returned")  # fmt: skip
    return codec[: -len(STEP)]


def open_value(key: ChainKey, rec: Record, where: str) -> tuple[bytes, str]:
    """A record's value and codec, its MAC verified (not yet compared with its head)."""
    codec = _unchained(rec.codec, f"the record {where!r}")
    value, clock, tag = split_trailer(rec.data, where)
    want = key.record_tag(where, rec.version, codec, value, rec.created_at, clock)
    if not hmac.compare_digest(tag, want):
        raise IntegrityError(
            f"the record {where!r} (version {rec.version}) fails its MAC: its value, version or creation time "
            "was changed, or it was copied from another record; it was not returned"
        )
    return value, codec


def check_record(
    key: ChainKey, prefix: str, name: str, rec: Record | None, head: Head, include_expired: bool = False
) -> Record | None:
    """``rec`` opened, after checking it against ``head`` (None: checks that the head agrees it is gone)."""
    where = prefix + name
    known = head.records.get(where)
    if rec is None:
        if known is not None and _alive(known.expires):
            raise IntegrityError(f"the record {where!r} is missing: its partition's chain head has version "
                                 f"{known.version}, so it was deleted beneath the API")  # fmt: skip
        return None
    value, codec = open_value(key, rec, where)
    if include_expired and not _alive(rec.expires_at):
        return replace(rec, data=value, codec=codec)  # its head may have expired with it
    if known is None:
        raise IntegrityError(f"the record {where!r} is not in its partition's chain head: forged, or restored "
                             "after it was deleted")  # fmt: skip
    if known.version != rec.version or not hmac.compare_digest(known.tag, split_trailer(rec.data, where)[2]):
        raise IntegrityError(f"the record {where!r} is version {rec.version} but its chain head has version "
                             f"{known.version}: an older version was restored")  # fmt: skip
    if not _alive(known.expires):  # the store returned it alive (a read leaves out what has expired)
        raise IntegrityError(f"the record {where!r} expired at {known.expires!r} by its chain head, but the store "
                             "holds it with a later expiry: its expiry was changed beneath the API to bring it back; "
                             "it was not returned")  # fmt: skip
    return replace(rec, data=value, codec=codec)


def head_parts(plain: Callable[[str], bool], names: Sequence[str], log: str | None = None) -> list[str]:
    """The partitions whose heads a read of the records ``names`` (and of ``log``) is checked against, sorted."""
    parts = {keys.partition(k) for k in names if not plain(k)}
    if log is not None:
        parts.add(keys.partition(log))
    return sorted(parts)


def check_records(
    key: ChainKey, prefix: str, plain: Callable[[str], bool], names: Sequence[str], found: Sequence[Record | None],
    heads: dict[str, Head],
) -> list[Record | None]:
    """The records of ``names`` as ``found``, each checked against its partition's head (plain ones as stored)."""
    return [rec if plain(k) else check_record(key, prefix, k, rec, heads[keys.partition(k)])
            for k, rec in zip(names, found)]  # fmt: skip


def check_log_info(where: str, info: LogInfo | None, known: LogHead | None) -> LogInfo | None:
    """``info``, after checking its last seq against the head's."""
    live = known is not None and _alive(known.expires) and known.last >= known.first
    if info is None and live:
        assert known is not None
        raise IntegrityError(f"the log {where!r} is missing: its chain head has entries "
                             f"{known.first}..{known.last}, so they were deleted beneath the API")  # fmt: skip
    if info is not None and (known is None or info.last_seq != known.last):
        have = "no entries" if known is None else f"last seq {known.last}"
        raise IntegrityError(f"the log {where!r} ends at seq {info.last_seq} but its chain head has {have}: "
                             "entries were deleted at its tail, or appended beneath the API")  # fmt: skip
    return info


def _window(known: LogHead, start: int, stop: int | None, limit: int | None, reverse: bool) -> tuple[int, int]:
    """The seqs ``read`` must return, as the head knows the log: ``lo..hi`` (empty when hi < lo)."""
    lo, hi = max(start, known.first), known.last if stop is None else min(stop - 1, known.last)
    if limit is not None:
        lo, hi = (max(lo, hi - limit + 1), hi) if reverse else (lo, min(hi, lo + limit - 1))
    return lo, hi


def check_entries(
    key: ChainKey, prefix: str, inner: Backend, log: str, known: LogHead | None, *,
    start: int, stop: int | None, limit: int | None, reverse: bool,
) -> list[tuple[int, bytes, str, float]]:
    """``(seq, value, codec, created_at)`` of the entries ``read`` asked for, read so that each one's
    chain link is checked (one entry before the window is read too, unless the head holds its tag)."""
    w = EntryWindow(known, start, stop, limit, reverse)
    found = inner.read(log, start=w.start, stop=w.stop, limit=w.limit, reverse=w.reverse) if w.reads else []
    return w.checked(key, prefix + log, found)


class EntryWindow:
    """What :func:`check_entries` reads beneath the chain for one ``read`` (``start``, ``stop``,
    ``limit``, ``reverse``: the inner read's arguments) and how it checks what came back — apart,
    so the asyncio twin awaits the read between the two."""

    __slots__ = ("known", "lo", "hi", "lead", "to_end", "start", "stop", "limit", "reverse")

    @property
    def reads(self) -> bool:
        """Whether anything is read (a window the head says is empty is not)."""
        return self.known is None or self.hi >= self.lo

    def __init__(self, known: LogHead | None, start: int, stop: int | None, limit: int | None, reverse: bool) -> None:
        self.known = known if known is not None and _alive(known.expires) else None
        self.lo = self.hi = 0
        self.lead = self.to_end = False
        if self.known is None:  # nothing in the head: whatever is found was appended beneath the API
            self.start, self.stop, self.limit, self.reverse = start, stop, limit, reverse
            return
        lo, hi = self.lo, self.hi = _window(self.known, start, stop, limit, reverse)
        self.lead = lo > self.known.first
        self.to_end = stop is None and hi == self.known.last  # then one entry past the head's last is looked for too
        first = lo - 1 if self.lead else lo
        self.start, self.reverse = first, False
        self.stop, self.limit = (None, hi - first + 2) if self.to_end else (hi + 1, None)

    def checked(self, key: ChainKey, where: str, found: list[Entry]) -> list[tuple[int, bytes, str, float]]:
        known, lo, hi = self.known, self.lo, self.hi
        if known is None:
            if found:
                raise IntegrityError(f"entry {found[0].seq} of log {where!r} is not in its chain head: appended "
                                     "beneath the API")  # fmt: skip
            return []
        if hi < lo:
            return []
        if self.to_end and found and found[-1].seq > hi:
            raise IntegrityError(f"entry {found[-1].seq} of log {where!r} is past the last seq its chain head has "
                                 f"({known.last}): appended beneath the API")  # fmt: skip
        prev = known.before
        if self.lead:
            if not found or found[0].seq != lo - 1:
                raise IntegrityError(f"entry {lo - 1} of log {where!r} is missing: deleted beneath the API")
            prev = split_trailer(found[0].data, where)[2]
            found = found[1:]
        out: list[tuple[int, bytes, str, float]] = []
        tag_of, same, clock_at = key.entry_tagger(where), hmac.compare_digest, CLOCK.unpack_from
        codecs: dict[str, str] = {}  # stored codec -> the value's (a reload checks thousands under two or three)
        for expected, e in zip(range(lo, hi + 1), found):
            if e.seq != expected:
                raise IntegrityError(f"entries {expected}..{e.seq - 1} of log {where!r} are missing: deleted "
                                     "beneath the API")  # fmt: skip
            codec = codecs.get(e.codec)
            if codec is None:
                codec = codecs[e.codec] = _unchained(e.codec, f"entry {e.seq} of log {where!r}")
            data = e.data
            cut = len(data) - TRAILER  # split_trailer(), inline: it runs for every entry of a reload
            if cut < 0:
                split_trailer(data, where)  # raises: truncated
            value, clock, tag = data[:cut], clock_at(data, cut)[0], data[cut + 8 :]
            if not same(tag, tag_of(e.seq, codec, value, clock, prev)):
                raise IntegrityError(f"entry {e.seq} of log {where!r} breaks the chain: it was edited, reordered, "
                                     "forged, or the entry before it was changed or deleted")  # fmt: skip
            if clock != e.created_at:
                raise IntegrityError(f"entry {e.seq} of log {where!r} has created_at {e.created_at!r}, but it was "
                                     f"written at {clock!r}: its timestamp was changed")  # fmt: skip
            out.append((e.seq, value, codec, clock))
            prev = tag
        if len(out) != hi - lo + 1:
            raise IntegrityError(f"entries {lo + len(out)}..{hi} of log {where!r} are missing: deleted beneath the "
                                 "API (at its tail, when the head's last seq is among them)")  # fmt: skip
        if hi == known.last and not hmac.compare_digest(prev, known.tag):
            raise IntegrityError(f"the last entry of log {where!r} is not the one its chain head names")
        return out


READS: Final = 5
"""Reads of a record (or log) and its head before a disagreement is believed: they are two reads, and
a writer may commit between them on backends without snapshot reads (files)."""


def unchained(raw: list[Record]) -> list[Record]:
    """A scanned page without the chain's own records (the heads, the marker)."""
    return [r for r in raw if not (layout.is_chain_head(r.key) or r.key == layout.INTEGRITY_MARKER)]


def check_scan(
    key: ChainKey, store_prefix: str, plain: Callable[[str], bool], heads: dict[str, Head], page: list[Record],
    scanned: tuple[str, str | None, int],
) -> list[Record]:  # fmt: skip
    """A scanned ``page`` (of ``scanned`` = prefix, after, limit) checked against the heads of its
    chained records' partitions, read after it: each record's MAC and version, and no record the
    heads list inside the page's window missing (the sync and the asyncio scan share it)."""
    prefix, after, limit = scanned
    out = [r if plain(r.key) else check_record(key, store_prefix, r.key, r, heads[keys.partition(r.key)])
           for r in page]  # fmt: skip
    end = page[-1].key if len(page) == limit else None
    seen = {r.key for r in page}
    for head in heads.values():  # a record the head lists in this window but the store lost
        for full in head.records:
            name = full[len(store_prefix):]
            inside = name.startswith(prefix) and (after is None or name > after) and (end is None or name <= end)
            if full.startswith(store_prefix) and inside and name not in seen:
                check_record(key, store_prefix, name, None, head)
    return [r for r in out if r is not None]


def consistent(read: Callable[[], T]) -> T:
    """``read()``, done again (after a short pause) while it raises IntegrityError, up to :data:`READS` times."""
    for attempt in range(READS):
        try:
            return read()
        except IntegrityError:
            if attempt == READS - 1:
                raise
            time.sleep(0.002 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


MOVED: Final = 1000
"""Reads of a log redone because writers moved its head meanwhile, before giving up."""


class Unread(enum.Enum):
    """A head record not read yet (:func:`against_head` reads it)."""

    UNREAD = "unread"


UNREAD: Final = Unread.UNREAD


def against_head(
    inner: Backend, known_in: Callable[[Record | None, str], LogHead | None], prefix: str, log: str,
    check: Callable[[LogHead | None], T], before: Record | None | Unread = UNREAD,
) -> T:
    """``check`` a read of ``log`` against its head (``known_in(head record, partition)`` is the log's entry
    in it), read just before. The two are separate reads: when the check fails the head is read again, and if a batch moved it meanwhile (the log read may
    be newer than the head) the whole read is done again — only a disagreement with a head that
    nothing moved is believed (a seqlock: writers move the head and the log in one batch).
    ``before``: the head record, when the caller read it already (with the records it reads beside the log);
    after a moved head, the head read after the log is the next attempt's first read."""
    part = keys.partition(log)
    head_key = layout.chain_head_key(part)
    for _ in range(MOVED):
        if before is Unread.UNREAD:
            before = inner.get(head_key)
        known = known_in(before, part)
        try:
            return check(known)
        except IntegrityError:
            after = inner.get(head_key)
            if moved_from(before) == moved_from(after):
                raise
            before = after
    raise IntegrityError(f"the chain head of {prefix + part!r} kept moving while the log was read "
                         f"({MOVED} times); the writers are too busy for a checked read — try again")


def moved_from(head: Record | None) -> int | None:
    """A head record's version (None: none stored): what a seqlock compares."""
    return None if head is None else head.version
