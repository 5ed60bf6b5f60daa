"""Plain chat messages in an encrypted store: the short form with the role sealed inside.

An encrypted store used to keep every message as JSON (the short form ``msg:<role>``
names the role in the codec name, which is stored in clear). Now the sealing moves the
role inside the ciphertext and stores ``msg+aesgcm``: the role is nowhere in clear, and
the message skips the JSON encoder and parser. Records written before (``json+aesgcm``)
keep reading, alone and mixed with new ones in one history; a codec name changed beneath
the API (role swapped, ``msg`` ↔ ``json``) is refused, never returned. Real stores only
(the conformance plugin's backends).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

import statekeel
from statekeel import Encryption
from statekeel.codec_msg import open_form, seal_form
from statekeel.core import layout
from statekeel.errors import CorruptionError, IntegrityError
from statekeel.protocol import Append, Rewrite

KEY = base64.b64encode(b"M" * 32).decode()
LOG = layout.history_log("s1")
MESSAGES = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello — ünïcode"}]


@pytest.fixture(params=["encrypted", "encrypted+chain"])
def store(request: pytest.FixtureRequest, store_url: str) -> Iterator[statekeel.Store]:
    integrity = statekeel.Integrity(key=b"c" * 32) if request.param.endswith("chain") else None
    with statekeel.open(store_url, encryption=Encryption(master_key=KEY), integrity=integrity) as opened:
        yield opened


def test_messages_are_stored_short_with_the_role_sealed_inside(store: statekeel.Store) -> None:
    s = store.session("s1")
    s.append(*MESSAGES)
    stored = store.storage.read(LOG)
    assert [e.codec.partition("+")[0] for e in stored] == ["msg", "msg"]  # no role in the codec name
    assert all(e.codec.endswith("+aesgcm") for e in stored)
    assert all(b"user" not in e.data and b"hi there" not in e.data for e in stored)
    assert s.history() == MESSAGES  # the bulk read
    assert [s.history(last=1)] == [MESSAGES[1:]] and store.session("s1").history(last=2) == MESSAGES


def test_messages_written_as_json_before_keep_reading(store: statekeel.Store) -> None:
    """What the previous statekeel wrote (``json+aesgcm``), then new ones, in one history."""
    store.session("s1").append({"role": "system", "content": "set up"})  # makes the session
    old = json.dumps({"role": "user", "content": "from before"}, separators=(",", ":")).encode()
    store.backend.apply([Append(LOG, ((old, "json"),))])  # sealed as the previous code sealed messages
    assert store.storage.read(LOG)[-1].codec.split("+")[0] == "json"
    store.session("s1").append(*MESSAGES)
    want = [{"role": "system", "content": "set up"}, {"role": "user", "content": "from before"}, *MESSAGES]
    assert store.session("s1").history() == want
    assert store.session("s1").history(last=3) == want[1:]


def _tamper(store: statekeel.Store, seq: int, codec: str) -> None:
    """Change an entry's codec name beneath the API (checksum recomputed, as an attacker would)."""
    entry = store.storage.read(LOG, start=seq, stop=seq + 1)[0]
    store.storage.apply([Rewrite(LOG, seq, entry.data, codec)])


@pytest.mark.parametrize("codec", ["msg:assistant+aesgcm", "json+aesgcm", "msg:user+aesgcm"])
def test_a_changed_codec_name_is_refused(store: statekeel.Store, codec: str) -> None:
    store.session("s1").append(*MESSAGES)
    stored = store.storage.read(LOG)[0].codec
    _tamper(store, 1, codec.replace("+aesgcm", "+chain+aesgcm") if "+chain" in stored else codec)
    with pytest.raises((IntegrityError, CorruptionError)) as err:
        store.session("s1").history()
    assert "s1" in str(err.value)
    with pytest.raises((IntegrityError, CorruptionError)):
        store.session("s1").history(last=2)  # one at a time too


def test_json_relabelled_as_a_sealed_message_is_refused(store: statekeel.Store) -> None:
    store.session("s1").append({"role": "user", "content": "x", "extra": 1})  # not a plain message: JSON
    entry = store.storage.read(LOG)[0]
    assert entry.codec.startswith("json+")
    _tamper(store, 1, "msg" + entry.codec[len("json"):])
    with pytest.raises(IntegrityError, match="codec name was changed"):
        store.session("s1").history()


def test_sealed_form_round_trips_and_refuses_what_it_did_not_write() -> None:
    data, codec = seal_form(b"content", "msg:tool+chain")
    assert codec == "msg+chain" and data == b"\x00tool\x00content"
    assert open_form(data, codec) == (b"content", "msg:tool+chain")
    assert seal_form(b"{}", "json") == (b"{}", "json")
    for bad, name in [(b"{}", "msg"), (b"\x00\x00x", "msg"), (b"\x00Role\x00x", "msg"), (data, "msg:tool"),
                      (b"\x00" + b"a" * 20 + b"\x00x", "msg")]:  # fmt: skip
        assert open_form(bad, name) is None


def test_reencrypt_and_conversion_keep_the_sealed_form(store: statekeel.Store) -> None:
    """``keys reencrypt`` moves messages to a fresh data key, old JSON ones and planted plaintext
    short ones (``msg:<role>``, as a plaintext store holds them) included, all as ``msg+…+aesgcm``."""
    from statekeel.features.rotation import reencrypt

    store.session("s1").append(*MESSAGES)
    chained = "+chain" in store.storage.read(LOG)[0].codec
    if not chained:  # (in a tamper-evident store an entry appended beneath the API is refused as forged)
        store.storage.apply([Append(LOG, ((b"plain one", "msg:user"),))])  # left by a process without the key
    result = reencrypt(store)
    assert result.entries >= 2 and (chained or f"{LOG}#3" in result.plaintext)
    planted = [] if chained else [{"role": "user", "content": "plain one"}]
    assert store.session("s1").history() == [*MESSAGES, *planted]
    assert {e.codec.partition("+")[0] for e in store.storage.read(LOG)} == {"msg"}
