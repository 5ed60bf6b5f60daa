"""The inspector stays fast on big stores: first render of a 10,000-entry timeline and of the
sessions list of a store with 100,000 sessions (target < 300 ms each).

    python benchmarks/ui_bench.py            # 100,000 sessions, a 10,000-entry timeline (~1 minute to fill)
    python benchmarks/ui_bench.py --quick    # 10,000 sessions, a 1,000-entry timeline

One SQLite file (WAL) filled through the public API, then `statekeel ui`'s server on a free
loopback port. "First render" is the server time of every API request a page needs before it
can draw (measured as loopback round trips, so it includes HTTP and JSON encoding):

* sessions list: ``/api/overview`` + ``/api/sessions?limit=50`` — also a page deep in the
  listing (``after=`` the 50,000th id: keyset pages cost the same anywhere), an id-prefix
  search, and a status filter;
* the overview's counts (loaded after its first render: one capped key scan per kind);
* timeline: ``/api/overview`` + ``/api/session`` + ``/api/timeline`` (the newest 200 entries of a
  session whose history, state, decisions, notes and checkpoints add up to 10,000 entries),
  and an old page (``before=100``).

With Chromium at /usr/bin/chromium and Playwright installed, the browser's own time from
navigation to the rendered page is measured too. One JSON object per line on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import statekeel  # noqa: E402
from statekeel.ui import Inspector, make_server, open_inspector  # noqa: E402

ROUNDS = 30
CHROMIUM = "/usr/bin/chromium"


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def fill_sessions(store: statekeel.Store, n: int) -> None:
    for i in range(n):
        s = store.session(f"s-{i:06d}", user=f"u-{i % 100}")
        if i % 10 == 0:
            s.mark_crashed()
        if i and i % 20000 == 0:
            log(f"  {i} sessions")


def fill_timeline(store: statekeel.Store, entries: int) -> str:
    """A session with ``entries`` timeline entries: 99% history (every 10th a tool call), plus
    state keys, decisions, notes and checkpoints spread through it."""
    s = store.session("long-session", user="u-1")
    side = max(4, entries // 100)
    every = entries // side
    messages = 0
    for i in range(entries - side):
        msg: dict[str, Any] = {"role": "user" if i % 2 else "assistant", "content": f"message {i} " + "x" * 80}
        if i % 10 == 0:
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{i}", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}]}
        s.append(msg)
        messages += 1
        if i % every == 0:
            kind = (i // every) % 4
            if kind == 0:
                s.state.put(f"key-{i}", {"i": i, "nested": {"a": [1, 2, 3]}})
            elif kind == 1:
                with s.decide(f"decision {i}", rationale="bench", action={"do": i}) as d:
                    d.outcome("ok")
            elif kind == 2:
                s.notes.write(f"observer-{i}", {"i": i})
            else:
                s.checkpoint(f"cp-{i}")
    return s.id


def get(base: str, path: str) -> float:
    """Seconds for one request (the body is read and parsed, as the page does)."""
    t = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=60) as res:
        json.loads(res.read())
    return time.perf_counter() - t


def measure(
    name: str, base: str, paths: list[str], target_ms: float | None, before: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    for p in paths:  # warm-up: the first request of a connection pays for imports and caches
        get(base, p)
    totals = []
    for _ in range(ROUNDS):
        before()
        totals.append(sum(get(base, p) for p in paths))
    out = {
        "bench": name, "requests": paths, "rounds": ROUNDS,
        "median_ms": round(statistics.median(totals) * 1000, 2),
        "p95_ms": round(sorted(totals)[int(len(totals) * 0.95) - 1] * 1000, 2),
        "max_ms": round(max(totals) * 1000, 2),
    }
    if target_ms is not None:
        out["target_ms"] = target_ms
        out["within_target"] = out["p95_ms"] < target_ms
    print(json.dumps(out), flush=True)
    return out


def browser_times(base: str, routes: dict[str, str]) -> list[dict[str, Any]]:
    """Navigation start to the rendered page (``main#view[data-ready]``), in Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        log("playwright not installed: browser times skipped")
        return []
    if not Path(CHROMIUM).exists():
        log(f"{CHROMIUM} missing: browser times skipped")
        return []
    found = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        for name, route in routes.items():
            samples = []
            for _ in range(10):
                page.goto("about:blank")
                page.goto(f"{base}/{route}")
                page.wait_for_selector("main#view[data-ready='1']")
                samples.append(page.evaluate("performance.now()"))
            out = {"bench": f"browser {name}", "median_ms": round(statistics.median(samples), 1),
                   "max_ms": round(max(samples), 1)}
            print(json.dumps(out), flush=True)
            found.append(out)
        browser.close()
    return found


def serve(url: str) -> tuple[str, Inspector, Callable[[], None]]:
    store, locked = open_inspector(url)
    inspector = Inspector(store, locked)
    server = make_server(inspector, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        store.close()

    return f"http://127.0.0.1:{server.server_address[1]}", inspector, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 sessions and a 1,000-entry timeline")
    parser.add_argument("--out", help="also write the results (JSON lines) to this file")
    args = parser.parse_args()
    n_sessions, n_entries = (10_000, 1_000) if args.quick else (100_000, 10_000)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/ui-bench.db"
        with statekeel.open(url) as store:
            log(f"filling {n_sessions} sessions …")
            fill_sessions(store, n_sessions)
            log(f"filling a {n_entries}-entry timeline …")
            sid = fill_timeline(store, n_entries)
        base, inspector, stop = serve(url)
        try:
            results = [
                measure("sessions list, first render", base, ["/api/overview", "/api/sessions?limit=50"], 300),
                measure("sessions list, a page half-way", base,
                        [f"/api/sessions?limit=50&after=s-{n_sessions // 2:06d}"], None),
                measure("sessions list, id-prefix search", base, ["/api/sessions?q=s-0012&limit=50"], None),
                measure("sessions list, status=crashed", base, ["/api/sessions?status=crashed&limit=50"], None),
                measure(f"timeline of {n_entries} entries, first render", base,
                        ["/api/overview", f"/api/session?id={sid}", f"/api/timeline?id={sid}"], 300),
                measure(f"timeline of {n_entries} entries, oldest page", base,
                        [f"/api/timeline?id={sid}&before=100"], None),
                measure("overview counts, uncached (after the first render; then reused 30 s)", base,
                        ["/api/counts"], None, before=lambda: setattr(inspector, "counted", None)),
            ]
            results += browser_times(base, {"sessions list": "#/sessions", "timeline": f"#/session/{sid}"})
        finally:
            stop()
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in results))


if __name__ == "__main__":
    main()
