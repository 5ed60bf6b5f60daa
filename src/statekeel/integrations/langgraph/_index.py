"""The LangGraph store's index by write time: ``search`` newest first in O(page), not O(items).

Every put writes, in the same atomic batch as the item, one entry per namespace enclosing it
(its own, its parent's, … up to the root ``()``), so a search of any namespace prefix walks one
run of keys::

    lgsindex/n<first label>/l<item prefix of the namespace>/<~time>/<rest of the item key>
    lgsindex/r/<~time>/<item key without lgstore/>                        (the root)

``~time`` is the item's write time (``"u"`` in its document) with its bits mirrored, 16 hex
digits, so key order is newest first; items written in one batch share a time and follow in item
key order, as the scan ordered them. The namespaces under one first label share a partition (one
item collection on DynamoDB; a put writes three partitions, however deep its namespace). A put or
a delete first reads the item it replaces (one ``get_many`` per batch, with the format record) and
deletes that write's entries.

Entries never expire. One whose item is gone (deleted by a racing writer, expired) or was written
again since (its time is not the item's) is *dangling*: a walk skips it and the store deletes it
with the batch's writes; :func:`prune` drops every dangling entry (``sweep_ttl`` runs it after
purging: a pass over the index, a table scan on DynamoDB). An entry is never needed that is missing: the batch that writes an item writes its entries.

The format record (:data:`~statekeel.core.layout.LANGGRAPH_STORE_FORMAT`) says which index the
items carry: ``{"index": 1}`` once every item has its entries, ``{"index": 1, "after": key}``
while :func:`build` indexes a store written before (resumable, from ``after``). A store whose
record names a newer index is searched by scan and not written by this code (``SchemaTooNewError``).
Writers older than the index (before session 30) do not read the record: upgrade every process
before one writes; ``StatekeelStore.build_index(again=True)`` re-indexes after a downgrade.
"""

from __future__ import annotations

import struct
from typing import Any

from ...core import Core, layout
from ...errors import ConflictError, SchemaTooNewError, StatekeelError
from ...protocol import ANY, Delete, Op, Put, Record, keys, op_target
from . import _filters, _search
from ._steps import GetMany, Scan, Steps

__all__ = ["INDEX_VERSION", "build", "entry_ops", "forget_ops", "prune", "ready", "walk", "writable", "written"]

INDEX_VERSION = 1
"""The index this code writes and walks."""

ITEMS = layout.langgraph_store_prefix(())
INDEX = "lgsindex/"
FORMAT = layout.LANGGRAPH_STORE_FORMAT
_ROOT = layout.langgraph_store_index_prefix(())[len(INDEX) :]
_STAMP = 16
_MASK = (1 << 64) - 1
_BUILD_PAGE = 100
_PAGE = 500


def stamp(written_at: float) -> str:
    """``written_at`` as 16 hex digits that sort newest first (mirrored bits of the double)."""
    bits: int = struct.unpack(">Q", struct.pack(">d", max(float(written_at), 0.0)))[0]
    return format(_MASK - bits, "016x")


def parse(item_key: str) -> tuple[tuple[str, ...], str]:
    """``(namespace, key)`` of an item's record key."""
    parts = keys.split(item_key)
    return tuple(label[1:] for label in parts[1:-1]), parts[-1][1:]


def entry_keys(namespace: tuple[str, ...], item_key: str, written_at: float) -> list[str]:
    """The item's entries: one under each namespace enclosing it, the root included."""
    when = stamp(written_at) + "/"
    out = []
    for depth in range(len(namespace) + 1):
        level = namespace[:depth]
        rest = item_key[len(layout.langgraph_store_prefix(level)) :]
        out.append(layout.langgraph_store_index_prefix(level) + when + rest)
    return out


def entry_ops(core: Core, namespace: tuple[str, ...], item_key: str, written_at: float) -> list[Op]:
    """Puts of the entries of an item written at ``written_at``."""
    out: list[Op] = []
    for key in entry_keys(namespace, item_key, written_at):
        data, codec = core.codec.encode(0, "a LangGraph store index entry", key)
        out.append(Put(key, data, codec, ANY))
    return out


def forget_ops(core: Core, old: Record) -> list[Op]:
    """Deletes of the entries of the item ``old`` (the write a put or delete replaces); none if its
    time cannot be read (its entries then dangle, harmlessly, until a walk or :func:`prune`)."""
    when = written(core, old)
    return [] if when is None else [Delete(k) for k in entry_keys(parse(old.key)[0], old.key, when)]


def written(core: Core, rec: Record) -> float | None:
    """The write time of an item's record (None: unreadable)."""
    when = _search.written_at(rec)
    if when is not None:
        return when
    try:
        return float(core.codec.decode(rec.data, rec.codec, rec.key)["u"])
    except (StatekeelError, KeyError, TypeError, ValueError):
        return None


# -- the format record ---------------------------------------------------------------------------
def _format(core: Core, rec: Record | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    doc = core.codec.decode(rec.data, rec.codec, rec.key)
    return doc if type(doc) is dict else {}


def writable(core: Core, rec: Record | None) -> None:
    """Refuse to write items of a store whose index is newer than this code's (``rec``: the
    format record, read with the items a batch replaces)."""
    version = (_format(core, rec) or {}).get("index", 0)
    if type(version) is not int or version > INDEX_VERSION:
        raise SchemaTooNewError(
            f"the LangGraph store's items carry index version {version!r}, newer than this statekeel "
            f"writes ({INDEX_VERSION}); upgrade the statekeel package"
        )


def ready(core: Core) -> bool:
    """Whether searches may walk the index: builds it first if the store was written before it
    (or the build was interrupted); False if the index is newer than this code (scan instead)."""
    while True:
        rec = core.backend.get(FORMAT)
        doc = _format(core, rec)
        if doc is not None and doc.get("index") != INDEX_VERSION:
            return False
        if doc is not None and "after" not in doc:
            return True
        try:
            build(core, rec, None if doc is None else str(doc["after"]))
            return True
        except ConflictError:  # another process moved the build on, or finished it: read again
            continue


def build(core: Core, rec: Record | None, after: str | None) -> None:
    """Index every item from ``after`` on, a page per batch with the progress (resumable)."""
    expect = None if rec is None else rec.version
    while True:
        page = core.backend.scan(ITEMS, after=after, limit=_BUILD_PAGE)
        ops: list[Op] = []
        for item in page:
            when = written(core, item)
            if when is not None:
                ops += entry_ops(core, parse(item.key)[0], item.key, when)
        for part in _by_partition(ops):  # no atomicity needed: entries are idempotent, the progress last
            core.backend.apply(part)
        done = len(page) < _BUILD_PAGE
        after = None if done else page[-1].key
        mark = {"index": INDEX_VERSION} if after is None else {"index": INDEX_VERSION, "after": after}
        data, codec = core.codec.encode(mark, "the LangGraph store's format", FORMAT)
        result = core.backend.apply([Put(FORMAT, data, codec, expect)])[0]
        assert isinstance(result, Record)
        expect = result.version
        if done:
            return


def _by_partition(ops: list[Op]) -> list[list[Op]]:
    """``ops`` in one batch per partition (a tiered write-behind store hydrates each before writing it)."""
    groups: dict[str, list[Op]] = {}
    for op in ops:
        groups.setdefault(keys.partition(op_target(op)), []).append(op)
    return list(groups.values())


# -- reading ---------------------------------------------------------------------------------------
Found = _search.Found


def walking(core: Core, prefix: tuple[str, ...], filt: dict[str, Any] | None, offset: int,
            limit: int) -> Steps[tuple[list[Found], list[str]]]:  # fmt: skip
    """The items under ``prefix`` matching ``filt``, newest first, ``offset``/``limit`` applied —
    reading entries until the page is full — and the dangling entries met on the way (as steps:
    :func:`~._steps.run` or :func:`~._steps.arun` reads them)."""
    wanted, decode, needles = offset + limit, _search.decoder(core), _search.probes(filt)
    index, items = layout.langgraph_store_index_prefix(prefix), layout.langgraph_store_prefix(prefix)
    start = len(index) + _STAMP + 1
    found: list[tuple[Record, dict[str, Any] | None]] = []
    dangling: list[str] = []
    after, walked, size = None, 0, min(_PAGE, max(4 * wanted, 64) if filt else wanted + 2)
    while len(found) < wanted and (entries := (yield Scan(index, after, size))):
        pairs = []
        for entry, rec in zip(entries, (yield GetMany([items + e.key[start:] for e in entries]))):
            if rec is None:
                dangling.append(entry.key)  # deleted or expired
            elif not filt or rec.codec != _search.PLAIN or all(n in rec.data for n in needles):
                pairs.append((entry.key[len(index) : start - 1], rec))
        docs: list[dict[str, Any] | None] = list(decode([r for _, r in pairs])) if filt else [None] * len(pairs)
        for (when, rec), doc in zip(pairs, docs):  # only an item that matches needs its entry checked
            if doc is not None and not _filters.matches(doc["v"], filt or {}):
                continue
            if _current(core, rec, doc, when):
                found.append((rec, doc))
            else:  # written again since: its current entry is elsewhere in the index
                dangling.append(index + when + "/" + rec.key[len(items) :])
        if len(entries) < size:
            break
        after, walked = entries[-1].key, walked + len(entries)
        size = _next_size(wanted - len(found), len(found), walked)
    chosen = found[offset:wanted]
    later = iter(decode([rec for rec, doc in chosen if doc is None]))
    return [(rec, doc if doc is not None else next(later)) for rec, doc in chosen], dangling


def _next_size(need: int, got: int, walked: int) -> int:
    """Entries to read next: enough for the ``need`` items still missing at the rate matched so far
    (a quarter more), at most as many as read so far again — so a walk reads at most about twice
    the entries its page needs, however the matches cluster."""
    estimate = int(need * walked / got * 1.25) + 4 if got else walked
    return min(_PAGE, walked, max(16, estimate))


def _current(core: Core, rec: Record, doc: dict[str, Any] | None, when: str) -> bool:
    """Whether ``rec`` was written at the time its entry says (else the entry is stale)."""
    try:
        written_at = written(core, rec) if doc is None else float(doc["u"])
    except (KeyError, TypeError, ValueError):
        return False
    return written_at is not None and stamp(written_at) == when


def prune(core: Core) -> int:
    """Delete every dangling entry (items expired, deleted or written again meanwhile); returns
    how many went. O(entries): ``sweep_ttl`` runs it after purging."""
    gone, after = 0, None
    while entries := core.backend.scan(INDEX, after=after, limit=_PAGE):
        split = [_split(e.key) for e in entries]
        recs = core.backend.get_many([item_key for _, item_key in split])
        doomed: list[Op] = []
        for entry, (when_stamp, _), rec in zip(entries, split, recs):
            when = None if rec is None else written(core, rec)
            if when is None or stamp(when) != when_stamp:
                doomed.append(Delete(entry.key))
        for part in _by_partition(doomed):
            core.backend.apply(part)
        gone += len(doomed)
        if len(entries) < _PAGE:
            return gone
        after = entries[-1].key
    return gone


def _split(entry_key: str) -> tuple[str, str]:
    """``(~time, item key)`` of an entry's key."""
    body = entry_key[len(INDEX) :]
    if body.startswith(_ROOT):
        prefix, rest = ITEMS, body[len(_ROOT) :]
    else:
        _, level, rest = body.split("/", 2)
        prefix = keys.unescape(level)[1:]
    return rest[:_STAMP], prefix + rest[_STAMP + 1 :]
