"""Screenshots of the inspector's main pages for the README and docs/inspector.md.

    .venv/bin/python scripts/ui_screenshots.py            # writes docs/screenshots/*.png

Fills a temporary SQLite store with the scripted agent of the browser tests
(tests/ui/scripted_agent.py), serves it with writes enabled (so the action buttons show),
and photographs each page in headless Chromium (Debian's /usr/bin/chromium, via Playwright),
plus the timeline at phone width.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import statekeel  # noqa: E402
from statekeel.ui import Inspector, make_server, open_inspector  # noqa: E402
from ui import scripted_agent  # noqa: E402  (tests/ui/scripted_agent.py)

OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SID = scripted_agent.SESSION
PAGES = {
    "overview": "#/",
    "sessions": "#/sessions?q=support-",
    "timeline": f"#/session/{SID}",
    "checkpoint-diff": f"#/session/{SID}/diff?a=before-refund",
    "run": "#/run/report-1",
    "events": "#/events/orders",
}


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/agent.db"
        with statekeel.open(url) as store:
            scripted_agent.fill(store)
        store, locked = open_inspector(url)
        server = make_server(Inspector(store, locked, allow_writes=True), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1200, "height": 820})
                for name, route in PAGES.items():
                    shoot(page, base, route, OUT / f"{name}.png")
                page.set_viewport_size({"width": 390, "height": 820})
                shoot(page, base, f"#/session/{SID}", OUT / "timeline-narrow.png")
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
            store.close()


def shoot(page: object, base: str, route: str, path: Path) -> None:
    page.goto("about:blank")  # type: ignore[attr-defined]
    page.goto(f"{base}/{route}")  # type: ignore[attr-defined]
    page.wait_for_selector("main#view[data-ready='1']")  # type: ignore[attr-defined]
    if route == "#/":
        page.wait_for_selector("#counts .card")  # type: ignore[attr-defined]
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
