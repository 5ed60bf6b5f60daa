"""The files backend itself: opening, locking, reads, and batches committed through :mod:`.io`."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from ...errors import (
    ConfigurationError,
    MigrationRequiredError,
    NotAStoreError,
    SchemaTooNewError,
    StatekeelError,
    StoreClosedError,
    translate,
)
from ...protocol import Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Record
from ...protocol.checks import check_ops
from ...protocol.group import ThreadGroup
from .._url import ParsedURL
from .errors import map_error as _map_error
from .format import LogHeader, parse_header, parse_record
from .io import TMP_SUFFIX, fsync_dir, make_dirs, sync_all, write_atomic
from .journal import Journal, commit
from .logs import LogLines, rebuilt_header
from .pending import Pending, View
from .tree import HEADER, LOG, RECORD, KeyPath, Tree
from .txn import Disk, LogState, Txn, alive

__all__ = ["FilesBackend", "LAYOUT", "MARKER", "FORMAT", "MIGRATIONS"]

FORMAT = "statekeel-files"
MARKER = "statekeel.json"
LAYOUT = 1
"""The layout version this code writes; ``statekeel.json`` records the store's."""

# The index of a migration is the layout version it brings the store to, minus one.
MIGRATIONS: list[str] = [
    "create data/, .journal, .gitignore and statekeel.json (layout 1)",
]

OPTIONS: tuple[str, ...] = ()
"""``file://`` URLs take no ``?options``; any given is refused, never silently ignored."""

_OWN = {".lock", ".journal", ".gitignore"}
_LOG_FILES = (HEADER, LOG)
"""A log exists if either file does: lines whose header was lost are still a log."""
_GITIGNORE = "# statekeel: the lock and the batch journal are not data\n.lock\n.journal\n.*.tmp\n"


_T = TypeVar("_T")


def _creator_temp(name: str) -> bool:
    """A temp file of :meth:`FilesBackend._create_layout_1` (``.statekeel.json.<hex>.tmp`` …)."""
    return name.endswith(TMP_SUFFIX) and any(name.startswith(f".{own}.") for own in (MARKER, ".gitignore"))


class FilesBackend(Backend):
    """Records as JSON files, logs as JSON Lines; flock for processes on one host."""

    def __init__(self, url: ParsedURL, *, migrate: bool = True) -> None:
        url.refuse_unknown(OPTIONS)
        self.url = url.redacted
        self.root = os.path.abspath(url.dir_path())
        self.tree = Tree(self.root)
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._journal: Journal | None = None
        self._group = ThreadGroup(lambda: self._locked(True), self._commit)
        self._synced = False
        """This process has replayed the journal once (see :mod:`.journal`): the page cache is now trusted."""
        self._closed = False
        self.read_only = False
        """True when the folder could only be opened for reading."""
        self._view = View(self.tree)
        """How reads see the files: through a batch that could not be finished, while one is pending."""
        self._disk = Disk(
            path=self.tree.path,
            record=self._read_record,
            log=self._log_state,
            lines=lambda kp: LogLines(self.tree.abs(kp.file(LOG)), kp.key),
            keys=lambda prefix, kind: (k for k, _, _ in self.tree.walk(prefix, _LOG_FILES if kind == HEADER else kind)),
            exists=lambda rel: os.path.exists(self.tree.abs(rel)),
        )
        with translate(_map_error):
            if migrate:
                self.migrate()
            elif self._layout() == LAYOUT:
                self._open_files()

    # -- opening and migrations -------------------------------------------------
    def _layout(self) -> int:
        """The store's layout version (0 = no store yet); refuses foreign folders."""
        if not os.path.exists(self.root):
            return 0
        if not os.path.isdir(self.root):
            raise NotAStoreError(f"{self.root} is a file, not a folder; point file:// at a folder")
        try:
            with open(os.path.join(self.root, MARKER), "rb") as f:
                marker = json.loads(f.read())
        except FileNotFoundError:
            listed = os.listdir(self.root)
            if MARKER in listed:  # another process created the store just now
                return self._layout()
            others = sorted(n for n in listed if not self._ours(n))
            if others and os.path.exists(os.path.join(self.root, MARKER)):
                return self._layout()  # created (and written to) while we looked
            if others:
                raise NotAStoreError(
                    f"{self.root} already holds files that are not a statekeel store "
                    f"({', '.join(others[:5])}{', …' if len(others) > 5 else ''}); use an empty or new folder"
                ) from None
            return 0
        except ValueError as exc:
            raise NotAStoreError(f"{self.root}/{MARKER} is not valid JSON ({exc}); this is not a statekeel store") from exc
        if not isinstance(marker, dict) or marker.get("format") != FORMAT or not isinstance(marker.get("layout"), int):
            raise NotAStoreError(f"{self.root}/{MARKER} does not describe a {FORMAT} store; use another folder")
        layout: int = marker["layout"]
        if layout > LAYOUT:
            raise SchemaTooNewError(
                f"{self.root} has files layout {layout}, newer than this statekeel understands ({LAYOUT}); "
                "upgrade the statekeel package"
            )
        return layout

    def _ours(self, name: str) -> bool:
        """A file a store's creation leaves before its marker exists: another process creating it
        right now, or one that crashed half-way (its temp files, an empty data/)."""
        if name in _OWN or _creator_temp(name):
            return True
        path = os.path.join(self.root, name)
        return name == "data" and os.path.isdir(path) and not os.listdir(path)

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        with self._mutex, translate(_map_error):
            current = self._layout()
            pending = MIGRATIONS[current:]
            if check or current == LAYOUT:
                if current == LAYOUT and not check:  # a check writes nothing, not even .lock
                    self._open_files()
                    self._sweep()
                return MigrationStatus(current, LAYOUT, list(pending))
            dirty: set[str] = set()
            make_dirs(self.root, dirty)
            sync_all(dirty)
            self._open_files()
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                if self._layout() < 1:  # another process may have done it meanwhile
                    self._create_layout_1()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            return MigrationStatus(LAYOUT, LAYOUT, [])

    def _create_layout_1(self) -> None:
        """Create the store; called under the exclusive lock, so leftover temp files are a crashed creator's."""
        for name in os.listdir(self.root):
            if _creator_temp(name):
                os.unlink(os.path.join(self.root, name))
        dirty: set[str] = set()
        make_dirs(os.path.join(self.root, "data"), dirty)
        write_atomic(os.path.join(self.root, ".gitignore"), _GITIGNORE.encode(), dirty)
        marker = {"format": FORMAT, "layout": 1, "about": "a statekeel store; see docs/files-backend.md"}
        sync_all(dirty | {self.root})
        write_atomic(os.path.join(self.root, MARKER), (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode(), dirty)
        sync_all(dirty)

    def _open_files(self) -> None:
        if self._lock_fd is not None:
            return
        journal = os.path.join(self.root, ".journal")
        try:
            self._lock_fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            fd = os.open(journal, os.O_RDWR | os.O_CREAT, 0o644)
            fsync_dir(self.root)  # the journal must exist durably before it is ever relied on
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            # a read-only folder (a mounted backup, a read-only checkout): reads only
            self.read_only = True
            self._lock_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            fd = os.open(journal if os.path.exists(journal) else os.devnull, os.O_RDONLY)
        self._journal = Journal(self.root, fd)

    def _ready(self) -> tuple[int, Journal]:
        if self._closed:
            raise StoreClosedError.of(self.url)
        if self._lock_fd is None and self._layout() == LAYOUT:
            self._open_files()
        if self._lock_fd is None or self._journal is None:
            raise MigrationRequiredError(
                f"{self.root} is not a statekeel store yet; run `statekeel migrate {self.url}` "
                "or open it with migrate=True"
            )
        return self._lock_fd, self._journal

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """The process-wide mutex and the cross-process flock; finishes a crashed batch first."""
        with self._mutex, translate(_map_error):
            fd, journal = self._ready()
            if exclusive and self.read_only:
                raise ConfigurationError(f"{self.root} is read-only here; copy it somewhere writable to change it")
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                if journal.unfinished() or not self._synced:
                    self._view = self._finish(fd, journal, exclusive)
                yield
            finally:
                self._view = View(self.tree)
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _finish(self, fd: int, journal: Journal, exclusive: bool) -> View:
        """Replay the journal: all of it on this process's first lock, else a crashed writer's batch.
        A reader that cannot — the disk is full, the folder is read-only — reads through the
        journal instead (:mod:`.pending`): whole batches, without writing."""
        from .health import remove_temp_files

        if journal.idle():
            self._synced = True
            return View(self.tree)
        if not self.read_only:
            if not exclusive:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._recover(journal)
                return View(self.tree)
            except OSError as exc:
                if exclusive or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                remove_temp_files(self.tree)  # frees space; temp files are never read
        actions = journal.load()
        return View(self.tree, Pending(actions) if actions else None)

    def _sweep(self) -> None:
        """On open, remove temp files a killed writer left (one walk of data/), if no one is writing
        now; otherwise leave them to a later open or `doctor --repair` — they are never read."""
        from .health import remove_temp_files

        if self.read_only or self._lock_fd is None:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            remove_temp_files(self.tree)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _recover(self, journal: Journal) -> None:
        """Finish (or discard) what a crashed writer left, then remove its temp files: under the
        exclusive lock no other writer is running, so every temp file is stale."""
        from .health import remove_temp_files

        journal.recover(full=not self._synced)
        self._synced = True
        remove_temp_files(self.tree)

    # -- reading files ------------------------------------------------------------
    def _read_record(self, kp: KeyPath) -> Record | None:
        text = self._view.file(kp.file(RECORD))
        return None if text is None else parse_record(kp.key, text, self.tree.abs(kp.file(RECORD)))

    def _log_state(self, kp: KeyPath) -> LogState | None:
        """The log's header and lines; a lost header is rebuilt from the lines (never reads as empty)."""
        lines = self._view.lines(kp.file(LOG), kp.key)
        try:
            head = self._header(kp) or rebuilt_header(kp.key, lines)
            damage = lines.damaged()
            if damage is not None:
                raise damage
        except BaseException:
            lines.close()
            raise
        if head is None:
            lines.close()
            return None
        last = lines.tail().last
        if last is not None:
            head.last_seq = max(head.last_seq, last.seq)
            head.updated_at = max(head.updated_at, last.created_at)
        on_disk = self._view.exists(kp.file(HEADER))
        return LogState(kp, head, lines, on_disk, header_dirty=not on_disk)

    def _header(self, kp: KeyPath) -> LogHeader | None:
        text = self._view.file(kp.file(HEADER))
        if text is None:
            return None
        head = parse_header(text, self.tree.abs(kp.file(HEADER)), kp.key)
        head.log = kp.key
        return head

    def _live_log(self, kp: KeyPath, now: float) -> LogState | None:
        lg = self._log_state(kp)
        if lg is None:
            return None
        if alive(lg.head.expires_at, now) and not lg.empty:
            return lg
        lg.lines.close()
        return None

    # -- the protocol: reads ------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        with self._locked(False):
            rec = self._read_record(self.tree.path(key))
        if rec is None or include_expired or alive(rec.expires_at, time.time()):
            return rec
        return None

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        """One shared lock for all of them: a snapshot no batch commits into the middle of."""
        with self._locked(False):
            found = [self._read_record(self.tree.path(key)) for key in keys]
        now = time.time()
        return [rec if rec is not None and alive(rec.expires_at, now) else None for rec in found]

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        out: list[Record] = []
        if limit <= 0:
            return out
        with self._locked(False):
            now = time.time()
            for key, folder, stem in self._view.walk(prefix, (RECORD,), after):
                rec = self._read_record(KeyPath(key, folder, stem, []))
                if rec is not None and alive(rec.expires_at, now):
                    out.append(rec)
                    if len(out) >= limit:
                        break
        return out

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        with self._locked(False):
            lg = self._live_log(self.tree.path(log), time.time())
            if lg is None:
                return []
            with lg.lines:
                lo = max(start, lg.head.first_seq)
                hi = lg.head.last_seq + 1 if stop is None else min(stop, lg.head.last_seq + 1)
                if limit is not None:
                    lo, hi = (max(lo, hi - limit), hi) if reverse else (lo, min(hi, lo + limit))
                if lo >= hi:
                    return []
                tail = reverse and hi == lg.head.last_seq + 1
                lines = lg.lines.entries(lo, hi, from_end=tail)
        return [Entry(log, ln.seq, ln.data, ln.codec, ln.created_at) for ln in lines]

    def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        values = None
        if limit is None:  # a whole-history reload: one read, checked in bulk (LogLines.json_values)
            with self._locked(False):
                lg = self._live_log(self.tree.path(log), time.time())
                if lg is None:
                    return []
                with lg.lines:
                    values = lg.lines.json_values(lg.head.first_seq, lg.head.last_seq + 1)
        return super().read_values(log, limit=limit, reverse=reverse) if values is None else values

    def log_info(self, log: str) -> LogInfo | None:
        with self._locked(False):
            return self._info(self.tree.path(log), time.time())

    def _info(self, kp: KeyPath, now: float) -> LogInfo | None:
        lg = self._live_log(kp, now)
        if lg is None:
            return None
        lg.lines.close()
        h = lg.head
        return LogInfo(kp.key, h.first_seq, h.last_seq, h.created_at, h.updated_at, h.expires_at)

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        out: list[LogInfo] = []
        if limit <= 0:
            return out
        with self._locked(False):
            now = time.time()
            for key, folder, stem in self._view.walk(prefix, _LOG_FILES, after):
                info = self._info(KeyPath(key, folder, stem, []), now)
                if info is not None:
                    out.append(info)
                    if len(out) >= limit:
                        break
        return out

    # -- the protocol: writes -----------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        """One journal commit, with the batches other threads write meanwhile (group commit:
        :class:`~statekeel.protocol.group.ThreadGroup`); a batch with its own clock alone."""
        check_ops(ops, now)
        if now is not None:
            with self._locked(True):
                return self._commit(ops, now)
        return self._group.apply(ops)

    def _commit(self, ops: Sequence[Op], now: float | None = None) -> list[OpResult]:
        return self._transact(time.time() if now is None else now, lambda txn: txn.run(list(ops)))

    def purge_expired(self, *, limit: int = 1000) -> int:
        with self._locked(True):
            return self._transact(time.time(), lambda txn: txn.purge(limit))

    def _transact(self, now: float, work: Callable[[Txn], _T]) -> _T:
        """``work`` as one journal commit (the write lock is held; errors are mapped here, since a
        group's leader commits for its callers), then the folders its deletes emptied removed
        (best effort: empty folders are harmless)."""
        assert self._journal is not None
        with translate(_map_error):
            txn = Txn(self._disk, now)
            try:
                out = work(txn)
                actions = txn.actions()
            finally:
                txn.close()
            commit(self.root, self._journal, actions)
        for folder in sorted({os.path.dirname(a.path) for a in actions if a.kind == "delete"}, key=len, reverse=True):
            while folder.startswith("data/"):
                try:
                    os.rmdir(self.tree.abs(folder))
                except OSError:
                    break
                folder = os.path.dirname(folder)
        return out

    # -- health -----------------------------------------------------------------
    def integrity_check(self) -> list[str]:
        """Problems found by reading every file (and the journal); an empty list means healthy.
        The journal is replayed first, as any access would (a power loss may have torn files it
        holds); a damaged journal, or one that cannot be replayed, is reported instead of raised."""
        from .health import check

        if not self._synced and not self.read_only:
            try:
                with self._locked(True):
                    pass
            except StatekeelError:
                pass
        with self._mutex, translate(_map_error):
            fd, journal = self._ready()
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                return check(self.tree, journal)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def repair(self) -> str:
        """Finish a crashed batch (or set a damaged journal aside), cut torn log tails, rebuild lost
        headers, remove temp files; never deletes acknowledged data it cannot prove torn."""
        from .health import repair

        with self._mutex, translate(_map_error):
            fd, journal = self._ready()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                said = repair(self.tree, journal, full=not self._synced)
                self._synced = True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return "; ".join(said) if said else "nothing to repair"

    def close(self) -> None:
        """Checkpoint and empty the journal (best effort: a journal left behind is replayed by the
        next user), then close: a closed store is plain files, and the journal's space is given back."""
        with self._mutex:
            if not self._closed and not self.read_only and self._journal is not None:
                try:
                    with self._locked(True):
                        self._journal.checkpoint()
                        self._journal.clear()
                except (OSError, StatekeelError):
                    pass
            self._closed = True
            for fd in (self._lock_fd, self._journal.fd if self._journal else None):
                if fd is not None:
                    os.close(fd)
            self._lock_fd, self._journal = None, None
