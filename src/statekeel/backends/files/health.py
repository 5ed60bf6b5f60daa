"""``integrity_check()`` and ``repair()`` of the files backend (``statekeel doctor``).

Both walk every file under ``data/``. What a crash can leave behind, and
``repair`` removes: temp files of an interrupted write (the rename never
happened, so the old file is intact), and bytes past a log's valid end (a torn
last line, or the lines of an append that did not finish). Anything else that
does not parse is reported, never silently deleted.
"""

from __future__ import annotations

import os

from ...errors import StoreError
from .format import parse_header, parse_record
from .io import TMP_SUFFIX
from .logs import LogLines
from .tree import HEADER, LOG, RECORD, Tree

__all__ = ["check", "repair"]


def _files(tree: Tree) -> list[tuple[str, str]]:
    """(absolute path, path relative to the root) of every file under data/."""
    out = []
    for dirpath, _, filenames in os.walk(tree.abs("data")):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            out.append((path, os.path.relpath(path, tree.root)))
    return out


def _check_file(path: str, rel: str) -> str | None:
    name = os.path.basename(path)
    try:
        if name.endswith(HEADER):
            with open(path, "rb") as f:
                parse_header(f.read(), rel)
        elif name.endswith(LOG):
            with LogLines(path) as lines:
                tail = lines.tail()
                if tail.end < tail.size:
                    return f"{rel}: {tail.size - tail.end} bytes after the last complete append (a torn write); `statekeel doctor --repair` drops them"
                for _ in lines.forward(0, tail.end):
                    pass
                if not os.path.exists(path[: -len(LOG)] + HEADER):
                    return f"{rel}: log lines without their {HEADER} header; they are not part of the store"
        elif name.endswith(RECORD) and not name.startswith("."):
            with open(path, "rb") as f:
                parse_record(rel, f.read(), rel)
    except StoreError as exc:
        return str(exc)
    return None


def check(tree: Tree) -> list[str]:
    problems = []
    for path, rel in _files(tree):
        if os.path.basename(path).startswith(".") and path.endswith(TMP_SUFFIX):
            problems.append(f"{rel}: temp file of an interrupted write; `statekeel doctor --repair` removes it")
            continue
        found = _check_file(path, rel)
        if found:
            problems.append(found)
    return problems


def _cut(path: str, rel: str) -> str | None:
    with LogLines(path) as lines:
        tail = lines.tail()
    if tail.end >= tail.size:
        return None
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, tail.end)
        os.fsync(fd)
    finally:
        os.close(fd)
    return f"{rel}: dropped {tail.size - tail.end} bytes of a torn or unfinished append"


def repair(tree: Tree) -> list[str]:
    """Fix what a crash can leave; return what was done. Call under the exclusive lock."""
    done, temps = [], 0
    for path, rel in _files(tree):
        name = os.path.basename(path)
        if name.startswith(".") and name.endswith(TMP_SUFFIX):
            os.unlink(path)
            temps += 1
        elif name.endswith(LOG):
            fixed = _cut(path, rel)
            if fixed:
                done.append(fixed)
    if temps:
        done.append(f"removed {temps} temp file(s) of interrupted writes")
    for folder in tree.folders_bottom_up():
        if folder != tree.abs("data"):
            try:
                os.rmdir(folder)
            except OSError:
                pass
    return done
