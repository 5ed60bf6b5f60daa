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


def prune(session: SessionCore, *, keep_last: int | None = None, newer_than: Duration | None = None) -> int:
    """Delete checkpoints that are neither among the newest ``keep_last`` nor newer than ``newer_than``.

    What is kept stays restorable: a kept delta whose parent goes is rewritten
    as a full snapshot, in the same atomic batch. Returns how many were deleted.
    """
    if keep_last is None and newer_than is None:
        raise InvalidInputError("prune_checkpoints() needs keep_last=N, newer_than=duration, or both")
    if keep_last is not None:
        check_int(keep_last, "keep_last")
    max_age = maybe_seconds(newer_than, "newer_than")
    r = _Reader(session)
    for _ in range(_RETRIES):
        meta_rec, _meta = r.meta()
        headers = {i: r.decode(rec) for i, rec in r.headers()}
        ids = sorted(headers)
        keep = set(ids[max(0, len(ids) - keep_last):] if keep_last else [])
        if max_age is not None:
            keep |= {i for i in ids if headers[i]["time"] >= time.time() - max_age}
        pruned = set(ids) - keep
        if not pruned:
            return 0
        try:
            _apply_prune(r, meta_rec, headers, keep, pruned)
        except ConflictError:
            continue
        return len(pruned)
    raise ConflictError(meta_key(session.id), None, None)


def _apply_prune(
    r: _Reader, meta_rec: Record | None, headers: dict[int, dict[str, Any]], keep: set[int], pruned: set[int]
) -> None:
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
    deletes = [k for i in sorted(pruned) for k in (header_key(r.sid, i), body_key(r.sid, i))]
    labels = checkpoint_labels.release(r.session, [(i, headers[i].get("label")) for i in sorted(pruned)])
    r.session.apply(lambda exp: [
        Put(meta_rec.key, meta_rec.data, meta_rec.codec, meta_rec.version, exp),
        *(Put(k, d, c, ANY, exp) for k, d, c in rewrites),
        *(Delete(k) for k in deletes),
        *labels,
    ])


def _kept_ancestor(headers: dict[int, dict[str, Any]], parent: int | None, pruned: set[int]) -> int | None:
    while parent is not None and parent in pruned:
        parent = headers[parent].get("parent") if parent in headers else None
    return parent
