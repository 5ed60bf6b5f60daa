"""Which handler runs each op: every backend keeps one table, keyed by op type.

A backend's table has one row per op type it applies (``{Put: put, Delete:
delete, …}``), built once at import; adding an op to the protocol means adding
one row to each table. :func:`handlers` looks up a whole batch before any op
runs, so a batch holding an op a backend has no row for writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from ..errors import UsageError
from ..protocol import Op

__all__ = ["handlers"]

H = TypeVar("H")


def handlers(table: Mapping[type[Op], H], ops: Sequence[Op], backend: str) -> list[H]:
    """The row of ``table`` for each of ``ops``, in order.

    Raises :class:`UsageError` naming ``backend`` (e.g. ``"the sqlite:// backend"``)
    and the op when one has no row.
    """
    try:
        return [table[type(op)] for op in ops]
    except KeyError:
        bad = next(op for op in ops if type(op) not in table)
        known = ", ".join(sorted(t.__name__ for t in table))
        raise UsageError(
            f"{backend} cannot apply {type(bad).__name__} (it applies {known}); pass operations "
            "from statekeel.protocol, or add a row for this one to the backend's dispatch table"
        ) from None
