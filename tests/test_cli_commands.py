"""Issue 18: the CLI reaches every feature — notes, consumers, a session's lifecycle, and
`sessions show` / `runs show` with everything they hold. Real SQLite files throughout."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import statekeel
from statekeel import RunSuspended
from statekeel.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


def cli(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args], input=stdin)


def cli_json(url: str, *args: str) -> Any:
    result = cli(url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- notes ----------------------------------------------------------------------
def test_notes_list_and_show(url: str) -> None:
    with statekeel.open(url) as store:
        s = store.session("s1")
        s.notes.write("observer", {"issues": ["late order"]})
        s.notes.write("planner", "step 2")
    page = cli_json(url, "notes", "list", "s1")
    assert [n["author"] for n in page["items"]] == ["observer", "planner"] and page["next"] is None
    assert page["items"][0]["value"] == {"issues": ["late order"]}
    shown = cli_json(url, "notes", "show", "s1", "observer", "--max-age", "1h")
    assert shown["ready"] and not shown["stale"] and shown["value"] == {"issues": ["late order"]}
    table = cli(url, "notes", "list", "s1")
    assert table.exit_code == 0 and "late order" in table.output
    missing = cli(url, "notes", "show", "s1", "nobody")
    assert missing.exit_code == 1 and "nobody" in missing.output


# -- consumers --------------------------------------------------------------------
def test_consumers_list_lag_and_seek(url: str) -> None:
    with statekeel.open(url) as store:
        stream = store.events("orders")
        for i in range(5):
            stream.append("task_created", {"id": i})
        stream.consumer("billing").ack(3)
        stream.consumer("mailer").ack(5)
    page = cli_json(url, "consumers", "list", "orders")
    assert [(c["name"], c["position"], c["lag"]) for c in page["items"]] == [("billing", 3, 2), ("mailer", 5, 0)]
    assert cli_json(url, "consumers", "lag", "orders", "billing")["lag"] == 2
    moved = cli_json(url, "consumers", "seek", "orders", "mailer", "1")
    assert moved["position"] == 1 and moved["lag"] == 4
    with statekeel.open(url) as store:
        assert store.events("orders").consumer("mailer").position == 1
    bad = cli(url, "consumers", "seek", "orders", "mailer", "99")
    assert bad.exit_code != 0
    with statekeel.open(url) as store:
        assert store.events("orders").consumer("mailer").position == 1  # unchanged


# -- a session's lifecycle ----------------------------------------------------------
def test_sessions_mark_crashed_complete_and_delete(url: str) -> None:
    with statekeel.open(url) as store:
        for sid in ("a", "b", "c"):
            store.session(sid).append({"role": "user", "content": sid})
    assert cli_json(url, "sessions", "mark-crashed", "--stale-after", "1h")["items"] == []
    time.sleep(0.05)  # silent for at least 50 ms: a lower bound, whatever the machine's speed
    marked = cli_json(url, "sessions", "mark-crashed", "--stale-after", "0.01")
    assert sorted(s["id"] for s in marked["items"]) == ["a", "b", "c"]
    assert all(s["status"] == "crashed" for s in marked["items"])
    assert cli_json(url, "sessions", "complete", "b")["status"] == "completed"
    refused = cli(url, "sessions", "delete", "c", stdin="n\n")
    assert refused.exit_code == 1
    assert cli(url, "sessions", "delete", "c", "--yes").exit_code == 0
    with statekeel.open(url) as store:
        assert store.find_session("c") is None
        assert store.session_info("b").status == "completed"
    gone = cli(url, "sessions", "delete", "c", "--yes")
    assert gone.exit_code == 1 and "no session 'c'" in gone.output


def test_sessions_show_has_notes_decisions_and_checkpoints(url: str) -> None:
    with statekeel.open(url) as store:
        s = store.session("s1")
        s.append({"role": "user", "content": "refund?"}, state={"turn": 1})
        s.notes.write("observer", "looks fine")
        with s.decide("refund 991", action="refund(991)") as d:
            d.outcome("done")
        s.checkpoint("after-refund")
    shown = cli_json(url, "sessions", "show", "s1")
    assert shown["notes"]["observer"]["value"] == "looks fine"
    assert [d["decision"] for d in shown["decisions"]] == ["refund 991"]
    assert [c["label"] for c in shown["checkpoints"]] == ["after-refund"]
    table = cli(url, "sessions", "show", "s1").output
    assert "looks fine" in table and "refund 991" in table and "after-refund" in table


def test_runs_show_has_step_results_and_the_approval_input(url: str) -> None:
    with statekeel.open(url) as store:
        run = store.run("essay")
        run.step("draft", lambda: {"text": "a first draft"})
        with pytest.raises(RunSuspended):
            run.wait_for("approval", prompt="approve the draft?")
        store.resume_run("essay", "approval", {"approved": True, "by": "alice"})
    shown = cli_json(url, "runs", "show", "essay")
    steps = {s["name"]: s for s in shown["steps"]}
    assert steps["draft"]["result"] == {"text": "a first draft"}
    assert steps["approval"]["input"] == {"approved": True, "by": "alice"}
    table = cli(url, "runs", "show", "essay").output
    assert "a first draft" in table and "alice" in table
