"""A closed store is closed: every later call is refused, and nothing left running writes into it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import statekeel
from statekeel import StoreClosedError
from statekeel.core import layout
from statekeel.protocol import Append, Put


def test_a_closed_store_refuses_every_call_and_keeps_its_data(store_url: str) -> None:
    store = statekeel.open(store_url)
    s = store.session("s")
    s.append("before close")
    backend = store.backend
    store.close()
    calls: list[Callable[[], Any]] = [
        lambda: store.session("s").history(),
        lambda: store.session("t").append("after close"),
        lambda: store.app.put("k", 1),
        lambda: store.app.get("k"),
        lambda: list(store.sessions()),
        lambda: backend.apply([Put("k", b"1", "json")]),
        lambda: backend.apply([Append("log", ((b"1", "json"),))]),
        lambda: backend.get("k"),
        lambda: backend.read(s._log),
        lambda: backend.scan(""),
        lambda: backend.scan_logs(""),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError, match="was closed; open it again"):
            call()
    store.close()  # idempotent
    with statekeel.open(store_url) as again:
        assert again.session("s").history() == ["before close"]
        assert again.session_info("t") is None and again.app.get("k") is None


def test_a_block_left_open_stops_its_heartbeat_when_the_store_closes(store_url: str) -> None:
    """A decide block whose process "forgot" it (no __exit__) keeps its heartbeat running —
    until the store is closed: then nothing more is written, on any backend (redis-py and
    boto3 reconnect on their own if let, and would go on renewing the marker)."""
    store = statekeel.open(store_url)
    s = store.session("s", lease="0.6s")  # the heartbeat beats every 0.2 s
    block = s.decide("left open")
    block.__enter__()
    time.sleep(0.5)  # a few beats
    store.close()
    beating = block._heartbeat._thread
    assert beating is not None
    beating.join(5)
    assert not beating.is_alive(), "the heartbeat outlived the store"
    with statekeel.open(store_url) as again:
        busy = again.backend.scan(layout.busy_prefix("s"))
        assert len(busy) == 1
        time.sleep(0.7)  # three beats' time: the marker is not renewed
        assert again.backend.scan(layout.busy_prefix("s")) == busy
        (pending,) = again.decisions(incomplete=True).items
        assert pending.decision == "left open"
