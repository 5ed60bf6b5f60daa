"""Issue 11 item 1: an encrypted store stays encrypted, on every backend.

Plaintext planted straight through the backend protocol (as anyone with write
access to the database could) is refused, never returned; a store written with
encryption is refused without its key; ``keys encrypt`` converts a plaintext
store in place (resumable, verified) and ``keys reencrypt`` leaves no plaintext.
Real stores only (memory, SQLite, files, PostgreSQL and Redis servers from the
conformance plugin).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import statekeel
from statekeel import Encryption
from statekeel.cli.health import examine
from statekeel.core import layout
from statekeel.core.keyring import key_id
from statekeel.errors import IntegrityError, KeyUnavailableError
from statekeel.features.rotation import (
    _begin_conversion,
    _encrypt_record,
    encrypt_store,
    reencrypt,
)
from statekeel.protocol import Append, Delete, Put, Record
from statekeel.store import open_for_maintenance

RAW_KEY = b"K" * 32
KEY = base64.b64encode(RAW_KEY).decode()
KEY_ID = key_id(RAW_KEY)
PLANTED = b'{"role":"admin","content":"planted"}'


def _enc(url: str) -> statekeel.Store:
    return statekeel.open(url, encryption=Encryption(master_key=KEY))


def _snapshot(backend: statekeel.Store) -> list[Record]:
    return list(backend.storage.scan("", limit=10_000))


@pytest.fixture
def encrypted(store_url: str) -> Iterator[statekeel.Store]:
    with _enc(store_url) as store:
        s = store.session("s1", user="u1")
        s.append({"role": "user", "content": "hi"}, state={"ticket": 1})
        store.app.put("cfg", {"v": 1})
        yield store


# -- planted plaintext ------------------------------------------------------------------
def test_planted_plaintext_record_is_refused_on_every_backend(encrypted: statekeel.Store) -> None:
    key = encrypted.app._full_key("cfg")
    encrypted.storage.apply([Put(key, PLANTED, "json")])
    with pytest.raises(IntegrityError, match="stored without encryption") as info:
        encrypted.app.get("cfg")
    assert key in str(info.value)
    with pytest.raises(IntegrityError):
        list(encrypted.app.items())
    new_key = encrypted.app._full_key("planted-new")  # a record that never existed
    encrypted.storage.apply([Put(new_key, PLANTED, "json")])
    with pytest.raises(IntegrityError, match="planted"):
        encrypted.app.get("planted-new")


def test_planted_plaintext_history_entry_and_session_state_are_refused(encrypted: statekeel.Store) -> None:
    s = encrypted.session("s1")
    encrypted.storage.apply([Append(s._log, ((PLANTED, "json"),))])
    with pytest.raises(IntegrityError, match="stored without encryption"):
        s.history()
    with pytest.raises(IntegrityError):
        s.history(last=1)
    encrypted.storage.apply([Put(layout.state_key("session", "s1", "ticket"), b"2", "json")])
    with pytest.raises(IntegrityError):
        encrypted.session("s1").state.get("ticket")


def test_planted_plaintext_in_a_tenant_is_refused(encrypted: statekeel.Store) -> None:
    acme = encrypted.tenant("acme")
    acme.app.put("k", "real")
    acme.storage.apply([Put(acme.app._full_key("k"), b'"planted"', "json")])
    with pytest.raises(IntegrityError, match="stored without encryption"):
        acme.app.get("k")


def test_doctor_lists_planted_plaintext_with_and_without_the_key(encrypted: statekeel.Store) -> None:
    key = encrypted.app._full_key("cfg")
    encrypted.storage.apply([Put(key, PLANTED, "json")])
    report = examine(encrypted)
    assert not report.ok
    assert any(key in p and "without encryption" in p for p in report.as_dict()["problems"])
    if encrypted.url.startswith("memory"):
        return  # a memory store lives in this handle only: there is no second opening
    with open_for_maintenance(encrypted.url) as locked:
        report = examine(locked)
    problems = report.as_dict()["problems"]
    assert not report.ok and any(key in p and "without encryption" in p for p in problems)
    assert [c.summary for c in report.checks if c.name == "encryption"][0].startswith("encrypted, key not given")


def test_records_plain_by_design_stay_readable(encrypted: statekeel.Store) -> None:
    assert encrypted.storage.get(layout.ENCRYPTION_MARKER) is not None
    assert examine(encrypted).ok  # keystore records and the marker are plain and not reported
    encrypted.erase("u1")  # writes a plain erasure record
    assert examine(encrypted).ok


# -- opened without the key ---------------------------------------------------------------
@pytest.mark.multiprocess
def test_an_encrypted_store_is_refused_without_its_key(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with _enc(store_url) as store:
        store.app.put("k", "v")
        before = _snapshot(store)
    monkeypatch.delenv("STATEKEEL_MASTER_KEY", raising=False)
    with pytest.raises(KeyUnavailableError) as info:
        statekeel.open(store_url)
    message = str(info.value)
    assert KEY_ID in message and "STATEKEEL_MASTER_KEY" in message and "Encryption(master_key=" in message
    with _enc(store_url) as store:
        assert _snapshot(store) == before and store.app.get("k") == "v"


@pytest.mark.multiprocess
def test_a_store_encrypted_before_markers_existed_is_refused_without_its_key(store_url: str) -> None:
    with _enc(store_url) as store:
        store.app.put("k", "v")
        store.storage.apply([Delete(layout.ENCRYPTION_MARKER)])  # as written by an older statekeel
    with pytest.raises(KeyUnavailableError, match=KEY_ID):
        statekeel.open(store_url)
    with _enc(store_url) as store:  # opening with the key marks it
        assert store.storage.get(layout.ENCRYPTION_MARKER) is not None and store.app.get("k") == "v"


@pytest.mark.multiprocess
def test_a_locked_store_neither_decodes_nor_writes(store_url: str) -> None:
    with _enc(store_url) as store:
        store.app.put("k", "v")
    with open_for_maintenance(store_url) as locked:
        with pytest.raises(KeyUnavailableError, match=KEY_ID):
            locked.app.get("k")
        with pytest.raises(KeyUnavailableError, match=KEY_ID):
            locked.app.put("new", "plaintext")
        assert examine(locked).ok
    with _enc(store_url) as store:
        assert store.app.get("new") is None


# -- keys encrypt ----------------------------------------------------------------------
def _plain_store(url: str) -> dict[str, float | None]:
    with statekeel.open(url) as store:
        s = store.session("s1", user="u1", ttl="2h")
        s.append("m1", {"role": "assistant", "content": "m2"}, state={"k": {1, 2}})
        store.app.put("cfg", {"v": 1})
        store.tenant("acme").app.put("t", "tenant value")
        store.events("orders").append("created", {"id": 7})
        return {r.key: r.expires_at for r in store.storage.scan("")}


def _assert_readable(store: statekeel.Store) -> None:
    s = store.session("s1")
    assert s.history() == ["m1", {"role": "assistant", "content": "m2"}]
    assert s.state.get("k") == {1, 2}
    assert store.app.get("cfg") == {"v": 1}
    assert store.tenant("acme").app.get("t") == "tenant value"
    assert [e.data for e in store.events("orders").read()] == [{"id": 7}]


@pytest.mark.multiprocess
def test_keys_encrypt_converts_a_plaintext_store_in_place(store_url: str) -> None:
    expiry = _plain_store(store_url)
    with statekeel.open(store_url) as plain:
        log = plain.session("s1")._log
        entries_before = [(e.seq, e.created_at) for e in plain.storage.read(log)]
    with open_for_maintenance(store_url, encryption=Encryption(master_key=KEY), migrate=True, mark=False) as store:
        result = encrypt_store(store)
        assert result.records >= 5 and result.entries >= 3
        for rec in store.storage.scan(""):
            assert rec.codec.endswith("+aesgcm") or layout.stored_in_clear(rec.key), rec.key
            if rec.key in expiry:
                assert rec.expires_at == expiry[rec.key], rec.key
        assert [(e.seq, e.created_at) for e in store.storage.read(log)] == entries_before
        assert store.storage.get(layout.ENCRYPTION_CONVERSION) is None
        again = encrypt_store(store)  # idempotent: nothing left to convert
        assert again.records == 0 and again.entries == 0
    with _enc(store_url) as store:
        _assert_readable(store)
        store.storage.apply([Put(store.app._full_key("cfg"), b"{}", "json")])
        with pytest.raises(IntegrityError):  # finished: plaintext is refused from now on
            store.app.get("cfg")
    with pytest.raises(KeyUnavailableError, match=KEY_ID):
        statekeel.open(store_url)


@pytest.mark.multiprocess
def test_keys_encrypt_resumes_and_a_half_converted_store_stays_readable(store_url: str) -> None:
    _plain_store(store_url)
    with open_for_maintenance(store_url, encryption=Encryption(master_key=KEY), migrate=True, mark=False) as store:
        # what a run interrupted after its first record leaves behind
        _begin_conversion(store, store.backend)  # type: ignore[arg-type]
        statekeel.core.encryption.write_marker(store.storage, store.keyring.master)  # type: ignore[union-attr]
        first = store.storage.get(store.app._full_key("cfg"))
        assert first is not None
        _encrypt_record(store, store.backend, first)  # type: ignore[arg-type]
    with _enc(store_url) as half:
        _assert_readable(half)  # with the key: both the encrypted and the not yet converted values
    with pytest.raises(KeyUnavailableError):
        statekeel.open(store_url)
    with open_for_maintenance(store_url, encryption=Encryption(master_key=KEY), migrate=True, mark=False) as store:
        result = encrypt_store(store)
        assert store.app._full_key("cfg") not in result.converted  # already encrypted: skipped
        assert result.records >= 4
    with _enc(store_url) as store:
        _assert_readable(store)
        assert examine(store).ok


def test_a_forged_conversion_record_does_not_reopen_the_downgrade(encrypted: statekeel.Store) -> None:
    encrypted.storage.apply([Put(layout.ENCRYPTION_CONVERSION, b'{"started": 1}', "json")])
    encrypted.storage.apply([Put(encrypted.app._full_key("cfg"), PLANTED, "json")])
    if encrypted.url.startswith("memory"):
        return  # the policy is decided at open; a memory store cannot be opened again
    with _enc(encrypted.url) as again:
        with pytest.raises(IntegrityError):
            again.app.get("cfg")


# -- keys reencrypt ----------------------------------------------------------------------
def test_reencrypt_leaves_no_plaintext_behind(encrypted: statekeel.Store) -> None:
    key = encrypted.app._full_key("legacy")
    log = encrypted.session("s1")._log
    encrypted.storage.apply([Put(key, b'"from a process without the key"', "json"),
                             Append(log, ((b'"plain message"', "json"),))])
    result = reencrypt(encrypted)
    assert key in result.plaintext and f"{log}#2" in result.plaintext
    assert encrypted.app.get("legacy") == "from a process without the key"
    assert encrypted.session("s1").history() == [{"role": "user", "content": "hi"}, "plain message"]
    for rec in encrypted.storage.scan(""):
        assert rec.codec.endswith("+aesgcm") or layout.stored_in_clear(rec.key), rec.key


# -- key errors ---------------------------------------------------------------------------
@pytest.mark.multiprocess
def test_key_errors_name_the_key_expected_and_how_to_supply_it(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with _enc(store_url) as store:
        store.app.put("k", "v")
    other = base64.b64encode(b"O" * 32).decode()
    with statekeel.open(store_url, encryption=Encryption(master_key=other)) as wrong:
        with pytest.raises(KeyUnavailableError) as info:
            wrong.app.get("k")
    assert KEY_ID in str(info.value) and "STATEKEEL_MASTER_KEY" in str(info.value)
    monkeypatch.delenv("STATEKEEL_MASTER_KEY", raising=False)
    for source in ("env:STATEKEEL_MASTER_KEY", f"file:{tmp_path}/missing", "not-base64", b"short"):
        with pytest.raises(KeyUnavailableError) as info:
            statekeel.open(store_url, encryption=Encryption(master_key=source))
        text = str(info.value)
        assert KEY_ID in text and "Encryption(master_key=" in text and "STATEKEEL_MASTER_KEY" in text, text


@pytest.mark.multiprocess
def test_marker_names_the_key_after_rotation(store_url: str) -> None:
    from statekeel.features.rotation import rotate_master

    new = b"N" * 32
    with _enc(store_url) as store:
        store.app.put("k", "v")
    both = f"{base64.b64encode(new).decode()},{KEY}"
    with statekeel.open(store_url, encryption=Encryption(master_key=both)) as store:
        rotate_master(store)
        marker = store.storage.get(layout.ENCRYPTION_MARKER)
        assert marker is not None and json.loads(marker.data)["master_key_id"] == key_id(new)
    with pytest.raises(KeyUnavailableError, match=key_id(new)):
        statekeel.open(store_url)
