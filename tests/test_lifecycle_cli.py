"""``statekeel gc`` and ``statekeel runs list --stale-after`` on a real SQLite file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner, Result

import statekeel
from statekeel import Retention
from statekeel.cli import main


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args])


def test_gc_applies_caps_purges_deleted_sessions_and_reclaims_bytes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/gc.db"
    with statekeel.open(url) as store:
        store.set_retention(Retention(messages=10))
        for n in range(20):
            s = store.session(f"s{n}")
            s.append(*({"text": "lorem ipsum " * 40, "i": i} for i in range(200)))
        for n in range(10):
            store.delete_session(f"s{n}")
    done = cli(url, "gc", "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert out["sessions"] == 10 and out["messages_dropped"] == 10 * 190 and out["purged"] > 0
    assert out["bytes_after"] < out["bytes_before"] / 4, out  # VACUUM gave the pages back
    with statekeel.open(url) as store:
        assert [i.id for i in store.sessions()] == [f"s{n}" for n in range(10, 20)]
        assert [m["i"] for m in store.session("s15").history()] == list(range(190, 200))
    again = cli(url, "gc")
    assert again.exit_code == 0 and "0 messages and 0 checkpoints dropped" in again.output
    assert "bytes:" in again.output


def test_runs_list_stale_after_and_mark_crashed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    with statekeel.open(url) as store:
        store.run("dead").step("a", int, 1)
        with store.run("done") as run:
            run.step("a", int, 1)
    time.sleep(0.3)
    listed = cli(url, "runs", "list", "--stale-after", "0.2s", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)["items"]] == ["dead"]
    marked = cli(url, "runs", "list", "--stale-after", "0.2s", "--mark-crashed")
    assert marked.exit_code == 0 and "dead" in marked.output and "crashed" in marked.output
    assert json.loads(cli(url, "runs", "list", "--status", "crashed", "--json").stdout)["items"][0]["id"] == "dead"
    refused = cli(url, "runs", "list", "--mark-crashed")
    assert refused.exit_code == 2 and "--stale-after" in refused.output
