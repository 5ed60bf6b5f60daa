"""Checkpoint labels are unique per session: one record per label names its checkpoint.

``session/S/cplabel/<label>`` holds ``{"id": N}``. Taking a labelled checkpoint
creates that record with ``expect=None`` in the checkpoint's own atomic batch,
so two processes racing for one label cannot both win; the loser re-reads and
is refused (or, with ``replace=True``, moves the label: the record is updated
with a compare-and-set and the previous checkpoint's header loses its label in
the same batch — that checkpoint stays, unlabelled). Pruning a labelled
checkpoint frees its label.

Checkpoints labelled by versions before labels were unique have no label
record: a lookup by such a label falls back to the newest checkpoint carrying it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..core import SessionCore, layout
from ..core.validate import check_name
from ..errors import InvalidInputError
from ..protocol import Delete, Op, Put, Record

__all__ = ["claim", "lookup", "release"]

LabelOps = Callable[[float | None], list[Op]]
"""Ops to add to the checkpoint's batch, given the session's expiry."""


def _decode(sc: SessionCore, rec: Record) -> Any:
    return sc.core.codec.decode(rec.data, rec.codec, rec.key)


def _owner(sc: SessionCore, label: str) -> tuple[Record | None, int | None, Record | None]:
    """(label record, the checkpoint id it names, that checkpoint's header) — None where absent."""
    rec = sc.backend.get(layout.checkpoint_label_key(sc.id, label))
    if rec is None:
        return None, None, None
    cp_id = int(_decode(sc, rec)["id"])
    return rec, cp_id, sc.backend.get(layout.checkpoint_header_key(sc.id, cp_id))


def claim(sc: SessionCore, label: str | None, cp_id: int, replace: bool) -> LabelOps:
    """The ops giving ``label`` to new checkpoint ``cp_id``; refuses a label in use unless ``replace``."""
    if label is None:
        return lambda exp: []
    lkey = layout.checkpoint_label_key(sc.id, label)
    rec, old_id, header = _owner(sc, label)
    ops: list[tuple[str, bytes, str, int | None]] = []
    if header is not None:
        if not replace:
            raise InvalidInputError(
                f"session {sc.id!r} already has a checkpoint labelled {label!r} (checkpoint {old_id}); "
                "use another label, or checkpoint(label, replace=True) to move the label to the new one"
            )
        body = {**_decode(sc, header), "label": None}
        ops.append((header.key, *sc.core.codec.encode(body, f"checkpoint {old_id} (header)", header.key),
                    header.version))
    ops.append((lkey, *sc.core.codec.encode({"id": cp_id}, f"checkpoint label {label!r}", lkey),
                None if rec is None else rec.version))
    return lambda exp: [Put(k, d, c, e, exp) for k, d, c, e in ops]


def lookup(sc: SessionCore, label: str) -> int | None:
    """The checkpoint carrying ``label`` per its label record (None: no record, or pruned)."""
    check_name(label, "a checkpoint label")
    _rec, cp_id, header = _owner(sc, label)
    return cp_id if header is not None else None


def release(sc: SessionCore, pruned: Iterable[tuple[int, str | None]]) -> list[Op]:
    """Deletes of the label records naming the (checkpoint id, label) pairs being pruned."""
    ops: list[Op] = []
    for cp_id, label in pruned:
        if label is None:
            continue
        rec = sc.backend.get(layout.checkpoint_label_key(sc.id, label))
        if rec is not None and int(_decode(sc, rec)["id"]) == cp_id:
            ops.append(Delete(rec.key, rec.version))
    return ops
