"""``statekeel doctor --quick``: what the Kubernetes probes in deploy/k8s/ run.

It opens the store, checks the schema and makes one read; it walks nothing, so its cost
does not grow with the store. The proof that it reads no record: a store with a damaged
record, which the full doctor reports and --quick does not. And it exits 1 when the store
cannot answer: a server that is down, a schema not migrated, a file that is missing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import start_server

import statekeel
from statekeel.cli import main
from statekeel.testing.servers import RedisServer


def doctor(url: str, *flags: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["doctor", url, "--json", *flags])
    return result.exit_code, json.loads(result.output)


def test_quick_doctor_passes_on_a_healthy_store(store_url: str) -> None:
    with statekeel.open(store_url) as store:
        store.session("s").append({"role": "user", "content": "hi"})
    code, report = doctor(store_url, "--quick")
    assert code == 0, report
    assert [c["name"] for c in report["checks"]] == ["open", "schema", "round trip"]


def test_quick_doctor_reads_no_record(tmp_path: Path) -> None:
    """A damaged record: the full doctor finds it (it reads everything), --quick does not."""
    db = tmp_path / "state.db"
    url = f"sqlite:///{db}"
    with statekeel.open(url) as store:
        s = store.session("s")
        for i in range(50):
            s.state.put(f"k{i}", {"id": 991})
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("UPDATE sk_kv SET data = CAST(replace(data, '991', '992') AS BLOB) WHERE key LIKE '%/k7'")
    finally:
        conn.close()
    full_code, full = doctor(url)
    assert full_code == 1 and any("k7" in p for p in full["problems"]), full
    quick_code, quick = doctor(url, "--quick")
    assert quick_code == 0 and quick["problems"] == [], quick


def test_quick_doctor_exits_1_when_the_server_is_down() -> None:
    server = start_server(RedisServer())
    try:
        url = server.url
        with statekeel.open(url) as store:
            store.session("s").append("hi")
        assert doctor(url, "--quick")[0] == 0
    finally:
        server.stop()
    code, report = doctor(url, "--quick")
    assert code == 1
    assert report["checks"][0]["name"] == "open" and "unreachable" in report["problems"][0], report


def test_quick_doctor_exits_1_on_a_schema_not_migrated(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()  # a file, but no statekeel schema in it
    code, report = doctor(f"sqlite:///{db}", "--quick")
    assert code == 1
    assert any("statekeel migrate" in p for p in report["problems"]), report


def test_quick_doctor_exits_1_on_a_missing_store(tmp_path: Path) -> None:
    code, report = doctor(f"sqlite:///{tmp_path / 'nowhere.db'}", "--quick")
    assert code == 1 and "no store at" in report["problems"][0]
    assert not (tmp_path / "nowhere.db").exists(), "a probe must never create the store"


def test_quick_and_repair_do_not_go_together(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["doctor", f"sqlite:///{tmp_path / 'x.db'}", "--quick", "--repair"])
    assert result.exit_code == 2 and "--quick and --repair" in result.output
