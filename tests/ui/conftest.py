"""Fixtures of the inspector tests: a filled SQLite store, a browser (Debian's chromium)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import scripted_agent
from .harness import CHROMIUM, with_store


def _missing(reason: str) -> None:
    """A missing browser is a failure in CI (scripts/test.sh installs it), a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this is a failure, not a skip: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def filled_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store filled by the scripted agent (shared by a module's read-only tests)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ui')}/agent.db"
    with_store(url, scripted_agent.fill)
    return url


@pytest.fixture
def fresh_url(tmp_path: Path) -> str:
    """A filled store of this test's own (for tests that write)."""
    url = f"sqlite:///{tmp_path}/agent.db"
    with_store(url, scripted_agent.fill)
    return url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an asyncio
    loop running in the main thread while it is started, and statekeel.open() refuses to block
    inside a running loop — tests after the browser tests (in any order, on any xdist worker)
    must not inherit it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    if not os.path.exists(CHROMIUM):
        _missing(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does it)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP forbids
    context = browser.new_context(viewport={"width": 1200, "height": 900}, bypass_csp=True)
    p = context.new_page()
    p.set_default_timeout(15_000)
    yield p
    context.close()
