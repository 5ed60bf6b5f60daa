"""Key rotation and conversion: re-wrap data keys, move data to new data keys, encrypt a plaintext store.

* :func:`rotate_master` — every data key is unwrapped with whichever configured
  master key wrapped it and wrapped again with the current (first) one. The
  data is not touched. Re-running skips what is already done.
* :func:`reencrypt` — each partition gets a new data key version and every
  record and log entry still under an older version, or in the format that did
  not bind its position, is decrypted and encrypted again (compare-and-set on
  records; entries rewritten in place, same seq).
  The target version is recorded first, so an interrupted run resumes. Any
  record or entry still in plaintext is encrypted too: none is left behind.
* :func:`encrypt_store` — converts a plaintext store in place. It first records,
  encrypted, that a conversion is under way (so the store stays readable with the
  key however far it got), then marks the store encrypted, encrypts every record
  (compare-and-set, same expiry) and entry (same seq and created_at), checking each
  reads back as the value it held, walks the whole store again to verify, and only
  then ends the conversion: from then on plaintext is refused as planted. Items
  already encrypted are skipped, so a rerun after a crash resumes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core import Core, layout
from ..core.encryption import is_planted_plaintext, require_encryption, write_marker
from ..core.sealed import SealedBackend
from ..errors import ConflictError, IntegrityError, KeyUnavailableError, StatekeelError
from ..protocol import ANY, Delete, Entry, Put, Record, Rewrite

__all__ = ["EncryptResult", "ReencryptResult", "encrypt_store", "reencrypt", "rotate_master"]

_REWRITES = 50
"""Entries rewritten per batch: DynamoDB commits at most 100 items in one transaction (each
rewritten entry is one), and a layer may add its own (a chain head)."""

_PASSES = 3
"""Conversion passes before giving up on writers that keep adding plaintext (opened without the key
before the store was marked): each pass converts what the previous walk found."""


def _sealed(store: Core) -> SealedBackend:
    """The store's encryption layer (there is one whenever it was opened with its key). Values are
    read and written through ``store.backend`` — above it, a tamper-evident store's chain keeps its
    MACs (they cover the plaintext) — and found stale by looking at ``store.storage``."""
    require_encryption(store.keyring)
    sealed = store.sealing
    if sealed is None or sealed.locked:
        raise KeyUnavailableError("this needs the store opened with its key (encryption=statekeel.Encryption(...))")
    return sealed


def rotate_master(store: Core, progress: Callable[[str], None] | None = None) -> int:
    """Re-wrap every data key under the current master key; returns how many changed."""
    keyring = require_encryption(store.keyring)
    changed = 0
    for partition in keyring.partitions():
        changed += keyring.rewrap(partition)
        if progress:
            progress(partition)
    write_marker(store.storage, keyring.master, replace=True)  # the id the store now expects
    return changed


@dataclass
class ReencryptResult:
    """What :func:`reencrypt` rewrote."""

    partitions: int = 0
    records: int = 0
    entries: int = 0
    plaintext: list[str] = field(default_factory=list)
    """Records and entries (``log#seq``) that were stored in plaintext and are now encrypted."""


def reencrypt(store: Core, progress: Callable[[str], None] | None = None) -> ReencryptResult:
    """Move every encrypted record and entry to a fresh data key (and to the format that binds its
    position), and encrypt any left in plaintext; resumable."""
    keyring = require_encryption(store.keyring)
    sealed = _sealed(store)
    result = ReencryptResult()
    converted = EncryptResult()
    was, sealed.policy.converting = sealed.policy.converting, True  # plaintext found is read to be encrypted
    try:
        _convert_pass(store, sealed, converted)
    finally:
        sealed.policy.converting = was
    result.plaintext = converted.converted
    for partition in keyring.partitions():
        target = keyring.begin_reencrypt(partition)
        if not target:
            continue
        result.records += _records(store, sealed, partition + "/", target)
        result.entries += _entries(store, sealed, partition + "/", target)
        keyring.end_reencrypt(partition)
        result.partitions += 1
        if progress:
            progress(partition)
    return result


def _records(store: Core, sealed: SealedBackend, prefix: str, target: int) -> int:
    done, after = 0, None
    while page := store.storage.scan(prefix, after=after, limit=200):
        for rec in page:
            if not sealed.is_stale(rec.data, rec.codec, target):
                continue
            value = store.backend.get(rec.key)
            if value is None or value.version != rec.version:
                continue  # rewritten meanwhile, necessarily under the current key
            try:
                store.backend.apply([Put(rec.key, value.data, value.codec, rec.version, rec.expires_at)])
                done += 1
            except ConflictError:
                pass  # rewritten meanwhile, necessarily under the current key
        after = page[-1].key
    return done


def _entries(store: Core, sealed: SealedBackend, prefix: str, target: int) -> int:
    done, after = 0, None
    while logs := store.storage.scan_logs(prefix, after=after, limit=100):
        for info in logs:
            start = info.first_seq
            while batch := store.storage.read(info.log, start=start, limit=_REWRITES):
                ops = _rewrites(store, info.log, [e for e in batch if sealed.is_stale(e.data, e.codec, target)])
                if ops:
                    store.backend.apply(ops)
                    done += len(ops)
                start = batch[-1].seq + 1
        after = logs[-1].log
    return done


def _opened(store: Core, log: str, stored: list[Entry]) -> dict[int, Entry]:
    """The values of ``stored`` entries as the store reads them (opened, and checked when chained)."""
    if not stored:
        return {}
    return {e.seq: e for e in store.backend.read(log, start=stored[0].seq, stop=stored[-1].seq + 1)}


def _rewrites(store: Core, log: str, stored: list[Entry]) -> list[Rewrite]:
    """Rewrites of ``stored`` entries with their own values (sealed again on the way down)."""
    opened = _opened(store, log, stored)
    return [Rewrite(log, e.seq, opened[e.seq].data, opened[e.seq].codec) for e in stored if e.seq in opened]


# -- converting a plaintext store --------------------------------------------------------
@dataclass
class EncryptResult:
    """What :func:`encrypt_store` did."""

    records: int = 0
    """Records encrypted now."""
    entries: int = 0
    """Log entries encrypted now."""
    verified: int = 0
    """Records and entries the final walk found encrypted and decoding."""
    converted: list[str] = field(default_factory=list)
    """The keys (``log#seq`` for entries) encrypted now."""


def encrypt_store(store: Core, progress: Callable[[str], None] | None = None) -> EncryptResult:
    """Encrypt every record and entry of ``store`` in place and mark it encrypted; resumable.

    Raises :class:`IntegrityError` listing what could not be converted (the conversion then
    stays recorded as under way, so the store stays readable with the key; fix and rerun).
    """
    keyring = require_encryption(store.keyring)
    master = keyring.master  # a tenant handle refuses here, before anything is written
    sealed = _sealed(store)
    _begin_conversion(store, sealed)
    write_marker(store.storage, master)
    while store.storage.purge_expired(limit=1000):
        pass  # expired records are invisible to the walk: they go now, not stay behind in plaintext
    result = EncryptResult()
    for _ in range(_PASSES):
        _convert_pass(store, sealed, result, progress)
        problems, result.verified = _verify(store, sealed)
        if not problems:
            store.backend.apply([Delete(layout.ENCRYPTION_CONVERSION)])
            sealed.policy.converting = False
            return result
    raise IntegrityError(
        f"{len(problems)} item(s) are still not encrypted or do not decode: {', '.join(problems[:10])}; "
        "the store stays readable with the key. Run `statekeel doctor URL`, fix or delete them, and run "
        "`statekeel keys encrypt` again (processes opened without the key must be stopped first)"
    )


def _begin_conversion(store: Core, sealed: SealedBackend) -> None:
    """Record, encrypted (unforgeable without the key), that plaintext is still being converted."""
    key = layout.ENCRYPTION_CONVERSION
    data, name = store.codec.encode({"started": time.time()}, "the encryption conversion record", key)
    store.backend.apply([Put(key, data, name, ANY)])
    sealed.policy.converting = True


def _convert_pass(
    store: Core, sealed: SealedBackend, result: EncryptResult, progress: Callable[[str], None] | None = None
) -> None:
    after = None
    while page := store.storage.scan("", after=after, limit=200):
        for rec in page:
            if is_planted_plaintext(rec.codec, rec.key) and _encrypt_record(store, sealed, rec):
                result.records += 1
                result.converted.append(rec.key)
        after = page[-1].key
        if progress:
            progress(after)
    after = None
    while logs := store.storage.scan_logs("", after=after, limit=100):
        for info in logs:
            _encrypt_log(store, sealed, info.log, info.first_seq, result)
        after = logs[-1].log
        if progress:
            progress(after)


def _encrypt_record(store: Core, sealed: SealedBackend, rec: Record) -> bool:
    """Encrypt one record (same version check, same expiry) and check it reads back the same bytes."""
    value = store.backend.get(rec.key)
    try:
        if value is None or value.version != rec.version:
            raise ConflictError(rec.key, rec.version, None if value is None else value.version)
        store.backend.apply([Put(rec.key, value.data, value.codec, rec.version, rec.expires_at)])
    except ConflictError:  # written meanwhile: encrypt what is there now, if it still needs it
        fresh = store.storage.get(rec.key)
        return fresh is not None and is_planted_plaintext(fresh.codec, fresh.key) and _encrypt_record(
            store, sealed, fresh)
    stored, back = store.storage.get(rec.key), store.backend.get(rec.key)
    if stored is None or back is None or is_planted_plaintext(stored.codec, rec.key) or (
            back.data, back.codec) != (value.data, value.codec):
        if stored is not None:
            store.storage.apply([Put(rec.key, rec.data, rec.codec, stored.version, rec.expires_at)])
        raise IntegrityError(f"the record {rec.key!r} did not read back as it was once encrypted; "
                             "it was put back in plaintext and nothing else changed")
    return True


def _encrypt_log(store: Core, sealed: SealedBackend, log: str, start: int, result: EncryptResult) -> None:
    while batch := store.storage.read(log, start=start, limit=_REWRITES):
        todo = [e for e in batch if is_planted_plaintext(e.codec, e.log)]
        if todo:
            rewrites = _rewrites(store, log, todo)
            store.backend.apply(rewrites)
            _check_entries(store, log, todo, rewrites)
            result.entries += len(todo)
            result.converted += [f"{log}#{e.seq}" for e in todo]
        start = batch[-1].seq + 1


def _check_entries(store: Core, log: str, old: list[Entry], wanted: list[Rewrite]) -> None:
    stored = {e.seq: e for e in store.storage.read(log, start=old[0].seq, stop=old[-1].seq + 1)}
    opened = _opened(store, log, old)
    for entry, want in zip(old, wanted):
        got, back = stored.get(entry.seq), opened.get(entry.seq)
        if got is None or is_planted_plaintext(got.codec, log) or back is None or (
                back.data, back.codec) != (want.data, want.codec):
            store.storage.apply([Rewrite(log, e.seq, e.data, e.codec) for e in old])
            raise IntegrityError(f"entry {entry.seq} of {log!r} did not read back as it was once encrypted; "
                                 "the entries of this batch were put back in plaintext")


def _verify(store: Core, sealed: SealedBackend) -> tuple[list[str], int]:
    """Every record and entry is encrypted (or plain by design) and decodes: (problems, verified)."""
    problems, verified = list[str](), 0
    after = None
    while page := store.storage.scan("", after=after, limit=500):
        for rec in page:
            verified += _verified(store, rec, rec.key, problems, functools.partial(store.backend.get, rec.key))
        after = page[-1].key
    after = None
    while logs := store.storage.scan_logs("", after=after, limit=100):
        for info in logs:
            start = info.first_seq
            while batch := store.storage.read(info.log, start=start, limit=500):
                opened = _opened(store, info.log, batch)
                verified += sum(_verified(store, e, f"{e.log}#{e.seq}", problems, functools.partial(opened.get, e.seq))
                                for e in batch)  # fmt: skip
                start = batch[-1].seq + 1
        after = logs[-1].log
    return problems, verified


def _verified(
    store: Core, item: Record | Entry, where: str, problems: list[str], read: Callable[[], Record | Entry | None]
) -> bool:
    key = item.key if isinstance(item, Record) else item.log
    if layout.stored_in_clear(key) or layout.is_chain_head(key):
        return False
    if is_planted_plaintext(item.codec, key):
        problems.append(f"{where} (still plaintext)")
        return False
    try:
        opened = read()
        if opened is None:
            raise IntegrityError(f"{where} did not read back")
        store.codec.decode(opened.data, opened.codec, key)
    except StatekeelError as exc:
        problems.append(f"{where} ({type(exc).__name__})")
        return False
    return True
