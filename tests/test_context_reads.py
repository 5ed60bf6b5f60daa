"""How many backend calls ``s.context()`` makes: each is a round trip on PostgreSQL and Redis.

The working set of a session with every section (standing orders, profile, an open decision,
a waiting run, summaries, a history longer than the budget) is built with the backend's calls
counted by a wrapper around the real backend. Before batching it made 12 calls; the first
reads (view, standing orders) are one ``get_many``, ``log_info`` is read only when a gap must
be reported, and a short page ends a listing without an empty scan to confirm it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import statekeel
from statekeel import Store

from test_context import fill


class CallCounting:
    """A real backend; every call of a backend method is counted by name."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kw: Any) -> Any:
            self.calls[name] += 1
            return found(*args, **kw)

        return counted


def _session(store: Store, n: int, *, summarised: bool) -> statekeel.Session:
    store.app.put("standing_orders", ["Answer in French."])
    store.user("u-7").put("name", "Ada")
    s = store.session("support-42", user="u-7")
    fill(s, n)
    if summarised:
        s.summarize(upto=n, fn=lambda ms: f"{len(ms)} messages about an order")
        s.append({"role": "user", "content": "where is my order 991"})
    s.decide("refund order 991", rationale="late").__enter__()  # left open
    with store.run("report-1") as run:
        run.wait_for("approve", prompt="Publish the report?")
    return s


def _calls(store: Store, **kw: Any) -> Counter[str]:
    found = store.find_session("support-42")
    assert found is not None
    inner = store.backend
    counting = CallCounting(inner)
    store.backend = counting  # type: ignore[assignment]
    try:
        ws = found.context(**kw)
    finally:
        store.backend = inner
    assert ws.section("messages") and ws.section("decisions") and ws.section("runs") and ws.section("profile")
    return counting.calls


def test_a_summarised_session_takes_eight_calls(store: Store) -> None:
    _session(store, 40, summarised=True)
    calls = _calls(store, budget=4000, memory=False)
    assert calls == {"get_many": 3, "read": 1, "scan": 4}, calls  # no log_info, no empty confirming scans


def test_a_gap_to_report_adds_only_log_info(store: Store) -> None:
    _session(store, 600, summarised=False)  # more than 4,000 tokens, nothing summarised: a gap to report
    calls = _calls(store, budget=4000, memory=False)
    assert calls == {"get_many": 3, "read": 2, "scan": 4, "log_info": 1}, calls  # two pages of history
