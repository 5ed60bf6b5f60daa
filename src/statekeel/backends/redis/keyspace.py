"""Key layout of the Redis backend: the names of a store's Redis keys, and the registry's ranges.

Redis keys of a store with prefix ``sk``::

    sk:statekeel                 hash: ``layout`` version (what migrate() records)
    sk:partitions                zset (score 0) of registry members, see below
    sk:{PARTITION}:...           everything a partition owns (see lua.py)

A key's partition is its first two components (:func:`statekeel.protocol.keys.partition`);
components never contain ``{`` or ``}``, so ``{PARTITION}`` is the Redis Cluster
hash tag and all of a partition's Redis keys live in one slot.

The registry lets a scan whose prefix is shorter than a partition (``session/``,
``""``) find the partitions it covers, in key order. Its members are ``T/`` for
partition ``T`` when the key has three or more components, and the key itself
when it has one or two. Every member stands for a contiguous, disjoint interval
of keys (all keys starting with ``T/``, or one key), so walking the members in
order walks the keys in order.
"""

from __future__ import annotations

from ...errors import ConfigurationError
from ...protocol import keys

LexRange = tuple[bytes, bytes]
"""ZRANGEBYLEX ``min`` and ``max`` bounds."""
PartitionRange = tuple[str, bytes, bytes]
"""(partition, min, max): one interval of keys inside one partition."""

_TOP = b"\xff"  # above every byte of UTF-8, so prefix + _TOP bounds every key with that prefix


class Layout:
    """Names of the Redis keys of one store (one ``?prefix=``)."""

    def __init__(self, prefix: str) -> None:
        if not prefix or any(ch in prefix for ch in "{} \r\n"):
            raise ConfigurationError(
                f"?prefix={prefix!r} is not valid: use a non-empty name without braces or spaces, "
                "e.g. ?prefix=sk"
            )
        self.prefix = prefix
        self.registry = f"{prefix}:partitions"
        self.marker = f"{prefix}:statekeel"
        self._bases: dict[str, str] = {}

    def base(self, partition: str) -> str:
        """``PREFIX:{PARTITION}:``: the start of every Redis key of the partition."""
        return f"{self.prefix}:{{{partition}}}:"

    def base_of(self, key: str) -> str:
        """:meth:`base` of ``key``'s partition (memoised: a writer names the same few keys batch after batch)."""
        try:
            return self._bases[key]
        except KeyError:
            if len(self._bases) >= 4096:
                self._bases.clear()
            base = self._bases[key] = self.base(keys.partition(key))
            return base

    def kv(self, key: str) -> str:
        return self.base_of(key) + "kv:" + key

    def log_head(self, log: str) -> str:
        return self.base_of(log) + "logh:" + log

    def log_data(self, log: str) -> str:
        return self.base_of(log) + "log:" + log


# -- ranges -----------------------------------------------------------------------
def registry_member(key: str) -> str:
    """The registry member whose interval holds ``key``."""
    return key if key.count("/") < 2 else keys.partition(key) + "/"


def registry_members(partition: str) -> list[str]:
    """The members a partition registers: its own key and, with two components, ``T/``."""
    return [partition] if "/" not in partition else [partition, partition + "/"]


def in_one_partition(prefix: str) -> bool:
    """True when every key starting with ``prefix`` has the same partition."""
    return prefix.count("/") >= 2


def prefix_range(prefix: str, after: str | None) -> LexRange:
    """Bounds of the keys starting with ``prefix`` and greater than ``after``."""
    raw = prefix.encode()
    return _narrow(b"[" + raw if raw else b"-", raw, after), b"[" + raw + _TOP


def member_range(member: str, after: str | None) -> PartitionRange:
    """The partition and bounds of a registry member's interval, above ``after``."""
    raw = member.encode()
    if member.count("/") == 2:  # ``T/``; a one- or two-component key has fewer slashes
        return member[:-1], _narrow(b"[" + raw, raw, after), b"[" + raw + _TOP
    return member, _narrow(b"[" + raw, raw, after), b"[" + raw


def registry_start(prefix: str, after: str | None) -> bytes:
    """Where a walk of the registry for ``prefix`` (after ``after``) begins."""
    start = prefix if after is None else max(prefix, registry_member(after))
    return b"[" + start.encode() if start else b"-"


def _narrow(lower: bytes, lower_raw: bytes, after: str | None) -> bytes:
    if after is None or after.encode() < lower_raw:
        return lower
    return b"(" + after.encode()
