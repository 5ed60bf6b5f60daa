"""Key rotation and conversion: re-wrap data keys, move data to new data keys, encrypt a plaintext store.

* :func:`rotate_master` — every data key is unwrapped with whichever configured
  master key wrapped it and wrapped again with the current (first) one. The
  data is not touched. Re-running skips what is already done.
* :func:`reencrypt` — each partition gets a new data key version and every
  record and log entry still under an older version is decrypted and encrypted
  again (compare-and-set on records; entries rewritten in place, same seq).
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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..codec import Codec
from ..core import Core, layout
from ..core.encryption import EncryptedStorePolicy, is_planted_plaintext, require_encryption, write_marker
from ..errors import ConflictError, IntegrityError, StatekeelError
from ..protocol import ANY, Delete, Entry, Put, Record, Rewrite

__all__ = ["EncryptResult", "ReencryptResult", "encrypt_store", "reencrypt", "rotate_master"]

_PASSES = 3
"""Conversion passes before giving up on writers that keep adding plaintext (opened without the key
before the store was marked): each pass converts what the previous walk found."""

_CANONICAL = Codec(max_record_bytes=2**62)
"""Plain, unguarded: two values are the same when this encodes them to the same bytes."""


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
    write_marker(store.backend, keyring.master, replace=True)  # the id the store now expects
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
    """Move every encrypted record and entry to a fresh data key, and encrypt any left in plaintext; resumable."""
    keyring = require_encryption(store.keyring)
    result = ReencryptResult()
    converted = EncryptResult()
    _convert_pass(store, converted)
    result.plaintext = converted.converted
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
    _begin_conversion(store)
    write_marker(store.backend, master)
    while store.backend.purge_expired(limit=1000):
        pass  # expired records are invisible to the walk: they go now, not stay behind in plaintext
    result = EncryptResult()
    for _ in range(_PASSES):
        _convert_pass(store, result, progress)
        problems, result.verified = _verify(store)
        if not problems:
            store.backend.apply([Delete(layout.ENCRYPTION_CONVERSION)])
            _set_converting(store, False)
            return result
    raise IntegrityError(
        f"{len(problems)} item(s) are still not encrypted or do not decode: {', '.join(problems[:10])}; "
        "the store stays readable with the key. Run `statekeel doctor URL`, fix or delete them, and run "
        "`statekeel keys encrypt` again (processes opened without the key must be stopped first)"
    )


def _begin_conversion(store: Core) -> None:
    """Record, encrypted (unforgeable without the key), that plaintext is still being converted."""
    key = layout.ENCRYPTION_CONVERSION
    data, name = store.codec.encode({"started": time.time()}, "the encryption conversion record", key)
    store.backend.apply([Put(key, data, name, ANY)])
    _set_converting(store, True)


def _set_converting(store: Core, on: bool) -> None:
    if isinstance(store.codec.policy, EncryptedStorePolicy):
        store.codec.policy.converting = on


def _convert_pass(store: Core, result: EncryptResult, progress: Callable[[str], None] | None = None) -> None:
    plain = store.codec.unchecked()._unguarded()
    after = None
    while page := store.backend.scan("", after=after, limit=200):
        for rec in page:
            if is_planted_plaintext(rec.codec, rec.key) and _encrypt_record(store, plain, rec):
                result.records += 1
                result.converted.append(rec.key)
        after = page[-1].key
        if progress:
            progress(after)
    after = None
    while logs := store.backend.scan_logs("", after=after, limit=100):
        for info in logs:
            _encrypt_log(store, plain, info.log, info.first_seq, result)
        after = logs[-1].log
        if progress:
            progress(after)


def _encrypt_record(store: Core, plain: Codec, rec: Record) -> bool:
    """Encrypt one record (same version check, same expiry) and check it reads back the same."""
    value = plain.decode(rec.data, rec.codec, rec.key)
    data, name = plain.encode(value, rec.key, rec.key)
    try:
        store.backend.apply([Put(rec.key, data, name, rec.version, rec.expires_at)])
    except ConflictError:  # written meanwhile: encrypt what is there now, if it still needs it
        fresh = store.backend.get(rec.key)
        return fresh is not None and is_planted_plaintext(fresh.codec, fresh.key) and _encrypt_record(store, plain, fresh)
    back = store.backend.get(rec.key)
    if back is None or back.codec != name or not _same(value, plain.decode(back.data, back.codec, back.key)):
        if back is not None:
            store.backend.apply([Put(rec.key, rec.data, rec.codec, back.version, rec.expires_at)])
        raise IntegrityError(f"the record {rec.key!r} did not read back as it was once encrypted; "
                             "it was put back in plaintext and nothing else changed")
    return True


def _encrypt_log(store: Core, plain: Codec, log: str, start: int, result: EncryptResult) -> None:
    while batch := store.backend.read(log, start=start, limit=500):
        todo = [e for e in batch if is_planted_plaintext(e.codec, e.log)]
        if todo:
            values = [plain.decode(e.data, e.codec, log) for e in todo]
            store.backend.apply([Rewrite(log, e.seq, *plain.encode(v, log, log)) for e, v in zip(todo, values)])
            _check_entries(store, plain, log, todo, values)
            result.entries += len(todo)
            result.converted += [f"{log}#{e.seq}" for e in todo]
        start = batch[-1].seq + 1


def _check_entries(store: Core, plain: Codec, log: str, old: list[Entry], values: list[Any]) -> None:
    back = {e.seq: e for e in store.backend.read(log, start=old[0].seq, stop=old[-1].seq + 1)}
    for entry, value in zip(old, values):
        got = back.get(entry.seq)
        if got is None or is_planted_plaintext(got.codec, log) or not _same(value, plain.decode(got.data, got.codec, log)):
            store.backend.apply([Rewrite(log, e.seq, e.data, e.codec) for e in old])
            raise IntegrityError(f"entry {entry.seq} of {log!r} did not read back as it was once encrypted; "
                                 "the entries of this batch were put back in plaintext")


def _same(a: Any, b: Any) -> bool:
    return _CANONICAL.encode(a)[0] == _CANONICAL.encode(b)[0]


def _verify(store: Core) -> tuple[list[str], int]:
    """Every record and entry is encrypted (or plain by design) and decodes: (problems, verified)."""
    codec, problems, verified = store.codec.unchecked(), list[str](), 0
    after = None
    while page := store.backend.scan("", after=after, limit=500):
        for rec in page:
            verified += _verified(codec, rec.data, rec.codec, rec.key, rec.key, problems)
        after = page[-1].key
    after = None
    while logs := store.backend.scan_logs("", after=after, limit=100):
        for info in logs:
            start = info.first_seq
            while batch := store.backend.read(info.log, start=start, limit=500):
                verified += sum(_verified(codec, e.data, e.codec, e.log, f"{e.log}#{e.seq}", problems) for e in batch)
                start = batch[-1].seq + 1
        after = logs[-1].log
    return problems, verified


def _verified(codec: Codec, data: bytes, name: str, key: str, where: str, problems: list[str]) -> bool:
    if layout.stored_in_clear(key):
        return False
    if is_planted_plaintext(name, key):
        problems.append(f"{where} (still plaintext)")
        return False
    try:
        codec.decode(data, name, key)
    except StatekeelError as exc:
        problems.append(f"{where} ({type(exc).__name__})")
        return False
    return True
