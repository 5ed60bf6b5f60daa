"""What ``statekeel doctor`` checks: schema, the backend's own integrity check, every
record's and log entry's checksum and decoding, the continuity of every log, and
that every listed session has its metadata.

The walk goes through the backend protocol only, so it runs on every backend.
A damaged record raises :class:`~statekeel.errors.CorruptionError` naming it; the
walk notes it and carries on after it, so one damaged record never hides another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from statekeel import StatekeelError, Store
from statekeel.core import layout
from statekeel.core.encryption import EncryptedStorePolicy, is_planted_plaintext
from statekeel.core.chain import STEP, split_trailer
from statekeel.core.chained import ChainedBackend
from statekeel.features.verify import verify
from statekeel.errors import CorruptionError
from statekeel.protocol import Entry, LogInfo, Record, keys
from statekeel.protocol.capabilities import SupportsIntegrityCheck
from statekeel.store import open_for_maintenance

from ._output import encryption_from_env, missing_sqlite_file
from ._values import decode_lenient

__all__ = ["MAX_LISTED", "PROBE_KEY", "Check", "Report", "examine", "diagnose", "quick_diagnose"]

MAX_LISTED = 20
"""Problems listed per check; the rest are counted."""

PAGE = 500
"""Records or entries read per call while walking the store."""


@dataclass
class Check:
    """The outcome of one doctor check."""

    name: str
    summary: str
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        bad = ("damaged", "missing", "undecodable")
        return not self.problems and not any(self.counts.get(k) for k in bad)


@dataclass
class Report:
    """Everything ``statekeel doctor`` found."""

    url: str
    checks: list[Check] = field(default_factory=list)
    repair: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "ok": self.ok, "repair": self.repair,
            "checks": [
                {"name": c.name, "ok": c.ok, "summary": c.summary, "problems": c.problems, "counts": c.counts}
                for c in self.checks
            ],
            "problems": [f"{c.name}: {p}" for c in self.checks for p in c.problems],
        }


class _Problems(list[str]):
    """A problem list that keeps the first MAX_LISTED and counts the rest."""

    extra = 0

    def add(self, text: str) -> None:
        if len(self) < MAX_LISTED:
            self.append(text)
        else:
            self.extra += 1

    def done(self) -> list[str]:
        return [*self, *([f"… and {self.extra} more"] if self.extra else [])]


def _check_schema(store: Store) -> Check:
    status = store.storage.migrate(check=True)
    if status.up_to_date:
        return Check("schema", f"version {status.current}, as this statekeel expects")
    return Check("schema", f"version {status.current}, expected {status.target}", [
        f"{len(status.pending)} migrations are pending; run `statekeel migrate` (see --check / --print-sql)"
    ])


def _check_integrity(store: Store) -> Check:
    if not isinstance(store.storage, SupportsIntegrityCheck):
        return Check("integrity", f"the {type(store.storage).__name__} has no integrity check of its own")
    found = [line.strip() for row in store.storage.integrity_check() for line in str(row).splitlines()]
    problems = [p for p in found if not p.startswith("***")]  # SQLite's "*** in database main ***" header
    return Check("integrity", "the backend's own integrity check", problems)


def _decodes(store: Store, item: Record | Entry, where: str, problems: _Problems) -> bool:
    """Whether a stored record or entry opens (encryption binds its key and position) and decodes.

    An encrypted store opened without its key (locked) cannot decode its values: only what
    is stored in plaintext where it must not be is reported."""
    key, pos = (item.key, item.version) if isinstance(item, Record) else (item.log, item.seq)
    sealed = store.sealing
    if sealed is not None and sealed.locked:
        if is_planted_plaintext(item.codec, key):
            problems.add(f"{where}: stored without encryption in an encrypted store (codec {item.codec!r}): "
                         "planted or tampered with")
            return False
        return True
    try:
        data, codec = item.data, item.codec
        if sealed is not None:
            data, codec = sealed.open_value(data, codec, key, b"r" if isinstance(item, Record) else b"e", pos)
        if codec.endswith(STEP):  # its MAC and place in the chain are the chain check's
            data, codec = split_trailer(data, key)[0], codec.removesuffix(STEP)
        decode_lenient(store, data, codec, key)  # a class not importable here is code, not damage
    except Exception as exc:  # any failure to read back is what doctor reports
        problems.add(f"{where}: cannot decode ({type(exc).__name__}: {exc})")
        return False
    return True


def _policy(store: Store) -> EncryptedStorePolicy | None:
    return store.sealing.policy if store.sealing is not None else None


def _locked(store: Store) -> bool:
    policy = _policy(store)
    return policy is not None and policy.locked is not None


def _check_encryption(store: Store) -> Check:
    policy = _policy(store)
    if policy is None:
        return Check("encryption", "not encrypted")
    if policy.locked is not None:
        return Check("encryption", "encrypted, key not given: values not decoded (checksums and plaintext "
                     "records still checked; set STATEKEEL_MASTER_KEY to decode them)")
    converting = "; `statekeel keys encrypt` has not finished: run it again" if policy.converting else ""
    return Check("encryption", f"encrypted, key given{converting}", [converting[2:]] if converting else [])


def _walk(fetch: Callable[[int], list[Any]], skip: Callable[[CorruptionError], None],
          problems: _Problems) -> Callable[[], list[Any]]:
    """Pages from ``fetch(limit)``; when a page holds a damaged item, narrow to one item
    per call to find it, report it, ``skip`` past it and widen again. An error that comes back
    after it was skipped (it names no item, or one ``skip`` cannot step over — a listing refused
    as a whole) ends the walk, reported, instead of looping on it."""
    limit = [PAGE]
    skipped: list[tuple[str, int | None]] = []

    def next_page() -> list[Any]:
        while True:
            try:
                page = fetch(limit[0])
            except CorruptionError as err:
                if limit[0] > 1:
                    limit[0] = 1  # the items before the damaged one are read one by one
                    continue
                if skipped and skipped[-1] == (err.key, err.seq):
                    problems.add(f"the walk stopped there: the listing fails at the same place after skipping {err.key!r}")
                    return []
                problems.add(str(err).split(";")[0])
                skipped.append((err.key, err.seq))
                skip(err)
                limit[0] = PAGE
                continue
            skipped.clear()
            return page

    return next_page


def _check_records(store: Store) -> Check:
    problems, count, damaged, undecodable = _Problems(), 0, 0, 0
    after: list[str | None] = [None]

    def skip(err: CorruptionError) -> None:
        nonlocal damaged
        damaged, after[0] = damaged + 1, err.key

    page_of = _walk(lambda n: store.storage.scan("", after=after[0], limit=n), skip, problems)
    while page := page_of():
        rec: Record
        for rec in page:
            undecodable += not _decodes(store, rec, rec.key, problems)
        count, after[0] = count + len(page), page[-1].key
    counts = {"records": count + damaged, "verified": count, "damaged": damaged, "undecodable": undecodable}
    decoded = "values not decoded (no key)" if _locked(store) else f"{count - undecodable} decode"
    return Check("records", f"{count + damaged} records: {count} pass their checksums, {damaged} damaged; "
                 f"{decoded}", problems.done(), counts)


def _check_log(store: Store, info: LogInfo, problems: _Problems, counts: dict[str, int]) -> None:
    seq = [info.first_seq]

    def skip(err: CorruptionError) -> None:
        counts["damaged"] += 1
        seq[0] = (err.seq if err.seq is not None else seq[0]) + 1

    page_of = _walk(lambda n: store.storage.read(info.log, start=seq[0], limit=n), skip, problems)
    while entries := page_of():
        entry: Entry
        for entry in entries:
            if entry.seq != seq[0]:
                problems.add(f"{info.log}: entries {seq[0]}..{entry.seq - 1} are missing")
                counts["missing"] += entry.seq - seq[0]
            if not _decodes(store, entry, f"{info.log}#{entry.seq}", problems):
                counts["undecodable"] += 1
            seq[0] = entry.seq + 1
        counts["verified"] += len(entries)
    if seq[0] <= info.last_seq:
        problems.add(f"{info.log}: entries {seq[0]}..{info.last_seq} are missing")
        counts["missing"] += info.last_seq - seq[0] + 1


def _check_logs(store: Store) -> Check:
    problems, logs, after = _Problems(), 0, None
    counts = {"logs": 0, "verified": 0, "damaged": 0, "missing": 0, "undecodable": 0}
    while page := store.storage.scan_logs("", after=after, limit=100):
        for info in page:
            _check_log(store, info, problems, counts)
        logs, after = logs + len(page), page[-1].log
    counts["logs"] = logs
    return Check("logs", f"{logs} logs, {counts['verified']} entries pass their checksums and continue without "
                 f"gaps; {counts['damaged']} damaged, {counts['missing']} missing", problems.done(), counts)


def _listed_ids(store: Store, problems: _Problems) -> set[str]:
    ids, after = set(), None
    while page := store.storage.scan(layout.SESSION_INDEX_PREFIX, after=after, limit=PAGE):
        found = [keys.split(r.key)[-1] for r in page if not layout.is_chain_head(r.key)]
        for sid, meta in zip(found, store.storage.get_many([layout.session_meta_key(i) for i in found])):
            if meta is None:
                problems.add(f"session {sid!r} is listed but its metadata record is missing")
        ids.update(found)
        after = page[-1].key
    return ids


def _stored_ids(store: Store, problems: _Problems) -> set[str]:
    """Ids of every session metadata record (``session/<id>/meta``), damaged ones included."""
    ids: set[str] = set()
    after: list[str | None] = [None]
    prefix = layout.SESSIONS_PREFIX

    def skip(err: CorruptionError) -> None:
        after[0] = err.key
        _note_meta(err.key, ids)

    page_of = _walk(lambda n: store.storage.scan(prefix, after=after[0], limit=n), skip, _Problems())
    while page := page_of():
        for rec in page:
            _note_meta(rec.key, ids)
        after[0] = page[-1].key
    return ids


def _note_meta(key: str, ids: set[str]) -> None:
    sid = layout.session_id_of_meta(key)
    if sid is not None:
        ids.add(sid)


def _check_sessions(store: Store) -> Check:
    problems = _Problems()
    listed = _listed_ids(store, problems)
    for sid in sorted(_stored_ids(store, problems) - listed):
        problems.add(f"session {sid!r} exists but is not listed (a creation cut short); "
                     "reopening it with store.session(id) lists it again")
    return Check("sessions", f"{len(listed)} sessions listed, each with its metadata", problems.done(),
                 {"sessions": len(listed)})


def _check_chain(store: Store) -> Check:
    """Tamper evidence (``statekeel verify``): every chain, MAC, head and the anchor."""
    if store.chain_locked:
        return Check("chain", "tamper-evident, key not given: chains not checked (set STATEKEEL_MASTER_KEY)")
    if not isinstance(store.backend, ChainedBackend):
        return Check("chain", "not tamper-evident")
    report = verify(store)
    counts = {"records": report.records, "entries": report.entries, "failures": len(report.failures)}
    return Check("chain", f"{report.records} records and {report.entries} entries verified against "
                 f"{report.partitions} heads; {report.anchor}", report.failures[:MAX_LISTED], counts)


def examine(store: Store) -> Report:
    """Run every check on an open store; data checks need a current schema."""
    report = Report(store.url, [Check("open", f"opened with the {type(store.storage).__name__}")])
    checks = (_check_schema, _check_encryption, _check_integrity, _check_records, _check_logs, _check_sessions,
              _check_chain)
    for check in checks:
        name = check.__name__.removeprefix("_check_")
        try:
            report.checks.append(check(store))
        except StatekeelError as exc:
            report.checks.append(Check(name, "could not run", [str(exc)]))
        if name == "schema" and not report.ok:
            break  # without the current schema, reading data only repeats the error
    _once(report)
    return report


def _once(report: Report) -> None:
    """A damaged record the backend's own check already named (with its file, say) is not listed
    again by the walk; the walk's counts stay as they are."""
    own = [p for c in report.checks if c.name == "integrity" for p in c.problems]
    for c in report.checks:
        if c.name in ("records", "logs") and own:
            c.problems = [p for p in c.problems if not any(p in mine for mine in own)]


def _open(url: str) -> Store | Report:
    """The store at ``url`` opened without migrating, or the report saying why it cannot open."""
    missing = missing_sqlite_file(url)
    if missing:
        return Report(url, [Check("open", "no store", [
            f"no store at {missing}; check the URL, or create it with `statekeel migrate`"
        ])])
    try:
        return open_for_maintenance(url, encryption=encryption_from_env())
    except StatekeelError as exc:
        return Report(url, [Check("open", "could not open the store", [str(exc)])])


def diagnose(url: str) -> Report:
    """Open ``url`` (without migrating) and examine it; a store that cannot open is a report too."""
    store = _open(url)
    if isinstance(store, Report):
        return store
    with store:
        return examine(store)


PROBE_KEY = keys.join("statekeel", "probe")
"""The key ``doctor --quick`` reads: no feature writes it, so the read returns nothing, cheaply."""


def _check_round_trip(store: Store) -> Check:
    store.storage.get(PROBE_KEY)
    return Check("round trip", "the backend answered a read")


def quick_diagnose(url: str) -> Report:
    """``doctor --quick``, for liveness and readiness probes: the store opens, its schema is the
    one this statekeel expects, and the backend answers one read. Nothing is walked, so the cost
    does not grow with the store (a damaged record is the full doctor's to find)."""
    store = _open(url)
    if isinstance(store, Report):
        return store
    with store:
        report = Report(store.url, [Check("open", f"opened with the {type(store.storage).__name__}")])
        for name, check in (("schema", _check_schema), ("round trip", _check_round_trip)):
            try:
                report.checks.append(check(store))
            except StatekeelError as exc:
                report.checks.append(Check(name, "could not run", [str(exc)]))
            if not report.ok:
                break
        return report
