"""The compare-and-set rule of :meth:`Backend.apply`, for backends that check in Python.

Each precondition is judged as if the ops before it in the batch had been
applied; nothing is written unless every one holds. :func:`check_entry_seqs` is
the one rule on imported entries every backend applies before writing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..errors import ConflictError, InvalidInputError
from . import ANY, Append, Delete, Expire, Load, LoadEntries, Op, Put, Touch


def check_batch(
    ops: Sequence[Op],
    now: float,
    current: Callable[[str], int | None],
    keys_under: Callable[[str], Iterable[str]],
    next_seq: Callable[[str], int] | None = None,
) -> None:
    """Raise :class:`ConflictError` for the first compare-and-set that fails.

    ``current(key)`` is the live version stored now (None if absent or
    expired); ``keys_under(prefix)`` lists the stored keys under a prefix;
    ``next_seq(log)`` is the seq the next append to ``log`` would get now
    (needed only by batches with an ``Append(at=...)``).
    """
    pending: dict[str, int | None] = {}
    seqs: dict[str, int] = {}

    def version(key: str) -> int | None:
        return pending[key] if key in pending else current(key)

    def dies(expires_at: object) -> bool:
        return isinstance(expires_at, (float, int)) and float(expires_at) <= now

    positional = any(isinstance(op, Append) and op.at is not None for op in ops)
    dead: list[str] = []  # prefixes an earlier Expire of the batch expired

    for op in ops:
        if isinstance(op, Append):
            if positional:
                _check_append(op, seqs, dead, next_seq)
            continue
        if isinstance(op, (Put, Delete)):
            cur = version(op.key)
            if op.expect is not ANY and op.expect != cur:
                raise ConflictError(op.key, op.expect, cur)
            gone = isinstance(op, Delete) or dies(op.expires_at)
            pending[op.key] = None if gone else (cur or 0) + 1
        elif isinstance(op, Load):
            pending[op.record.key] = None if dies(op.record.expires_at) else op.record.version
        elif isinstance(op, LoadEntries):
            check_entry_seqs(op)
        elif isinstance(op, Touch) and op.refresh is None and dies(op.expires_at):  # a refresh: its key alone
            pending[op.key] = None
            seqs[op.key] = 1  # a log it names starts again at 1
        elif isinstance(op, Expire) and dies(op.expires_at):
            doomed = [*keys_under(op.prefix), *(k for k in pending if k.startswith(op.prefix))]
            pending.update((k, None) for k in doomed)
            dead.append(op.prefix)
            for log in [log for log in seqs if log.startswith(op.prefix)]:
                del seqs[log]


def _check_append(
    op: Append, seqs: dict[str, int], dead: list[str], next_seq: Callable[[str], int] | None
) -> None:
    """The ``at`` precondition of ``op``, judged after the batch's earlier ops on its log."""
    if op.log not in seqs:
        if next_seq is None:
            raise TypeError("check_batch needs next_seq for a batch with Append(at=...)")
        # a log an earlier Expire of the batch ended starts again at 1
        seqs[op.log] = 1 if any(op.log.startswith(d) for d in dead) else next_seq(op.log)
    nxt = seqs[op.log]
    if op.at is not None and op.at != nxt:
        raise ConflictError(op.log, op.at - 1, nxt - 1)
    seqs[op.log] = nxt + len(op.items)


def check_entry_seqs(op: LoadEntries) -> None:
    """Refuse an imported entry numbered below 1 — logs number from 1, and a log starting at 0 or
    below reads differently on each backend — with InvalidInputError, so the batch writes nothing."""
    for e in op.entries:
        if not isinstance(e.seq, int) or e.seq < 1:
            raise InvalidInputError(
                f"entry {e.seq!r} of log {op.log!r}: entry seqs run from 1; renumber the entries "
                "(a log's first entry is 1, or the first seq kept after a trim); nothing was written"
            )
