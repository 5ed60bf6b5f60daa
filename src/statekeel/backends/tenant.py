"""Tenant isolation: ``store.tenant("acme")`` sees only acme's data, on every backend.

A tenant handle wraps the backend so that every key it reads or writes is
prefixed with ``<escaped tenant>~``; the escaping removes ``~`` (and ``/``,
``%``, braces, NUL) from tenant names, so no tenant's prefix is a prefix of
another's and nothing a tenant writes can name a key outside its own space.
The prefix sits in the first key component, so a session keeps its own
partition (``acme~session/S``). With encryption on, the prefix is also part of
every ciphertext's associated data and of its data key's partition: each
tenant has its own data keys.

PostgreSQL additionally enforces this with row-level security (see
:mod:`statekeel.backends.postgres`).

The view declares no optional capability (:mod:`statekeel.protocol.capabilities`):
integrity checks, repair, WAL checkpoints and schema migrations act on the
whole store, so a tenant handle cannot reach them — open the store itself for
those. It does not purge either: the protocol's purge cannot be limited to one
tenant's keys, and a store-wide purge would delete other tenants' expired data
(which ``state.require`` still tells apart from missing data). A tenant's
expired data is invisible at once; the store's own ``purge_expired`` deletes it.
Nor does the view give out the wrapped backend or its address: ``url``
describes the tenant, it is not a URL that opens the store (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import InvalidInputError, UsageError
from ..protocol import (
    Append,
    Backend,
    Delete,
    Entry,
    Expire,
    Load,
    LoadEntries,
    LogInfo,
    MigrationStatus,
    Op,
    OpResult,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
    keys,
)
from ..protocol.checks import check_ops
from ._dispatch import handlers

__all__ = ["TenantBackend", "tenant_prefix", "viewed"]


def tenant_prefix(tenant: str) -> str:
    """``"acme"`` -> ``"acme~"``; ``~`` inside names is escaped so prefixes never nest."""
    if not isinstance(tenant, str) or not tenant:
        raise InvalidInputError(f"a tenant must be a non-empty str, got {tenant!r}")
    return keys.escape(tenant).replace("~", "%7E") + "~"


def viewed(view: TenantBackend) -> Backend:
    """The backend ``view`` wraps: for the asyncio API, which runs a tenant's view on that
    backend's asyncio driver (:mod:`.tenant_aio`). Not an attribute of the view: a tenant
    handle does not give it out."""
    return view._inner


class TenantBackend(Backend):
    """A view of ``inner`` holding only one tenant's keys."""

    def __init__(self, inner: Backend, tenant: str) -> None:
        self._inner = inner
        self.tenant = tenant
        self.prefix = tenant_prefix(tenant)
        self.url = f"tenant {tenant!r} of a {inner.url.partition(':')[0]} store"
        """A description, not a URL: a tenant handle does not give out the store's address."""
        self.batch_scope = inner.batch_scope

    # -- key mapping ------------------------------------------------------------
    def _in(self, key: str) -> str:
        return self.prefix + key

    # constructors, not dataclasses.replace (several µs a call): every read and write of a turn maps
    def _rec(self, rec: Record | None) -> Record | None:
        if rec is None:
            return None
        return Record(rec.key[len(self.prefix) :], rec.data, rec.codec, rec.version, rec.created_at, rec.updated_at,
                      rec.expires_at)  # fmt: skip

    def _entry(self, e: Entry) -> Entry:
        return Entry(e.log[len(self.prefix) :], e.seq, e.data, e.codec, e.created_at)

    def _info(self, i: LogInfo | None) -> LogInfo | None:
        if i is None:
            return None
        return LogInfo(i.log[len(self.prefix) :], i.first_seq, i.last_seq, i.created_at, i.updated_at, i.expires_at)

    def _result(self, r: OpResult) -> OpResult:
        return self._rec(r) if isinstance(r, Record) else r  # type: ignore[return-value]

    # -- protocol -----------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        return self._rec(self._inner.get(self._in(key), include_expired=include_expired))

    def get_many(self, keys_: Sequence[str]) -> list[Record | None]:
        return [self._rec(r) for r in self._inner.get_many([self._in(k) for k in keys_])]

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        found = self._inner.scan(self._in(prefix), after=None if after is None else self._in(after), limit=limit)
        return [r for r in (self._rec(x) for x in found) if r is not None]

    def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        return [self._entry(e) for e in self._inner.read(self._in(log), start=start, stop=stop, limit=limit, reverse=reverse)]

    def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        return self._inner.read_values(self._in(log), limit=limit, reverse=reverse)

    def log_info(self, log: str) -> LogInfo | None:
        return self._info(self._inner.log_info(self._in(log)))

    def log_info_many(self, logs: Sequence[str]) -> list[LogInfo | None]:
        return [self._info(i) for i in self._inner.log_info_many([self._in(log) for log in logs])]

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        found = self._inner.scan_logs(self._in(prefix), after=None if after is None else self._in(after), limit=limit)
        return [i for i in (self._info(x) for x in found) if i is not None]

    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        return [self._result(r) for r in self._inner.apply(self._inward(ops, now), now=now)]

    def _inward(self, ops: Sequence[Op], now: float | None) -> list[Op]:
        """``ops`` checked, each with the tenant's prefix on its keys (the asyncio twin,
        :mod:`.tenant_aio`, maps them the same way)."""
        check_ops(ops, now)
        steps = handlers(_IN_TENANT, ops, f"the view of tenant {self.tenant!r}")
        return [step(op, self.prefix) for step, op in zip(steps, ops)]

    def purge_expired(self, *, limit: int = 1000) -> int:
        """Nothing: purging is store-wide housekeeping (see the module docstring); returns 0."""
        return 0

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        """Report the schema (``check=True``); migrating is for the whole store, not a tenant."""
        status = self._inner.migrate(check=True)
        if not check and not status.up_to_date:
            raise UsageError(
                f"this is a tenant handle and the store's schema is behind ({status.current} < "
                f"{status.target}); migrate the store itself (statekeel migrate URL), not a tenant handle"
            )
        return status

    def close(self) -> None:
        """The tenant view does not own the connection; closing the store does."""


# -- each op with the tenant's prefix on its keys ---------------------------------------
def _key(op: Put | Delete | Touch, prefix: str) -> Op:
    if type(op) is Put:  # a turn's: its constructor (replace() costs µs)
        return Put(prefix + op.key, op.data, op.codec, op.expect, op.expires_at)
    return replace(op, key=prefix + op.key)


def _log(op: Append | Trim | Rewrite, prefix: str) -> Op:
    if type(op) is Append:
        return Append(prefix + op.log, op.items, op.expires_at, op.at)
    return replace(op, log=prefix + op.log)


def _prefix(op: Expire, prefix: str) -> Op:
    return replace(op, prefix=prefix + op.prefix)


def _record(op: Load, prefix: str) -> Op:
    return Load(replace(op.record, key=prefix + op.record.key))


def _entries(op: LoadEntries, prefix: str) -> Op:
    return replace(op, log=prefix + op.log, entries=tuple(replace(e, log=prefix + e.log) for e in op.entries))


_IN_TENANT: dict[type[Op], Callable[[Any, str], Op]] = {
    Put: _key,
    Delete: _key,
    Append: _log,
    Touch: _key,
    Expire: _prefix,
    Trim: _log,
    Load: _record,
    LoadEntries: _entries,
    Rewrite: _log,
}
"""Each op type with the tenant's prefix added to its keys: one row per op."""
