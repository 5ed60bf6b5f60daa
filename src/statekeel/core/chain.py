"""Tamper evidence: MACs that chain every log and bind every record version, and the heads.

Turned on with ``statekeel.open(url, integrity="chain")`` (or
``integrity=statekeel.Integrity(...)``). The MAC key comes from the same
sources as the master key (``STATEKEEL_MASTER_KEY`` by default), derived for
this use only, so the encryption key and the MAC key are never the same bytes.

* **Entries**: each stored value ends with a trailer — the writer's clock
  (8 bytes) and a 16-byte tag, HMAC-SHA256 over the log's full key, the seq, the
  codec, the value, that clock and the tag of the entry before it. An edited,
  deleted, reordered or forged entry breaks the chain.
* **Records**: the same trailer; the tag covers the key, the version, the
  codec, the value, when the record was created and when this version was
  written. A record copied from elsewhere, or an older version, does not verify.
* **Heads**: each partition (a session, a user, an event stream, …) keeps one
  head record — per log its first seq (and the tag before it) and last seq and
  tag, per record its version, tag and expiry — written in the same atomic batch
  as the data, compare-and-set. A deleted tail, a deleted record or a record
  rolled back with its version disagrees with the head.
* **Root and anchor**: the heads of the whole store fold into one root;
  :mod:`statekeel.core.anchor` keeps the head versions outside the store, so a
  rollback of the whole store (data and heads together) is detected too.

Times are exact: the writer passes its clock to :meth:`Backend.apply` (``now=``),
so a stored ``created_at`` that differs from the authenticated one was changed.
``updated_at`` (moved by touches) and expiry times are not covered.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypeVar

from ..errors import IntegrityError
from .keyring import MasterKeys

__all__ = ["CLOCK", "BucketRef", "ChainKey", "EntryTagger", "Head", "LogHead", "RecordHead", "RecordTagger", "STEP",
           "TRAILER", "ZERO_TAG", "alive", "bucket_index", "kept", "split_trailer", "trailer"]

TAG: Final = 16
"""Bytes of a tag (HMAC-SHA256, truncated)."""

TRAILER: Final = 8 + TAG
"""Bytes after each chained value: the writer's clock, then the tag."""

ZERO_TAG: Final = bytes(TAG)
"""The tag "before" the first entry of a log."""

STEP: Final = "+chain"
"""The codec step of a chained value."""

CLOCK: Final = struct.Struct(">d")
"""The writer's clock in a trailer."""
_ENTRY = struct.Struct(">IQIId")
"""An entry tag's fixed fields: the lengths of the log's key, codec and value, the seq and the clock."""
_LEN = struct.Struct(">I")
_RECORD = struct.Struct(">QI")
"""A record tag's version and the length of its codec name."""
_TIMES = struct.Struct(">dd")


EntryTagger = Callable[[int, str, bytes, float, bytes], bytes]
"""``(seq, codec, data, clock, prev) -> tag`` for the entries of one log."""

RecordTagger = Callable[[int, str, bytes, float, float], bytes]
"""``(version, codec, data, created, clock) -> tag`` for one record."""

T = TypeVar("T")

_BLOCK: Final = 64
"""SHA-256's block: an HMAC key is padded to it (RFC 2104)."""


class ChainKey:
    """The MAC key, derived from a master key (by its id, so rotation of the master key is explicit).

    Tags are HMAC-SHA256 computed from the key's two padded blocks hashed once (RFC 2104's inner and
    outer states), copied per tag: the same bytes as :func:`hmac.digest`, at half its cost for the
    short values of a turn (which pays four: one per entry, per record and for the head).
    """

    def __init__(self, master: MasterKeys, key_id: str | None = None) -> None:
        kid = key_id or master.current_id
        raw = master.find(kid)
        if raw is None:
            from ..errors import KeyUnavailableError

            raise KeyUnavailableError(
                f"the store's tamper-evident chain is keyed by master key id {kid!r}, which is not configured "
                f"(configured: {', '.join(master.ids())}); put that key in STATEKEEL_MASTER_KEY or "
                "Integrity(key=...)"
            )
        self.id = kid
        key = hmac.new(raw, b"statekeel chain mac v1", hashlib.sha256).digest().ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._taggers: dict[str, EntryTagger] = {}
        self._records: dict[str, RecordTagger] = {}

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under this key, truncated to :data:`TAG` bytes."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG]

    def _tag(self, *parts: bytes) -> bytes:
        return self.mac(b"".join(parts))

    def entry_tag(self, where: str, seq: int, codec: str, data: bytes, clock: float, prev: bytes) -> bytes:
        return self.entry_tagger(where)(seq, codec, data, clock, prev)

    def entry_tagger(self, where: str) -> EntryTagger:
        """``entry_tag`` for the entries of one log: ``(seq, codec, data, clock, prev) -> tag`` (kept per
        log: a writer tags the same logs batch after batch)."""
        return kept(self._taggers, where, self._new_tagger)

    def _new_tagger(self, where: str) -> EntryTagger:
        w, pack, inner, outer = where.encode(), _ENTRY.pack, self._inner, self._outer
        lw = len(w)

        def tag(seq: int, codec: str, data: bytes, clock: float, prev: bytes) -> bytes:
            h = inner.copy()  # :meth:`mac`, inline: a turn tags two entries or more
            h.update(b"".join((b"e", pack(lw, seq, len(codec), len(data), clock), w, codec.encode(), data, prev)))
            o = outer.copy()
            o.update(h.digest())
            return o.digest()[:TAG]

        return tag

    def record_tag(
        self, where: str, version: int, codec: str, data: bytes, created: float, clock: float
    ) -> bytes:
        return self.record_tagger(where)(version, codec, data, created, clock)

    def record_tagger(self, where: str) -> RecordTagger:
        """``record_tag`` for one record: ``(version, codec, data, created, clock) -> tag`` (kept per key: a
        writer puts the same few records, and its heads, batch after batch)."""
        return kept(self._records, where, self._new_record_tagger)

    def _new_record_tagger(self, where: str) -> RecordTagger:
        # b"r", then the key, the version, the codec and the value (each length-prefixed), then both
        # times — packed with as few calls as possible
        w = where.encode()
        lead, fixed, times, inner, outer = b"r" + _LEN.pack(len(w)) + w, _RECORD.pack, _TIMES.pack, self._inner, self._outer

        def tag(version: int, codec: str, data: bytes, created: float, clock: float) -> bytes:
            c = codec.encode()
            h = inner.copy()
            h.update(b"".join((lead, fixed(version, len(c)), c, _LEN.pack(len(data)), data, times(created, clock))))
            o = outer.copy()
            o.update(h.digest())
            return o.digest()[:TAG]

        return tag

    def root_tag(self, body: bytes) -> bytes:
        return self._tag(b"root", body)


def kept(taggers: dict[str, T], where: str, make: Callable[[str], T]) -> T:
    """``taggers[where]``, made on first use (at most 4,096 kept: a writer names the same few keys)."""
    tagger = taggers.get(where)
    if tagger is None:
        if len(taggers) >= 4096:
            taggers.clear()
        tagger = taggers[where] = make(where)
    return tagger


def alive(expires: float | None, now: float) -> bool:
    """Whether something that expires at ``expires`` (None: never) is still there at ``now``."""
    return expires is None or expires > now


def trailer(clock: float, tag: bytes) -> bytes:
    return CLOCK.pack(clock) + tag


def split_trailer(data: bytes, where: str) -> tuple[bytes, float, bytes]:
    """``(value, clock, tag)`` of a chained value."""
    if len(data) < TRAILER:
        raise IntegrityError(f"the chained value at {where!r} is truncated: its MAC trailer is missing")
    return data[:-TRAILER], CLOCK.unpack_from(data, len(data) - TRAILER)[0], data[-TAG:]


class LogHead(NamedTuple):
    """What the head knows about one log (immutable: heads are copied cheaply and share entries)."""

    first: int
    """The lowest seq still stored (after trims)."""
    before: bytes
    """The tag of the entry before ``first`` (ZERO_TAG from the start)."""
    last: int
    tag: bytes
    """The tag of entry ``last``."""
    expires: float | None = None


class RecordHead(NamedTuple):
    """What the head knows about one record (immutable, like :class:`LogHead`)."""

    version: int
    tag: bytes
    created: float
    expires: float | None


class BucketRef(NamedTuple):
    """What a partition's root head knows about one bucket of its record heads (see :class:`Head`)."""

    version: int
    tag: bytes
    """The MAC of that version of the bucket record: an older bucket restored has another."""
    size: int
    """How many records it lists (the root sums them to know when to split)."""
    expires: float | None
    """When its last record expires (None: one never does)."""


def bucket_index(where: str, bits: int) -> int:
    """The bucket of the record named ``where`` in a head of ``2 ** bits`` buckets: the low bits of its
    CRC-32, so doubling the buckets splits each in two (bucket ``i`` into ``i`` and ``i + 2 ** bits``)."""
    return zlib.crc32(where.encode()) & ((1 << bits) - 1)


_quoted: Callable[[str], str] = functools.lru_cache(maxsize=8192)(json.dumps)
"""A name as a JSON string (the same few names are rendered batch after batch)."""


_positive_time: Callable[[float], str] = functools.lru_cache(maxsize=8192, typed=True)(repr)


def _time(x: float) -> str:
    """A time as JSON writes it, remembered: a record's creation time and expiry stay the same across its
    versions, and a float's shortest repr costs more than a look-up (not for 0.0, equal to -0.0)."""
    return _positive_time(x) if x > 0 else repr(x)


def _log_json(name: str, h: LogHead) -> str:
    e = h.expires
    return f'{_quoted(name)}:[{h.first},"{h.before.hex()}",{h.last},"{h.tag.hex()}",{"null" if e is None else _time(e)}]'


def _record_json(name: str, h: RecordHead) -> str:
    e = h.expires
    return f'{_quoted(name)}:[{h.version},"{h.tag.hex()}",{_time(h.created)},{"null" if e is None else _time(e)}]'


def _rendered(entries: dict[Any, Any], parts: dict[Any, tuple[Any, str]], render: Callable[[Any, Any], str]) -> str:
    """``entries`` as the members of a JSON object, sorted by name; an entry that is still the object
    ``parts`` rendered last time is not rendered again."""
    if len(parts) > 2 * len(entries) + 64:
        parts.clear()  # names gone from the head
    out = []
    for name in sorted(entries):
        h = entries[name]
        known = parts.get(name)
        if known is None or known[0] is not h:
            known = parts[name] = (h, render(name, h))
        out.append(known[1])
    return ",".join(out)


def _bucket_json(i: int, b: BucketRef) -> str:
    e = b.expires
    return f'"{i:x}":[{b.version},"{b.tag.hex()}",{b.size},{"null" if e is None else _time(e)}]'


@dataclass
class Head:
    """One partition's head: every log and record written through the chain.

    A small partition's head lists its records itself. Past :data:`~statekeel.core.chain_plan.SPILL`
    records they move to ``2 ** bits`` bucket records (each a :class:`Head` listing only records, at
    :func:`~statekeel.core.layout.chain_bucket_key`) and the head — the partition's *root* — lists each
    bucket's version and MAC instead, and keeps listing the records written since (a record's entry in
    the root wins over its bucket's). A batch rewrites the root, and a bucket only when it deletes from
    it or moves the root's records into the buckets (every few dozen records written), so a write costs
    about the same however many records the partition holds; the root still vouches for every record
    (a bucket deleted or rolled back disagrees with it)."""

    logs: dict[str, LogHead] = field(default_factory=dict)
    records: dict[str, RecordHead] = field(default_factory=dict)
    """The records it lists itself: all of them, or (with ``bits``) those written since it last moved
    them to its buckets — newer than what a bucket lists of the same name."""
    bits: int = 0
    """Its records are in ``2 ** bits`` buckets (0: listed here)."""
    buckets: dict[int, BucketRef] = field(default_factory=dict)
    """Each bucket written so far (one never written lists nothing)."""
    _parts: tuple[dict[Any, tuple[Any, str]], dict[Any, tuple[Any, str]], dict[Any, tuple[Any, str]]] = field(
        default_factory=lambda: ({}, {}, {}), repr=False, compare=False)  # fmt: skip
    """Per kind (logs, records, buckets), name -> (entry, its JSON): entries are immutable, so one that is still the
    same object encodes the same; shared by copies (every write re-encodes its head, mostly unchanged)."""

    def encode(self) -> bytes:
        """``{"l": {name: [first, before, last, tag, expires]}, "r": {name: [version, tag, created,
        expires]}}`` in compact JSON with sorted names, as :func:`json.dumps` writes it; a root with
        buckets adds ``"b": [bits, {hex index: [version, tag, count, expires]}]``."""
        logs, records, buckets = self._parts
        body = ('{"l":{' + _rendered(self.logs, logs, _log_json) + '},"r":{'
                + _rendered(self.records, records, _record_json) + "}")  # fmt: skip
        if self.bits:
            body += f',"b":[{self.bits},{{' + _rendered(self.buckets, buckets, _bucket_json) + "}]"
        return (body + "}").encode()

    def records_with(self, buckets: Iterable[Head]) -> dict[str, RecordHead]:
        """The records this root and ``buckets`` (of its buckets) list, by name: its own win (each was
        written after its bucket's last flush)."""
        records = {name: r for bucket in buckets for name, r in bucket.records.items()}
        records.update(self.records)
        return records

    def total(self) -> int:
        """How many records it lists, itself or in its buckets."""
        return len(self.records) + sum(b.size for b in self.buckets.values())

    @classmethod
    def decode(cls, data: bytes, where: str) -> Head:
        try:
            body: Any = json.loads(data)
            logs = {k: LogHead(int(f), bytes.fromhex(b), int(la), bytes.fromhex(t), None if e is None else float(e))
                    for k, (f, b, la, t, e) in body["l"].items()}  # fmt: skip
            records = {k: RecordHead(int(v), bytes.fromhex(t), float(c), None if e is None else float(e))
                       for k, (v, t, c, e) in body["r"].items()}  # fmt: skip
            bits, refs = body.get("b", (0, {}))
            buckets = {int(i, 16): BucketRef(int(v), bytes.fromhex(t), int(n), None if e is None else float(e))
                       for i, (v, t, n, e) in refs.items()}  # fmt: skip
            if not 0 <= int(bits) <= 24 or any(i >> int(bits) for i in buckets):
                raise ValueError(f"{len(buckets)} buckets of {bits} bits beside {len(records)} records")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"the chain head {where!r} does not parse ({exc}); it was tampered with") from None
        return cls(logs, records, int(bits), buckets)

    def last_expiry(self) -> float | None:
        """When this head may expire: with the last thing it lists, never while one of them never does
        (stops at the first that never expires: a partition without TTLs costs one look, not one per name)."""
        last = None
        listed: Any
        for listed in (self.records.values(), self.logs.values(), self.buckets.values()):
            for k in listed:
                if k.expires is None:
                    return None
                last = k.expires if last is None else max(last, k.expires)
        return last

    def drop_expired(self, before: float) -> None:
        """Forget the logs and records that expired before ``before``: a read leaves them out, so the
        head no longer needs to vouch for them (and a head must not grow with every record ever
        written that expired since, such as idempotency keys). A copy's to change, like every write.
        A root with buckets keeps its own records: each may stand for an older one its bucket lists."""
        members: dict[str, Any]
        for members in (self.logs, self.records) if not self.bits else (self.logs,):
            gone = [name for name, m in members.items() if m.expires is not None and m.expires < before]
            for name in gone:
                del members[name]

    def copy(self) -> Head:
        """A head to change without changing this one (entries are immutable: they are shared)."""
        return Head(dict(self.logs), dict(self.records), self.bits, dict(self.buckets), self._parts)
