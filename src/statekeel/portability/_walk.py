"""What export, import and copy share: opening either end, choosing what to move,
walking records and log entries page by page, and order-free content checksums."""

from __future__ import annotations

import hashlib
import json
from itertools import zip_longest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from ..backends import open_backend
from ..core import layout
from ..errors import InvalidInputError
from ..protocol import Backend, Entry, LogInfo, Record, keys

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "Source",
    "Selection",
    "Progress",
    "ProgressFn",
    "Digest",
    "opened",
    "selection",
    "iter_records",
    "iter_logs",
    "iter_entries",
    "same_entries",
    "record_digest",
    "log_digest",
    "Checksums",
]

PAGE = 500
Source = Union[str, "Store", Backend]
"""A store URL, an open :class:`~statekeel.Store`, or a backend."""


@dataclass
class Progress:
    """Where a copy, export or import stands; passed to the ``progress`` callback."""

    phase: str
    """``records``, ``logs`` or ``verify``."""
    records: int = 0
    """Records read from the source so far."""
    logs: int = 0
    """Logs started so far."""
    entries: int = 0
    """Log entries read from the source so far."""
    written: int = 0
    """Records and entries actually written (the rest were already there)."""


ProgressFn = Callable[[Progress], None]


@contextmanager
def opened(source: Source, **options: object) -> Iterator[Backend]:
    """The backend of ``source``; closed afterwards only if it was opened here."""
    if isinstance(source, Backend):
        yield source
    elif isinstance(source, str):
        backend = open_backend(source, **options)
        try:
            yield backend
        finally:
            backend.close()
    elif isinstance(getattr(source, "backend", None), Backend):
        yield source.backend
    else:
        raise InvalidInputError(f"expected a store URL, a Store or a Backend, got {type(source).__name__}")


@dataclass(frozen=True)
class Selection:
    """Key prefixes and exact keys to move; the whole store is ``Selection(("",))``."""

    prefixes: tuple[str, ...] = ("",)
    exact: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        return {"prefixes": list(self.prefixes), "keys": list(self.exact)}


def _partition_selection(kind: str, ident: str) -> tuple[list[str], list[str]]:
    part = layout.partition(kind, ident)
    exact = [layout.keystore_key(part)]  # the partition's wrapped data key, if encrypted
    if kind == "session":
        exact.append(layout.session_index_key(ident))
        return [part + "/", layout.decision_index_prefix(ident)], exact
    return [part + "/"], exact


def selection(session: str | None = None, scope: str | None = None) -> Selection:
    """What ``export_store(session=, scope=)`` moves; both None = everything."""
    if session is None and scope is None:
        return Selection()
    prefixes: list[str] = []
    exact: list[str] = []
    if session is not None:
        p, e = _partition_selection("session", session)
        prefixes += p
        exact += e
    if scope is not None:
        from ..features.state import parse_scope

        parsed = parse_scope(scope)
        if parsed.kind == "temp":
            raise InvalidInputError("the temp scope is never stored, so there is nothing to export")
        p, e = _partition_selection(parsed.kind, parsed.id)
        prefixes += p
        exact += e
    kept = sorted(set(prefixes))
    kept = [p for p in kept if not any(p != q and p.startswith(q) for q in kept)]
    return Selection(tuple(kept), tuple(sorted(set(exact))))


# -- walking ------------------------------------------------------------------
def iter_records(backend: Backend, sel: Selection, page: int = PAGE) -> Iterator[list[Record]]:
    """Pages of live records of ``sel``: each prefix in key order, then the exact keys."""
    for prefix in sel.prefixes:
        after: str | None = None
        while found := backend.scan(prefix, after=after, limit=page):
            yield found
            after = found[-1].key
    single = [r for r in backend.get_many(list(sel.exact)) if r is not None] if sel.exact else []
    if single:
        yield single


def iter_logs(backend: Backend, sel: Selection, page: int = 100) -> Iterator[LogInfo]:
    """Live, non-empty logs of ``sel``."""
    for prefix in sel.prefixes:
        after: str | None = None
        while found := backend.scan_logs(prefix, after=after, limit=page):
            yield from found
            after = found[-1].log
    for key in sel.exact:
        info = backend.log_info(key)
        if info is not None:
            yield info


def iter_entries(backend: Backend, info: LogInfo, start: int | None = None, page: int = PAGE) -> Iterator[list[Entry]]:
    """The entries of ``info.log`` from ``start`` up to ``info.last_seq``, in seq windows."""
    seq = info.first_seq if start is None else max(start, info.first_seq)
    stop = info.last_seq + 1
    while seq < stop:
        found = backend.read(info.log, start=seq, stop=min(stop, seq + page))
        if found:
            yield found
        seq += page


def same_entries(a: Backend, a_info: LogInfo, b: Backend, b_info: LogInfo) -> bool:
    """True when both logs hold exactly the same entries (streamed, not loaded)."""
    left = (e for batch in iter_entries(a, a_info) for e in batch)
    right = (e for batch in iter_entries(b, b_info) for e in batch)
    return all(x == y for x, y in zip_longest(left, right))


# -- checksums ----------------------------------------------------------------
def _meta(*fields: object) -> bytes:
    return json.dumps(fields, ensure_ascii=True).encode("ascii") + b"\n"


def record_digest(r: Record) -> bytes:
    """SHA-256 of everything a record is: key, bytes, codec, version, times, expiry."""
    h = hashlib.sha256(_meta("record", r.key, r.codec, r.version, r.created_at, r.updated_at, r.expires_at))
    h.update(r.data)
    return h.digest()


def entry_digest(e: Entry) -> bytes:
    h = hashlib.sha256(_meta("entry", e.log, e.seq, e.codec, e.created_at))
    h.update(e.data)
    return h.digest()


def log_digest(info: LogInfo) -> bytes:
    """SHA-256 of a log's bounds and expiry (its entries are summed separately)."""
    return hashlib.sha256(_meta("log", info.log, info.first_seq, info.last_seq, info.expires_at)).digest()


@dataclass
class Digest:
    """An order-free checksum of a set of items: the sum of their SHA-256 mod 2**256."""

    count: int = 0
    total: int = 0

    def add(self, digest: bytes) -> None:
        self.count += 1
        self.total = (self.total + int.from_bytes(digest, "big")) % (1 << 256)

    @property
    def hex(self) -> str:
        return f"{self.total:064x}"


@dataclass
class Checksums:
    """Counts and order-free checksums of records, logs and entries."""

    records: Digest
    logs: Digest
    entries: Digest

    @classmethod
    def empty(cls) -> Checksums:
        return cls(Digest(), Digest(), Digest())

    def add_records(self, found: list[Record]) -> None:
        for r in found:
            self.records.add(record_digest(r))

    def add_entries(self, found: list[Entry]) -> None:
        for e in found:
            self.entries.add(entry_digest(e))

    def counts(self) -> dict[str, int]:
        return {"records": self.records.count, "logs": self.logs.count, "entries": self.entries.count}

    def sums(self) -> dict[str, str]:
        return {
            "algorithm": "sum of sha256 mod 2**256, v1",
            "records": self.records.hex,
            "logs": self.logs.hex,
            "entries": self.entries.hex,
        }

    @classmethod
    def of(cls, backend: Backend, sel: Selection) -> Checksums:
        """Read everything ``sel`` selects and sum it up."""
        out = cls.empty()
        for found in iter_records(backend, sel):
            out.add_records(found)
        for info in iter_logs(backend, sel):
            out.logs.add(log_digest(info))
            for batch in iter_entries(backend, info):
                out.add_entries(batch)
        return out
