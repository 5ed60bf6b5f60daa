"""Export a store, a session or a scope to a folder of readable files; import it back.

An export *is* a files-backend store (``docs/files-backend.md``: pretty JSON
records, JSON Lines logs) plus ``manifest.json``, written last, so an export
without one was interrupted::

    {"format": "statekeel-export", "version": 1, "exported_at": "…",
     "source": "sqlite:///agent.db", "selection": {"session": "support-42", …},
     "counts": {"records": 12, "logs": 1, "entries": 40},
     "checksums": {"algorithm": "…", "records": "…", "logs": "…", "entries": "…"}}

The checksums cover every byte and every version, timestamp and expiry, so an
import can tell a complete export from a damaged or edited one. Because the
export is a store, ``statekeel --url file:///path/to/export sessions list``
inspects it directly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import quote

from ..backends import parse
from ..backends.files.io import fsync_dir, write_atomic
from ..backends.files import MARKER, FilesBackend
from ..errors import InvalidInputError, SchemaTooNewError
from ..protocol import Backend
from ._walk import Checksums, ProgressFn, Selection, Source, iter_logs, iter_records, opened, same_entries, selection
from .copy import Plan, transfer
from ..errors import CorruptionError
from .errors import ImportConflictError, IncompleteExportError, NotAnExportError, VerificationError

__all__ = ["ExportReport", "ImportReport", "export_store", "import_store", "MANIFEST", "EXPORT_VERSION"]

EXPORT_FORMAT = "statekeel-export"
EXPORT_VERSION = 1
MANIFEST = "manifest.json"
OnConflict = Literal["fail", "skip", "overwrite"]
_MODES = ("fail", "skip", "overwrite")


@dataclass
class ExportReport:
    """What an export wrote."""

    path: str
    records: int
    logs: int
    entries: int
    checksums: dict[str, str]
    seconds: float


@dataclass
class ImportReport:
    """What an import did."""

    path: str
    target: str
    records: int
    logs: int
    entries: int
    written: int
    """Records and entries written (those already identical in the target were not)."""
    skipped: int
    """Conflicting records/logs left as the target had them (``on_conflict="skip"``)."""
    overwritten: int
    """Conflicting records/logs replaced (``on_conflict="overwrite"``)."""
    seconds: float


def _files_url(root: str) -> str:
    try:
        return "file://" + quote(root)
    except UnicodeEncodeError:  # a name from bytes that are not UTF-8 (surrogate-escaped by Python)
        raise InvalidInputError(f"the folder name {root!a} is not valid UTF-8; choose another folder") from None


# -- export -----------------------------------------------------------------------
def export_store(
    source: Source,
    directory: str | os.PathLike[str],
    session: str | None = None,
    scope: str | None = None,
    *,
    progress: ProgressFn | None = None,
) -> ExportReport:
    """Write ``source`` — or only ``session`` and/or ``scope`` — into a new folder.

    ``export_store("sqlite:///agent.db", "./out", session="support-42")``. The
    folder must be new or empty; nothing in the source changes.
    """
    began = time.perf_counter()
    sel = selection(session, scope)
    root = os.path.abspath(os.fspath(directory))
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise InvalidInputError(f"{root} is not an empty folder; export into a new or empty folder")
    with opened(source) as src:
        dst = FilesBackend(parse(_files_url(root)))
        try:
            seen = Checksums.empty()
            transfer(src, dst, sel, progress, seen=seen)
            written = Checksums.of(dst, Selection())
        finally:
            dst.close()
        if written.counts() != seen.counts() or written.sums() != seen.sums():
            raise VerificationError(f"the export in {root}", ["what was written is not what was read"], 1)
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "source": src.url,
            "selection": {"session": session, "scope": scope, **sel.describe()},
            "counts": written.counts(),
            "checksums": written.sums(),
        }
    _write_manifest(root, manifest)
    c = written.counts()
    return ExportReport(root, c["records"], c["logs"], c["entries"], written.sums(), time.perf_counter() - began)


def _write_manifest(root: str, manifest: dict[str, Any]) -> None:
    dirty: set[str] = set()
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(os.path.join(root, MANIFEST), text.encode("utf-8"), dirty)
    fsync_dir(root)


# -- import -----------------------------------------------------------------------
def read_manifest(root: str) -> dict[str, Any]:
    """The manifest of the export in ``root``, or the typed error saying why there is none."""
    if not os.path.isdir(root):
        raise NotAnExportError(f"{root} is not a folder; give the folder an export was written to")
    try:
        with open(os.path.join(root, MANIFEST), "rb") as f:
            manifest = json.loads(f.read())
    except FileNotFoundError:
        if os.path.exists(os.path.join(root, MARKER)):
            raise IncompleteExportError(
                f"{root} has no {MANIFEST}: the export was interrupted before it finished; export again"
            ) from None
        raise NotAnExportError(f"{root} is not a statekeel export (no {MANIFEST}); check the path") from None
    except ValueError as exc:
        raise IncompleteExportError(f"{root}/{MANIFEST} is not valid JSON ({exc}); export again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise NotAnExportError(f"{root}/{MANIFEST} does not describe a statekeel export")
    version = manifest.get("version")
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise SchemaTooNewError(
            f"{root} is export format version {version}, newer than this statekeel reads "
            f"({EXPORT_VERSION}); upgrade the statekeel package"
        )
    if not isinstance(manifest.get("counts"), dict) or not isinstance(manifest.get("checksums"), dict):
        raise IncompleteExportError(f"{root}/{MANIFEST} lacks its counts or checksums; export again")
    return manifest


def _open_export(root: str) -> FilesBackend:
    backend = FilesBackend(parse(_files_url(root)), migrate=False)
    if backend.migrate(check=True).current == 0:
        backend.close()
        raise IncompleteExportError(f"{root} has a manifest but no store files; export again")
    return backend


def _verify_export(root: str, exp: Backend, manifest: dict[str, Any]) -> None:
    try:
        found = Checksums.of(exp, Selection())
    except CorruptionError as exc:  # a record's own checksum failed: damaged, or edited by hand
        raise IncompleteExportError(
            f"a file in {root} no longer matches its checksum ({str(exc).split(';')[0]}): it is damaged or "
            "was edited. Export again; to import a record you edited on purpose, delete its \"crc\" field "
            "and pass verify=False (CLI: --no-verify)"
        ) from exc
    want_sums = {k: v for k, v in manifest["checksums"].items() if k != "algorithm"}
    have_sums = {k: v for k, v in found.sums().items() if k != "algorithm"}
    if found.counts() != manifest["counts"] or have_sums != want_sums:
        raise IncompleteExportError(
            f"the files in {root} no longer match its {MANIFEST} (counts {found.counts()} vs "
            f"{manifest['counts']}): it is damaged or was edited. Export again, or pass verify=False "
            "(CLI: --no-verify) to import an export you edited on purpose"
        )


def import_store(
    directory: str | os.PathLike[str],
    target: Source,
    on_conflict: OnConflict = "fail",
    *,
    verify: bool = True,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Load an export into ``target``. Conflicts — keys the target holds with other
    data — are all found *before* anything is written: ``"fail"`` (default) raises
    :class:`ImportConflictError`, ``"skip"`` keeps the target's data,
    ``"overwrite"`` replaces it. Importing the same export again changes nothing.
    """
    if on_conflict not in _MODES:
        raise InvalidInputError(f"on_conflict must be one of {', '.join(_MODES)}, got {on_conflict!r}")
    began = time.perf_counter()
    root = os.path.abspath(os.fspath(directory))
    manifest = read_manifest(root)
    exp = _open_export(root)
    try:
        if verify:
            _verify_export(root, exp, manifest)
        with opened(target) as dst:
            if dst.url == exp.url:
                raise InvalidInputError(f"{root} cannot be imported into itself")
            plan, conflicts = _plan(exp, dst, on_conflict)
            if conflicts and on_conflict == "fail":
                raise ImportConflictError(conflicts, len(conflicts))
            state = transfer(exp, dst, Selection(), progress, plan)
            _check_imported(exp, dst, plan)
    finally:
        exp.close()
    n = len(conflicts)
    return ImportReport(
        root, dst.url, state.records, state.logs, state.entries, state.written,
        n if on_conflict == "skip" else 0, n if on_conflict == "overwrite" else 0,
        time.perf_counter() - began,
    )


def _same_prefix(exp: Backend, dst: Backend, log: str) -> bool:
    """True when the target's log is the start of the export's (an earlier, partial import)."""
    mine, theirs = exp.log_info(log), dst.log_info(log)
    if mine is None or theirs is None:
        return mine is theirs
    if theirs.first_seq != mine.first_seq or theirs.last_seq > mine.last_seq:
        return False
    return same_entries(exp, replace(mine, last_seq=theirs.last_seq), dst, theirs)


def _plan(exp: Backend, dst: Backend, on_conflict: str) -> tuple[Plan, list[str]]:
    """Every conflict, found before anything is written, and what to do about them."""
    plan, conflicts = Plan(), []
    for found in iter_records(exp, Selection()):
        for rec, cur in zip(found, dst.get_many([r.key for r in found])):
            if cur is not None and cur != rec:
                conflicts.append(f"record {rec.key!r} (target version {cur.version}, export {rec.version})")
                plan.skip_records.add(rec.key)
    for info in iter_logs(exp, Selection()):
        if dst.log_info(info.log) is not None and not _same_prefix(exp, dst, info.log):
            conflicts.append(f"log {info.log!r}")
            plan.skip_logs.add(info.log)
    if on_conflict == "overwrite":
        plan.replace_logs, plan.skip_logs, plan.skip_records = plan.skip_logs, set(), set()
    return plan, conflicts


def _check_imported(exp: Backend, dst: Backend, plan: Plan) -> None:
    """Every record and log that was to be imported is now in the target, identical."""
    bad: list[str] = []
    for found in iter_records(exp, Selection()):
        todo = [r for r in found if r.key not in plan.skip_records]
        for rec, cur in zip(todo, dst.get_many([r.key for r in todo])):
            if cur != rec:
                bad.append(f"record {rec.key!r}")
    for info in iter_logs(exp, Selection()):
        if info.log in plan.skip_logs:
            continue
        have = dst.log_info(info.log)
        bounds = (info.first_seq, info.last_seq, info.expires_at)
        if have is None or (have.first_seq, have.last_seq, have.expires_at) != bounds or not same_entries(
            exp, info, dst, have
        ):
            bad.append(f"log {info.log!r}")
    if bad:
        raise VerificationError(f"the import into {dst.url}", bad, len(bad))
