"""What a memory is: the stored record's shape, the public item and hit types, input checks.

One item is one ordinary record (``memory/n<label>/…/=<key>``, see
:mod:`statekeel.core.layout`) holding ``{"v": value, "t": text, "m": metadata,
"h": content hash, "x": vector}``, encoded by the store's codec — so it is
encrypted, chained and tenant-scoped exactly like every other value. The vector
is ``{"n": embedder name, "d": dimension, "b": float32 bytes}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ...core import Core, layout
from ...core.validate import check_name
from ...errors import InvalidInputError
from ...models import to_datetime
from ...protocol import Record, keys

__all__ = [
    "MemoryHit", "MemoryItem", "Stored", "check_filter", "check_namespace", "content_hash", "decode", "decode_cached",
    "parse_key",
]


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One long-term memory as stored."""

    namespace: tuple[str, ...]
    key: str
    value: Any
    text: str
    """What search matches (given as ``text=``, else derived from the value)."""
    metadata: dict[str, Any]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    expires_at: dt.datetime | None
    embedder: str | None
    """The name of the embedder that made its vector; None when stored text-only."""


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """One search result: the item, its score (higher is better) and why it matched."""

    namespace: tuple[str, ...]
    key: str
    value: Any
    text: str
    metadata: dict[str, Any]
    score: float
    """Reciprocal-rank fusion score in hybrid mode; BM25 for ``mode="text"``; cosine for ``"vector"``."""
    matched: tuple[str, ...]
    """``"text"`` and/or ``"vector"``, then ``"term:<word>"`` for each query word it contains."""
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Stored:
    """A decoded item record, with what ranking needs."""

    record: Record
    namespace: tuple[str, ...]
    key: str
    payload: dict[str, Any]
    stats: Any = None
    """BM25 statistics of the text (:data:`.ranking.DocStats`), when computed."""

    @property
    def text(self) -> str:
        return str(self.payload.get("t", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.payload.get("m")
        return meta if isinstance(meta, dict) else {}

    @property
    def vector(self) -> dict[str, Any] | None:
        vec = self.payload.get("x")
        return vec if isinstance(vec, dict) else None

    def item(self) -> MemoryItem:
        vec = self.vector
        rec = self.record
        return MemoryItem(self.namespace, self.key, self.payload.get("v"), self.text, self.metadata,
                          to_datetime(rec.created_at), to_datetime(rec.updated_at), to_datetime(rec.expires_at),
                          None if vec is None else str(vec.get("n")))

    def hit(self, score: float, matched: tuple[str, ...]) -> MemoryHit:
        rec = self.record
        return MemoryHit(self.namespace, self.key, self.payload.get("v"), self.text, self.metadata, score, matched,
                         to_datetime(rec.created_at), to_datetime(rec.updated_at))


def check_namespace(namespace: Any, what: str = "a memory namespace") -> tuple[str, ...]:
    """``namespace`` as a tuple of names; a str or an empty tuple is refused with an example."""
    if isinstance(namespace, str) or not isinstance(namespace, (tuple, list)):
        raise InvalidInputError(f"{what} must be a tuple of str, e.g. ('user', 'u-7', 'facts'); "
                                f"got {type(namespace).__name__} {namespace!r}")
    if not namespace:
        raise InvalidInputError(f"{what} must have at least one label, e.g. ('user', 'u-7')")
    return tuple(check_name(label, f"a label of {what}") for label in namespace)


def check_filter(flt: Any) -> dict[str, Any]:
    """A metadata filter: a dict of exact values (a list value matches any of its elements)."""
    if flt is None:
        return {}
    if not isinstance(flt, dict) or not all(isinstance(k, str) and k for k in flt):
        raise InvalidInputError(f"filter= takes a dict of metadata field -> value, e.g. {{'kind': 'fact'}}; "
                                f"got {flt!r}")
    return flt


def matches(metadata: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Whether ``metadata`` has every field of ``flt`` equal to its value (or one of a list's values)."""
    for field, want in flt.items():
        have = metadata.get(field, _MISSING)
        if not any(_same(have, w) for w in (want if isinstance(want, list) else [want])):
            return False
    return True


def _same(have: Any, want: Any) -> bool:
    """Equal, and a bool only equals a bool (``True`` is not ``1`` in a filter)."""
    return have is not _MISSING and have == want and isinstance(have, bool) == isinstance(want, bool)


_MISSING = object()


def text_of(value: Any, text: Any) -> str:
    """The text search matches: ``text`` if given, the value if it is a str, else its JSON."""
    if text is not None:
        if not isinstance(text, str):
            raise InvalidInputError(f"text= must be a str, got {type(text).__name__}")
        return text
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"cannot derive searchable text from the value ({exc}); pass text=") from exc


def check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise InvalidInputError(f"metadata= must be a dict with str keys, got {type(metadata).__name__}")
    for field, value in metadata.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"metadata[{field!r}] is {value}; store finite numbers only")
    return metadata


def content_hash(text: str) -> str:
    """The dedup digest of a text: whitespace runs collapsed, case kept."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def parse_key(key: str, root: str) -> tuple[tuple[str, ...], str] | None:
    """``(namespace, item key)`` of an item record key under ``root`` (``memory/``); None for others."""
    parts = key[len(root):].split("/")
    last = parts[-1]
    if not last.startswith("=") or not all(p.startswith("n") for p in parts[:-1]):
        return None
    return tuple(keys.unescape(p[1:]) for p in parts[:-1]), keys.unescape(last[1:])


ROOT = layout.MEMORY_PREFIX


def decode(core: Core, rec: Record) -> Stored | None:
    """The memory item a record holds; None when the record is not one (a pointer, a stray value)."""
    parsed = parse_key(rec.key, ROOT)
    if parsed is None:
        return None
    payload = core.codec.decode(rec.data, rec.codec, rec.key)
    return Stored(rec, parsed[0], parsed[1], payload) if isinstance(payload, dict) else None


_CACHE_MAX: Final = 250_000
_Entry = tuple[tuple[str, ...], str, dict[str, Any], Any]
_caches: weakref.WeakKeyDictionary[Core, dict[tuple[str, str, bytes], _Entry]] = weakref.WeakKeyDictionary()


def decode_cached(core: Core, rec: Record, stats: Callable[[str], Any]) -> Stored | None:
    """:func:`decode` plus ``stats(text)``, remembered per store by the record's exact bytes.

    In-process search reads every record of a namespace per query; decoding and tokenising
    them again each time would dominate. The cache key is (key, codec, stored bytes) — what
    decoding is a function of — so a changed record is a miss, never a stale hit.
    """
    cache = _caches.setdefault(core, {})
    ident = (rec.key, rec.codec, rec.data)
    found = cache.get(ident)
    if found is None:
        doc = decode(core, rec)
        if doc is None:
            return None
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        found = cache[ident] = (doc.namespace, doc.key, doc.payload, stats(doc.text))
    return Stored(rec, *found)
