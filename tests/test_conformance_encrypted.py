"""The asyncio, session and state conformance suites again, on encrypted stores (``encryption=``).

Every feature is written once on the backend protocol; an encrypted store puts the sealing
(core/sealed.py) between the features and the backend — and, on PostgreSQL and Redis, its
asyncio twin (core/sealed_aio.py) under the async API. These suites must pass unchanged through
both. Every store a test opens in this process is opened with the same key (``statekeel.open``
and ``statekeel.open_async`` given ``encryption=`` when the test gives none).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

import statekeel
from statekeel.testing.conformance.test_async import *  # noqa: F403
from statekeel.testing.conformance.test_async_reads import *  # noqa: F403
from statekeel.testing.conformance.test_sessions import *  # noqa: F403
from statekeel.testing.conformance.test_state import *  # noqa: F403

KEY = base64.b64encode(b"K" * 32).decode()


@pytest.fixture(autouse=True)
def _encrypted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plain_open, plain_open_async = statekeel.open, statekeel.open_async

    def open_(url: str | None = None, **options: Any) -> statekeel.Store:
        options.setdefault("encryption", statekeel.Encryption(master_key=KEY))
        return plain_open(url, **options)

    def open_async(url: str | None = None, **options: Any) -> Any:
        options.setdefault("encryption", statekeel.Encryption(master_key=KEY))
        return plain_open_async(url, **options)

    monkeypatch.setattr(statekeel, "open", open_)
    monkeypatch.setattr(statekeel, "open_async", open_async)
    yield


def test_the_stores_here_are_encrypted(store: statekeel.Store) -> None:
    """What this module runs on: every value stored sealed (the ``store`` fixture opens through
    ``statekeel.open``, encrypted here)."""
    store.session("s").append("secret words", state={"k": "hidden"})
    stored = store.storage
    entries = stored.read("session/s/history")
    assert entries and all(e.codec.endswith("+aesgcm") and b"secret" not in e.data for e in entries)


def test_the_async_stores_here_are_encrypted_and_native_where_the_driver_is(store_url: str) -> None:
    """``statekeel.open_async`` here opens encrypted stores; on PostgreSQL and Redis their hot calls
    run on the sealing's asyncio twin."""
    import asyncio

    from statekeel.core.sealed_aio import AsyncSealedBackend

    async def main() -> None:
        async with statekeel.open_async(store_url) as store:
            assert store.sync.sealing is not None
            native = store_url.startswith(("postgresql", "redis"))
            assert isinstance(getattr(store._lane, "backend", None), AsyncSealedBackend) == native

    asyncio.run(main())
