"""The ``statekeel`` CLI on real SQLite files: help, docs, JSON, errors, migrate, doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import missing
from click.testing import CliRunner, Result

import statekeel
from statekeel.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args])


def cli_json(url: str, *args: str) -> Any:
    result = cli(url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def walk(
    cmd: click.Command, path: tuple[str, ...] = ("statekeel",)
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, (*path, name))


ALL_COMMANDS = [" ".join(path) for path, _ in walk(main)]


def test_the_expected_commands_exist() -> None:
    for name in (
        "statekeel sessions list", "statekeel sessions show", "statekeel sessions history",
        "statekeel state get", "statekeel state set", "statekeel state list",
        "statekeel migrate", "statekeel doctor", "statekeel demo",
    ):
        assert name in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS)
def test_every_command_has_help_with_an_example(path: str) -> None:
    result = CliRunner().invoke(main, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output


@pytest.mark.parametrize("path", ALL_COMMANDS)
def test_every_command_is_documented(path: str) -> None:
    docs = DOCS.read_text()
    assert f"`{path}" in docs or f"## {path}" in docs, f"docs/cli.md does not mention {path}"


def test_library_errors_are_clean_cli_errors(tmp_path: Path) -> None:
    result = cli("nope://x", "sessions", "list")
    assert result.exit_code == 1
    assert "Error: unknown store scheme" in result.output
    assert "Traceback" not in result.output


# -- state ----------------------------------------------------------------------
def test_state_set_get_round_trip(url: str) -> None:
    value = {"id": 991, "tags": ["late", "été"], "nested": {"ok": True, "n": None}}
    written = cli_json(url, "state", "set", "user:u-7", "ticket", json.dumps(value))
    assert written["version"] == 1 and written["value"] == value
    assert cli_json(url, "state", "get", "user:u-7", "ticket")["value"] == value
    plain = cli(url, "state", "get", "user:u-7", "ticket")
    assert json.loads(plain.stdout) == value
    with statekeel.open(url) as store:
        assert store.user("u-7").get("ticket") == value


def test_state_set_with_ttl_and_create(url: str) -> None:
    item = cli_json(url, "state", "set", "app", "flag", "true", "--create", "--ttl", "2h")
    assert item["expires_at"] is not None
    again = cli(url, "state", "set", "app", "flag", "false", "--create")
    assert again.exit_code == 1 and "already exists" in again.output


def test_expect_conflict_is_a_clean_error(url: str) -> None:
    cli_json(url, "state", "set", "app", "plan", '{"step": 1}')
    cli_json(url, "state", "set", "app", "plan", '{"step": 2}', "--expect", "1")
    result = cli(url, "state", "set", "app", "plan", '{"step": 3}', "--expect", "1")
    assert result.exit_code == 1
    assert "conflict" in result.output and "--expect 2" in result.output
    assert "Traceback" not in result.output
    assert cli_json(url, "state", "get", "app", "plan")["value"] == {"step": 2}


def test_state_input_errors(url: str) -> None:
    statekeel.open(url).close()
    assert cli(url, "state", "set", "app", "k", "not json").exit_code == 2
    assert cli(url, "state", "set", "app", "k", "1", "--expect", "1", "--create").exit_code == 2
    assert cli(url, "state", "set", "app", "k", "1", "--ttl", "soon").exit_code == 2
    assert cli(url, "state", "list", "temp").exit_code == 2
    missing = cli(url, "state", "get", "app", "nothing")
    assert missing.exit_code == 1 and "no 'nothing' in app" in missing.output
    bad_scope = cli(url, "state", "get", "galaxy:7", "k")
    assert bad_scope.exit_code == 1 and "is not a scope" in bad_scope.output


def test_state_list_pages_and_delete(url: str) -> None:
    for i in range(5):
        cli_json(url, "state", "set", "app", f"draft-{i}", str(i))
    cli_json(url, "state", "set", "app", "other", "0")
    first = cli_json(url, "state", "list", "app", "--prefix", "draft-", "--limit", "3")
    assert [i["key"] for i in first["items"]] == ["draft-0", "draft-1", "draft-2"]
    rest = cli_json(url, "state", "list", "app", "--prefix", "draft-", "--after", first["next"])
    assert [i["key"] for i in rest["items"]] == ["draft-3", "draft-4"] and rest["next"] is None
    table = cli(url, "state", "list", "app")
    assert table.exit_code == 0 and "draft-4" in table.output and "other" in table.output
    assert cli(url, "state", "delete", "app", "other").exit_code == 0
    assert cli(url, "state", "delete", "app", "other").exit_code == 1


def test_reading_session_state_does_not_create_the_session(url: str) -> None:
    statekeel.open(url).close()
    assert cli(url, "state", "get", "session:ghost", "k").exit_code == 1
    assert cli_json(url, "state", "list", "session:ghost")["items"] == []
    assert cli_json(url, "sessions", "list")["items"] == []


def test_read_commands_do_not_create_a_missing_store(tmp_path: Path, url: str) -> None:
    for args in (["sessions", "list"], ["sessions", "show", "s1"], ["state", "get", "app", "k"],
                 ["state", "list", "app"]):
        result = cli(url, *args)
        assert result.exit_code == 1 and "no store at" in result.output, args
    assert not (tmp_path / "store.db").exists()
    assert cli(url, "state", "set", "app", "k", "1").exit_code == 0  # writing creates it


# -- sessions -----------------------------------------------------------------
@pytest.fixture
def sessions_url(url: str) -> str:
    with statekeel.open(url) as store:
        for i in range(4):
            s = store.session(f"s{i}", user="u-7" if i % 2 else "u-8")
            s.append({"role": "user", "content": f"hello {i}"}, {"role": "assistant", "content": "hi"},
                     state={"turn": i})
        store.session("s3").mark_crashed()
    return url


def test_sessions_list_filters_and_pages(sessions_url: str) -> None:
    page = cli_json(sessions_url, "sessions", "list", "--limit", "3")
    assert [s["id"] for s in page["items"]] == ["s0", "s1", "s2"]
    rest = cli_json(sessions_url, "sessions", "list", "--after", page["next"])
    assert [s["id"] for s in rest["items"]] == ["s3"] and rest["next"] is None
    assert [s["id"] for s in cli_json(sessions_url, "sessions", "list", "--user", "u-7")["items"]] == ["s1", "s3"]
    assert [s["id"] for s in cli_json(sessions_url, "sessions", "list", "--status", "crashed")["items"]] == ["s3"]
    assert cli_json(sessions_url, "sessions", "list", "--stale-after", "1h")["items"] == []
    table = cli(sessions_url, "sessions", "list")
    assert table.exit_code == 0 and "crashed" in table.output and "u-8" in table.output


def test_sessions_show_and_history(sessions_url: str) -> None:
    shown = cli_json(sessions_url, "sessions", "show", "s1")
    assert shown["messages"] == 2 and shown["user"] == "u-7" and shown["state"] == {"turn": 1}
    history = cli_json(sessions_url, "sessions", "history", "s1")["items"]
    assert [m["seq"] for m in history] == [1, 2]
    assert history[0]["value"] == {"role": "user", "content": "hello 1"}
    last = cli_json(sessions_url, "sessions", "history", "s1", "--last", "1")["items"]
    assert [m["value"]["role"] for m in last] == ["assistant"]
    table = cli(sessions_url, "sessions", "history", "s1")
    assert table.exit_code == 0 and "hello 1" in table.output
    assert "messages" in cli(sessions_url, "sessions", "show", "s1").output


def test_inspecting_a_crashed_session_leaves_it_crashed(sessions_url: str) -> None:
    assert cli(sessions_url, "sessions", "show", "s3").exit_code == 0
    assert cli(sessions_url, "sessions", "history", "s3").exit_code == 0
    assert cli(sessions_url, "state", "get", "session:s3", "turn").exit_code == 0
    assert cli_json(sessions_url, "sessions", "show", "s3")["status"] == "crashed"


def test_missing_session_is_a_clean_error(sessions_url: str) -> None:
    result = cli(sessions_url, "sessions", "show", "nope")
    assert result.exit_code == 1 and "no session 'nope'" in result.output
    assert cli_json(sessions_url, "sessions", "list", "--status", "active")["items"][-1]["id"] == "s2"


# -- migrate ------------------------------------------------------------------
def test_migrate_check_on_an_up_to_date_store(url: str) -> None:
    statekeel.open(url).close()
    result = cli(url, "migrate", "--check")
    assert result.exit_code == 0 and "up to date" in result.output
    assert cli_json(url, "migrate", "--check")["pending"] == []


def test_migrate_check_and_print_sql_on_an_empty_file(tmp_path: Path, url: str) -> None:
    (tmp_path / "store.db").touch()
    statekeel.open(url, migrate=False).close()
    check = cli(url, "migrate", "--check")
    assert check.exit_code == 1
    assert "CREATE TABLE" in check.output and "would run" in check.output
    sql = cli(url, "migrate", "--print-sql")
    assert sql.exit_code == 0 and sql.output.startswith("CREATE TABLE")
    with statekeel.open(url, migrate=False) as store:  # neither wrote anything
        assert store.backend.migrate(check=True).current == 0
    assert cli(url, "migrate").exit_code == 0
    assert cli(url, "migrate", "--check").exit_code == 0


def test_migrate_check_does_not_create_a_missing_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["migrate", f"sqlite:///{tmp_path}/new.db", "--check"])
    assert result.exit_code == 1 and "no store at" in result.output
    assert not (tmp_path / "new.db").exists()


# -- doctor -------------------------------------------------------------------
def _filled_store(url: str) -> str:
    with statekeel.open(url) as store:
        for i in range(30):
            store.session(f"s{i}").append(*[{"role": "user", "content": "x" * 300}] * 20)
            store.app.put(f"k{i}", {"v": "y" * 500})
        store.backend.checkpoint_wal()  # type: ignore[attr-defined]
    return url


def test_doctor_on_a_healthy_store(url: str) -> None:
    _filled_store(url)
    result = cli(url, "doctor")
    assert result.exit_code == 0 and "healthy" in result.output
    report = cli_json(url, "doctor")
    assert report["ok"] and report["problems"] == []
    assert "30 sessions" in {c["name"]: c["summary"] for c in report["checks"]}["sessions"]


def test_doctor_on_a_file_with_garbage_in_the_middle(tmp_path: Path, url: str) -> None:
    _filled_store(url)
    path = tmp_path / "store.db"
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xde\xad\xbe\xef" * 2048)
    result = cli(url, "doctor")
    assert result.exit_code == 1, result.output
    assert "problem(s) found" in result.output and "Traceback" not in result.output
    report = json.loads(cli(url, "doctor", "--json").stdout)
    assert not report["ok"] and report["problems"]


def test_doctor_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(os.urandom(5000))
    result = CliRunner().invoke(main, ["doctor", f"sqlite:///{tmp_path}/junk.db"])
    assert result.exit_code == 1
    assert "not a SQLite database" in result.output


def test_doctor_on_a_missing_store_and_repair_hook(tmp_path: Path, url: str) -> None:
    missing = cli(url, "doctor")
    assert missing.exit_code == 1 and "no store at" in missing.output
    assert not (tmp_path / "store.db").exists()
    statekeel.open(url).close()
    repaired = cli_json(url, "doctor", "--repair")
    assert repaired["ok"] and repaired["repair"] == "nothing to repair"


def test_doctor_reports_an_outdated_schema(tmp_path: Path, url: str) -> None:
    (tmp_path / "store.db").touch()
    report = json.loads(cli(url, "doctor", "--json").stdout)
    assert not report["ok"]
    assert any("statekeel migrate" in p for p in report["problems"])


# -- the installed console script ---------------------------------------------
def _console_script() -> str:
    script = Path(sys.executable).with_name("statekeel")
    if not script.exists():
        missing("the statekeel console script is not installed next to this python")
    return str(script)


def test_console_script_in_a_real_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "STATEKEEL_URL": f"sqlite:///{tmp_path}/env.db"}
    run = [_console_script()]
    set_ = subprocess.run([*run, "state", "set", "app", "greeting", '"hello"'], env=env,
                          capture_output=True, text=True, timeout=60)
    assert set_.returncode == 0, set_.stderr
    got = subprocess.run([*run, "state", "get", "app", "greeting", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and json.loads(got.stdout)["value"] == "hello"
    bad = subprocess.run([*run, "state", "get", "app", "absent"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and "Traceback" not in bad.stderr
    assert (tmp_path / "env.db").exists()
