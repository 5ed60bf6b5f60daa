"""The inspector's HTTP server: the standard library's threading server, a JSON API, the page.

No dependency beyond the standard library; the page, script and style are package data
(``statekeel/ui/static``) and the Content-Security-Policy lets the page load nothing else.

Who may talk to it:

* bound to a loopback address (the default), only requests whose ``Host`` names loopback are
  answered, so a web page elsewhere cannot reach it through DNS rebinding;
* bound to any other address, every request must carry the token the command printed
  (``?token=``, then a same-site cookie; or the ``X-Statekeel-Token`` header);
* write actions (``POST /api/action/<name>``) need ``--allow-writes``, the
  ``X-Statekeel-Write: 1`` header (which a cross-site form cannot send) and ``"confirm": true``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import (
    ConflictError, InvalidInputError, KeyUnavailableError, NotFoundError, StatekeelError,
)
from ..store import Store
from . import live, memories, pages, sessions, timeline
from ._json import dumps
from .actions import WritesDisabledError, can_delete, perform

__all__ = ["COUNTS_TTL", "Inspector", "is_loopback", "make_server", "new_token"]

_STATIC = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
_MAX_BODY = 1 << 20
COUNTS_TTL = 30.0
"""Seconds the overview's counts are reused before the store is counted again."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(host_header: str) -> str:
    """``127.0.0.1:8765`` → ``127.0.0.1``; ``[::1]:8765`` → ``::1``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0]


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Inspector:
    """What the server serves: one store, and what it may do with it."""

    store: Store
    locked: str | None = None
    """Why values cannot be read (an encrypted store opened without its key), else None."""
    allow_writes: bool = False
    token: str | None = None
    """Required on every request when set (non-loopback binding)."""
    counted: tuple[float, dict[str, Any]] | None = None
    """The last counts and when they were taken (monotonic seconds)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """One request at a time on the store: inspection is light, and it keeps backends simple."""

    def api(self) -> dict[str, Callable[[dict[str, str]], Any]]:
        """GET /api/<name> → handler(query parameters)."""
        s = self.store
        return {
            "overview": lambda p: pages.overview(
                s, locked=self.locked, writes=self.allow_writes, can_delete=can_delete(s)),
            "counts": lambda p: self._counts(),
            "sessions": lambda p: self._unlocked(sessions.sessions_page, s, p),
            "session": lambda p: self._unlocked(sessions.session_detail, s, _need(p, "id")),
            "timeline": lambda p: self._unlocked(timeline.timeline, s, _need(p, "id"), p),
            "diff": lambda p: self._unlocked(timeline.checkpoint_diff, s, _need(p, "id"), p),
            "decisions": lambda p: self._unlocked(pages.decisions_page, s, p),
            "runs": lambda p: self._unlocked(pages.runs_page, s, p),
            "run": lambda p: self._unlocked(pages.run_detail, s, _need(p, "id")),
            "streams": lambda p: self._unlocked(pages.streams_page, s, p),
            "stream": lambda p: self._unlocked(pages.stream_detail, s, _need(p, "name"), p),
            "erasures": lambda p: pages.erasures(s, p),
            "memories": lambda p: self._unlocked(memories.memories, s, p),
        }

    def _counts(self) -> dict[str, Any]:
        """Counting scans every index key (about 0.6 s at 100,000 sessions on SQLite): the
        overview polls, so a count is reused for COUNTS_TTL seconds."""
        now = time.monotonic()
        if self.counted is None or now - self.counted[0] > COUNTS_TTL:
            self.counted = (now, {**pages.count_records(self.store), "as_of": time.time()})
        return self.counted[1]

    def _unlocked(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.locked:
            raise KeyUnavailableError(self.locked)
        return fn(*args)


def _need(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise InvalidInputError(f"the request needs ?{name}=…")
    return value


def _status_of(exc: StatekeelError) -> HTTPStatus:
    if isinstance(exc, WritesDisabledError):
        return HTTPStatus.FORBIDDEN
    if isinstance(exc, NotFoundError):
        return HTTPStatus.NOT_FOUND
    if isinstance(exc, KeyUnavailableError):
        return HTTPStatus.LOCKED
    if isinstance(exc, ConflictError):
        return HTTPStatus.CONFLICT
    if isinstance(exc, InvalidInputError):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.INTERNAL_SERVER_ERROR


class _Handler(BaseHTTPRequestHandler):
    """One request: check who asks, then serve a static file or call the API."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    # -- who may ask --------------------------------------------------------------
    def _refusal(self) -> str | None:
        app, url = self.server.inspector, urlsplit(self.path)
        if app.token is None:
            if not is_loopback(_hostname(self.headers.get("Host") or "")):
                return "this inspector answers only requests to a loopback address (Host header)"
            return None
        given = [dict(parse_qsl(url.query)).get("token"), self.headers.get("X-Statekeel-Token")]
        cookie = SimpleCookie(self.headers.get("Cookie") or "").get("statekeel_token")
        given.append(cookie.value if cookie else None)
        if any(g and hmac.compare_digest(g.encode(), app.token.encode()) for g in given):
            return None
        return "a token is required: open the URL printed by `statekeel ui` (it ends with ?token=…)"

    # -- responses ----------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, dumps(value), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def _token_cookie(self) -> dict[str, str]:
        token = dict(parse_qsl(urlsplit(self.path).query)).get("token")
        if not token or self.server.inspector.token is None:
            return {}
        return {"Set-Cookie": f"statekeel_token={token}; Path=/; HttpOnly; SameSite=Strict"}

    # -- methods ------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        refused = self._refusal()
        if refused:
            return self._error(HTTPStatus.FORBIDDEN, refused)
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            return self._static("index.html", self._token_cookie())
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/events":
            return self._events()
        if path.startswith("/api/"):
            return self._api(path[len("/api/"):])
        self._error(HTTPStatus.NOT_FOUND, f"nothing at {path}; the inspector's page is at /")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        refused = self._refusal()
        if refused:
            return self._error(HTTPStatus.FORBIDDEN, refused)
        path = urlsplit(self.path).path
        if not path.startswith("/api/action/"):
            return self._error(HTTPStatus.NOT_FOUND, f"nothing to POST at {path}")
        if self.headers.get("X-Statekeel-Write") != "1":
            return self._error(HTTPStatus.FORBIDDEN, "write requests need the header X-Statekeel-Write: 1")
        body = self._body()
        if body is None:
            return None
        app = self.server.inspector
        self._call(lambda: perform(app.store, path[len("/api/action/"):], body, allowed=app.allow_writes))

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the request body is over 1 MiB")
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"the request body is not JSON: {exc}")
            return None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
            return None
        return body

    def _static(self, name: str, extra: dict[str, str] | None = None) -> None:
        if name not in _STATIC:
            return self._error(HTTPStatus.NOT_FOUND, f"no asset {name!r}")
        data = resources.files("statekeel.ui").joinpath("static", name).read_bytes()
        self._send(HTTPStatus.OK, data, _STATIC[name] + "; charset=utf-8", extra)

    def _api(self, name: str) -> None:
        handler = self.server.inspector.api().get(name)
        if handler is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no API {name!r}")
        params = dict(parse_qsl(urlsplit(self.path).query))
        self._call(lambda: handler(params))

    def _events(self) -> None:
        """A server-sent event stream for one session (see ``live``): the store lock is held
        only while its signature is read, never while the stream waits."""
        app = self.server.inspector
        session_id = dict(parse_qsl(urlsplit(self.path).query)).get("session")

        def look() -> str:
            with app.lock:
                return live.session_signature(app.store, _need({"session": session_id or ""}, "session"))
        try:
            if app.locked:
                raise KeyUnavailableError(app.locked)
            look()  # a missing session or parameter is answered as JSON, before the stream starts
        except StatekeelError as exc:
            return self._error(_status_of(exc), str(exc))
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        for k, v in (("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-store"),
                     ("Connection", "close"), ("Content-Security-Policy", _CSP), ("X-Content-Type-Options", "nosniff")):
            self.send_header(k, v)
        self.end_headers()

        def write(data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
        try:
            live.stream(look, write, self.server.stopping)
        except (OSError, StatekeelError):  # the page went away, or the store did (server closing)
            return None

    def _call(self, fn: Callable[[], Any]) -> None:
        app = self.server.inspector
        try:
            with app.lock:
                result = fn()
        except StatekeelError as exc:
            return self._error(_status_of(exc), str(exc))
        except Exception as exc:  # the page shows it; the server keeps serving
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        self._json(HTTPStatus.OK, result)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    inspector: Inspector
    verbose: bool = False
    stopping: threading.Event

    def shutdown(self) -> None:
        """Also ends the event streams, which otherwise outlive ``serve_forever``."""
        self.stopping.set()
        super().shutdown()


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(inspector: Inspector, host: str = "127.0.0.1", port: int = 8765, *, verbose: bool = False) -> _Server:
    """A bound server (``port=0``: any free port); call ``serve_forever()`` on it.

    Binding to an address that is not loopback requires ``inspector.token``.
    """
    if not is_loopback(host) and not inspector.token:
        raise InvalidInputError(
            f"binding to {host!r} exposes the store beyond this machine; a token is required (statekeel ui prints one)"
        )
    cls = _Server6 if ":" in host.strip("[]") else _Server
    server = cls((host.strip("[]"), port), _Handler)
    server.inspector = inspector
    server.verbose = verbose
    server.stopping = threading.Event()
    return server
