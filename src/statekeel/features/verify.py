"""``statekeel verify``: check every chain, MAC and head of a tamper-evident store, and its anchor.

The walk reads what is stored (``core.storage``) to find every record, log and
head, and reads each through the chain (``core.backend``), which checks it:
a record's MAC and its head entry, every log entry's link and clock, each log's
last seq. Then what the heads list but the store lost, and — with an anchor —
whether any head is older than the anchor says. Every failure is kept, with its
location; one never hides another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..backends.tenant import TenantBackend
from ..core import Core, layout
from ..core.anchor import decode_anchor, encode_anchor
from ..core.chain import Head
from ..core.chained import ChainedBackend
from ..errors import CorruptionError, IntegrityError, UsageError
from ..protocol import Record, keys

__all__ = ["VerifyReport", "anchor", "verify"]

PAGE = 500


@dataclass
class VerifyReport:
    """What :func:`verify` checked and found."""

    records: int = 0
    entries: int = 0
    logs: int = 0
    partitions: int = 0
    failures: list[str] = field(default_factory=list)
    root: str = ""
    """MAC over every head's version and tag: equal roots, equal stores."""
    anchor: str = "no anchor configured (a rollback of the whole store is not detected)"

    @property
    def ok(self) -> bool:
        return not self.failures


def _chained(store: Core) -> ChainedBackend:
    if not isinstance(store.backend, ChainedBackend):
        raise UsageError(
            "this store is not tamper-evident: open it with integrity='chain' (a new store), or copy it into "
            "one (`statekeel copy SRC DST` with STATEKEEL_INTEGRITY=chain)"
        )
    return store.backend


def _heads(store: Core, chained: ChainedBackend, report: VerifyReport) -> dict[str, tuple[int, Head, Any]]:
    """Every partition's head record (verified), by partition: (version, head, head expiry) — with the
    records its buckets list as its own, each bucket checked against it."""
    found: dict[str, tuple[int, Head, Any]] = {}
    buckets: dict[str, dict[int, Record]] = {}
    after = None
    while page := store.storage.scan("", after=after, limit=PAGE):
        for rec in page:
            if layout.is_chain_head(rec.key):
                part = keys.partition(rec.key)  # a head sits right under its partition
                index = layout.chain_bucket_index(rec.key)
                if index is not None:
                    buckets.setdefault(part, {})[index] = rec
                    continue
                try:
                    found[part] = (rec.version, chained.head_of(rec, part), rec.expires_at)
                except IntegrityError as exc:
                    report.failures.append(str(exc))
        after = page[-1].key
    for part in sorted(buckets):
        if part not in found:
            report.failures.append(f"the chain head buckets of {part!r} have no head: it was deleted beneath the API")
    for part, (version, root, expires) in list(found.items()):
        if not root.bits:
            continue
        checked: list[Head] = []
        stored = buckets.get(part, {})
        for index in sorted(set(root.buckets) | set(stored)):
            try:
                checked.append(chained.bucket_of(stored.get(index), part, index, root))
            except IntegrityError as exc:
                report.failures.append(str(exc))
        found[part] = (version, Head(root.logs, root.records_with(checked), root.bits, root.buckets), expires)
    return found


def verify(store: Core) -> VerifyReport:
    """Check the whole store; anchors are compared when the store was opened with one."""
    anchored = _chained(store)
    chained = anchored.unanchored()  # the anchor is compared once, below: not at each read of a head
    report = VerifyReport()
    heads = _heads(store, chained, report)
    report.partitions = len(heads)
    seen: set[str] = set()
    after = None
    while page := store.storage.scan("", after=after, limit=PAGE):
        for rec in page:
            if layout.stored_in_clear(rec.key) or rec.key == layout.ENCRYPTION_CONVERSION:
                continue
            seen.add(rec.key)
            try:
                chained.get(rec.key)
                report.records += 1
            except (IntegrityError, CorruptionError) as exc:
                report.failures.append(str(exc))
        after = page[-1].key
    logs = _check_logs(store, chained, report)
    now = time.time()
    for _part, (_v, head, _e) in sorted(heads.items()):
        for name, rh in head.records.items():
            if name not in seen and (rh.expires is None or rh.expires > now):
                report.failures.append(f"the record {name!r} is missing: its chain head has version {rh.version}")
        for name, lh in head.logs.items():
            if name not in logs and lh.last >= lh.first and (lh.expires is None or lh.expires > now):
                report.failures.append(f"the log {name!r} is missing: its chain head has entries {lh.first}..{lh.last}")
    report.root = _root(chained, heads).hex()
    _against_anchor(anchored, heads, report)
    return report


def _check_logs(store: Core, chained: ChainedBackend, report: VerifyReport) -> set[str]:
    names: set[str] = set()
    after = None
    while infos := store.storage.scan_logs("", after=after, limit=100):
        for info in infos:
            names.add(info.log)
            report.logs += 1
            try:
                chained.log_info(info.log)
                start = info.first_seq
                while batch := chained.read(info.log, start=start, limit=PAGE):
                    report.entries += len(batch)
                    start = batch[-1].seq + 1
            except (IntegrityError, CorruptionError) as exc:
                report.failures.append(str(exc))
        after = infos[-1].log
    return names


def _root(chained: ChainedBackend, heads: dict[str, tuple[int, Head, Any]]) -> bytes:
    body = "\n".join(f"{p}\t{v}\t{h.encode().hex()}" for p, (v, h, _) in sorted(heads.items()))
    return chained.key.root_tag(body.encode())


def _snapshot(heads: dict[str, tuple[int, Head, Any]]) -> dict[str, Any]:
    return {p: [v, e] for p, (v, _h, e) in sorted(heads.items())}


def anchor(store: Core) -> VerifyReport:
    """Verify the store, then keep its heads in its anchor (refused when anything failed)."""
    if isinstance(store.storage, TenantBackend):
        raise UsageError("this is a tenant handle; the anchor covers the whole store (every tenant's heads), "
                         "so run it on the store itself: `statekeel verify URL --anchor`")  # fmt: skip
    chained = _chained(store)
    if chained.anchor is None:
        raise UsageError("no anchor is configured: Integrity(anchor='file:/path' | store URL | object) or "
                         "STATEKEEL_ANCHOR")  # fmt: skip
    report = verify(store)
    if not report.ok:
        raise IntegrityError(f"the store fails verification ({len(report.failures)} problem(s), first: "
                             f"{report.failures[0]}); it was not anchored")  # fmt: skip
    heads = _heads(store, chained.unanchored(), VerifyReport())
    body = {"at": time.time(), "root": report.root, "heads": _snapshot(heads)}
    chained.anchor.save(encode_anchor(body, chained.key))
    report.anchor = f"anchored now ({len(heads)} partitions)"
    return report


def _against_anchor(chained: ChainedBackend, heads: dict[str, tuple[int, Head, Any]], report: VerifyReport) -> None:
    """Every head against its anchored version: a store older than its anchor is said once, first,
    then each partition behind or gone, its stored vs anchored version."""
    found = _anchored(chained, report)
    if found is None:
        return
    anchored, when = found
    report.anchor = f"compared with the anchor written at {when}" if when else "compared with the store's anchor"
    now = time.time()
    behind, gone = [], []
    for part, (version, expires) in sorted(anchored.items()):
        current = heads.get(part)
        if current is None and (expires is None or expires > now):
            gone.append(f"partition {part!r}: gone from the store, anchored at version {version}")
        elif current is not None and current[0] < version:
            behind.append(f"partition {part!r}: head at version {current[0]} in the store, anchored at version {version}")
    if not behind and not gone:
        return
    counts = " and ".join(text for n, text in (
        (len(behind), _plural(len(behind), "partition head is behind its anchored version",
                              "partition heads are behind their anchored versions")),
        (len(gone), _plural(len(gone), "anchored partition is", "anchored partitions are") + " gone")) if n)  # fmt: skip
    headline = (f"the store is older than its anchor{f' (written at {when})' if when else ''}: {counts} — it was "
                "rolled back (an older copy restored, data and heads together) or changed beneath the API; what was "
                "written since is missing")  # fmt: skip
    report.failures[:0] = [headline, *behind, *gone]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _anchored(chained: ChainedBackend, report: VerifyReport) -> tuple[dict[str, tuple[int, Any]], str] | None:
    """The anchored heads and when they were written ("" when unknown); None when there are none
    (the report says why)."""
    try:
        if chained.anchor is None:  # a tenant's handle: the store's anchor, for its own partitions
            floors = chained.anchored_heads()
            return (floors, "") if floors else None
        data = chained.anchor.load()
        if data is None:
            report.anchor = "anchor configured but never written: run `statekeel verify --anchor`"
            return None
        body = decode_anchor(data, chained.key)
    except IntegrityError as exc:
        report.failures.append(str(exc))
        return None
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(body["at"]))
    return {str(p): (int(v), e) for p, (v, e) in body["heads"].items()}, f"{at} UTC"
