"""Where the ADK adapter keeps things in a statekeel store, and how events are stored.

* An ADK session ``(app, user, id)`` is statekeel session ``adk/<app>/<user>/<id>``
  (app and user percent-quoted, so ``/`` separates the parts unambiguously) owned by
  statekeel user ``<user>``: erasing that user erases their ADK sessions too. Ids of
  one app (and user) are one contiguous range of the session index, which is what
  lets ``list_sessions`` read only them.
* Each event is one history message: the event's JSON (``model_dump(mode="json")``).
* Session state is the session's state scope, key by key, plus one adapter key,
  :data:`HEAD`, holding ``last_update_time``; its version is the revision a stale
  writer is refused by (compare-and-set).
* ``app:`` state lives in statekeel's ``app`` scope and ``user:`` state in scope
  ``user:<user>``, both under keys ``adk/<app>/<key>``; ``temp:`` state is never stored.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from ...core.validate import check_name
from ...errors import InvalidInputError

__all__ = ["HEAD", "app_prefix", "scoped_key", "session_key", "split_session_key", "user_prefix"]

HEAD = "statekeel:adk-head"
"""The adapter's key in each session's state: ``{"t": last_update_time}``."""


def _q(part: str, what: str = "an app_name or user_id") -> str:
    if type(part) is not str:
        raise InvalidInputError(f"{what} must be a str, got {type(part).__name__}")
    return quote(check_name(part, what) if part else part, safe="")  # a lone surrogate has no UTF-8


def app_prefix(app_name: str) -> str:
    """The id prefix of every session of ``app_name``."""
    return f"adk/{_q(app_name)}/"


def user_prefix(app_name: str, user_id: str) -> str:
    """The id prefix of every session of ``user_id`` in ``app_name``."""
    return f"{app_prefix(app_name)}{_q(user_id)}/"


def session_key(app_name: str, user_id: str, session_id: str) -> str:
    """The statekeel session id of an ADK session (InvalidInputError for a non-str or empty id)."""
    return user_prefix(app_name, user_id) + check_name(session_id, "a session_id")


def split_session_key(key: str) -> tuple[str, str, str] | None:
    """``(app, user, id)`` of a statekeel session id made by :func:`session_key`, else None."""
    parts = key.split("/", 3)
    if len(parts) != 4 or parts[0] != "adk":
        return None
    return unquote(parts[1]), unquote(parts[2]), parts[3]


def scoped_key(app_name: str, key: str) -> str:
    """The key of ``app:``/``user:`` state ``key`` of ``app_name`` in its statekeel scope."""
    return f"adk/{_q(app_name)}/{key}"

