"""The compare-and-set rule of :meth:`Backend.apply`, for backends that check in Python.

Each precondition is judged as if the ops before it in the batch had been
applied; nothing is written unless every one holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..errors import ConflictError
from . import ANY, Delete, Expire, Load, Op, Put, Touch


def check_batch(
    ops: Sequence[Op],
    now: float,
    current: Callable[[str], int | None],
    keys_under: Callable[[str], Iterable[str]],
) -> None:
    """Raise :class:`ConflictError` for the first compare-and-set that fails.

    ``current(key)`` is the live version stored now (None if absent or
    expired); ``keys_under(prefix)`` lists the stored keys under a prefix.
    """
    pending: dict[str, int | None] = {}

    def version(key: str) -> int | None:
        return pending[key] if key in pending else current(key)

    def dies(expires_at: object) -> bool:
        return isinstance(expires_at, (float, int)) and float(expires_at) <= now

    for op in ops:
        if isinstance(op, (Put, Delete)):
            cur = version(op.key)
            if op.expect is not ANY and op.expect != cur:
                raise ConflictError(op.key, op.expect, cur)
            gone = isinstance(op, Delete) or dies(op.expires_at)
            pending[op.key] = None if gone else (cur or 0) + 1
        elif isinstance(op, Load):
            pending[op.record.key] = None if dies(op.record.expires_at) else op.record.version
        elif isinstance(op, Touch) and dies(op.expires_at):
            pending[op.key] = None
        elif isinstance(op, Expire) and dies(op.expires_at):
            doomed = [*keys_under(op.prefix), *(k for k in pending if k.startswith(op.prefix))]
            pending.update((k, None) for k in doomed)
