"""Thread administration: delete, delete the checkpoints of runs, copy, prune.

These walk one thread's records (O(thread)), and never leave a stored value that a
remaining checkpoint needs: after removing checkpoints, a value is kept exactly when
some remaining checkpoint names it or a kept delta builds on it (:func:`_needed`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from ...core import Core, layout
from ...core.session_write import apply_across_partitions
from ...errors import InvalidInputError
from ...protocol import ANY, Delete, Op, Put, Record, keys
from ._records import read_doc, revert_id, unpack

__all__ = ["all_threads", "delete_thread", "delete_for_runs", "copy_thread", "prune"]

_BATCH = 500
_APPLY_BATCH = 50
"""Ops per batch when deleting or copying a thread's records: DynamoDB commits at most 100 items
in one transaction (a prune of a long thread refused there with 500, and a tamper-evident store's
chain head made a batch of 100 into 101); these are maintenance
batches, never one atomic change, so smaller ones lose nothing elsewhere."""
STRATEGIES = ("keep_latest", "delete")


def _scan_all(core: Core, prefix: str) -> Iterator[Record]:
    after: str | None = None
    while recs := core.backend.scan(prefix, after=after, limit=_BATCH):
        yield from recs
        if len(recs) < _BATCH:
            return
        after = recs[-1].key


def _doc(core: Core, rec: Record) -> dict[str, Any]:
    return read_doc(core.codec, rec.data, rec.codec, rec.key)


def all_threads(core: Core) -> Iterator[str]:
    """Every thread id with checkpoints, in id order (from the thread listing)."""
    start = len(layout.LANGGRAPH_THREAD_INDEX_PREFIX)
    for rec in _scan_all(core, layout.LANGGRAPH_THREAD_INDEX_PREFIX):
        yield keys.unescape(rec.key[start:])


@dataclass
class _Thread:
    """One thread's records, sorted by kind (keys relative to nothing: as the backend returns them)."""

    checkpoints: dict[str, list[Record]] = field(default_factory=dict)
    """namespace -> its checkpoint records, newest first."""
    writes: list[Record] = field(default_factory=list)
    values: list[Record] = field(default_factory=list)
    heads: list[Record] = field(default_factory=list)


def _load(core: Core, thread: str) -> _Thread:
    out = _Thread()
    for rec in _scan_all(core, layout.langgraph_thread_prefix(thread)):
        kind, ns = _kind_and_ns(rec.key)
        if kind == "cp":
            out.checkpoints.setdefault(ns, []).append(rec)
        elif kind == "w":
            out.writes.append(rec)
        elif kind == "v":
            out.values.append(rec)
        elif kind == "head":
            out.heads.append(rec)
    return out


def _kind_and_ns(key: str) -> tuple[str, str]:
    parts = keys.split(key)
    return parts[2], parts[3][1:]


def _apply_in_batches(core: Core, ops: Sequence[Op]) -> None:
    for i in range(0, len(ops), _APPLY_BATCH):
        apply_across_partitions(core.backend, ops[i : i + _APPLY_BATCH])


def delete_thread(core: Core, thread: str) -> None:
    """Remove the thread's records, then its listing (a listed thread without records is skipped)."""
    doomed: list[Op] = [Delete(r.key) for r in _scan_all(core, layout.langgraph_thread_prefix(thread))]
    _apply_in_batches(core, doomed)
    core.backend.apply([Delete(layout.langgraph_thread_index_key(thread))])


def _needed(core: Core, serde: SerializerProtocol, thread: str, kept: dict[str, list[Record]], values: list[Record]) -> set[str]:
    """Value keys the kept checkpoints name, with every base their delta chains build on."""
    docs = {r.key: _doc(core, r) for r in values}
    needed: set[str] = set()
    for ns, recs in kept.items():
        for rec in recs:
            body = serde.loads_typed(unpack(_doc(core, rec)["c"]))
            for ch, version in body["channel_versions"].items():
                key = layout.langgraph_blob_key(thread, ns, ch, str(version))
                while key in docs and key not in needed:
                    needed.add(key)
                    if "base" not in docs[key]:
                        break
                    key = key[: key.rindex("/") + 1] + keys.escape(str(docs[key]["base"]))
    return needed


def _remove_checkpoints(core: Core, serde: SerializerProtocol, thread: str, data: _Thread,
                        doomed: dict[str, set[str]]) -> None:  # fmt: skip
    """Delete checkpoints (namespace -> keys), their writes, unneeded values; re-point heads."""
    kept = {ns: [r for r in recs if r.key not in doomed.get(ns, set())] for ns, recs in data.checkpoints.items()}
    dead_ids = {(ns, k.rsplit("/", 1)[1]) for ns, ks in doomed.items() for k in ks}
    ops: list[Op] = [Delete(k) for ks in doomed.values() for k in ks]
    ops += [Delete(w.key) for w in data.writes if (_kind_and_ns(w.key)[1], keys.split(w.key)[4]) in dead_ids]
    needed = _needed(core, serde, thread, kept, data.values)
    ops += [Delete(v.key) for v in data.values if v.key not in needed]
    for ns in doomed:
        ops.append(_head_op(core, thread, ns, kept.get(ns, [])))
    _apply_in_batches(core, ops)


def _head_op(core: Core, thread: str, ns: str, remaining: list[Record]) -> Op:
    key = layout.langgraph_head_key(thread, ns)
    if not remaining:
        return Delete(key)
    newest = revert_id(remaining[0].key.rsplit("/", 1)[1])
    data, codec = core.codec.encode({"id": newest}, "a LangGraph thread head", key)
    return Put(key, data, codec, ANY)


def delete_for_runs(core: Core, serde: SerializerProtocol, run_ids: list[str]) -> list[str]:
    """Remove the checkpoints whose metadata ``run_id`` is one of ``run_ids``; return the threads touched."""
    runs = set(run_ids)
    index = [rec.key for run in runs for rec in _scan_all(core, layout.langgraph_run_index_prefix(run))]
    threads = sorted({keys.split(k)[-1] for k in index})
    for thread in threads:
        data = _load(core, thread)
        doomed: dict[str, set[str]] = {}
        for ns, recs in data.checkpoints.items():
            for rec in recs:
                doc = _doc(core, rec)
                if serde.loads_typed(unpack(doc["m"])).get("run_id") in runs:
                    doomed.setdefault(ns, set()).add(rec.key)
        if doomed:
            _remove_checkpoints(core, serde, thread, data, doomed)
    _apply_in_batches(core, [Delete(k) for k in index])
    return threads


def check_strategy(strategy: Any) -> None:
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"unknown prune strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


def prune(core: Core, serde: SerializerProtocol, thread: str, strategy: str, keep: int = 1) -> int:
    """``keep_latest``: each namespace keeps its newest ``keep`` checkpoints (and the ancestors
    LangGraph's ``DeltaChannel`` rebuilds them from); ``delete``: the thread goes. Returns how
    many checkpoints were removed (``delete``: 0, it does not count them)."""
    check_strategy(strategy)
    if strategy == "delete":
        delete_thread(core, thread)
        return 0
    data = _load(core, thread)
    doomed = {ns: {r.key for r in recs[keep:]} for ns, recs in data.checkpoints.items() if len(recs) > keep}
    for ns, recs in data.checkpoints.items():
        doomed.get(ns, set()).difference_update(_delta_ancestors(core, serde, thread, ns, recs[:keep], recs, data.values))
    doomed = {ns: keys_ for ns, keys_ in doomed.items() if keys_}
    if doomed:
        _remove_checkpoints(core, serde, thread, data, doomed)
    return sum(map(len, doomed.values()))


def _delta_ancestors(core: Core, serde: SerializerProtocol, thread: str, ns: str, kept: list[Record],
                     every: list[Record], values: list[Record]) -> set[str]:  # fmt: skip
    """Checkpoint keys a kept checkpoint's ``DeltaChannel`` s are rebuilt from: its ancestors
    (parent links), up to the nearest one holding a stored value of every such channel.

    LangGraph rebuilds a ``DeltaChannel`` from the writes of the checkpoints since its last
    snapshot (``get_delta_channel_history``); dropping them would make it restore as empty,
    silently. The channels are those named in the metadata's ``counters_since_delta_snapshot``.
    """
    by_id = {revert_id(r.key.rsplit("/", 1)[1]): r for r in every}
    stored = {r.key for r in values if "e" not in _doc(core, r)}
    rescued: set[str] = set()
    for rec in kept:
        doc = _doc(core, rec)
        channels = set(serde.loads_typed(unpack(doc["m"])).get("counters_since_delta_snapshot") or ())
        parent = doc.get("p")
        while channels and parent in by_id and by_id[parent].key not in rescued:
            ancestor = by_id[parent]
            rescued.add(ancestor.key)
            adoc = _doc(core, ancestor)
            versions = serde.loads_typed(unpack(adoc["c"]))["channel_versions"]
            channels = {ch for ch in channels
                        if ch not in versions or layout.langgraph_blob_key(thread, ns, ch, str(versions[ch])) not in stored}  # fmt: skip
            parent = adoc.get("p")
    return rescued


def copy_thread(core: Core, serde: SerializerProtocol, source: str, target: str) -> None:
    """Copy every record of ``source`` under ``target`` (values re-encoded for their new key),
    listing the target thread and its runs first."""
    src, dst = layout.langgraph_thread_prefix(source), layout.langgraph_thread_prefix(target)
    ops: list[Op] = []
    unguarded = core.codec._unguarded()  # LangGraph's serialized bytes, as the saver writes them
    listings = [layout.langgraph_thread_index_key(target)]
    for rec in _scan_all(core, src):
        key = dst + rec.key[len(src) :]
        value: Any = core.codec.decode(rec.data, rec.codec, rec.key)
        if _kind_and_ns(rec.key)[0] == "cp":
            run_id = serde.loads_typed(unpack(value["m"])).get("run_id")
            if isinstance(run_id, str) and run_id:
                listings.append(layout.langgraph_run_index_key(run_id, target))
        if type(value) is bytes:  # a binary record (values, pending writes): as it is
            data, codec = unguarded.encode_bytes(value, "a copied LangGraph record", key)
        else:
            data, codec = unguarded.encode(value, "a copied LangGraph record", key)
        ops.append(Put(key, data, codec, ANY))
    if not ops:
        return
    _apply_in_batches(core, [_listing(core, k) for k in dict.fromkeys(listings)])
    _apply_in_batches(core, ops)


def _listing(core: Core, key: str) -> Op:
    data, codec = core.codec.encode({}, "a LangGraph listing", key)
    return Put(key, data, codec, ANY)
