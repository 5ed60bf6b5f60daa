"""Session search beyond the id prefix: a substring of the id, with status and user filters,
bounded by SCAN_LIMIT sessions read per request ("more…" continues)."""

from __future__ import annotations

from typing import Any

import pytest

import statekeel
from statekeel.ui import sessions as ui_sessions

from .harness import http, serving, with_store
from .test_browser import show


def _all_ids(url: str, **filters: Any) -> list[str]:
    """Every session id in the store, in order, read through the public API (the oracle)."""
    def read(store: statekeel.Store) -> list[str]:
        ids, after = [], None
        while True:
            page = store.sessions(after=after, limit=500, **filters)
            ids += [i.id for i in page]
            if page.next is None:
                return ids
            after = page.next
    return with_store(url, read)


def test_search_by_a_substring_of_the_id_with_status_and_user(filled_url: str) -> None:
    with serving(filled_url) as base:
        _, body = http(f"{base}/api/sessions?has=2&limit=500")
        assert [i["id"] for i in body["items"]] == [i for i in _all_ids(filled_url) if "2" in i]
        assert body["more"] is False and body["next"] is None
        _, body = http(f"{base}/api/sessions?has=5&status=crashed")
        expected = [i for i in _all_ids(filled_url, status="crashed") if "5" in i]
        assert [i["id"] for i in body["items"]] == expected and len(expected) >= 3
        _, body = http(f"{base}/api/sessions?has=-2&user=u-9")
        assert [i["id"] for i in body["items"]] == ["billing-2"]
        _, body = http(f"{base}/api/sessions?has=4&q=support-")  # prefix and substring together
        assert [i["id"] for i in body["items"]] == [i for i in _all_ids(filled_url) if i.startswith("support-") and "4" in i[8:]]


def test_a_substring_search_stops_at_the_scan_bound_and_continues(filled_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui_sessions, "SCAN_LIMIT", 10)
    everything = _all_ids(filled_url)
    with serving(filled_url) as base:
        found: list[str] = []
        after, rounds = "", 0
        while True:
            _, body = http(f"{base}/api/sessions?has=support-5&limit=50" + (f"&after={after}" if after else ""))
            assert body["scanned"] <= 10
            found += [i["id"] for i in body["items"]]
            rounds += 1
            if body["next"] is None:
                break
            assert body["more"] is True
            after = body["next"]
        assert found == [i for i in everything if "support-5" in i] and found
        assert rounds >= len(everything) // 10


def test_the_sessions_page_searches_inside_ids_and_offers_more(
    page: Any, filled_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serving(filled_url) as base:
        show(page, base, "#/sessions")
        page.fill("input[name=has]", "-4")
        page.fill("input[name=user]", "u-9")
        page.evaluate("document.querySelector('main#view').removeAttribute('data-ready')")  # wait for the new list
        page.press("input[name=has]", "Enter")
        page.wait_for_function("location.hash.includes('has=-4')")
        page.wait_for_selector("main#view[data-ready='1'] table[aria-label=sessions] tbody tr >> text=billing-4")
        assert page.locator("table[aria-label=sessions] tbody tr td:first-child").all_inner_texts() == ["billing-4"]

        monkeypatch.setattr(ui_sessions, "SCAN_LIMIT", 10)
        show(page, base, "#/sessions?has=support-5")
        more = page.locator("[data-testid=more]")
        assert "Searched 10 sessions" in more.inner_text()
        for _ in range(len(_all_ids(filled_url)) // 10 + 1):  # follow "more…" until a match shows
            if page.locator("table[aria-label=sessions] tbody tr >> text=support-50").count():
                break
            page.evaluate("document.querySelector('main#view').removeAttribute('data-ready')")
            page.click("[data-testid=more] a")
            page.wait_for_selector("main#view[data-ready='1']")
        assert page.locator("table[aria-label=sessions] tbody tr >> text=support-50").count() == 1
