"""The SQL of the PostgreSQL backend: reads, and the fragments writes are made of.

Every template names its tables as ``{s}.table``; :func:`build` and
:func:`batch_sql` fill in the quoted schema with :mod:`psycopg.sql`, so no
statement depends on ``search_path`` and user input never becomes SQL text.
The tables and functions they use are created by :mod:`.migrations`.

A write operation is a :class:`Fragment`: data-modifying CTEs plus the
expressions of its result. ``@`` in a fragment stands for the operation's
prefix (``o0_``, ``o1_``, …) in CTE and parameter names, so the fragments of a
batch join into ONE statement::

    WITH o0_head AS (…append…), o0_ins AS (…), o1_w AS (…put…)
    SELECT (SELECT base + 1 FROM o0_head), (SELECT version FROM o1_w), …

Conventions:

* ``%(now)s`` is the client's ``time.time()``, so expiry agrees with every other
  backend; a row is live when ``expires_at IS NULL OR expires_at > now``.
* A value is stored in ``doc`` (``json``, the text verbatim) when its codec is
  plain ``json`` and in ``data`` (``bytea``) otherwise; reads return
  ``coalesce(data, convert_to(doc::text, 'UTF8'))``, the original bytes.
* A compare-and-set that does not hold makes the result expression call
  ``{s}.sk_conflict(key, expected, now)``, which raises SQLSTATE ``SK409`` with
  the key and the expected and actual versions as JSON in the error detail.
  Result expressions are evaluated left to right, so the first conflicting
  operation is the one reported.
* Appending to an expired log raises ``SK410`` (``{s}.sk_dead_log``): the
  caller drops that log (:attr:`Queries.drop_dead_log`) and runs the batch again,
  which starts a new log numbered from 1.
* Every row written stores its checksum (:mod:`statekeel.protocol.integrity`)
  in ``checksum``, an ``integer``: the unsigned 32-bit sum in two's complement
  (4 bytes a row). Where SQL numbers the row (``version + 1``, ``base + n``) the
  client passes the CRC part, ``%(@crc)s``, and SQL adds the number
  (:func:`sealed`); elsewhere the client passes the whole sum, ``%(@sum)s``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

from psycopg import sql

__all__ = [
    "APPEND_VALUES_MAX",
    "CONFLICT_SQLSTATE",
    "DEAD_LOG_SQLSTATE",
    "FRAGMENTS",
    "TENANT_EXPR",
    "TENANT_SETTING",
    "Fragment",
    "Queries",
    "batch_sql",
    "build",
    "compose",
    "sealed",
    "split",
]

TENANT_SETTING = "statekeel.tenant"
TENANT_EXPR = "coalesce(current_setting('statekeel.tenant', true), '')"

CONFLICT_SQLSTATE = "SK409"
DEAD_LOG_SQLSTATE = "SK410"

# Advisory locks named by text (the schema comes first in the name, so stores do not share them);
# transaction-scoped: released by the COMMIT or ROLLBACK that ends their transaction.
LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtextextended(%(lock)s, 0))"
LOCK_EXCLUSIVE = "SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))"
LOCK_WAIT = "SELECT set_config('lock_timeout', %(wait)s, true)"


def sealed(crc: str, n: str) -> str:
    """SQL for the stored checksum: ``(crc + n) mod 2**32`` as a signed ``integer``.

    Two's complement keeps the column 4 bytes; :func:`.rows.unsigned` undoes it.
    ``%%`` is ``%`` in a statement that takes parameters.
    """
    return f"((({crc})::bigint + ({n}) + 2147483648) %% 4294967296 - 2147483648)::integer"


def compose(template: str, schema: str, **extra: sql.Composable) -> str:
    """``template`` with ``{s}`` (and ``extra``) filled in as quoted SQL."""
    return sql.SQL(template).format(s=sql.Identifier(schema), **extra).as_string()


# -- write fragments ----------------------------------------------------------
_LIVE = "(expires_at IS NULL OR expires_at > %(now)s)"
_KEEP_OR_NEW = "CASE WHEN %(@keep)s THEN expires_at ELSE %(@exp)s::float8 END"
_CONFLICT = "{s}.sk_conflict(%(@key)s, %(@expect)s::bigint, %(now)s)"
_DEAD_KV = "(t.expires_at IS NOT NULL AND t.expires_at <= excluded.updated_at)"
_NEXT_VERSION = f"CASE WHEN {_DEAD_KV} THEN 1 ELSE t.version + 1 END"
_UPSERT = (
    "INSERT INTO {s}.sk_kv AS t (key, data, doc, codec, version, created_at, updated_at, expires_at, checksum)"
    " VALUES (%(@key)s, %(@data)b, %(@doc)s::json, %(@codec)s, 1, %(now)s, %(now)s, %(@exp)s::float8,"
    f" {sealed('%(@crc)s', '1')})"
    " ON CONFLICT (key) DO UPDATE SET data = excluded.data, doc = excluded.doc, codec = excluded.codec,"
    f" version = {_NEXT_VERSION}, checksum = {sealed('%(@crc)s', _NEXT_VERSION)},"
    f" created_at = CASE WHEN {_DEAD_KV} THEN excluded.created_at ELSE t.created_at END,"
    " updated_at = excluded.updated_at,"
    f" expires_at = CASE WHEN %(@keep)s AND NOT {_DEAD_KV} THEN t.expires_at ELSE excluded.expires_at END"
)
_RETURNING = " RETURNING version, created_at, expires_at"
_REST_OF_PUT = ", (SELECT created_at FROM @w), (SELECT expires_at FROM @w)"
_DELETE = "DELETE FROM {s}.sk_kv WHERE key = %(@key)s"
_DEAD_LOG = "(l.expires_at IS NOT NULL AND l.expires_at <= %(now)s)"


# Appends upsert the log header: its row lock serialises appends to one log.
_APPEND_HEAD = (
    "@head AS (INSERT INTO {s}.sk_logs AS l (name, first_seq, last_seq, created_at, updated_at,"
    " expires_at) VALUES (%(@log)s, 1, %(@n)s, %(now)s, %(now)s, %(@exp)s::float8)"
    f" ON CONFLICT (name) DO UPDATE SET last_seq = CASE WHEN {_DEAD_LOG}"
    " THEN {s}.sk_dead_log(l.name) ELSE l.last_seq + %(@n)s END, updated_at = %(now)s,"
    " expires_at = CASE WHEN %(@keep)s THEN l.expires_at ELSE %(@exp)s::float8 END"
    " RETURNING id, last_seq - %(@n)s AS base)"
)
_APPEND_ROWS = (
    "INSERT INTO {s}.sk_entries (log_id, seq, data, doc, codec, created_at, checksum)"
    f" SELECT h.id, h.base + i.n, i.data, i.doc, i.codec, %(now)s, {sealed('i.crc', 'h.base + i.n')}"
    " FROM @head h, "
)
_APPEND_ARRAYS = (
    "unnest(%(@datas)b::bytea[], %(@docs)b::json[], %(@codecs)b::text[], %(@crcs)b::bigint[])"
    " WITH ORDINALITY AS i(data, doc, codec, crc, n)"
)
# ``at`` (Append's precondition): another first seq calls sk_conflict, which raises
_APPENDED = (
    "(SELECT CASE WHEN %(@at)s::bigint IS NULL OR base + 1 = %(@at)s::bigint THEN base + 1"
    " ELSE {s}.sk_conflict(%(@log)s, %(@at)s::bigint - 1, %(now)s) END FROM @head)"
)
APPEND_VALUES_MAX = 4
"""Appends of up to this many items pass them as scalars (cheaper than arrays)."""


def _append_values(n: int) -> str:
    rows = ", ".join(
        f"({i}, %(@data{i})b::bytea, %(@doc{i})s::json, %(@codec{i})s::text, %(@crc{i})s::bigint)"
        for i in range(1, n + 1)
    )
    return f"{_APPEND_HEAD}, @ins AS ({_APPEND_ROWS}(VALUES {rows}) AS i(n, data, doc, codec, crc))"


@dataclass(frozen=True, slots=True)
class Fragment:
    """One write operation as CTEs and the expressions of its result."""

    ctes: str
    """``@name AS (…)`` clauses, comma-separated."""
    results: str
    """Comma-separated expressions over the CTEs; ``width`` of them."""
    width: int = 1


FRAGMENTS: dict[str, Fragment] = {
    "put_any": Fragment(
        f"@w AS ({_UPSERT}{_RETURNING})", "(SELECT version FROM @w)" + _REST_OF_PUT, 3
    ),
    "put_new": Fragment(
        f"@w AS ({_UPSERT} WHERE {_DEAD_KV}{_RETURNING})",
        f"coalesce((SELECT version FROM @w), {_CONFLICT})" + _REST_OF_PUT, 3,
    ),
    "put_version": Fragment(
        "@w AS (UPDATE {s}.sk_kv SET data = %(@data)b, doc = %(@doc)s::json, codec = %(@codec)s,"
        f" version = version + 1, checksum = {sealed('%(@crc)s', 'version + 1')},"
        f" updated_at = %(now)s, expires_at = {_KEEP_OR_NEW}"
        f" WHERE key = %(@key)s AND version = %(@expect)s AND {_LIVE}{_RETURNING})",
        f"coalesce((SELECT version FROM @w), {_CONFLICT})" + _REST_OF_PUT, 3,
    ),
    "delete_any": Fragment(
        f"@d AS ({_DELETE} RETURNING {_LIVE} AS alive)", "coalesce((SELECT alive FROM @d), false)"
    ),
    "delete_version": Fragment(
        f"@d AS ({_DELETE} AND version = %(@expect)s AND {_LIVE} RETURNING true AS alive)",
        f"coalesce((SELECT alive FROM @d), {_CONFLICT} IS NULL)",
    ),
    # expect=None: only an expired row may be there to delete; a live one conflicts
    "delete_new": Fragment(
        f"@d AS ({_DELETE} AND NOT {_LIVE})",
        f"CASE WHEN EXISTS (SELECT FROM {{s}}.sk_kv WHERE key = %(@key)s AND {_LIVE})"
        f" THEN {_CONFLICT} IS NULL ELSE false END",
    ),
    "append": Fragment(f"{_APPEND_HEAD}, @ins AS ({_APPEND_ROWS}{_APPEND_ARRAYS})", _APPENDED),
    "touch": Fragment(
        f"@r AS (UPDATE {{s}}.sk_kv SET updated_at = %(now)s, expires_at = {_KEEP_OR_NEW}"
        f" WHERE key = %(@key)s AND {_LIVE} RETURNING 1),"
        f" @g AS (UPDATE {{s}}.sk_logs SET updated_at = %(now)s, expires_at = {_KEEP_OR_NEW}"
        f" WHERE name = %(@key)s AND {_LIVE} AND last_seq >= first_seq"
        " AND NOT EXISTS (SELECT FROM @r) RETURNING 1)",
        "EXISTS (SELECT FROM @r) OR EXISTS (SELECT FROM @g)",
    ),
    # a TTL refresh (Touch.refresh): the record only, at the version read, still expiring
    "refresh": Fragment(
        f"@r AS (UPDATE {{s}}.sk_kv SET updated_at = %(now)s, expires_at = {_KEEP_OR_NEW}"
        f" WHERE key = %(@key)s AND {_LIVE} AND version = %(@version)s::bigint"
        " AND expires_at IS NOT NULL RETURNING 1)",
        "EXISTS (SELECT FROM @r)",
    ),
    "expire": Fragment(
        "@r AS (UPDATE {s}.sk_kv SET expires_at = %(@exp)s::float8"
        f" WHERE key >= %(@lo)s AND key < %(@hi)s AND {_LIVE} RETURNING 1),"
        " @g AS (UPDATE {s}.sk_logs SET expires_at = %(@exp)s::float8"
        f" WHERE name >= %(@lo)s AND name < %(@hi)s AND {_LIVE} RETURNING 1)",
        "(SELECT count(*) FROM @r) + (SELECT count(*) FROM @g)",
    ),
    "trim": Fragment(
        "@h AS (UPDATE {s}.sk_logs SET first_seq = greatest(first_seq, least(%(@before)s::bigint,"
        " last_seq + 1)) WHERE name = %(@log)s RETURNING id, first_seq),"
        " @d AS (DELETE FROM {s}.sk_entries e USING @h h WHERE e.log_id = h.id"
        " AND e.seq < h.first_seq RETURNING 1)",
        "(SELECT count(*) FROM @d)",
    ),
    "rewrite": Fragment(
        "@u AS (UPDATE {s}.sk_entries e SET data = %(@data)b, doc = %(@doc)s::json, codec = %(@codec)s,"
        " checksum = %(@sum)s::integer"
        " FROM {s}.sk_logs l WHERE l.name = %(@log)s AND (l.expires_at IS NULL OR l.expires_at > %(now)s)"
        " AND l.last_seq >= l.first_seq AND e.log_id = l.id AND e.seq = %(@seq)s RETURNING 1)",
        "EXISTS (SELECT FROM @u)",
    ),
    "load": Fragment(
        "@w AS (INSERT INTO {s}.sk_kv (key, data, doc, codec, version, created_at, updated_at, expires_at,"
        " checksum) VALUES (%(@key)s, %(@data)b, %(@doc)s::json, %(@codec)s, %(@version)s, %(@created)s,"
        " %(@updated)s, %(@exp)s::float8, %(@sum)s::integer) ON CONFLICT (key) DO UPDATE SET"
        " data = excluded.data, doc = excluded.doc, codec = excluded.codec, version = excluded.version,"
        " checksum = excluded.checksum,"
        " created_at = excluded.created_at, updated_at = excluded.updated_at,"
        " expires_at = excluded.expires_at RETURNING version)",
        "(SELECT version FROM @w)",
    ),
}
FRAGMENTS.update(
    {f"append{n}": Fragment(_append_values(n), _APPENDED) for n in range(1, APPEND_VALUES_MAX + 1)}
)


@functools.lru_cache(maxsize=512)
def batch_sql(kinds: tuple[str, ...], schema: str) -> str:
    """One statement running the fragments ``kinds`` (in order) as prefixes ``o0_``, ``o1_``, …"""
    ctes = [FRAGMENTS[k].ctes.replace("@", f"o{i}_") for i, k in enumerate(kinds)]
    results = [FRAGMENTS[k].results.replace("@", f"o{i}_") for i, k in enumerate(kinds)]
    return compose(f"WITH {', '.join(ctes)} SELECT {', '.join(results)}", schema)


CACHED_BYTES = 4096
"""psycopg converts a statement's placeholders once and caches the result only for statements of
at most this many bytes ..."""
CACHED_PARAMS = 50
"""... and parameters (``psycopg._queries.MAX_CACHED_STATEMENT_LENGTH`` / ``_PARAMS``); a longer one
is converted again on every execute: ~0.2-0.3 ms of client CPU for a batch of six puts."""


@functools.lru_cache(maxsize=512)
def split(kinds: tuple[str, ...], sizes: tuple[int, ...], schema: str) -> tuple[int, ...]:
    """Where to cut the fragments ``kinds`` (taking ``sizes`` parameters each) into statements
    psycopg caches: the bounds ``(0, …, len(kinds))`` of each statement's fragments, in order.
    A fragment is never cut; one alone always fits."""
    cuts = [0]
    params = 1  # now
    for i, size in enumerate(sizes):
        start = cuts[-1]
        if i > start and (
            params + size > CACHED_PARAMS or len(batch_sql(kinds[start : i + 1], schema).encode()) > CACHED_BYTES
        ):
            cuts.append(i)
            params = 1
        params += size
    return (*cuts, len(kinds))


# -- whole statements -----------------------------------------------------------
_DATA = "coalesce(data, convert_to(doc::text, 'UTF8'))"
_RECORD = f"key, {_DATA}, codec, version, created_at, updated_at, expires_at, checksum"
_LOG_COLUMNS = "first_seq, last_seq, created_at, updated_at, expires_at"
_SCAN = (
    f"SELECT {_RECORD} FROM {{s}}.sk_kv WHERE key {{op}} %(lo)s AND key < %(hi)s"
    f" AND {_LIVE} ORDER BY key LIMIT %(limit)s"
)
_SCAN_LOGS = (
    f"SELECT name, {_LOG_COLUMNS} FROM {{s}}.sk_logs WHERE name {{op}} %(lo)s AND name < %(hi)s"
    f" AND {_LIVE} AND last_seq >= first_seq ORDER BY name LIMIT %(limit)s"
)
# [start, stop) cut to the stored bounds, then to ``limit`` seqs from the
# chosen end: an index range scan of at most ``limit`` entries.
_READ = (
    "SELECT e.seq, coalesce(e.data, convert_to(e.doc::text, 'UTF8')), e.codec, e.created_at, e.checksum"
    " FROM {s}.sk_logs l"
    " CROSS JOIN LATERAL (SELECT least(%(stop)s::bigint, l.last_seq + 1,"
    "   greatest(%(start)s::bigint, l.first_seq) + %(ahead)s::bigint) AS hi) b"
    " JOIN {s}.sk_entries e ON e.log_id = l.id"
    "  AND e.seq >= greatest(%(start)s::bigint, l.first_seq, b.hi - %(behind)s::bigint) AND e.seq < b.hi"
    " WHERE l.name = %(log)s AND (l.expires_at IS NULL OR l.expires_at > %(now)s)"
    " ORDER BY e.seq"
)
# The history fast path (:func:`.rows.values_if_intact`): ``data``, ``doc`` as stored
# (the client loads ``json`` as bytes, :func:`.rows.json_as_bytes`; no ``convert_to``
# copy), the codec unless it is plain ``json`` (NULL costs no bytes on the wire) and
# the checksum with the seq already taken off (its CRC part; NULL for
# rows from before checksums), for a bulk check in Python.
_READ_VALUES = _READ.replace(
    "SELECT e.seq, coalesce(e.data, convert_to(e.doc::text, 'UTF8')), e.codec, e.created_at, e.checksum",
    "SELECT e.data, e.doc, nullif(e.codec, 'json'), (e.checksum::bigint - e.seq) & 4294967295",
)
# LoadEntries (copy/import) keeps only entries above the log's last seq, in order.
_LOAD_ENTRIES = (
    "WITH head AS (SELECT id, last_seq FROM {s}.sk_logs WHERE name = %(log)s), items AS ("
    " SELECT u.*, max(u.seq) OVER (ORDER BY u.n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev"
    " FROM unnest(%(seqs)b::bigint[], %(datas)b::bytea[], %(docs)b::json[], %(codecs)b::text[],"
    " %(createds)b::float8[], %(sums)b::integer[]) WITH ORDINALITY AS u(seq, data, doc, codec, created_at,"
    " checksum, n)"
    "), ins AS ("
    " INSERT INTO {s}.sk_entries (log_id, seq, data, doc, codec, created_at, checksum)"
    " SELECT head.id, i.seq, i.data, i.doc, i.codec, i.created_at, i.checksum FROM head, items i"
    " WHERE i.seq > greatest(head.last_seq, i.prev) RETURNING seq, created_at"
    "), upd AS ("
    " UPDATE {s}.sk_logs SET last_seq = greatest(last_seq, (SELECT max(seq) FROM ins)),"
    " updated_at = greatest(updated_at, (SELECT max(created_at) FROM ins)) WHERE name = %(log)s"
    ") SELECT count(*) FROM ins"
)

_TEMPLATES: dict[str, str] = {
    "get": f"SELECT {_RECORD} FROM {{s}}.sk_kv WHERE key = %(key)s",
    "get_many": f"SELECT {_RECORD} FROM {{s}}.sk_kv WHERE key = ANY(%(keys)b::text[]) AND {_LIVE}",
    "scan_from": _SCAN.replace("{op}", ">="),
    "scan_after": _SCAN.replace("{op}", ">"),
    "read": _READ,
    "read_values": _READ_VALUES,
    "log_info": f"SELECT {_LOG_COLUMNS} FROM {{s}}.sk_logs WHERE name = %(log)s",
    "log_info_many": f"SELECT name, {_LOG_COLUMNS} FROM {{s}}.sk_logs WHERE name = ANY(%(logs)b::text[])",
    "scan_logs_from": _SCAN_LOGS.replace("{op}", ">="),
    "scan_logs_after": _SCAN_LOGS.replace("{op}", ">"),
    "scan_emptied_logs": f"SELECT name, {_LOG_COLUMNS} FROM {{s}}.sk_logs"
    " WHERE (name = %(name)s OR (name >= %(lo)s AND name < %(hi)s))"
    f" AND {_LIVE} AND last_seq < first_seq ORDER BY name",
    "drop_dead_log": "WITH gone AS (DELETE FROM {s}.sk_logs WHERE name = %(log)s"
    " AND expires_at <= %(now)s RETURNING id)"
    " DELETE FROM {s}.sk_entries WHERE log_id IN (SELECT id FROM gone)",
    "load_log_head": "INSERT INTO {s}.sk_logs (name, first_seq, last_seq, created_at, updated_at, expires_at)"
    " VALUES (%(log)s, %(first)s, %(first)s::bigint - 1, %(created)s, %(created)s, %(exp)s::float8)"
    " ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at",
    "load_entries": _LOAD_ENTRIES,
    "set_log_expiry": "WITH u AS (UPDATE {s}.sk_logs SET expires_at = %(exp)s::float8"
    f" WHERE name = %(log)s AND {_LIVE}) SELECT 0",
    "purge": "WITH r AS (DELETE FROM {s}.sk_kv WHERE key IN (SELECT key FROM {s}.sk_kv"
    " WHERE expires_at <= %(now)s LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING 1),"
    " l AS (DELETE FROM {s}.sk_logs WHERE name IN (SELECT name FROM {s}.sk_logs WHERE expires_at <= %(now)s"
    " LIMIT greatest(0, %(limit)s - (SELECT count(*) FROM r)) FOR UPDATE SKIP LOCKED) RETURNING id),"
    " e AS (DELETE FROM {s}.sk_entries WHERE log_id IN (SELECT id FROM l))"
    " SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM l)",
    "schema_version": "SELECT coalesce(max(version), 0) FROM {s}.statekeel_schema",
}


@dataclass(frozen=True, slots=True)
class Queries:
    """The whole statements of the backend (reads, copy, purge), composed for one schema."""

    get: str
    get_many: str
    scan_from: str
    scan_after: str
    read: str
    read_values: str
    log_info: str
    log_info_many: str
    scan_logs_from: str
    scan_logs_after: str
    scan_emptied_logs: str
    drop_dead_log: str
    load_log_head: str
    load_entries: str
    set_log_expiry: str
    purge: str
    schema_version: str


def build(schema: str) -> Queries:
    """All whole statements with ``{s}`` replaced by the quoted ``schema``."""
    return Queries(**{f.name: compose(_TEMPLATES[f.name], schema) for f in fields(Queries)})
