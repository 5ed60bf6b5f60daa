"""Issue 18: errors and messages the CLI prints speak CLI, not Python, and read as English."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import statekeel
from statekeel import SecretDetectedError
from statekeel.cli import main

PYTHON_HINTS = ("store.runs()", "store.decisions()", "get(key, default)", "store.session(id)")


@pytest.fixture
def url(tmp_path: Path) -> str:
    statekeel.open(f"sqlite:///{tmp_path}/store.db").close()
    return f"sqlite:///{tmp_path}/store.db"


def cli(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args], env=env)


@pytest.mark.parametrize(("args", "hint"), [
    (("runs", "show", "nope"), "statekeel runs list"),
    (("runs", "cancel", "nope"), "statekeel runs list"),
    (("state", "get", "app", "nothing"), "statekeel state set app nothing"),
    (("decisions", "resolve", "nope:0001", "done"), "statekeel decisions list"),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_not_found_errors_name_cli_commands(url: str, args: tuple[str, ...], hint: str) -> None:
    result = cli(url, *args)
    assert result.exit_code == 1, result.output
    assert hint in result.output, result.output
    assert not any(p in result.output for p in PYTHON_HINTS), result.output


def test_keys_encrypt_reports_counts_in_plain_english(url: str) -> None:
    with statekeel.open(url) as store:
        store.session("s1").append({"role": "user", "content": "hi"})
    key = base64.b64encode(os.urandom(32)).decode()
    result = cli(url, "keys", "encrypt", env={"STATEKEEL_MASTER_KEY": key})
    assert result.exit_code == 0, result.output
    assert "(y/ies)" not in result.output and "(s)" not in result.output
    assert "1 entry" in result.output


def test_secret_paths_spell_a_session_one_way(tmp_path: Path) -> None:
    token = "sk-proj-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9"
    with statekeel.open(f"sqlite:///{tmp_path}/s.db") as store:
        s = store.session("s1")
        with pytest.raises(SecretDetectedError) as in_state:
            s.state.put("cfg", {"key": token})
        with pytest.raises(SecretDetectedError) as in_history:
            s.append({"role": "user", "content": token})
    assert in_state.value.path.startswith("session['s1']")
    assert in_history.value.path.startswith("session['s1']")
