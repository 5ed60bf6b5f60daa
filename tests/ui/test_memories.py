"""The memories page: namespaces, a namespace's items, full-text search, and a session's
working set, read-only, on a real SQLite store."""

from __future__ import annotations

from typing import Any

import statekeel

from . import scripted_agent
from .harness import http, serving, with_store
from .test_browser import show


def _remember(store: statekeel.Store) -> None:
    memory = store.memory(("user", "u-7"), embedder=None)
    memory.put("diet", {"vegetarian": True}, text="the customer is vegetarian")
    memory.put("city", "Lyon", text="the customer lives in Lyon")
    store.memory(("team", "support"), embedder=None).put("tone", "formal", text="answer formally")


def test_the_api_lists_namespaces_items_search_and_working_set(fresh_url: str) -> None:
    with_store(fresh_url, _remember)
    with serving(fresh_url) as base:
        _, body = http(f"{base}/api/memories")
        assert body["namespaces"] == [["team", "support"], ["user", "u-7"]] and body["items"] == []
        _, body = http(f'{base}/api/memories?ns=["user","u-7"]')
        assert [i["key"] for i in body["items"]] == ["city", "diet"]
        _, body = http(f'{base}/api/memories?ns=["user","u-7"]&q=vegetarian')
        assert [i["key"] for i in body["items"]] == ["diet"]
        status, body = http(f"{base}/api/memories?id={scripted_agent.SESSION}&budget=2000")
        assert status == 200, body
        assert body["working_set"]["budget"] == 2000 and "Thanks!" in body["working_set"]["text"]
        status, body = http(f"{base}/api/memories?ns=user")
        assert status == 400 and "JSON array" in body["error"]
        status, body = http(f"{base}/api/memories?id=nobody")
        assert status == 404


def test_the_memories_page_shows_items_and_the_working_set(page: Any, fresh_url: str) -> None:
    with_store(fresh_url, _remember)
    with serving(fresh_url) as base:
        show(page, base, f"#/session/{scripted_agent.SESSION}")
        page.click("text=memories & working set")
        page.wait_for_selector("[data-testid=working-set]")
        assert "Thanks!" in page.locator("[data-testid=working-set]").inner_text()
        page.click("ul[aria-label=namespaces] a >> text=user / u-7")
        page.wait_for_selector("table[aria-label=memories] >> text=the customer lives in Lyon")
        page.fill("input[name=q]", "vegetarian")
        page.press("input[name=q]", "Enter")
        page.wait_for_function("location.hash.includes('q=vegetarian')")
        page.wait_for_selector("table[aria-label=memories] th >> text=score")
        texts = page.locator("table[aria-label=memories] tbody tr td:first-child").all_inner_texts()
        assert texts == ["diet"]
