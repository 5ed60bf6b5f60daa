"""Per-record checksums: damaged bytes at rest raise, they are never returned as data.

Every record and every log entry is stored with a 32-bit checksum covering its
key (or log name), codec name, data and version (or seq)::

    checksum = (crc32(key NUL codec NUL data) + n) mod 2**32     n = version or seq

The expensive part — CRC-32 over the bytes — is :func:`base_sum`, computed in
Python by the writer, which knows key, codec and data. Adding ``n`` is cheap,
so a backend that numbers versions or seqs inside the database (an SQL
``version + 1``, a Lua script) adds it there (:func:`seal` is the Python
spelling). On every read the backend calls :func:`verify_record` /
:func:`verify_entry`; a mismatch raises :class:`~statekeel.errors.CorruptionError`
naming the record. A stored checksum of ``None`` means the row was written
before checksums existed: it is read unchecked (``statekeel doctor`` counts them).

This is damage detection (disk, filesystem, a hand edit gone wrong), not
tamper-proofing: anyone who can write the bytes can write a matching checksum.
Encryption's authenticated tags are what detect deliberate changes.
"""

from __future__ import annotations

from typing import Final, Protocol

from ..errors import CorruptionError

__all__ = ["MASK", "base_sum", "crc32", "entry_sum", "head", "record_sum", "seal", "verify_entry", "verify_record"]


class _Crc32(Protocol):
    def __call__(self, data: bytes, value: int = 0, /) -> int: ...


def _fastest_crc32() -> _Crc32:
    """zlib's CRC-32, from ISA-L when installed (the ``isal`` dependency): the same function,
    ~7× faster on long values (it uses the CPU's carry-less multiply), which is most of what
    verifying a whole-history reload costs. Plain zlib where the wheel is missing."""
    try:
        from isal.isal_zlib import crc32 as isal_crc32
    except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel
        from zlib import crc32 as zlib_crc32

        return zlib_crc32
    return isal_crc32


crc32: Final = _fastest_crc32()
"""``crc32(data, start=0)``: zlib's CRC-32 (identical results, tested), as fast as this machine allows."""

MASK: Final = 0xFFFFFFFF

_HEADS: dict[tuple[str, str], int] = {}
_MAX_HEADS: Final = 4096
"""Cache bound: beyond it the cache starts again (a dict clear is cheaper than an LRU)."""


def head(key: str, codec: str) -> int:
    """CRC-32 of ``key NUL codec NUL``, remembered: a chat turn writes the same log and state
    keys again and again, so only the data is CRC'd per row."""
    found = _HEADS.get((key, codec))
    if found is None:
        if len(_HEADS) >= _MAX_HEADS:
            _HEADS.clear()
        found = _HEADS[(key, codec)] = crc32(f"{key}\0{codec}\0".encode("utf-8", "surrogatepass"))
    return found


def base_sum(key: str, codec: str, data: bytes) -> int:
    """CRC-32 of ``key NUL codec NUL data`` — the part of the checksum that does not depend on n."""
    return crc32(data, _HEADS.get((key, codec)) or head(key, codec))  # (a head CRC of 0 is only slower)


def seal(base: int, n: int) -> int:
    """The stored checksum: ``base`` (from :func:`base_sum`) combined with the version or seq ``n``."""
    return (base + n) & MASK


def record_sum(key: str, codec: str, data: bytes, version: int) -> int:
    """The checksum of a record at ``version``."""
    return seal(base_sum(key, codec, data), version)


def entry_sum(log: str, codec: str, data: bytes, seq: int) -> int:
    """The checksum of entry ``seq`` of ``log``."""
    return seal(base_sum(log, codec, data), seq)


def verify_record(key: str, codec: str, data: bytes, version: int, stored: int | None) -> None:
    """Raise :class:`CorruptionError` unless ``stored`` matches (``None``: written before checksums)."""
    if stored is not None and record_sum(key, codec, data, version) != stored:
        raise CorruptionError(
            f"record {key!r} (version {version}) is damaged: its stored checksum does not match its bytes; "
            "run `statekeel doctor` to list every damaged record, then restore it from a backup or delete it",
            key,
        )


def verify_entry(log: str, seq: int, codec: str, data: bytes, stored: int | None) -> None:
    """Raise :class:`CorruptionError` unless ``stored`` matches (``None``: written before checksums)."""
    if stored is not None and entry_sum(log, codec, data, seq) != stored:
        raise CorruptionError(
            f"entry {seq} of log {log!r} is damaged: its stored checksum does not match its bytes; "
            "run `statekeel doctor` to list every damaged entry, then restore it from a backup",
            log,
            seq,
        )
