"""``statekeel ui``: a local web inspector for a store — sessions, timelines, decisions, runs,
checkpoint diffs, event streams and the erasure log — read-only unless asked otherwise.

:func:`open_inspector` opens the store the way the inspector needs (an encrypted store
without its key opens *locked*: counts only), :func:`make_server` binds the HTTP server.
"""

from __future__ import annotations

from ..core.encryption import Encryption
from ..errors import KeyUnavailableError
from ..store import Store, open, open_for_maintenance
from .server import Inspector, is_loopback, make_server, new_token

__all__ = ["Inspector", "is_loopback", "make_server", "new_token", "open_inspector"]


def open_inspector(url: str, encryption: Encryption | None = None) -> tuple[Store, str | None]:
    """The store at ``url`` without migrating it, and why values are unreadable (None: they are).

    Without the key of an encrypted store, the store still opens for maintenance, so the
    overview can show the backend, schema and counts and say plainly what is missing.
    """
    try:
        return open(url, migrate=False, encryption=encryption), None
    except KeyUnavailableError as exc:
        locked = open_for_maintenance(url, encryption=encryption, mark=False)
        return locked, (
            f"this store is encrypted and its key is not available ({exc}); set STATEKEEL_MASTER_KEY "
            "(and STATEKEEL_KEYSTORE_URL if the keystore is elsewhere) and start `statekeel ui` again"
        )
