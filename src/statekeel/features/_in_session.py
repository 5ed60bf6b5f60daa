"""Writing a feature's records into a session's partition, under its TTL.

Decisions and notes live under ``session/<id>/`` so one batch stays in one
partition and the records expire with the session. A session write must also
renew the session's TTL the way :meth:`Session._commit` does; this helper is
that rule for records the session module does not know about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..protocol import KEEP, ExpiresAt, Op, OpResult, Touch

if TYPE_CHECKING:
    from .sessions import Session

__all__ = ["apply_in_session", "append_expiry"]


def append_expiry(session: Session, expires: float | None) -> ExpiresAt:
    """The ``expires_at`` for an Append: unchanged for sessions without a TTL."""
    return KEEP if session.ttl is None else expires


def apply_in_session(session: Session, make_ops: Callable[[float | None], Sequence[Op]]) -> list[OpResult]:
    """Apply ``make_ops(expires_at)`` atomically with the session's TTL renewal.

    Results align with the ops ``make_ops`` returned.
    """
    from .sessions import index_key  # sessions imports this module's users

    expires, renew = session._renewal()
    ops = list(make_ops(expires))
    results = session._backend.apply([*renew, *ops])
    if expires is not None and expires != session._expires_at:
        session._expires_at = expires
        session._backend.apply([Touch(index_key(session.id), expires)])
    return results[len(renew) :]
