"""Small pieces of the chain's write path (:mod:`statekeel.core.chained`), kept apart to keep it short."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..protocol import ANY, Append, Load, Op, OpResult, Put, Record, Touch
from .chain import RecordHead, alive

__all__ = ["HeadLookup", "HeadMoved", "as_given", "resolved", "touches"]


class HeadLookup(Exception):
    """Planning a batch needs ``partition``'s head (or, with ``buckets``, those buckets of it), not
    cached, while :data:`~statekeel.core.keyring.NO_IO` is set: the asyncio twin reads it awaited
    (:meth:`ChainedBackend.head_of`, :meth:`ChainedBackend.remember_bucket`), then plans again.
    Never reaches users."""

    def __init__(self, partition: str, buckets: Sequence[int] = ()) -> None:
        super().__init__(partition)
        self.partition = partition
        self.buckets = tuple(buckets)


class HeadMoved(Exception):
    """Planning a batch found ``partition``'s head moved by another writer since it was cached (its
    buckets disagree with it): the head is dropped from the cache and the batch planned again. Never
    reaches users."""


def as_given(op: Op, result: OpResult) -> OpResult:
    """A result as the caller's own op would have produced it (its value, not the sealed one)."""
    if type(op) is Append:
        return result  # its first seq, as given
    if isinstance(op, Put) and isinstance(result, Record):
        r = result
        return Record(r.key, op.data, op.codec, r.version, r.created_at, r.updated_at, r.expires_at)
    return op.record if isinstance(op, Load) else result


def touches(op: Touch, record: RecordHead, clock: float) -> bool:
    """Whether ``op`` moves the record's expiry — only a live one's (a touch does not bring an expired
    record back), a refresh only at the version read and still expiring (as the backend judges it: the
    head is compare-and-set, so it saw the same record)."""
    if not alive(record.expires, clock):
        return False
    return op.refresh is None or (record.version == op.refresh and record.expires is not None)


def resolved(ops: Sequence[Op], plain: Callable[[str], bool]) -> set[str]:
    """The keys whose compare-and-set the chain chose (the caller's op asked for none): a conflict on
    one of them means another writer moved it, and the batch is planned again."""
    chosen = [op.key if isinstance(op, Put) else op.log for op in ops
              if (isinstance(op, Put) and op.expect is ANY) or (isinstance(op, Append) and op.at is None)]
    return {key for key in chosen if not plain(key)}
