"""The short stored form of a chat message (``msg:<role>``), the bulk history decoder, and the fast CRC-32.

A plain ``{"role": str, "content": str}`` message is stored as its content's
bytes with the role in the codec name (statekeel.codec_msg), where the backend
asks for it; every other value keeps its JSON form, and every backend reads
both. These tests use the codec directly and a real SQLite store.
"""

from __future__ import annotations

import random
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel.codec import Codec
from statekeel.errors import CorruptionError, SecretDetectedError, SerializationError, StoreError
from statekeel.protocol import Append
from statekeel.protocol.integrity import crc32, entry_sum
from statekeel.security.guard import SecretGuard

LOG = "session/s/history"
SECRET = "my key is AKIAIOSFODNN7EXAMPLE, keep it"


def short_codec(**options: Any) -> Codec:
    return Codec(short_messages=True, guard=SecretGuard(), **options)


# -- the CRC-32 every checksum is computed with ---------------------------------
def test_the_fast_crc32_is_zlibs_crc32() -> None:
    """The checksum formula is crc32 as zlib defines it: ISA-L's must give the very same numbers."""
    rng = random.Random(5)
    for size in (0, 1, 3, 15, 16, 17, 63, 64, 65, 255, 1000, 4096, 70_001):
        data = rng.randbytes(size)
        for start in (0, 1, 0x12345678, 0xFFFFFFFF):
            assert crc32(data, start) == zlib.crc32(data, start), (size, start)
        assert crc32(data) == zlib.crc32(data)
    assert crc32.__module__.startswith("isal"), "the isal dependency is installed, so its CRC is the one used"


# -- which values take the short form -------------------------------------------
def test_a_plain_message_is_stored_as_its_content_bytes() -> None:
    codec = short_codec()
    message = {"role": "assistant", "content": "Grüße — 🌍 \n\"quoted\""}
    data, name = codec.encode(message, "m", LOG)
    assert (data, name) == (message["content"].encode("utf-8"), "msg:assistant")
    back = codec.decode(data, name, LOG)
    assert back == message and list(back) == ["role", "content"]


@pytest.mark.parametrize("value", [
    {"content": "hi", "role": "user"},  # other key order: must read back in that order
    {"role": "user", "content": "hi", "name": "x"},
    {"role": "user"},
    {"role": "user", "content": 5},
    {"role": "User", "content": "hi"},
    {"role": "user+zlib", "content": "hi"},
    {"role": "msg:user", "content": "hi"},
    {"role": "a" * 17, "content": "hi"},
    {"role": "", "content": "hi"},
    "user: hi",
    ["user", "hi"],
])
def test_anything_else_keeps_its_json_form(value: Any) -> None:
    codec = short_codec()
    data, name = codec.encode(value, "v", LOG)
    assert name == "json"
    back = codec.decode(data, name, LOG)
    assert back == value and (not isinstance(value, dict) or list(back) == list(value))


class Text(str):
    pass


def test_a_str_subclass_is_not_taken_for_a_plain_message() -> None:
    """As without the short form: a str subclass is no JSON type, and the error says where it is."""
    for codec in (short_codec(), Codec()):
        with pytest.raises(SerializationError, match=r"v\['content'\]"):
            codec.encode({"role": "user", "content": Text("hi")}, "v", LOG)


def test_without_the_backends_request_messages_stay_json() -> None:
    data, name = Codec(guard=SecretGuard()).encode({"role": "user", "content": "hi"}, "m", LOG)
    assert (data, name) == (b'{"role":"user","content":"hi"}', "json")


def test_a_lone_surrogate_is_refused_naming_the_path() -> None:
    with pytest.raises(SerializationError) as err:
        short_codec().encode({"role": "user", "content": "bad \ud800"}, "messages[0]", LOG)
    assert "messages[0]['content']" in str(err.value)


def test_the_secret_guard_scans_the_short_form() -> None:
    with pytest.raises(SecretDetectedError):
        short_codec().encode({"role": "user", "content": SECRET}, "m", LOG)
    codec = Codec(short_messages=True, guard=SecretGuard("redact"))
    data, name = codec.encode({"role": "user", "content": SECRET}, "m", LOG)
    assert name == "msg:user" and b"AKIA" not in data and codec.decode(data, name, LOG)["role"] == "user"
    # text the guard's first scan flags but holds no secret (upper case next to digits) stays short
    assert short_codec().encode({"role": "user", "content": "Python3 on Linux2"}, "m", LOG)[1] == "msg:user"


def test_compression_and_the_size_limit_apply_to_the_short_form() -> None:
    codec = short_codec(compress="zlib", compress_min_bytes=10)
    message = {"role": "tool", "content": "abc" * 1000}
    data, name = codec.encode(message, "m", LOG)
    assert name == "msg:tool+zlib" and len(data) < 3000
    assert codec.decode(data, name, LOG) == message
    with pytest.raises(statekeel.errors.RecordTooLargeError):
        short_codec(max_record_bytes=100).encode({"role": "user", "content": "x" * 101}, "m", LOG)


# -- reading: one at a time and in bulk -----------------------------------------
def test_a_history_of_mixed_codecs_decodes_in_order() -> None:
    codec = short_codec()
    values: list[Any] = [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": []},
        {"role": "system", "content": ""}, 7, {"role": "user", "content": "c"},
    ]
    items = [codec.encode(v, "m", LOG) for v in values]
    assert [n for _, n in items] == ["msg:user", "json", "msg:system", "json", "msg:user"]
    assert codec.decode_many(items, LOG) == values
    assert codec.decode_many(items[::2], LOG) == values[::2]
    assert codec.decode_many([items[0]], LOG) == [values[0]]
    assert codec.decode_many([items[1]], LOG) == [values[1]]
    assert codec.decode_many([], LOG) == []
    with_tags = items + [codec.encode({"when": b"\x00"}, "m", LOG)]
    assert with_tags[-1][1] == "tjson1" and codec.decode_many(with_tags, LOG)[-1] == {"when": b"\x00"}


def test_damaged_short_form_bytes_raise_corruption_naming_the_log() -> None:
    codec = short_codec()
    good = codec.encode({"role": "user", "content": "hi"}, "m", LOG)
    for items in ([good, (b"\xff\xfe", "msg:user")], [(b"\xff", "msg:user")], [good, (b"{", "json")]):
        with pytest.raises(CorruptionError) as err:
            codec.decode_many(items, LOG)
        assert err.value.key == LOG


def test_an_unknown_short_form_name_is_an_unknown_codec() -> None:
    for name in ("msg:Bad", "msg:", "msg:a+b"):
        with pytest.raises(StoreError, match="upgrade the statekeel package|transform"):
            short_codec().decode(b"hi", name, LOG)
        with pytest.raises(StoreError):
            short_codec().decode_many([(b"hi", name)], LOG)


# -- on a real SQLite store -----------------------------------------------------
def _rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id & 4294967295, data, codec, checksum FROM sk_entries ORDER BY id").fetchall()
    finally:
        conn.close()


def test_sqlite_stores_messages_in_the_short_form_with_their_checksums(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with statekeel.open(f"sqlite:///{db}") as store:
        s = store.session("s")
        s.append({"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi", "n": 1})
        log = store.backend.scan_logs("")[0].log
    rows = _rows(db)
    assert [(seq, codec) for seq, _, codec, _ in rows] == [(1, "msg:user"), (2, "json")]
    assert rows[0][1] == b"hello"
    for seq, data, codec, stored in rows:
        assert stored == entry_sum(log, codec, data, seq)


def test_sqlite_reads_old_json_messages_next_to_short_ones(tmp_path: Path) -> None:
    """Records written before the short form (codec ``json``) keep reading, in one history."""
    with statekeel.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        s = store.session("s")
        s.append({"role": "system", "content": "first"})
        log = store.backend.scan_logs("")[0].log
        store.storage.apply([Append(log, ((b'{"role":"user","content":"old"}', "json"),))])
        s.append({"role": "assistant", "content": "new"})
        want = [{"role": "system", "content": "first"}, {"role": "user", "content": "old"},
                {"role": "assistant", "content": "new"}]
        assert s.history() == want and s.history(last=2) == want[1:]
        assert [m.value for m in s.messages()] == want


@pytest.mark.parametrize("damage", [
    "UPDATE sk_entries SET data = CAST(replace(data, 'hello', 'jello') AS BLOB)",
    "UPDATE sk_entries SET codec = 'msg:assistant' WHERE codec = 'msg:user'",
])
def test_a_damaged_short_form_entry_raises_naming_it(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "s.db"
    with statekeel.open(f"sqlite:///{db}") as store:
        store.session("s").append({"role": "system", "content": "ok"}, {"role": "user", "content": "hello"})
        log = store.backend.scan_logs("")[0].log
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(damage)
    conn.close()
    with statekeel.open(f"sqlite:///{db}") as store:
        for read in (lambda: store.session("s").history(), lambda: store.session("s").messages()):
            with pytest.raises(CorruptionError) as err:
                read()
            assert (err.value.key, err.value.seq) == (log, 2)
        assert store.backend.read(log, stop=2)[0].seq == 1  # the undamaged entry still reads


def test_an_encrypted_sqlite_store_does_not_name_the_role_in_clear(tmp_path: Path) -> None:
    """The short form names the role in the codec, which is stored in clear: an encrypted store
    keeps it inside the ciphertext (``msg+aesgcm``, or JSON), never in the codec name."""
    db = tmp_path / "s.db"
    key = statekeel.Encryption(master_key=b"k" * 32)
    with statekeel.open(f"sqlite:///{db}", encryption=key) as store:
        store.session("s").append({"role": "user", "content": "private words"})
    [(_, data, codec, _)] = _rows(db)
    assert codec in ("json+aesgcm", "msg+aesgcm") and b"private" not in data and b"user" not in data
    with statekeel.open(f"sqlite:///{db}", encryption=key) as store:
        assert store.session("s").history() == [{"role": "user", "content": "private words"}]


@pytest.mark.parametrize("number", [0, 1, -1, 7, 10**17, 10**18 - 1, -(10**18) + 1, 10**18, -(10**18), 10**40])
def test_an_int_encodes_as_its_json(number: int) -> None:
    """Small ints skip the tree walk; the bytes are the very ones JSON gives, as for bigger ones."""
    import json

    assert short_codec().encode(number, "n", "k") == (json.dumps(number).encode(), "json")
    assert short_codec().decode(str(number).encode(), "json", "k") == number


def test_the_files_format_keeps_a_short_form_message_readable_and_exact() -> None:
    """A short-form entry copied or exported to files is its text, and reads back byte for byte."""
    import json

    from statekeel.backends.files.format import line_text, parse_line

    data = "Grüße \"quoted\"\n\u2028 end".encode()
    text = line_text(LOG, 3, 1.5, "msg:user", data, 0)
    assert json.loads(text)["text"] == data.decode() and text.count("\n") == 1
    line = parse_line(text.rstrip("\n").encode())
    assert line is not None and (line.data, line.codec) == (data, "msg:user") and line.verify(LOG)
    for damaged in (text.replace('"text":"', '"text":5,"x":"'), text.replace("Grüße", "Gruße")):
        found = parse_line(damaged.rstrip("\n").encode())
        assert found is None or found.data != data  # unparseable, or caught by its checksum below
        if found is not None:
            with pytest.raises(CorruptionError):
                found.verify(LOG)
