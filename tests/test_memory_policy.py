"""Forgetting policies recorded in the store and applied by ``statekeel gc`` with no arguments."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result

import statekeel
from statekeel import InvalidInputError
from statekeel.cli import main
from statekeel.features.memory.policy import Policy


def _cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args])


def _fill(store: statekeel.Store, ns: tuple[str, ...], n: int) -> None:
    mem = store.memory(ns, embedder=None)
    for i in range(n):  # one by one: each a later updated_at than the one before
        mem.put(f"k{i}", f"note number {i} of {'/'.join(ns)}")


def test_gc_applies_the_recorded_policies(store_url: str) -> None:
    with statekeel.open(store_url) as store:
        _fill(store, ("user", "u-7"), 5)
        _fill(store, ("user", "u-8"), 3)
        _fill(store, ("team",), 2)
        out = _cli(store_url, "memory", "policy", "user", "--keep", "2")
        assert out.exit_code == 0 and "keep=2" in out.output, out.output
        assert store.memory(("user",), embedder=None).policy() == Policy(keep=2)
        assert store.memory_namespaces() == [("team",), ("user", "u-7"), ("user", "u-8")]  # the policy is no namespace
        out = _cli(store_url, "gc", "--json")
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["memories_forgotten"] == {"user": 4}
        assert [i.key for i in store.memory(("user", "u-7"), embedder=None).items()] == ["k3", "k4"]
        assert [i.key for i in store.memory(("user", "u-8"), embedder=None).items()] == ["k1", "k2"]
        assert len(store.memory(("team",), embedder=None).items()) == 2  # no policy: untouched
        assert json.loads(_cli(store_url, "gc", "--json").stdout)["memories_forgotten"] == {"user": 0}


def test_age_and_inactivity_policies(store_url: str) -> None:
    with statekeel.open(store_url) as store:
        _fill(store, ("old",), 2)
        _fill(store, ("idle",), 2)
        store.memory(("old",), embedder=None).set_policy(max_age=0.01)
        assert _cli(store_url, "memory", "policy", "idle", "--inactive", "3").exit_code == 0
        time.sleep(3.1)  # "fresh" below must stay younger than 3 s until gc runs: a wide margin
        store.memory(("idle",), embedder=None).put("fresh", "written just now")
        out = _cli(store_url, "gc")
        assert out.exit_code == 0 and "memory old: 2 forgotten" in out.output and "memory idle: 2" in out.output
        assert [i.key for i in store.memory(("idle",), embedder=None).items()] == ["fresh"]
        assert store.memory(("old",), embedder=None).items() == []


def test_show_clear_and_bad_input_leave_policies_unchanged(store_url: str) -> None:
    with statekeel.open(store_url) as store:
        _fill(store, ("a",), 1)
        store.memory(("a",), embedder=None).set_policy(inactive="30d", keep=10)
        store.memory(("b",), embedder=None).set_policy(max_age="1h")
        out = _cli(store_url, "memory", "policy", "a", "--json")
        assert json.loads(out.output)["policy"] == {"max_age": None, "inactive": 30 * 86400, "keep": 10}
        bad: list[Any] = [lambda: store.memory(("a",), embedder=None).set_policy(keep=-1),
                          lambda: store.memory(("a",), embedder=None).set_policy(max_age="soon"),
                          lambda: store.memory(("a",), embedder=None).set_policy(keep=True)]
        for call in bad:
            with pytest.raises(InvalidInputError):
                call()
        assert _cli(store_url, "memory", "policy", "a", "--keep", "-1").exit_code != 0
        assert _cli(store_url, "memory", "policy", "a", "--clear", "--keep", "3").exit_code != 0
        assert store.memory(("a",), embedder=None).policy() == Policy(inactive=30 * 86400, keep=10)
        out = _cli(store_url, "memory", "policy", "a", "--clear")
        assert out.exit_code == 0 and "no forgetting policy" in out.output
        assert store.memory(("b",), embedder=None).policy() == Policy(max_age=3600)  # the other one stays
        store.memory(("b",), embedder=None).set_policy()  # all None: removed
        assert json.loads(_cli(store_url, "gc", "--json").stdout)["memories_forgotten"] == {}
