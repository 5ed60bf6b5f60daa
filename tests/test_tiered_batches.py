"""The write-behind queue entry format: every op type round-trips exactly, the previous
format is still read, and a damaged entry is a CorruptionError naming it (never a wrong batch)."""

from __future__ import annotations

import base64
import json

import pytest

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
