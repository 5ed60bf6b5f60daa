"""Codec ``raw``: bytes stored as they are (``Codec.encode_bytes``), read back as the same ``bytes``.

For a caller's own binary format (the LangGraph saver's value records), which JSON could only
carry as base64. Compression, transforms and the size limit apply as to any value.
"""

from __future__ import annotations

import os

import pytest

import statekeel
from statekeel.codec import Codec
from statekeel.errors import RecordTooLargeError
from statekeel.protocol import ANY, Put


class _Reverse:
    """A user transform (as encryption-like plug-ins are): reverses the bytes."""

    name = "rev"

    def encode(self, data: bytes, context: str) -> bytes:
        return data[::-1]

    def decode(self, data: bytes, context: str) -> bytes:
        return data[::-1]


@pytest.mark.parametrize("options", [{}, {"compress": "zstd", "compress_min_bytes": 0}, {"transforms": [_Reverse()]}])
def test_bytes_round_trip_as_they_are(options: dict[str, object]) -> None:
    codec = Codec(**options)  # type: ignore[arg-type]
    for data in (b"", b"\x00\xff" * 700, os.urandom(5000), b'{"looks": "like json"}'):
        stored, name = codec.encode_bytes(data, "a blob", "k")
        assert name.split("+")[0] == "raw" and codec.decode(stored, name, "k") == data
        assert type(codec.decode(stored, name, "k")) is bytes
    assert Codec().encode_bytes(b"abc") == (b"abc", "raw")  # nothing added: no base64, no tag


def test_oversize_bytes_are_refused_before_anything_is_written() -> None:
    with pytest.raises(RecordTooLargeError):
        Codec(max_record_bytes=100).encode_bytes(b"x" * 101, "a blob")


def test_a_raw_record_is_sealed_in_an_encrypted_store_and_reads_back() -> None:
    with statekeel.open("memory://raw-codec", encryption=statekeel.Encryption(master_key=os.urandom(32))) as store:
        data, name = store.codec.encode_bytes(b"\x00binary\xff", "a blob", "app/blob")
        store.backend.apply([Put("app/blob", data, name, ANY)])
        rec = store.storage.get("app/blob")
        assert rec is not None and rec.codec == "raw+aesgcm" and b"binary" not in rec.data
        got = store.backend.get("app/blob")
        assert got is not None and store.codec.decode(got.data, got.codec, got.key) == b"\x00binary\xff"
