"""``postgresql://user:pass@host:5432/db?schema=statekeel`` — PostgreSQL 15+ with psycopg 3.

Tables, all in one schema (``?schema=``, default ``statekeel``)::

    statekeel_schema  version, applied_at             one row per applied migration
    sk_kv             key PK, data | doc, codec, version, created_at, updated_at, expires_at, checksum
    sk_logs           id (identity), name UNIQUE, first_seq, last_seq, created_at, updated_at, expires_at
    sk_entries        (log_id, seq) PK, data | doc, codec, created_at, checksum

(and ``tenant``, for row-level security). ``checksum`` is the record's or
entry's checksum (:mod:`statekeel.protocol.integrity`), verified by every read
(:mod:`.rows`); NULL on rows written before schema version 3, read unchecked.

Keys and log names use ``COLLATE "C"``, so SQL orders them as Python orders
``str``. Timestamps are float epoch seconds from the client's ``time.time()``,
the clock every backend uses, so expiry behaves exactly as on ``memory://``.

Values: a value whose codec is plain ``json`` goes into ``doc``, a ``json``
column, which keeps the text verbatim — reads return the very bytes written
(key order, ``\\u0000`` escapes and all) while SQL can query it::

    SELECT doc ->> 'status' FROM statekeel.sk_kv WHERE key = 'app/_/state/ticket';

``jsonb`` was not chosen because it reorders keys and rejects ``\\u0000``. A
``json`` text that contains the escape ``\\u0000`` (PostgreSQL's JSON operators
fail on the whole row for it), that is not UTF-8, or that PostgreSQL rejects as
JSON is stored in ``data`` (``bytea``) instead, as is every other codec —
including ``msg:<role>``, the short form of a plain chat message in a history
(the content's bytes; :mod:`statekeel.codec_msg`):
``SELECT convert_from(data, 'UTF8') FROM statekeel.sk_entries WHERE codec = 'msg:user'``.

Writes: :meth:`PostgresBackend.apply` turns each operation into data-modifying
CTEs (see :mod:`.sql`) and, when no two operations write the same row,
sends the whole batch as ONE autocommit statement: one network round trip, one
commit, all or nothing. A chat turn (``Append`` of two messages and a ``Put``
of state) is that one statement. Batches whose operations touch the same rows
(each must see the previous one's writes), contain ``Expire`` or ``LoadEntries``,
or are longer than 16 operations run one statement per operation in a psycopg
pipeline on the autocommit connection: the statements before the pipeline's
Sync form one implicit transaction, so it is still one round trip and atomic.

Compare-and-set is the ``WHERE`` clause of the write (``version = expect``, or
``ON CONFLICT … WHERE`` the old row has expired); when nothing was written the
result expression calls ``sk_conflict``, which raises, and the whole batch
rolls back. Appends upsert the log header row — its row lock serialises
appends to one log, so sequence numbers are handed out without gaps — and
insert the entries in the same statement. Appending to an expired log raises
``SK410``; the backend drops that log and runs the batch again, which starts a
new log numbered from 1. A batch that loses a deadlock or serialization race
is rolled back by PostgreSQL and run again (up to 5 times).
:meth:`~PostgresBackend.apply_batches` runs several batches, each with its own
clock, back to back in one pipeline — one transaction, one round trip — as
applying them one at a time would (the write-behind flusher of a tiered store
replays its queue with it).

Expiry: reads filter ``expires_at > now``; :meth:`~PostgresBackend.purge_expired`
deletes up to ``limit`` records and logs per call (``FOR UPDATE SKIP LOCKED``,
so several purgers do not block each other).

Migrations are plain transactional DDL with schema-qualified names, run under
a transaction-scoped advisory lock: they work inside or outside a transaction
and through PgBouncer in transaction mode. ``migrate(check=True)`` only reads.

URL options (removed before the URL reaches libpq; the libpq connection
parameters of :data:`.config.LIBPQ_OPTIONS`, e.g. ``sslmode``, are passed on, and
any other option is refused by name): ``schema``; ``pool_min`` (default 1) and
``pool_max`` (default 10) connections; ``timeout`` (seconds to connect or to
wait for a free connection, default 10); ``prepare`` (``on``: each statement
is prepared on its first use on a connection; ``off`` for PgBouncer older than
1.21, or without ``max_prepared_statements``, in transaction mode).

Faults: a call whose connection breaks (server restart, reset) raises
:class:`~statekeel.errors.UnavailableError`; the idle connections are then
tested and replaced, so the next call reconnects by itself.

Modules: :mod:`.backend` (the class: pool, reads, batches, migrations),
:mod:`.ops` (each op as a fragment, its rows and its result), :mod:`.plan` (a
batch as the statements that run it, no I/O), :mod:`.sql` (the
fragments and whole statements), :mod:`.migrations` (the schema, version by
version), :mod:`.rows` (rows read back, checked), :mod:`.config` (URL options),
:mod:`.errors` (driver errors translated).
"""

from __future__ import annotations

from .backend import PostgresBackend, tenant_setting
from .errors import map_error

__all__ = ["PostgresBackend", "map_error", "tenant_setting"]
