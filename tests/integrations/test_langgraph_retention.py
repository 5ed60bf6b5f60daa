"""Retention for LangGraph threads (issue 13): ``prune`` and statekeel's retention caps keep what
remains restorable — delta chains, pending interrupts, and LangGraph's ``DeltaChannel``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Command

import statekeel
from statekeel.cli import main
from statekeel.features import maintenance
from statekeel.errors import InvalidInputError
from statekeel.integrations.langgraph import StatekeelSaver

from .graphs import approval_graph, chat_graph, delta_graph, history, user_turn

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "chat"}}


def test_keep_latest_keeps_a_delta_channel_restorable(store: statekeel.Store) -> None:
    graph = delta_graph(StatekeelSaver(store))
    for i in range(5):
        graph.invoke({"items": [100 + i]}, CONFIG)
    before = graph.get_state(CONFIG).values
    StatekeelSaver(store).prune(["chat"], strategy="keep_latest")
    assert delta_graph(StatekeelSaver(store)).get_state(CONFIG).values == before  # was {"items": []}
    graph = delta_graph(StatekeelSaver(store))
    graph.invoke({"items": [200]}, CONFIG)
    assert graph.get_state(CONFIG).values["items"] == [*before["items"], 200, 11]


def test_apply_retention_keeps_the_stores_cap_of_checkpoints_restorable(store: statekeel.Store) -> None:
    ours, reference = chat_graph(StatekeelSaver(store, segment=4)), chat_graph(InMemorySaver())
    for i in range(10):
        ours.invoke(user_turn(i), CONFIG)
        reference.invoke(user_turn(i), CONFIG)
    store.set_retention(statekeel.Retention(checkpoints=4))
    saver = StatekeelSaver(store)
    assert saver.apply_retention() == 30 - 4
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == history(reference, CONFIG)[:4]
    assert saver.apply_retention() == 0
    ours = chat_graph(StatekeelSaver(store))
    ours.invoke(user_turn(10), CONFIG)
    reference.invoke(user_turn(10), CONFIG)
    assert ours.get_state(CONFIG).values == reference.get_state(CONFIG).values


def test_apply_retention_keeps_a_pending_interrupt_resumable(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    graph = approval_graph(saver)
    for i in range(3):
        graph.invoke(user_turn(i), CONFIG)
        if i < 2:
            graph.invoke(Command(resume="yes"), CONFIG)
    assert asyncio.run(saver.aapply_retention(["chat"], checkpoints=1)) > 0
    resumed = approval_graph(StatekeelSaver(store))
    assert resumed.get_state(CONFIG).tasks[0].interrupts[0].value == {"draft": "answer 5 " + "a" * 800}
    resumed.invoke(Command(resume="yes"), CONFIG)
    assert resumed.get_state(CONFIG).values["turns"] == 1


def test_without_a_cap_retention_changes_nothing(store: statekeel.Store) -> None:
    graph = chat_graph(StatekeelSaver(store))
    for i in range(3):
        graph.invoke(user_turn(i), CONFIG)
    before = history(graph, CONFIG)
    assert StatekeelSaver(store).apply_retention() == 0
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == before


@pytest.mark.parametrize("bad", [{"checkpoints": "3"}, {"checkpoints": -1}])
def test_a_bad_cap_or_strategy_is_refused_and_changes_nothing(store: statekeel.Store, bad: dict[str, Any]) -> None:
    graph = chat_graph(StatekeelSaver(store))
    graph.invoke(user_turn(0), CONFIG)
    before = history(graph, CONFIG)
    saver = StatekeelSaver(store)
    with pytest.raises(InvalidInputError, match="checkpoints"):
        saver.apply_retention(**bad)
    with pytest.raises(InvalidInputError, match="strategy"):
        saver.prune(["chat"], strategy="keep_some")
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == before


def test_store_gc_prunes_langgraph_threads_to_the_stores_cap(store: statekeel.Store) -> None:
    ours, reference = chat_graph(StatekeelSaver(store)), chat_graph(InMemorySaver())
    for i in range(4):
        ours.invoke(user_turn(i), CONFIG)
        reference.invoke(user_turn(i), CONFIG)
    store.set_retention(statekeel.Retention(checkpoints=3))
    report = store.gc()
    assert report.participants == {"langgraph": 12 - 3}  # was {} and every checkpoint kept
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == history(reference, CONFIG)[:3]
    assert store.gc().participants == {"langgraph": 0}


def test_statekeel_gc_on_the_command_line_prunes_langgraph_threads(store: statekeel.Store, store_url: str) -> None:
    graph = chat_graph(StatekeelSaver(store))
    for i in range(3):
        graph.invoke(user_turn(i), CONFIG)
    store.set_retention(statekeel.Retention(checkpoints=2))
    result = CliRunner().invoke(main, ["--url", store_url, "gc", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["participants"] == {"langgraph": 9 - 2}
    assert len(history(chat_graph(StatekeelSaver(store)), CONFIG)) == 2


def test_gc_without_langgraph_threads_or_a_cap_leaves_them_alone(store: statekeel.Store) -> None:
    assert store.gc().participants == {}  # no LangGraph thread: the integration is not even asked
    graph = chat_graph(StatekeelSaver(store))
    for i in range(2):
        graph.invoke(user_turn(i), CONFIG)
    before = history(graph, CONFIG)
    assert store.gc().participants == {"langgraph": 0}
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == before


def test_a_registered_participant_replaces_the_built_in_one(store: statekeel.Store) -> None:
    graph = chat_graph(StatekeelSaver(store))
    graph.invoke(user_turn(0), CONFIG)
    store.set_retention(statekeel.Retention(checkpoints=1))
    seen: list[int] = []
    maintenance.register("langgraph", lambda core: seen.append(1) or StatekeelSaver(core).apply_retention(checkpoints=2))
    try:
        assert store.gc().participants == {"langgraph": 1}
    finally:
        maintenance.unregister("langgraph")
    assert seen == [1]
    with pytest.raises(InvalidInputError, match="callable"):
        maintenance.register("langgraph", "not a function")  # type: ignore[arg-type]
    assert store.gc().participants == {"langgraph": 1}  # the built-in one again: cap 1


def test_gc_of_a_tenant_prunes_that_tenants_threads_only(store: statekeel.Store) -> None:
    acme, other = store.tenant("acme"), store.tenant("other")
    for tenant in (acme, other):
        graph = chat_graph(StatekeelSaver(tenant))
        for i in range(2):
            graph.invoke(user_turn(i), CONFIG)
    for tenant in (acme, other):
        tenant.set_retention(statekeel.Retention(checkpoints=1))  # a tenant's caps are its own
    assert store.gc().participants == {}  # the root store holds no thread of its own
    assert acme.gc().participants == {"langgraph": 5}
    assert len(history(chat_graph(StatekeelSaver(acme)), CONFIG)) == 1
    assert len(history(chat_graph(StatekeelSaver(other)), CONFIG)) == 6


class _Prefixed(JsonPlusSerializer):
    """A custom serializer (as LangGraph's encrypted one, its type names are its own)."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        typ, data = super().dumps_typed(obj)
        return "mine-" + typ, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return super().loads_typed((data[0].removeprefix("mine-"), data[1]))


def test_gc_that_cannot_read_a_threads_serializer_warns_and_does_the_rest(store: statekeel.Store,
                                                                          backend_name: str) -> None:  # fmt: skip
    graph = chat_graph(StatekeelSaver(store, serde=_Prefixed()))
    for i in range(3):
        graph.invoke(user_turn(i), CONFIG)
    store.session("s").append(*({"i": i} for i in range(5)))
    store.session("gone").append({"i": 0})
    store.delete_session("gone")
    store.set_retention(statekeel.Retention(messages=2, checkpoints=1))
    with pytest.warns(RuntimeWarning, match="langgraph.*maintenance.register"):
        report = store.gc()  # was NotImplementedError (LangGraph's default serializer): nothing purged
    assert report.participants == {} and report.messages_dropped == 3
    assert report.purged > 0 or backend_name == "redis"  # the purge ran after it (Redis expires keys itself)
    assert len(history(chat_graph(StatekeelSaver(store, serde=_Prefixed())), CONFIG)) == 9  # untouched
    maintenance.register("langgraph", lambda core: StatekeelSaver(core, serde=_Prefixed()).apply_retention())
    try:
        assert store.gc().participants == {"langgraph": 8}
    finally:
        maintenance.unregister("langgraph")
    assert len(history(chat_graph(StatekeelSaver(store, serde=_Prefixed())), CONFIG)) == 1


_WITHOUT_LANGGRAPH = """
import sys, warnings
sys.modules["langgraph"] = None  # LangGraph not installed: importing it fails
import statekeel
store = statekeel.open(sys.argv[1])
store.set_retention(statekeel.Retention(messages=1))
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    report = store.gc()
print(report.participants, report.messages_dropped, [str(w.message)[:40] for w in seen])
"""


def test_gc_without_langgraph_installed_still_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with statekeel.open(url) as s:
        s.session("s").append({"i": 0}, {"i": 1})
    run = [sys.executable, "-c", _WITHOUT_LANGGRAPH, url]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.split("\n")[0] == "{} 1 []"
    with statekeel.open(url) as s:  # now the store holds a LangGraph thread
        s.session("s").append({"i": 2})
        chat_graph(StatekeelSaver(s)).invoke(user_turn(0), CONFIG)
    out = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split("\n")[0]
    assert out == "{} 1 ['gc skipped the langgraph maintenance (No']"  # and retention of the session applied


def test_a_built_in_participant_that_does_not_import_is_a_bug_not_a_missing_extra(
    store: statekeel.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat_graph(StatekeelSaver(store)).invoke(user_turn(0), CONFIG)
    _, probe = maintenance._BUILTIN["langgraph"]
    monkeypatch.setitem(maintenance._BUILTIN, "langgraph", ("statekeel.integrations.langgraph.moved:task", probe))
    with pytest.raises(ModuleNotFoundError, match="moved"):  # not "install 'statekeel[langgraph]'"
        store.gc()
