"""The chain's tags: computed from precomputed HMAC states, byte-identical to :func:`hmac.digest`.

Stores written before keep verifying only if every tag is the same bytes as before; these tests
rebuild each tag with the standard library's HMAC from the documented message layout.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from hypothesis import given
from hypothesis import strategies as st

from statekeel.core.chain import TAG, ChainKey
from statekeel.core.keyring import MasterKeys

RAW = b"K" * 32
KEY = ChainKey(MasterKeys.from_any(RAW))
MAC_KEY = hmac.new(RAW, b"statekeel chain mac v1", hashlib.sha256).digest()

names = st.text(max_size=40)
values = st.binary(max_size=3000)
clocks = st.floats(min_value=0, max_value=4e9, allow_nan=False)


def reference(message: bytes) -> bytes:
    return hmac.digest(MAC_KEY, message, "sha256")[:TAG]


@given(values)
def test_mac_is_hmac_sha256(message: bytes) -> None:
    assert KEY.mac(message) == reference(message)


@given(names, st.integers(1, 2**40), st.sampled_from(["json", "json+zlib", "msgpack"]), values, clocks,
       st.binary(min_size=TAG, max_size=TAG))  # fmt: skip
def test_entry_tags_are_the_documented_hmac(
    where: str, seq: int, codec: str, data: bytes, clock: float, prev: bytes
) -> None:
    w = where.encode()
    fixed = struct.pack(">IQIId", len(w), seq, len(codec.encode()), len(data), clock)
    want = reference(b"e" + fixed + w + codec.encode() + data + prev)
    assert KEY.entry_tag(where, seq, codec, data, clock, prev) == want
    assert KEY.entry_tagger(where)(seq, codec, data, clock, prev) == want  # the kept per-log tagger agrees


@given(names, st.integers(1, 2**40), st.sampled_from(["json", "msgpack"]), values, clocks, clocks)
def test_record_tags_are_the_documented_hmac(
    where: str, version: int, codec: str, data: bytes, created: float, clock: float
) -> None:
    w, c = where.encode(), codec.encode()
    message = (b"r" + struct.pack(">I", len(w)) + w + struct.pack(">QI", version, len(c)) + c
               + struct.pack(">I", len(data)) + data + struct.pack(">dd", created, clock))  # fmt: skip
    assert KEY.record_tag(where, version, codec, data, created, clock) == reference(message)
    assert KEY.record_tagger(where)(version, codec, data, created, clock) == reference(message)  # kept per key
    assert KEY.root_tag(data) == reference(b"root" + data)
