"""Issue 18: every command finds its store the same way, and listings look the same in JSON.

``--url`` (or ``$STATEKEEL_URL``) names the store for every command, before or
after the subcommand; ``export``/``import``/``copy``/``backup``/``restore``
take it when their URL argument is left out. ``--json`` listings are
``{"items": [...], "next": ...}``. Real SQLite files throughout.
"""

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
    with statekeel.open(f"sqlite:///{tmp_path}/store.db") as store:
        s = store.session("s1", user="u-7")
        s.append({"role": "user", "content": "hello"}, state={"turn": 1})
        s.checkpoint("first")
        store.events("orders").append("task_created", {"id": 1})
    return f"sqlite:///{tmp_path}/store.db"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_url_is_accepted_after_the_subcommand(url: str) -> None:
    page = ok_json(run("sessions", "list", "--url", url, "--json"))
    assert [s["id"] for s in page["items"]] == ["s1"]
    assert ok_json(run("state", "get", "session:s1", "turn", "--url", url, "--json"))["value"] == 1
    assert ok_json(run("doctor", "--url", url, "--json"))["ok"]


def test_url_after_the_subcommand_wins_over_the_environment(url: str, tmp_path: Path) -> None:
    env = {"STATEKEEL_URL": f"sqlite:///{tmp_path}/elsewhere.db"}
    page = ok_json(run("sessions", "list", "--url", url, "--json", env=env))
    assert [s["id"] for s in page["items"]] == ["s1"]
    assert not (tmp_path / "elsewhere.db").exists()


def test_export_and_import_take_the_url_option_and_environment(url: str, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    report = ok_json(run("--url", url, "export", str(out), "--session", "s1", "--json"))
    assert report["records"] >= 1 and (out / "manifest.json").exists()
    target = f"sqlite:///{tmp_path}/target.db"
    ok_json(run("import", str(out), "--json", env={"STATEKEEL_URL": target}))
    with statekeel.open(target) as store:
        assert store.find_session("s1") is not None


def test_export_with_the_environment(url: str, tmp_path: Path) -> None:
    out = tmp_path / "by-env"
    ok_json(run("export", str(out), "--json", env={"STATEKEEL_URL": url}))
    assert (out / "manifest.json").exists()


def test_copy_takes_its_source_from_the_url_option(url: str, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path}/copy.db"
    report = ok_json(run("copy", target, "--url", url, "--json"))
    assert report["verified"]
    with statekeel.open(target) as store:
        assert store.find_session("s1") is not None


def test_backup_and_restore_take_the_url_option(url: str, tmp_path: Path) -> None:
    backup = tmp_path / "b.db"
    ok_json(run("--url", url, "backup", str(backup), "--json"))
    restored = f"sqlite:///{tmp_path}/restored.db"
    ok_json(run("restore", str(backup), "--json", env={"STATEKEEL_URL": restored}))
    with statekeel.open(restored) as store:
        assert store.find_session("s1") is not None


def test_backup_creates_missing_parent_folders(url: str, tmp_path: Path) -> None:
    target = tmp_path / "backups" / "nightly" / "agent.db"
    result = run("backup", url, str(target))
    assert result.exit_code == 0, result.output
    assert target.exists()


def test_copy_with_one_url_and_no_default_store_says_what_to_do(tmp_path: Path) -> None:
    result = run("copy")
    assert result.exit_code == 2 and "DST_URL" in result.output


# -- --json listings ------------------------------------------------------------
LISTINGS = [
    ("sessions", "list"), ("sessions", "history", "s1"), ("state", "list", "session:s1"),
    ("checkpoints", "list", "s1"), ("events", "list", "orders"), ("decisions", "list"), ("runs", "list"),
]


@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_every_json_listing_has_items_and_next(url: str, args: tuple[str, ...]) -> None:
    doc = ok_json(run("--url", url, *args, "--json"))
    assert isinstance(doc, dict) and set(doc) >= {"items", "next"}, doc
    assert isinstance(doc["items"], list)


def test_events_next_is_the_from_of_the_next_page(url: str) -> None:
    with statekeel.open(url) as store:
        for i in range(2, 6):
            store.events("orders").append("task_created", {"id": i})
    first = ok_json(run("--url", url, "events", "list", "orders", "--limit", "3", "--json"))
    assert [e["seq"] for e in first["items"]] == [1, 2, 3] and first["next"] == 4
    rest = ok_json(run("--url", url, "events", "list", "orders", "--from", str(first["next"]), "--json"))
    assert [e["seq"] for e in rest["items"]] == [4, 5] and rest["next"] is None
