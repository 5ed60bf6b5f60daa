"""``integrity_check()`` and ``repair()`` of the files backend (``statekeel doctor``).

Both walk every file under ``data/``. What a crash can leave behind, and
``repair`` removes: temp files of an interrupted write (the rename never
happened, so the old file is intact), and a torn log tail (a last line without
its newline, or the lines of an append that did not finish). Damage to
acknowledged data — a record or line failing its checksum, a complete line that
does not parse, a gap in a log, a lost or damaged header, a journal damaged
after its commit point — is reported, never silently deleted: ``repair`` only
rebuilds what it can prove (a lost header from the lines, a lost newline after a
line whose checksum holds) and sets a damaged journal aside for a person to read.
"""

from __future__ import annotations

import os
import time

from ...errors import CorruptionError, StoreError
from .format import header_text, parse_header, parse_line, parse_record
from .io import TMP_SUFFIX, sync_all, write_atomic
from .journal import Journal
from .logs import LogLines, rebuilt_header
from .tree import HEADER, LOG, RECORD, Tree

__all__ = ["check", "repair", "remove_temp_files", "SET_ASIDE"]

SET_ASIDE = ".journal.damaged-"
"""Prefix of a damaged journal that ``repair`` set aside (in the store root)."""


def _temp_files(tree: Tree) -> list[str]:
    """Absolute paths of every temp file under data/."""
    out: list[str] = []
    for dirpath, _, filenames in os.walk(tree.abs("data")):
        out.extend(os.path.join(dirpath, n) for n in sorted(filenames) if n[0] == "." and n.endswith(TMP_SUFFIX))
    return out


def _journal_problems(tree: Tree, journal: Journal) -> list[str]:
    found = [
        f"{name}: a damaged batch journal set aside by `doctor --repair`; the store may hold part of that batch — "
        "check the keys it names, then delete the file"
        for name in sorted(os.listdir(tree.root)) if name.startswith(SET_ASIDE)
    ]
    try:
        if journal.unapplied():
            found.append(".journal: an unfinished batch; the next write (or `doctor --repair`) finishes it")
    except StoreError as exc:  # a journal damaged after its commit point
        found.append(f".journal: {exc}")
    return found


def _record_problem(tree: Tree, key: str, rel: str) -> str | None:
    try:
        with open(tree.abs(rel), "rb") as f:
            parse_record(key, f.read(), rel)
    except StoreError as exc:
        return f"{rel}: {exc}"
    return None


def _log_problems(tree: Tree, key: str, folder: str, stem: str) -> list[str]:
    rel = os.path.join(folder, stem + LOG)
    found = []
    with LogLines(tree.abs(rel), key) as lines:
        tail = lines.tail()
        damage = lines.damaged()
        if damage is not None:
            found.append(f"{rel}: {damage}")
        elif tail.end < tail.size:
            found.append(f"{rel}: {tail.size - tail.end} bytes after the last complete append (a torn write); "
                         "`statekeel doctor --repair` drops them")
        prev: int | None = None
        try:
            for _, line in lines.forward(0, tail.end):
                try:
                    line.verify(key)
                except CorruptionError as exc:
                    found.append(f"{rel}: {exc}")
                if prev is not None and line.seq != prev + 1:
                    found.append(f"{rel}: entries {prev + 1}..{line.seq - 1} of log {key!r} are missing (a gap) "
                                 f"or out of order; restore the log from a backup")
                prev = line.seq
        except CorruptionError as exc:
            found.append(f"{rel}: {exc}")
    if not os.path.exists(tree.abs(os.path.join(folder, stem + HEADER))):
        found.append(f"{rel}: the header {stem}{HEADER} of log {key!r} is lost; reads rebuild it from the lines "
                     "and `statekeel doctor --repair` writes it back")
    return found


def _header_problem(tree: Tree, key: str, rel: str) -> str | None:
    try:
        with open(tree.abs(rel), "rb") as f:
            parse_header(f.read(), rel, key)
    except StoreError as exc:
        return f"{rel}: {exc}"
    return None


def check(tree: Tree, journal: Journal) -> list[str]:
    """Every problem found by reading every file; an empty list means healthy."""
    problems = _journal_problems(tree, journal)
    for path in _temp_files(tree):
        problems.append(f"{os.path.relpath(path, tree.root)}: temp file of an interrupted write; "
                        "`statekeel doctor --repair` removes it")
    for key, folder, stem in tree.walk("", RECORD):
        problems.append(_record_problem(tree, key, os.path.join(folder, stem + RECORD)) or "")
    for key, folder, stem in tree.walk("", LOG):
        problems.extend(_log_problems(tree, key, folder, stem))
    for key, folder, stem in tree.walk("", HEADER):
        problems.append(_header_problem(tree, key, os.path.join(folder, stem + HEADER)) or "")
    return [p for p in problems if p]


# -- repair -------------------------------------------------------------------------
def _recover(tree: Tree, journal: Journal, full: bool) -> str:
    """Replay the journal (all of it when ``full``) and checkpoint it: the fixes below write
    outside the journal, so no record may be replayed over them later."""
    try:
        said = journal.recover(full=full)
        journal.checkpoint()
        return said
    except StoreError:  # damaged after its commit point: keep it for a person, apply nothing
        raw = os.pread(journal.fd, os.fstat(journal.fd).st_size, 0)
        name = f"{SET_ASIDE}{time.strftime('%Y%m%dT%H%M%S')}"
        _write_synced(tree.abs(name), raw)
        journal.clear()
        return (f"set a damaged batch journal aside as {name} (not applied: its bytes are damaged, and the store "
                "may hold part of that batch; check the keys it names)")


def _fix_log(tree: Tree, key: str, folder: str, stem: str) -> str | None:
    rel = os.path.join(folder, stem + LOG)
    path = tree.abs(rel)
    with LogLines(path, key) as lines:
        tail = lines.tail()
        last = lines.read_bytes(tail.damage, tail.size) if tail.damage is not None else b""
    if tail.damage is not None:
        line = parse_line(last)
        if line is None or b"\n" in last:
            return f"{rel}: NOT repaired — a complete line is damaged; restore the log from a backup"
        line.verify(key)  # a lost newline after an intact line: only then is the line restored
        with open(path, "ab") as f:
            f.write(b"\n")
            os.fsync(f.fileno())
        return f"{rel}: restored the newline after entry {line.seq}"
    if tail.end >= tail.size:
        return None
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, tail.end)
        os.fsync(fd)
    finally:
        os.close(fd)
    return f"{rel}: dropped {tail.size - tail.end} bytes of a torn or unfinished append"


def _fix_header(tree: Tree, key: str, folder: str, stem: str) -> str | None:
    """Write back a lost or damaged (unparsable) header, rebuilt from the lines, which carry checksums."""
    rel = os.path.join(folder, stem + HEADER)
    state = "lost"
    if os.path.exists(tree.abs(rel)):
        if _header_problem(tree, key, rel) is None:
            return None
        state = "damaged"
    with LogLines(tree.abs(os.path.join(folder, stem + LOG)), key) as lines:
        head = rebuilt_header(key, lines)
    if head is None:
        if state == "lost":
            return None
        return (f"{rel}: NOT repaired — the header of log {key!r} is damaged and the log has no lines to rebuild "
                "it from; restore it from a backup")
    _write_synced(tree.abs(rel), header_text(head).encode("utf-8"))
    return (f"{rel}: rebuilt the {state} header of log {key!r} from its lines (entries {head.first_seq}.."
            f"{head.last_seq}; trims not yet compacted are undone and any expiry is cleared)")


def remove_temp_files(tree: Tree) -> int:
    """Remove every temp file under data/ (only under the exclusive lock); return how many."""
    temps = _temp_files(tree)
    for path in temps:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return len(temps)


def _write_synced(path: str, data: bytes) -> None:
    dirty: set[str] = set()
    write_atomic(path, data, dirty)
    sync_all(dirty)


def repair(tree: Tree, journal: Journal, *, full: bool) -> list[str]:
    """Fix what a crash can leave; return what was done. Call under the exclusive lock."""
    done = [_recover(tree, journal, full)]
    temps = remove_temp_files(tree)
    if temps:
        done.append(f"removed {temps} temp file(s) of interrupted writes")
    for key, folder, stem in list(tree.walk("", LOG)):
        done.append(_fix_log(tree, key, folder, stem) or "")
        done.append(_fix_header(tree, key, folder, stem) or "")
    for folder in tree.folders_bottom_up():
        if folder != tree.abs("data"):
            try:
                os.rmdir(folder)
            except OSError:
                pass
    return [d for d in done if d]
