"""The API shape of DESIGN.md section 2, run as written (names may improve, coverage may not shrink)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import statekeel

refunds: list[int] = []


class payments:  # noqa: N801 - the name the design's example uses
    @staticmethod
    def refund(order: int) -> None:
        refunds.append(order)


def make_words() -> list[str]:
    return ["delta", "alpha", "charlie"]


def task_projector(state: dict[str, Any] | None, event: Any) -> dict[str, Any]:
    state = dict(state or {})
    state[event.data["task_id"]] = event.type
    return state


def test_the_design_example_runs_as_written(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path}/agent.db")

    s = store.session("support-42", user="u-7", ttl="2h")
    s.append({"role": "user", "content": "My order is late"})
    assert s.history(last=20) == [{"role": "user", "content": "My order is late"}]
    s.state.put("ticket", {"id": 991}, expect=None)
    s.state.update("ticket", lambda t: {**t, "status": "open"})
    assert s.state.get("ticket") == {"id": 991, "status": "open"}

    with s.decide("refund order 991", rationale="late > 7 days", action="payments.refund(991)") as d:
        payments.refund(991)
    assert refunds == [991] and d is not None
    assert list(store.decisions(incomplete=True)) == []

    run = store.run("report-2026-11-21")
    words = run.step("generate", make_words)
    assert words == make_words() and store.run("report-2026-11-21").step("generate", make_words) == words

    cp = s.checkpoint("before-tool")
    s.state.put("ticket", {"id": 0})
    s.restore(cp)
    assert s.state.get("ticket") == {"id": 991, "status": "open"}
    s.fork(cp, into="support-42-b")
    assert store.session("support-42-b").history() == s.history()

    store.events("orders").append("task_created", {"task_id": "T1"})
    assert store.events("orders").project(task_projector, snapshot_every=1000) == {"T1": "task_created"}

    s.notes.write("observer", {"issues": []})
    note = s.notes.read("observer", max_age="5m")
    assert note.ready and not note.stale and note.value == {"issues": []}
    store.close()
