"""Issue 11 item 5: keys a person can operate, and the docs' examples run as written.

The shell and Python examples of the encryption sections of docs/security.md are
extracted and run literally (bash and the venv's python, in a temporary directory,
with the real `statekeel` command), on real SQLite files.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import statekeel
from statekeel import Encryption
from statekeel.backends import open_backend
from statekeel.cli import main
from statekeel.core import layout
from statekeel.core.keyring import key_id
from statekeel.errors import KeyUnavailableError
from statekeel.protocol import Put

DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"
BIN = Path(sys.executable).parent
RAW = b"S" * 32
KEY = base64.b64encode(RAW).decode()


def _section(title: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    level = title.split(" ")[0]
    nxt = re.search(rf"\n{'#' * len(level)} ", text[start + len(title) + 2 :])
    return text[start : start + len(title) + 2 + (nxt.start() if nxt else len(text))]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEKEEL_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, check=False)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "statekeel"), *args], env=_env(**env), capture_output=True, text=True,
                          check=False)


# -- keys id ------------------------------------------------------------------------------
def test_keys_id_is_derived_from_the_key_whatever_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "master").write_text(KEY + "\n")
    runner = CliRunner()
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", f"k1:{KEY}")
    for source in ([], ["env:STATEKEEL_MASTER_KEY"], [f"file:{tmp_path}/master"], [KEY]):
        result = runner.invoke(main, ["keys", "id", *source])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(key_id(RAW)), result.output
    result = runner.invoke(main, ["keys", "id", "--json", f"new:{base64.b64encode(b'N' * 32).decode()},{KEY}"])
    rows = json.loads(result.output)
    assert [(r["id"], r["current"]) for r in rows] == [(key_id(b"N" * 32), True), (key_id(RAW), False)]


def test_keys_id_of_a_bad_key_says_how_to_supply_one() -> None:
    result = CliRunner().invoke(main, ["keys", "id", "not-a-key"])
    assert result.exit_code == 1 and "32 bytes" in result.output and "STATEKEEL_MASTER_KEY" in result.output


def test_the_id_shown_is_the_one_errors_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    with statekeel.open(url, encryption=Encryption(master_key=KEY)) as store:
        store.app.put("k", "v")
    shown = _cli("keys", "id", KEY).stdout.split()[0]
    refused = _cli("--url", url, "state", "get", "app", "k")
    assert refused.returncode == 1 and shown in refused.stderr and "STATEKEEL_MASTER_KEY" in refused.stderr


# -- rotation from a bare key ----------------------------------------------------------------
def test_rotation_works_when_the_old_bare_key_is_given_a_label(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    new = base64.b64encode(b"N" * 32).decode()
    with statekeel.open(url, encryption=Encryption(master_key=KEY)) as store:  # created with a bare key
        store.app.put("k", "v")
    done = _cli("--url", url, "keys", "rotate", STATEKEEL_MASTER_KEY=f"k2:{new},k1:{KEY}")
    assert done.returncode == 0, done.stderr
    with statekeel.open(url, encryption=Encryption(master_key=new)) as store:  # the new key alone, bare
        assert store.app.get("k") == "v"
    with statekeel.open(url, encryption=Encryption(master_key=KEY)) as old:
        with pytest.raises(KeyUnavailableError, match=key_id(b"N" * 32)):
            old.app.get("k")


# -- encrypt, reencrypt, doctor through the command ------------------------------------------
def test_keys_encrypt_needs_a_key_and_then_converts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/plain.db"
    with statekeel.open(url) as store:
        store.session("s").append("hello")
    missing = _cli("keys", "encrypt", url)
    assert missing.returncode == 1 and "STATEKEEL_MASTER_KEY" in missing.stderr
    done = _cli("keys", "encrypt", url, "--json", STATEKEEL_MASTER_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["entries"] == 1
    assert _cli("doctor", url, STATEKEEL_MASTER_KEY=KEY).returncode == 0
    with statekeel.open(url, encryption=Encryption(master_key=KEY)) as store:
        assert store.session("s").history() == ["hello"]


def test_doctor_exits_1_listing_planted_plaintext(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    with statekeel.open(url, encryption=Encryption(master_key=KEY)) as store:
        store.app.put("k", "v")
        planted = store.app._full_key("k")
        store.storage.apply([Put(planted, b'"planted"', "json")])
    for env in ({"STATEKEEL_MASTER_KEY": KEY}, {}):
        report = _cli("doctor", url, "--json", **env)
        assert report.returncode == 1
        problems = json.loads(report.stdout)["problems"]
        assert any(planted in p and "without encryption" in p for p in problems), problems


def test_reencrypt_lists_what_it_found_in_plaintext(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    with statekeel.open(url, encryption=Encryption(master_key=KEY)) as store:
        store.app.put("k", "v")
        store.storage.apply([Put(store.app._full_key("old"), b'"plain"', "json")])
    done = _cli("--url", url, "keys", "reencrypt", "--json", STATEKEEL_MASTER_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plaintext_encrypted"] == ["app/_/state/old"]
    assert _cli("doctor", url, STATEKEEL_MASTER_KEY=KEY).returncode == 0


# -- the docs' examples, run as written ------------------------------------------------------
def test_docs_encryption_examples_run_as_written(tmp_path: Path) -> None:
    section = _section("## Encryption at rest")
    (python_example,) = _blocks(section, "python")
    ran = subprocess.run([str(BIN / "python"), "-c", python_example], cwd=tmp_path,
                         env=_env(STATEKEEL_MASTER_KEY=KEY), capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    with statekeel.open(f"sqlite:///{tmp_path}/agent.db",
                        encryption=Encryption(master_key=KEY, keystore_url=f"sqlite:///{tmp_path}/keys.db")) as store:
        assert store.app.get("greeting") == "hello"
        assert store.storage.get(layout.ENCRYPTION_MARKER) is not None


def test_docs_encrypting_example_runs_as_written(tmp_path: Path) -> None:
    (script,) = _blocks(_section("### Encrypting an existing store"), "bash")
    with statekeel.open(f"sqlite:///{tmp_path}/plain.db") as store:
        store.app.put("k", "v")
    ran = _bash(script, tmp_path)
    assert ran.returncode == 0, ran.stderr
    with pytest.raises(KeyUnavailableError):
        statekeel.open(f"sqlite:///{tmp_path}/plain.db")  # now encrypted under the key the example made


def test_docs_rotation_example_runs_as_written(tmp_path: Path) -> None:
    (python_example,) = _blocks(_section("## Encryption at rest"), "python")
    subprocess.run([str(BIN / "python"), "-c", python_example], cwd=tmp_path,
                   env=_env(STATEKEEL_MASTER_KEY=KEY), check=True, capture_output=True)
    (script,) = _blocks(_section("### Rotation"), "bash")
    ran = _bash(script, tmp_path, STATEKEEL_MASTER_KEY=KEY)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert key_id(RAW) in ran.stdout  # `statekeel keys id` showed the old key's id
    assert "healthy" in ran.stdout  # the closing doctor decoded every value with the new key alone
    keystore = open_backend(f"sqlite:///{tmp_path}/keys.db")
    try:
        masters = {v["master"] for r in keystore.scan("keys/") for v in json.loads(r.data)["versions"].values()}
    finally:
        keystore.close()
    assert masters and key_id(RAW) not in masters  # no data key is wrapped by the old master key any more
