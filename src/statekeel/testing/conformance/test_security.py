"""Encryption at rest, erasure and the secret guard — on every backend.

The canary tests write marker strings and then read the backend's raw bytes
(SQLite file and WAL, files tree, PostgreSQL data directory, Redis AOF/RDB)
looking for them: there must be no plaintext hit.
"""

from __future__ import annotations

import base64
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import Encryption
from statekeel.errors import (
    ErasedError,
    IntegrityError,
    KeyUnavailableError,
    NotFoundError,
    SecretDetectedError,
)
from statekeel.protocol import Backend, Put

from .. import ServerPool

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
CANARY = "canary-7f3a9c-plaintext-must-not-appear"


def _bytes_under(path: Path) -> bytes:
    """Every file's bytes under ``path``; a file the server removed meanwhile (PostgreSQL's
    ``pg_internal.init``, a temp file) held nothing of ours worth finding."""
    out = []
    for p in path.rglob("*"):
        if not p.is_file():
            continue
        try:
            out.append(p.read_bytes())
        except FileNotFoundError:
            continue
    return b"".join(out)


def _raw_bytes(backend_name: str, store: statekeel.Store, tmp_path: Path, servers: ServerPool) -> bytes:
    """Everything the backend has put on disk; for any other backend (memory://, a
    third party's), every record and log entry it hands back through the protocol."""
    if backend_name in ("sqlite", "files"):
        return _bytes_under(tmp_path)
    if backend_name == "postgres":
        server = servers.postgres()
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-c", "CHECKPOINT"],
            check=True, capture_output=True,
        )
        return _bytes_under(Path(server.datadir))
    if backend_name == "redis":
        redis = servers.redis()
        with socket.create_connection(("127.0.0.1", redis.port)) as sock:
            sock.sendall(b"*1\r\n$4\r\nSAVE\r\n")
            sock.recv(64)
        return _bytes_under(redis.dir)
    return _protocol_bytes(store.storage)


def _protocol_bytes(backend: Backend) -> bytes:
    """The data of every record and log entry, paged through the protocol."""
    parts: list[bytes] = []
    after: str | None = None
    while page := backend.scan("", after=after, limit=500):
        parts += [r.data for r in page]
        after = page[-1].key
    after = None
    while logs := backend.scan_logs("", after=after, limit=500):
        parts += [e.data for info in logs for e in backend.read(info.log)]
        after = logs[-1].log
    return b"".join(parts)


def _encrypted(store_url: str, key: str = KEY_A, **kw: Any) -> statekeel.Store:
    return statekeel.open(store_url, encryption=Encryption(master_key=key, **kw))


def test_encrypted_values_round_trip_and_leave_no_plaintext(
    backend_name: str, store_url: str, tmp_path: Path, statekeel_servers: ServerPool
) -> None:
    with _encrypted(store_url) as store:
        s = store.session("enc", user="u-canary")
        s.append({"role": "user", "content": CANARY + "-history"}, state={"note": CANARY + "-state"})
        store.app.put("cfg", {"v": CANARY + "-app"})
        store.user("u-canary").put("profile", CANARY + "-user")
        assert s.history() == [{"role": "user", "content": CANARY + "-history"}]
        assert s.state.get("note") == CANARY + "-state"
        assert store.app.get("cfg") == {"v": CANARY + "-app"}
        rec = store.storage.get(store.app._full_key("cfg"))
        assert rec is not None and rec.codec.endswith("+aesgcm")
        raw = _raw_bytes(backend_name, store, tmp_path, statekeel_servers)
    assert raw, "nothing was read from the backend"
    assert b"canary-7f3a9c" not in raw
    assert "canary-7f3a9c".encode("utf-16-le") not in raw


def test_moved_or_tampered_ciphertext_is_rejected(store_url: str) -> None:
    with _encrypted(store_url) as store:
        store.app.put("a", "secret-a")
        store.app.put("b", "secret-b")
        rec_a = store.storage.get(store.app._full_key("a"))
        assert rec_a is not None
        # copy a's ciphertext into b: the associated data binds it to "a"
        store.storage.apply([Put(store.app._full_key("b"), rec_a.data, rec_a.codec)])
        with pytest.raises(IntegrityError, match="copied"):
            store.app.get("b")
        flipped = bytearray(rec_a.data)
        flipped[-1] ^= 1
        store.storage.apply([Put(rec_a.key, bytes(flipped), rec_a.codec)])
        with pytest.raises(IntegrityError):
            store.app.get("a")


def test_wrong_or_missing_master_key(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with _encrypted(store_url) as store:
        store.app.put("k", "v")
    with _encrypted(store_url, key=f"other:{KEY_B}") as wrong:
        with pytest.raises(KeyUnavailableError, match="not configured"):
            wrong.app.get("k")
    with _encrypted(store_url) as probe:
        first_id = probe.keyring.master.current  # type: ignore[union-attr]
    with _encrypted(store_url, key=f"{first_id}:{KEY_B}") as same_id_wrong_value:
        with pytest.raises(KeyUnavailableError, match="wrong value"):
            same_id_wrong_value.app.get("k")
    monkeypatch.delenv("STATEKEEL_MASTER_KEY", raising=False)
    with pytest.raises(KeyUnavailableError, match="STATEKEEL_MASTER_KEY"):
        statekeel.open(store_url, encryption=Encryption())
    with _encrypted(store_url) as store:  # nothing was overwritten by the failed attempts
        assert store.app.get("k") == "v"


def test_master_key_rotation_rewraps_without_reencrypting(store_url: str) -> None:
    with _encrypted(store_url) as store:
        store.app.put("k", "v")
        old_id = store.keyring.master.current  # type: ignore[union-attr]
        before = store.storage.get(store.app._full_key("k"))
    with _encrypted(store_url, key=f"new:{KEY_B},{old_id}:{KEY_A}") as store:
        keyring = store.keyring
        assert keyring is not None
        assert sum(keyring.rewrap(p) for p in keyring.partitions()) >= 1
        assert sum(keyring.rewrap(p) for p in keyring.partitions()) == 0  # resumable: nothing left
        assert store.storage.get(store.app._full_key("k")) == before  # data untouched
    with _encrypted(store_url, key=f"new:{KEY_B}") as store:  # the old master key is no longer needed
        assert store.app.get("k") == "v"


def test_erasure_crypto_shreds_one_subject(store_url: str, tmp_path: Path, backend_name: str) -> None:
    keystore = f"sqlite:///{tmp_path}/keystore.db"
    with _encrypted(store_url, keystore_url=keystore) as store:
        store.session("s-ann", user="ann").append("ann's message", state={"k": "ann-state"})
        store.user("ann").put("profile", "ann-profile")
        store.session("s-bob", user="bob").append("bob's message")
        store.user("bob").put("profile", "bob-profile")
        ann_rec = store.storage.get(store.user("ann")._full_key("profile"))
        erasure = store.erase("ann")
        assert erasure.partitions == 2 and erasure.crypto_shredded
        assert store.user("ann").get("profile") is None
        assert [i.id for i in store.sessions()] == ["s-bob"]
        assert store.session("s-bob").history() == ["bob's message"]
        assert store.user("bob").get("profile") == "bob-profile"
        # a copy of ann's ciphertext (as in an old backup) can no longer be decrypted
        assert ann_rec is not None
        store.storage.apply([Put(ann_rec.key, ann_rec.data, ann_rec.codec)])
        with pytest.raises(ErasedError):
            store.user("ann").get("profile")
        assert issubclass(ErasedError, NotFoundError)


def test_erasure_without_encryption_deletes(store: statekeel.Store) -> None:
    store.session("s1", user="cy").append("hello")
    store.user("cy").put("k", 1)
    erasure = store.erase("cy")
    assert not erasure.crypto_shredded and erasure.partitions == 2
    assert store.user("cy").get("k") is None and list(store.sessions()) == []


SECRETS = {
    "aws_access_key": "my key is AKIAIOSFODNN7EXAMPLE ok",
    "api_key": "use sk-proj-Abc123Def456Ghi789Jkl012Mno345",
    "github_token": "token ghp_1234567890abcdefghijklmnopqrstuvwxyzAB",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "connection_string": "postgresql://admin:s3cr3tpass@db.internal:5432/prod",
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_secret_guard_refuses_by_default(store: statekeel.Store, kind: str) -> None:
    with pytest.raises(SecretDetectedError) as info:
        store.session("s").append({"role": "tool", "content": SECRETS[kind]})
    assert "content" in info.value.path and info.value.kind == kind
    assert store.session("s").history() == []


def test_secret_fields_and_paths(store: statekeel.Store) -> None:
    with pytest.raises(SecretDetectedError) as info:
        store.app.put("cfg", {"db": {"password": "hunter2-but-longer"}})
    assert info.value.path == "app['cfg']['db']['password']"
    store.app.put("cfg", {"db": {"password_hint": "the usual one"}, "tokens_used": 1234})


def test_secret_guard_redact_and_off(store_url: str) -> None:
    with statekeel.open(store_url, secret_guard="redact") as store:
        store.app.put("out", {"text": SECRETS["aws_access_key"], "password": "hunter2-hunter2"})
        assert store.app.get("out") == {
            "text": "my key is [REDACTED:aws_access_key] ok",
            "password": "[REDACTED:secret_field]",
        }
    with statekeel.open(store_url, secret_guard="off") as store:
        store.app.put("raw", SECRETS["jwt"])
        assert store.app.get("raw") == SECRETS["jwt"]


def test_ordinary_agent_text_passes(store: statekeel.Store) -> None:
    ordinary = [
        "Your order 99123 shipped on 2026-11-21; tracking 1Z999AA10123456784.",
        "See https://docs.python.org/3/library/sqlite3.html for details.",
        "The build id is 3f2c1e0b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b (a git sha).",
        "uuid 12345678-1234-5678-1234-567812345678 and token count: 512",
        "def update_session_state(session_id: str) -> None: ...",
        "Reset your password from the account page.",
    ]
    s = store.session("plain")
    s.append(*ordinary)
    assert s.history() == ordinary


def test_many_encrypted_turns_stay_readable(store_url: str) -> None:
    with _encrypted(store_url) as store:
        s = store.session("t")
        for i in range(200):
            s.append({"role": "user", "content": f"u{i}"}, {"role": "assistant", "content": f"a{i}"}, state={"turn": i})
    with _encrypted(store_url) as store:
        s = store.session("t")
        assert len(s) == 400 and s.state.get("turn") == 199
        assert s.history(last=2) == [{"role": "user", "content": "u199"}, {"role": "assistant", "content": "a199"}]


def test_reencrypt_moves_everything_to_new_data_keys(store_url: str) -> None:
    from statekeel.features.rotation import reencrypt

    with _encrypted(store_url) as store:
        s = store.session("r", user="ro")
        s.append("m1", "m2", state={"k": "v"})
        store.app.put("a", 1)
        old = store.storage.read(s._log)[0].data
        result = reencrypt(store)
        assert result.records >= 2 and result.entries == 2 and result.partitions >= 2
        new = store.storage.read(s._log)[0].data
        assert new[1:5] != old[1:5]  # another data key version
        assert s.history() == ["m1", "m2"] and s.state.get("k") == "v" and store.app.get("a") == 1
        assert reencrypt(store).entries == 2  # a second run rotates again…
        assert s.history() == ["m1", "m2"]
