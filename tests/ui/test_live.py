"""Live updates: the server-sent event stream of a session (/api/events), the page that
listens to it, and the fallback to polling when the browser cannot use it."""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlsplit

import statekeel

from . import scripted_agent
from .harness import http as get
from .harness import serving, with_store
from .test_browser import show


def _append(url: str, text: str) -> None:
    with_store(url, lambda store: store.session(scripted_agent.SESSION).append({"role": "assistant", "content": text}))


def _next_event(res: http.client.HTTPResponse) -> str:
    """The name of the next event on the stream (comment lines skipped)."""
    name = ""
    while True:
        raw = res.readline()
        assert raw, "the stream ended before the next event"
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line == "" and name:
            return name


def test_the_event_stream_pushes_a_change_when_the_session_changes(fresh_url: str) -> None:
    with serving(fresh_url) as base:
        conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=60)  # a bound, not a measurement
        conn.request("GET", f"/api/events?session={scripted_agent.SESSION}")
        res = conn.getresponse()
        assert res.status == 200 and res.headers["Content-Type"].startswith("text/event-stream")
        assert _next_event(res) == "ready"
        _append(fresh_url, "pushed 1")
        assert _next_event(res) == "change"
        with_store(fresh_url, lambda store: store.session(scripted_agent.SESSION).state.put("mood", "calm"))
        assert _next_event(res) == "change"
        conn.close()


def test_the_event_stream_refuses_a_missing_session_plainly(filled_url: str) -> None:
    with serving(filled_url) as base:
        status, body = get(f"{base}/api/events?session=nobody-here")
        assert status == 404 and "no session 'nobody-here'" in body["error"]
        status, body = get(f"{base}/api/events")
        assert status == 400 and "?session=" in body["error"]


def test_the_page_updates_by_server_sent_events(page: Any, fresh_url: str) -> None:
    with serving(fresh_url) as base:
        show(page, base, f"#/session/{scripted_agent.SESSION}")
        page.wait_for_selector("body[data-live='sse']")  # listening: the 2 s polling is off now
        page.evaluate("window.__sameDocument = true")
        _append(fresh_url, "live reply by sse")
        page.wait_for_selector("ol.timeline li >> text=live reply by sse")
        assert page.evaluate("document.body.dataset.updatedBy") == "sse"
        assert page.evaluate("window.__sameDocument") is True


def test_without_event_source_the_page_falls_back_to_polling(page: Any, fresh_url: str) -> None:
    page.add_init_script("delete window.EventSource")
    with serving(fresh_url) as base:
        show(page, base, f"#/session/{scripted_agent.SESSION}")
        assert page.evaluate("document.body.dataset.live") == "poll"
        _append(fresh_url, "live reply by polling")
        page.wait_for_selector("ol.timeline li >> text=live reply by polling")
        assert page.evaluate("document.body.dataset.updatedBy") == "poll"


def test_a_deleted_session_ends_its_stream(fresh_url: str) -> None:
    with serving(fresh_url) as base:
        conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=60)
        conn.request("GET", f"/api/events?session={scripted_agent.SESSION}")
        res = conn.getresponse()
        assert _next_event(res) == "ready"

        def delete(store: statekeel.Store) -> None:
            found = store.find_session(scripted_agent.SESSION)
            assert found is not None and found.delete()
        with_store(fresh_url, delete)
        assert _next_event(res) == "gone"
        conn.close()
