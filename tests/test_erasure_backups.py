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
        store.backend.checkpoint_wal()  # type: ignore[attr-defined]

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
