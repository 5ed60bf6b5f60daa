"""Session lifecycle: delete, clear, pop and trim — written once on the backend protocol.

* **delete** expires everything of the session in one batch: every record and
  log under ``session/<id>/`` (meta, history, state, checkpoints, notes,
  decisions, the view), its decision index entries ``idx/decisions/<id>/`` and
  its listing entry ``idx/sessions/<id>``. Expired data is never returned, so
  the session is gone the moment the batch commits; the bytes are reclaimed by
  ``store.purge_expired()`` / ``statekeel gc``. On a backend whose batches stay
  inside one partition the session's partition goes first and the index
  entries after: an index entry without its session is skipped by listings,
  and calling delete again finishes the job (resumable).
* **clear** drops the whole history (a :class:`~statekeel.protocol.Trim` up to
  the last seq, so numbering continues and no seq is ever reused) and, unless
  ``state=False``, the session state, in one batch.
* **pop** hides the newest visible message by adding its seq to the view
  record that checkpoint restores already use (``session/<id>/view``), with a
  compare-and-set on that record: two concurrent pops never return the same
  message, and a pop survives reopening like any other write. The protocol has
  no "remove the last entry" op; the entry's bytes go at the next trim.
* **trim** drops a prefix of the history (``keep_last=N`` visible messages, or
  every seq ``< before``).

Checkpoints after a trim: a checkpoint keeps its state (its bodies are never
trimmed), but restoring one whose newest message was trimmed away is refused
with :class:`~statekeel.errors.NotFoundError` (see ``checkpoints.restore``):
it would bring back a history that no longer exists.
"""

from __future__ import annotations

import time
from ..core import Core, SessionCore, SessionWrites, layout
from ..core.session_write import ExtraOps, Fence
from ..core.validate import check_int, check_name
from ..errors import ConflictError, InvalidInputError
from ..protocol import Delete, Entry, Expire, Op, Put, Record, Trim
from .history_view import merge_ranges, segments

__all__ = ["clear", "delete_session", "keep_last_cut", "pop", "trim", "trim_before"]

_RETRIES = 100


def delete_session(core: Core, session_id: str, fence: Fence | None = None) -> bool:
    """Remove everything of session ``session_id``; True if it existed.

    ``fence``: the lease the deleting handle holds — the delete is refused with
    :class:`~statekeel.errors.LeaseLostError` if another holder took it over.
    """
    check_name(session_id, "a session id")
    if fence is None:
        return _delete(core, session_id, [])
    with fence.lock:
        try:
            return _delete(core, session_id, [fence.op(time.time())])
        except ConflictError as err:
            raise fence.lost() or err from None


def _delete(core: Core, session_id: str, fenced: list[Op]) -> bool:
    existed = core.backend.get(layout.session_meta_key(session_id)) is not None
    gone = time.time() - 1.0
    own: list[Op] = [*fenced, Expire(layout.session_prefix(session_id), gone)]
    index: list[Op] = [
        Expire(layout.decision_index_prefix(session_id), gone),
        Delete(layout.session_index_key(session_id)),
    ]
    if core.backend.batch_scope == "store":
        core.backend.apply([*own, *index])
    else:  # the session first: a leftover index entry is skipped by listings, a rerun removes it
        core.backend.apply(own)
        core.backend.apply(index)
    return existed


def _commit(sc: SessionCore, make_ops: ExtraOps) -> None:
    """Apply a lifecycle change through the one session write path (TTL renewal, heartbeat)."""
    sc.commit(SessionWrites(extra=make_ops))


def clear(sc: SessionCore, *, state: bool = True) -> int:
    """Drop the whole history (and the session state unless ``state=False``); returns how many
    messages were dropped."""
    if not isinstance(state, bool):
        raise InvalidInputError(f"clear(state=) takes True or False, got {state!r}")
    info = sc.backend.log_info(sc.keys.history)
    end = 0 if info is None else info.last_seq
    count = 0 if info is None else info.last_seq - info.first_seq + 1
    gone = time.time() - 1.0
    _commit(sc, lambda exp: [
        Trim(sc.keys.history, end + 1),
        Delete(layout.session_view_key(sc.id)),
        Expire(layout.summaries_prefix(sc.id), gone),  # they summarise the history cleared
        *([Expire(sc.keys.state_prefix, gone)] if state else []),
    ])
    return count


def pop(sc: SessionCore) -> Entry | None:
    """Hide the newest visible message and return its entry (None when there is none)."""
    vkey = layout.session_view_key(sc.id)
    for _ in range(_RETRIES):
        view = sc.backend.get(vkey)
        hidden = _hidden(sc, view)
        newest = _newest_visible(sc, hidden)
        if newest is None:
            return None
        data, codec = sc.core.codec.encode(
            {"hidden": merge_ranges([*hidden, [newest.seq, newest.seq]])}, "history view", vkey
        )
        expect = None if view is None else view.version
        try:
            _commit(sc, lambda exp: [Put(vkey, data, codec, expect, exp)])
        except ConflictError as err:
            if err.key != vkey:
                raise
            continue  # another pop or a restore changed the view: look again
        return newest
    raise ConflictError(vkey, None, None)


def trim(sc: SessionCore, *, keep_last: int | None = None, before: int | None = None) -> int:
    """Drop the oldest history: keep the newest ``keep_last`` visible messages, or drop every
    seq ``< before``. Returns how many entries were dropped."""
    if (keep_last is None) == (before is None):
        raise InvalidInputError("trim() takes exactly one of keep_last=N or before=seq")
    if before is not None:
        cut: int | None = check_int(before, "before", minimum=1)
    else:
        cut = keep_last_cut(sc, check_int(keep_last, "keep_last"))
    return trim_before(sc, cut)


def keep_last_cut(sc: SessionCore, keep: int) -> int | None:
    """The ``before`` that keeps the newest ``keep`` visible messages (None: no history)."""
    info = sc.backend.log_info(sc.keys.history)
    if info is None:
        return None
    hidden = _hidden(sc, sc.backend.get(layout.session_view_key(sc.id)))
    return _cut_keeping(hidden, info.first_seq, info.last_seq, keep)


def trim_before(sc: SessionCore, cut: int | None) -> int:
    """Drop every entry with seq ``< cut`` (nothing when ``cut`` is None); how many went."""
    info = sc.backend.log_info(sc.keys.history)
    if cut is None or info is None or cut <= info.first_seq:
        return 0
    dropped = sc.commit(SessionWrites(extra=lambda exp: [Trim(sc.keys.history, cut)])).extra[0]
    assert isinstance(dropped, int)
    return dropped


def _hidden(sc: SessionCore, view: Record | None) -> list[list[int]]:
    if view is None:
        return []
    return [list(r) for r in sc.core.codec.decode(view.data, view.codec, view.key)["hidden"]]


def _newest_visible(sc: SessionCore, hidden: list[list[int]]) -> Entry | None:
    info = sc.backend.log_info(sc.keys.history)
    if info is None:
        return None
    for lo, hi in reversed(segments(hidden, info.first_seq, info.last_seq + 1)):
        found = sc.backend.read(sc.keys.history, start=lo, stop=hi, limit=1, reverse=True)
        if found:
            return found[-1]
    return None


def _cut_keeping(hidden: list[list[int]], first: int, last: int, keep: int) -> int:
    """The smallest ``before`` that keeps the newest ``keep`` visible seqs of ``[first, last]``."""
    if keep == 0:
        return last + 1
    left = keep
    for lo, hi in reversed(segments(hidden, first, last + 1)):
        top = last + 1 if hi is None else hi
        size = top - lo
        if size >= left:
            return top - left
        left -= size
    return first

