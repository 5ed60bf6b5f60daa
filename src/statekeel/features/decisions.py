"""The durable decision log: a decision is written *before* the agent acts on it.

    with session.decide("refund order 991", rationale="late > 7 days",
                        action="payments.refund(991)") as d:
        payments.refund(991)
        d.outcome({"refund": "R-17"})     # optional; the outcome is "done" otherwise

The ``with`` statement returns only once the decision is durable. When the
block ends the outcome is recorded: ``done`` (with the value given to
``d.outcome``), or ``failed`` with the error's type and message if the block
raised (the exception propagates). A process killed inside the block leaves the
decision *incomplete*: ``store.decisions(incomplete=True)`` is what recovery
looks at, and ``store.resolve_decision(id, outcome, by=...)`` closes it later.

Decisions are append-only. Backend layout of decision ``D`` of session ``S``
(its id is ``"S:D"``; ``D`` is time-ordered)::

    idx/decisions/S/D         open-decisions index: a bare pointer, present while
                              the decision may lack an outcome (partition idx/decisions)
    session/S/decisions       append-only log, the history: a "decided" entry, then
                              a self-contained "closed" entry (the whole decision)
    session/S/decision/D      the decision by id: created pending, then closed once
                              (compare-and-set version 1 -> 2), never changed again

Everything the decision says lives in the session's partition, so it expires,
is encrypted and is erased with the session; the index holds no content.

Write order, so that a crash at any point leaves no decision invisible to
recovery: (1) index pointer; (2) "decided" entry and the pending record,
atomically — ``with`` returns and the block runs; (3) "closed" entry and the
closed record, atomically; (4) index pointer deleted. A crash between (1) and
(2) leaves a pointer to nothing: the decision was never acknowledged and its
block never ran, so listings skip it (and delete it after an hour). A crash
between (3) and (4) leaves a pointer to a closed record, which listings delete.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

from ..core import Core, SessionCore, layout
from ..core.session_write import apply_across_partitions
from ..core.validate import check_limit, check_name, check_optional_name
from ..errors import ConflictError, InvalidInputError, NotFoundError, StatekeelError, UsageError
from ..models import to_datetime
from ..protocol import ANY, KEEP, Append, Delete, Op, Put, Record, keys
from .leases import BUSY_SECONDS, Heartbeat

__all__ = ["Decision", "DecisionContext", "DecisionStatus", "DecisionClosedError"]

DecisionStatus = Literal["pending", "done", "failed", "resolved"]
INDEX_PREFIX: Final = layout.DECISION_INDEX_PREFIX
_ID_CHARS: Final = frozenset("0123456789abcdef")
_ID_LEN: Final = 19


class DecisionClosedError(ConflictError):
    """The decision already has an outcome; decisions are closed exactly once."""

    def __init__(self, decision: Decision) -> None:
        StatekeelError.__init__(
            self,
            f"decision {decision.id!r} is already closed ({decision.status} at "
            f"{decision.resolved_at}); an outcome is written once and never changed",
        )
        self.key = _record_key(*split_id(decision.id))
        self.expected = 1
        self.actual = 2
        self.decision = decision


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision of the write-ahead log, as stored."""

    id: str
    """``"<session id>:<time-ordered suffix>"``; pass it to ``store.resolve_decision``."""
    session: str
    """The session that made the decision."""
    decision: str
    """What was decided, e.g. ``"refund order 991"``."""
    rationale: str | None
    """Why, as the agent put it."""
    action: Any
    """The planned action (any storable value, e.g. ``"payments.refund(991)"``)."""
    status: DecisionStatus
    """``pending`` (no outcome yet: recovery looks at these), ``done``, ``failed`` or ``resolved``."""
    outcome: Any
    """What the action produced (``d.outcome(...)``, ``"done"`` by default, or the resolution)."""
    error: str | None
    """``"<ExceptionType>: <message>"`` when the block raised; else None."""
    created_at: dt.datetime
    """When the decision was recorded (UTC), before the action ran."""
    resolved_at: dt.datetime | None
    """When the outcome was recorded (UTC); None while pending."""
    resolved_by: str | None
    """Who resolved it with ``resolve_decision(..., by=...)``; None otherwise."""

    @property
    def incomplete(self) -> bool:
        """True while no outcome has been written."""
        return self.status == "pending"


# -- ids and keys -------------------------------------------------------------
_last_stamp = 0
_stamp_lock = threading.Lock()


def _new_suffix() -> str:
    """Microseconds since the epoch (monotonic in this process) + 24 random bits, as hex."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns() // 1000, _last_stamp + 1)
        stamp = _last_stamp
    return f"{stamp:013x}{secrets.token_hex(3)}"


def split_id(decision_id: str) -> tuple[str, str]:
    """``"S:D"`` -> ``("S", "D")``, or :class:`InvalidInputError` saying what an id looks like."""
    if isinstance(decision_id, str):
        session_id, _, suffix = decision_id.rpartition(":")
        if session_id and len(suffix) == _ID_LEN and set(suffix) <= _ID_CHARS:
            return check_name(session_id, "the session id in a decision id"), suffix
    raise InvalidInputError(
        f"{decision_id!r} is not a decision id; ids look like 'support-42:{_new_suffix()}' "
        "(see store.decisions() or `statekeel decisions list`)"
    )


_index_key = layout.decision_index_key
_log_key = layout.decision_log
_record_key = layout.decision_key
_records_prefix = layout.decisions_prefix


# -- records --------------------------------------------------------------------
def _from_body(body: dict[str, Any]) -> Decision:
    return Decision(
        body["id"], body["session"], body["decision"], body.get("rationale"), body.get("action"),
        body["status"], body.get("outcome"), body.get("error"),
        to_datetime(body["created_at"]), to_datetime(body.get("resolved_at")),  # type: ignore[arg-type]
        body.get("resolved_by"),
    )


def _closed_body(
    decided: dict[str, Any], status: DecisionStatus, outcome: Any, error: str | None, by: str | None
) -> dict[str, Any]:
    return {
        **decided, "kind": "closed", "status": status, "outcome": outcome, "error": error,
        "resolved_at": time.time(), "resolved_by": by,
    }


class DecisionContext:
    """What ``session.decide(...)`` returns: use it as ``with ... as d:``."""

    def __init__(self, session: SessionCore, decision: str, rationale: str | None, action: Any) -> None:
        if not isinstance(decision, str) or not decision.strip():
            raise InvalidInputError(f"decision must be a non-empty str describing it, got {decision!r}")
        if rationale is not None and not isinstance(rationale, str):
            raise InvalidInputError(f"rationale must be a str or None, got {type(rationale).__name__}")
        # the texts are values (the codec refuses what cannot be stored); they are checked when written
        self._session = session
        self._store = session.core
        self._suffix = _new_suffix()
        self._busy_key = layout.busy_prefix(session.id) + self._suffix
        self._heartbeat: Heartbeat
        self.id = f"{session.id}:{self._suffix}"
        """The decision's id (known before the block runs)."""
        self._body: dict[str, Any] = {
            "kind": "decided", "id": self.id, "session": session.id, "decision": decision,
            "rationale": rationale, "action": action, "status": "pending", "created_at": time.time(),
        }
        self._outcome: Any = "done"
        self._state = "new"
        self.result: Decision | None = None
        """After the block: the decision with its recorded outcome."""

    def __repr__(self) -> str:
        return f"<DecisionContext {self.id!r} {self._state}>"

    @property
    def decision(self) -> Decision:
        """The decision as recorded before the block ran (status ``pending``)."""
        return _from_body(self._body)

    def outcome(self, value: Any) -> None:
        """Set the outcome recorded when the block ends (checked for storability now)."""
        self._store.codec.encode(value, f"decision {self.id!r} outcome", _log_key(self._session.id))
        self._outcome = value

    def __enter__(self) -> DecisionContext:
        if self._state != "new":
            raise UsageError(f"decision {self.id!r} was already entered; call session.decide() again")
        codec, session_id = self._store.codec, self._session.id
        index, log = _index_key(session_id, self._suffix), _log_key(session_id)
        record = _record_key(session_id, self._suffix)
        what = f"decision {self._body['decision']!r}"
        entry = codec.encode(self._body, what, log)  # each record is encoded for its own key
        data, name = codec.encode(self._body, what, record)
        pointer, pointer_codec = codec.encode({}, "decision index", index)
        self._store.backend.apply([Put(index, pointer, pointer_codec, None, None)])  # (1)
        busy = self._busy_put()
        self._session.apply(lambda exp: [
            Append(log, (entry,), self._session.append_expiry(exp)), Put(record, data, name, None, exp),
            busy(exp),
        ])  # (2): durable; recovery sees it from here on
        self._state = "open"
        self._heartbeat = Heartbeat(self._beat, _beat_every(self._session)).__enter__()
        return self

    def _busy_put(self) -> Callable[[float | None], Op]:
        """The marker saying this block runs, alive for BUSY_SECONDS (see :mod:`.leases`)."""
        key = self._busy_key
        data, codec = self._store.codec.encode({"until": time.time() + _beat_every(self._session) * 3},
                                               "decide block", key)
        return lambda exp: Put(key, data, codec, ANY, exp)

    def _beat(self) -> bool:
        """The heartbeat while the block runs: renews the marker (and the lease, if held);
        stops once the session is gone (deleted or expired), so nothing is written into it."""
        if self._session.backend.get(layout.session_meta_key(self._session.id)) is None:
            return False
        busy = self._busy_put()
        self._session.apply(lambda exp: [busy(exp)])
        return True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state != "open":
            return
        self._state = "closed"
        self._heartbeat.__exit__(None, None, None)
        if exc is None:
            closed = _closed_body(self._body, "done", self._outcome, None, None)
        else:
            closed = _closed_body(self._body, "failed", None, f"{type(exc).__name__}: {exc}", None)
        try:
            self.result = _close(self._store, self._session, closed, [Delete(self._busy_key)])
        except Exception as write_error:
            if exc is None:
                raise
            # the block's own exception matters more; the decision simply stays incomplete
            exc.add_note(f"statekeel: decision {self.id!r} stays incomplete: {write_error!r}")


def _beat_every(session: SessionCore) -> float:
    """A third of the shortest liveness at stake: the busy marker's, or the lease's if held."""
    return min(BUSY_SECONDS, session.fence.seconds if session.fence is not None else BUSY_SECONDS) / 3


def _close(store: Core, session: SessionCore | None, closed: dict[str, Any], also: Sequence[Op] = ()) -> Decision:
    """Append the "closed" entry and close the record atomically (3), then drop the pointer (4).

    ``also``: ops of the session's partition to apply with (4) (removing the block's busy marker)."""
    session_id, suffix = split_id(closed["id"])
    log, record = _log_key(session_id), _record_key(session_id, suffix)
    what = f"decision {closed['id']!r} outcome"
    entry = store.codec.encode(closed, what, log)
    data, name = store.codec.encode(closed, what, record)

    def ops(exp: float | None) -> list[Op]:
        return [Append(log, (entry,), KEEP if exp is None else exp), Put(record, data, name, 1, KEEP)]

    try:
        if session is not None:
            session.apply(ops)
        else:
            store.backend.apply(ops(None))
    except ConflictError:
        raise DecisionClosedError(get_decision(store, closed["id"])) from None
    apply_across_partitions(store.backend, [*also, Delete(_index_key(session_id, suffix))])
    return _from_body(closed)


# -- store-level operations -------------------------------------------------------
def get_decision(store: Core, decision_id: str) -> Decision:
    """The decision with id ``decision_id``, as stored now."""
    session_id, suffix = split_id(decision_id)
    rec = store.backend.get(_record_key(session_id, suffix))
    if rec is None:
        raise NotFoundError(f"no decision {decision_id!r}; list them with store.decisions()")
    return _from_body(store.codec.decode(rec.data, rec.codec, rec.key))


def resolve_decision(store: Core, decision_id: str, outcome: Any, by: str | None) -> Decision:
    """Close an incomplete decision with ``outcome``, recording who (``by``) and when."""
    check_optional_name(by, "by (who resolved it)")
    rec = store.backend.get(_record_key(*split_id(decision_id)))
    if rec is None:
        raise NotFoundError(f"no decision {decision_id!r}; list them with store.decisions()")
    decided = store.codec.decode(rec.data, rec.codec, rec.key)
    if decided["status"] != "pending":
        raise DecisionClosedError(_from_body(decided))
    return _close(store, None, _closed_body(decided, "resolved", outcome, None, by))


ORPHAN_AFTER: Final = 3600.0
"""Seconds after which an index pointer whose decision was never recorded is deleted."""


def _open_decisions(store: Core, prefix: str, after: str | None) -> Iterator[Decision]:
    """Pending decisions whose index pointer is under ``prefix``, after key ``after``."""
    while pointers := store.backend.scan(prefix, after=after, limit=200):
        found = store.backend.get_many([_record_key(*keys.split(p.key)[2:4]) for p in pointers])
        for pointer, rec in zip(pointers, found):
            body = None if rec is None else store.codec.decode(rec.data, rec.codec, rec.key)
            if body is not None and body["status"] == "pending":
                yield _from_body(body)
            elif body is not None or time.time() - pointer.created_at > ORPHAN_AFTER:
                _drop_pointer(store, pointer)  # closed (crash before (4)), or an old orphan
        if len(pointers) < 200:  # a short page is the last: no empty scan to find that out
            return
        after = pointers[-1].key


def _drop_pointer(store: Core, pointer: Record) -> None:
    try:
        store.backend.apply([Delete(pointer.key, pointer.version)])
    except ConflictError:
        pass


def _session_decisions(store: Core, session_id: str, after: str | None) -> Iterator[Decision]:
    """Decisions of one session in id (= time) order, after suffix ``after``."""
    prefix = _records_prefix(session_id)
    cursor = None if after is None else prefix + after
    while recs := store.backend.scan(prefix, after=cursor, limit=200):
        yield from (_from_body(store.codec.decode(r.data, r.codec, r.key)) for r in recs)
        cursor = recs[-1].key


def _skey(session_id: str) -> str:
    """A session's sort key: the order its keys have in a scan."""
    return keys.escape(session_id) + "/"


def _sessions_with_decisions(store: Core, first: str | None) -> Iterator[str]:
    """Sessions with a decision log, from ``first`` on, in key order."""
    after = None if first is None else layout.partition("session", first)
    lowest = None if first is None else _skey(first)
    while infos := store.backend.scan_logs("session/", after=after, limit=500):
        for info in infos:
            parts = info.log.split("/")
            if len(parts) == 3 and parts[2] == "decisions" and (lowest is None or parts[1] + "/" >= lowest):
                yield keys.unescape(parts[1])
        after = infos[-1].log


def list_decisions(
    store: Core, *, incomplete: bool, session: str | None, after: str | None, limit: int
) -> tuple[list[Decision], str | None]:
    """One page of decisions in (session, time) order, and the cursor of the next page."""
    check_limit(limit)
    after_id = None if after is None else split_id(after)
    check_optional_name(session, "session")
    out = list(_matching(store, incomplete, session, after_id, limit + 1))
    return out[:limit], (out[limit - 1].id if len(out) > limit else None)


def _matching(
    store: Core, incomplete: bool, session: str | None, after: tuple[str, str] | None, limit: int
) -> Iterator[Decision]:
    if incomplete:
        prefix = INDEX_PREFIX if session is None else layout.decision_index_prefix(session)
        index_after = None if after is None else _index_key(*after)
        for n, d in enumerate(_open_decisions(store, prefix, index_after)):
            if n == limit:
                return
            yield d
        return
    sessions = [session] if session is not None else _sessions_with_decisions(store, after and after[0])
    n = 0
    for session_id in sessions:
        within = after[1] if after is not None and after[0] == session_id else None
        for d in _session_decisions(store, session_id, within):
            yield d
            n += 1
            if n == limit:
                return


def iter_decisions(store: Core, **filters: Any) -> Iterator[Decision]:
    """Every decision matching ``filters`` (following pages)."""
    after = None
    while True:
        page, after = list_decisions(store, after=after, limit=500, **filters)
        yield from page
        if after is None:
            return

