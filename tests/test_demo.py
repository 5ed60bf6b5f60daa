"""``statekeel demo``: a real child process is SIGKILLed and nothing it acknowledged is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing
from click.testing import CliRunner

import statekeel
from statekeel import demo_agent
from statekeel.cli import main

pytestmark = pytest.mark.slow


def _console_script() -> str:
    script = Path(sys.executable).with_name("statekeel")
    if not script.exists():
        missing("the statekeel console script is not installed next to this python")
    return str(script)


def test_demo_kills_the_agent_and_recovers_every_acknowledged_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    proc = subprocess.run(
        [_console_script(), "demo", "--url", url, "--json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    child, recovery, final = out["child"], out["recovery"], out["final"]
    # The child really died of SIGKILL, mid-run.
    assert child["killed_by"] == "SIGKILL" and child["returncode"] == -9
    acks = child["acknowledged"]
    assert [a["seq"] for a in acks] == list(range(1, len(acks) + 1))
    assert acks[-1] == {"event": "ack", "turn": out["kill_at"], "role": "user", "seq": len(acks)}
    # Everything the child acknowledged before the kill was recovered, nothing more.
    assert recovery["recovered_messages"] == len(acks) == child["acknowledged_messages"]
    assert recovery["nothing_lost"] and recovery["recovered_matches_script"]
    assert recovery["found_status"] == "active" and recovery["resumed_from"] == "crashed"
    assert recovery["unanswered_user_message"]
    assert recovery["state"]["turn"] == out["kill_at"] - 1
    assert final == {"messages": 2 * out["turns"], "status": "completed", "history_matches_script": True}
    assert out["seconds"] > 0  # how long it took is the benchmarks' business: CI machines are shared and slow
    with statekeel.open(url) as store:  # and the store agrees, read independently
        s = store.session(out["session"])
        assert s.history() == demo_agent.expected_history(out["turns"])
        assert s.info().status == "completed"


def test_demo_reads_well_in_a_fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATEKEEL_URL", raising=False)
    result = CliRunner().invoke(main, ["demo", "--turns", "4", "--kill-at", "2"])
    assert result.exit_code == 0, result.output
    for text in ("SIGKILL", "recovered 3 messages", "nothing lost", "unanswered", "identical to the script"):
        assert text in result.output
    assert (tmp_path / ".statekeel" / "state.db").exists()
    second = CliRunner().invoke(main, ["demo", "--turns", "1", "--json"])
    assert json.loads(second.stdout)["session"] == "demo-2"


def test_demo_refuses_what_cannot_work(tmp_path: Path) -> None:
    memory = CliRunner().invoke(main, ["demo", "--url", "memory://"])
    assert memory.exit_code == 2 and "two processes" in memory.output
    args = ["demo", "--url", f"sqlite:///{tmp_path}/d.db", "--turns", "2", "--kill-at", "3"]
    late = CliRunner().invoke(main, args)
    assert late.exit_code == 2 and "past the last turn" in late.output


def test_the_demo_agent_alone_finishes_its_script(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/agent.db"
    assert demo_agent.main(["--url", url, "--session", "solo", "--turns", "7", "--think", "0"]) == 0
    with statekeel.open(url) as store:
        s = store.session("solo")
        assert s.history() == demo_agent.expected_history(7)
        assert s.state.get("plan") == {"step": 7, "of": 7, "doing": "follow-up 7"}
        assert s.info().status == "completed"
