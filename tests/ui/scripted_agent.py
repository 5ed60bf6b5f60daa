"""A scripted agent that fills a store with everything the inspector shows.

Used by the browser tests, ``scripts/ui_screenshots.py`` and ``benchmarks/ui_bench.py``.
Each step waits a few milliseconds so that every entry has its own timestamp and the
timeline order the tests expect is the order the agent wrote in.
"""

from __future__ import annotations

import time
from typing import Any

import statekeel
from statekeel import RunSuspended

SESSION = "support-42"
"""The session the timeline tests read."""

TIMELINE = [
    ("message", "user"), ("tool_call", "assistant"), ("tool_result", "tool"), ("state", "customer"),
    ("decision", "done"), ("checkpoint", "before-refund"), ("message", "assistant"), ("state", "ticket"),
    ("note", "observer"), ("decision", "pending"), ("message", "user"),
]
"""The kinds (and role / key / status / label) of support-42's timeline, in order."""


def _tick() -> None:
    time.sleep(0.003)


def fill_support_session(store: statekeel.Store) -> None:
    """support-42: messages with a tool call, state, two decisions (one incomplete), a note, a checkpoint."""
    s = store.session(SESSION, user="u-7")
    s.append({"role": "user", "content": "My order 991 is late"})
    _tick()
    s.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": '{"id": 991}'}}]})
    _tick()
    s.append({"role": "tool", "tool_call_id": "call_1", "content": '{"status": "late", "days": 9}'})
    _tick()
    s.state.put("customer", {"tier": "gold"})
    _tick()
    with s.decide("open a ticket", rationale="order late", action="tickets.open(991)") as d:
        d.outcome({"ticket": 991})
    _tick()
    s.state.put("ticket", {"id": 991, "status": "open", "order": {"late_days": 9, "tags": ["late"]}})
    _tick()
    s.checkpoint("before-refund")
    _tick()
    s.append({"role": "assistant", "content": "I am refunding order 991."})
    _tick()
    s.state.put("ticket", {"id": 991, "status": "refunding", "order": {"late_days": 9, "tags": ["late", "refund"]}})
    _tick()
    s.notes.write("observer", {"issues": [], "sentiment": "calm"})
    _tick()
    pending = s.decide("refund order 991", rationale="late > 7 days", action="payments.refund(991)")
    pending.__enter__()  # the process "dies" inside the block: the decision stays incomplete
    _tick()
    s.append({"role": "user", "content": "Thanks!"})


def fill_many_sessions(store: statekeel.Store, n: int = 60) -> None:
    """support-00 … and billing-… sessions, some crashed or completed, for search and pages."""
    for i in range(n):
        if f"support-{i:02d}" == SESSION:
            continue
        s = store.session(f"support-{i:02d}", user="u-7" if i % 2 else "u-8")
        s.append({"role": "user", "content": f"hello {i}"})
        if i % 5 == 0:
            s.mark_crashed()
        elif i % 7 == 0:
            s.complete()
    for i in range(5):
        store.session(f"billing-{i}", user="u-9").append({"role": "user", "content": "invoice?"})


def fill_runs(store: statekeel.Store) -> None:
    """report-1 waits for approval, report-2 completed, report-3 failed after retries."""
    run = store.run("report-1")
    run.step("fetch", lambda: {"rows": 120})
    run.step("summarise", lambda: "120 rows, 3 late orders")
    try:
        run.wait_for("approval", prompt="Send the report to finance?")
    except RunSuspended:
        pass
    done = store.run("report-2")
    done.step("fetch", lambda: {"rows": 7})
    done.complete()
    failing = store.run("report-3", max_attempts=2)

    def boom() -> Any:
        raise RuntimeError("upstream timeout")

    for _ in range(2):
        try:
            failing.step("fetch", boom)
        except Exception:  # the step's error is recorded; the run is failed below
            pass
    failing.fail("upstream timeout")


def fill_events(store: statekeel.Store) -> None:
    """orders: 25 events of three types; consumer mailer acknowledged 15 (lag 10)."""
    orders = store.events("orders")
    for i in range(25):
        orders.append(("task_created", "task_done", "task_failed")[i % 3], {"task_id": f"T{i}"}, agent="planner")
    mailer = orders.consumer("mailer")
    mailer.poll(15)
    mailer.ack()
    store.events("audit").append("login", {"user": "u-7"})


def fill_erasure(store: statekeel.Store) -> None:
    store.session("gdpr-1", user="u-erase").append({"role": "user", "content": "forget me"})
    store.erase("u-erase")


def fill(store: statekeel.Store) -> None:
    """Everything: one session with a rich timeline, many sessions, runs, events, an erasure."""
    fill_support_session(store)
    fill_many_sessions(store)
    fill_runs(store)
    fill_events(store)
    fill_erasure(store)
