"""Erasure reaches a backup taken before it, and the WAL: real SQLite files, a real backup."""

from __future__ import annotations

from pathlib import Path

import pytest

import statekeel
from statekeel import Encryption
from statekeel.errors import ErasedError
from statekeel.portability import backup_sqlite

KEY = b"m" * 32
CANARY = "erase-me-canary-41d9"


def test_a_backup_taken_before_erasure_cannot_be_read_after_it(tmp_path: Path) -> None:
    data_url = f"sqlite:///{tmp_path}/data.db"
    keystore = f"sqlite:///{tmp_path}/keys.db"  # kept apart from the data, as docs/security.md says
    enc = Encryption(master_key=KEY, keystore_url=keystore)
    with statekeel.open(data_url, encryption=enc) as store:
        store.session("s-ann", user="ann").append({"role": "user", "content": CANARY}, state={"k": CANARY})
        store.user("ann").put("profile", CANARY)
        store.session("s-bob", user="bob").append("bob stays")
    backup_sqlite(data_url, tmp_path / "before-erasure.db")

    with statekeel.open(data_url, encryption=enc) as store:
        store.erase("ann")
        store.storage.checkpoint_wal()  # type: ignore[attr-defined]

    # live data and its WAL: no plaintext ever, and nothing of ann's left to read
    for f in tmp_path.glob("data.db*"):
        assert CANARY.encode() not in f.read_bytes()
    # the old backup still holds ann's ciphertext, but her keys are gone from the keystore
    with statekeel.open(f"sqlite:///{tmp_path}/before-erasure.db", encryption=enc) as old:
        with pytest.raises(ErasedError):
            old.user("ann").get("profile")
        with pytest.raises(ErasedError):
            old.session("s-ann").history()
        assert old.session("s-bob").history() == ["bob stays"]  # other subjects are intact
    assert CANARY.encode() not in (tmp_path / "before-erasure.db").read_bytes()


def test_erasure_finds_a_subject_bound_before_a_master_key_rotation(tmp_path: Path) -> None:
    """The subject digests used to be keyed by the current master key: after `keys rotate` (and the
    old key retired) erasure found none of the partitions bound before, and shredded nothing."""
    import base64

    from statekeel.features.rotation import rotate_master

    old, new = base64.b64encode(b"o" * 32).decode(), base64.b64encode(b"n" * 32).decode()
    url = f"sqlite:///{tmp_path}/agent.db"
    with statekeel.open(url, encryption=Encryption(master_key=old)) as store:
        store.session("s1", user="ann").append("my card ends 4242")
        store.bind_subject("session:s2", "ann")  # a session opened without user=, tagged by hand
        store.session("s2").append("ann's address is 1 Main St")
    with statekeel.open(url, encryption=Encryption(master_key=f"k2:{new},k1:{old}")) as store:
        rotate_master(store)
    with statekeel.open(url, encryption=Encryption(master_key=f"k2:{new}")) as store:  # the old key retired
        assert store.session("s2").history() == ["ann's address is 1 Main St"]
        done = store.erase("ann")
        assert done.partitions == 3  # user:ann, session s1 (its user) and session s2 (bound by hand)
        for sid in ("s1", "s2"):
            with pytest.raises(ErasedError):
                store.session(sid).append("more")
