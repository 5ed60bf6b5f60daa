"""Encrypted values are bound to their position — on every backend.

Each test edits storage directly, beneath the API (``store.storage``), the way
someone with write access to the database but without the key would: swapping
two history entries, moving one to another seq, restoring an older ciphertext
of a record over its newest version. Every one must read back as
:class:`~statekeel.errors.IntegrityError`, never as a value.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

import statekeel
from statekeel import Encryption
from statekeel.core.encryption import _aad
from statekeel.errors import IntegrityError
from statekeel.features.rotation import reencrypt
from statekeel.protocol import ANY, Put, Rewrite, keys

KEY = base64.b64encode(b"P" * 32).decode()


def _open(store_url: str) -> statekeel.Store:
    return statekeel.open(store_url, encryption=Encryption(master_key=KEY))


def test_swapped_history_entries_are_refused(store_url: str) -> None:
    with _open(store_url) as store:
        s = store.session("swap")
        s.append({"role": "user", "content": "pay 10"}, {"role": "assistant", "content": "paid 10"})
        one, two = store.storage.read(s._log)[-2:]
        store.storage.apply([Rewrite(s._log, one.seq, two.data, two.codec), Rewrite(s._log, two.seq, one.data, one.codec)])
        with pytest.raises(IntegrityError, match=f"entry {one.seq} of log"):
            s.history()


def test_an_entry_moved_to_another_seq_is_refused(store_url: str) -> None:
    with _open(store_url) as store:
        events = store.events("payments")
        events.append("paid", {"amount": 10})
        events.append("refunded", {"amount": 10})
        first, second = store.storage.read(events._log)
        store.storage.apply([Rewrite(first.log, first.seq, second.data, second.codec)])  # a refund "happened first"
        with pytest.raises(IntegrityError, match="moved"):
            events.read()


def test_an_older_ciphertext_restored_over_the_newest_is_refused(store_url: str) -> None:
    with _open(store_url) as store:
        store.app.put("limit", 100)
        old = store.storage.get(store.app._full_key("limit"))
        store.app.put("limit", 5)
        assert old is not None
        store.storage.apply([Put(old.key, old.data, old.codec, ANY)])  # the bytes of version 1, now version 3
        with pytest.raises(IntegrityError, match=r"version 3"):
            store.app.get("limit")
        s = store.session("replay")
        s.state.put("approved", False)
        before = store.storage.get(s.state._full_key("approved"))
        s.state.put("approved", True)
        assert before is not None
        store.storage.apply([Put(before.key, before.data, before.codec, ANY)])
        with pytest.raises(IntegrityError):
            s.state.get("approved")


def test_two_handles_writing_one_session_stay_readable(store_url: str) -> None:
    """Each handle seals with the position it last saw; when the other moved it, the batch is
    refused (nothing written) and sealed again — so values land at the position they are bound to."""
    with _open(store_url) as a, _open(store_url) as b:
        sa, sb = a.session("shared"), b.session("shared")
        for i in range(3):
            sa.append({"role": "user", "content": f"a{i}"})
            sb.append({"role": "user", "content": f"b{i}"})
            a.app.put("turn", f"a{i}")
            b.app.put("turn", f"b{i}")
        assert [m["content"] for m in a.session("shared").history()] == ["a0", "b0", "a1", "b1", "a2", "b2"]
        assert a.app.get("turn") == "b2" and b.app.get("turn") == "b2"


def test_values_sealed_before_positions_were_bound_are_read_and_reencrypt_binds_them(store_url: str) -> None:
    with _open(store_url) as store:
        s = store.session("legacy")
        s.append({"role": "user", "content": "hello"})
        store.app.put("cfg", {"mode": "strict"})
        keyring = store.keyring
        assert keyring is not None
        for item in [*store.storage.read(s._log)]:  # rewrite as format 1: bound to the key only
            old = _format1(keyring, item.log, item.data, store)
            store.storage.apply([Rewrite(item.log, item.seq, old, item.codec)])
        rec = store.storage.get(store.app._full_key("cfg"))
        assert rec is not None
        store.storage.apply([Put(rec.key, _format1(keyring, rec.key, rec.data, store), rec.codec, ANY)])
        assert s.history() == [{"role": "user", "content": "hello"}]
        assert store.app.get("cfg") == {"mode": "strict"}
        reencrypt(store)
        raw = [*store.storage.read(s._log), store.storage.get(store.app._full_key("cfg"))]
        assert all(r is not None and r.data[0] == 2 for r in raw)
        assert s.history() == [{"role": "user", "content": "hello"}]
        assert store.app.get("cfg") == {"mode": "strict"}


def _format1(keyring: Any, where: str, sealed: bytes, store: statekeel.Store) -> bytes:
    """The same plaintext sealed as format 1 (what statekeel wrote before positions were bound)."""
    version = int.from_bytes(sealed[1:5], "big")
    key = keyring.get(keys.partition(where), version)
    plain = _plaintext(store, where, sealed)
    nonce = os.urandom(12)
    sealed_again: bytes = key.aead.encrypt(nonce, plain, _aad(where, version))
    return bytes([1]) + version.to_bytes(4, "big") + nonce + sealed_again


def _plaintext(store: statekeel.Store, where: str, sealed: bytes) -> bytes:
    """The plaintext exactly as sealed (the sealed backend's reads unpack a message's sealed role)."""
    sealing = store.sealing
    assert sealing is not None and sealing._cipher is not None
    for e in store.storage.read(where) if store.storage.log_info(where) else []:
        if e.data == sealed:
            return sealing._cipher.open(e.data, where, b"e", e.seq)
    rec = store.storage.get(where)
    assert rec is not None and rec.data == sealed
    return sealing._cipher.open(rec.data, where, b"r", rec.version)
