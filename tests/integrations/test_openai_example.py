"""docs/openai-agents.md's first example and examples/openai_agents_chat.py run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _doc_example() -> str:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "openai-agents.md").read_text(), re.S)[0]


def test_the_docs_example_runs_and_remembers_the_first_turn(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _doc_example()], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Your name is Ann.\n4\n"
    assert (tmp_path / "agent.db").exists()


def _run(url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "openai_agents_chat.py"), "--url", url, *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_turn_in_its_own_process_sees_the_stored_conversation(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    assert _run(url, "say", "My order is A7") == "Noted (1 items so far).\n"
    assert _run(url, "say", "Which order was it?") == "Status: order A7 ships tomorrow.\n"
    kinds = [line.split(" :")[0] for line in _run(url, "history").splitlines()]
    assert kinds == ["user", "message", "user", "function_call", "function_call_output", "message"]
