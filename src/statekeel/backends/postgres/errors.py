"""The one place where psycopg and pool errors become statekeel errors."""

from __future__ import annotations

import json

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

from ...errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    MigrationRequiredError,
    StatekeelError,
    StoreError,
    UnavailableError,
    StoreClosedError,
    maybe_applied,
)
from .sql import CONFLICT_SQLSTATE

__all__ = ["RACES", "RETRIES", "map_error"]

RETRIES = 5
"""Attempts for a batch that lost a deadlock or serialization race."""

RACES = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
"""What a batch that lost such a race raises: nothing was applied, run it again."""

_RETRYABLE_STATES = ("40001", "40P01", "55P03")
"""Serialization failure, deadlock, lock not available: the batch was rolled back."""

_CONFIG_WORDS = (
    "password authentication failed", "does not exist", "no pg_hba.conf entry", "role ",
    "unrecognized configuration parameter", "invalid value for parameter",  # a bad ?options=-c name=value
)

_URL_WORDS = ("invalid URI query parameter", "bad value for", "for connection option", ' value: "')
"""libpq refusing a URL option or its value (``invalid sslmode value: "x"``): the URL is wrong."""


def map_error(exc: BaseException, where: str) -> StatekeelError | None:
    """The statekeel error for a psycopg / pool exception raised while talking to ``where``."""
    if isinstance(exc, (PoolTimeout, TooManyRequests)):
        return _unavailable(exc, where)
    if isinstance(exc, PoolClosed):
        return StoreClosedError.of(where)
    if isinstance(exc, UnicodeEncodeError):
        return InvalidInputError(f"cannot send {exc.object[exc.start:exc.end]!r} to PostgreSQL: keys, "
                                 "names and codecs must be valid Unicode text (no lone surrogates)")
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    if state == CONFLICT_SQLSTATE:
        return _conflict(exc)
    if state[:2] in ("28", "3D") or (not state and any(w in str(exc) for w in _CONFIG_WORDS)):
        return ConfigurationError(f"cannot use PostgreSQL at {where}: {_first_line(exc)}; fix the URL")
    if not state and any(w in str(exc) for w in _URL_WORDS):
        return ConfigurationError(f"PostgreSQL's client library (libpq) refused {where}: {_first_line(exc)}; "
                                  "fix that option of the URL (docs/postgres.md lists them)")
    if _is_connection(exc, state):
        return _unavailable(exc, where)
    return _map_statement_error(exc, state, where)


def _is_connection(exc: psycopg.Error, state: str) -> bool:
    if not state:  # libpq's own errors: refused, reset, closed
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return state[:2] in ("08", "53", "57") or state == "25006"  # 25006: a read-only standby


def _map_statement_error(exc: psycopg.Error, state: str, where: str) -> StatekeelError:
    why = _first_line(exc)
    if state in _RETRYABLE_STATES:
        return UnavailableError(f"PostgreSQL at {where} kept aborting the batch ({why}) after "
                                f"{RETRIES} attempts; nothing was written — retry the call")
    if state == "42501":
        return ConfigurationError(f"the PostgreSQL role lacks a privilege at {where} ({why}); grant it, "
                                  "or have an owner run the statements of `statekeel migrate --print-sql`")
    if state == "42883" and "operator does not exist" in why:
        return InvalidInputError(f"PostgreSQL cannot compare a value of the wrong type ({why}): versions, "
                                 "seqs and limits must be int; nothing was written")
    if state in ("42P01", "42703", "3F000", "42883"):
        return MigrationRequiredError(f"the store's schema at {where} is missing or old ({why}); "
                                      "run `statekeel migrate URL` or open it with migrate=True")
    if state == "42939":
        return ConfigurationError(f"PostgreSQL refused a name at {where} ({why}); choose another ?schema=")
    if state == "22003":
        return InvalidInputError(f"a number is out of PostgreSQL's range ({why}): versions, seqs and limits "
                                 "must fit in a signed 64-bit integer (below 2**63); nothing was written")
    if state[:2] == "22" or isinstance(exc, psycopg.DataError):
        return InvalidInputError(f"PostgreSQL refused a value: {why}; nothing was written")
    return StoreError(f"PostgreSQL error {state or type(exc).__name__} at {where}: {why}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _unavailable(exc: BaseException, where: str) -> UnavailableError:
    return maybe_applied(UnavailableError(
        f"PostgreSQL at {where} is unavailable ({_first_line(exc)}); a write in flight may or may not have "
        "been applied (the connection broke after it was sent) — read back before retrying a write; "
        "the next call reconnects by itself (raise ?timeout= to wait longer)"
    ))


def _conflict(exc: psycopg.Error) -> ConflictError:
    detail = json.loads(exc.diag.message_detail or "{}")
    return ConflictError(str(detail.get("key")), detail.get("expected"), detail.get("actual"))
