"""Rewriting Redis's append-only file, so that what was deleted is no longer in it.

The AOF logs every write: a value deleted (a data key destroyed by an erasure, the
data it encrypted) stays in it until Redis rewrites the file from its current data
(``BGREWRITEAOF``; Redis also does so by itself when the file has doubled). Erasure
asks for that rewrite and waits for it (:mod:`statekeel.features.erasure`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

__all__ = ["rewrite_aof"]

log = logging.getLogger("statekeel.redis")

_PATIENCE: Final = 300.0
"""Seconds a rewrite is waited for (it forks and writes the whole data set)."""


def rewrite_aof(client: Any) -> None:
    """``BGREWRITEAOF`` (after any rewrite under way, which may have started before the caller's
    deletes) and wait until Redis has replaced the file. Nothing when the server keeps no AOF; a
    warning when it refuses the command (a managed Redis may rename it)."""
    import redis

    if not int(client.info("persistence").get("aof_enabled", 0)):
        return
    deadline = time.monotonic() + _PATIENCE
    _wait(client, deadline)
    try:
        client.bgrewriteaof()
    except redis.ResponseError as exc:
        log.warning("statekeel: Redis refused BGREWRITEAOF (%s): erased values stay in its AOF until it "
                    "rewrites it", exc)  # fmt: skip
        return
    if not _wait(client, deadline):
        log.warning("statekeel: Redis's AOF rewrite did not finish in %.0f s: erased values stay in the AOF "
                    "until it does", _PATIENCE)  # fmt: skip


def _wait(client: Any, deadline: float) -> bool:
    """Wait until no AOF rewrite is running or scheduled; False at the deadline."""
    while True:
        info = client.info("persistence")
        if not int(info.get("aof_rewrite_in_progress", 0)) and not int(info.get("aof_rewrite_scheduled", 0)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
