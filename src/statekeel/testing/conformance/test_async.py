"""The asyncio twin: the core scenarios again, awaited, on every backend.

Each test drives its coroutine with ``asyncio.run`` (no pytest-asyncio needed).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import statekeel
from statekeel import (
    AsyncStore,
    ConflictError,
    ExpiredError,
    InvalidInputError,
    NotFoundError,
    SerializationError,
    UsageError,
)


def _run(url: str, main: Callable[[AsyncStore], Awaitable[None]], **options: Any) -> None:
    async def go() -> None:
        async with statekeel.open_async(url, **options) as store:
            await main(store)

    asyncio.run(go())


def test_async_append_and_history(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("support-42", user="u-7")
        assert await s.append({"role": "user", "content": "My order is late"}) == 1
        assert await s.append({"role": "assistant", "content": "Sorry!"}, {"role": "user", "content": "ok"}) == 2
        assert [m["content"] for m in await s.history()] == ["My order is late", "Sorry!", "ok"]
        assert (await s.history(last=2))[0]["content"] == "Sorry!"
        assert await s.history(last=0) == [] and await s.count() == 3
        msgs = await s.messages(last=1)
        assert msgs[0].seq == 3 and msgs[0].created_at.tzinfo is not None
        assert [m.seq for m in await s.messages(start=2, stop=3)] == [2]
        assert (s.id, s.user, s.resumed) == ("support-42", "u-7", None)

    _run(store_url, main)


def test_async_history_last_reads_only_the_tail(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("big")
        for chunk in range(10):
            await s.append(*[{"i": chunk * 100 + i} for i in range(100)])
        assert [m["i"] for m in await s.history(last=3)] == [997, 998, 999]
        assert await s.count() == 1000

    _run(store_url, main)


def test_async_append_with_state_is_one_commit(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("t")
        await s.append({"role": "user", "content": "hi"}, state={"turn": 1, "mood": "ok"})
        assert await s.state.get("turn") == 1 and await s.state.get("mood") == "ok"
        with pytest.raises(SerializationError):
            await s.append({"role": "user"}, state={"bad": object()})
        assert await s.count() == 1 and await s.state.get("bad") is None

    _run(store_url, main)


def test_async_batch_commits_together_or_not_at_all(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("t")
        async with s.batch() as b:
            b.append({"n": 1})
            b.append({"n": 2})
            b.put("step", "two")
            assert await s.count() == 0  # nothing is written before the block ends
        assert b.first_seq == 1 and await s.count() == 2 and await s.state.get("step") == "two"
        with pytest.raises(RuntimeError):
            async with s.batch() as b:
                b.append({"n": 3})
                b.put("step", "three")
                raise RuntimeError("agent crashed mid-turn")
        assert await s.count() == 2 and await s.state.get("step") == "two"

    _run(store_url, main)


def test_async_state_compare_and_set_and_update(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        app = store.app
        assert (await app.put("ticket", {"id": 991}, expect=None)).version == 1
        with pytest.raises(ConflictError, match="update"):
            await app.put("ticket", {"id": 0}, expect=None)
        with pytest.raises(ConflictError):
            await app.put("ticket", {"id": 0}, expect=5)
        assert (await app.require("ticket")).value == {"id": 991}
        item = await app.update("ticket", lambda t: {**t, "status": "open"})
        assert item.value == {"id": 991, "status": "open"} and item.version == 2
        assert (await app.update("n", lambda n: n + 1, default=0)).value == 1
        with pytest.raises(NotFoundError):
            await app.update("missing", lambda n: n)

        async def not_plain(value: Any) -> Any:
            return value

        with pytest.raises(InvalidInputError, match="plain function"):
            await app.update("n", not_plain)
        assert await app.contains("ticket") and not await app.contains("nope")
        assert await app.get("nope", 5) == 5 and await app.item("nope") is None
        assert await app.delete("ticket") is True and await app.delete("ticket") is False

    _run(store_url, main)


def test_async_items_keys_and_pages(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        u = store.user("u")
        for i in range(12):
            await u.put(f"k{i:02d}", i)
        await u.put("other", 0)
        page = await u.items("k", limit=5)
        assert [i.key for i in page] == ["k00", "k01", "k02", "k03", "k04"] and page.next == "k04"
        rest = await u.items("k", after=page.next, limit=100)
        assert [i.value for i in rest] == list(range(5, 12)) and rest.next is None
        assert (await u.to_dict())["other"] == 0
        assert sorted([k async for k in u.keys()]) == sorted([f"k{i:02d}" for i in range(12)] + ["other"])

    _run(store_url, main)


def test_async_keys_follow_many_pages(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        await store.call(lambda st: [st.app.put(f"k{i:04d}", i) for i in range(1203)])
        assert [k async for k in store.app.keys()] == [f"k{i:04d}" for i in range(1203)]

    _run(store_url, main)


def test_async_scopes_are_separate_and_temp_is_never_written(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        await store.app.put("k", "app")
        await store.user("u-1").put("k", "u1")
        await store.scope("session:s1").put("k", "s1")
        await store.temp.put("scratch", {"x": 1})
        assert await store.scope("app").get("k") == "app"
        assert await store.scope("user:u-1").get("k") == "u1"
        assert await (await store.session("s1")).state.get("k") == "s1"
        assert await store.temp.get("scratch") == {"x": 1}
        assert await store.call(lambda st: st.backend.scan("temp/")) == []
        with pytest.raises(InvalidInputError, match="scope"):
            store.scope("users:1")  # validated at once, before any await

    _run(store_url, main)


def test_async_sessions_status_and_pages(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        for i in range(7):
            await store.session(f"s{i}", user="alice" if i % 2 else "bob")
        await (await store.session("s3")).complete()
        ids: list[str] = []
        after = None
        while True:
            page = await store.sessions(limit=3, after=after)
            ids += [p.id for p in page]
            if page.next is None:
                break
            after = page.next
        assert ids == [f"s{i}" for i in range(7)]
        assert [p.id for p in await store.sessions(user="alice", status="active")] == ["s1", "s5"]
        job = await store.session("s0")
        assert (await job.mark_crashed()).status == "crashed"
        assert [i.id for i in await store.sessions(status="crashed")] == ["s0"]
        resumed = await store.session("s0")
        assert resumed.resumed is not None and resumed.resumed.status == "crashed"
        assert (await resumed.info()).status == "active"
        with pytest.raises(InvalidInputError):
            await store.sessions(status="zombie")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="belongs to user"):
            await store.session("s1", user="bob")

    _run(store_url, main)


def test_async_heartbeat_and_stale_detection(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("agent")
        before = (await s.info()).updated_at
        await asyncio.sleep(1.1)  # a 1 s threshold: a loaded machine (moto, 4 test workers) took 0.44 s a read
        assert await s.is_stale(1.0)
        await s.heartbeat()
        assert (await s.info()).updated_at > before and not await s.is_stale(1.0)
        await asyncio.sleep(1.1)
        assert [i.id for i in await store.mark_stale_crashed(1.0)] == ["agent"]
        assert (await s.info()).status == "crashed"

    _run(store_url, main)


def test_async_session_ttl_expires_everything(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("brief", ttl=1.0)  # three calls must fit in it on a loaded machine (moto)
        await s.append("hi", state={"k": 1})
        assert (await s.info()).ttl == 1.0 and s.ttl == 1.0
        await asyncio.sleep(1.2)
        assert await s.history() == [] and await s.state.get("k") is None
        assert [i.id for i in await store.sessions()] == []
        with pytest.raises(ExpiredError):
            await s.append("too late")
        fresh = await store.session("brief")
        assert fresh.resumed is None and await fresh.history() == []

    _run(store_url, main)


@pytest.mark.parametrize("workers", [1, 4])
def test_async_many_coroutines_update_one_key_exactly(store_url: str, workers: int) -> None:
    async def main() -> None:
        async with statekeel.open_async(store_url, workers=workers) as a, \
                statekeel.open_async(store_url, workers=workers) as b:

            async def bump(store: AsyncStore) -> None:
                for _ in range(4):
                    await store.app.update("n", lambda n: n + 1, default=0)

            await asyncio.gather(*(bump(a if i % 2 else b) for i in range(50)))
            assert await a.app.get("n") == 200 and await b.app.get("n") == 200

    asyncio.run(main())


def test_async_calls_on_one_store_run_in_call_order(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("ordered")
        tasks = [asyncio.ensure_future(s.append(i)) for i in range(100)]
        seqs = await asyncio.gather(*tasks)
        assert seqs == list(range(1, 101)) and await s.history() == list(range(100))

    _run(store_url, main)


def test_async_and_sync_share_the_same_data(store_url: str) -> None:
    async def write(store: AsyncStore) -> None:
        s = await store.session("shared", user="u")
        await s.append("from async", state={"side": "async"})

    _run(store_url, write)
    with statekeel.open(store_url) as sync:
        s = sync.session("shared")
        assert s.history() == ["from async"] and s.state.get("side") == "async"
        s.append("from sync")

    async def read(store: AsyncStore) -> None:
        s = await store.session("shared")
        assert await s.history() == ["from async", "from sync"] and s.user == "u"

    _run(store_url, read)


def test_async_generic_call_and_context_reach_any_feature(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        assert (await store.call(lambda st: st.app.put("k", 1))).version == 1
        async with store.context(lambda st: st.session("s").batch()) as b:
            b.append("one")
            b.put("k", "v")
        s = await store.session("s")
        assert await s.history() == ["one"] and await s.state.get("k") == "v"
        with pytest.raises(KeyError):
            async with store.context(lambda st: st.session("s").batch()) as b:
                b.append("two")
                raise KeyError("boom")
        assert await s.history() == ["one"]

    _run(store_url, main)


def test_async_cancelled_call_that_has_not_started_writes_nothing(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("c")
        gate = threading.Event()
        blocker = asyncio.ensure_future(store.call(lambda st: gate.wait(10)))
        await asyncio.sleep(0.05)  # the worker is now busy with the blocker
        pending = asyncio.ensure_future(s.append("never"))
        await asyncio.sleep(0.05)  # the append is queued behind it
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending  # by now the queued call is withdrawn from the worker's queue
        gate.set()
        await blocker
        assert await s.history() == []

    _run(store_url, main)


def test_async_store_closes_once_and_then_refuses(store_url: str) -> None:
    async def main() -> None:
        store = await statekeel.open_async(store_url)
        s = await store.session("x")
        await s.append("kept")
        await store.aclose()
        await store.aclose()  # idempotent
        with pytest.raises(UsageError, match="closed"):
            await s.append("lost")
        async with statekeel.open_async(store_url) as again:
            assert await (await again.session("x")).history() == ["kept"]

    asyncio.run(main())


def test_async_bad_input_raises_the_sync_errors(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        with pytest.raises(InvalidInputError):
            await store.session("")
        with pytest.raises(InvalidInputError):
            await (await store.session("a")).append()
        with pytest.raises(InvalidInputError):
            await store.app.put("", 1)
        assert [k async for k in store.app.keys()] == []

    _run(store_url, main)
    with pytest.raises(InvalidInputError, match="workers"):
        statekeel.open_async(store_url, workers=0)


# -- the feature twins: decisions, notes, checkpoints, runs, events ---------------
def test_async_decision_is_written_before_the_block_and_closed_after(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("support-42")
        async with s.decide("refund order 991", rationale="late > 7 days", action="refund(991)") as d:
            seen = await store.decisions(incomplete=True)  # what recovery would see now
            assert [x.id for x in seen] == [d.id] and seen.items[0].status == "pending"
            await asyncio.sleep(0)  # the block is ordinary async code
            await d.outcome({"refund": "R-17"})
        assert list(await store.decisions(incomplete=True)) == []
        assert d.result is not None and d.result.outcome == {"refund": "R-17"}
        with pytest.raises(ZeroDivisionError):
            async with s.decide("divide") as failing:
                1 / 0  # noqa: B018
        (closed,) = [x for x in await store.decisions(session="support-42") if x.id == failing.id]
        assert closed.status == "failed" and "ZeroDivisionError" in (closed.error or "")
        with pytest.raises(InvalidInputError):
            s.decide("")  # validated at once, like the sync API

    _run(store_url, main)


def test_async_notes(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("agent")
        assert not (await s.notes.read("observer")).ready
        await s.notes.write("observer", {"issues": []})
        note = await s.notes.read("observer", max_age="5m")
        assert note.fresh and note.value == {"issues": []}
        assert list(await s.notes.all()) == ["observer"]
        assert await s.notes.delete("observer") is True

    _run(store_url, main)


def test_async_checkpoint_restore_and_fork(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("cp")
        await s.append("one", state={"step": 1})
        cp = await s.checkpoint("before-tool")
        await s.append("two", state={"step": 2})
        assert [c.label for c in await s.checkpoints()] == ["before-tool"]
        assert (await s.diff(cp)).changed == {"step": (1, 2)}
        forked = await s.fork(cp, into="cp-b")
        assert forked.id == "cp-b" and await forked.history() == ["one"]
        await s.restore(cp)
        assert await s.state.get("step") == 1 and await s.history() == ["one"]
        assert await s.history(include_hidden=True) == ["one", "two"]

    _run(store_url, main)


def test_async_run_steps_are_memoised_and_may_be_coroutines(store_url: str) -> None:
    calls: list[str] = []

    async def generate(topic: str) -> list[str]:
        await asyncio.sleep(0)
        calls.append(topic)
        return [topic, "words"]

    def count(words: list[str]) -> int:  # a plain function runs on a helper thread
        calls.append("count")
        return len(words)

    async def main(store: AsyncStore) -> None:
        for _ in range(2):
            async with store.run("report") as run:
                words = await run.step("generate", generate, "ai")
                assert await run.step("count", count, words) == 2

                @run.stepfn
                async def summarise(n: int) -> str:
                    s = await store.session("notes")  # a step may use the store itself
                    await s.append(f"{n} words")
                    return f"{n} words"

                assert await summarise(2) == "2 words"
        assert calls == ["ai", "count"] and run.reused == ["generate", "count", "summarise"]
        info = await store.run("report").info()
        assert info.status == "completed" and [st.name for st in info.steps] == ["generate", "count", "summarise"]
        assert await (await store.session("notes")).history() == ["2 words"]

    _run(store_url, main)


def test_async_run_failures_suspension_and_cancellation(store_url: str) -> None:
    async def flaky() -> str:
        raise TimeoutError("model timed out")

    async def main(store: AsyncStore) -> None:
        with pytest.raises(TimeoutError):
            async with store.run("job") as run:
                await run.step("flaky", flaky)
        info = await run.info()
        assert info.status == "failed" and info.steps[0].attempts == 1

        async with store.run("review") as review:
            await review.wait_for("approve", prompt="Publish?")
        assert review.suspended is not None and (await review.info()).status == "waiting"
        await store.resume_run("review", None, {"yes": True})
        async with store.run("review") as review:
            assert await review.wait_for("approve") == {"yes": True}
        assert [r.id for r in await store.runs(status="completed")] == ["review"]

        started = asyncio.Event()

        async def slow() -> str:
            started.set()
            await asyncio.sleep(30)
            return "never"

        cancelled = store.run("cancelled")
        await cancelled.step("first", lambda: 1)
        task = asyncio.ensure_future(cancelled.step("slow", slow))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)  # let the helper thread finish
        steps = (await store.run("cancelled").info()).steps
        assert [s.name for s in steps if s.status == "failed" or s.attempts] == ["first"]  # not a failure

    _run(store_url, main)


def test_async_events_projection_and_consumers(store_url: str) -> None:
    def fold(state: dict[str, int], event: statekeel.Event) -> dict[str, int]:
        return {**state, event.type: state.get(event.type, 0) + 1}

    async def main(store: AsyncStore) -> None:
        orders = store.events("orders")
        first = await orders.append("task_created", {"task_id": "T1"})
        more = await orders.append_many([("task_done", {"task_id": "T1"}), ("task_created", {"task_id": "T2"})])
        assert first.seq == 1 and [e.seq for e in more] == [2, 3]
        assert await orders.count() == 3 and await orders.last_seq() == 3
        assert [e.type for e in await orders.read(type="task_created")] == ["task_created", "task_created"]
        assert [e.seq async for e in orders.iter(2)] == [2, 3]
        assert (await orders.get(2)) == more[0]
        empty: dict[str, int] = {}
        assert await orders.project(fold, empty, snapshot_every=2) == {"task_created": 2, "task_done": 1}
        worker = orders.consumer("mailer")
        assert [e.seq for e in await worker.poll(limit=2)] == [1, 2]
        assert await worker.ack() == 2 and await worker.position() == 2 and await worker.lag() == 1

    _run(store_url, main)


def test_async_tenants_are_separate_and_share_the_worker(store_url: str) -> None:
    async def main(store: AsyncStore) -> None:
        acme, other = store.tenant("acme"), store.tenant("other")
        await (await acme.session("s")).append("acme's")
        await acme.app.put("k", "acme")
        assert await (await other.session("s")).history() == [] and await other.app.get("k") is None
        assert [i.id for i in await store.sessions()] == []
        await acme.aclose()  # a tenant view does not close the store it came from
        assert await (await store.tenant("acme").session("s")).history() == ["acme's"]

    _run(store_url, main)
