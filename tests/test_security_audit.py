"""Security promises checked from outside (docs/security.md), where earlier tests did not look.

Erasure: a partition tagged with ``bind_subject`` in a store without encryption; the
memories ADK's semantic memory service keeps of a user (and the words a native search
index keeps of them); the destroyed data keys left in SQLite's write-ahead log; the
subject's id itself, which the keystore must never hold (only a keyed digest).
Tamper evidence on the tiered store, with the edit made in one tier only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_py
from google.adk.events.event import Event
from google.adk.sessions.session import Session
from google.genai import types

import statekeel
from conftest import running
from statekeel import Encryption, Integrity
from statekeel.backends.tiered import TieredBackend
from statekeel.backends.tiered.hydrate import drop
from statekeel.backends.tiered.names import marker
from statekeel.core import layout
from statekeel.errors import IntegrityError, InvalidInputError
from statekeel.aio import AsyncStore
from statekeel.integrations.adk import StatekeelMemoryService
from statekeel.protocol import Entry, Expire, Rewrite
from statekeel.testing import BACKENDS, BackendContext, ServerPool
from statekeel.testing.servers import RedisServer

KEY = b"a" * 32
CANARY = "erase-me-canary-5be1"


def _tag_and_write(where: statekeel.Store) -> None:
    where.bind_subject("session:s2", "ann")  # a session opened without user=, tagged by hand
    where.session("s2").append(f"ann's address is 1 Main St {CANARY}")
    where.bind_subject("run:r1", "ann")  # the form docs/security.md shows
    with where.run("r1") as run:
        run.step("look up", lambda: f"ann's card {CANARY}")
    where.session("kept").append("not ann's")


def _erased(where: statekeel.Store) -> bool:
    return (where.find_session("s2") is None and where.backend.scan("session/s2/") == []
            and where.backend.scan("run/r1/") == [] and where.backend.scan_logs("run/r1/") == [])


def test_a_partition_tagged_without_encryption_is_erased(store: statekeel.Store) -> None:
    """``bind_subject`` did nothing without encryption: ``erase`` then left the tagged data readable."""
    acme = store.tenant("acme")
    _tag_and_write(store)
    _tag_and_write(acme)
    assert store.erase("ann").partitions == 3  # user:ann, session s2, run r1
    assert _erased(store) and not _erased(acme)  # the same subject in another tenant is kept
    assert acme.erase("ann").partitions == 3
    assert _erased(acme)
    assert store.session("kept").history() == acme.session("kept").history() == ["not ann's"]


def test_a_run_tagged_as_the_docs_show_is_erased_with_encryption(store_url: str) -> None:
    """``bind_subject("run:r1", ...)`` tagged a partition named ``run:r1`` that holds nothing, and
    ``erase`` then failed with ValueError."""
    with statekeel.open(store_url, encryption=Encryption(master_key=KEY)) as store:
        _tag_and_write(store)
        erasure = store.erase("ann")
        assert erasure.partitions == 3 and erasure.crypto_shredded and _erased(store)
        assert store.session("kept").history() == ["not ann's"]


@pytest.mark.parametrize("bad", ["", "run:", "r1", "run/", "/r1", "a//b"])
def test_a_tag_that_names_no_partition_is_refused(bad: str) -> None:
    with statekeel.open("memory://audit-bad-tags") as store:
        with pytest.raises(InvalidInputError):
            store.bind_subject(bad, "ann")
        with pytest.raises(InvalidInputError):
            store.bind_subject("run:r1", "")


def test_an_erasure_cut_short_is_finished_by_running_it_again(store_url: str) -> None:
    """Erasure destroyed a session's data key before expiring its data: cut short in between (a crash,
    a server gone), it left a session nobody could read, so every listing of sessions — and every
    later ``erase``, which lists them — failed with ErasedError, for all users."""
    with statekeel.open(store_url, encryption=Encryption(master_key=KEY)) as store:
        for i in range(3):
            store.session(f"s{i}", user="ann").append(f"ann {i} {CANARY}")
        store.session("b", user="bob").append("bob stays")
        store.keyring.destroy("session/s0", "cut-short")  # type: ignore[union-attr]  # the state it left
        store.storage.apply([Expire("session/s1/", 1.0)])  # and the state the new order may leave
        assert store.erase("ann").partitions == 4  # user:ann, s0, s1, s2
        assert [s.id for s in store.sessions()] == ["b"]
        for sid in ("s0", "s1", "s2"):
            shredded = store.storage.get(layout.keystore_key(f"session/{sid}"))
            assert shredded is not None and json.loads(shredded.data)["erased"] is True
            assert store.storage.scan(f"session/{sid}/") == [] and store.find_session(sid) is None
        assert store.session("b").history() == ["bob stays"]


def _events(user: str, texts: list[str]) -> Session:
    events = [Event(id=f"e{i}", author="user", invocation_id="i", timestamp=1_700_000_000 + i,
                    content=types.Content(role="user", parts=[types.Part(text=t)])) for i, t in enumerate(texts)]
    return Session(id="s1", app_name="shop", user_id=user, events=events)


def _remember_then_erase(store: statekeel.Store) -> tuple[list[str], list[str]]:
    """What ann's and bob's semantic memory searches find after ann is erased."""
    async def scenario() -> tuple[list[str], list[str]]:
        memory = StatekeelMemoryService(store, semantic=True)
        await memory.add_session_to_memory(_events("ann", [f"My dog is called Rex {CANARY}"]))
        await memory.add_session_to_memory(_events("bob", ["My dog is called Max"]))
        await asyncio.to_thread(store.erase, "ann")
        found = []
        for user in ("ann", "bob"):
            hits = await memory.search_memory(app_name="shop", user_id=user, query="dog")
            found.append([m.content.parts[0].text for m in hits.memories if m.content and m.content.parts])
        await memory.close()
        return found[0], found[1]

    return asyncio.run(scenario())


def test_adk_semantic_memories_are_erased_with_their_user(store_url: str) -> None:
    """docs/adk.md: the memory of a user is owned by the user; with ``semantic=True`` it was kept as
    statekeel memory that no erasure found, encrypted or not."""
    for encryption in (None, Encryption(master_key=KEY)):
        with statekeel.open(store_url, encryption=encryption) as store:
            assert _remember_then_erase(store) == ([], ["My dog is called Max"])
            assert store.storage.scan(layout.memory_prefix(("adk", "shop", "ann"))) == []
        with statekeel.open(store_url, encryption=encryption) as store:
            store.storage.apply([Expire("", 0)])  # the next round on an empty store
            store.storage.purge_expired()


def test_erasure_leaves_no_words_of_the_memories_in_the_search_index(tmp_path: Path) -> None:
    """The native search index (SQLite FTS5) kept the erased memories' words and vectors."""
    url = f"sqlite:///{tmp_path}/plain.db"
    with statekeel.open(url) as store:
        assert _remember_then_erase(store) == ([], ["My dog is called Max"])
    with sqlite3.connect(tmp_path / "plain.db") as db:
        assert [r[0] for r in db.execute("SELECT key FROM sk_memidx")] == ["memory/nadk/nshop/nbob/=e0"]
        assert not [r for r in db.execute("SELECT * FROM sk_memfts_content") if CANARY.lower() in str(r).lower()]


def _wrapped_keys(store: statekeel.Store, *partitions: str) -> list[bytes]:
    out = []
    for partition in partitions:
        rec = store.storage.get(layout.keystore_key(partition))
        assert rec is not None
        out += [v["wrapped"].encode() for v in json.loads(rec.data)["versions"].values()]
    return out


def test_erased_data_keys_are_not_left_in_the_write_ahead_log(tmp_path: Path) -> None:
    """docs/security.md: erasure reaches the WAL. The destroyed keys (wrapped by the master key, which
    the operator still holds) stayed in data.db-wal beside the ciphertext for as long as the store
    was open."""
    with statekeel.open(f"sqlite:///{tmp_path}/data.db", encryption=Encryption(master_key=KEY)) as store:
        store.session("s-ann", user="ann").append({"role": "user", "content": CANARY})
        store.user("ann").put("profile", CANARY)
        store.session("s-bob", user="bob").append("bob stays")
        wrapped = _wrapped_keys(store, "session/s-ann", "user/ann")
        store.erase("ann")
        files = sorted(tmp_path.glob("data.db*"))
        assert [f.name for f in files if any(w in f.read_bytes() for w in wrapped)] == []
        assert store.session("s-bob").history() == ["bob stays"]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this module's own: its AOF files are read (``--appendonly yes``, as in production)."""
    yield from running(RedisServer())


def test_erased_data_keys_are_not_left_in_redis_append_only_file(redis_server: RedisServer) -> None:
    """docs/security.md: erasure reaches AOF files. The AOF logged the keys before their destruction,
    so with the master key (still configured) a copy of it decrypted the erased data."""
    redis_py.Redis(port=redis_server.port).flushall()
    with statekeel.open(redis_server.url, encryption=Encryption(master_key=KEY)) as store:
        store.session("s-ann", user="ann").append({"role": "user", "content": CANARY})
        store.session("s-bob", user="bob").append("bob stays")
        wrapped = _wrapped_keys(store, "session/s-ann")
        store.erase("ann")
        aof = [f for f in redis_server.dir.rglob("*") if f.is_file() and "aof" in f.name]
        assert aof and [f.name for f in aof if any(w in f.read_bytes() for w in wrapped)] == []
        assert store.session("s-bob").history() == ["bob stays"]


def test_the_keystore_never_holds_a_subject_id(tmp_path: Path) -> None:
    """The keystore holds keyed digests of subjects, never their ids (docs/security.md); binding a new
    partition first wrote the id itself, then replaced it by the digest (the WAL kept the id)."""
    keystore = tmp_path / "keys.db"
    enc = Encryption(master_key=KEY, keystore_url=f"sqlite:///{keystore}")
    with statekeel.open(f"sqlite:///{tmp_path}/data.db", encryption=enc) as store:
        store.session("s1", user=CANARY).append("hello")
        store.bind_subject("run:r1", CANARY)
        files = sorted(tmp_path.glob("keys.db*"))
        assert files and [f.name for f in files if CANARY.encode() in f.read_bytes()] == []


# -- tamper evidence on the tiered store: an edit in either tier ------------------------------------
@pytest.mark.parametrize("mode", ["tiered", "tiered-wb"])
def test_an_edit_in_redis_or_in_postgresql_is_found_on_a_tiered_store(
    mode: str, tmp_path: Path, statekeel_servers: ServerPool
) -> None:
    """A partition served from Redis is checked like any other; an edit made in PostgreSQL while Redis
    serves the partition is found once Redis no longer holds it (evicted, then copied in again)."""
    url = BACKENDS[mode](BackendContext(tmp_path, statekeel_servers, 70_000 + (mode == "tiered-wb")))
    key = base64.b64encode(KEY).decode()
    with statekeel.open(url, integrity=Integrity(key=key), encryption=Encryption(master_key=key)) as store:
        s = store.session("s", user="ann")
        for i in range(4):
            s.append({"role": "user", "content": f"m{i}"})
        tiers = store.storage
        assert isinstance(tiers, TieredBackend)
        tiers.flush()
        _cached(store, tiers)
        tiers.hot.apply([_flipped(tiers.hot.read(s._log)[1])])  # in Redis only
        with pytest.raises(IntegrityError):
            s.history()
        drop(tiers.hot, ["session/s"])
        assert [m["content"] for m in s.history()] == ["m0", "m1", "m2", "m3"]  # PostgreSQL's copy is intact
        _cached(store, tiers)
        tiers.cold.apply([_flipped(tiers.cold.read(s._log)[2])])  # in PostgreSQL only
        assert [m["content"] for m in s.history()] == ["m0", "m1", "m2", "m3"]  # Redis's copy is intact
        drop(tiers.hot, ["session/s"])
        with pytest.raises(IntegrityError):
            s.history()  # read from PostgreSQL
        with pytest.raises(IntegrityError):
            _cached(store, tiers)
            s.history()  # read from the copy Redis took of it
        assert any("entry 3" in f for f in store.verify().failures)


def _flipped(e: Entry) -> Rewrite:
    damaged = bytearray(e.data)
    damaged[0] ^= 0x01
    return Rewrite(e.log, e.seq, bytes(damaged), e.codec)


def _cached(store: statekeel.Store, tiers: TieredBackend) -> None:
    """Read until Redis holds the session's partition (a read that misses copies it in the background)."""
    for _ in range(20):
        store.find_session("s")
        tiers.hydrator.wait()
        if tiers.hot.get(marker("session/s")) is not None:
            return
    raise AssertionError("session/s never got cached in Redis")


def rolled_back_tenant(tmp_path: Path, integrity: Integrity) -> str:
    """A SQLite store (its URL) whose tenant ``acme``'s session ``s`` took "refund requested", then
    "refund approved" (anchored after it), then was restored — data and heads together — from a copy
    taken between the two."""
    url, db = f"sqlite:///{tmp_path}/s.db", tmp_path / "s.db"
    with statekeel.open(url, integrity=integrity) as store:
        store.tenant("acme").session("s").append("refund requested")
        store.storage.checkpoint_wal()  # type: ignore[attr-defined]
        snapshot = db.read_bytes()
        store.tenant("acme").session("s").append("refund approved")
        assert store.anchor().ok
    for wal in tmp_path.glob("s.db-*"):
        wal.unlink()
    db.write_bytes(snapshot)
    return url


def test_a_rollback_of_the_whole_store_is_found_through_a_tenant_handle(tmp_path: Path) -> None:
    """The anchor was checked by the store's own reads only: a tenant handle served the rolled-back
    history (the refund approved after the snapshot gone) without a word."""
    integrity = Integrity(key=base64.b64encode(KEY).decode(), anchor=f"file:{tmp_path}/anchor")
    url = rolled_back_tenant(tmp_path, integrity)
    with statekeel.open(url, integrity=integrity) as store:
        with pytest.raises(IntegrityError, match="rolled back"):
            store.tenant("acme").session("s").history()
        with pytest.raises(IntegrityError, match="rolled back"):
            AsyncStore(store).tenant("acme").sync.session("s").history()


# -- conversions killed part-way: a rerun finishes them ----------------------------------------------
_KILLED_AT = r"""
import os, signal, sys, statekeel
from statekeel.features.rotation import encrypt_store, reencrypt
url, what, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = []
def progress(_):
    calls.append(1)
    if len(calls) == k:
        os.kill(os.getpid(), signal.SIGKILL)  # a crash between two pages of the conversion
with statekeel.open(url, encryption=statekeel.Encryption(master_key=os.environ["AUDIT_KEY"])) as store:
    (encrypt_store if what == "encrypt" else reencrypt)(store, progress)
"""


def _contents(store: statekeel.Store) -> list[object]:
    out: list[object] = [store.app.get(f"a{i}") for i in range(210)]
    for i in range(30):
        s = store.find_session(f"s{i}")
        out.append(None if s is None else (s.history(), s.state.get("k")))
    return out


@pytest.mark.parametrize(("what", "killed_at"), [("encrypt", 1), ("encrypt", 3), ("reencrypt", 2)])
def test_a_conversion_killed_part_way_is_finished_by_a_rerun(tmp_path: Path, what: str, killed_at: int) -> None:
    from statekeel.core.encryption import is_planted_plaintext
    from statekeel.features.rotation import encrypt_store, reencrypt

    url, key = f"sqlite:///{tmp_path}/s.db", base64.b64encode(KEY).decode()
    with statekeel.open(url, encryption=Encryption(master_key=key) if what == "reencrypt" else None) as store:
        for i in range(30):
            store.session(f"s{i}", user=f"u{i % 4}").append({"role": "user", "content": f"m{i}"}, state={"k": i})
        for i in range(210):  # two pages of the conversion's walk (200 records a page)
            store.app.put(f"a{i}", {"v": i})
        before = _contents(store)
    child = subprocess.run([sys.executable, "-c", _KILLED_AT, url, what, str(killed_at)],
                           env={**os.environ, "AUDIT_KEY": key}, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with statekeel.open(url, encryption=Encryption(master_key=key)) as store:
        (encrypt_store if what == "encrypt" else reencrypt)(store)
        assert _contents(store) == before
        plain = [r.key for r in store.storage.scan("", limit=10_000) if is_planted_plaintext(r.codec, r.key)]
        plain += [f"{i.log}#{e.seq}" for i in store.storage.scan_logs("", limit=1000)
                  for e in store.storage.read(i.log) if is_planted_plaintext(e.codec, e.log)]
        assert plain == []
