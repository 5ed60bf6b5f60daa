"""How redis-py's errors become statekeel's (the sync and asyncio backends share it)."""

from __future__ import annotations

from redis import exceptions as rx

from ...errors import (
    ConfigurationError,
    NotAStoreError,
    StatekeelError,
    StoreError,
    UnavailableError,
    maybe_applied,
)

__all__ = ["map_error"]


def map_error(exc: BaseException) -> StatekeelError | None:
    """The one place where redis-py errors become statekeel errors."""
    if not isinstance(exc, rx.RedisError):
        return None
    text = str(exc)
    if isinstance(exc, (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError)):
        return ConfigurationError(
            f"Redis refused the credentials or the command ({text}); check the user and password in the URL"
        )
    if isinstance(exc, rx.BusyLoadingError):
        return UnavailableError(f"Redis is still loading its data ({text}); retry in a moment")
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError)) and " connecting to " in f" {text}":
        return UnavailableError(  # redis-py could not connect: nothing was sent
            f"Redis is unreachable ({text}); nothing was written — retry: the next call reconnects by itself"
        )
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError)):
        return maybe_applied(UnavailableError(
            f"Redis is unreachable or did not answer ({text}); a write in flight may or may not "
            "have been applied — read back before retrying a write; the next call reconnects by itself"
        ))
    if isinstance(exc, rx.ReadOnlyError):
        return UnavailableError(f"Redis is a read-only replica right now ({text}); retry after the failover")
    if isinstance(exc, (rx.AskError, rx.ClusterError, rx.ClusterCrossSlotError)) or "CROSSSLOT" in text:
        return ConfigurationError(
            f"the URL points at a Redis Cluster ({text}); this backend talks to one node — "
            "use a standalone Redis/Valkey (with a replica for failover)"
        )
    if isinstance(exc, rx.OutOfMemoryError):
        return StoreError(f"Redis is out of memory ({text}); raise maxmemory or purge expired data")
    if "DB index is out of range" in text:  # SELECT of a database the server does not have (``databases``)
        return ConfigurationError(
            f"Redis has no such database ({text}): the database in the URL (redis://host:6379/N or ?db=N) "
            "must be below the server's `databases` setting (16 by default; CONFIG GET databases) — "
            "use a lower number, or raise `databases` in redis.conf"
        )
    if "WRONGTYPE" in text:
        return NotAStoreError(
            f"a Redis key under this store's prefix holds data statekeel did not write ({text}); "
            "use another ?prefix= or database"
        )
    return StoreError(f"Redis error: {text}")
