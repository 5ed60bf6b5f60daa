"""The README quickstart, run as a new user would: twice in a row on the same store.

Restarting is exactly the case statekeel exists for, so the second run must
succeed too (it used to raise ConflictError on ``put(..., expect=None)``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _quickstart() -> str:
    """The first ```python block of the README."""
    found = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert found is not None, "README.md has no ```python block"
    return found.group(1)


def test_quickstart_runs_twice_on_the_same_store(tmp_path: Path) -> None:
    code = _quickstart() + "\nprint('turns', s.state.get('turn'), 'ticket', s.state.get('ticket'))\n"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"run {run} failed:\n{done.stderr}"
        assert "ticket {'id': 991, 'status': 'open'}" in done.stdout
    assert (tmp_path / ".statekeel" / "state.db").exists()
