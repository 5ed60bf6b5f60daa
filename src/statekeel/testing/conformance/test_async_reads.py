"""The asyncio backends' reads of several pages at once (``AsyncBackend.scan_many``), on every backend."""

from __future__ import annotations

from statekeel import AsyncStore

from .test_async import _run


def test_async_scan_many_answers_as_each_scan(store_url: str) -> None:
    """The native backend's ``scan_many`` (one round trip on PostgreSQL and Redis, through the
    encryption, the chain and a tenant's view) gives each scan's page as ``scan`` does."""
    from statekeel.core import layout

    async def main(store: AsyncStore) -> None:
        await store.call(lambda st: [st.app.put(f"k{i}", i) for i in range(5)])
        await store.call(lambda st: [st.user("u-1").put(f"k{i}", -i) for i in range(3)])
        lane = store._lane  # the asyncio backend the native calls use: None keeps every call on the worker
        if lane is None:  # no asyncio driver beneath (memory, a plugin's backend): nothing sends scans at once
            assert not store_url.startswith(("postgresql", "redis"))
            return
        app, user = layout.scope_state_prefix("app", "_"), layout.scope_state_prefix("user", "u-1")
        cases: list[list[tuple[str, str | None, int]]] = [
            [(app, None, 100), (user, None, 100)], [(app, app + "k1", 2), (user, None, 1), ("nothing/", None, 5)],
            [(user, user + "k9", 10), (app, None, 1)], [(app, None, 3)], [],
        ]  # fmt: skip
        for scans in cases:
            pages = await lane.backend.scan_many(scans)
            assert pages == [await lane.backend.scan(p, after=a, limit=n) for p, a, n in scans]
        assert [[r.key[len(app):] for r in page] for page in await lane.backend.scan_many(cases[1][:1])] == [["k2", "k3"]]

    _run(store_url, main)
