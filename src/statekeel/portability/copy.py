"""Copy a whole store from one backend to another, resumably, and verify the copy.

Records move with :class:`~statekeel.protocol.Load` and log entries with
:class:`~statekeel.protocol.LoadEntries`, so versions, timestamps, expiry and
sequence numbers arrive exactly as they were. Re-running a copy is safe and
cheap: records already identical in the target are not written again, and each
log continues after the last entry the target already has — an interrupted copy
is resumed by running it again.

Limits: the source should not be written to during the copy (verification will
report what changed); a log's own ``created_at``/``updated_at`` in the target
come from its entries (the protocol carries no separate log timestamps), and a
log trimmed down to nothing has no entries to copy, so it is not copied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import InvalidInputError
from ..protocol import Backend, Entry, Load, LoadEntries, LogInfo, Op, Record, Touch
from ._walk import (
    PAGE,
    Checksums,
    Progress,
    ProgressFn,
    Selection,
    Source,
    iter_entries,
    iter_logs,
    iter_records,
    log_digest,
    opened,
)
from .errors import LISTED, VerificationError

__all__ = ["CopyReport", "copy_store", "verify_stores", "transfer", "Plan"]

T = TypeVar("T")


@dataclass
class CopyReport:
    """What a copy moved and how long it took."""

    source: str
    target: str
    records: int
    """Records in the source."""
    logs: int
    entries: int
    """Log entries in the source."""
    written: int
    """Records and entries written (fewer than records + entries when resuming)."""
    verified: bool
    seconds: float

    @property
    def records_per_second(self) -> float:
        return (self.records + self.entries) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Plan:
    """Keys a transfer leaves alone or replaces (import conflicts)."""

    skip_records: set[str] = field(default_factory=set)
    skip_logs: set[str] = field(default_factory=set)
    replace_logs: set[str] = field(default_factory=set)


def _notify(progress: ProgressFn | None, state: Progress) -> None:
    if progress is not None:
        progress(state)


def transfer(
    src: Backend, dst: Backend, sel: Selection, progress: ProgressFn | None = None,
    plan: Plan | None = None, page: int = PAGE, seen: Checksums | None = None,
) -> Progress:
    """Move what ``sel`` selects from ``src`` to ``dst``; idempotent and resumable.

    ``seen`` sums up what was read (complete only when the target started empty).
    """
    plan = plan or Plan()
    state = Progress("records")
    for found in iter_records(src, sel, page):
        if seen is not None:
            seen.add_records(found)
        current = dst.get_many([r.key for r in found])
        todo: list[Op] = [Load(r) for r, cur in zip(found, current) if cur != r and r.key not in plan.skip_records]
        if todo:
            dst.apply(todo)
        state.records += len(found)
        state.written += len(todo)
        _notify(progress, state)
    state.phase = "logs"
    for info in iter_logs(src, sel):
        if info.log not in plan.skip_logs:
            state.logs += 1
            if seen is not None:
                seen.logs.add(log_digest(info))
            _copy_log(src, dst, info, info.log in plan.replace_logs, state, progress, page, seen)
    return state


def _copy_log(
    src: Backend, dst: Backend, info: LogInfo, replace: bool, state: Progress,
    progress: ProgressFn | None, page: int, seen: Checksums | None,
) -> None:
    have = None if replace else dst.log_info(info.log)
    start = info.first_seq if have is None else max(info.first_seq, have.last_seq + 1)
    ran = False
    for batch in iter_entries(src, info, start, page):
        if seen is not None:
            seen.add_entries(batch)
        ops: list[Op] = []
        if replace and not ran:  # void the target's log, so LoadEntries starts it afresh
            ops.append(Touch(info.log, expires_at=0.0))
        ops.append(LoadEntries(info.log, tuple(batch), info.expires_at))
        written = dst.apply(ops)[-1]
        state.entries += len(batch)
        state.written += written if isinstance(written, int) else 0
        ran = True
        _notify(progress, state)
    if not ran:
        state.entries += info.last_seq - info.first_seq + 1
        if have is not None and have.expires_at != info.expires_at:
            dst.apply([LoadEntries(info.log, (), info.expires_at)])
        _notify(progress, state)


# -- verification ---------------------------------------------------------------
class _Diffs:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.total = 0

    def add(self, text: str) -> None:
        self.total += 1
        if len(self.items) < 5 * LISTED:
            self.items.append(text)


def _expired(expires_at: float | None) -> bool:
    return expires_at is not None and expires_at <= time.time()


def _merge(
    a: Iterator[T], b: Iterator[T], key: Callable[[T], Any], same: Callable[[T, T], str | None],
    expires: Callable[[T], float | None], diffs: _Diffs,
) -> int:
    """Walk two key-ordered streams side by side; return how many source items there were."""
    x, y, count = next(a, None), next(b, None), 0
    while x is not None or y is not None:
        if x is not None and (y is None or key(x) < key(y)):
            if not _expired(expires(x)):
                diffs.add(f"{key(x)!r} is missing in the target")
            x, count = next(a, None), count + 1
        elif y is not None and (x is None or key(y) < key(x)):
            if not _expired(expires(y)):
                diffs.add(f"{key(y)!r} is in the target only")
            y = next(b, None)
        elif x is not None and y is not None:
            found = same(x, y)
            if found:
                diffs.add(f"{key(x)!r}: {found}")
            x, y, count = next(a, None), next(b, None), count + 1
    return count


def _record_diff(x: Record, y: Record) -> str | None:
    if x == y:
        return None
    names = ("data", "codec", "version", "created_at", "updated_at", "expires_at")
    return "differs in " + ", ".join(n for n in names if getattr(x, n) != getattr(y, n))


def _records(backend: Backend, prefix: str) -> Iterator[Record]:
    for found in iter_records(backend, Selection((prefix,))):
        yield from found


def _logs(backend: Backend, prefix: str) -> Iterator[LogInfo]:
    yield from iter_logs(backend, Selection((prefix,)))


def _entries(backend: Backend, info: LogInfo) -> Iterator[Entry]:
    for batch in iter_entries(backend, info):
        yield from batch


def _log_diff(src: Backend, dst: Backend) -> Callable[[LogInfo, LogInfo], str | None]:
    def diff(x: LogInfo, y: LogInfo) -> str | None:
        bounds = [n for n in ("first_seq", "last_seq", "expires_at") if getattr(x, n) != getattr(y, n)]
        if bounds:
            return "differs in " + ", ".join(bounds)
        inner = _Diffs()
        _merge(_entries(src, x), _entries(dst, y), lambda e: e.seq,
               lambda e, f: None if e == f else "differs", lambda e: None, inner)
        return f"entries differ ({'; '.join(inner.items[:3])})" if inner.total else None

    return diff


def compare(src: Backend, dst: Backend, sel: Selection) -> tuple[_Diffs, int, int]:
    """Differences between what ``sel`` selects in both; (diffs, records, logs)."""
    diffs, records, logs = _Diffs(), 0, 0
    for prefix in sel.prefixes:
        records += _merge(_records(src, prefix), _records(dst, prefix), lambda r: r.key,
                          _record_diff, lambda r: r.expires_at, diffs)
        logs += _merge(_logs(src, prefix), _logs(dst, prefix), lambda i: i.log,
                       _log_diff(src, dst), lambda i: i.expires_at, diffs)
    exact = sorted(sel.exact)
    if exact:
        pairs = zip(src.get_many(exact), dst.get_many(exact))
        for key, (x, y) in zip(exact, pairs):
            found = "missing in the target" if y is None and x is not None else (
                "in the target only" if x is None and y is not None else
                (_record_diff(x, y) if x is not None and y is not None else None))
            if found:
                diffs.add(f"{key!r}: {found}")
    return diffs, records, logs


def verify_stores(source: Source, target: Source, sel: Selection | None = None) -> tuple[int, int]:
    """Check that ``target`` holds exactly what ``source`` holds (records, logs,
    entries, with versions and timestamps); raise :class:`VerificationError` if not.

    Returns (records, logs) compared.
    """
    with opened(source) as src, opened(target) as dst:
        diffs, records, logs = compare(src, dst, sel or Selection())
    if diffs.total:
        raise VerificationError(f"{dst.url} compared with {src.url}", diffs.items, diffs.total)
    return records, logs


def copy_store(
    source: Source,
    target: Source,
    progress: ProgressFn | None = None,
    *,
    verify: bool = True,
    page: int = PAGE,
) -> CopyReport:
    """Copy every record and log of ``source`` into ``target``, then verify.

    Both are URLs (or open stores/backends): ``copy_store("sqlite:///agent.db",
    "postgresql://…")``. ``progress`` is called with a :class:`Progress` after
    every page. Run it again to resume an interrupted copy.
    """
    if not isinstance(page, int) or page < 1:
        raise InvalidInputError(f"page must be a positive int, got {page!r}")
    began = time.perf_counter()
    with opened(source) as src, opened(target) as dst:
        if src is dst or src.url == dst.url != "memory://":  # plain memory:// is private to its handle
            raise InvalidInputError(f"source and target are the same store ({src.url}); copy to another URL")
        state = transfer(src, dst, Selection(), progress, page=page)
        if verify:
            state.phase = "verify"
            _notify(progress, state)
            verify_stores(src, dst)
    return CopyReport(src.url, dst.url, state.records, state.logs, state.entries, state.written,
                      verify, time.perf_counter() - began)
