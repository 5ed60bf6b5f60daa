"""Retention for LangGraph threads (issue 13): ``prune`` and statekeel's retention caps keep what
remains restorable — delta chains, pending interrupts, and LangGraph's ``DeltaChannel``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import statekeel
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
