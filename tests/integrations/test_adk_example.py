"""docs/adk.md's example and examples/adk_chat.py run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_example_runs(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "adk.md").read_text(), re.S)[0]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "{'cart': ['A7'], 'user:locale': 'en-GB'}\n['chat-1']\n"


def _run(url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "adk_chat.py"), "--url", url, *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_turns_in_separate_processes_share_history_user_state_and_memory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/adk.db"
    assert _run(url, "say", "My order is A7") == "Noted (1 messages so far). (turn 1)\n"
    assert _run(url, "say", "Which order was it?") == "Status: order A7 ships tomorrow. (turn 2)\n"
    assert _run(url, "sessions") == "chat-1 {'user:turns': 2}\n"
    assert _run(url, "recall", "order").splitlines() == [
        "support : Status: order A7 ships tomorrow.", "user : Which order was it?", "user : My order is A7",
    ]
