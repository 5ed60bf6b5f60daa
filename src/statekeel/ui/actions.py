"""The inspector's write actions, each one public store call: restore, fork, resolve, resume, delete.

They run only when the server was started with ``--allow-writes`` and the request says
``"confirm": true`` (the browser asks first); otherwise :class:`WritesDisabledError`
(HTTP 403). Delete is offered only when the store has ``delete_session``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidInputError, UsageError
from ..store import Store
from .pages import run_dict
from .sessions import checkpoint_dict, info_dict, read_session

__all__ = ["ACTIONS", "WritesDisabledError", "can_delete", "perform"]


class WritesDisabledError(UsageError):
    """A write action asked of a read-only inspector (HTTP 403)."""


def can_delete(store: Store) -> bool:
    """Whether this statekeel's Store can delete a session (issue 12 adds ``delete_session``)."""
    return callable(getattr(store, "delete_session", None))


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name!r} must be a non-empty string in the request body")
    return value


def _ref(body: dict[str, Any]) -> int | str:
    """A checkpoint by id (a number) or by label."""
    value = body.get("checkpoint")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = _text(body, "checkpoint")
    assert text is not None
    return int(text) if text.isdigit() else text


def _restore(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    session = read_session(store, _text(body, "session") or "")
    done = session.restore(_ref(body))
    return {"restored": checkpoint_dict(done), "hidden": [list(r) for r in session.hidden_ranges()]}


def _fork(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    session = read_session(store, _text(body, "session") or "")
    into = _text(body, "into") or ""
    if store.session_info(into) is not None:
        raise InvalidInputError(f"session {into!r} already exists; fork into a new session id")
    forked = session.fork(_ref(body), into=into)
    return {"forked": info_dict(forked.info())}


def _resolve(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    if "outcome" not in body:
        raise InvalidInputError("give the decision's 'outcome' (any JSON value) in the request body")
    d = store.resolve_decision(_text(body, "decision") or "", body["outcome"], by=_text(body, "by", required=False))
    return {"resolved": {"id": d.id, "status": d.status, "outcome": d.outcome, "resolved_by": d.resolved_by}}


def _resume(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    if "value" not in body:
        raise InvalidInputError("give the 'value' (any JSON value) the waiting step asked for")
    info = store.resume_run(_text(body, "run") or "", _text(body, "step", required=False), body["value"])
    return {"resumed": run_dict(info)}


def _delete(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    if not can_delete(store):
        raise InvalidInputError("this statekeel cannot delete sessions yet (Store.delete_session is missing)")
    session_id = _text(body, "session") or ""
    read_session(store, session_id)
    result = getattr(store, "delete_session")(session_id)
    return {"deleted": session_id, "result": result if isinstance(result, (bool, int, str)) else None}


ACTIONS: dict[str, Callable[[Store, dict[str, Any]], dict[str, Any]]] = {
    "restore": _restore, "fork": _fork, "resolve": _resolve, "resume": _resume, "delete": _delete,
}


def perform(store: Store, name: str, body: dict[str, Any], *, allowed: bool) -> dict[str, Any]:
    """Run write action ``name``; refused unless writes are allowed and the body confirms it."""
    if name not in ACTIONS:
        raise InvalidInputError(f"no action {name!r}; the actions are {', '.join(ACTIONS)}")
    if not allowed:
        raise WritesDisabledError(
            f"{name} changes the store and this inspector is read-only; restart it with "
            "`statekeel ui --allow-writes` to enable restore, fork, resolve, resume and delete"
        )
    if body.get("confirm") is not True:
        raise InvalidInputError(f"{name} changes the store: send \"confirm\": true once the user has confirmed it")
    return ACTIONS[name](store, body)
