"""The single-table item layout: what each record, log header and log entry looks like in DynamoDB.

Every item has the key ``(pk, sk)``; ``pk`` is ``"p" + partition(key)`` so all of a
session lives in one item collection, and ``sk`` starts with a letter naming the kind::

    record   pk=p<partition>  sk=k<key>                     d c v ca ua ea ttl s w
    record   pk=nkeys         sk=kkeys/<partition>          (keystore; ``subjects/…`` → pk=nsubjects)
    record   pk=nevents#<0-3> sk=k<key>                     (``events/``, ``memory/``, ``lgstore/``:
                                                             one of 4 collections by crc32(partition))
    header   pk=p<partition>  sk=h<log>                     f l ca ua ea g w
    entry    pk=p<partition>  sk=e<log>\\0<seq, 20 digits>   d c ca s g
    schema   pk=#statekeel    sk=#schema                    version
    intent   pk=#tx           sk=#<id>, #<id>/<page>        xs xd xp / ks   (a batch past 100 items:
                                                             :mod:`.intents`; its records and headers
                                                             carry xt xk xn x0 until it finishes)

Zero-padded seqs make sort-key order seq order, so a history read is one Query
over a ``BETWEEN`` range. ``w`` is a random token replaced on every write: a
batch's writes are conditioned on the token they read (optimistic concurrency).
``g`` on an entry is the generation it was written in; a header's ``g`` lists the
generation each seq range must carry (``"1:9f2c…;151:07ab…"``): a log created again
after expiry, and every batch too large for one transaction, start a new one, so
entries left by an older generation or by a batch that never committed never show.
``s`` is the checksum (:mod:`statekeel.protocol.integrity`), ``ttl`` the integer
epoch second DynamoDB's TTL deletes a record after.
"""

from __future__ import annotations

import math
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Any, Final

from ...errors import CorruptionError
from ...protocol import Entry, LogInfo, Record
from ...protocol.integrity import verify_entry, verify_record
from ...protocol.keys import partition

__all__ = [
    "Head", "Stored", "Item", "META_KEY", "TRANSACTION_BYTES", "TTL_ATTRIBUTE", "record_key", "head_key", "entry_key",
    "entry_prefix", "NAMESPACES", "LISTED", "SHARDS", "namespace_pk", "listed_space", "shard_pk", "shard_pks",
    "pk_of", "token", "record_item", "record_of", "head_item",
    "head_of", "entry_item", "entry_of", "alive", "seq_of", "verified",
]  # fmt: skip

Item = dict[str, Any]
"""One item in DynamoDB's wire form: ``{"pk": {"S": "..."}, "v": {"N": "3"}, …}``."""

TTL_ATTRIBUTE: Final = "ttl"
META_KEY: Final[Item] = {"pk": {"S": "#statekeel"}, "sk": {"S": "#schema"}}
_SEQ_DIGITS: Final = 20
TRANSACTION_BYTES: Final = 3_500_000
"""What statekeel puts in one TransactWriteItems at most (by a rough measure): under DynamoDB's 4 MB."""
NAMESPACES: Final = ("keys/", "subjects/")
"""Store-level namespaces the core lists at open or per call (keystore, erasure subjects):
one fixed item collection each, ``pk = "nkeys"`` / ``"nsubjects"``."""
LISTED: Final = ("events/", "memory/", "lgstore/")
"""Namespaces the core lists across their partitions (event streams, memory namespaces,
LangGraph store namespaces): each partition's items live in one of :data:`SHARDS` fixed item
collections ``pk = "n<namespace>#<shard>"``, so a listing merges that many Queries instead of
Scanning the table. (Session, run and decision listings read the index partitions ``idx/…``,
already one item collection each.)"""
SHARDS: Final = 4
"""Item collections per listed namespace: a listing page costs this many Queries; writes to the
namespace spread over this many partition keys."""

@dataclass(frozen=True, slots=True)
class Stored:
    """A record as stored: the record, its checksum and its write token."""

    record: Record
    checksum: int | None
    """None: written without one (never by this code) — read unchecked."""
    token: str


@dataclass(frozen=True, slots=True)
class Head:
    """A log's header item."""

    log: str
    first: int
    last: int
    created_at: float
    updated_at: float
    expires_at: float | None
    gens: tuple[tuple[int, str], ...]
    """``(first seq, generation)`` ranges, ascending: entry ``seq`` is visible only
    when it carries the generation of the last range starting at or below it."""
    token: str

    def gen_at(self, seq: int) -> str:
        """The generation entry ``seq`` must carry to be visible."""
        found = self.gens[0][1]
        for start, gen in self.gens:
            if start > seq:
                break
            found = gen
        return found

    def info(self) -> LogInfo:
        return LogInfo(self.log, self.first, self.last, self.created_at, self.updated_at, self.expires_at)


def alive(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


def token() -> str:
    """A fresh write token (also used for generations)."""
    return secrets.token_hex(8)


def namespace_pk(name: str) -> str | None:
    """The fixed ``pk`` of a store-level namespace ``name`` (a key or a prefix) lives in, if any.

    Keys under :data:`NAMESPACES` are each their own partition, so with ``"p" + partition``
    listing one of them (the keystore probe every ``open`` makes) would Scan the table;
    one item collection per namespace makes that a Query, O(result)."""
    for space in NAMESPACES:
        if name.startswith(space):
            return "n" + space[:-1]
    return None


_LISTED_RE: Final = re.compile(r"(?:[^/~]*~)?(?:%s)/" % "|".join(space[:-1] for space in LISTED))
"""A listed namespace, inside a tenant's key space (``acme~memory/``) too."""


def listed_space(name: str) -> str | None:
    """The listed namespace (:data:`LISTED`, tenant prefix included) ``name`` — a key, log or
    prefix — falls in, if any."""
    found = _LISTED_RE.match(name)
    return None if found is None else found.group(0)


def shard_pk(space: str, part: str) -> str:
    """The item collection of partition ``part`` of listed namespace ``space`` (stable: crc32)."""
    return f"n{space[:-1]}#{zlib.crc32(part.encode('utf-8')) % SHARDS}"


def shard_pks(space: str) -> list[str]:
    """Every item collection of listed namespace ``space``: what a listing across it merges."""
    return [f"n{space[:-1]}#{i}" for i in range(SHARDS)]


def pk_of(key: str) -> str:
    fixed = namespace_pk(key)
    if fixed is not None:
        return fixed
    part = partition(key)
    space = listed_space(key)
    return "p" + part if space is None else shard_pk(space, part)


def record_key(key: str) -> Item:
    return {"pk": {"S": pk_of(key)}, "sk": {"S": "k" + key}}


def head_key(log: str) -> Item:
    return {"pk": {"S": pk_of(log)}, "sk": {"S": "h" + log}}


def entry_prefix(log: str) -> str:
    return f"e{log}\0"


def entry_key(log: str, seq: int) -> Item:
    return {"pk": {"S": pk_of(log)}, "sk": {"S": f"{entry_prefix(log)}{seq:0{_SEQ_DIGITS}d}"}}


def seq_of(sk: str) -> int:
    return int(sk[-_SEQ_DIGITS:])


def _num(value: float | int) -> dict[str, str]:
    return {"N": repr(value)}


def _expiry(item: Item, expires_at: float | None, *, ttl: bool) -> Item:
    if expires_at is not None:
        item["ea"] = _num(expires_at)
        if ttl:
            item[TTL_ATTRIBUTE] = _num(math.ceil(expires_at))
    return item


def record_item(rec: Record, checksum: int, write_token: str) -> Item:
    item = {**record_key(rec.key), "d": {"B": rec.data}, "c": {"S": rec.codec}, "v": _num(rec.version),
            "ca": _num(rec.created_at), "ua": _num(rec.updated_at), "s": _num(checksum), "w": {"S": write_token}}
    return _expiry(item, rec.expires_at, ttl=True)  # fmt: skip


def head_item(head: Head) -> Item:
    item = {**head_key(head.log), "f": _num(head.first), "l": _num(head.last), "ca": _num(head.created_at),
            "ua": _num(head.updated_at), "g": {"S": _gens_text(head.gens)}, "w": {"S": head.token}}
    return _expiry(item, head.expires_at, ttl=False)  # fmt: skip


def entry_item(entry: Entry, checksum: int, gen: str) -> Item:
    return {**entry_key(entry.log, entry.seq), "d": {"B": entry.data}, "c": {"S": entry.codec},
            "ca": _num(entry.created_at), "s": _num(checksum), "g": {"S": gen}}  # fmt: skip


def _opt(item: Item, name: str) -> float | None:
    found = item.get(name)
    return float(found["N"]) if found is not None else None


def record_of(key: str, item: Item) -> Stored:
    """The stored record of ``item`` (checksum not verified yet; see :func:`verified`)."""
    try:
        rec = Record(key, bytes(item["d"]["B"]), item["c"]["S"], int(item["v"]["N"]), float(item["ca"]["N"]),
                     float(item["ua"]["N"]), _opt(item, "ea"))  # fmt: skip
        stored = _opt(item, "s")
        return Stored(rec, None if stored is None else int(stored), item.get("w", {}).get("S", ""))
    except (KeyError, ValueError, TypeError) as exc:
        raise _damaged(f"record {key!r}", exc, key) from None


def verified(stored: Stored) -> Record:
    rec = stored.record
    verify_record(rec.key, rec.codec, rec.data, rec.version, stored.checksum)
    return rec


def head_of(log: str, item: Item) -> Head:
    try:
        return Head(log, int(item["f"]["N"]), int(item["l"]["N"]), float(item["ca"]["N"]), float(item["ua"]["N"]),
                    _opt(item, "ea"), _gens_of(item["g"]["S"]), item["w"]["S"])  # fmt: skip
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise _damaged(f"the header of log {log!r}", exc, log) from None


def _gens_text(gens: tuple[tuple[int, str], ...]) -> str:
    return ";".join(f"{start}:{gen}" for start, gen in gens)


def _gens_of(text: str) -> tuple[tuple[int, str], ...]:
    pairs = [part.split(":", 1) for part in text.split(";")]
    return tuple((int(start), gen) for start, gen in pairs)


def entry_of(log: str, item: Item) -> tuple[Entry, str]:
    """The entry of ``item``, its checksum verified, and its generation."""
    seq = seq_of(item["sk"]["S"])
    try:
        entry = Entry(log, seq, bytes(item["d"]["B"]), item["c"]["S"], float(item["ca"]["N"]))
        stored, gen = _opt(item, "s"), item["g"]["S"]
    except (KeyError, ValueError, TypeError) as exc:
        raise _damaged(f"entry {seq} of log {log!r}", exc, log, seq) from None
    verify_entry(log, seq, entry.codec, entry.data, None if stored is None else int(stored))
    return entry, gen


def _damaged(what: str, exc: Exception, key: str, seq: int | None = None) -> CorruptionError:
    return CorruptionError(
        f"{what} is damaged: its stored attributes cannot be read ({exc!r}); run `statekeel doctor` to list "
        "every damaged record, then restore it from a backup or delete it", key, seq,
    )  # fmt: skip
