"""Shared notes: stamped, per author, read with a staleness tolerance."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

import statekeel
from statekeel import InvalidInputError, NoteRead, Store
from statekeel.protocol import keys


def test_note_not_written_is_not_ready(store: Store) -> None:
    note = store.session("s").notes.read("observer", max_age="5m")
    assert note == NoteRead("observer", False, None, None, None, False)
    assert not note.fresh


def test_note_write_then_read_from_another_handle(store: Store, open_store: Any) -> None:
    stamp = store.session("s").notes.write("observer", {"issues": ["tone"], "turn": 3})
    note = open_store().session("s").notes.read("observer", max_age="5m")
    assert note.ready and note.fresh and note.value == {"issues": ["tone"], "turn": 3}
    assert note.written_at == stamp and note.age is not None and 0 <= note.age < 60


def test_note_goes_stale(store: Store) -> None:
    notes = store.session("s").notes
    notes.write("observer", "v1")
    time.sleep(0.3)  # longer than a loaded machine takes to write and read v2 below (its age must be less)
    old = notes.read("observer", max_age="20ms")
    assert old.ready and old.stale and not old.fresh and old.value == "v1" and old.age is not None
    assert old.age >= 0.25
    assert not notes.read("observer").stale  # no max_age: never stale
    notes.write("observer", "v2")
    fresh = notes.read("observer", max_age="1s")  # a busy machine can take 20 ms to write and read
    assert fresh.value == "v2" and not fresh.stale and fresh.age is not None and fresh.age < old.age


def test_note_authors_and_sessions_are_separate(store: Store) -> None:
    a, b = store.session("a").notes, store.session("a/b").notes
    a.write("observer", 1)
    a.write("critic/2", 2)
    b.write("observer", 3)
    assert {k: n.value for k, n in a.all().items()} == {"observer": 1, "critic/2": 2}
    assert {k: n.value for k, n in b.all().items()} == {"observer": 3}
    assert a.delete("observer") and not a.delete("observer")
    assert not a.read("observer").ready and a.read("critic/2").value == 2


def test_note_bad_input(store: Store) -> None:
    notes = store.session("s").notes
    for bad in ["", None, 3]:
        with pytest.raises(InvalidInputError, match="author"):
            notes.write(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        notes.read("observer", max_age="soon")
    with pytest.raises(statekeel.SerializationError):
        notes.write("observer", {"x": object()})
    assert notes.all() == {}


def test_note_expires_with_its_session(store: Store) -> None:
    s = store.session("short", ttl="1h")
    s.notes.write("observer", 1)
    rec = store.backend.get(keys.join("session", "short", "notes", "observer"))
    assert rec is not None and rec.expires_at is not None


_WRITER = textwrap.dedent(
    """
    import sys
    import statekeel
    with statekeel.open(sys.argv[1]) as store:
        notes = store.session("shared").notes
        for i in range(1, 201):
            notes.write("observer", {"i": i})
    """
)


@pytest.mark.multiprocess
def test_note_reader_never_blocks_the_writer_process(store_url: str) -> None:
    with statekeel.open(store_url) as store:
        notes = store.session("shared").notes
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, store_url])
        seen = []
        while writer.poll() is None:
            note = notes.read("observer", max_age="1m")
            if note.ready:
                seen.append(note.value["i"])
        assert writer.wait(timeout=120) == 0
        assert seen == sorted(seen)  # every read saw a whole, monotonically newer note
        assert notes.read("observer").value == {"i": 200}


def test_note_on_an_encrypted_store_keeps_no_plaintext(store_url: str) -> None:
    pytest.importorskip("cryptography")
    key = base64.b64encode(b"N" * 32).decode()
    with statekeel.open(store_url, encryption=statekeel.Encryption(master_key=key)) as store:
        store.session("enc").notes.write("observer", {"issues": ["canary-issue"]})
        (rec,) = store.storage.scan("session/enc/notes/")
        assert b"canary" not in rec.data
    with statekeel.open(store_url, encryption=statekeel.Encryption(master_key=key)) as again:
        assert again.session("enc").notes.read("observer").value == {"issues": ["canary-issue"]}
