"""Checkpoint retention: prune old checkpoints, keeping what is kept restorable."""

from __future__ import annotations

import time
from typing import Any

from ..core import SessionCore
from ..core.validate import check_int
from ..errors import ConflictError, InvalidInputError
from ..protocol import ANY, Delete, Put, Record
from . import checkpoint_labels
from ._duration import Duration, maybe_seconds
from .checkpoints import _RETRIES, _Reader, body_key, header_key, meta_key

__all__ = ["prune"]


_BATCH_OPS = 90
"""Ops per batch: DynamoDB commits at most 100 items in one transaction, and a layer may add
its own (a chain head). A prune of many checkpoints is several batches (see :func:`prune`)."""


def prune(session: SessionCore, *, keep_last: int | None = None, newer_than: Duration | None = None) -> int:
    """Delete checkpoints that are neither among the newest ``keep_last`` nor newer than ``newer_than``.

    What is kept stays restorable: a kept delta whose parent goes is rewritten as a full
    snapshot, in the first batch. The checkpoints pruned are deleted newest first, a batch at
    a time, each batch a compare-and-set on the session's checkpoint index — so after every
    batch the checkpoints left are all restorable (a pruned one still waiting depends only on
    older ones), and a checkpoint or restore that lands between two batches makes the next
    one plan again from what is stored. Returns how many were deleted.
    """
    if keep_last is None and newer_than is None:
        raise InvalidInputError("prune_checkpoints() needs keep_last=N, newer_than=duration, or both")
    if keep_last is not None:
        check_int(keep_last, "keep_last")
    max_age = maybe_seconds(newer_than, "newer_than")
    cutoff = None if max_age is None else time.time() - max_age  # once: a long prune does not move it
    r = _Reader(session)
    deleted = conflicts = 0
    while conflicts < _RETRIES:
        meta_rec, _meta = r.meta()
        headers = {i: r.decode(rec) for i, rec in r.headers()}
        ids = sorted(headers)
        keep = set(ids[max(0, len(ids) - keep_last):] if keep_last else [])
        if cutoff is not None:
            keep |= {i for i in ids if headers[i]["time"] >= cutoff}
        pruned = set(ids) - keep
        if not pruned:
            return deleted
        try:
            deleted += _apply_prune(r, meta_rec, headers, keep, pruned)
        except ConflictError:
            conflicts += 1
    raise ConflictError(meta_key(session.id), None, None)


def _apply_prune(
    r: _Reader, meta_rec: Record | None, headers: dict[int, dict[str, Any]], keep: set[int], pruned: set[int]
) -> int:
    """One batch of a prune: the kept checkpoints that need it rewritten, then as many of the
    pruned ones as fit, newest first; how many were deleted."""
    rewrites: list[tuple[str, bytes, str]] = []
    for cp_id in sorted(keep):
        header = dict(headers[cp_id])
        chain = header["chain"]
        gone = [n for n, c in enumerate(chain) if c in pruned]
        parent = _kept_ancestor(headers, header.get("parent"), pruned)
        if not gone and parent == header.get("parent"):
            continue
        if gone and not chain[gone[-1] + 1 :]:  # its delta base goes: store it in full
            body = {"set": r.state(cp_id, headers[cp_id]), "del": []}
            header["stored"] = len(body["set"])
            bkey = body_key(r.sid, cp_id)
            rewrites.append((bkey, *r.encode(body, f"checkpoint {cp_id} of session {r.sid!r} state", bkey)))
        header["chain"] = chain[gone[-1] + 1 :] if gone else chain
        header["parent"] = parent
        hkey = header_key(r.sid, cp_id)
        rewrites.append((hkey, *r.encode(header, f"checkpoint {cp_id} of session {r.sid!r} (header)", hkey)))
        headers[cp_id] = header
    assert meta_rec is not None  # there are checkpoints, so there is an index
    room = max(1, (_BATCH_OPS - 1 - len(rewrites)) // 3)  # a header, a body and perhaps a label each
    now = sorted(pruned, reverse=True)[:room]
    deletes = [k for i in now for k in (header_key(r.sid, i), body_key(r.sid, i))]
    labels = checkpoint_labels.release(r.session, [(i, headers[i].get("label")) for i in now])
    r.session.apply(lambda exp: [
        Put(meta_rec.key, meta_rec.data, meta_rec.codec, meta_rec.version, exp),
        *(Put(k, d, c, ANY, exp) for k, d, c in rewrites),
        *(Delete(k) for k in deletes),
        *labels,
    ])
    return len(now)


def _kept_ancestor(headers: dict[int, dict[str, Any]], parent: int | None, pruned: set[int]) -> int | None:
    while parent is not None and parent in pruned:
        parent = headers[parent].get("parent") if parent in headers else None
    return parent
