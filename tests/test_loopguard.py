"""The event-loop guard, both ways: sync calls on a loop's thread, async calls without a loop."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import UsageError
from statekeel._loopguard import ENV_ALLOW, GUARDED
from statekeel.protocol import Backend


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"memory://guard-{tmp_path.name}" if request.param == "memory" else f"sqlite:///{tmp_path}/g.db"


def _in_loop(fn: Callable[[], Any]) -> Any:
    async def main() -> Any:
        return fn()

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("call", "advice"),
    [
        (lambda st: st.session("s"), "await store.session(...)"),
        (lambda st: st.sessions(), "await store.sessions(...)"),
        (lambda st: st.app.put("k", 1), "await state.put(...)"),
        (lambda st: st.app.update("k", lambda n: n, default=0), "await state.update(...)"),
        (lambda st: "k" in st.app, "await state.contains(key)"),
        (lambda st: st.app["k"], "await state.require(key)"),
        (lambda st: list(st.user("u").keys()), "async for key in state.keys()"),
        (lambda st: st.purge_expired(), "await store.purge_expired(...)"),
        (lambda st: st.backend.get("x"), "Backend.get() off the loop"),
    ],
)
def test_sync_call_inside_a_loop_says_what_to_use(url: str, call: Any, advice: str) -> None:
    with statekeel.open(url) as store:
        with pytest.raises(UsageError) as info:
            _in_loop(lambda: call(store))
        text = str(info.value)
        assert advice in text and "statekeel.open_async(url)" in text
        assert "asyncio.to_thread" in text and "allow_in_event_loop=True" in text
        assert store.app.get("k") is None  # nothing was written


def test_session_calls_inside_a_loop_name_the_session_twin(url: str) -> None:
    with statekeel.open(url) as store:
        s = store.session("s")
        for call, advice in [
            (lambda: s.append("x"), "await session.append(...)"),
            (lambda: s.history(last=2), "await session.history(...)"),
            (lambda: len(s), "await session.count()"),
            (lambda: s.state.put("k", 1), "await session.state.put(...)"),
        ]:
            with pytest.raises(UsageError, match="event loop") as info:
                _in_loop(call)
            assert advice in str(info.value)

        def batch() -> None:
            with s.batch() as b:
                b.append("x")

        with pytest.raises(UsageError, match="async with session.batch"):
            _in_loop(batch)
        assert s.history() == []


def test_open_inside_a_loop_says_open_async(url: str) -> None:
    with pytest.raises(UsageError, match=r"await statekeel\.open_async\(url\)"):
        _in_loop(lambda: statekeel.open(url))


def test_escape_hatch_argument(url: str) -> None:
    def work() -> Any:
        with statekeel.open(url, allow_in_event_loop=True) as store:
            store.session("nb").append("from a notebook")
            return store.session("nb").history()

    assert _in_loop(work) == ["from a notebook"]


def test_escape_hatch_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ALLOW, "1")
    with _in_loop(lambda: statekeel.open(url)) as store:
        assert _in_loop(lambda: store.app.put("k", 1).version) == 1


def test_store_wrapping_a_backend_is_guarded_too(url: str) -> None:
    from statekeel.backends import open_backend

    store = statekeel.Store(open_backend(url))
    with pytest.raises(UsageError):
        _in_loop(lambda: store.app.get("k"))
    assert statekeel.Store(open_backend(url), allow_in_event_loop=True).app.get("k") is None


def test_sync_store_is_fine_in_a_thread_and_outside_the_loop(url: str) -> None:
    store = statekeel.open(url)

    async def main() -> Any:
        return await asyncio.to_thread(lambda: store.app.put("k", 2).value)

    assert asyncio.run(main()) == 2 and store.app.get("k") == 2
    _in_loop(lambda: store.temp.put("scratch", 1))  # in-process only: never blocks
    _in_loop(store.close)  # closing is never refused


def test_every_io_method_of_the_protocol_is_guarded() -> None:
    abstract = set(Backend.__abstractmethods__)
    assert abstract <= set(GUARDED) and "get_many" in GUARDED and "close" not in GUARDED


# -- the reverse: the async API where no asyncio loop runs ---------------------
def test_open_async_without_await_says_to_await(url: str) -> None:
    opener = statekeel.open_async(url)
    with pytest.raises(UsageError, match=r"store = await statekeel\.open_async\(url\)"):
        opener.session("s")  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="async with"):
        with opener:  # type: ignore[attr-defined]
            pass
    assert not hasattr(opener, "app")  # still an AttributeError for hasattr/getattr probes


def test_async_api_driven_without_an_event_loop_says_what_to_use(url: str) -> None:
    async def open_it() -> statekeel.AsyncStore:
        return await statekeel.open_async(url)

    store = asyncio.run(open_it())
    coro = store.app.get("k")
    with pytest.raises(UsageError, match=r"needs a running asyncio event loop.*statekeel\.open\(url\)"):
        coro.send(None)  # what another async library or a sync caller driving it by hand does
    asyncio.run(store.aclose())


def test_async_twins_refuse_sync_spellings(url: str) -> None:
    async def main() -> None:
        async with statekeel.open_async(url) as store:
            with pytest.raises(UsageError, match="async with"):
                with store:  # type: ignore[attr-defined]
                    pass
            s = await store.session("s")
            with pytest.raises(UsageError, match=r"await session\.count\(\)"):
                len(s)  # type: ignore[arg-type]
            assert s  # truthiness does not need the length
            with pytest.raises(UsageError, match=r"async with session\.batch\(\)"):
                with s.batch():  # type: ignore[attr-defined]
                    pass
            with pytest.raises(UsageError, match=r"await state\.contains"):
                "k" in s.state  # type: ignore[operator]  # noqa: B015
            with pytest.raises(UsageError, match=r"await state\.put"):
                s.state["k"] = 1  # type: ignore[index]
            with pytest.raises(UsageError, match=r"await state\.require"):
                s.state["k"]  # type: ignore[index]
            with pytest.raises(UsageError, match=r"await state\.delete"):
                del s.state["k"]  # type: ignore[attr-defined]

    asyncio.run(main())


def test_async_store_works_from_another_loop(url: str) -> None:
    """Nothing in the twin is bound to the loop that opened it (threads, not loop resources)."""

    async def open_it() -> statekeel.AsyncStore:
        return await statekeel.open_async(url)

    store = asyncio.run(open_it())

    async def use() -> list[Any]:
        s = await store.session("x")
        await s.append("hi")
        return await s.history()

    assert asyncio.run(use()) == ["hi"]
    asyncio.run(store.aclose())


def test_wrapping_a_sync_store(url: str) -> None:
    sync = statekeel.open(url)
    sync.app.put("k", "v")

    async def main() -> None:
        async with statekeel.AsyncStore(sync) as store:
            assert store.sync is sync and await store.app.get("k") == "v"

    asyncio.run(main())


def test_async_methods_are_coroutine_functions_with_docs() -> None:
    """Frameworks check iscoroutinefunction; every public async method has a docstring."""
    for cls in (statekeel.AsyncStore, statekeel.AsyncSession, statekeel.AsyncStateView):
        for name, member in vars(cls).items():
            if name.startswith("_") or isinstance(member, property):
                continue
            assert member.__doc__, f"{cls.__name__}.{name} has no docstring"
        for name in ("session", "sessions", "purge_expired", "aclose", "call"):
            assert inspect.iscoroutinefunction(getattr(statekeel.AsyncStore, name)), name
    for name in ("append", "history", "messages", "count", "info"):
        assert inspect.iscoroutinefunction(getattr(statekeel.AsyncSession, name)), name


# Sync public names that deliberately have no same-named async twin, and why (NO_TWIN in scripts/gen_async.py too).
NO_TWIN = {
    ("Store", "close"): "aclose()",
    ("StateView", "put_op"): "builds protocol ops for batches; pure, use it on store.sync",
}


def test_every_sync_feature_has_its_async_twin() -> None:
    """The async API covers the whole sync API: a new public method needs its twin (docs/async.md)."""
    pairs = [
        (statekeel.Store, statekeel.AsyncStore),
        (statekeel.Session, statekeel.AsyncSession),
        (statekeel.StateView, statekeel.AsyncStateView),
        (statekeel.SessionBatch, statekeel.AsyncSessionBatch),
        (statekeel.Run, statekeel.AsyncRun),
        (statekeel.EventStream, statekeel.AsyncEventStream),
        (statekeel.Consumer, statekeel.AsyncConsumer),
        (statekeel.SessionNotes, statekeel.AsyncSessionNotes),
        (statekeel.DecisionContext, statekeel.AsyncDecisionContext),
    ]
    missing, differ = [], []
    for sync, twin in pairs:
        for name in dir(sync):
            if name.startswith("_") or (sync.__name__, name) in NO_TWIN:
                continue
            if not hasattr(twin, name):
                missing.append(f"{sync.__name__}.{name}")
                continue
            theirs, ours = _params(sync, name), _params(twin, name)
            if None not in (theirs, ours) and theirs != ours:
                differ.append(f"{sync.__name__}.{name}: {theirs} vs {ours}")
    regenerate = "run `python scripts/gen_async.py`: it writes the plain ones and names what to write by hand"
    assert missing == [], f"add async twins for: {missing}; {regenerate} in statekeel/aio"
    assert differ == [], f"give the async twins the same parameters: {differ}; {regenerate}"


def _params(cls: type, name: str) -> list[str] | None:
    """Parameter names and kinds of a method (None for properties, which become async methods)."""
    member = inspect.getattr_static(cls, name, None)
    if not callable(member) or isinstance(member, property):
        return None
    return [f"{p.kind.name}:{p.name}" for p in inspect.signature(member).parameters.values()]
