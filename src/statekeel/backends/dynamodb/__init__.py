"""``dynamodb://TABLE?region=eu-west-1`` — one DynamoDB table (single-table design) via boto3.

URL options: ``?region=`` (default: boto3's configured region), ``?endpoint=http://host:port``
(a local DynamoDB-API server such as moto or DynamoDB Local) and ``?timeout=SECONDS``
(default 10). Credentials come from boto3's usual chain (environment, profile, role),
never from the URL; any other option is refused with
:class:`~statekeel.errors.ConfigurationError`. ``migrate`` creates the table
(on-demand billing) and enables TTL on its ``ttl`` attribute.

Layout (:mod:`.items`): ``pk = "p" + partition(key)``, so everything of one session is
one item collection; ``sk`` is ``k<key>`` for a record, ``h<log>`` for a log's header
and ``e<log>\\0<seq zero-padded to 20 digits>`` for an entry, so sort-key order is seq
order and a history read is one Query over a ``BETWEEN`` range (paged by
LastEvaluatedKey): O(N) in what it returns, whatever the log's length.
Listings are Queries asking for one page (``Limit``), so a page costs O(page) whatever the
table holds. Scans by a prefix that names a partition (``session/S/…``, and the indexes
``idx/sessions/``, ``idx/runs/``, ``idx/decisions/`` — each one partition) are Queries inside
it; ``sessions()``' page is that Query plus two BatchGetItems (records, history headers). The
store-level namespaces ``keys/`` (keystore) and ``subjects/`` (erasure subjects), which the
core lists at every ``open`` and per call, each live in one fixed item collection
(``pk = "nkeys"`` / ``"nsubjects"``). The namespaces the core lists across their partitions
— ``events/`` (streams), ``memory/`` (memory namespaces), ``lgstore/`` (LangGraph store), a
tenant's too — keep each partition in one of 4 fixed collections ``pk = "n<namespace>#<shard>"``
(shard = crc32(partition) mod 4), so such a listing merges 4 Queries. Only whole-store walks
(prefix ``""``: copy, export, doctor, rotation; ``purge_expired``) and prefixes naming no
partition (``session/``) Scan the table — O(table). No GSI is kept (eventually consistent:
a write must be listed as soon as it returns). Schema version 2 moved the listed namespaces
into their shards (:mod:`.schema`; opening migrates a version-1 table, ``migrate=False``
refuses to touch them with MigrationRequiredError). Tables written before the keystore
layout (none deployed) keep their keystore items under ``"p" + partition`` where they are no
longer found: recreate such a table (or ``statekeel copy`` it from a backup of another backend).

Writes (:mod:`.plan`): ``apply`` reads every item its ops depend on (strongly
consistent BatchGetItem), replays the ops on that snapshot exactly as the memory
backend would, and commits the resulting items with one ``TransactWriteItems``.
Every record and header carries a random write token ``w``; each write is
conditioned on the token it read (or on the item not existing), which is
compare-and-set by ``ConditionExpression``. If another writer got there first,
the batch is planned again on what the cancellation returned (or a fresh read); a
precondition that no longer holds raises :class:`~statekeel.errors.ConflictError`
with nothing written. An append-only batch skips the read: the handle remembers
the headers it last wrote (:mod:`.backend`); a single ``Put(expect=version)`` is
one conditional UpdateItem (:mod:`.fastpath`).

The 100-item limit of a transaction — a chunked protocol with a commit marker:
log entries do not count against it. When a batch's items exceed 100 (or 3.5 MB),
each log it appends to starts a new *generation* for the new seqs: the entries are
written ahead with BatchWriteItem carrying that generation, then ONE transaction
writes the records and the log headers, each header listing the new
``(first seq, generation)`` range. The header is the commit marker: entries whose
generation the header does not list are never read, so a crash or a lost race
between the two steps leaves nothing half-visible (only unreachable entries,
deleted when the log is purged). Records and headers themselves must fit in one
transaction: a batch writing more than 100 of them raises
:class:`~statekeel.errors.InvalidInputError` naming the limit, with nothing written.

Expiry: records carry ``ttl`` (epoch seconds) for DynamoDB's TTL deletion, which is
lazy (up to days late), so every read also compares ``expires_at`` with the clock.
Log headers and entries carry no ``ttl`` (DynamoDB would delete a header before its
entries); :meth:`~DynamoDBBackend.purge_expired` deletes expired records and logs.

Checksums (:mod:`statekeel.protocol.integrity`): attribute ``s`` of every record and
entry, verified on every read (:class:`~statekeel.errors.CorruptionError`).

Faults: every boto3/botocore error is translated in :mod:`.errors` (unreachable →
:class:`~statekeel.errors.UnavailableError`, throttling → UnavailableError, bad
credentials → ConfigurationError, missing table → MigrationRequiredError).
"""

from __future__ import annotations

from .backend import TRANSACTION_LIMIT, DynamoDBBackend
from .schema import SCHEMA_VERSION

__all__ = ["DynamoDBBackend", "SCHEMA_VERSION", "TRANSACTION_LIMIT"]
