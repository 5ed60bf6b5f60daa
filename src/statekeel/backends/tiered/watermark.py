"""The watermark: how far PostgreSQL replayed the write-behind queue, and which batches it replayed.

:data:`.names.WATERMARK` (in PostgreSQL) holds the queue's epoch (``repr`` of the queue log's
``created_at``), the last replayed seq, and — since session 30 — the *identity* of the entry
replayed at that seq (:func:`identity`, a digest of its bytes) and its ``created_at`` in Redis.
Each replay transaction also writes one slot of a ring of :data:`SLOTS` records
(:data:`.names.REPLAYED`): the identities of the batches it replayed, by seq. Together they
let a flush tell that Redis' queue is no longer the one PostgreSQL replayed — a failover to a
replica that lacked the last writes, or Redis restored from an older copy: same epoch, but
different batches at the same seqs — and find where the two still agree (:mod:`.divergence`).

A watermark written before (epoch and seq only) is still read: its entry is not checked until
the next replay writes one with an identity.

Earlier epochs: when the watermark moves on to a new queue (Redis lost its data, a new queue was
started), it keeps where it had replayed the old one to (``past``: the last :data:`PAST` epochs,
newest first). A queue of one of those epochs coming back — Redis restored from a copy taken before
the wipe — is resumed after what was replayed of it (:attr:`Watermark.returned`; the flush
reconciles it as a diverged queue: :mod:`.divergence`), not replayed from its start a second time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from types import EllipsisType
from typing import Any

from ...protocol import Backend, Entry, Put, Record
from .names import REPLAYED, WATERMARK

ID_LEN = 16
"""Characters of one identity (:func:`identity`: 8 bytes, hex)."""
SLOTS = 2048
"""Slots of the ring of replayed identities: one per replay transaction, so the ring holds the
identities of at least the last :data:`SLOTS` replayed batches (more when groups hold several)."""
PAST = 16
"""Earlier queue epochs the watermark remembers (where each was replayed to)."""


def identity(entry: Entry) -> str:
    """A digest of a queue entry's bytes: the batch's ops and its clock, so two batches
    written at the same seq by different timelines differ."""
    digest = hashlib.blake2b(entry.data, digest_size=8, person=entry.codec.encode()[:16])
    return digest.hexdigest()


def slot_key(n: int) -> str:
    """The ring slot the ``n``-th replay transaction writes."""
    return f"{REPLAYED}{n % SLOTS:04d}"


class Watermark:
    """The last queue seq PostgreSQL committed, for the queue of one epoch, and its entry's identity."""

    def __init__(self, cold: Backend, epoch: float, rec: Record | None | EllipsisType = ...) -> None:
        """``rec``: the watermark record as the caller read it (by default, read now)."""
        self.cold = cold
        self.epoch = epoch
        rec = cold.get(WATERMARK) if isinstance(rec, EllipsisType) else rec
        self.version = rec.version if rec is not None else None
        doc = _doc(rec)
        current = _place(doc)
        self.past = [p for p in _past(doc) if p[0] != repr(epoch)]
        """Earlier epochs and where they were replayed to (epoch, seq, id, at), newest first — written
        back with every move of the watermark; the one it leaves is added when it moves to another."""
        if current is not None and current[0] != repr(epoch):
            self.past = [current, *self.past][:PAST]
        place = current if current is not None and current[0] == repr(epoch) else _find(_past(doc), repr(epoch))
        self.returned = place is not None and place is not current
        """The queue is of an epoch the watermark had left (Redis restored from a copy taken before it
        lost its data): its cache is older than what PostgreSQL holds, and what of it was replayed is
        known only from ``seq`` and the ring — the flush reconciles it (:mod:`.divergence`)."""
        self.seq = place[1] if place is not None else 0
        self.id: str | None = place[2] if place is not None else None
        """The identity of the entry replayed at ``seq`` (None: a watermark of the earlier format)."""
        self.at: float | None = place[3] if place is not None else None
        """That entry's ``created_at`` in Redis (the queue's ``updated_at`` while it is the last one)."""
        self.turn = int(doc.get("turn", 0))
        """How many replay transactions wrote a ring slot (any epoch): the next one writes slot ``turn + 1``."""

    def ops(self, replayed: Sequence[Entry]) -> list[Put]:
        """The watermark moved to the last of ``replayed`` (compare-and-set) and its ring slot,
        written first in the transaction that replays them."""
        ids = [identity(e) for e in replayed]
        last, turn = replayed[-1], self.turn + 1
        mark = {"epoch": repr(self.epoch), "seq": last.seq, "id": ids[-1], "at": last.created_at, "turn": turn,
                "past": self.past}  # fmt: skip
        slot = {"epoch": repr(self.epoch), "first": replayed[0].seq, "ids": "".join(ids)}  # replayed: consecutive seqs
        return [
            Put(WATERMARK, json.dumps(mark).encode(), "json", expect=self.version),
            Put(slot_key(turn), json.dumps(slot).encode(), "json"),
        ]

    def moved_back(self, entry: Entry) -> Put:
        """The watermark put back to ``entry`` (where Redis' diverged queue still agrees with PostgreSQL)."""
        mark = {"epoch": repr(self.epoch), "seq": entry.seq, "id": identity(entry), "at": entry.created_at,
                "turn": self.turn, "past": self.past}  # fmt: skip
        return Put(WATERMARK, json.dumps(mark).encode(), "json", expect=self.version)

    def advanced(self, last: Entry, rec: object, turn: int | None = None) -> None:
        """``last`` committed with the watermark record ``rec`` (and ring slot ``turn``, if one was written)."""
        assert isinstance(rec, Record)
        self.seq, self.id, self.at, self.version = last.seq, identity(last), last.created_at, rec.version
        self.returned = False
        self.turn = self.turn + 1 if turn is None else turn

    def matches(self, entry: Entry) -> bool:
        """Whether ``entry`` is the one replayed at the watermark (True if the watermark cannot tell)."""
        return self.id is None or (entry.seq == self.seq and identity(entry) == self.id)


def slots(cold: Backend, epoch: str) -> Iterator[tuple[str, int, str]]:
    """The ring's slots of queue epoch ``epoch``: (key, first seq, the identities from it on, concatenated)."""
    after: str | None = None
    while page := cold.scan(REPLAYED, after=after, limit=500):
        for rec in page:
            doc = _doc(rec)
            if doc.get("epoch") == epoch and isinstance(doc.get("first"), int) and isinstance(doc.get("ids"), str):
                yield rec.key, doc["first"], doc["ids"]
        after = page[-1].key


def split(first: int, ids: str) -> Iterator[tuple[int, str]]:
    """A slot's (seq, identity) pairs."""
    return ((first + i, ids[ID_LEN * i : ID_LEN * (i + 1)]) for i in range(len(ids) // ID_LEN))


def watermark(cold: Backend) -> tuple[str, int]:
    """The queue epoch (``repr`` of its ``created_at``) and seq PostgreSQL committed everything up to."""
    return marked(cold)[:2]


def marked(cold: Backend) -> tuple[str, int, str | None]:
    """:func:`watermark` and the identity of the entry replayed at that seq (None: not recorded)."""
    doc = _doc(cold.get(WATERMARK))
    named = doc.get("id")
    return str(doc.get("epoch", "")), int(doc.get("seq", 0)), named if isinstance(named, str) else None


_Place = tuple[str, int, "str | None", "float | None"]
"""An epoch and where it was replayed to: (epoch, seq, identity of the entry there, its created_at)."""


def _place(doc: dict[str, Any]) -> _Place | None:
    """The watermark's own epoch and place (None: nothing replayed yet)."""
    epoch = doc.get("epoch")
    if not isinstance(epoch, str):
        return None
    return _placed(epoch, int(doc.get("seq", 0)), doc.get("id"), doc.get("at"))


def _past(doc: dict[str, Any]) -> list[_Place]:
    """The earlier epochs a watermark records (entries it cannot read are left out)."""
    return [_placed(*item) for item in doc.get("past") or ()
            if isinstance(item, list) and len(item) == 4 and isinstance(item[0], str) and isinstance(item[1], int)]


def _placed(epoch: str, seq: int, named: object, at: object) -> _Place:
    """A place as read from JSON: an identity that is not a string, or a time that is not a number, is unknown."""
    return epoch, seq, named if isinstance(named, str) else None, float(at) if isinstance(at, (int, float)) else None


def _find(places: list[_Place], epoch: str) -> _Place | None:
    return next((p for p in places if p[0] == epoch), None)


def _doc(rec: Record | None) -> dict[str, Any]:
    doc = json.loads(rec.data) if rec is not None else {}
    return doc if isinstance(doc, dict) else {}
