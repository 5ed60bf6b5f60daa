"""The one session write path: a pure plan of protocol ops, then one atomic apply.

Every write into a session — appends, state puts and deletes, heartbeats, and
the records features keep in the session's partition (decisions, notes,
checkpoints) — goes through :func:`plan_session_write`, which decides *what*
to write without doing any I/O (in the manner of httpx's sans-I/O auth flows),
and :class:`SessionWriter`, which only executes the plan. Sync and async
callers drive the same code.

TTL: a session with ``ttl`` expires when it has been inactive for at least
``ttl`` (and at most 1.1 × ``ttl``): a write renews the expiry of everything
the session owns to ``now + 1.1 × ttl`` once less than ``ttl`` is left, so the
renewal costs one range update per tenth of the TTL, not one per write. The
session's index record (what listings scan) is renewed in the same batch.
"""

from __future__ import annotations

import time

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..codec import Codec
from ..errors import ConflictError, ExpiredError
from ..protocol import (
    KEEP,
    Append,
    Backend,
    Delete,
    Expect,
    Expire,
    ExpiresAt,
    Op,
    OpResult,
    Put,
    Record,
    Touch,
    keys,
    op_target,
)
from . import layout
from .context import Core
from .validate import check_expect, check_name

__all__ = [
    "RENEW_FACTOR",
    "Committed",
    "Fence",
    "SessionPlan",
    "SessionCore",
    "SessionKeys",
    "SessionWrites",
    "StatePut",
    "apply_across_partitions",
    "merge_index",
    "plan_session_write",
    "renewal",
    "split_index",
]

RENEW_FACTOR = 1.1
_ONCE_RETRIES = 10

StatePut = tuple[str, Any, Expect, float | None]
"""(key, value, expect, ttl seconds or None = the session's expiry)."""

ExtraOps = Callable[[float | None], Sequence[Op]]
"""Feature ops in the session's partition, given the expiry the session will have."""


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """A session's keys from :mod:`~statekeel.core.layout`, spelled once per session handle."""

    id: str
    prefix: str
    meta: str
    index: str
    history: str
    state_prefix: str

    @classmethod
    def of(cls, session_id: str) -> SessionKeys:
        return cls(
            session_id, layout.session_prefix(session_id), layout.session_meta_key(session_id),
            layout.session_index_key(session_id), layout.history_log(session_id),
            layout.scope_state_prefix("session", session_id),
        )

    def state(self, key: Any) -> str:
        """The record of state ``key`` (same rule as :func:`layout.state_key`)."""
        return self.state_prefix + keys.escape(check_name(key, "a state key"))


@dataclass
class SessionWrites:
    """What one atomic session write carries."""

    messages: list[Any] = field(default_factory=list)
    puts: list[StatePut] = field(default_factory=list)
    deletes: list[tuple[str, Expect]] = field(default_factory=list)
    extra: ExtraOps | None = None
    heartbeat: bool = True
    """Touch the session record when no message is appended (an append is itself the heartbeat)."""


@dataclass(frozen=True)
class SessionPlan:
    """The ops of one session write and where each kind of result sits among them."""

    ops: tuple[Op, ...]
    expires: float | None
    append_at: int | None
    puts: slice
    deletes: slice
    extra: slice

    def committed(self, results: Sequence[OpResult]) -> Committed:
        """What the write produced, out of the results of applying :attr:`ops`."""
        first = results[self.append_at] if self.append_at is not None else None
        return Committed(
            first if isinstance(first, int) else None,
            [r for r in results[self.puts] if isinstance(r, Record)],
            [bool(r) for r in results[self.deletes]],
            list(results[self.extra]),
        )


@dataclass
class Committed:
    """What one atomic session write produced."""

    first_seq: int | None
    records: list[Record]
    deleted: list[bool]
    extra: list[OpResult]


def renewal(ttl: float | None, expires_at: float | None, now: float) -> float | None:
    """The expiry a write at ``now`` gives a session (unchanged while more than ``ttl`` is left)."""
    if ttl is None:
        return None
    if expires_at is not None and expires_at >= now + ttl:
        return expires_at
    return now + ttl * RENEW_FACTOR


def plan_session_write(
    session: str | SessionKeys,
    ttl: float | None,
    expires_at: float | None,
    now: float,
    writes: SessionWrites,
    codec: Codec,
    renew: bool = True,
) -> SessionPlan:
    """Turn ``writes`` into protocol ops: renewal, messages, heartbeat, state, feature ops, index.

    Pure: encodes values and decides, but reads and writes nothing. ``renew=False``
    (maintenance such as ``gc``): the session's expiry stays as it is.
    """
    sk = session if isinstance(session, SessionKeys) else SessionKeys.of(session)
    expires = renewal(ttl, expires_at, now) if renew else expires_at
    renewed = expires is not None and expires != expires_at
    ops: list[Op] = [Expire(sk.prefix, expires)] if renewed else []
    append_at = _plan_messages(sk, ttl, expires, writes.messages, codec, ops)
    if append_at is None and writes.heartbeat:
        ops.append(Touch(sk.meta))
    puts = _plan_puts(sk, expires, now, writes.puts, codec, ops)
    start = len(ops)
    ops.extend(Delete(sk.state(k), check_expect(e)) for k, e in writes.deletes)
    deletes = slice(start, len(ops))
    start = len(ops)
    ops.extend(writes.extra(expires) if writes.extra is not None else ())
    extra = slice(start, len(ops))
    if renewed:  # listings must not lose the session before it expires
        ops.append(Touch(sk.index, expires))
    return SessionPlan(tuple(ops), expires, append_at, puts, deletes, extra)


def _plan_messages(
    sk: SessionKeys, ttl: float | None, expires: float | None, messages: list[Any], codec: Codec, ops: list[Op]
) -> int | None:
    if not messages:
        return None
    log = sk.history
    items = tuple(
        codec.encode(m, f"session[{sk.id!r}].append messages[{i}]", log) for i, m in enumerate(messages)
    )
    ops.append(Append(log, items, KEEP if ttl is None else expires))
    return len(ops) - 1


def _plan_puts(
    sk: SessionKeys, expires: float | None, now: float, puts: list[StatePut], codec: Codec, ops: list[Op]
) -> slice:
    start = len(ops)
    for key, value, expect, ttl in puts:
        full = sk.state(key)
        check_expect(expect)
        data, name = codec.encode(value, f"session[{sk.id!r}][{key!r}]", full)
        ops.append(Put(full, data, name, expect, now + ttl if ttl is not None else expires))
    return slice(start, len(ops))


def apply_across_partitions(backend: Backend, ops: Sequence[Op]) -> list[OpResult]:
    """Apply a batch whose last ops may sit in index partitions, atomically where the backend can.

    A backend that keeps batches inside one partition (:attr:`Backend.batch_scope`
    ``"partition"``, e.g. Redis Cluster) gets the index ops first, on their own:
    an index entry without its session is skipped by listings, while a session
    without its index entry would be invisible to them.
    """
    if backend.batch_scope == "store":
        return backend.apply(ops)
    split = split_index(ops)
    if split is None:
        return backend.apply(ops)
    index, rest, outside = split
    backend.apply(index)
    return merge_index(outside, backend.apply(rest))


def split_index(ops: Sequence[Op]) -> tuple[list[Op], list[Op], list[bool]] | None:
    """``(index ops, the others, which ops are index ops)`` of a batch reaching outside the partition
    of its first op; None for a batch inside one partition (an everyday turn: one look per op)."""
    if not ops:
        return None
    parts = [keys.partition(op_target(op)) for op in ops]
    home = parts[0]
    outside = [p != home for p in parts]
    if not any(outside):
        return None
    return [op for op, o in zip(ops, outside) if o], [op for op, o in zip(ops, outside) if not o], outside


def merge_index(outside: Sequence[bool], results: Sequence[OpResult]) -> list[OpResult]:
    """The results of a split batch in its ops' order (an index op's result: True)."""
    rest = iter(results)
    return [True if o else next(rest) for o in outside]


class Fence(Protocol):
    """A lease this handle holds (:class:`statekeel.features.leases.Lease`): every write carries
    its fencing op, and a batch refused because the lease moved on raises what ``lost()`` says."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    @property
    def seconds(self) -> float: ...

    def op(self, now: float) -> Op: ...

    def confirm(self, result: OpResult) -> None: ...

    def lost(self) -> Exception | None: ...


class SessionCore:
    """What features need of one session: its id, owner, TTL, the core, and the one write path.

    Features that keep records in a session (decisions, notes, checkpoints) take
    this, never :class:`~statekeel.features.sessions.Session`, so none of them
    imports the sessions module.
    """

    def __init__(self, core: Core, session_id: str, user: str | None, ttl: float | None,
                 expires_at: float | None) -> None:  # fmt: skip
        self.core = core
        self.backend = core.backend
        self.id = session_id
        self.keys = SessionKeys.of(session_id)
        self.user = user
        self.ttl = ttl
        self.expires_at = expires_at
        self.fence: Fence | None = None
        """The lease this handle holds, if opened with ``lease=``: every write is fenced by it."""
        self.activity = True
        """False for maintenance handles (``gc``): their writes neither heartbeat the session
        nor renew its TTL, so housekeeping never makes a dead session look alive."""
        self.once: ExtraOps | None = None
        """Ops to add to the next write only (the sessions feature makes a completed or waiting
        session active again with its first write); re-planned if the batch conflicts."""

    def commit(self, writes: SessionWrites) -> Committed:
        """Plan ``writes`` and apply them in one atomic batch (fenced by the lease, if held)."""
        fence = self.fence
        if fence is None:
            return self._commit(writes, None)
        with fence.lock:
            return self._commit(writes, fence)

    def _commit(self, writes: SessionWrites, fence: Fence | None) -> Committed:
        for attempt in range(_ONCE_RETRIES):
            now = time.time()
            if self.ttl is not None and self.expires_at is not None and self.expires_at <= now:
                self._check_alive()
            if not self.activity:
                writes = SessionWrites(writes.messages, writes.puts, writes.deletes, writes.extra, False)
            plan = plan_session_write(
                self.keys, self.ttl, self.expires_at, now, writes, self.core.codec, renew=self.activity
            )
            once = list(self.once(plan.expires if self.ttl is not None else None)) if self.once else []
            try:
                results = self._apply(plan, once, fence, now)
                break
            except ConflictError:
                if not once or attempt == _ONCE_RETRIES - 1:
                    raise
                continue  # the session record changed under the status change: plan it again
        if once:
            self.once = None
        if self.ttl is not None:
            self.expires_at = plan.expires
        return plan.committed(results)

    def _apply(self, plan: SessionPlan, once: list[Op], fence: Fence | None, now: float) -> list[OpResult]:
        """The plan's ops, then the one-off ops, then the fencing op — one atomic batch."""
        if fence is None:
            return apply_across_partitions(self.backend, [*plan.ops, *once])
        try:
            results = apply_across_partitions(self.backend, [*plan.ops, *once, fence.op(now)])
        except ConflictError as err:
            raise fence.lost() or err from None
        fence.confirm(results.pop())
        return results

    def apply(self, make_ops: ExtraOps) -> list[OpResult]:
        """Apply a feature's ops (``make_ops(expires_at)``) with the session's TTL renewal.

        A feature's write (a decision, a note, a checkpoint) is session activity like an
        append: it heartbeats the session, so stale detection does not take a busy agent
        for a dead one."""
        return self.commit(SessionWrites(extra=make_ops)).extra

    def append_expiry(self, expires: float | None) -> ExpiresAt:
        """The ``expires_at`` for an Append: unchanged for sessions without a TTL."""
        return KEEP if self.ttl is None else expires

    def _check_alive(self) -> None:
        rec = self.backend.get(self.keys.meta)
        if rec is None:
            raise ExpiredError(
                f"session {self.id!r} expired (ttl {self.ttl}s); open it again with store.session()"
            )
        self.expires_at = rec.expires_at
