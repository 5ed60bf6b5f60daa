"""What an ADK write puts into its session's batch besides the event: state deltas and the head.

Shared by the service's sync methods (on its worker) and their native asyncio twins (:mod:`._native`).
"""

from __future__ import annotations

from typing import Any

from ...core.session_write import ExtraOps, StatePut
from ...protocol import ANY
from ...store import Store
from . import _layout as L

__all__ = ["scoped_ops", "session_puts"]


def session_puts(deltas: dict[str, dict[str, Any]]) -> list[StatePut]:
    """The session-state deltas as the batch's puts (unconditional)."""
    return [(k, v, ANY, None) for k, v in deltas["session"].items()]


def scoped_ops(store: Store, app: str, user: str, deltas: dict[str, dict[str, Any]]) -> ExtraOps | None:
    """The ``app:``/``user:`` delta writes, added to the session's own batch: they live in
    other partitions, so one ``apply`` carries them with the event (atomically on every
    backend whose batches span the store; first, on their own, on Redis Cluster)."""
    ops = [op for view, values in ((store.app, deltas["app"]), (store.user(user), deltas["user"]))
           for k, v in values.items() for op in view.put_op(L.scoped_key(app, k), v)]  # fmt: skip
    return (lambda _expires: ops) if ops else None
