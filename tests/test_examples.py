"""The examples in examples/, run as real processes on a real SQLite file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import statekeel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--url", url, *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/examples.db"


def test_five_tasks_killed_after_step_3_resumes_at_step_4(url: str, tmp_path: Path) -> None:
    first = run_example("five_tasks.py", url, "--kill-after", "3", cwd=tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert "step 3 reverse  ran" in first.stdout and "step 4" not in first.stdout
    second = run_example("five_tasks.py", url, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "reused: generate, sort, reverse" in second.stdout
    assert "ran: join, count" in second.stdout
    assert "result: 40" in second.stdout
    third = run_example("five_tasks.py", url, cwd=tmp_path)
    assert "reused: generate, sort, reverse, join, count" in third.stdout and "ran: none" in third.stdout
    with statekeel.open(url) as store:
        info = store.run("five-tasks").info()
        assert info.status == "completed" and [s.attempts for s in info.steps] == [1] * 5


def test_writing_pipeline_waits_for_a_human_then_finishes(url: str, tmp_path: Path) -> None:
    first = run_example("writing_pipeline.py", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr  # waiting is a clean exit
    assert "waiting: run 'essay' is waiting for 'answers'" in first.stdout
    assert "ran: notes, draft-concise, draft-narrative, draft-bulleted, synthesis, questions" in first.stdout
    again = run_example("writing_pipeline.py", url, cwd=tmp_path)  # no answer yet: still waiting
    assert "waiting:" in again.stdout and "ran: none" in again.stdout
    resume = subprocess.run(  # the human answers from the CLI, in another process
        [sys.executable, "-c", "from statekeel.cli import main; main()", "--url", url, "runs", "resume", "essay",
         "--input", '{"audience": "new engineers", "length": "short"}'],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert resume.returncode == 0, resume.stderr + resume.stdout
    final = run_example("writing_pipeline.py", url, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert "reused: notes, draft-concise, draft-narrative, draft-bulleted, synthesis, questions" in final.stdout
    assert "ran: answers, final" in final.stdout
    assert "FINAL for audience=new engineers, length=short" in final.stdout
    with statekeel.open(url) as store:
        assert store.run("essay").info().status == "completed"


def test_writing_pipeline_answers_flag(url: str, tmp_path: Path) -> None:
    run_example("writing_pipeline.py", url, cwd=tmp_path)
    done = run_example("writing_pipeline.py", url, "--answers", '{"audience": "ops"}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "FINAL for audience=ops" in done.stdout


def test_observer_shares_a_session_with_the_primary_loop(url: str, tmp_path: Path) -> None:
    out = run_example("observer.py", url, "--session", "chat-1", "--pause", "0.5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum("observer note fresh" in line for line in lines) >= 1, out.stdout
    assert "refund policy" in out.stdout
    assert lines[-1].startswith("after the observer stopped: ready=True stale=True")
    with statekeel.open(url) as store:
        s = store.session("chat-1")
        assert len(s) == 12 and s.info().status == "completed"
        assert s.notes.read("observer").value["seen"] >= 2
