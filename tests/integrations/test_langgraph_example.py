"""examples/langgraph_chat.py, run as separate processes on a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langgraph_chat.py"


def _run(url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLE), "--url", url, *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_interrupt_resumed_later_time_travel_and_fork(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    asked = _run(url, "ask", "What is statekeel?")
    assert "waiting at review: {'draft': 'Draft answer #1'}" in asked
    approved = _run(url, "approve")  # another process resumes the interrupted run
    assert approved.endswith("approved: True\n")
    _run(url, "ask", "And LangGraph?")
    history = _run(url, "history").splitlines()
    assert len(history) == 7 and history[0].startswith("step  5  4 messages") and history[-1].startswith("step -1")
    forked = _run(url, "fork", "Ask something else instead")
    assert "human: And LangGraph?" not in forked
    assert "human: What is statekeel?\n  ai: Draft answer #1\n  human: Ask something else instead" in forked
    assert len(_run(url, "history").splitlines()) == 10  # the abandoned branch is not in the new head's history
