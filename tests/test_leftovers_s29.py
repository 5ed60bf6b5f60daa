"""Small defects an audit left open (session 29): store URLs, search queries, ``statekeel verify``.

* A store URL naming an option twice (``?durability=full&durability=normal``) silently used one of
  them, on every scheme; it is refused, naming the option.
* Integer URL options took anything ``float()`` reads and truncated it: ``flush_every`` of 30 digits,
  ``pool_max=1.5``; redis-py's own (``db``, ``max_connections``) failed at the first command or
  never; ``?timeout=1e300`` on Redis raised a raw ``OverflowError``. Each is a ConfigurationError
  naming the range.
* ``memory.search("\\ud800")`` returned ``[]``: a lone surrogate is refused as everywhere else.
* ``statekeel verify`` after a whole-store rollback repeated the anchor's complaint once per
  record and log, and called every partition still there "gone"; it now says once that the store
  is older than its anchor, then each partition's stored vs anchored version.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

import statekeel
from statekeel import Encryption, Integrity
from statekeel.backends import open_backend
from statekeel.backends.tiered.config import tiered_url
from statekeel.cli import main
from statekeel.errors import ConfigurationError, InvalidInputError
from statekeel.protocol import ANY, Put
from test_security_audit import rolled_back_tenant

KEY = base64.b64encode(b"L" * 32).decode()
PG = "postgresql://app:secret@127.0.0.1:1/agents"
RD = "redis://127.0.0.1:1/0"


def _tiered(**options: object) -> str:
    return tiered_url(RD, PG, **options)


# -- an option given twice -------------------------------------------------------------------------------
TWICE = {
    "sqlite": ("sqlite:///{tmp}/a.db?durability=full&durability=normal", "durability"),
    "sqlite-same-value": ("sqlite:///{tmp}/a.db?timeout=5&timeout=5", "timeout"),
    "file": ("file://{tmp}/files?x=1&x=2", "x"),
    "memory": ("memory://?a=1&a=1", "a"),
    "postgresql": (PG + "?schema=a&schema=b", "schema"),
    "postgresql-libpq": (PG + "?sslmode=disable&application_name=a&sslmode=require", "sslmode"),
    "redis": (RD + "?prefix=a&prefix=b", "prefix"),
    "tiered": (_tiered() + "&mode=write-behind", "mode"),
    "tiered-flush": (_tiered().replace("flush_every=100", "flush_every=1&flush_every=2"), "flush_every"),
    "tiered-inner": (f"tiered://?hot={quote(RD + '?prefix=a&prefix=b', safe='')}&cold={quote(PG, safe='')}", "prefix"),
    "dynamodb": ("dynamodb://sk_table?region=us-east-1&region=eu-west-1", "region"),
}


@pytest.mark.parametrize("case", sorted(TWICE))
def test_an_option_given_twice_is_refused_naming_it_on_every_scheme(case: str, tmp_path: Path) -> None:
    url, option = TWICE[case]
    with pytest.raises(ConfigurationError, match=rf"the option \?{option}= is given 2 times; give each option once"):
        statekeel.open(url.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_a_keystore_url_naming_an_option_twice_is_refused(tmp_path: Path) -> None:
    keystore = f"sqlite:///{tmp_path}/keys.db?durability=full&durability=normal"
    with pytest.raises(ConfigurationError, match=r"\?durability= is given 2 times"):
        statekeel.open(f"sqlite:///{tmp_path}/data.db", encryption=Encryption(KEY, keystore_url=keystore))
    assert not (tmp_path / "keys.db").exists()


def test_the_refusal_does_not_echo_the_query_which_may_hold_a_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        open_backend(PG + "?password=hunter2&password=hunter3")
    assert "hunter" not in str(info.value) and "secret" not in str(info.value) and "?password=" in str(info.value)


# -- integer options in range --------------------------------------------------------------------------
def _flush_every(raw: str) -> str:
    return _tiered().replace("flush_every=100", f"flush_every={raw}")


OUT_OF_RANGE = {
    "tiered flush_every of 30 digits": (_flush_every("1000000000000000000000000000000"), "flush_every"),
    "tiered flush_every 1.5": (_flush_every("1.5"), "flush_every"),
    "tiered flush_every 1e3": (_flush_every("1e3"), "flush_every"),
    "tiered flush_every 0": (_flush_every("0"), "flush_every"),
    "postgresql pool_max 1.5": (PG + "?pool_max=1.5", "pool_max"),
    "postgresql pool_min of 30 digits": (PG + "?pool_min=" + "9" * 30, "pool_min"),
    "postgresql connect_timeout of 25 digits": (PG + "?connect_timeout=" + "1" * 25, "connect_timeout"),
    "redis db of 22 digits": (RD + "?db=1000000000000000000000", "db"),
    "redis db -1": (RD + "?db=-1", "db"),
    "redis max_connections 0": (RD + "?max_connections=0", "max_connections"),
    "redis max_connections of 25 digits": (RD + "?max_connections=" + "1" * 25, "max_connections"),
    "redis health_check_interval -1": (RD + "?health_check_interval=-1", "health_check_interval"),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
def test_an_integer_option_out_of_range_is_refused_naming_the_range(case: str) -> None:
    url, option = OUT_OF_RANGE[case]
    with pytest.raises(ConfigurationError, match=rf"\?{option}=.* is not a finite whole number from [\d,]+ to [\d,]+"):
        open_backend(url)


@pytest.mark.parametrize("url", [RD + "?timeout=1e300", RD.replace("/0", "/99999999999999999999")])
def test_redis_timeouts_and_databases_beyond_any_use_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="a day|the database in the path"):
        open_backend(url)


def test_sqlite_timeout_beyond_a_day_is_refused_and_a_day_is_fine(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="a day"):
        statekeel.open(f"sqlite:///{tmp_path}/a.db?timeout=1e300")
    with statekeel.open(f"sqlite:///{tmp_path}/a.db?timeout=86400") as store:
        store.app.put("k", 1)


@pytest.mark.parametrize("flush_every", [10**30, 10**5000, 0, 1.5, True], ids=["1e30", "1e5000", "0", "1.5", "True"])
def test_tiered_url_refuses_flush_every_out_of_range(flush_every: object) -> None:
    with pytest.raises(ConfigurationError, match="flush_every=.* must be a whole number from 1 to 10,000,000"):
        _tiered(flush_every=flush_every)


def test_the_bounds_themselves_are_accepted() -> None:
    assert "flush_every=10000000" in _tiered(flush_every=10_000_000)
    parsed = statekeel.backends.parse("memory://?x=%2B0010000000")
    assert parsed.int_option("x", 5, low=1, high=10_000_000) == 10_000_000  # a sign and leading zeros are fine


# -- a search query with a lone surrogate ---------------------------------------------------------------
def test_a_memory_search_for_a_lone_surrogate_is_refused(store: statekeel.Store) -> None:
    memory = store.memory(("notes",), embedder=None)
    memory.put("m1", {"text": "hello"}, text="hello world")
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        memory.search("\ud800")
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        store.session("s").context(budget=2000, query="where \udfff")
    assert [h.key for h in memory.search("hello")] == ["m1"]


# -- verify after a whole-store rollback ------------------------------------------------------------------
@pytest.fixture
def rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A chained SQLite store anchored after two more writes, then restored from a copy taken before them."""
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", KEY)
    monkeypatch.setenv("STATEKEEL_ANCHOR", f"file:{tmp_path / 'anchor.json'}")
    db = tmp_path / "agent.db"
    url = f"sqlite:///{db}"
    with statekeel.open(url, integrity="chain") as store:
        store.session("support-1", user="ann").append({"role": "user", "content": "refund please"})
        store.app.put("limit", 100)
        store.storage.checkpoint_wal()  # type: ignore[attr-defined]
    copy = db.read_bytes()
    with statekeel.open(url, integrity="chain") as store:
        store.session("support-1").append({"role": "assistant", "content": "refunded"})
        store.app.put("limit", 5)
        store.session("support-2").append("hello")
        assert store.anchor().ok
    for f in tmp_path.glob("agent.db*"):
        f.unlink()
    db.write_bytes(copy)
    return url


def test_verify_says_once_that_the_store_is_older_than_its_anchor(rolled_back: str) -> None:
    result = CliRunner().invoke(main, ["verify", rolled_back])
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert lines[1].startswith("anchor: compared with the anchor written at ")
    assert lines[2].startswith("  the store is older than its anchor (written at ")
    assert lines[2].endswith(
        " UTC): 3 partition heads are behind their anchored versions and 1 anchored partition is gone — it was "
        "rolled back (an older copy restored, data and heads together) or changed beneath the API; what was "
        "written since is missing"
    )
    assert lines[3:] == [
        "  partition 'app/_': head at version 1 in the store, anchored at version 2",
        "  partition 'idx/sessions': head at version 1 in the store, anchored at version 2",
        "  partition 'session/support-1': head at version 2 in the store, anchored at version 3",
        "  partition 'session/support-2': gone from the store, anchored at version 2",
        "5 failure(s)",
    ]
    assert lines[0].startswith("3 records, 1 entries in 1 logs, 3 partition heads;")  # the walk read it all


def test_verify_json_lists_the_same_failures_once(rolled_back: str) -> None:
    report = json.loads(CliRunner().invoke(main, ["verify", rolled_back, "--json"]).output)
    failures = report["failures"]
    assert not report["ok"] and len(failures) == len(set(failures)) == 5
    assert failures[0].startswith("the store is older than its anchor")
    assert not any("partition 'app/_' is gone" in f or "rolled back" in f for f in failures[1:])  # said once, first


def test_a_tampered_record_in_a_rolled_back_store_is_still_named(rolled_back: str) -> None:
    with statekeel.open(rolled_back, integrity="chain") as store:
        rec = store.storage.get(store.app._full_key("limit"))
        assert rec is not None and rec.data.startswith(b"100")
        store.storage.apply([Put(rec.key, b"999" + rec.data[3:], rec.codec, ANY)])  # beneath the chain
        failures = store.verify().failures
    assert failures[0].startswith("the store is older than its anchor")
    assert any("app/_/state/limit" in f and "older than its anchor" not in f for f in failures[5:]), failures


def test_a_tenant_handle_reports_its_own_partitions_behind_the_store_anchor(tmp_path: Path) -> None:
    integrity = Integrity(key=KEY, anchor=f"file:{tmp_path}/anchor")
    url = rolled_back_tenant(tmp_path, integrity)
    with statekeel.open(url, integrity=integrity) as store:
        failures = store.tenant("acme").verify().failures
    assert failures[0].startswith("the store is older than its anchor: 1 partition head is behind its anchored version")
    assert "  " + failures[1] == "  partition 'session/s': head at version 2 in the store, anchored at version 3"
