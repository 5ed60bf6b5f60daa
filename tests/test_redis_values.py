"""The Redis backend's bulk split and check of a log's frames (``backends/redis/values.py``), without a server.

``values`` must agree with reading each frame on its own (``entry``) for every well-formed reply, and
return None — so the caller reads entry by entry and names the damaged one — for anything else.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from statekeel import CorruptionError
from statekeel.backends.redis import values, wire
from statekeel.protocol import Entry
from statekeel.protocol.integrity import entry_sum

LOG = "session/t1/history"
_codecs = st.sampled_from(["json", "msg:user", "msg:assistant", "zstd+json", "é+json"])
_items = st.lists(st.tuples(st.binary(max_size=300), _codecs), max_size=30)


def _frames(first: int, items: list[tuple[bytes, str]]) -> list[bytes]:
    return [wire.frame("1796232339.25", codec, data, entry_sum(LOG, codec, data, first + i))
            for i, (data, codec) in enumerate(items)]  # fmt: skip


@given(first=st.integers(1, 2**40), items=_items)
def test_a_well_formed_reply_is_split_as_each_entry_reads_alone(first: int, items: list[tuple[bytes, str]]) -> None:
    frames = _frames(first, items)
    assert values.values(LOG, first, frames) == items
    assert [(e.data, e.codec) for e in (values.entry(LOG, first + i, f) for i, f in enumerate(frames))] == items


@given(first=st.integers(1, 1000), items=_items.filter(bool), at=st.integers(0, 10_000), byte=st.integers(1, 255))
@example(first=1, items=[(b"", "json")], at=66, byte=1)  # codec length 4 -> 5 with nothing after it: was taken
def test_any_changed_checked_byte_or_wrong_seq_is_not_taken(first: int, items: list[tuple[bytes, str]], at: int, byte: int) -> None:
    frames = _frames(first, items)
    i = at % len(frames)
    raw = bytearray(frames[i])
    clock = range(5, raw.index(b"|", 5))  # created_at: not covered by the checksum (nor read by values)
    where = [n for n in range(len(raw)) if n not in clock][at % (len(raw) - len(clock))]
    raw[where] ^= byte
    damaged = [*frames[:i], bytes(raw), *frames[i + 1 :]]
    assert values.values(LOG, first, damaged) is None
    assert values.values(LOG, first + 1, frames) is None  # the same frames at other seqs


def test_gaps_old_frames_and_bad_headers_send_the_caller_entry_by_entry() -> None:
    frames = _frames(1, [(b'{"a":1}', "json"), (b"x", "msg:user")])
    assert values.values(LOG, 1, []) == []
    assert values.values(LOG, 1, [frames[0], None, frames[1]]) is None  # type: ignore[list-item]
    assert values.values(LOG, 1, [b"1796232339.25|4|json{}"]) is None  # no '#': written before checksums
    assert values.values(LOG, 1, [frames[0][:8]]) is None  # cut short
    assert values.values(LOG, 1, [frames[0].replace(b"|4|", b"|x|")]) is None
    assert values.values(LOG, 1, [frames[0].replace(b"|4|", b"|9|")]) is None


# -- entries(): the same loop for read(), with each entry's created_at ------------------------
def _one_by_one(first: int, frames: list[bytes | None]) -> list[Entry]:
    """What ``read()`` returned before the bulk path: each frame read alone, gaps skipped."""
    return [values.entry(LOG, first + i, f) for i, f in enumerate(frames) if f]


@given(first=st.integers(1, 2**40), items=_items, clock=st.floats(0, 4e9, allow_nan=False))
def test_entries_of_a_well_formed_reply_are_each_entry_read_alone(
    first: int, items: list[tuple[bytes, str]], clock: float
) -> None:
    frames: list[bytes | None] = [wire.frame(repr(clock), c, d, entry_sum(LOG, c, d, first + i))
                                  for i, (d, c) in enumerate(items)]  # fmt: skip
    got = values.entries(LOG, first, frames)
    assert got == _one_by_one(first, frames)
    assert [(e.seq, e.data, e.codec, e.created_at) for e in got] == [
        (first + i, d, c, clock) for i, (d, c) in enumerate(items)
    ]


def test_entries_with_gaps_old_frames_or_damage_are_read_one_by_one() -> None:
    frames = _frames(1, [(b'{"a":1}', "json"), (b"x", "msg:user"), (b"y", "msg:user")])
    gap: list[bytes | None] = [frames[0], None, frames[2]]  # entry 2 missing from the list: skipped, the others keep their seqs
    assert values.entries(LOG, 1, gap) == _one_by_one(1, gap) and [e.seq for e in values.entries(LOG, 1, gap)] == [1, 3]
    old: list[bytes | None] = [frames[0], b"1796232339.25|4|json{}"]  # the second written before checksums
    assert values.entries(LOG, 1, old) == _one_by_one(1, old)
    damaged: list[bytes | None] = [frames[0], frames[1].replace(b"msg:user", b"msg:tool"), frames[2]]
    with pytest.raises(CorruptionError) as caught:
        values.entries(LOG, 1, damaged)
    assert caught.value.seq == 2
    with pytest.raises(CorruptionError) as caught:
        values.entries(LOG, 1, [frames[0], frames[1][:8]])  # cut short
    assert caught.value.seq == 2


def test_an_entry_whose_created_at_does_not_parse_is_named() -> None:
    """created_at is outside the checksum (``values`` does not read it): ``entries`` still names the entry."""
    frames = _frames(1, [(b"x", "msg:user"), (b"y", "msg:user")])
    frames[1] = frames[1].replace(b"1796232339.25|", b"17962323x9.25|")
    with pytest.raises(CorruptionError) as caught:
        values.entries(LOG, 1, frames)
    assert caught.value.seq == 2
