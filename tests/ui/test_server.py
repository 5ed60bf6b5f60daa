"""The inspector's HTTP API without a browser: who may ask, refusals, bad input, pages,
encrypted stores with and without their key, Redis, and the `statekeel ui` command."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import statekeel
from conftest import start_server
from statekeel import Encryption, InvalidInputError
from statekeel.testing.servers import RedisServer
from statekeel.ui import Inspector, make_server
from statekeel.ui.timeline import field_changes

from . import scripted_agent
from .harness import http, serving, with_store

KEY = base64.b64encode(b"K" * 32).decode()
WRITE = {"X-Statekeel-Write": "1"}


def test_binding_beyond_loopback_requires_a_token(tmp_path: Path) -> None:
    def bind(store: statekeel.Store) -> None:
        with pytest.raises(InvalidInputError, match="token is required"):
            make_server(Inspector(store), "0.0.0.0", 0)

    with_store(f"sqlite:///{tmp_path}/a.db", bind)


def test_without_the_token_every_request_is_refused(filled_url: str) -> None:
    with serving(filled_url, host="0.0.0.0", token="s3cret-token") as base:
        for path in ("/", "/static/app.js", "/api/overview", "/api/sessions"):
            status, body = http(base + path)
            assert status == 403 and "token is required" in body["error"], path
        assert http(base + "/api/overview?token=wrong")[0] == 403
        status, body = http(base + "/api/sessions?token=s3cret-token")
        assert status == 200 and body["items"]
        assert http(base + "/api/overview", headers={"X-Statekeel-Token": "s3cret-token"})[0] == 200
        assert http(base + "/api/overview", headers={"Cookie": "statekeel_token=s3cret-token"})[0] == 200


def test_the_page_sets_the_token_cookie_for_its_assets(filled_url: str, page: Any) -> None:
    with serving(filled_url, host="0.0.0.0", token="s3cret-token") as base:
        page.goto(f"{base}/?token=s3cret-token#/sessions")
        page.wait_for_selector("table[aria-label=sessions] >> text=support-42")
        assert "token" not in page.url  # taken out of the address bar


def test_loopback_answers_only_loopback_host_names(filled_url: str) -> None:
    with serving(filled_url) as base:
        status, body = http(base + "/api/overview", headers={"Host": "evil.example:8765"})
        assert status == 403 and "loopback" in body["error"]
        assert http(base + "/api/overview", headers={"Host": "localhost:8765"})[0] == 200


def test_writes_are_refused_without_allow_writes_and_change_nothing(fresh_url: str) -> None:
    decision = with_store(fresh_url, lambda s: s.decisions(incomplete=True).items[0].id)
    body = {"decision": decision, "outcome": "ok", "confirm": True}
    with serving(fresh_url) as base:
        status, out = http(base + "/api/action/resolve", body=body, headers=WRITE)
        assert status == 403 and "statekeel ui --allow-writes" in out["error"]
    assert with_store(fresh_url, lambda s: len(s.decisions(incomplete=True))) == 1


def test_a_write_needs_its_header_and_a_confirmation(fresh_url: str) -> None:
    decision = with_store(fresh_url, lambda s: s.decisions(incomplete=True).items[0].id)
    with serving(fresh_url, allow_writes=True) as base:
        status, out = http(base + "/api/action/resolve", body={"decision": decision, "outcome": 1, "confirm": True})
        assert status == 403 and "X-Statekeel-Write" in out["error"]
        status, out = http(base + "/api/action/resolve", body={"decision": decision, "outcome": 1}, headers=WRITE)
        assert status == 400 and '"confirm": true' in out["error"]
        status, out = http(base + "/api/action/explode", body={"confirm": True}, headers=WRITE)
        assert status == 400 and "restore, fork, resolve, resume, delete" in out["error"]
        status, out = http(base + "/api/action/fork", body={"session": scripted_agent.SESSION, "checkpoint": 1,
                                                             "into": "support-41", "confirm": True}, headers=WRITE)
        assert status == 400 and "already exists" in out["error"]
        status, out = http(base + "/api/action/resolve", body={"decision": decision, "outcome": 1, "confirm": True},
                           headers=WRITE)
        assert status == 200 and out["resolved"]["status"] == "resolved"
    assert with_store(fresh_url, lambda s: len(s.decisions(incomplete=True))) == 0


def test_delete_removes_the_session_when_the_store_can(fresh_url: str) -> None:
    with serving(fresh_url, allow_writes=True) as base:
        can = http(base + "/api/overview")[1]["can_delete"]
        status, out = http(base + "/api/action/delete", body={"session": "billing-3", "confirm": True}, headers=WRITE)
    gone = with_store(fresh_url, lambda s: s.session_info("billing-3") is None)
    assert (status, gone) == ((200, True) if can else (400, False)), out


def test_bad_requests_get_clear_errors(filled_url: str) -> None:
    with serving(filled_url) as base:
        cases = {
            "/api/sessions?limit=0": (400, "limit must be a whole number from 1 to 500"),
            "/api/sessions?status=sleepy": (400, "status must be one of"),
            "/api/sessions?status=crashed&stale=5m": (400, "stale filter only applies to active"),
            "/api/session?id=nope": (404, "no session 'nope'"),
            "/api/session": (400, "needs ?id="),
            "/api/timeline?id=support-42&before=x": (400, "before must be a history seq"),
            "/api/diff?id=support-42&a=nope": (404, "nope"),
            "/api/run?id=nope": (404, "no run 'nope'"),
            "/api/unknown": (404, "no API 'unknown'"),
            "/static/../../etc/passwd": (404, "no asset"),
        }
        for path, (status, text) in cases.items():
            got, body = http(base + path)
            assert got == status and text in body["error"], (path, got, body)


def test_search_pages_stay_inside_the_prefix(filled_url: str) -> None:
    with serving(filled_url) as base:
        first = http(base + "/api/sessions?q=support-4&limit=4")[1]
        assert [i["id"] for i in first["items"]] == ["support-40", "support-41", "support-42", "support-43"]
        second = http(base + f"/api/sessions?q=support-4&limit=4&after={first['next']}")[1]
        third = http(base + f"/api/sessions?q=support-4&limit=4&after={second['next']}")[1]
        assert [i["id"] for i in second["items"] + third["items"]] == [f"support-4{i}" for i in range(4, 10)]
        assert third["next"] is None
        crashed = http(base + "/api/sessions?q=support-&status=crashed&user=u-7")[1]["items"]
        assert [i["id"] for i in crashed] == ["support-05", "support-15", "support-25", "support-35", "support-45",
                                              "support-55"]


def test_the_timeline_pages_back_through_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/long.db"

    def fill(store: statekeel.Store) -> None:
        s = store.session("long")
        for i in range(1, 26):
            s.append({"role": "user", "content": f"m{i}"})
            if i == 12:
                s.notes.write("observer", {"at": i})

    with_store(url, fill)
    with serving(url) as base:
        newest = http(base + "/api/timeline?id=long&limit=10")[1]
        assert [e["seq"] for e in newest["entries"]] == list(range(16, 26)) and newest["older"] == 16
        middle = http(base + f"/api/timeline?id=long&limit=10&before={newest['older']}")[1]
        assert [e.get("seq") for e in middle["entries"]] == [6, 7, 8, 9, 10, 11, 12, None, 13, 14, 15]
        oldest = http(base + f"/api/timeline?id=long&limit=10&before={middle['older']}")[1]
        assert [e["seq"] for e in oldest["entries"]] == [1, 2, 3, 4, 5] and oldest["older"] is None


def test_the_diff_compares_two_checkpoints_or_one_with_now(fresh_url: str) -> None:
    with_store(fresh_url, lambda store: store.find_session(scripted_agent.SESSION).checkpoint("after"))  # type: ignore[union-attr]
    with serving(fresh_url) as base:
        same = http(base + f"/api/diff?id={scripted_agent.SESSION}&a=2&b=after")[1]
        assert same["changes"] == [] and same["history_from"] == same["history_to"] == 5
        back = http(base + f"/api/diff?id={scripted_agent.SESSION}&a=after&b=before-refund")[1]
        assert {(c["op"], ".".join(map(str, c["path"]))) for c in back["changes"]} == {
            ("changed", "ticket.status"), ("removed", "ticket.order.tags.1")}
        assert back["history_from"] == 5 and back["history_to"] == 3


def test_field_changes_are_nested_and_leaf_level() -> None:
    old = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": True}
    new = {"a": 1, "b": {"c": [1, 3, 4], "d": "x"}, "new": None}
    assert field_changes(["k"], old, new) == [
        {"op": "changed", "path": ["k", "b", "c", 1], "from": 2, "to": 3},
        {"op": "added", "path": ["k", "b", "c", 2], "to": 4},
        {"op": "removed", "path": ["k", "gone"], "from": True},
        {"op": "added", "path": ["k", "new"], "to": None},
    ]
    assert field_changes(["k"], 1, True) == [{"op": "changed", "path": ["k"], "from": 1, "to": True}]


@pytest.fixture
def encrypted_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/enc.db"

    def fill() -> None:
        with statekeel.open(url, encryption=Encryption(master_key=KEY)) as store:
            scripted_agent.fill_support_session(store)

    from .harness import in_thread
    in_thread(fill)
    return url


def test_an_encrypted_store_without_its_key_opens_locked(encrypted_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATEKEEL_MASTER_KEY", raising=False)
    with serving(encrypted_url) as base:
        overview = http(base + "/api/overview")[1]
        assert overview["encryption"] == "locked" and "STATEKEEL_MASTER_KEY" in overview["locked"]
        assert http(base + "/api/counts")[1]["sessions"] == 1
        status, body = http(base + "/api/sessions")
        assert status == 423 and "STATEKEEL_MASTER_KEY" in body["error"]
    with serving(encrypted_url, encryption=Encryption(master_key=KEY)) as base:
        assert http(base + "/api/overview")[1]["encryption"] == "on"
        kinds = [e["kind"] for e in http(base + f"/api/timeline?id={scripted_agent.SESSION}")[1]["entries"]]
        assert kinds == [k for k, _ in scripted_agent.TIMELINE]


def test_the_locked_page_says_what_is_missing(encrypted_url: str, page: Any) -> None:
    with serving(encrypted_url) as base:
        page.goto(f"{base}/#/")
        assert "STATEKEEL_MASTER_KEY" in page.locator("[data-testid=locked]").inner_text()
        page.goto(f"{base}/#/sessions")
        page.wait_for_selector("h1:text('Locked')")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    srv = start_server(RedisServer())
    yield srv
    srv.stop()


def test_the_inspector_on_redis(redis_server: RedisServer, page: Any) -> None:
    url = f"{redis_server.url}?prefix=ui"
    with_store(url, scripted_agent.fill)
    with serving(url) as base:
        page.goto(f"{base}/#/session/{scripted_agent.SESSION}")
        page.wait_for_selector("ol.timeline li")
        kinds = page.locator("ol.timeline > li").evaluate_all("els => els.map(e => e.dataset.kind)")
        assert kinds == [k for k, _ in scripted_agent.TIMELINE]
        assert http(base + "/api/overview")[1]["backend"] == "RedisBackend"
        assert [i["id"] for i in http(base + "/api/sessions?q=billing-")[1]["items"]] == [f"billing-{i}" for i in range(5)]


def test_the_command_prints_a_token_url_beyond_loopback(filled_url: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [str(Path(sys.executable).with_name("statekeel")), "ui", filled_url, "--host", "0.0.0.0", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "?token=" in first and "read-only" in proc.stdout.readline()
        address = first.split(" at ", 1)[1].strip()
        port, token = address.split(":")[2].split("/")[0], address.split("?token=")[1]
        assert http(f"http://127.0.0.1:{port}/api/overview")[0] == 403
        assert http(f"http://127.0.0.1:{port}/api/overview?token={token}")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
