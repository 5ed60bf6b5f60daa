"""Runs: leases, the in-flight step, stale runs, step fingerprints — on every backend."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

import statekeel
from statekeel import InvalidInputError, LeaseLostError, Store

from ._spawn import child_process


def _double(x: int) -> int:
    return 2 * x


def _triple(x: int) -> int:
    return 3 * x


def test_a_completed_step_called_with_another_function_is_refused(store: Store) -> None:
    assert store.run("r").step("calc", _double, 2) == 4
    assert store.run("r").step("calc", _double, 2) == 4  # the same function: the stored result
    with pytest.raises(InvalidInputError, match=r"recorded by .*_double but is now called with .*_triple"):
        store.run("r").step("calc", _triple, 2)
    _triple.__step_version__ = 2  # type: ignore[attr-defined]
    try:
        assert store.run("r").step("calc", _triple, 2) == 4  # a deliberate change: the result stands
    finally:
        del _triple.__step_version__  # type: ignore[attr-defined]
    run = store.run("v")
    assert run.stepfn(version=1)(_double)(5) == 10
    assert store.run("v").stepfn(version=2, name="_double")(_triple)(5) == 10
    with pytest.raises(InvalidInputError, match="version"):
        run.stepfn(version=1.5)  # type: ignore[call-overload]
    (info,) = [s for s in store.run("r").info().steps if s.name == "calc"]
    assert info.fn is not None and info.fn.endswith("_double")


def test_a_failed_step_may_be_retried_with_another_function(store: Store) -> None:
    def broken() -> int:
        raise ValueError("bug")

    with pytest.raises(ValueError):
        store.run("r").step("s", broken)
    assert store.run("r").step("s", lambda: 7) == 7


def test_the_step_in_flight_is_recorded_with_its_attempt(store: Store, open_store: Any) -> None:
    other = open_store()
    seen: list[Any] = []

    def look() -> str:
        info = other.run("r").info()
        seen.append((info.status, info.last_step, [(s.name, s.status, s.attempt) for s in info.steps]))
        return "ok"

    assert store.run("r").step("look", look) == "ok"
    assert seen == [("running", "look", [("look", "running", 1)])]
    (step,) = store.run("r").info().steps
    assert (step.status, step.attempts, step.attempt) == ("completed", 1, None)


def test_a_held_run_lease_is_refused_and_fences_a_superseded_holder(store: Store, open_store: Any) -> None:
    a = store.run("r", lease="2s")  # long enough that a slow backend (moto, a loaded machine) keeps it held
    assert a.lease_token == 1 and a.step("one", _double, 1) == 2
    with pytest.raises(LeaseLostError):
        open_store().run("r", lease="30s")
    time.sleep(2.2)  # a goes silent past its lease
    b = open_store().run("r", lease="30s")
    assert b.lease_token == 2
    calls: list[int] = []
    with pytest.raises(LeaseLostError):
        a.step("two", lambda: calls.append(1))
    assert calls == []  # refused before it ran
    with b:
        assert b.step("one", _double, 1) == 2 and b.step("two", _double, 2) == 4
    assert store.run("r").info().status == "completed"
    with store.run("r", lease="30s") as c:  # the with block released b's lease
        assert c.lease_token == 3


def test_stale_runs_are_listed_and_marked_crashed_but_live_ones_are_not(store: Store) -> None:
    store.run("dead").step("a", _double, 1)  # left running: its process "died"
    store.run("finished").step("a", _double, 1)
    store.run("finished").complete()
    held = store.run("held", lease="30s")
    held.step("a", _double, 1)
    time.sleep(0.3)
    assert [r.id for r in store.runs(stale_after="0.1s")] == ["dead"]
    marked = store.mark_stale_runs_crashed("0.1s")
    assert [(r.id, r.status) for r in marked] == [("dead", "crashed")]
    assert [r.id for r in store.runs(status="crashed")] == ["dead"]
    assert store.mark_stale_runs_crashed("0.1s") == []
    again = store.run("dead")
    assert again.step("a", _double, 1) == 2 and again.step("b", _double, 2) == 4  # resumes
    assert store.run("dead").info().status == "running"
    with pytest.raises(InvalidInputError):
        store.runs(status="completed", stale_after="1s")
    with pytest.raises(InvalidInputError):
        store.mark_stale_runs_crashed(float("nan"))


# -- real processes ------------------------------------------------------------------------
def _step_forever(url: str, ready: Any) -> None:
    with statekeel.open(url) as store:
        run = store.run("job", lease="1s")
        run.step("fetch", _double, 1)

        def hang() -> None:
            ready.set()
            time.sleep(600)

        run.step("slow", hang)


def _slow_step(url: str, ready: Any) -> None:
    with statekeel.open(url) as store:
        with store.run("shared", lease="1s") as run:

            def slow() -> str:
                ready.set()
                time.sleep(3.0)  # three times the lease: only the heartbeat keeps it
                return "mine"

            run.step("slow", slow)


@pytest.mark.multiprocess
def test_a_killed_run_shows_its_step_in_flight_and_becomes_stale(store_url: str) -> None:
    with child_process(_step_forever, store_url, what="the step") as (child, _):
        with statekeel.open(store_url) as store:
            assert store.runs(stale_after="0.2s").items == []  # alive: its lease and step heartbeat
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            for _ in range(600):
                if store.runs(stale_after="0.2s").items:
                    break
                time.sleep(0.1)
            assert [r.id for r in store.mark_stale_runs_crashed("0.2s")] == ["job"]
            steps = {s.name: s for s in store.run("job").info().steps}
            assert (steps["slow"].status, steps["slow"].attempt, steps["slow"].attempts) == ("running", 1, 0)
            assert store.run("job").info().status == "crashed"
            with store.run("job", lease="30s") as run:
                assert run.lease_token == 2
                assert run.step("fetch", _double, 1) == 2 and run.step("slow", lambda: "done") == "done"
            steps = {s.name: s for s in store.run("job").info().steps}
            assert (steps["slow"].status, steps["slow"].attempts) == ("completed", 1)


@pytest.mark.multiprocess
def test_two_processes_never_execute_a_leased_step_concurrently(store_url: str) -> None:
    with child_process(_slow_step, store_url, what="the step") as (child, _):
        with statekeel.open(store_url) as store:
            time.sleep(1.5)  # past the lease: the heartbeat renewed it
            with pytest.raises(LeaseLostError):
                store.run("shared", lease="1s")
            assert [r.id for r in store.runs(stale_after="0.5s")] == []
            child.join(60)
            assert child.exitcode == 0
            with store.run("shared", lease="1s") as run:
                theirs = run.stepfn(name="slow", version="other")(lambda: "theirs")
                assert theirs() == "mine"  # never run twice: the stored result stands
