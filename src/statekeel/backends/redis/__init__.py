"""``redis://host:6379/0`` (also ``rediss://``, ``valkey://``) — plain Redis 7 or Valkey, no modules.

URL options: ``?prefix=NAME`` (default ``sk``) names the store, so several
stores share one Redis; ``?timeout=SECONDS`` (default 10, positive and finite)
bounds connecting and every reply. A few redis-py options pass through
(``db``, ``client_name``, ``health_check_interval``, ``max_connections``,
``socket_keepalive``; the ``ssl_*`` ones on ``rediss://``); any other option is
refused with :class:`~statekeel.errors.ConfigurationError`.

Durability is the server's ``appendfsync`` setting, since a batch is
acknowledged when Redis replies:

* ``appendonly yes`` + ``appendfsync always`` — Redis writes and fsyncs the AOF
  before it replies, so every batch whose ``apply`` returned survives ``kill -9``
  of Redis, a crash of the host OS and power loss (as far as the disk honours
  fsync). Use it when the state must not be lost; it costs one fsync per batch.
* ``appendfsync everysec`` (Redis' default) — the AOF is fsynced once a second:
  a Redis crash alone loses nothing that reached the kernel, but a crash or
  power loss of the host can lose up to about one second (more if the disk
  stalls) of acknowledged batches.
* ``appendfsync no`` — the OS decides when to flush (typically within 30 s):
  a host crash or power loss can lose that much acknowledged data.
* no AOF (RDB snapshots only, or none) — everything since the last snapshot
  can be lost; treat the store as a cache.

Replicas do not add durability: replication is asynchronous, and a failover can
drop acknowledged batches unless you also use ``WAIT``/``WAITAOF`` (not done here).

Design (details in :mod:`.wire` and :mod:`.lua`):

* Key layout: everything of a partition (``session/S``) shares one hash tag —
  ``sk:{session/S}:kv:session/S/state/ticket`` — so a batch inside one partition
  touches one Redis Cluster slot. Batches spanning partitions work on a single
  node; on a cluster they must stay in one partition, which is how every feature
  writes. (This class talks to one node; the layout is what makes a cluster
  client possible.)
* Records are hashes; a per-partition sorted set of keys (all score 0) gives
  ``scan`` key order and pages with ZRANGEBYLEX; prefixes shorter than a
  partition walk a registry of partitions.
* Logs are lists plus a small header hash (first and last seq): element ``i``
  is entry ``first + i``, read from the nearer end, so the last 20 entries cost
  O(20) at any length; LTRIM drops a prefix; LSET rewrites one entry in place.
* ``apply`` is ONE round trip: a pipeline of ``ZADD NX`` (registry) + one
  ``EVALSHA`` of the APPLY script + ``ZADD NX`` again. Redis does not roll back
  a script that fails midway, so a batch is all or nothing by checking first:
  :func:`.wire.encode` refuses a bad op before anything is sent, and the script
  checks key types, header fields and every compare-and-set before its first
  write. A write-free ``ZADD NX`` costs no AOF write. Scripts run with the
  client's ``time.time()`` as ``now``, so timestamps round-trip exactly as floats.
* Checksums (:mod:`statekeel.protocol.integrity`): a record's ``s`` field and
  the 4 bytes after an entry's leading ``#``; every read verifies them and
  raises :class:`~statekeel.errors.CorruptionError`. Data written before
  checksums has neither and reads unchecked.
* Expiry: every Redis key of a record or log with ``expires_at`` gets PEXPIREAT
  (rounded up to the millisecond); index keys expire with the latest of their
  members (never while one member has no expiry). Reads also compare
  ``expires_at`` with the client clock, so keep clocks in sync (NTP). Index
  members of keys Redis expired are skipped by reads and cleaned by
  ``purge_expired`` (and by a scan that meets them).
* Faults: every redis-py error is translated in one place (:func:`.faults.map_error`);
  text with a lone surrogate (not UTF-8) is :class:`~statekeel.errors.InvalidInputError`
  before it reaches redis-py.
  redis-py's automatic retry is off, because re-sending a batch after a lost
  reply could apply it twice; a broken connection raises UnavailableError and
  the next call reconnects. Scripts are loaded again after a restart (NOSCRIPT).

Modules: :mod:`.backend` (the class: client, reads, batches, purge, migrations),
:mod:`.wire` (key layout; a batch as script arguments and back), :mod:`.lua`
(the APPLY script), :mod:`.lua_light` (LIGHT: APPLY for the everyday batch — Puts, Deletes
and Appends naming each key and log once — with fewer checks and no per-partition TYPE
calls; same arguments, replies and writes), :mod:`.lua_scan` (the scripts that scan, read logs and purge),
:mod:`.values` (whole-history reads: one MULTI/EXEC snapshot, frames checked in bulk),
:mod:`.aio` (the same on ``redis.asyncio`` for the asyncio API). Plain chat messages are
stored in the codec's short ``msg:<role>`` form (:mod:`statekeel.codec_msg`).
"""

from __future__ import annotations

from .backend import LAYOUT_VERSION, RedisBackend

__all__ = ["RedisBackend", "LAYOUT_VERSION"]
