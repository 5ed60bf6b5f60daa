"""``statekeel verify`` and the doctor's chain check, through the CLI, on a real SQLite file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import statekeel
from statekeel import Integrity
from statekeel.cli import main
from statekeel.protocol import Load

KEY = base64.b64encode(b"V" * 32).decode()


@pytest.fixture
def chained_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", KEY)
    monkeypatch.setenv("STATEKEEL_ANCHOR", f"file:{tmp_path / 'anchor.json'}")
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    with statekeel.open(url, integrity="chain") as store:
        s = store.session("support-1", user="ann")
        s.append({"role": "user", "content": "refund please"}, state={"stage": "triage"})
        store.app.put("limit", 100)
    return url


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_verify_passes_anchors_and_finds_a_rollback(chained_url: str) -> None:
    code, out = _run("verify", chained_url, "--anchor")
    assert code == 0 and "verified" in out and "anchored now" in out
    with statekeel.open(chained_url, integrity="chain") as store:
        old = store.storage.get(store.app._full_key("limit"))
        store.app.put("limit", 5)
        store.anchor()  # the anchor knows version 2
        assert old is not None
        store.storage.apply([Load(old)])  # roll the record back, head and all would be next
    code, out = _run("verify", chained_url, "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and any("older version" in f for f in report["failures"])


def test_doctor_includes_the_chain_check(chained_url: str) -> None:
    code, out = _run("doctor", chained_url, "--json")
    chain = next(c for c in json.loads(out)["checks"] if c["name"] == "chain")
    assert code == 0 and chain["ok"] and chain["counts"]["records"] >= 2
    with statekeel.open(chained_url, integrity="chain") as store:
        rec = store.storage.get(store.app._full_key("limit"))
        assert rec is not None
        store.storage.apply([Load(rec.__class__(rec.key, rec.data, rec.codec, rec.version, rec.created_at - 1,
                                                rec.updated_at, rec.expires_at))])  # fmt: skip
    code, out = _run("doctor", chained_url, "--json")
    chain = next(c for c in json.loads(out)["checks"] if c["name"] == "chain")
    assert code == 1 and any("app/_/state/limit" in p for p in chain["problems"])


def test_verify_without_the_key_says_how_to_give_it(chained_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATEKEEL_MASTER_KEY")
    code, out = _run("verify", chained_url)
    assert code == 1 and "integrity='chain'" in out and "STATEKEEL_MASTER_KEY" in out
    with pytest.raises(statekeel.KeyUnavailableError, match="tamper-evident"):
        statekeel.open(chained_url)


def test_chain_mode_refuses_a_store_that_already_holds_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    with statekeel.open(url) as store:
        store.app.put("k", 1)
    with pytest.raises(statekeel.ConfigurationError, match="statekeel copy"):
        statekeel.open(url, integrity=Integrity(key=KEY))


def test_a_plain_store_copied_into_a_chained_one_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = f"sqlite:///{tmp_path / 'plain.db'}", f"sqlite:///{tmp_path / 'chained.db'}"
    with statekeel.open(src) as store:
        s = store.session("old", user="ann")
        s.append({"role": "user", "content": "hello"}, state={"step": 1})
        store.events("audit").append("opened", {"by": "ann"})
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", KEY)
    monkeypatch.setenv("STATEKEEL_INTEGRITY", "chain")
    code, out = _run("copy", src, dst)
    assert code == 0 and "verified" in out
    code, out = _run("verify", dst)
    assert code == 0 and "verified" in out
    with statekeel.open(dst) as store:
        assert store.session("old").history() == [{"role": "user", "content": "hello"}]


def test_an_anchor_kept_by_callables(tmp_path: Path) -> None:
    kept: dict[str, bytes] = {}
    anchor = (lambda data: kept.__setitem__("a", data), lambda: kept.get("a"))
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with statekeel.open(url, integrity=Integrity(key=KEY, anchor=anchor)) as store:
        store.app.put("k", 1)
        assert store.anchor().ok and "a" in kept
        store.app.put("k", 2)
        assert store.verify().ok and "compared with the anchor" in store.verify().anchor


def test_the_documented_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/security.md, "Tamper-evident mode": its Python block, run as written in an empty directory."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Tamper-evident mode\n"):]
    section = section[: section.index("\n## ", 5)]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", KEY)
    scope: dict[str, object] = {"statekeel": statekeel}
    exec(compile(block, "docs/security.md", "exec"), scope)  # noqa: S102 - the documented example itself
    store = scope["store"]
    assert isinstance(store, statekeel.Store) and store.verify().ok
    store.close()
