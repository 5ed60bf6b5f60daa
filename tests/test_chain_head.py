"""The chain head's encoding: compact JSON with sorted names, cached per unchanged entry."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from statekeel.core.chain import Head, LogHead, RecordHead

names = st.text(min_size=1, max_size=12)
tags = st.binary(min_size=16, max_size=16)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
logs = st.builds(LogHead, st.integers(1, 2**40), tags, st.integers(0, 2**40), tags, st.none() | times)
records = st.builds(RecordHead, st.integers(1, 2**40), tags, times, st.none() | times)


def reference(head: Head) -> bytes:
    """The head as ``json.dumps`` writes it (the encoding every stored head has)."""
    body = {
        "l": {k: [h.first, h.before.hex(), h.last, h.tag.hex(), h.expires] for k, h in sorted(head.logs.items())},
        "r": {k: [h.version, h.tag.hex(), h.created, h.expires] for k, h in sorted(head.records.items())},
    }
    return json.dumps(body, separators=(",", ":")).encode()


@given(st.dictionaries(names, logs, max_size=5), st.dictionaries(names, records, max_size=5),
       st.dictionaries(names, records, max_size=3))  # fmt: skip
def test_encoding_is_json_dumps_before_and_after_changes(
    log_heads: dict[str, LogHead], record_heads: dict[str, RecordHead], changes: dict[str, RecordHead]
) -> None:
    head = Head(dict(log_heads), dict(record_heads))
    assert head.encode() == reference(head)
    assert Head.decode(head.encode(), "h") == Head(log_heads, record_heads)
    changed = head.copy()
    changed.records.update(changes)
    for name in list(changed.logs)[:1]:
        del changed.logs[name]
    assert changed.encode() == reference(changed)  # the cache shared with ``head`` is not stale
    assert head.encode() == reference(head)  # and the copy's changes did not reach the original
    assert head.records == record_heads and head.logs == log_heads


def test_remembered_times_keep_equal_numbers_of_other_spellings_apart() -> None:
    """Times are rendered through a memo (a record's creation time repeats in every version): numbers that
    compare equal but print differently (1 and 1.0, 0.0 and -0.0) must still encode as json.dumps does."""
    tag = bytes(16)
    for created, expires in [(1.0, 1), (1, 1.0), (0.0, -0.0), (-0.0, 0.0), (1.5, 1.5)]:
        head = Head({}, {"a": RecordHead(1, tag, created, expires), "b": RecordHead(2, tag, expires, created)})
        assert head.encode() == reference(head)
