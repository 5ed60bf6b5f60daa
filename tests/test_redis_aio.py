"""The Redis backend's asyncio client (backends/redis/aio.py) on a real ``redis-server``:
what it costs per command, beyond what the shared asyncio tests check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import statekeel
from conftest import start_server
from statekeel.testing.servers import RedisServer


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    srv = start_server(RedisServer())
    yield f"{srv.url}?prefix=aio"
    srv.stop()


def test_native_writes_start_no_task_per_command(url: str) -> None:
    """redis-py bounds each write by ``?timeout=`` with ``asyncio.wait_for``: a new Task per command
    (~30 µs of CPU and a loop turn each). The backend's connections bound it with a timer instead."""
    started: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        started.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **options)

    async def main() -> None:
        async with statekeel.open_async(url) as store:
            s = await store.session("tasks")
            await s.append("connect first")
            loop = asyncio.get_running_loop()
            loop.set_task_factory(factory)
            try:
                for i in range(20):
                    await s.append({"role": "user", "content": f"q{i}"}, state={"turn": i})
                assert await s.history(last=1) == [{"role": "user", "content": "q19"}]
            finally:
                loop.set_task_factory(None)
            assert await s.state.get("turn") == 19

    asyncio.run(main())
    assert [name for name in started if "send_packed_command" in name] == [], started
