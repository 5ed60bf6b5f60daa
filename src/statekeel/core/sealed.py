"""The sealed backend: where an encrypted store's values are sealed to their position.

Features encode values with the codec and write them through ``core.backend``;
for an encrypted store that is a :class:`SealedBackend` around the real one. It
seals each value when the batch is applied — the only place its position is
known — and opens what it reads, so every feature (sessions, state, decisions,
runs, checkpoints, notes, events, integrations) is covered without knowing.

Position: a record's version, an entry's seq. A ``Put`` with ``expect=ANY`` is
sent as compare-and-set on the version this handle last saw (read once when it
has seen none), an ``Append`` with ``at=`` the seq it will get. When another
writer moved the record or log meanwhile, the backend refuses the batch
(nothing written), this handle learns the new position from the conflict and
seals again — a single writer never pays a round trip for it. A conflict on a
precondition the caller set itself is the caller's, and is raised.

Plain chat messages (codec ``msg:<role>``, :mod:`statekeel.codec_msg`) are sealed with
their role inside the ciphertext and stored as ``msg+aesgcm``: nothing about them is in
clear beyond that they are messages, and they skip the JSON encoder both ways.

Reads: what the store holds without the encryption step is refused as planted
(:class:`~statekeel.errors.IntegrityError`) unless it is plain by design
(:func:`~statekeel.core.layout.stored_in_clear`) or ``statekeel keys encrypt``
is still converting; a store opened without its key (``locked``) refuses reads
and writes of values with :class:`~statekeel.errors.KeyUnavailableError`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from ..codec_msg import SEALED, seal_form
from ..errors import ConflictError, KeyUnavailableError
from ..protocol import (
    ANY,
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
    op_target,
)
from ..protocol.checks import Checked, check_ops
from . import layout
from .encryption import Cipher, EncryptedStorePolicy
from .keyring import DataKey
from .sealed_runs import STEP, first_of, open_run, unpacked

__all__ = ["ATTEMPTS", "Positions", "SealedBackend"]

_MISSING: Final = object()


@dataclass(frozen=True)
class Positions:
    """The positions a batch resolves (:meth:`SealedBackend.needed`), read before it is sealed."""

    versions: dict[str, int | None]
    """Key -> the record's version (None: absent), for each ``Put(expect=ANY)``."""
    nexts: dict[str, int]
    """Log -> the seq its next entry gets, for each ``Append(at=None)``."""


def _ends(op: Touch | Expire) -> bool:
    """Whether ``op`` expires what it names now (so its versions and seqs start again)."""
    exp = op.expires_at
    return isinstance(exp, (int, float)) and exp <= time.time()

ATTEMPTS: Final = 8
"""Times a batch is sealed again after another writer moved a position it resolved."""

_CACHE_MAX: Final = 100_000
"""Positions remembered per handle (forgotten wholesale beyond; they are only hints)."""


_STORED: dict[str, tuple[bytes, str]] = {}
"""An entry's codec name -> what its plaintext is prefixed with (a ``msg:<role>`` entry seals its role
inside, :func:`~statekeel.codec_msg.seal_form`) and the codec name it is stored under."""


def _stored(codec: str) -> tuple[bytes, str]:
    """``_STORED[codec]``, worked out on first use (a writer seals the same few names)."""
    frame, name = seal_form(b"", codec)
    if len(_STORED) < 256:
        _STORED[codec] = (frame, name + STEP)
    return frame, name + STEP


class SealedBackend(Backend):
    """``inner`` with every value sealed to its position on the way in and opened on the way out."""

    def __init__(
        self, inner: Backend, cipher: Cipher | None, policy: EncryptedStorePolicy, *, context_prefix: str = ""
    ) -> None:
        self._inner = inner
        self.url = inner.url
        self.batch_scope = inner.batch_scope
        self._cipher = cipher
        self.policy = policy
        self._prefix = context_prefix
        self._versions: dict[str, int | None] = {}
        self._next: dict[str, int] = {}
        self._firsts: dict[str, int] = {}
        """Log -> its first seq when last seen (1 if never: a reload guesses it, :meth:`first_known`)."""
        self._clears: dict[str, bool] = {}

    @property
    def locked(self) -> bool:
        """Opened without the key: values can be neither opened nor sealed (``policy.locked`` says why)."""
        return self._cipher is None

    @property
    def storage(self) -> Backend:
        """The backend underneath: values as stored (sealed), for maintenance and verification."""
        return self._inner

    def over(self, inner: Backend, context_prefix: str) -> SealedBackend:
        """The same sealing over another backend (a tenant's native view, keys under ``context_prefix``)."""
        return SealedBackend(inner, self._cipher, self.policy, context_prefix=self._prefix + context_prefix)

    def is_stale(self, data: bytes, codec: str, target: int) -> bool:
        """Whether a stored value is sealed under another data key version than ``target``, or in
        the format that did not bind its position (``statekeel keys reencrypt`` rewrites it)."""
        return codec.endswith(STEP) and (Cipher.key_version(data) != target or not Cipher.current_format(data))

    # -- opening -------------------------------------------------------------
    def open_value(self, data: bytes, codec: str, key: str, kind: bytes, pos: int) -> tuple[bytes, str]:
        """``(data, codec)`` as the codec wrote them, from what is stored at ``key`` and ``pos``."""
        where = self._prefix + key
        self.policy.check_decode(codec, where)
        if not codec.endswith(STEP):
            return data, codec
        if self._cipher is None:  # pragma: no cover - a locked policy raised above
            raise KeyUnavailableError(self.policy.locked or "the store was opened without its key")
        data, codec = self._cipher.open(data, where, kind, pos), codec[: -len(STEP)]
        return unpacked(data, codec, where, kind, pos) if codec[:3] == SEALED else (data, codec)

    def open_record(self, rec: Record) -> Record:
        data, codec = self.open_value(rec.data, rec.codec, rec.key, b"r", rec.version)
        return Record(rec.key, data, codec, rec.version, rec.created_at, rec.updated_at, rec.expires_at)

    def open_entry(self, entry: Entry) -> Entry:
        data, codec = self.open_value(entry.data, entry.codec, entry.log, b"e", entry.seq)
        return Entry(entry.log, entry.seq, data, codec, entry.created_at)

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        rec = self._inner.get(key, include_expired=include_expired)
        if rec is None:
            return None
        self.saw(rec)
        return self.open_record(rec)

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        return self.opened_records(self._inner.get_many(keys))

    def opened_records(self, found: list[Record | None]) -> list[Record | None]:
        """``found`` (records as stored, None where absent) opened, each one's version remembered."""
        for rec in found:
            if rec is not None:
                self.saw(rec)
        return [None if rec is None else self.open_record(rec) for rec in found]

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        page = self._inner.scan(prefix, after=after, limit=limit)
        for rec in page:
            self.saw(rec)
        return [self.open_record(rec) for rec in page]

    def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        entries = self._inner.read(log, start=start, stop=stop, limit=limit, reverse=reverse)
        return [Entry(log, e.seq, data, codec, e.created_at) for e, (data, codec) in zip(entries, self.opened(log, entries))]

    def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        return self.opened_values(log, self._inner.read_values(log, limit=limit, reverse=reverse), limit, reverse)

    def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """One call beneath (one round trip where the backend can), every record and value opened here."""
        records, values = self._inner.get_many_and_values(keys, log, limit=limit, reverse=reverse)
        return self.opened_records(records), self.opened_values(log, values, limit, reverse)

    def opened_values(
        self, log: str, values: list[tuple[bytes, str]], limit: int | None, reverse: bool
    ) -> list[tuple[bytes, str]]:
        """``read_values`` of ``log`` opened, from ``values`` as stored: in bulk at the first seq this
        handle knows, else at the one the log's bounds give, else entry by entry (naming what it refuses)."""
        if self.as_stored(log, values):
            return values
        found = self.opened_run(log, values, self.first_known(log, len(values), reverse))
        if found is None:
            found = self.opened_run(log, values, first_of(self.log_info(log), len(values), reverse))
        return self.opened(log, self._inner.read(log, limit=limit, reverse=reverse)) if found is None else found

    def as_stored(self, log: str, values: list[tuple[bytes, str]]) -> bool:
        """Whether ``values`` of ``log`` are returned as stored: none, or a log plain by design."""
        return not values or self._clear(self._prefix + log) and not any(c.endswith(STEP) for _, c in values)

    def first_known(self, log: str, n: int, reverse: bool) -> int | None:
        """The seq of the first of the ``n`` values ``read_values`` returned, as this handle knows
        ``log`` (None: it does not); a wrong guess only fails :meth:`opened_run`."""
        if reverse:
            nxt = self._next.get(log)
            return None if nxt is None else nxt - n
        return self._firsts.get(log, 1)

    def opened_run(self, log: str, values: list[tuple[bytes, str]], first: int | None) -> list[tuple[bytes, str]] | None:
        """``values`` (entries ``first, first + 1, …`` of ``log``) opened in bulk (:func:`.sealed_runs.open_run`:
        no Entry built), or None — :meth:`opened` then goes entry by entry and names what it refuses."""
        if first is None or first < 1 or self._cipher is None or self._clear(where := self._prefix + log):
            return None
        return open_run(self._cipher, where, values, first)

    def opened(self, log: str, entries: list[Entry]) -> list[tuple[bytes, str]]:
        """``(data, codec)`` of ``entries`` of ``log`` opened — in bulk when they are consecutive
        (:meth:`opened_run`) or at least all sealed (:meth:`Cipher.open_entries`), else one by one."""
        where, n = self._prefix + log, len(entries)
        if n > 1 and entries[-1].seq - entries[0].seq == n - 1:
            found = self.opened_run(log, [(e.data, e.codec) for e in entries], entries[0].seq)
            if found is not None:
                return found
        if n < 2 or self._cipher is None or layout.stored_in_clear(where) or not all(
            e.codec.endswith(STEP) for e in entries  # planted plaintext (refused), or a conversion
        ):
            return [self.open_value(e.data, e.codec, e.log, b"e", e.seq) for e in entries]
        opened = self._cipher.open_entries(where, [(e.data, e.seq) for e in entries])
        out = []
        for e, data in zip(entries, opened):
            codec = e.codec[: -len(STEP)]
            out.append(unpacked(data, codec, where, b"e", e.seq) if codec[:3] == SEALED else (data, codec))
        return out

    def log_info(self, log: str) -> LogInfo | None:
        return self.saw_log(log, self._inner.log_info(log))

    def saw_log(self, log: str, info: LogInfo | None) -> LogInfo | None:
        """``info`` of ``log``, its first and next seqs remembered."""
        if info is not None:
            self._remember(self._next, log, info.last_seq + 1)
            self._remember(self._firsts, log, info.first_seq)
        return info

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        return self._inner.scan_logs(prefix, after=after, limit=limit)

    # -- writes --------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        for attempt in range(ATTEMPTS):
            sealed, resolved = self.seal_batch(ops)
            try:
                results = self._inner.apply(sealed, now=now)
            except ConflictError as err:
                if not self.retries(err, resolved, attempt):
                    raise
                continue
            except BaseException:
                self.forget_batch(ops)  # it may or may not have been applied
                raise
            return self.learn(ops, results)
        raise AssertionError("unreachable")  # pragma: no cover

    def retries(self, err: ConflictError, resolved: dict[str, type], attempt: int) -> bool:
        """After ``err``: whether the batch is sealed again — another writer moved a position this
        handle resolved (it takes the one the conflict names) — or the conflict is the caller's."""
        if err.key not in resolved or attempt == ATTEMPTS - 1:
            self._forget(err.key)
            return False
        self._moved(err, resolved[err.key])
        return True

    def seal_batch(self, ops: Sequence[Op], fetched: Positions | None = None) -> tuple[list[Op], dict[str, type]]:
        """The ops with their values sealed, and the positions this handle resolved (key -> op type).
        ``fetched``: every position the batch resolves, read beforehand (the asyncio path: sealing
        then reads nothing); without it, a position this handle has not seen is read here."""
        versions: dict[str, int | None] = {}  # as the batch's earlier ops leave them
        nexts: dict[str, int] = {}
        resolved: dict[str, type] = {}
        known: dict[str, DataKey] = {}  # the current data key per partition, looked up once per batch
        out: list[Op] = Checked()  # the backend need not check them again
        for op in ops:
            if isinstance(op, Put):
                op = self._seal_put(op, versions, resolved, known, fetched)
            elif isinstance(op, Append):
                op = self._seal_append(op, nexts, resolved, known, fetched)
            elif isinstance(op, Rewrite):
                op = self._seal_rewrite(op)
            elif isinstance(op, Load):
                op = Load(self._seal_record(op.record))
                versions[op.record.key] = op.record.version
            elif isinstance(op, LoadEntries):
                op = replace(op, entries=tuple(self._seal_entry(e) for e in op.entries))
                nexts.pop(op.log, None)
            elif isinstance(op, Delete):
                versions[op.key] = None
            elif isinstance(op, (Touch, Expire)) and _ends(op):  # what it ends starts again from nothing
                for positions in (versions, nexts):
                    for k in [k for k in positions if k.startswith(op_target(op))]:
                        del positions[k]
            out.append(op)
        return out, resolved

    def _seal_put(
        self, op: Put, versions: dict[str, int | None], resolved: dict[str, type], known: dict[str, DataKey],
        fetched: Positions | None,
    ) -> Put:  # fmt: skip
        if op.key in versions:
            current = versions[op.key]
        elif op.expect is ANY:
            current = self._version_of(op.key) if fetched is None else fetched.versions[op.key]
            resolved[op.key] = Put
        else:
            current = op.expect
        versions[op.key] = (current or 0) + 1
        data, codec = self._seal(op.data, op.codec, op.key, b"r", (current or 0) + 1, known)
        expect = current if op.expect is ANY else op.expect
        return Put(op.key, data, codec, expect, op.expires_at)  # constructors: replace() costs µs

    def _seal_append(
        self, op: Append, nexts: dict[str, int], resolved: dict[str, type], known: dict[str, DataKey],
        fetched: Positions | None,
    ) -> Append:  # fmt: skip
        first = nexts.get(op.log) or op.at
        if first is None:
            first = self._next_of(op.log) if fetched is None else fetched.nexts[op.log]
            resolved[op.log] = Append
        nexts[op.log] = first + len(op.items)
        where = self._prefix + op.log
        if self._clear(where):
            return Append(op.log, op.items, op.expires_at, first)
        seal = self._cipher_for(where).sealer(where, known)  # the key looked up once for all the items
        stored, items = _STORED, []
        for seq, (data, codec) in enumerate(op.items, first):
            frame, name = stored[codec] if codec in stored else _stored(codec)
            items.append((seal(frame + data if frame else data, b"e", seq), name))
        return Append(op.log, tuple(items), op.expires_at, first)

    def _seal_rewrite(self, op: Rewrite) -> Rewrite:
        data, codec = self._seal(op.data, op.codec, op.log, b"e", op.seq)
        return replace(op, data=data, codec=codec)

    def _seal_record(self, rec: Record) -> Record:
        data, codec = self._seal(rec.data, rec.codec, rec.key, b"r", rec.version)
        return replace(rec, data=data, codec=codec)

    def _seal_entry(self, entry: Entry) -> Entry:
        data, codec = self._seal(entry.data, entry.codec, entry.log, b"e", entry.seq)
        return replace(entry, data=data, codec=codec)

    def _seal(
        self, data: bytes, codec: str, key: str, kind: bytes, pos: int, known: dict[str, DataKey] | None = None
    ) -> tuple[bytes, str]:
        where = self._prefix + key
        if self._clear(where):
            return data, codec
        frame, name = _STORED[codec] if codec in _STORED else _stored(codec)
        return self._cipher_for(where).sealer(where, known)(frame + data if frame else data, kind, pos), name

    def _clear(self, where: str) -> bool:
        """:func:`layout.stored_in_clear`, memoised (every value of every batch asks)."""
        clear = self._clears.get(where)
        if clear is None:
            if len(self._clears) >= 4096:
                self._clears.clear()
            clear = self._clears[where] = layout.stored_in_clear(where)
        return clear

    def _cipher_for(self, where: str) -> Cipher:
        self.policy.check_encode(where)
        if self._cipher is None:  # pragma: no cover - a locked policy raised above
            raise KeyUnavailableError(self.policy.locked or "the store was opened without its key")
        return self._cipher

    # -- positions -----------------------------------------------------------
    def needed(self, ops: Sequence[Op]) -> tuple[Positions, list[str], list[str]]:
        """The positions ``ops`` resolve that this handle knows, and the keys and logs to read for
        the others (the asyncio path reads them awaited, then seals with them all given)."""
        found = Positions({}, {})
        keys: list[str] = []
        logs: list[str] = []
        for op in ops:
            if isinstance(op, Put) and op.expect is ANY and op.key not in found.versions and op.key not in keys:
                version = self._versions.get(op.key, _MISSING)
                if version is _MISSING:
                    keys.append(op.key)
                else:
                    found.versions[op.key] = version  # type: ignore[assignment]
            elif isinstance(op, Append) and op.at is None and op.log not in found.nexts and op.log not in logs:
                nxt = self._next.get(op.log)
                if nxt is None:
                    logs.append(op.log)
                else:
                    found.nexts[op.log] = nxt
        return found, keys, logs

    def _version_of(self, key: str) -> int | None:
        if key in self._versions:
            return self._versions[key]
        rec = self._inner.get(key)
        return None if rec is None else rec.version

    def _next_of(self, log: str) -> int:
        if log in self._next:
            return self._next[log]
        info = self._inner.log_info(log)
        return 1 if info is None else info.last_seq + 1  # an emptied log's conflict corrects a wrong 1

    def _moved(self, err: ConflictError, kind: type) -> None:
        """Another writer moved a position this handle resolved: take the one the conflict names."""
        if kind is Append:
            if err.actual is None:
                self._next.pop(err.key, None)
            else:
                self._remember(self._next, err.key, err.actual + 1)
        else:
            self._remember(self._versions, err.key, err.actual)

    def learn(self, ops: Sequence[Op], results: list[OpResult]) -> list[OpResult]:
        """Remember the positions the batch left, and give back the caller's own values."""
        out: list[OpResult] = []
        versions, nexts = self._versions, self._next
        if len(versions) >= _CACHE_MAX or len(nexts) >= _CACHE_MAX:
            versions.clear()
            nexts.clear()
        for op, result in zip(ops, results):
            kind = type(op)  # a turn's ops by exact type first: this runs for every op of every batch
            if kind is Put and type(result) is Record:
                assert isinstance(op, Put) and isinstance(result, Record)
                versions[op.key] = result.version
                r = result
                result = Record(r.key, op.data, op.codec, r.version, r.created_at, r.updated_at, r.expires_at)
            elif kind is Append and type(result) is int:
                assert isinstance(op, Append) and isinstance(result, int)
                nexts[op.log] = result + len(op.items)
            elif isinstance(op, Put) and isinstance(result, Record):
                self._remember(self._versions, op.key, result.version)
                r = result
                result = Record(r.key, op.data, op.codec, r.version, r.created_at, r.updated_at, r.expires_at)
            elif isinstance(op, Append) and isinstance(result, int):
                self._remember(self._next, op.log, result + len(op.items))
            elif isinstance(op, Delete):
                self._remember(self._versions, op.key, None)
            elif isinstance(op, Load):
                result = op.record
            elif isinstance(op, (Touch, Expire, LoadEntries)) and (isinstance(op, LoadEntries) or _ends(op)):
                self.forget_batch([op])
            out.append(result)
        return out

    def saw(self, rec: Record) -> None:
        """A record read: its version remembered (the next put of it is sealed for the one after)."""
        self._remember(self._versions, rec.key, rec.version)

    @staticmethod
    def _remember(cache: dict[str, int | None] | dict[str, int], key: str, value: int | None) -> None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value  # type: ignore[assignment]

    def _forget(self, key: str) -> None:
        self._versions.pop(key, None)
        self._next.pop(key, None)

    def forget_batch(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, Expire):
                self._versions.clear()
                self._next.clear()
                return
            self._forget(op_target(op))

    # -- the rest is the backend's ---------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        return self._inner.purge_expired(limit=limit)

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        return self._inner.migrate(check=check)

    def close(self) -> None:
        self._inner.close()
