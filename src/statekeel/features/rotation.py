"""Key rotation: re-wrap data keys under a new master key, or move data to new data keys.

* :func:`rotate_master` — every data key is unwrapped with whichever configured
  master key wrapped it and wrapped again with the current (first) one. The
  data is not touched. Re-running skips what is already done.
* :func:`reencrypt` — each partition gets a new data key version and every
  record and log entry still under an older version is decrypted and encrypted
  again (compare-and-set on records; entries rewritten in place, same seq).
  The target version is recorded first, so an interrupted run resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core import Core
from ..core.encryption import require_encryption
from ..errors import ConflictError
from ..protocol import Put, Rewrite

__all__ = ["rotate_master", "reencrypt", "ReencryptResult"]


def _key_version(data: bytes) -> int:
    return int.from_bytes(data[1:5], "big")


def rotate_master(store: Core, progress: Callable[[str], None] | None = None) -> int:
    """Re-wrap every data key under the current master key; returns how many changed."""
    keyring = require_encryption(store.keyring)
    changed = 0
    for partition in keyring.partitions():
        changed += keyring.rewrap(partition)
        if progress:
            progress(partition)
    return changed


@dataclass
class ReencryptResult:
    """What :func:`reencrypt` rewrote."""

    partitions: int = 0
    records: int = 0
    entries: int = 0


def reencrypt(store: Core, progress: Callable[[str], None] | None = None) -> ReencryptResult:
    """Move every encrypted record and entry to a fresh data key; resumable."""
    keyring = require_encryption(store.keyring)
    result = ReencryptResult()
    for partition in keyring.partitions():
        target = keyring.begin_reencrypt(partition)
        if not target:
            continue
        result.records += _records(store, partition + "/", target)
        result.entries += _entries(store, partition + "/", target)
        keyring.end_reencrypt(partition)
        result.partitions += 1
        if progress:
            progress(partition)
    return result


def _stale(codec: str, data: bytes, target: int) -> bool:
    return codec.endswith("+aesgcm") and _key_version(data) != target


def _records(store: Core, prefix: str, target: int) -> int:
    codec, done, after = store.codec._unguarded(), 0, None
    while page := store.backend.scan(prefix, after=after, limit=200):
        for rec in page:
            if not _stale(rec.codec, rec.data, target):
                continue
            data, name = codec.encode(codec.decode(rec.data, rec.codec, rec.key), rec.key, rec.key)
            try:
                store.backend.apply([Put(rec.key, data, name, rec.version, rec.expires_at)])
                done += 1
            except ConflictError:
                pass  # rewritten meanwhile, necessarily under the current key
        after = page[-1].key
    return done


def _entries(store: Core, prefix: str, target: int) -> int:
    codec, done, after = store.codec._unguarded(), 0, None
    while logs := store.backend.scan_logs(prefix, after=after, limit=100):
        for info in logs:
            start = info.first_seq
            while batch := store.backend.read(info.log, start=start, limit=500):
                ops = [
                    Rewrite(e.log, e.seq, *codec.encode(codec.decode(e.data, e.codec, e.log), e.log, e.log))
                    for e in batch
                    if _stale(e.codec, e.data, target)
                ]
                if ops:
                    store.backend.apply(ops)
                    done += len(ops)
                start = batch[-1].seq + 1
        after = logs[-1].log
    return done
