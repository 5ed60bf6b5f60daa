"""The Redis backend's asyncio client (backends/redis/aio.py) on a real ``redis-server``:
what it costs per command, beyond what the shared asyncio tests check."""

from __future__ import annotations

import asyncio
import time
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


def test_connections_are_closed_by_aclose_and_by_the_end_of_asyncio_run(url: str) -> None:
    """``aclose()`` closes the asyncio client's connections (redis-py leaves a pool it was given
    open), and a store never closed has them closed when its loop's ``asyncio.run`` ends (its sync
    client, not bound to a loop, stays open until the store is closed)."""
    import redis

    raw = redis.Redis.from_url(url.split("?")[0])

    def clients() -> int:
        return len(raw.client_list())

    async def calls(store: Any) -> int:
        sessions = [await store.session(f"conn-{i}") for i in range(6)]
        await asyncio.gather(*(s.append("x") for s in sessions))  # several asyncio connections at once
        return clients()

    async def closed() -> tuple[int, int]:
        async with statekeel.open_async(url) as store:
            during = await calls(store)
        return baseline, during  # everything closed

    async def left_open() -> tuple[int, int]:
        store = await statekeel.open_async(url)
        sync = clients()  # the sync client's connection (opening the store): it stays
        return sync, await calls(store)

    def settled(want: int) -> int:
        deadline = time.monotonic() + 10
        while clients() != want and time.monotonic() < deadline:
            time.sleep(0.05)  # the server sees a closed socket soon after
        return clients()

    try:
        baseline = clients()
        for main in (closed, left_open):
            expected, during = asyncio.run(main())
            assert during > expected, main.__name__  # what is tested happened: connections were opened
            assert settled(expected) == expected, (main.__name__, expected, during, [(c["id"], c["cmd"], c["age"]) for c in raw.client_list()])
    finally:
        raw.close()


def test_a_cancelled_call_leaves_no_reply_behind_for_the_next(url: str) -> None:
    """Writes go out on a pooled connection without redis-py's command wrapper: a call cancelled
    after its command was sent must not hand the connection back with the reply unread (the next
    call would read it as its own). Each acknowledged append's seq is checked against where it
    ended up; cancelled ones may or may not have been applied, never twice, never out of order."""
    import random

    rng = random.Random(5)

    async def main() -> tuple[list[tuple[int, str]], list[str], int]:
        acked: list[tuple[int, str]] = []
        cancelled = 0
        async with statekeel.open_async(url) as store:
            s = await store.session("cancelled-calls")
            await s.append("first")
            for i in range(300):
                try:
                    seq = await asyncio.wait_for(s.append(f"m{i}"), timeout=rng.choice([0.0, 1e-4, 3e-4, 6e-4, 5.0]))
                    acked.append((seq, f"m{i}"))
                except TimeoutError:
                    cancelled += 1
            history = await s.history()
        return acked, history, cancelled

    acked, history, cancelled = asyncio.run(main())
    assert cancelled > 20 and len(acked) > 20, (cancelled, len(acked))  # both kinds happened
    for seq, message in acked:
        assert history[seq - 1] == message, (seq, message, history[max(0, seq - 3): seq + 2])
    numbers = [int(m[1:]) for m in history[1:]]
    assert numbers == sorted(set(numbers))  # none twice, none out of order


async def _once_answering(call: Any) -> Any:
    """``await call()`` once the woken server answers within ``?timeout=``: right after SIGCONT it may
    still be taking in (and, with appendfsync always, syncing) the ~48 MB write that timed out, which
    took longer than the 1 s timeout in a loaded CI run (session 39)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await call()
        except statekeel.UnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_a_server_that_stops_answering_times_out_small_and_large_writes() -> None:
    """``?timeout=`` bounds every asyncio call when Redis hangs (SIGSTOP): a small command is sent
    without a timer (it cannot wait on the socket) and the read after it times out; a command larger
    than the socket buffers take (~64 MB of incompressible text; Linux buffers up to ~36 MB on
    loopback) times out in its write. Each store has its connection up before the server stops."""
    import base64
    import os
    import random
    import signal

    srv = start_server(RedisServer())
    pid = srv.pid
    assert pid is not None
    rng = random.Random(3)  # one append, one command; each message under max_record_bytes, none compressible
    big = [base64.b64encode(rng.randbytes(8_000_000)).decode() for _ in range(6)]

    async def main() -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        url = f"{srv.url}?prefix=hang&timeout=1"
        async with statekeel.open_async(url) as small_store, \
                statekeel.open_async(url, secret_guard="off") as big_store:  # fmt: skip
            calls = [(await small_store.session("small"), ["small"]), (await big_store.session("big"), big)]
            for s, _ in calls:
                await s.append("before")
            os.kill(pid, signal.SIGSTOP)
            try:
                for s, messages in calls:
                    started = time.monotonic()
                    with pytest.raises(statekeel.UnavailableError, match="did not answer") as caught:
                        await s.append(*messages)
                    out.append((str(caught.value), time.monotonic() - started))
            finally:
                os.kill(pid, signal.SIGCONT)
            for (s, messages), n in zip(calls, (1, 6)):
                assert await _once_answering(s.count) in (1, 1 + n)  # maybe applied: whole or not at all
        return out

    try:
        (small, small_s), (large, large_s) = asyncio.run(main())
    finally:
        srv.stop()
    assert "Timeout reading" in small and small_s < 30, (small, small_s)  # bounded, not timed
    assert "Timeout writing" in large and large_s < 30, (large, large_s)


def test_parked_connections_leave_room_and_survive_being_killed(url: str) -> None:
    """EVALSHAs keep connections between calls (backends/redis/aio_client.py): with a pool of 4,
    16 conversations writing and reading at once all finish (the reads, which use the pool, always
    find room; an EVALSHA waiting in the pool gets a connection handed back); no more than 4 are
    ever open; and parked connections the server killed meanwhile are connected afresh."""
    import redis

    raw = redis.Redis.from_url(url.split("?")[0])

    def ours() -> int:
        return sum(1 for c in raw.client_list() if c.get("name") == "sk-parked")

    async def main() -> tuple[int, int, list[int]]:
        async with statekeel.open_async(f"{url}&max_connections=4&client_name=sk-parked&timeout=5") as store:
            sessions = [await store.session(f"parked-{i}") for i in range(16)]
            most = 0

            async def conversation(s: Any, n: int) -> None:
                nonlocal most
                for i in range(n):
                    await s.append({"role": "user", "content": f"q{i}"}, state={"turn": i})
                    assert (await s.history(last=1)) == [{"role": "user", "content": f"q{i}"}]
                    most = max(most, ours())

            await asyncio.gather(*(conversation(s, 15) for s in sessions))
            killed = 0
            for c in raw.client_list():  # as a server's idle timeout does
                if c.get("name") == "sk-parked":
                    raw.client_kill_filter(_id=c["id"])
                    killed += 1
            await asyncio.sleep(0.3)  # the loop sees the connections closed (as it would while idle)
            await asyncio.gather(*(conversation(s, 3) for s in sessions))  # the parked ones were killed
            counts = [await s.count() for s in sessions]
        return most, killed, counts

    try:
        most, killed, counts = asyncio.run(main())
    finally:
        raw.close()
    assert killed >= 2  # what is tested happened: connections were parked, then killed
    assert most <= 4 + 1, most  # the pool's 4 (+ the sync client opening the store)
    assert counts == [18] * 16


def test_connections_the_server_closed_while_idle_are_not_used_again(url: str) -> None:
    """Redis' ``timeout`` setting (or a proxy) closes idle connections; the next call, a read or a
    write, must not fail on one as "may or may not have been applied" (redis-py 8's pool skips its
    check for a closed connection with its default settings; statekeel's pool and the connections
    its EVALSHAs keep are checked either way)."""
    import redis

    raw = redis.Redis.from_url(url.split("?")[0])

    def kill_ours() -> int:
        killed = 0
        for c in raw.client_list():
            if c.get("name") == "sk-idle":
                raw.client_kill_filter(_id=c["id"])
                killed += 1
        return killed

    async def main() -> list[Any]:
        out: list[Any] = []
        async with statekeel.open_async(f"{url}&client_name=sk-idle") as store:
            s = await store.session("idle")
            await asyncio.gather(*(s.append(f"m{i}") for i in range(4)), s.count(), s.history())
            for call in (s.count, lambda: s.append("after"), s.history):  # a read by redis-py, a write, a script read
                out.append(kill_ours() > 0)
                await asyncio.sleep(0.3)  # the loop sees the close, as it would while idle
                out.append(await call())
        return out

    try:
        out = asyncio.run(main())
    finally:
        raw.close()
    assert out == [True, 4, True, 5, True, ["m0", "m1", "m2", "m3", "after"]], out
