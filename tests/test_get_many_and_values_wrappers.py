"""``Backend.get_many_and_values`` through the wrappers an encrypted, tamper-evident or tenant
store puts around the backend (review of session 24's issue 14).

The method is inherited from :class:`statekeel.protocol.Backend` by every wrapper, whose
default calls the wrapper's own ``get_many`` and ``read_values``: values come back opened
(never the ciphertext), checked against the chain (a planted record or entry is refused),
and inside the tenant (another tenant's keys and logs are not found). On SQLite and Redis,
and through the OpenAI Agents session, whose ``get_items`` reads with it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import Encryption, Store
from statekeel.core import layout
from statekeel.core.tamper import Integrity
from statekeel.errors import IntegrityError
from statekeel.protocol import Append, Put
from statekeel.testing import BACKENDS, BackendContext, ServerPool

KEY = base64.b64encode(b"W" * 32).decode()
_n = itertools.count()


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path, statekeel_servers: ServerPool) -> str:
    return BACKENDS[request.param](BackendContext(tmp_path, statekeel_servers, 40_000 + next(_n)))


def _keys(session_id: str) -> list[str]:
    return [layout.session_meta_key(session_id), layout.state_key("session", session_id, "k"),
            layout.state_key("session", session_id, "missing")]  # fmt: skip


def _write(store: Store, session_id: str, word: str) -> None:
    s = store.session(session_id)
    for i in range(5):
        s.append(f"{word} {i}", state={"k": f"{word} state"})


def _read(store: Store, session_id: str, **span: Any) -> tuple[list[Any], list[Any]]:
    """get_many_and_values of the session's records and history, decoded."""
    log = layout.history_log(session_id)
    records, found = store.backend.get_many_and_values(_keys(session_id), log, **span)
    assert (records, found) == (store.backend.get_many(_keys(session_id)), store.backend.read_values(log, **span))
    values = [None if r is None else store.codec.decode(r.data, r.codec, r.key) for r in records[1:]]
    return values, store.codec.decode_many(found, log)


@pytest.mark.parametrize(
    ("span", "seen"), [({"limit": 2, "reverse": True}, [3, 4]), ({}, [0, 1, 2, 3, 4]), ({"limit": 3}, [0, 1, 2])]
)
def test_an_encrypted_store_answers_opened_values(url: str, span: dict[str, Any], seen: list[int]) -> None:
    with statekeel.open(url, encryption=Encryption(master_key=KEY)) as store:
        _write(store, "s", "secret")
        assert _read(store, "s", **span) == (["secret state", None], [f"secret {i}" for i in seen])
        log = layout.history_log("s")
        raw_records, raw_found = store.storage.get_many_and_values(_keys("s"), log, **span)
        assert raw_found and all(codec.endswith("+aesgcm") and b"secret" not in data for data, codec in raw_found)
        assert raw_records[1] is not None and b"secret" not in raw_records[1].data


def test_a_chained_store_refuses_a_planted_record_and_entry(url: str) -> None:
    with statekeel.open(url, integrity=Integrity(key=KEY)) as store:
        _write(store, "s", "chained")
        assert _read(store, "s", limit=2, reverse=True) == (["chained state", None], ["chained 3", "chained 4"])
        log, state_key = layout.history_log("s"), _keys("s")[1]
        store.storage.apply([Append(log, ((b'"planted"', "json"),))])  # beneath the chain
        with pytest.raises(IntegrityError):
            store.backend.get_many_and_values(_keys("s"), log, limit=2, reverse=True)
    with statekeel.open(url, integrity=Integrity(key=KEY)) as store:
        _write(store, "t", "chained")
        store.storage.apply([Put(_keys("t")[1], b'"planted"', "json")])
        with pytest.raises(IntegrityError):
            store.backend.get_many_and_values(_keys("t"), layout.history_log("t"), limit=2, reverse=True)
        assert state_key != _keys("t")[1]


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_tenant_reads_its_own_records_and_history_only(url: str, encrypted: bool) -> None:
    options: dict[str, Any] = {"encryption": Encryption(master_key=KEY)} if encrypted else {}
    with statekeel.open(url, **options) as whole:
        acme, other = whole.tenant("acme"), whole.tenant("other")
        _write(acme, "s", "acme")
        _write(other, "s", "other")
        _write(whole, "s", "whole")
        assert _read(acme, "s", limit=2, reverse=True) == (["acme state", None], ["acme 3", "acme 4"])
        assert _read(other, "s") == (["other state", None], [f"other {i}" for i in range(5)])
        assert _read(whole, "s", limit=1, reverse=True) == (["whole state", None], ["whole 4"])
        victim = ["other~" + k for k in _keys("s")] + ["../other~" + k for k in _keys("s")]
        for log in ("other~" + layout.history_log("s"), "../other~" + layout.history_log("s")):
            assert acme.backend.get_many_and_values(victim, log, limit=5, reverse=True) == ([None] * 6, [])


@pytest.mark.parametrize("how", ["encrypted", "chain", "tenant"])
def test_the_openai_session_reads_through_the_wrappers(url: str, how: str) -> None:
    """``get_items`` reads with get_many_and_values: plain items from an encrypted or chained
    store, and a tenant's own items (those stores keep the worker, never the native client)."""
    pytest.importorskip("agents")
    from statekeel.integrations.openai_agents import StatekeelSession

    options: dict[str, Any] = {"encryption": Encryption(master_key=KEY)} if how == "encrypted" else {}
    if how == "chain":
        options = {"integrity": Integrity(key=KEY)}
    with statekeel.open(url, **options) as store:
        target = store.tenant("acme") if how == "tenant" else store
        session = StatekeelSession("chat", target)
        if how == "tenant":
            store.tenant("other").session("chat").append({"role": "user", "content": "not acme's"})
        items = [{"role": "user", "content": f"q{i}"} for i in range(4)]

        async def turn() -> list[Any]:
            await session.add_items(items)
            return await session.get_items(limit=3)

        try:
            assert asyncio.run(turn()) == items[1:]
            if how == "chain":
                store.storage.apply([Append(layout.history_log("chat"), ((b'{"role": "user"}', "json"),))])
                with pytest.raises(IntegrityError):
                    asyncio.run(session.get_items(limit=3))
        finally:
            session.close()


@pytest.fixture(autouse=True)
def _no_env_integrity(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("STATEKEEL_INTEGRITY", raising=False)
    yield
