"""The files backend's write-ahead journal (issue 15 item 4): one append + fdatasync per batch,
files changed in place without fsync, checkpoints, replay.

Real processes are SIGKILLed at random moments and at every syscall of a batch; the journal is
torn, zero-filled, replayed twice, replayed over files that lost every write since the last
checkpoint (what a power loss leaves), and written by the previous format.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statekeel import StoreError
from statekeel.backends import parse
from statekeel.backends.files import FilesBackend
from statekeel.backends.files import journal as files_journal
from statekeel.backends.files.journal import HEAD_LEN, journal_batches
from statekeel.protocol import Append, Delete, Put, Trim

HISTORY, TURN, META = "session/s/history", "session/s/state/turn", "session/s/meta"

def _url(root: Path) -> str:
    return f"file://{root}"


def _writer(url: str, first: int, kill_at: int, acks: int) -> None:
    """Child process: write turns from ``first`` on, writing each acknowledged turn to ``acks``;
    SIGKILLed by the parent, or by itself at its ``kill_at``-th file syscall."""
    b = FilesBackend(parse(url))
    b.read(HISTORY, limit=1)  # the first lock (replay, checkpoint) before counting syscalls
    if kill_at:
        count = [0]
        for name in ("open", "pwrite", "fdatasync", "fsync", "ftruncate", "unlink"):
            def call(*args: Any, _real: Callable[..., Any] = getattr(os, name), **kw: Any) -> Any:
                count[0] += 1
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return _real(*args, **kw)
            setattr(os, name, call)
    os.write(acks, b"ready\n")
    i = first
    while True:
        _turn(b, i)
        os.write(acks, b"%d\n" % i)
        i += 1


def _run_child(root: Path, first: int, *, kill_at: int = 0, delay: float = 0.0) -> list[int]:
    """Start a writer process, SIGKILL it (at a syscall, or after ``delay`` s); the turns it acknowledged."""
    r, w = os.pipe()
    child = mp.get_context("fork").Process(target=_writer, args=(_url(root), first, kill_at, w))
    child.start()
    os.close(w)
    with os.fdopen(r, "rb") as acks:
        assert acks.readline() == b"ready\n"
        if not kill_at:
            time.sleep(delay)
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(60)
        assert child.exitcode == -signal.SIGKILL
        return [int(line) for line in acks.read().split()]


def _turns_stored(root: Path) -> int:
    """Check that the store holds whole turns only, state agreeing with history; the last turn."""
    b = FilesBackend(parse(_url(root)))
    try:
        entries = [json.loads(e.data) for e in b.read(HISTORY)]
        turns = [e["t"] for e in entries[::2]]
        assert turns == list(range(len(turns))), "a turn lost or stored twice"
        assert [e["r"] for e in entries] == ["u", "a"] * len(turns), "half a turn is visible"
        last = turns[-1] if turns else -1
        turn, meta = b.get(TURN), b.get(META)
        assert (int(turn.data) if turn else -1) == last, "state and history disagree"
        assert (json.loads(meta.data)["turn"] if meta else -1) == last
        assert b.integrity_check() == []
        return last
    finally:
        b.close()


def _kill_and_check(root: Path, acked_before: int, **kill: float) -> int:
    acked = _run_child(root, acked_before + 1, **kill)  # type: ignore[arg-type]
    last = _turns_stored(root)
    want = acked[-1] if acked else acked_before
    assert want <= last <= want + 1, f"acknowledged up to turn {want}, the store has {last}"
    return last


def test_sigkill_at_random_moments_loses_no_acknowledged_turn(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    last = -1
    for _ in range(6):
        last = _kill_and_check(tmp_path / "s", last, delay=rng.uniform(0.0, 0.06))
    assert last >= 0, f"seed {seed}: no turn was ever acknowledged"


def test_sigkill_at_every_syscall_of_a_batch(tmp_path: Path) -> None:
    """The n-th file syscall after open: journal write, its fdatasync, each file change, the marker."""
    last = -1
    for n in range(1, 14):
        last = _kill_and_check(tmp_path / "s", last, kill_at=n)
    assert last >= 1


# -- torn and damaged journal tails ---------------------------------------------------------
def _turn(b: FilesBackend, i: int) -> None:
    b.apply([Append(HISTORY, ((b'{"t":%d,"r":"u"}' % i, "json"), (b'{"t":%d,"r":"a"}' % i, "json"))),
             Put(TURN, b"%d" % i, "json"), Put(META, b'{"turn":%d}' % i, "json")])


def _record_bytes(root: Path) -> bytes:
    """The journal's last record as written (the bytes from the applied marker back to the last record)."""
    raw = (root / ".journal").read_bytes()
    recs, _, _ = files_journal.parse(raw)
    return raw[recs[-1].start : recs[-1].end]


@pytest.mark.parametrize("tear", ["half", "zeros", "head-only"])
def test_a_torn_journal_tail_is_ignored_and_overwritten(tmp_path: Path, tear: str) -> None:
    root = tmp_path / "s"
    b = FilesBackend(parse(_url(root)))
    _turn(b, 0)
    _turn(b, 1)
    rec = _record_bytes(root)
    end = len((root / ".journal").read_bytes())
    torn = {"half": rec[: len(rec) // 2], "zeros": rec[:40] + b"\0" * (len(rec) - 40),
            "head-only": rec[: rec.index(b"\n") + 1]}[tear]
    with open(root / ".journal", "r+b") as f:  # a third batch whose write never completed
        f.seek(end)
        f.write(torn)
    b.close()
    assert _turns_stored(root) == 1
    b = FilesBackend(parse(_url(root)))
    _turn(b, 2)  # written over the torn bytes
    b.close()
    assert _turns_stored(root) == 2


def test_a_journal_record_damaged_before_a_later_one_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    b = FilesBackend(parse(_url(root)))
    for i in range(3):
        _turn(b, i)
    raw = (root / ".journal").read_bytes()
    recs, _, _ = files_journal.parse(raw)
    at = recs[1].start + len(b"statekeel-batch ")  # the epoch of the middle record
    (root / ".journal").write_bytes(raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1 :])
    with pytest.raises(StoreError, match="damaged"):
        FilesBackend(parse(_url(root))).get(TURN)
    assert any("journal" in p for p in FilesBackend(parse(_url(root)), migrate=False).integrity_check())
    b.close()


# -- replay is idempotent -------------------------------------------------------------------
def _data(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "data").rglob("*")) if p.is_file()}


def _mixed_batches(b: FilesBackend) -> None:
    """Appends, overwrites, a delete, a trim that compacts the log, a new log: every kind of action."""
    for i in range(6):
        _turn(b, i)
    b.apply([Put("session/s/state/gone", b"1", "json")])
    b.apply([Delete("session/s/state/gone"), Trim(HISTORY, 9)])  # more than half dead: compacted
    b.apply([Append("session/s/other", ((b'"o"', "json"),)), Put(TURN, b'"after"', "json")])


def _with_applied_reset(raw: bytes) -> bytes:
    """The journal as a power loss may leave it: ``applied`` back at the first record."""
    m = files_journal._header_match(raw)
    assert m is not None
    return files_journal._header_bytes(int(m[2], 16), HEAD_LEN, 0) + raw[HEAD_LEN:]


def test_records_replayed_twice_leave_the_same_files(tmp_path: Path) -> None:
    root = tmp_path / "s"
    b = FilesBackend(parse(_url(root)))
    _mixed_batches(b)
    assert journal_batches(root) == 9
    want, journal = _data(root), (root / ".journal").read_bytes()
    for _ in range(2):  # another handle replays every record of the epoch over files that already hold them
        (root / ".journal").write_bytes(_with_applied_reset(journal))
        other = FilesBackend(parse(_url(root)))
        assert [e.seq for e in other.read(HISTORY)] == [9, 10, 11, 12]
        assert _data(root) == want
        other.close()  # checkpointed and emptied
        assert journal_batches(root) == 0 and (root / ".journal").stat().st_size == 0
    _turn(b, 6)
    assert b.read(HISTORY)[-1].seq == 14
    b.close()


def test_files_that_lost_every_write_since_the_checkpoint_are_rebuilt(tmp_path: Path) -> None:
    """A power loss keeps the fdatasynced journal and may drop everything else written since the
    last checkpoint: the store at the checkpoint plus the journal must give every acknowledged batch."""
    root, crashed = tmp_path / "s", tmp_path / "crashed"
    b = FilesBackend(parse(_url(root)))
    _turn(b, 0)
    b.close()  # checkpoint: what the disk surely holds
    shutil.copytree(root, crashed)
    b = FilesBackend(parse(_url(root)))
    for i in range(1, 5):
        _turn(b, i)
    b.apply([Put("session/s/state/gone", b"1", "json")])
    b.apply([Delete("session/s/state/gone"), Append("session/s/other", ((b'"o"', "json"),))])
    want = _data(root)
    (crashed / ".journal").write_bytes((root / ".journal").read_bytes())  # before close() checkpoints it
    b.close()
    (crashed / "data/session/s/state/turn.json").write_bytes(b'{"half')  # a torn in-place write too
    doctor = FilesBackend(parse(_url(crashed)))  # `statekeel doctor` first thing after the reboot:
    assert doctor.integrity_check() == []  # the journal is replayed before the files are judged
    doctor.close()
    assert _turns_stored(crashed) == 4
    assert _data(crashed) == want


# -- the previous journal format ------------------------------------------------------------
def test_a_format_2_journal_left_by_the_previous_version_is_finished(tmp_path: Path) -> None:
    root = tmp_path / "s"
    b = FilesBackend(parse(_url(root)))
    _turn(b, 0)
    b.close()
    b = FilesBackend(parse(_url(root)))
    _turn(b, 1)
    text = (root / "data/session/s/state/turn.json").read_text()
    b.close()
    (root / "data/session/s/state/turn.json").write_text(text.replace('"value": 1', '"value": 0'))
    body = json.dumps([{"kind": "write", "path": "data/session/s/state/turn.json", "text": text, "offset": 0}]).encode()
    seal = b"%d %s\n" % (len(body), hashlib.sha256(body).hexdigest().encode())
    (root / ".journal").write_bytes(b"statekeel-journal 2 " + seal + body + b"\nstatekeel-journal-end " + seal)
    b = FilesBackend(parse(_url(root)))
    assert b.get(TURN).data == b"1"  # type: ignore[union-attr]
    _turn(b, 2)
    b.close()
    assert _turns_stored(root) == 2


def test_one_fdatasync_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the journal: a chat turn (3 files) costs one fdatasync and no fsync."""
    b = FilesBackend(parse(_url(tmp_path / "s")))
    _turn(b, 0)
    calls: list[str] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda fd, _n=name, _r=real: (calls.append(_n), _r(fd))[1])
    for i in range(1, 6):
        _turn(b, i)
    monkeypatch.undo()
    assert calls == ["fdatasync"] * 5
    b.close()


def test_a_failed_batch_puts_back_the_journal_it_grew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the record of a batch that failed after its commit point grew the journal; voiding
    it must restore the journal's size too, or a reader would find the batch there and replay it."""
    root = tmp_path / "s"
    b = FilesBackend(parse(_url(root)))
    _turn(b, 0)
    before, data = (root / ".journal").read_bytes(), _data(root)
    real = os.pwrite

    def pwrite(fd: int, buf: Any, offset: int) -> int:
        if "/data/" in os.readlink(f"/proc/self/fd/{fd}"):  # the first file change after the commit point
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buf, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(StoreError, match="disk is full"):
        b.apply([Put("session/s/state/big", b'"%s"' % (b"x" * 300_000), "json")])  # far past the journal's end
    monkeypatch.undo()
    assert (root / ".journal").read_bytes() == before and _data(root) == data
    other = FilesBackend(parse(_url(root)))
    assert other.get("session/s/state/big") is None and journal_batches(root) == 0
    other.close()
    b.close()
