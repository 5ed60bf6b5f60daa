"""Keys the tiered backend keeps for itself, and how a key or prefix maps to a partition.

The unit the hot tier caches is a *partition* (:func:`statekeel.protocol.keys.partition`,
e.g. ``session/support-42``): it is copied from PostgreSQL into Redis whole, or not at all.
Bookkeeping keys live under :data:`RESERVED`, a first component no feature writes; the
backend hides it from every listing it returns.
"""

from __future__ import annotations

from typing import Final

from ...protocol import keys

RESERVED: Final = "_statekeel_tier"
"""First key component of the tiered backend's own records (hot and cold)."""

MARKERS: Final = RESERVED + "/m/"
"""Hot: one record per cached partition; present = the partition is complete in Redis.
Its ``updated_at`` is the partition's last write (idle eviction reads it)."""

QUEUE: Final = RESERVED + "/queue"
"""Hot: the write-behind queue, a log of encoded batches in the order Redis accepted them."""

DEAD: Final = RESERVED + "/dead"
"""Hot: batches PostgreSQL refused on replay, kept (never dropped) for an operator to inspect."""

LEASE: Final = RESERVED + "/lease"
"""Hot: the flusher lease, a record with an expiry (one flusher at a time across processes), taken at
a random version so that a flusher notices a Redis wipe (:class:`.flusher.Lease`)."""

WATERMARK: Final = RESERVED + "/flushed"
"""Cold: the queue epoch and the last queue seq PostgreSQL committed (exactly-once replay)."""

REPLAYED: Final = RESERVED + "/replayed/"
"""Cold: a ring of records naming the queue batches PostgreSQL replayed, by seq (:mod:`.watermark`):
where a diverged queue (Redis failed over to a replica behind it) still agrees with PostgreSQL."""

DIRTY: Final = RESERVED + "/dirty"
"""Cold: set when a write reached PostgreSQL while Redis could not be updated; the next
maintenance pass that reaches Redis drops every cached partition."""


def marker(part: str) -> str:
    """The hot marker record of partition ``part``."""
    return MARKERS + keys.escape(part)


def fence(part: str) -> str:
    """The hot write counter of ``part``: every write-through write bumps it, so a hydration
    that read PostgreSQL before that write cannot install its older copy."""
    return RESERVED + "/w/" + keys.escape(part)


def lock(part: str) -> str:
    """The name of ``part``'s PostgreSQL advisory lock: write-through writes hold it shared until
    they commit, a copy into Redis holds it exclusively while it reads PostgreSQL and installs."""
    return RESERVED + "/lock/" + keys.escape(part)


SPANNING: Final = RESERVED + "/lock-spanning"
"""The PostgreSQL advisory lock of writes whose partitions are not known in advance (an ``Expire``
of a prefix shorter than one partition): such a write holds it exclusively until it commits,
every copy into Redis holds it shared (it is no :func:`lock` name)."""


def partition_of_marker(key: str) -> str:
    """The partition a marker key names."""
    return keys.unescape(key[len(MARKERS) :])


def is_reserved(key: str) -> bool:
    """True for the tiered backend's own keys, hidden from every listing."""
    return key == RESERVED or key.startswith(RESERVED + "/")


def prefix_partition(prefix: str) -> str | None:
    """The one partition every key starting with ``prefix`` belongs to, or None if it spans several."""
    return keys.partition(prefix) if prefix.count("/") >= 2 else None


def members(part: str) -> tuple[str | None, str | None]:
    """How to list partition ``part``: (the key equal to it, the prefix of the keys under it).

    A one-component partition (``k``) holds only the key ``k`` (``k/x/…`` belong to ``k/x``);
    a two-component one (``session/s``) holds ``session/s`` and everything under ``session/s/``.
    """
    return (part, part + "/" if "/" in part else None)
