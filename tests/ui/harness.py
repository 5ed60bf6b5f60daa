"""Running the inspector inside a test: a real server on a free port, in a thread."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import statekeel
from statekeel.ui import Inspector, make_server, open_inspector

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium package (scripts/test.sh installs it); Playwright downloads no browser."""


def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` on a thread of its own: Playwright's sync API runs an asyncio loop in the test's
    thread, where statekeel (rightly) refuses blocking calls."""
    out: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return out[0]


def with_store(url: str, fn: Callable[[statekeel.Store], T]) -> T:
    """``fn(store)`` on the store at ``url``, opened and closed on a thread of its own."""
    def run() -> T:
        with statekeel.open(url) as store:
            return fn(store)
    return in_thread(run)


@contextmanager
def serving(
    url: str, *, allow_writes: bool = False, host: str = "127.0.0.1", token: str | None = None,
    encryption: statekeel.Encryption | None = None,
) -> Iterator[str]:
    """The inspector of the store at ``url``, serving until the block ends; yields its base URL."""
    store, locked = in_thread(lambda: open_inspector(url, encryption))
    server = make_server(Inspector(store, locked, allow_writes, token), host, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        in_thread(store.close)


def http(url: str, *, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, decoded JSON or text) of a GET, or of a POST when ``body`` is given."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, raw, ctype = res.status, res.read(), res.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()
