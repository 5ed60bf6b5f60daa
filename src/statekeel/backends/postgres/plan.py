"""A batch of ops as the statements that run it, and how its results come back — planning, no I/O.

The sync and the asyncio backend both only execute these plans.
:meth:`.backend.PostgresBackend.apply_batches` runs the plans of several batches
back to back in one pipeline — one transaction — each with its own clock
(:func:`run_together`): the write-behind flusher of a tiered store replays a page
of its queue that way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from ...protocol import Append, LoadEntries, Op, OpResult
from ...protocol.integrity import entry_sum
from .._dispatch import handlers
from . import rows as checked
from . import sql
from .ops import OPS, OpSQL, Params, Part, Row, one_statement, payload

__all__ = ["Plan", "Planner", "Stmt", "run_together"]

Stmt: TypeAlias = tuple[str, Params]
Finish: TypeAlias = Callable[[Sequence[Row | None]], list[OpResult]]


@dataclass(frozen=True, slots=True)
class Plan:
    """The statements of one batch, in order, and how its results are read from their rows."""

    stmts: list[Stmt]
    """What runs, in order: one statement, or one per op (in a pipeline)."""
    wanted: list[int]
    """The statements whose first row the results are read from (indexes into ``stmts``)."""
    finish: Finish
    """The batch's results from those rows, given in the order of ``wanted``."""

    def after(self, first: Sequence[Stmt]) -> Plan:
        """This plan with ``first`` run before it."""
        return Plan([*first, *self.stmts], [i + len(first) for i in self.wanted], self.finish)


class Planner:
    """Plans batches for one schema."""

    def __init__(self, schema: str, queries: sql.Queries) -> None:
        self.schema = schema
        self.q = queries

    def batch(self, ops: Sequence[Op], raw: bool, now: float) -> Plan:
        """``ops`` as joined fragments when no two of them write the same row, else one statement per op.

        Joined fragments are one statement, or — where psycopg would not cache that one
        (:func:`.sql.split`) — several, run in one pipeline: one transaction, one round trip.
        ``raw``: "json" payloads go to ``data`` as bytes (PostgreSQL rejected one as JSON).
        """
        if not ops:
            return Plan([], [], lambda rows: [])
        steps = handlers(OPS, ops, "the postgresql:// backend")
        parts = [step.part(op, raw) for step, op in zip(steps, ops)]
        if not one_statement(ops, steps, parts):
            return self._pipelined(ops, steps, parts, now, raw)
        kinds = tuple(p[0] for p in parts if p is not None)
        sizes = tuple(len(p[1]) for p in parts if p is not None)
        cuts = sql.split(kinds, sizes, self.schema)
        stmts: list[Stmt] = []
        for start, stop in zip(cuts, cuts[1:]):
            params: Params = {"now": now}
            for i, part in enumerate(parts[start:stop]):
                assert part is not None
                params.update({f"o{i}_{k}": v for k, v in part[1].items()})
            stmts.append((sql.batch_sql(kinds[start:stop], self.schema), params))

        def finish(rows: Sequence[Row | None]) -> list[OpResult]:
            out: list[OpResult] = []
            for row, start, stop in zip(rows, cuts, cuts[1:]):
                out += results(ops[start:stop], steps[start:stop], kinds[start:stop], [row] * (stop - start),
                               shared=True, now=now)  # fmt: skip
            return out

        return Plan(stmts, list(range(len(stmts))), finish)

    def _pipelined(
        self, ops: Sequence[Op], steps: Sequence[OpSQL], parts: Sequence[Part | None], now: float, raw: bool
    ) -> Plan:
        """One statement per operation, in order: for batches whose operations touch the same
        rows (each must see the previous ones' writes)."""
        plans: list[list[Stmt]] = []
        for op, part in zip(ops, parts):
            if part is None:
                assert isinstance(op, LoadEntries)
                plans.append(self.load_entries(op, now, raw))
                continue
            params = {"now": now, **{f"o0_{k}": v for k, v in part[1].items()}}
            stmt = (sql.batch_sql((part[0],), self.schema), params)
            # an earlier op of this batch may have expired the log: replace it first
            dead = [(self.q.drop_dead_log, {"log": op.log, "now": now})] if isinstance(op, Append) else []
            plans.append([*dead, stmt])
        ends = list(itertools.accumulate(len(p) for p in plans))
        kinds = tuple(p[0] if p else "load_entries" for p in parts)

        def finish(rows: Sequence[Row | None]) -> list[OpResult]:
            return results(ops, steps, kinds, rows, shared=False, now=now)

        return Plan([s for p in plans for s in p], [e - 1 for e in ends], finish)

    def load_entries(self, op: LoadEntries, now: float, raw: bool) -> list[Stmt]:
        """The statements of a ``LoadEntries``: drop a dead log, then the log's head and its entries."""
        if not op.entries:
            return [(self.q.set_log_expiry, {"log": op.log, "exp": op.expires_at, "now": now})]
        first = op.entries[0]
        payloads = [payload(e.data, e.codec, raw) for e in op.entries]
        head = {"log": op.log, "first": first.seq, "created": first.created_at, "exp": op.expires_at}
        body = {
            "log": op.log, "seqs": [e.seq for e in op.entries], "createds": [e.created_at for e in op.entries],
            "datas": [p[0] for p in payloads], "docs": [p[1] for p in payloads],
            "codecs": [e.codec for e in op.entries],
            "sums": [checked.sum_param(entry_sum(op.log, e.codec, e.data, e.seq)) for e in op.entries],
        }  # fmt: skip
        return [
            (self.q.drop_dead_log, {"log": op.log, "now": now}),
            (self.q.load_log_head, head),
            (self.q.load_entries, body),
        ]

    def dead_logs(self, ops: Sequence[Op], now: float) -> list[Stmt]:
        """Drop every log ``ops`` append to that is expired at ``now`` (an append to one raises
        ``SK410``; after the drop it starts a new log numbered from 1)."""
        logs = dict.fromkeys(op.log for op in ops if isinstance(op, Append))
        return [(self.q.drop_dead_log, {"log": log, "now": now}) for log in logs]


def results(
    ops: Sequence[Op], steps: Sequence[OpSQL], kinds: Sequence[str], rows: Sequence[Row | None], *,
    shared: bool, now: float,
) -> list[OpResult]:  # fmt: skip
    """Each op's result from its columns: consecutive in one ``shared`` row, or its own row."""
    out: list[OpResult] = []
    col = 0
    for op, step, kind, row in zip(ops, steps, kinds, rows):
        assert row is not None
        width = sql.FRAGMENTS[kind].width if kind in sql.FRAGMENTS else 1
        cols = row[col : col + width] if shared else row
        col += width
        out.append(step.result(op, cols, now))
    return out


def run_together(
    plans: Sequence[Plan], execute: Callable[[Sequence[Stmt], Sequence[int]], list[Row | None]]
) -> list[list[OpResult]]:
    """Run ``plans`` back to back in ONE ``execute`` (one pipeline: one transaction, each statement
    seeing the writes of those before it); each plan's results."""
    stmts: list[Stmt] = []
    wanted: list[int] = []
    for plan in plans:
        wanted += [len(stmts) + i for i in plan.wanted]
        stmts += plan.stmts
    rows = execute(stmts, wanted)
    out: list[list[OpResult]] = []
    at = 0
    for plan in plans:
        out.append(plan.finish(rows[at : at + len(plan.wanted)]))
        at += len(plan.wanted)
    return out
