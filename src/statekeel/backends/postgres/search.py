"""The PostgreSQL memory index: a ``tsvector`` with a GIN index, and pgvector where installed.

Derived data for ``store.memory(...).search`` (see
:class:`~statekeel.protocol.capabilities.MemoryIndex`), created on first use in the
store's schema: ``sk_memidx`` holds one row per memory record — key, version,
expiry, the normalised terms (``tsv`` = ``array_to_tsvector`` of them: the exact
lexemes the memory feature made, no second parser), metadata as ``jsonb`` (filters
push down as ``@>`` containment, GIN-indexed) and the vector (``bytea``, plus a
pgvector ``vector`` column when the extension exists, so the nearest rows are
found by the database).

Not used through a tenant view or an encrypted store (the feature searches in
process there). Never authoritative: the memory feature writes a row before its
record and checks every hit against its record (version, content digest);
``statekeel memory reindex`` rebuilds it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from ...protocol.capabilities import IndexRow
from ...protocol.keys import prefix_end
from .sql import compose

__all__ = ["PostgresMemoryIndex"]

_DDL = (
    "SELECT pg_advisory_xact_lock(7716005901)",
    'CREATE TABLE IF NOT EXISTS {s}.sk_memidx (key text COLLATE "C" PRIMARY KEY, version bigint NOT NULL,'
    " digest text NOT NULL, expires_at float8, terms text NOT NULL, len int NOT NULL, meta jsonb NOT NULL,"
    " embedder text, vec bytea,"
    " tsv tsvector GENERATED ALWAYS AS (array_to_tsvector(string_to_array(terms, ' '))) STORED)",
    "CREATE INDEX IF NOT EXISTS sk_memidx_tsv ON {s}.sk_memidx USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS sk_memidx_meta ON {s}.sk_memidx USING gin (meta jsonb_path_ops)",
)
_VECTOR_DDL = "ALTER TABLE {s}.sk_memidx ADD COLUMN IF NOT EXISTS emb vector"
_LIVE = "(i.expires_at IS NULL OR i.expires_at > %s)"


def where_sql(where: dict[str, Any]) -> tuple[str, list[Any]]:
    """Exact metadata values as jsonb containment (a list: any of them)."""
    clauses: list[str] = []
    params: list[Any] = []
    for field, want in where.items():
        values = want if isinstance(want, list) else [want]
        clauses.append("(" + (" OR ".join(["i.meta @> %s::jsonb"] * len(values)) or "false") + ")")
        params += [json.dumps({field: v}) for v in values]
    return " AND ".join(clauses) or "true", params


def _tsquery(terms: Sequence[str]) -> str:
    """A tsquery literal matching any of ``terms`` (plain words, quoted; cast, not parsed)."""
    return " | ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms)


def _vector_text(blob: bytes) -> str:
    """pgvector's text form of a little-endian float32 vector."""
    return "[" + ",".join(repr(x) for x in struct.unpack(f"<{len(blob) // 4}f", blob)) + "]"


class _Pooled(Protocol):
    """What the index uses of :class:`~.backend.PostgresBackend`: its schema, pool and error guard."""

    schema: str

    @property
    def _pool(self) -> ConnectionPool[Any]: ...

    def _guard(self) -> AbstractContextManager[None]: ...


class PostgresMemoryIndex:
    """The memory index of one PostgreSQL schema, on the backend's pool."""

    def __init__(self, backend: _Pooled) -> None:
        self._backend = backend
        self._s = backend.schema
        with backend._guard(), backend._pool.connection() as conn:  # noqa: SLF001 - same package
            with conn.transaction():
                for ddl in _DDL:
                    conn.execute(self._q(ddl))
            self.pgvector = self._enable_vector(conn)

    def _q(self, template: str) -> str:
        return compose(template, self._s)

    def _enable_vector(self, conn: Any) -> bool:
        """Use pgvector if the server has it (creating the extension needs the privilege)."""
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute(self._q(_VECTOR_DDL))
            return True
        except Exception:  # noqa: BLE001 - no pgvector here: vectors are compared by the caller
            return False

    def _rows(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._backend._guard(), self._backend._pool.connection() as conn:  # noqa: SLF001
            return list(conn.execute(self._q(query), params).fetchall())

    def _range(self, prefix: str, where: dict[str, Any], now: float) -> tuple[str, list[Any]]:
        cond, params = where_sql(where)
        return f"i.key >= %s AND i.key < %s AND {_LIVE} AND {cond}", [prefix, prefix_end(prefix), now, *params]

    def upsert(self, rows: Sequence[IndexRow]) -> None:
        emb = ", emb" if self.pgvector else ""
        marks = ", %s::vector" if self.pgvector else ""
        sql = (f"INSERT INTO {{s}}.sk_memidx AS i (key, version, digest, expires_at, terms, len, meta, embedder, vec"
               f"{emb}) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s{marks}) ON CONFLICT (key) DO UPDATE SET "
               "version = EXCLUDED.version, digest = EXCLUDED.digest, expires_at = EXCLUDED.expires_at, "
               "terms = EXCLUDED.terms, len = EXCLUDED.len, meta = EXCLUDED.meta, embedder = EXCLUDED.embedder, "
               f"vec = EXCLUDED.vec{', emb = EXCLUDED.emb' if self.pgvector else ''}")
        with self._backend._guard(), self._backend._pool.connection() as conn:  # noqa: SLF001
            with conn.cursor() as cur:
                cur.executemany(self._q(sql), [self._params(r) for r in rows])

    def _params(self, row: IndexRow) -> list[Any]:
        params: list[Any] = [row.key, row.version, row.digest, row.expires_at, row.terms, len(row.terms.split()),
                             json.dumps(row.metadata, default=str), row.embedder, row.vector]
        if self.pgvector:
            params.append(None if row.vector is None else _vector_text(row.vector))
        return params

    def remove(self, keys: Sequence[str]) -> None:
        self._rows("DELETE FROM {s}.sk_memidx WHERE key = ANY(%s) RETURNING key", [list(keys)])

    def clear(self, prefix: str) -> int:
        return len(self._rows("DELETE FROM {s}.sk_memidx WHERE key >= %s AND key < %s RETURNING key",
                              [prefix, prefix_end(prefix)]))

    def text_stats(self, prefix: str, where: dict[str, Any], terms: Sequence[str], now: float
                   ) -> tuple[int, float, dict[str, int]]:
        cond, params = self._range(prefix, where, now)
        per_term = "".join(", count(*) FILTER (WHERE i.tsv @@ %s::tsquery)" for _ in terms)
        row = self._rows(f"SELECT count(*), coalesce(sum(i.len), 0){per_term} FROM {{s}}.sk_memidx i WHERE {cond}",
                         [*(_tsquery([t]) for t in terms), *params])[0]
        n = int(row[0])
        return n, (float(row[1]) / n if n else 0.0), {t: int(c) for t, c in zip(terms, row[2:])}

    def text_matches(self, prefix: str, where: dict[str, Any], terms: Sequence[str], now: float, limit: int
                     ) -> list[tuple[str, int, str, str]]:
        if not terms:
            return []
        cond, params = self._range(prefix, where, now)
        query = _tsquery(terms)
        sql = (f"SELECT i.key, i.version, i.digest, i.terms FROM {{s}}.sk_memidx i "
               f"WHERE i.tsv @@ %s::tsquery AND {cond} ORDER BY ts_rank(i.tsv, %s::tsquery) DESC, i.key LIMIT %s")
        return sorted((r[0], r[1], r[2], r[3]) for r in self._rows(sql, [query, *params, query, limit]))

    def vectors(self, prefix: str, where: dict[str, Any], now: float
                ) -> list[tuple[str, int, str, str | None, bytes | None]]:
        cond, params = self._range(prefix, where, now)
        sql = f"SELECT i.key, i.version, i.digest, i.embedder, i.vec FROM {{s}}.sk_memidx i WHERE {cond} ORDER BY i.key"
        return [(r[0], r[1], r[2], r[3], None if r[4] is None else bytes(r[4])) for r in self._rows(sql, params)]

    def embedders(self, prefix: str, where: dict[str, Any], now: float) -> list[str | None]:
        cond, params = self._range(prefix, where, now)
        return [r[0] for r in self._rows(f"SELECT DISTINCT i.embedder FROM {{s}}.sk_memidx i WHERE {cond}", params)]

    def nearest(self, prefix: str, where: dict[str, Any], vector: bytes, embedder: str, limit: int, now: float
                ) -> list[tuple[str, int, str, float]] | None:
        if not self.pgvector:
            return None
        cond, params = self._range(prefix, where, now)
        sql = (f"SELECT i.key, i.version, i.digest, 1 - (i.emb <=> %s::vector) FROM {{s}}.sk_memidx i "
               f"WHERE i.embedder = %s AND {cond} ORDER BY i.emb <=> %s::vector, i.key LIMIT %s")
        text = _vector_text(vector)
        return [(r[0], r[1], r[2], float(r[3])) for r in self._rows(sql, [text, embedder, *params, text, limit])]
