"""Channel values and pending writes are binary records (issue 13, session 26), on every backend.

A binary record is codec ``raw``: one line of JSON saying what the record is, a newline, then
the (zstd-compressed) serialized bytes as they are — a cold read no longer parses and decodes
base64. Everything that reads stored records must still read them: the saver, ``statekeel
doctor``, export/import, encryption and the tamper-evident chain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import statekeel
from statekeel.cli.health import examine
from statekeel.core import layout
from statekeel.errors import CorruptionError, StoreError
from statekeel.integrations.langgraph import StatekeelSaver
from statekeel.integrations.langgraph._records import frame, read_doc
from statekeel.portability import export_store, import_store
from statekeel.protocol import ANY, Put, keys

from .graphs import approval_graph, chat_graph, history, user_turn

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "chat"}}
APPROVAL: dict[str, Any] = {"configurable": {"thread_id": "approval"}}


def _write(saver: Any, turns: int = 6) -> None:
    for i in range(turns):
        chat_graph(saver).invoke(user_turn(i), CONFIG)
    approval_graph(saver).invoke(user_turn(0), APPROVAL)  # waits at interrupt(): a pending write


def _records(store: statekeel.Store, kind: str) -> list[Any]:
    return [r for r in store.backend.scan(keys.join("langgraph") + "/", limit=10_000) if f"/{kind}/" in r.key]


def test_values_and_pending_writes_are_binary_and_every_tool_reads_them(store: statekeel.Store, tmp_path: Path) -> None:
    reference = InMemorySaver()
    _write(StatekeelSaver(store))
    _write(reference)
    values, writes = _records(store, "v"), _records(store, "w")
    assert writes and {r.codec for r in writes} == {"raw"}
    assert {r.codec for r in values if "e" not in read_doc(store.codec, r.data, r.codec, r.key)} == {"raw"}
    assert {r.codec for r in _records(store, "cp")} <= {"json", "json+zlib"}  # checkpoints stay JSON
    assert examine(store).ok  # statekeel doctor: every record decodes
    export_store(store, tmp_path / "export")
    with statekeel.open(f"sqlite:///{tmp_path / 'imported.db'}") as imported:
        import_store(tmp_path / "export", imported)
        for graph in (chat_graph, approval_graph):
            config = CONFIG if graph is chat_graph else APPROVAL
            assert history(graph(StatekeelSaver(imported)), config) == history(graph(reference), config)


def test_binary_records_are_encrypted_and_chained(store_url: str) -> None:
    key = statekeel.Encryption(master_key=os.urandom(32))
    reference = InMemorySaver()
    with statekeel.open(store_url, encryption=key, integrity="chain") as store:
        _write(StatekeelSaver(store))
        _write(reference)
        assert {r.codec for r in _records(store, "w")} == {"raw"}  # as the features see them
        stored = {r.codec for r in store.storage.scan(keys.join("langgraph") + "/", limit=10_000) if "/w/" in r.key}
        assert stored and all(c.startswith("raw+") and c.endswith("+aesgcm") for c in stored)  # chained, sealed
        assert examine(store).ok
        fresh = StatekeelSaver(store)
        assert history(approval_graph(fresh), APPROVAL) == history(approval_graph(reference), APPROVAL)
        approval_graph(fresh).invoke(Command(resume="yes"), APPROVAL)
        approval_graph(reference).invoke(Command(resume="yes"), APPROVAL)
        assert history(approval_graph(StatekeelSaver(store)), APPROVAL) == history(approval_graph(reference), APPROVAL)
        assert history(chat_graph(StatekeelSaver(store)), CONFIG) == history(chat_graph(reference), CONFIG)


def _replace_newest_value(store: statekeel.Store, data: bytes) -> str:
    rec = store.backend.scan(layout.langgraph_blob_prefix("chat", "", "messages"), limit=1000)[-1]
    store.backend.apply([Put(rec.key, *store.codec.encode_bytes(data, "altered", rec.key), ANY)])
    return rec.key


def test_a_binary_record_of_a_newer_format_asks_for_an_upgrade(store: statekeel.Store) -> None:
    _write(StatekeelSaver(store), turns=2)
    _replace_newest_value(store, b"\x02a later binary format")
    with pytest.raises(StoreError, match="upgrade the statekeel package"):
        chat_graph(StatekeelSaver(store)).get_state(CONFIG)


@pytest.mark.parametrize("data", [b"{\"t\": \"msgpack\"} without a newline", b"{not json}\n\x00\x01", b"[1]\nxx", b"",
                                  frame({"t": "msgpack", "z": 2, "b": b"not zstd"})])  # fmt: skip
def test_a_damaged_binary_record_is_reported_as_corruption_naming_it(store: statekeel.Store, data: bytes) -> None:
    _write(StatekeelSaver(store), turns=2)
    key = _replace_newest_value(store, data)
    with pytest.raises(CorruptionError) as err:
        chat_graph(StatekeelSaver(store)).get_state(CONFIG)
    assert err.value.key == key
