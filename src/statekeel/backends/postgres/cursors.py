"""The connections of the PostgreSQL backend keep their cursors, and run statements pipelined.

A fresh cursor looks up a dumper for each parameter again (~0.1 ms a statement), so
a connection keeps the first :data:`WARM_CURSORS` it makes — one per statement of a
pipeline; the asyncio backend's connections keep theirs the same way (:func:`kept_cursor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias, TypeVar

import psycopg

from . import rows as checked
from .ops import Row
from .plan import Stmt

__all__ = ["WARM_CURSORS", "Conn", "Connection", "kept_cursor", "pipelined"]


class Connection(psycopg.Connection[Row]):
    """A connection that keeps its cursors: their adapter caches stay warm between calls (a new
    cursor looks up a dumper for each parameter again)."""

    _sk_cursors: list[psycopg.Cursor[Row]] | None = None

    def sk_cursor(self, i: int = 0) -> psycopg.Cursor[Row]:
        """Cursor ``i``: a pipeline's statements each need their own (each keeps its result)."""
        if self._sk_cursors is None:
            self._sk_cursors = []
        return kept_cursor(self._sk_cursors, i, self.cursor)


Conn: TypeAlias = Connection
WARM_CURSORS = 16
"""Cursors a connection keeps for pipelines (a fresh cursor's dumper lookups cost ~0.1 ms a statement)."""
_C = TypeVar("_C", psycopg.Cursor[Row], psycopg.AsyncCursor[Row])


def kept_cursor(kept: list[_C], i: int, new: Callable[[], _C]) -> _C:
    """Cursor ``i`` of a connection's ``kept`` ones; the first :data:`WARM_CURSORS` are kept, the
    statements of a longer pipeline get new ones."""
    if i < len(kept):
        return kept[i]
    cursor = new()
    checked.json_as_bytes(cursor.adapters)
    if i == len(kept) and i < WARM_CURSORS:
        kept.append(cursor)
    return cursor


def pipelined(conn: Conn, stmts: Sequence[Stmt]) -> list[psycopg.Cursor[Row]]:
    """Run ``stmts`` in one pipeline — one implicit transaction — and raise the first error.

    Errors are caught inside the block so psycopg does not log a warning about
    the follow-up "pipeline aborted" error when it leaves pipeline mode.
    """
    cursors: list[psycopg.Cursor[Row]] = []
    failed: psycopg.Error | None = None
    try:
        with conn.pipeline():
            for i, (query, params) in enumerate(stmts):
                try:
                    cursors.append(conn.sk_cursor(i).execute(query, params, binary=True, prepare=True))
                except psycopg.Error as exc:
                    failed = exc
                    break
    except psycopg.Error as exc:
        raise (failed or exc) from None
    if failed is not None:
        raise failed
    return cursors
