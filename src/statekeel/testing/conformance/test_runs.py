"""Resumable runs: memoised steps, retries, human-in-the-loop waits, cancellation."""

from __future__ import annotations

import base64
import datetime as dt
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import (
    InvalidInputError,
    NotFoundError,
    RunCancelledError,
    RunSuspended,
    SerializationError,
    StepFailedError,
    Store,
)


class Counter:
    """A step function that counts its calls (what must never run twice)."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, x: Any) -> Any:
        self.calls.append(x)
        return x


def test_run_steps_are_memoised_across_handles(store: Store, open_store: Any) -> None:
    f = Counter()
    with store.run("r") as run:
        assert run.step("a", f, 1) == 1
        assert run.step("b", f, (2, dt.date(2026, 1, 2))) == (2, dt.date(2026, 1, 2))
        assert run.step("a", f, 99) == 1  # same name, same run: the stored result
    assert f.calls == [1, (2, dt.date(2026, 1, 2))]
    with open_store().run("r") as again:
        assert again.step("a", f, 1) == 1
        assert again.step("b", f, None) == (2, dt.date(2026, 1, 2))  # types round-trip exactly
        assert again.step("c", f, 3) == 3
    assert f.calls == [1, (2, dt.date(2026, 1, 2)), 3]
    assert (again.reused, again.executed) == (["a", "b"], ["c"])
    info = store.run("r").info()
    assert info.status == "completed" and info.steps_completed == 3 and info.last_step == "c"
    assert [(s.name, s.status, s.attempts) for s in info.steps] == [
        ("a", "completed", 1), ("b", "completed", 1), ("c", "completed", 1),
    ]
    assert all(s.duration is not None and s.finished_at is not None for s in info.steps)


def test_run_stepfn_decorator(store: Store) -> None:
    run = store.run("deco")
    calls = []

    @run.stepfn
    def fetch(n: int) -> list[int]:
        calls.append(n)
        return list(range(n))

    @run.stepfn(name="total")
    def add(xs: list[int]) -> int:
        return sum(xs)

    assert add(fetch(4)) == 6
    run2 = store.run("deco")
    assert run2.stepfn(fetch.__wrapped__)(99) == [0, 1, 2, 3] and calls == [4]  # type: ignore[attr-defined]
    assert [s.name for s in run2.info().steps] == ["fetch", "total"]


def test_run_failed_step_is_retried_up_to_max_attempts(store: Store) -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        raise TimeoutError(f"model timed out (attempt {len(attempts)})")

    for n in (1, 2):
        with pytest.raises(TimeoutError):
            with store.run("job", max_attempts=2) as run:
                run.step("ok", lambda: "fine")
                run.step("flaky", flaky)
        info = run.info()
        assert info.status == "failed" and "TimeoutError" in (info.error or "")
        assert [s.attempts for s in info.steps] == [1, n]
    with pytest.raises(StepFailedError, match="failed 2 times") as exc:
        store.run("job", max_attempts=2).step("flaky", flaky)
    assert exc.value.attempts == 2 and len(attempts) == 2  # not run a third time
    result = store.run("job", max_attempts=3).step("flaky", lambda: "recovered")
    assert result == "recovered"
    step = store.run("job").info().steps[1]
    assert (step.status, step.attempts) == ("completed", 3)
    assert step.error == "TimeoutError: model timed out (attempt 2)"  # the error is kept
    assert [h["error"] is None for h in step.history] == [False, False, True]


def test_run_wait_for_suspends_until_resumed(store: Store, open_store: Any) -> None:
    def script(s: Store) -> tuple[statekeel.Run, Any]:
        out = None
        with s.run("review") as run:
            draft = run.step("draft", lambda: "v1")
            answer = run.wait_for("approve", prompt="Publish the draft?")
            out = run.step("publish", lambda: f"{draft} approved={answer}")
        return run, out

    run, out = script(store)
    assert out is None and isinstance(run.suspended, RunSuspended)
    assert run.suspended.step == "approve" and "statekeel runs resume review" in str(run.suspended)
    info = run.info()
    assert (info.status, info.waiting_for, info.prompt) == ("waiting", "approve", "Publish the draft?")
    assert [r.id for r in store.runs(status="waiting")] == ["review"]
    run, out = script(store)  # started again before the answer: still waiting, nothing re-run
    assert run.suspended is not None and run.reused == ["draft"]
    resumed = open_store().resume_run("review", None, {"yes": True})  # another process, later
    assert resumed.status == "running" and resumed.waiting_for is None
    with pytest.raises(InvalidInputError, match="already"):
        store.resume_run("review", "approve", {"yes": False})
    run, out = script(store)
    assert out == "v1 approved={'yes': True}" and run.info().status == "completed"
    wait = run.info().steps[1]
    assert (wait.kind, wait.status, wait.duration is not None) == ("wait", "completed", True)
    run, out = script(store)
    assert run.reused == ["draft", "approve", "publish"] and run.executed == []


def test_run_wait_for_raises_without_a_with_block(store: Store) -> None:
    run = store.run("bare")
    with pytest.raises(RunSuspended):
        run.wait_for("input")
    store.resume_run("bare", "input", 5)
    assert store.run("bare").wait_for("input") == 5


def test_run_resume_errors(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no run"):
        store.resume_run("ghost", "x", 1)
    store.run("r").step("a", lambda: 1)
    with pytest.raises(InvalidInputError, match="not waiting"):
        store.resume_run("r", None, 1)
    store.resume_run("r", "later", 7)  # input may be supplied before the run asks for it
    assert store.run("r").wait_for("later") == 7
    with pytest.raises(InvalidInputError, match="step"):
        store.run("r").step("later", lambda: 0)  # a wait step is not a function step
    with pytest.raises(SerializationError):
        store.resume_run("r", "other", object())


def test_run_cancel_stops_other_processes_at_the_next_step(store: Store, open_store: Any) -> None:
    f = Counter()
    run = store.run("c")
    run.step("a", f, 1)
    info = open_store().cancel_run("c", reason="superseded")
    assert info.status == "cancelled" and info.error == "superseded"
    with pytest.raises(RunCancelledError):
        run.step("b", f, 2)  # this handle learns of it when it records the step as started
    with pytest.raises(RunCancelledError, match="superseded"):
        store.run("c").step("b", f, 2)  # a new handle does not even run it
    assert f.calls == [1] and run.info().status == "cancelled"  # not run after the cancel
    assert store.run("c").info().steps_completed == 1
    with pytest.raises(InvalidInputError, match="cancelled"):
        store.resume_run("c", "x", 1)
    store.run("done").step("a", lambda: 1)
    with store.run("done"):
        pass
    with pytest.raises(InvalidInputError, match="completed"):
        store.cancel_run("done")
    with pytest.raises(NotFoundError):
        store.cancel_run("ghost")


def test_run_two_processes_racing_on_a_step_record_one_result(store: Store, open_store: Any) -> None:
    first, second = store.run("race"), open_store().run("race")  # both opened before either ran it
    assert first.step("x", lambda: "first") == "first"
    assert second.step("x", lambda: "second") == "first"  # lost the compare-and-set: the winner's result
    assert second.reused == ["x"] and second.executed == []
    assert second.step("y", lambda: "y") == "y"  # and it carries on from there
    assert [s.name for s in store.run("race").info().steps] == ["x", "y"]


def test_run_listing_pages_and_filters(store: Store) -> None:
    for i in range(7):
        with store.run(f"run-{i}") as run:
            run.step("s", lambda: i)
    store.run("failing").fail("because")
    assert len(store.runs()) == 8
    first = store.runs(limit=3)
    second = store.runs(limit=3, after=first.next)
    assert [r.id for r in first] == ["failing", "run-0", "run-1"]
    assert [r.id for r in second] == ["run-2", "run-3", "run-4"]
    assert [r.id for r in store.runs(status="failed")] == ["failing"]
    assert len(store.runs(status="completed")) == 7
    with pytest.raises(InvalidInputError):
        store.runs(status="bogus")  # type: ignore[arg-type]


def test_run_bad_input(store: Store) -> None:
    with pytest.raises(InvalidInputError):
        store.run("")
    with pytest.raises(InvalidInputError):
        store.run("r", max_attempts=0)
    with pytest.raises(InvalidInputError):
        store.run("r").step("", lambda: 1)
    with pytest.raises(NotFoundError):
        store.run("never-ran").info()
    run = store.run("r")
    with pytest.raises(SerializationError):
        run.step("bad", lambda: object())
    step = run.info().steps[0]
    assert step.status == "failed" and "SerializationError" in (step.error or "")


def test_run_names_are_escaped(store: Store) -> None:
    with store.run("a/b") as run:
        run.step("x/y", lambda: 1)
    with store.run("a") as run:
        run.step("x", lambda: 2)
    assert store.run("a/b").step("x/y", lambda: 0) == 1
    assert [s.name for s in store.run("a/b").info().steps] == ["x/y"]


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import statekeel
    url, trace, kill_in = sys.argv[1], sys.argv[2], sys.argv[3]

    def work(name, value):
        with open(trace, "a") as f:
            f.write(name + "\\n")
        if name == kill_in and not os.path.exists(trace + ".killed"):
            open(trace + ".killed", "w").close()
            os.kill(os.getpid(), signal.SIGKILL)   # dies inside the step, before its result is stored
        return value + [name]

    with statekeel.open(url) as store:
        with store.run("pipeline") as run:
            acc = []
            for name in ["one", "two", "three", "four", "five"]:
                acc = run.step(name, work, name, acc)
        print(",".join(acc), "|", ",".join(run.reused))
    """
)


@pytest.mark.multiprocess
@pytest.mark.parametrize("kill_in", ["one", "three", "five"])
def test_run_resumes_after_sigkill_inside_a_step(store_url: str, tmp_path: Path, kill_in: str) -> None:
    statekeel.open(store_url).close()
    trace = tmp_path / "trace"
    cmd = [sys.executable, "-c", _CHILD, store_url, str(trace), kill_in]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    names = ["one", "two", "three", "four", "five"]
    done_before = names[: names.index(kill_in)]
    assert second.stdout.split("|")[0].strip() == ",".join(names)
    assert second.stdout.split("|")[1].strip() == ",".join(done_before)
    ran = trace.read_text().split()
    assert ran == names[: names.index(kill_in) + 1] + names[names.index(kill_in) :]  # only kill_in twice
    with statekeel.open(store_url) as store:
        info = store.run("pipeline").info()
        assert info.status == "completed" and info.steps_completed == 5
        assert all(s.attempts == 1 for s in info.steps)  # a killed attempt is not counted


def test_run_on_an_encrypted_store_keeps_no_plaintext(store_url: str) -> None:
    pytest.importorskip("cryptography")
    key = base64.b64encode(b"R" * 32).decode()
    with statekeel.open(store_url, encryption=statekeel.Encryption(master_key=key)) as store:
        with store.run("enc") as run:
            run.step("a", lambda: "canary-result")
            run.wait_for("human", prompt="canary-prompt")
        store.resume_run("enc", "human", "canary-input")
        raw = [r.data for r in store.storage.scan("run/enc/")] + [r.data for r in store.storage.scan("idx/runs/")]
        assert len(raw) >= 4 and not any(b"canary" in data for data in raw)
    with statekeel.open(store_url, encryption=statekeel.Encryption(master_key=key)) as again:
        with again.run("enc") as run:
            assert run.step("a", lambda: "recomputed") == "canary-result"
            assert run.wait_for("human") == "canary-input"
        assert [r.status for r in again.runs()] == ["completed"]
