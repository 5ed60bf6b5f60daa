"""The SQLite memory index: FTS5 over the memory texts, float32 vectors beside them.

Derived data for ``store.memory(...).search`` (see
:class:`~statekeel.protocol.capabilities.MemoryIndex`): two tables created on
first use, in the store's own file —

* ``sk_memidx`` — one row per memory record: key, version, expiry, the normalised
  terms and their count, metadata as JSON (filters push down with ``json_extract``),
  the embedder and the vector blob;
* ``sk_memfts`` — an FTS5 table over the terms (rowid = ``sk_memidx.rowid``).

Vectors are compared in numpy by the caller: this Python's ``sqlite3`` has no
``enable_load_extension``, so sqlite-vec cannot be loaded (:meth:`nearest` says None).
The index is never authoritative: the memory feature writes a row before its record and
checks every hit against its record (version, content digest); ``statekeel memory
reindex`` rebuilds it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ...protocol.capabilities import IndexRow
from ...protocol.keys import prefix_end

__all__ = ["SQLiteMemoryIndex"]

_DDL = (
    "CREATE TABLE IF NOT EXISTS sk_memidx (key TEXT PRIMARY KEY, version INTEGER NOT NULL, digest TEXT NOT NULL,"
    " expires_at REAL, terms TEXT NOT NULL, len INTEGER NOT NULL, meta TEXT NOT NULL, embedder TEXT, vec BLOB)",
    "CREATE INDEX IF NOT EXISTS sk_memidx_scan ON sk_memidx (key, expires_at, embedder, len)",  # covers stats
    "CREATE VIRTUAL TABLE IF NOT EXISTS sk_memfts USING fts5(terms, tokenize=\"unicode61 remove_diacritics 0 "
    "tokenchars '_'\")",
)
_LIVE = "(i.expires_at IS NULL OR i.expires_at > ?)"
_VectorRow = tuple[Any, ...]
"""``(key, version, digest, embedder, vector, expires_at)``."""
_ITEM = "instr(k.key, '/=') > 0"


def where_sql(where: dict[str, Any], column: str = "i.meta") -> tuple[str, list[Any]]:
    """SQL (and parameters) for exact metadata values; a list value matches any of its elements."""
    clauses: list[str] = []
    params: list[Any] = []
    for field, want in where.items():
        path = f'$."{field}"'
        options: list[str] = []
        for value in want if isinstance(want, list) else [want]:
            if value is None:
                options.append(f"json_type({column}, ?) = 'null'")
                params.append(path)
            elif isinstance(value, bool):
                options.append(f"json_type({column}, ?) = ?")
                params += [path, "true" if value else "false"]
            elif isinstance(value, (int, float)):
                options.append(f"(json_type({column}, ?) IN ('integer', 'real') AND json_extract({column}, ?) = ?)")
                params += [path, path, value]
            else:
                options.append(f"(json_type({column}, ?) = 'text' AND json_extract({column}, ?) = ?)")
                params += [path, path, value]
        clauses.append("(" + (" OR ".join(options) or "0") + ")")
    return " AND ".join(clauses) or "1", params


def _match(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of ``terms`` (each quoted: they are plain words)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class _Connected(Protocol):
    """What the index uses of :class:`~.backend.SQLiteBackend`: its locked connection."""

    def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...


class SQLiteMemoryIndex:
    """The memory index of one SQLite store, on the backend's connection and lock."""

    def __init__(self, backend: _Connected) -> None:
        self._backend = backend
        self._writes = 0
        """Index writes through this object: with ``PRAGMA data_version`` (other connections' commits),
        what says the cached vectors are still the index's."""
        self._cached: dict[tuple[str, str], tuple[tuple[int, int], list[_VectorRow]]] = {}
        with backend._write() as c:  # noqa: SLF001 - same package: one connection, one lock
            for ddl in _DDL:
                c.execute(ddl)

    def _range(self, prefix: str, where: dict[str, Any], now: float) -> tuple[str, list[Any]]:
        sql, params = where_sql(where)
        return f"i.key >= ? AND i.key < ? AND {_LIVE} AND {sql}", [prefix, prefix_end(prefix), now, *params]

    def upsert(self, rows: Sequence[IndexRow]) -> None:
        self._writes += 1
        with self._backend._write() as c:  # noqa: SLF001
            for row in rows:
                old = c.execute("SELECT rowid FROM sk_memidx WHERE key = ?", (row.key,)).fetchone()
                if old is not None:
                    c.execute("DELETE FROM sk_memfts WHERE rowid = ?", (old[0],))
                    c.execute("DELETE FROM sk_memidx WHERE rowid = ?", (old[0],))
                cur = c.execute(
                    "INSERT INTO sk_memidx (key, version, digest, expires_at, terms, len, meta, embedder, vec)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.key, row.version, row.digest, row.expires_at, row.terms, len(row.terms.split()),
                     json.dumps(row.metadata, default=str), row.embedder, row.vector),
                )
                c.execute("INSERT INTO sk_memfts (rowid, terms) VALUES (?, ?)", (cur.lastrowid, row.terms))

    def remove(self, keys: Sequence[str]) -> None:
        self._writes += 1
        with self._backend._write() as c:  # noqa: SLF001
            for key in keys:
                c.execute("DELETE FROM sk_memfts WHERE rowid IN (SELECT rowid FROM sk_memidx WHERE key = ?)", (key,))
                c.execute("DELETE FROM sk_memidx WHERE key = ?", (key,))

    def clear(self, prefix: str) -> int:
        span = (prefix, prefix_end(prefix))
        self._writes += 1
        with self._backend._write() as c:  # noqa: SLF001
            c.execute("DELETE FROM sk_memfts WHERE rowid IN (SELECT rowid FROM sk_memidx WHERE key >= ? AND key < ?)",
                      span)
            return c.execute("DELETE FROM sk_memidx WHERE key >= ? AND key < ?", span).rowcount

    def text_stats(self, prefix: str, where: dict[str, Any], terms: Sequence[str], now: float
                   ) -> tuple[int, float, dict[str, int]]:
        cond, params = self._range(prefix, where, now)
        with self._backend._read() as c:  # noqa: SLF001
            n, total = c.execute(f"SELECT count(*), total(i.len) FROM sk_memidx i WHERE {cond}", params).fetchone()
            df = {t: c.execute(f"SELECT count(*) FROM sk_memfts f JOIN sk_memidx i ON i.rowid = f.rowid "
                               f"WHERE f.terms MATCH ? AND {cond}", [_match([t]), *params]).fetchone()[0]
                  for t in terms}
        return int(n), (float(total) / n if n else 0.0), df

    def text_matches(self, prefix: str, where: dict[str, Any], terms: Sequence[str], now: float, limit: int
                     ) -> list[tuple[str, int, str, str]]:
        if not terms:
            return []
        cond, params = self._range(prefix, where, now)
        sql = (f"SELECT i.key, i.version, i.digest, i.terms FROM sk_memfts f JOIN sk_memidx i ON i.rowid = f.rowid "
               f"WHERE f.terms MATCH ? AND {cond} ORDER BY f.rank LIMIT ?")
        with self._backend._read() as c:  # noqa: SLF001
            return sorted(tuple(r) for r in c.execute(sql, [_match(terms), *params, limit]))

    def vectors(self, prefix: str, where: dict[str, Any], now: float
                ) -> list[tuple[str, int, str, str | None, bytes | None]]:
        """Read once and kept while the index is unchanged (no write here, no commit by another
        connection): the vectors are most of what a search reads. Expiry is applied to the copy."""
        ident = (prefix, json.dumps(where, sort_keys=True, default=str))
        with self._backend._read() as c:  # noqa: SLF001
            stamp = (int(c.execute("PRAGMA data_version").fetchone()[0]), self._writes)
            hit = self._cached.get(ident)
            if hit is None or hit[0] != stamp:
                cond, params = self._range(prefix, where, -1.0)  # every row; expiry below
                sql = (f"SELECT i.key, i.version, i.digest, i.embedder, i.vec, i.expires_at FROM sk_memidx i "
                       f"WHERE {cond} ORDER BY i.key")
                hit = self._cached[ident] = (stamp, [tuple(r) for r in c.execute(sql, params)])
                if len(self._cached) > 64:
                    self._cached = {ident: hit}
        return [r[:5] for r in hit[1] if r[5] is None or r[5] > now]

    def embedders(self, prefix: str, where: dict[str, Any], now: float) -> list[str | None]:
        cond, params = self._range(prefix, where, now)
        with self._backend._read() as c:  # noqa: SLF001
            return [r[0] for r in c.execute(f"SELECT DISTINCT i.embedder FROM sk_memidx i WHERE {cond}", params)]

    def nearest(self, prefix: str, where: dict[str, Any], vector: bytes, embedder: str, limit: int, now: float
                ) -> list[tuple[str, int, str, float]] | None:
        return None  # no sqlite-vec here (sqlite3 cannot load extensions): the caller ranks in numpy
