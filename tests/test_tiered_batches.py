"""The write-behind queue entry format: every op type round-trips exactly, the previous
format is still read, and a damaged entry is a CorruptionError naming it (never a wrong batch)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekeel import CorruptionError
from statekeel.backends.tiered import batches
from statekeel.protocol import (
    ANY,
    KEEP,
    Append,
    Delete,
    Entry,
    Expire,
    Load,
    LoadEntries,
    Op,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
)

OPS: list[Op] = [
    Append("session/s/history", ((b'{"a":1}', "json"), (bytes(range(256)), "raw")), KEEP, 7),
    Put("session/s/state/x", b"12", "json", expect=None, expires_at=None),
    Put("session/s/meta", b"", "json", expect=3, expires_at=1.5e9),
    Put("k", "é\u2028\"\\".encode(), "json", expect=ANY, expires_at=KEEP),
    Delete("d", expect=ANY),
    Delete("d2", expect=4),
    Touch("t", expires_at=KEEP),
    Touch("t", expires_at=2.25),
    Expire("session/s/", 3.0),
    Trim("session/s/history", 3),
    Load(Record("r", b"\x00\xff", "raw", 3, 1.5, 2.5, None)),
    LoadEntries("l", (Entry("l", 4, b"abc", "json", 1.25), Entry("l", 9, b"", "json", 2.0)), 9.0),
    Rewrite("l", 4, b"zz", "json+aesgcm"),
]


def test_every_op_round_trips_with_its_clock() -> None:
    entry = batches.encode(OPS, 1796000000.123456)
    assert batches.decode(entry, "q#1", batches.CODEC) == (OPS, 1796000000.123456)


def test_payloads_travel_raw() -> None:
    """No base64: an entry is about the size of its data (the queue doubles Redis' bytes otherwise)."""
    data = b"x" * 10_000
    entry = batches.encode([Put("k", data, "json")], 1.0)
    assert data in entry and len(entry) < len(data) + 200


def test_entries_of_the_previous_format_are_still_read() -> None:
    old = json.dumps({"now": 2.0, "ops": [["put", "k", base64.b64encode(b"v").decode(), "json", "ANY", "KEEP"]]})
    assert batches.decode(old.encode(), "q#2", batches.JSON_CODEC) == ([Put("k", b"v", "json", ANY, KEEP)], 2.0)


@pytest.mark.parametrize("damage", [lambda e: e[:-1], lambda e: e + b"x", lambda e: e[:3], lambda e: b"\xff" + e[1:]])
def test_a_damaged_entry_is_refused_naming_it(damage: object) -> None:
    entry = batches.encode(OPS[:3], 1.0)
    with pytest.raises(CorruptionError, match="q#3"):
        batches.decode(damage(entry), "q#3", batches.CODEC)  # type: ignore[operator]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(CorruptionError, match="unknown queue entry format"):
        batches.decode(batches.encode([], 1.0), "q#4", "tier-batch-9")


_names = st.text(min_size=1, max_size=12)  # any str: quotes, control characters, non-ASCII, surrogates
_versions = st.one_of(st.none(), st.just(ANY), st.integers(-(2**70), 2**70))
_expiries = st.one_of(st.none(), st.just(KEEP), st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 2**40))
_plain_ops = st.one_of(
    st.builds(Put, _names, st.binary(max_size=20), _names, _versions, _expiries),
    st.builds(Delete, _names, _versions),
    st.builds(
        Append, _names, st.lists(st.tuples(st.binary(max_size=20), _names), max_size=3).map(tuple),
        _expiries, st.one_of(st.none(), st.integers(1, 2**53)),
    ),
)  # fmt: skip


@settings(max_examples=300)
@given(st.lists(_plain_ops, max_size=5), st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()))
def test_a_turn_is_encoded_as_the_json_encoder_would(ops: list[Op], now: float) -> None:
    """The direct encoding of Puts, Appends and Deletes (every write-behind turn) is byte for byte
    the reference one, so every reader of ``tier-batch-2`` reads it."""
    assert batches.encode(ops, now) == batches._encode_any(ops, now)
    assert batches.decode(batches.encode(ops, now), "q#5") == (ops, float(now))


@pytest.mark.parametrize(
    ("ops", "now"),
    [
        ([Put("k", b"1", "json", expect=True)], 1.0),  # a bool is not a version: left to the JSON encoder
        ([Put("k", b"1", "json", expires_at=float("inf"))], 1.0),
        ([Append("l", ((b"1", "json"),))], float("nan")),
        ([Put("k", b"1", "json"), Touch("k")], 1.0),  # not a turn's op
    ],
)
def test_unusual_values_take_the_reference_encoding(ops: list[Op], now: float) -> None:
    assert batches.encode(ops, now) == batches._encode_any(ops, now)


@pytest.mark.parametrize(
    ("ops", "now"),
    [
        ([Put("k", "text", "json")], 1.0),  # a value not encoded to bytes
        ([Append("l", ((b"1", "json"),), at=ANY)], 1.0),  # type: ignore[arg-type]
        ([], ANY),
    ],
)
def test_what_the_json_encoder_refuses_is_still_refused(ops: list[Op], now: float) -> None:
    with pytest.raises(TypeError):
        batches._encode_any(ops, now)
    with pytest.raises(TypeError):
        batches.encode(ops, now)


@settings(max_examples=300)
@given(st.lists(st.tuples(_plain_ops, st.one_of(st.none(), st.integers(1, 2**53))), max_size=5),
       st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()))  # fmt: skip
def test_appends_by_reference_are_encoded_as_the_json_encoder_would_and_decode_to_refs(
    pairs: list[tuple[Op, int | None]], now: float
) -> None:
    """``tier-batch-3`` (write-behind): an Append with items and a seq in Redis is written as a
    reference — its log, that seq, its codecs, its expiry and its own ``at`` — and nothing else changes."""
    ops, seqs = [op for op, _ in pairs], [seq for _, seq in pairs]
    entry = batches.encode(ops, now, seqs=seqs)
    assert entry == batches._encode_any(ops, now, seqs)
    want = [batches.AppendRef(op.log, seq, tuple(c for _, c in op.items), op.expires_at, op.at)
            if type(op) is Append and op.items and seq is not None else op for op, seq in pairs]  # fmt: skip
    assert batches.decode(entry, "q#6", batches.REF_CODEC) == (want, float(now))
    inline: list[bytes] = []  # the payloads still carried: Puts' values, items of Appends not referred to
    for op, seq in pairs:
        if type(op) is Put:
            inline.append(op.data)
        elif type(op) is Append and not (op.items and seq is not None):
            inline += [data for data, _ in op.items]
    head = int.from_bytes(entry[:4], "big")
    assert entry[4 + head :] == b"".join(inline)


@pytest.mark.parametrize("ref", [
    '["aref","l",0,["json"],null,null]', '["aref","l",1,[],null,null]', '["aref","l",1,["json"],null,"1"]',
    '["aref","l",1.5,["json"],null,null]', '["aref",7,1,["json"],null,null]', '["aref","l",1,[3],null,null]',
])  # fmt: skip
def test_a_damaged_reference_is_a_corruption_error(ref: str) -> None:
    doc = f'{{"now":1.0,"ops":[{ref}],"sizes":[]}}'.encode()
    with pytest.raises(CorruptionError, match="q#7"):
        batches.decode(len(doc).to_bytes(4, "big") + doc, "q#7", batches.REF_CODEC)
