"""``search`` without a query over a namespace's items, decoding only what it must.

LangGraph's stores return the items of a namespace prefix that pass the filter, newest
write first (``updated_at DESC``), from ``offset``. The order needs every matching item's
write time, so every record of the prefix is looked at — but not every one is decoded:

* an item stored as plain ``json`` (no tagged types, compression or encryption: the usual
  LangGraph value) holds each top-level string clause of the filter as the bytes
  ``"key":"value"``, so a record without them cannot match and is skipped undecoded (one
  bytes search); the rest are decoded in bulk (one JSON parse per page) and filtered exactly;
* without a filter, the write time of a plain ``json`` item is read from the end of its bytes
  (its document ends ``,"u":<time>,"ttl":<ttl>}``) and only the page returned is decoded.

Anything else (another codec, an unexpected layout) is decoded as before, so results are the
same as decoding everything (tests compare them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from ...codec_msg import decode_run
from ...core import Core
from ...protocol import Record
from . import _filters

__all__ = ["Found", "PLAIN", "decoder", "probes", "search", "written_at"]

Found = tuple[Record, dict[str, Any]]
"""A matching item's record and its decoded document ``{"v": value, "u": written, "ttl": ...}``."""

PLAIN = "json"


def probes(filt: dict[str, Any] | None) -> list[bytes]:
    """Bytes every plain ``json`` item matching ``filt`` holds: ``"key":"value"`` per top-level
    string equality clause (other clauses are checked after decoding)."""
    out = []
    for key, expected in (filt or {}).items():
        if isinstance(expected, dict) and set(expected) == {"$eq"}:
            expected = expected["$eq"]
        if type(key) is str and type(expected) is str:  # surrogatepass: a lone surrogate is never stored
            out.append((_dump(key) + ":" + _dump(expected)).encode("utf-8", "surrogatepass"))
    return out


def _dump(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # as the codec writes strings (compact, not ASCII-escaped)


def written_at(rec: Record) -> float | None:
    """The write time at the end of a plain ``json`` item's bytes (None: read it by decoding)."""
    data = rec.data
    start = data.rfind(b',"u":')
    end = data.find(b',"ttl":', start)
    if rec.codec != PLAIN or start < 0 or end < 0 or data.find(b"}", end) != len(data) - 1:
        return None
    try:
        return float(data[start + 5 : end])
    except ValueError:
        return None


def search(core: Core, pages: Iterable[list[Record]], filt: dict[str, Any] | None, offset: int,
           limit: int) -> list[Found]:  # fmt: skip
    """The items of ``pages`` matching ``filt``, newest write first, ``offset``/``limit`` applied."""
    decode = decoder(core)
    needles = probes(filt)
    found: list[tuple[float, Record, dict[str, Any] | None]] = []
    for page in pages:
        if filt:
            cands = [r for r in page if r.codec != PLAIN or all(n in r.data for n in needles)]
            for rec, doc in zip(cands, decode(cands)):
                if _filters.matches(doc["v"], filt):
                    found.append((float(doc["u"]), rec, doc))
            continue
        stamps = [written_at(rec) for rec in page]
        later = iter(decode([rec for rec, u in zip(page, stamps) if u is None]))
        for rec, u in zip(page, stamps):  # in key order: items written in one batch share a time
            if u is None:
                doc = next(later)
                found.append((float(doc["u"]), rec, doc))
            else:
                found.append((u, rec, None))
    found.sort(key=lambda item: -item[0])  # stable: ties stay in key order
    chosen = found[offset : offset + limit]
    missing = [rec for _, rec, doc in chosen if doc is None]
    docs = dict(zip((r.key for r in missing), decode(missing)))
    return [(rec, doc if doc is not None else docs[rec.key]) for _, rec, doc in chosen]


def decoder(core: Core) -> Callable[[list[Record]], list[dict[str, Any]]]:
    """Decode records: plain ``json`` ones in one parse, others (and damaged ones) one by one by key."""
    codec = core.codec

    def decode(recs: list[Record]) -> list[dict[str, Any]]:
        plain = [r for r in recs if r.codec == PLAIN]
        bulk = decode_run([(r.data, PLAIN) for r in plain]) if plain else []
        if bulk is None or not all(type(d) is dict for d in bulk):
            bulk = [codec.decode(r.data, r.codec, r.key) for r in plain]
        done = iter(bulk)
        return [next(done) if r.codec == PLAIN else codec.decode(r.data, r.codec, r.key) for r in recs]

    return decode
