"""The one place where ``sqlite3`` errors become statekeel errors."""

from __future__ import annotations

import sqlite3

from ...errors import (
    ConfigurationError,
    InvalidInputError,
    MigrationRequiredError,
    NotAStoreError,
    StatekeelError,
    StoreError,
    UnavailableError,
)

__all__ = ["map_error"]


def map_error(exc: BaseException) -> StatekeelError | None:
    if isinstance(exc, UnicodeEncodeError):  # sqlite3 binds str as UTF-8: a lone surrogate cannot be
        return InvalidInputError(
            f"a key or name holds a character SQLite cannot store ({exc.reason}: {exc.object[exc.start:exc.end]!r}); "
            "use valid Unicode text (no lone surrogates)"
        )
    if isinstance(exc, OverflowError):
        return InvalidInputError(f"a number is beyond SQLite's 64-bit integer range ({exc}); use a smaller one")
    if not isinstance(exc, sqlite3.Error):
        return None
    text = str(exc)
    if "malformed" in text:
        return StoreError(
            f"the SQLite store is damaged ({text}); run `statekeel doctor URL` to see what is affected, "
            "and restore from a backup (`statekeel restore`)"
        )
    if "file is not a database" in text:
        return NotAStoreError(
            f"this file is not a SQLite database statekeel can use ({text}); "
            "point the URL at a new file or at an existing statekeel store"
        )
    if "no such table" in text:
        return MigrationRequiredError(
            f"the store's schema is missing or old ({text}); run `statekeel migrate URL`"
        )
    if "locked" in text or "busy" in text:
        return UnavailableError(
            f"the SQLite database stayed locked by another writer ({text}); "
            "retry, or raise ?timeout= in the URL"
        )
    if "unable to open" in text or "readonly" in text:
        return ConfigurationError(
            f"cannot open the SQLite file for writing ({text}); "
            "check that its folder exists and is writable"
        )
    return StoreError(f"SQLite error: {text}")
