"""What is stored about sessions, read and listed without opening them.

The session record ``session/<id>/meta`` holds user, status and TTL; the index
entry ``idx/sessions/<id>`` is what listings scan (see :mod:`statekeel.core.layout`).
Both are written in one batch by :func:`put_meta`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core import Core, layout
from ..core.session_write import apply_across_partitions
from ..core.validate import check_limit, check_name, check_optional_name, stored_seconds
from ..errors import ConflictError, InvalidInputError, NotFoundError
from ..models import SESSION_STATUSES, SessionInfo, SessionStatus, to_datetime
from ..protocol import ANY, Expect, LogInfo, Put, Record, keys
from .leases import session_alive

__all__ = [
    "check_status", "get_info", "iter_sessions", "list_sessions", "mark_stale_crashed", "put_meta",
    "session_info", "set_status",
]


def check_status(status: Any) -> None:
    if status not in SESSION_STATUSES:
        raise InvalidInputError(f"status must be one of {', '.join(SESSION_STATUSES)}, got {status!r}")


def session_info(core: Core, session_id: str, rec: Record) -> SessionInfo:
    """Info from the meta record; ``updated_at`` also counts the last append."""
    return _info(core, session_id, rec, core.backend.log_info(layout.history_log(session_id)))


def _info(core: Core, session_id: str, rec: Record, log: LogInfo | None) -> SessionInfo:
    """:func:`session_info` from the meta record and the history's bounds, already read."""
    body = core.codec.decode(rec.data, rec.codec, rec.key)
    updated = max(rec.updated_at, log.updated_at) if log else rec.updated_at
    return SessionInfo(
        session_id, body.get("user"), body.get("status", "active"),
        to_datetime(rec.created_at), to_datetime(updated),  # type: ignore[arg-type]
        to_datetime(rec.expires_at), stored_seconds(body.get("ttl")),
    )


def put_meta(core: Core, session_id: str, body: dict[str, Any], expect: Expect, expires: float | None) -> Record:
    """The session record and its index entry, in one batch (index first where batches are per partition)."""
    mkey, ikey = layout.session_meta_key(session_id), layout.session_index_key(session_id)
    data, codec = core.codec.encode(body, f"session {session_id!r} metadata", mkey)
    idx_data, idx_codec = core.codec.encode({}, f"session {session_id!r} index", ikey)
    ops = [Put(mkey, data, codec, expect, expires), Put(ikey, idx_data, idx_codec, ANY, expires)]
    rec = apply_across_partitions(core.backend, ops)[0]
    assert isinstance(rec, Record)
    return rec


def get_info(core: Core, session_id: str) -> SessionInfo | None:
    """What is stored about ``session_id``, or None; reads only."""
    check_name(session_id, "a session id")
    rec = core.backend.get(layout.session_meta_key(session_id))
    return None if rec is None else session_info(core, session_id, rec)


def set_status(core: Core, session_id: str, status: SessionStatus) -> SessionInfo:
    for _ in range(100):
        rec = core.backend.get(layout.session_meta_key(session_id))
        if rec is None:
            raise NotFoundError(f"no session {session_id!r}; open it with store.session(id) first")
        body = dict(core.codec.decode(rec.data, rec.codec, rec.key))
        body["status"] = status
        try:
            return session_info(core, session_id, put_meta(core, session_id, body, rec.version, rec.expires_at))
        except ConflictError:
            continue
    raise ConflictError(layout.session_meta_key(session_id), None, None)


def list_sessions(
    core: Core,
    *,
    status: SessionStatus | None = None,
    user: str | None = None,
    stale_after: float | None = None,
    after: str | None = None,
    limit: int = 50,
) -> tuple[list[SessionInfo], str | None]:
    """One page of sessions matching the filters, in id order, and the next cursor."""
    check_limit(limit)
    check_optional_name(user, "user")
    check_optional_name(after, "after (a session id from page.next)")
    if status is not None:
        check_status(status)
    if stale_after is not None and status not in (None, "active"):
        raise InvalidInputError(
            f"stale_after only applies to active sessions, so status={status!r} would match nothing; "
            "drop one of the two filters"
        )
    out: list[SessionInfo] = []
    cursor = layout.session_index_key(after) if after is not None else None
    while len(out) < limit:
        idx = core.backend.scan(layout.SESSION_INDEX_PREFIX, after=cursor, limit=max(limit, 100))
        if not idx:
            return out, None
        ids = [keys.split(r.key)[-1] for r in idx]
        metas = core.backend.get_many([layout.session_meta_key(i) for i in ids])
        found = [(sid, meta) for sid, meta in zip(ids, metas) if meta is not None]
        while found:  # the histories' bounds in batches of what the page still needs (one query on PostgreSQL)
            batch, found = found[: limit - len(out)], found[limit - len(out) :]
            logs = core.backend.log_info_many([layout.history_log(sid) for sid, _ in batch])
            for (sid, meta), log in zip(batch, logs):
                info = _info(core, sid, meta, log)
                if _matches(core, info, status, user, stale_after):
                    out.append(info)
                    if len(out) == limit:
                        return out, sid
        cursor = idx[-1].key
    return out, None


def _matches(
    core: Core, info: SessionInfo, status: str | None, user: str | None, stale_after: float | None
) -> bool:
    if status is not None and info.status != status:
        return False
    if user is not None and info.user != user:
        return False
    # silent is not dead: a live lease or a running decide block keeps a session off stale lists
    return stale_after is None or (info.is_stale(stale_after) and not session_alive(core, info.id))


def mark_stale_crashed(core: Core, stale_after: float, user: str | None) -> list[SessionInfo]:
    """Mark crashed every active session (of ``user``) silent for ``stale_after`` and not alive.

    Each is checked again just before it is marked (its record re-read, its lease and
    decide blocks looked at), so an agent that wrote or started a block meanwhile is spared.
    """
    out: list[SessionInfo] = []
    for found in list(iter_sessions(core, status="active", user=user, stale_after=stale_after)):
        for _ in range(100):
            rec = core.backend.get(layout.session_meta_key(found.id))
            if rec is None or not _matches(core, session_info(core, found.id, rec), "active", None, stale_after):
                break
            body = {**core.codec.decode(rec.data, rec.codec, rec.key), "status": "crashed"}
            try:
                new = put_meta(core, found.id, body, rec.version, rec.expires_at)
            except ConflictError:
                continue
            out.append(session_info(core, found.id, new))
            break
    return out


def iter_sessions(core: Core, **filters: Any) -> Iterator[SessionInfo]:
    """Every session matching ``filters`` (those of :func:`list_sessions`), page by page."""
    after = None
    while True:
        page, after = list_sessions(core, after=after, **filters)
        yield from page
        if after is None:
            return
