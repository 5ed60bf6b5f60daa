"""Issue 18: what the CLI prints — tool calls, nested diffs, ids that never wrap, piped width,
and values whose class cannot be imported by the CLI. Real SQLite files throughout."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import statekeel
from statekeel.cli import main

NO_COLUMNS: dict[str, str | None] = {"COLUMNS": None, "LINES": None}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


def cli(url: str, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args], env={**NO_COLUMNS, **(env or {})})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


TOOL_CALL = {
    "role": "assistant", "content": None,
    "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_order", "arguments": '{"order_id": 991}'}}],
}


def test_history_shows_tool_calls_not_null(url: str) -> None:
    with statekeel.open(url) as store:
        store.session("s1").append(
            {"role": "user", "content": "where is 991?"}, TOOL_CALL,
            {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
        )
    out = ok(cli(url, "sessions", "history", "s1"))
    row = next(line for line in out.splitlines() if "get_order" in line)
    assert "null" not in row and "991" in row
    assert "shipped" in out


def test_checkpoint_diff_goes_down_to_the_changed_field(url: str) -> None:
    ticket = {"customer": {"name": "A" * 40, "address": {"street": "B" * 40, "city": "Paris"}}, "open": True}
    with statekeel.open(url) as store:
        s = store.session("s1")
        s.state.put("ticket", ticket)
        s.checkpoint("before")
        s.state.put("ticket", {**ticket, "customer": {**ticket["customer"],
                                                      "address": {"street": "B" * 40, "city": "Lyon"}}})
    out = ok(cli(url, "checkpoints", "diff", "s1", "before"))
    row = next(line for line in out.splitlines() if "customer.address.city" in line)
    assert "Paris" in row and "Lyon" in row
    doc = json.loads(ok(cli(url, "checkpoints", "diff", "s1", "before", "--json")))
    assert doc["fields"] == [{"key": "ticket", "path": "customer.address.city", "from": "Paris", "to": "Lyon"}]


def test_decision_ids_do_not_wrap_at_120_columns(url: str) -> None:
    with statekeel.open(url) as store:
        s = store.session("support-conversation-42")
        for i in range(3):
            with s.decide(f"refund order {i} " + "because " * 10, action={"refund": i, "why": "x" * 50}):
                pass
        ids = [d.id for d in store.decisions()]
    out = ok(cli(url, "decisions", "list", env={"COLUMNS": "120"}))
    for decision_id in ids:
        assert decision_id in out, out


def test_piped_output_is_not_wrapped_at_80_columns(url: str) -> None:
    long = "my order 991 is late and " + "nobody answers my emails " * 5
    with statekeel.open(url) as store:
        store.session("s1").append({"role": "user", "content": long})
    out = ok(cli(url, "sessions", "history", "s1"))
    assert long in out


# -- a value whose class the CLI cannot import ------------------------------------
@pytest.fixture
def foreign_class(tmp_path: Path) -> Iterator[Any]:
    """A dataclass from the agent's own module, which the CLI's process cannot import."""
    (tmp_path / "agent_models_18.py").write_text(
        "import dataclasses\n\n@dataclasses.dataclass\nclass Ticket:\n    id: int\n    status: str\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("agent_models_18").Ticket
    finally:
        _forget_module(str(tmp_path))


def _forget_module(folder: str) -> None:
    if folder in sys.path:
        sys.path.remove(folder)
    sys.modules.pop("agent_models_18", None)


def _store_foreign(url: str, cls: Any) -> None:
    with statekeel.open(url) as store:
        s = store.session("s1")
        s.state.put("ticket", cls(991, "open"))
        s.state.put("turn", 3)
        s.append({"role": "user", "content": "hi"})
    assert dataclasses.is_dataclass(cls)
    _forget_module(str(Path(sys.modules[cls.__module__].__file__ or "").parent))  # the CLI cannot import it


def test_state_list_shows_a_value_whose_class_cannot_be_imported(url: str, foreign_class: Any) -> None:
    _store_foreign(url, foreign_class)
    out = ok(cli(url, "state", "list", "session:s1"))
    row = next(line for line in out.splitlines() if "ticket" in line)
    assert "agent_models_18:Ticket" in row and "991" in row
    assert "turn" in out
    doc = json.loads(ok(cli(url, "state", "list", "session:s1", "--json")))
    ticket = next(i for i in doc["items"] if i["key"] == "ticket")
    assert ticket["value"]["type"] == "agent_models_18:Ticket"
    assert ticket["value"]["stored"] == {"id": 991, "status": "open"}
    got = json.loads(ok(cli(url, "state", "get", "session:s1", "ticket", "--json")))
    assert got["value"]["type"] == "agent_models_18:Ticket"
    shown = json.loads(ok(cli(url, "sessions", "show", "s1", "--json")))
    assert shown["state"]["ticket"]["stored"] == {"id": 991, "status": "open"}


def test_doctor_does_not_call_an_unimportable_class_damage(url: str, foreign_class: Any) -> None:
    _store_foreign(url, foreign_class)
    result = cli(url, "doctor", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"], report["problems"]
