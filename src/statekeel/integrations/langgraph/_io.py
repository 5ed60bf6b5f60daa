"""The saver's write decisions as sans-I/O steps (:mod:`._steps`).

Which head a put expects, whether a moved head is a fork (:class:`~._records.CheckpointForkError`)
or a reason to read it again, which pending writes were stored already: decided once, here, and
run by the sync backend on the saver's worker or by an AsyncStore's asyncio driver on the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from langgraph.checkpoint.base import Checkpoint

from ...errors import ConflictError
from ...protocol import Op, Put, Record
from ._records import CheckpointForkError
from ._steps import Apply, Get, GetMany, Steps
from .deltas import Planned

__all__ = ["HeadMove", "PutPlan", "head_moves", "new_writes"]

class PutPlan(NamedTuple):
    """What a checkpoint put writes, planned without I/O (``StatekeelSaver._planned_put``)."""

    thread: str
    ns: str
    cp_id: str
    must_extend: str | None
    """The parent the head must still be (a fenced put), or None."""
    ops: list[Op]
    run_id: Any
    planned: dict[tuple[str, Any], Planned]
    checkpoint: Checkpoint
    """As stored (what the secret guard redacted, redacted)."""


class HeadMove(NamedTuple):
    """What moves a thread namespace's head: its key and record ops, and the namespace's names."""

    key: str
    head_op: Callable[[str, int | None], Op]
    """The head record put: ``(newest id, the version expected)``."""
    read_id: Callable[[Record], str]
    """The checkpoint id a stored head names."""
    listings: Callable[[bool], list[Op]]
    """The listing ops that go with it (``True``: a new thread)."""
    thread: str
    ns: str


def head_moves(
    move: HeadMove, known: tuple[str | None, int | None] | None, cp_id: str, must_extend: str | None, ops: list[Op]
) -> Steps[tuple[str, int | None]]:
    """Apply ``ops`` with the head moved by compare-and-set from ``known`` (the head this saver last
    wrote, without a read; read when None or when another writer moved it); a put that must extend
    ``must_extend`` and finds another head it read afresh is a fork. Returns the new head and its
    version."""
    head_key = move.key
    for _ in range(50):
        fresh = known is None
        if known is None:
            rec = yield Get(head_key)
            known = (None, None) if rec is None else (move.read_id(rec), rec.version)
        head, version = known
        if must_extend is not None and head is not None and head != must_extend:
            if fresh:
                raise CheckpointForkError(move.thread, move.ns, must_extend, head)
            known = None
            continue
        newest = cp_id if head is None else max(head, cp_id)
        try:
            done = yield Apply([*ops, move.head_op(newest, version), *move.listings(version is None)])
        except ConflictError as exc:
            if exc.key.endswith(head_key):
                known = None
                continue
            raise
        stored = done[len(ops)]
        return newest, stored.version if isinstance(stored, Record) else None
    raise ConflictError(head_key, None, None)


def new_writes(ops: Sequence[Put]) -> Steps[None]:
    """Put the pending writes, skipping regular ones already stored (a retried task keeps what it
    stored first); a concurrent duplicate is retried."""
    left = list(ops)
    for _ in range(50):
        try:
            if left:
                yield Apply(list(left))
            return
        except ConflictError:
            existing = yield GetMany([op.key for op in left if op.expect is None])
            there = {rec.key for rec in existing if rec is not None}
            left = [op for op in left if op.key not in there]
