"""`statekeel sessions history` on a message holding an object whose class the CLI cannot
import (the agent's own dataclass): shown with its class path and stored fields, not a failure."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from statekeel.cli import main

from .harness import in_thread, with_store


@pytest.fixture
def foreign_history(tmp_path: Path) -> Iterator[str]:
    """A store whose session s1 has a message holding a Ticket from a module the CLI cannot import."""
    url = f"sqlite:///{tmp_path}/store.db"
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "agent_models_h18.py").write_text(
        "import dataclasses\n\n@dataclasses.dataclass\nclass Ticket:\n    id: int\n    status: str\n"
    )
    sys.path.insert(0, str(folder))
    try:
        ticket = importlib.import_module("agent_models_h18").Ticket
        with_store(url, lambda store: store.session("s1").append(
            {"role": "user", "content": "where is 991?"}, {"role": "assistant", "content": ticket(991, "open")},
            {"role": "user", "content": "thanks"}))
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("agent_models_h18", None)
    yield url


def _cli(url: str, *args: str) -> Any:
    """On a thread of its own: after the browser tests, this thread runs Playwright's event loop."""
    return in_thread(lambda: CliRunner().invoke(main, ["--url", url, *args], env={"COLUMNS": None, "LINES": None}))


def test_history_shows_a_message_whose_class_cannot_be_imported(foreign_history: str) -> None:
    result = _cli(foreign_history, "sessions", "history", "s1")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "agent_models_h18:Ticket" in line)
    assert "991" in row and "assistant" in row
    assert "where is 991?" in result.stdout and "thanks" in result.stdout

    result = _cli(foreign_history, "sessions", "history", "s1", "--json")
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert [i["seq"] for i in items] == [1, 2, 3]
    assert items[1]["value"]["content"] == {"type": "agent_models_h18:Ticket", "stored": {"id": 991, "status": "open"}}

    last = json.loads(_cli(foreign_history, "sessions", "history", "s1", "--last", "2", "--json").stdout)["items"]
    assert [i["seq"] for i in last] == [2, 3]
