"""``statekeel decisions …`` and ``statekeel runs …`` on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import statekeel
from statekeel.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args])


def cli_json(url: str, *args: str) -> Any:
    result = cli(url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_decisions_list_and_resolve(url: str) -> None:
    with statekeel.open(url) as store:
        s = store.session("support-42")
        with s.decide("greet"):
            pass
        s.decide("refund order 991", action="payments.refund(991)").__enter__()  # "killed" inside
    every = cli_json(url, "decisions", "list")
    assert [d["status"] for d in every["items"]] == ["done", "pending"] and every["next"] is None
    (pending,) = cli_json(url, "decisions", "list", "--incomplete")["items"]
    assert pending["decision"] == "refund order 991" and pending["action"] == "payments.refund(991)"
    table = cli(url, "decisions", "list", "--incomplete")
    assert table.exit_code == 0 and "pending" in table.output and "payments" in table.output
    done = cli_json(url, "decisions", "resolve", pending["id"], '{"refunded": true}', "--by", "alice")
    assert (done["status"], done["outcome"], done["resolved_by"]) == ("resolved", {"refunded": True}, "alice")
    assert cli_json(url, "decisions", "list", "--incomplete")["items"] == []
    again = cli(url, "decisions", "resolve", pending["id"], "plain text")
    assert again.exit_code == 1 and "already closed" in again.output
    bad = cli(url, "decisions", "resolve", "nonsense", "x")
    assert bad.exit_code == 1 and "not a decision id" in bad.output


def test_runs_list_show_resume_cancel(url: str) -> None:
    with statekeel.open(url) as store:
        with store.run("essay") as run:
            run.step("draft", lambda: "v1")
            run.wait_for("answers", prompt="Who reads it?")
        store.run("other").step("a", lambda: 1)
    listed = cli_json(url, "runs", "list")
    assert [(r["id"], r["status"]) for r in listed["items"]] == [("essay", "waiting"), ("other", "running")]
    assert [r["id"] for r in cli_json(url, "runs", "list", "--status", "waiting")["items"]] == ["essay"]
    shown = cli_json(url, "runs", "show", "essay")
    assert shown["waiting_for"] == "answers" and [s["name"] for s in shown["steps"]] == ["draft", "answers"]
    text = cli(url, "runs", "show", "essay")
    assert text.exit_code == 0 and "waiting for 'answers'" in text.output
    bad = cli(url, "runs", "resume", "essay", "--input", "not json")
    assert bad.exit_code == 2 and "is not JSON" in bad.output
    resumed = cli(url, "runs", "resume", "essay", "--input", '"everyone"')
    assert resumed.exit_code == 0 and "start its script again" in resumed.output
    with statekeel.open(url) as store:
        assert store.run("essay").wait_for("answers") == "everyone"
    cancelled = cli_json(url, "runs", "cancel", "other", "--reason", "superseded")
    assert (cancelled["status"], cancelled["error"]) == ("cancelled", "superseded")
    missing = cli(url, "runs", "show", "ghost")
    assert missing.exit_code == 1 and "no run 'ghost'" in missing.output
