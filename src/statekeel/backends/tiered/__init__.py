"""``tiered://?hot=redis://…&cold=postgresql://…&mode=…`` — Redis in front of PostgreSQL.

The inner URLs are percent-encoded (:func:`tiered_url` builds the URL). Options:

* ``mode`` — ``write-through`` (default): a write returns after PostgreSQL
  committed; PostgreSQL is the authority for compare-and-set, versions and seqs,
  Redis is a cache kept exact. ``write-behind``: a write returns after Redis
  (with its AOF) accepted it together with its entry in a durable queue; Redis
  is the authority for the partitions it holds; a flusher replays the queue into
  PostgreSQL in order, exactly once.
* ``flush_every`` (100) batches / ``flush_interval`` (1 s): when the flusher runs.
* ``hot_ttl`` (3600 s): a partition not written for that long leaves Redis
  (it stays in PostgreSQL; the next read copies it back).
* ``on_hot_failure`` (write-behind, ``fail``): with Redis down, ``fail`` raises
  :class:`~statekeel.errors.UnavailableError`; ``write-through`` writes PostgreSQL.
* ``lease`` (10 s): how long the flusher lease lasts (how soon another process
  takes over the flushing from a dead one).

Anything else is refused with :class:`~statekeel.errors.ConfigurationError`.
The design, the loss window and the authority in each mode: docs/tiered.md.

Modules: :mod:`.backend` (the class, reads), :mod:`.writes` (each mode's write),
:mod:`.hydrate` (a partition copied into Redis), :mod:`.maintenance` (the thread:
flush, eviction, cache reset), :mod:`.flusher` (replay and lease), :mod:`.watermark`
(how far the replay went, and which batches), :mod:`.divergence` (a queue that went
back: a failover to a replica behind it), :mod:`.batches` (queue entries),
:mod:`.names` (reserved keys), :mod:`.config` (options).
"""

from __future__ import annotations

from .backend import TieredBackend
from .config import Settings, tiered_url

__all__ = ["Settings", "TieredBackend", "tiered_url"]
