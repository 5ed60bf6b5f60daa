"""Scopes and the versioned key-value state inside them.

Scopes: ``app`` (shared by everything), ``user:<id>``, ``session:<id>`` (expires
with its session's TTL) and ``temp`` (this process only; never written
anywhere). Keys and ids are names: non-empty str of at most 1,024 characters
without lone surrogates (:mod:`statekeel.core.validate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from ..core import Core, layout
from ..errors import ConflictError, ExpiredError, InvalidInputError, NotFoundError
from ..models import Item, Page, to_datetime
from ..protocol import ANY, Backend, Delete, Expect, Op, Put, Record, keys
from ..core.validate import check_expect, check_int, check_limit, check_name, check_optional_name
from ._duration import Duration, maybe_seconds
from ..protocol.jitter import backoff

__all__ = ["Scope", "StateView", "parse_scope", "MISSING"]

SCOPE_KINDS = ("app", "user", "session", "temp")
SCOPE_FORMS = "'app', 'user:<id>', 'session:<id>' or 'temp'"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class Scope:
    """Where state lives: ``app``, ``user:<id>``, ``session:<id>`` or ``temp``."""

    kind: str
    id: str

    def __str__(self) -> str:
        return self.kind if self.kind in ("app", "temp") else f"{self.kind}:{self.id}"

    @property
    def prefix(self) -> str:
        """Backend key prefix of this scope's state records."""
        return layout.scope_state_prefix(self.kind, self.id)


def parse_scope(scope: str | Scope) -> Scope:
    """``'user:u-7'`` -> ``Scope('user', 'u-7')``, or an error listing the forms."""
    if isinstance(scope, Scope):
        if scope.kind not in SCOPE_KINDS:
            raise InvalidInputError(f"{scope!r} is not a scope; use {SCOPE_FORMS}")
        check_name(scope.id, f"the id of scope {scope.kind!r}")
        return scope
    if not isinstance(scope, str):
        raise InvalidInputError(f"a scope must be a str like {SCOPE_FORMS}, got {type(scope).__name__}")
    kind, sep, ident = scope.partition(":")
    if kind in ("app", "temp") and not sep:
        return Scope(kind, "_")
    if kind in ("user", "session") and sep and ident:
        return Scope(kind, check_name(ident, f"the {kind} id in scope {kind}:…"))
    raise InvalidInputError(f"{scope!r} is not a scope; use {SCOPE_FORMS}")


def _path(scope: Scope) -> str:
    """How error messages name a scope in a value's path: ``app``, ``session['s1']`` (as a
    session's ``append`` path does: ``session['s1'].append messages[0]``), ``user['u-7']``."""
    return scope.kind if scope.kind in ("app", "temp") else f"{scope.kind}[{scope.id!r}]"


class StateView:
    """Versioned key-value state of one scope; the same API on every backend."""

    def __init__(self, store: Core, scope: Scope, backend: Backend | None = None) -> None:
        self._store = store
        self.scope = scope
        self._backend = backend or store.backend
        self._prefix = scope.prefix

    def _full_key(self, key: str) -> str:
        return layout.state_key(self.scope.kind, self.scope.id, key)

    def _item(self, rec: Record) -> Item:
        name = keys.unescape(rec.key[len(self._prefix) :])
        value = self._store.codec.decode(rec.data, rec.codec, rec.key)
        return Item(
            name, value, rec.version, to_datetime(rec.created_at),  # type: ignore[arg-type]
            to_datetime(rec.updated_at), to_datetime(rec.expires_at),  # type: ignore[arg-type]
        )

    # -- reads ---------------------------------------------------------------
    def item(self, key: str) -> Item | None:
        """The value with its version and timestamps, or None."""
        rec = self._backend.get(self._full_key(key))
        return self._item(rec) if rec else None

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key``, or ``default`` when missing or expired."""
        found = self.item(key)
        return default if found is None else found.value

    def require(self, key: str) -> Item:
        """The item at ``key``; :class:`NotFoundError` or :class:`ExpiredError` if absent."""
        full = self._full_key(key)
        rec = self._backend.get(full, include_expired=True)
        if rec is None:
            raise NotFoundError(f"no {key!r} in {self.scope}; write it first or use get(key, default)")
        if rec.expires_at is not None and rec.expires_at <= time.time():
            raise ExpiredError(
                f"{key!r} in {self.scope} expired at {to_datetime(rec.expires_at)}; write it again "
                "or give it a longer ttl"
            )
        return self._item(rec)

    def __getitem__(self, key: str) -> Any:
        return self.require(key).value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.item(key) is not None

    def items(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page[Item]:
        """A page of items whose key starts with ``prefix``, in key order."""
        full, cursor = self._scan_of(prefix, after, limit)
        return self._page(self._backend.scan(full, after=cursor, limit=limit), limit)

    def _scan_of(self, prefix: str, after: str | None, limit: int) -> tuple[str, str | None]:
        """The checked arguments of :meth:`items` as the scan's ``(prefix, after)`` (no I/O: the
        asyncio API scans natively with them and makes the page with :meth:`_page`)."""
        if prefix != "":
            check_name(prefix, "prefix")
        check_optional_name(after, "after (a key from page.next)")
        check_limit(limit)
        full = self._prefix + (keys.escape(prefix) if prefix else "")
        return full, self._prefix + keys.escape(after) if after else None

    def _page(self, recs: list[Record], limit: int) -> Page[Item]:
        found = [self._item(r) for r in recs]
        return Page(found, found[-1].key if len(found) == limit else None)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key (following pages as needed)."""
        after: str | None = None
        while True:
            page = self.items(prefix, after=after, limit=500)
            yield from (i.key for i in page)
            if page.next is None:
                return
            after = page.next

    def to_dict(self) -> dict[str, Any]:
        """All live values of this scope."""
        return {k: v for k, v in ((i.key, i.value) for i in self._all())}

    def _all(self) -> Iterator[Item]:
        after: str | None = None
        while True:
            page = self.items(after=after, limit=500)
            yield from page
            if page.next is None:
                return
            after = page.next

    # -- writes --------------------------------------------------------------
    def put_op(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> list[Op]:
        """The operations that :meth:`put` would apply (for batches)."""
        full = self._full_key(key)
        check_expect(expect)
        secs = maybe_seconds(ttl, "ttl")
        data, codec = self._store.codec.encode(value, f"{_path(self.scope)}[{key!r}]", full)
        return [Put(full, data, codec, expect, None if secs is None else time.time() + secs)]

    def put(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> Item:
        """Store ``value``. ``expect=None``: only if absent; ``expect=N``: only if at version N."""
        ops = self.put_op(key, value, expect=expect, ttl=ttl)
        rec = self._backend.apply(ops)[0]
        assert isinstance(rec, Record)
        return Item(
            key, value, rec.version, to_datetime(rec.created_at),  # type: ignore[arg-type]
            to_datetime(rec.updated_at), to_datetime(rec.expires_at),  # type: ignore[arg-type]
        )

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def setdefault(self, key: str, value: Any, *, ttl: Duration | None = None) -> Item:
        """Create ``key`` with ``value`` unless it exists; return what is stored either way.

        The create-only write (``expect=None``) that can be re-run: a restarted
        agent finds its record instead of a :class:`ConflictError`. ``value`` is
        validated even when the key exists, so bad input never passes silently.
        """
        self.put_op(key, value, expect=None, ttl=ttl)
        for _ in range(100):
            cur = self.item(key)
            if cur is not None:
                return cur
            try:
                return self.put(key, value, expect=None, ttl=ttl)
            except ConflictError:
                continue  # created meanwhile: read it
        raise ConflictError(self._full_key(key), None, None)

    def delete(self, key: str, *, expect: Expect = ANY) -> bool:
        """Remove ``key``; True if it existed."""
        result = self._backend.apply([Delete(self._full_key(key), check_expect(expect))])[0]
        return bool(result)

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise NotFoundError(f"no {key!r} in {self.scope}")

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = MISSING,
        ttl: Duration | None = None,
        max_attempts: int = 10_000,
    ) -> Item:
        """Re-read, apply ``fn`` and compare-and-set, retrying on conflict.

        ``fn`` receives the current value (``default`` when absent; without a
        default an absent key raises :class:`NotFoundError`) and may be called
        several times, so it must not have side effects.
        """
        if not callable(fn):
            raise InvalidInputError(f"update() needs a function old value -> new value, got {type(fn).__name__}")
        check_int(max_attempts, "max_attempts", minimum=1)
        maybe_seconds(ttl, "ttl")
        self._full_key(key)
        for attempt in range(max_attempts):
            cur = self.item(key)
            if cur is None and default is MISSING:
                raise NotFoundError(f"no {key!r} in {self.scope} to update; pass default=")
            try:
                return self.put(
                    key, fn(default if cur is None else cur.value),
                    expect=None if cur is None else cur.version, ttl=ttl,
                )
            except ConflictError:
                self._store.stats["cas_retries"] += 1
                time.sleep(backoff(attempt))
        raise ConflictError(self._full_key(key), None, None)
