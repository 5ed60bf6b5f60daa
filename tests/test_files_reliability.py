"""Reliability of the files backend (issue 10): a failed call changes nothing, a full disk
still reads, concurrent first opens and crashed creations, damage told apart from torn
writes, per-record checksums, misspelt URL options, and fuzzed decoders.

Faults are real: the disk is real and only the failing syscall is injected
(``ENOSPC`` from the n-th write/fsync/rename), a real tmpfs is filled up, and
crashing processes are killed with SIGKILL.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeel
from statekeel import ConfigurationError, StoreError
from statekeel.backends import open_backend, parse
from statekeel.backends.files import FilesBackend
from statekeel.backends.files import io as files_io
from statekeel.backends.files import journal as files_journal
from statekeel.backends.files.journal import journal_batches
from statekeel.backends.files.format import parse_header, parse_line, parse_record
from statekeel.errors import CorruptionError
from statekeel.protocol import Append, Delete, Put, Record

SYSCALLS = ("write", "pwrite", "fsync", "fdatasync", "replace", "link", "ftruncate")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def url(root: Path) -> str:
    return f"file://{root}"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the store but the lock, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def turn(b: FilesBackend, i: int) -> list[Any]:
    """A multi-file batch like a chat turn: two messages, a state put, a heartbeat record."""
    return b.apply([
        Append("session/s1/history", ((b'{"n":%d}' % i, "json"), (b'"reply"', "json"))),
        Put("session/s1/state/ticket", b"%d" % i, "json"),
        Put("session/s1/meta", b'{"turn":%d}' % i, "json"),
    ])


class _FailNth:
    """Makes the n-th file syscall raise ENOSPC, like a disk that fills up right then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
        self.n, self.count, self.fired = n, 0, False
        for name in SYSCALLS:
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.count += 1
            if self.count == self.n:
                self.fired = True
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args)
        return call


# -- D1: a call that raised is never applied later ---------------------------------------
def test_a_batch_failing_at_any_syscall_changes_nothing(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    turn(b, 0)
    b.close()
    stored, n, fired = 1, 0, True
    while fired:  # fail syscall 1, 2, 3 … of the batch until a batch runs without reaching n
        n += 1
        before = snapshot(root)
        with pytest.MonkeyPatch.context() as patch:
            b = FilesBackend(parse(url))
            fail = _FailNth(patch, n)
            try:
                turn(b, n)
                stored += 1  # succeeded (the failure, if any, came after the batch was durable)
            except StoreError as exc:
                assert "disk is full" in str(exc) and "nothing was" in str(exc)
                assert snapshot(root) == before, f"failing syscall {n} left a change"
            fired = fail.fired
        b.close()
        b = FilesBackend(parse(url))  # a fresh open must not replay a failed call
        assert len(b.read("session/s1/history")) == 2 * stored, f"syscall {n}"
        b.close()
    b = FilesBackend(parse(url))
    assert [e.data for e in b.read("session/s1/history")][-2:] == [b'{"n":%d}' % n, b'"reply"']
    assert b.integrity_check() == []
    b.close()
    assert n > 5 and stored < n  # the loop went through the batch's syscalls (7 with the journal), and most failed


def test_a_single_file_write_failing_leaves_no_temp_file(url: str, root: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    b = FilesBackend(parse(url))
    b.apply([Put("k/x/a", b"1", "json")])
    before = snapshot(root)
    _FailNth(monkeypatch, 2)  # the fsync of the temp file
    with pytest.raises(StoreError, match="disk is full"):
        b.apply([Put("k/x/a", b"2", "json")])
    monkeypatch.undo()
    assert snapshot(root) == before and not list(root.rglob("*.tmp"))
    assert b.get("k/x/a").data == b"1"  # type: ignore[union-attr]
    b.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs (we run as root in CI); the test fails loudly if it cannot be mounted."""
    where = tmp_path / "tiny"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(where: Path) -> Path:
    """Take every free byte of the file system (again: the filler grows)."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_fails_cleanly_and_still_reads(tiny_disk: Path) -> None:
    root = tiny_disk / "store"
    b = FilesBackend(parse(f"file://{root}"))
    turn(b, 0)
    filler = _fill(tiny_disk)
    os.truncate(filler, filler.stat().st_size - 4096)  # one page free: the journal fits, the batch does not
    before = snapshot(root)
    failed = 0
    for i in range(1, 400):  # the last free bytes (and the journal's room ahead) take a few turns; then every turn fails
        try:
            turn(b, i)
        except StoreError as exc:
            assert "disk is full" in str(exc)
            failed += 1
            assert snapshot(root) == before  # unchanged by the failed call
        else:
            before = snapshot(root)
    assert failed > 0
    assert not list(root.rglob("*.tmp"))
    stored = len(b.read("session/s1/history"))
    b.close()
    assert journal_batches(root) == 0  # close checkpointed, even on a full disk
    b = FilesBackend(parse(f"file://{root}"))  # open and read while the disk is still full
    assert len(b.read("session/s1/history")) == stored
    assert b.get("session/s1/state/ticket") is not None and b.integrity_check() == []
    filler.unlink()
    turn(b, 99)  # the retry after freeing space is stored exactly once
    assert len(b.read("session/s1/history")) == stored + 2
    b.close()


CRASHED = [
    Append("session/s1/history", ((b'"crash"', "json"),)),
    Put("session/s1/state/ticket", b"1", "json"),
    Put("session/s1/state/new", b"2", "json"),
    Delete("session/s1/state/old"),
    Append("session/s1/other", ((b'"o"', "json"),)),
]
"""A batch touching every kind of file action: append, new log, overwrite, new record, delete."""


def _commit_then_die(url: str, applied: int) -> None:
    """Child: run :data:`CRASHED`, SIGKILLed after the journal's commit point and ``applied`` file changes."""
    real = files_io.run
    done = [0]

    def dying(root: str, action: Any, dirty: set[str]) -> None:
        if done[0] == applied:
            os.kill(os.getpid(), signal.SIGKILL)
        real(root, action, dirty)
        done[0] += 1

    files_io.run = dying  # type: ignore[assignment]
    FilesBackend(parse(url)).apply(CRASHED)


def _sees_the_whole_crashed_batch(b: FilesBackend) -> None:
    assert [e.data for e in b.read("session/s1/history")] == [b'{"n":0}', b'"reply"', b'"crash"']
    assert [(r.key, r.data) for r in b.scan("session/s1/state/")] == [
        ("session/s1/state/new", b"2"), ("session/s1/state/ticket", b"1")]
    assert b.get("session/s1/state/old") is None
    assert [i.log for i in b.scan_logs("session/s1/")] == ["session/s1/history", "session/s1/other"]
    assert [e.data for e in b.read("session/s1/other")] == [b'"o"']


def test_a_batch_left_by_a_crash_reads_whole_while_the_disk_is_full(tiny_disk: Path) -> None:
    for applied in range(6):  # the writer dies after 0, 1, … 5 of the batch's 6 file changes
        root = tiny_disk / "store"
        url = f"file://{root}"
        b = FilesBackend(parse(url))
        turn(b, 0)
        b.apply([Put("session/s1/state/old", b"0", "json")])
        b.close()
        child = mp.get_context("fork").Process(target=_commit_then_die, args=(url, applied))
        child.start()
        child.join()
        assert child.exitcode == -signal.SIGKILL
        filler = _fill(tiny_disk)
        b = FilesBackend(parse(url))  # opens with no free byte …
        _fill(tiny_disk)  # (opening removed the dead writer's temp files: take that space too)
        _sees_the_whole_crashed_batch(b)  # … and reads
        assert journal_batches(root) > 0  # it could not be finished: read through, not written
        with pytest.raises(StoreError, match="disk is full"):
            b.apply([Put("session/s1/state/ticket", b"9", "json")])
        _sees_the_whole_crashed_batch(b)
        b.close()
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
        try:
            b = FilesBackend(parse(url))  # a read-only folder reads through the batch the same way
            assert b.read_only
            _sees_the_whole_crashed_batch(b)
            b.close()
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
        filler.unlink()
        b = FilesBackend(parse(url))
        _sees_the_whole_crashed_batch(b)  # now finished on disk
        assert journal_batches(root) == 0 and not list(root.rglob("*.tmp"))
        assert b.integrity_check() == []
        b.close()
        shutil.rmtree(root)


# -- D3: first open by several processes at once; a creator killed half-way ----------------
def _open_new(url: str) -> None:
    b = open_backend(url)
    b.apply([Put(f"k/x/{os.getpid()}", b"1", "json")])
    b.close()


def test_many_processes_create_a_store_at_once(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    for trial in range(20):
        url = f"file://{tmp_path}/s{trial}"
        procs = [ctx.Process(target=_open_new, args=(url,)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        assert [p.exitcode for p in procs] == [0] * 8, f"trial {trial}"
        b = open_backend(url)
        assert len(b.scan("k/")) == 8
        b.close()


def _create_and_die(url: str, n: int) -> None:
    """Child: open a new store, SIGKILLed at its n-th file syscall."""
    count = [0]
    for name in ("write", "fsync", "replace", "mkdir", "open"):
        real = getattr(os, name)

        def call(*args: Any, _real: Callable[..., Any] = real, **kw: Any) -> Any:
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*args, **kw)
        setattr(os, name, call)
    FilesBackend(parse(url))
    os._exit(0)


def test_a_creator_killed_at_any_point_leaves_a_store_that_opens(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    killed = 0
    for n in range(1, 40):
        root = tmp_path / f"s{n}"
        child = ctx.Process(target=_create_and_die, args=(f"file://{root}", n))
        child.start()
        child.join()
        killed += child.exitcode == -signal.SIGKILL
        b = FilesBackend(parse(f"file://{root}"))
        b.apply([Put("k/x/a", b"1", "json")])
        assert b.get("k/x/a") is not None and b.integrity_check() == [], n
        b.close()
    assert killed >= 5


# -- D11: damage is not a torn write -----------------------------------------------------
def test_damaged_framing_of_the_last_line_is_reported_never_deleted(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    b.apply([Append("l/x/log", ((b"1", "json"),))])
    b.apply([Append("l/x/log", ((b"2", "json"),))])  # acknowledged
    path = root / "data/l/x/log.jsonl"
    raw = path.read_bytes()
    damaged = raw[:-2] + b"]\n"  # the closing brace of the last line
    path.write_bytes(damaged)
    with pytest.raises(CorruptionError) as err:
        b.read("l/x/log")
    assert err.value.key == "l/x/log" and err.value.seq == 2
    with pytest.raises(CorruptionError):
        b.apply([Append("l/x/log", ((b"3", "json"),))])
    assert path.read_bytes() == damaged  # the append did not cut the acknowledged line off
    assert any("entry 2" in p for p in b.integrity_check())
    assert "NOT repaired" in b.repair() and path.read_bytes() == damaged
    path.write_bytes(raw[:-1])  # only the newline lost: repair proves the line intact and restores it
    assert "restored the newline" in b.repair() and path.read_bytes() == raw
    assert [e.data for e in b.read("l/x/log")] == [b"1", b"2"]
    b.close()


def test_a_lost_header_is_rebuilt_from_the_lines(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    b.apply([Append("l/x/log", ((b"1", "json"), (b"2", "json")))])
    (root / "data/l/x/log.log.json").unlink()
    assert [e.seq for e in b.read("l/x/log")] == [1, 2]
    assert [(i.log, i.first_seq, i.last_seq) for i in b.scan_logs("l/")] == [("l/x/log", 1, 2)]  # still listed
    assert any("header" in p and "lost" in p for p in b.integrity_check())
    assert b.apply([Append("l/x/log", ((b"3", "json"),))]) == [3]
    assert [e.data for e in b.read("l/x/log")] == [b"1", b"2", b"3"]  # old lines kept
    assert b.integrity_check() == []  # the append wrote the header back
    (root / "data/l/x/log.log.json").unlink()
    assert "rebuilt" in b.repair() and b.integrity_check() == []
    b.close()


def test_a_damaged_header_is_reported_and_repair_rebuilds_it(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    b.apply([Append("l/x/log", ((b"1", "json"), (b"2", "json")))])
    header = root / "data/l/x/log.log.json"
    header.write_bytes(header.read_bytes()[:-5])  # cut: no longer JSON
    with pytest.raises(CorruptionError, match="doctor --repair"):
        b.read("l/x/log")
    with pytest.raises(CorruptionError):
        b.apply([Append("l/x/log", ((b"3", "json"),))])
    assert any("header" in p and "damaged" in p for p in b.integrity_check())
    assert "rebuilt the damaged header" in b.repair()
    assert b.integrity_check() == []
    assert [e.data for e in b.read("l/x/log")] == [b"1", b"2"]
    assert b.apply([Append("l/x/log", ((b"3", "json"),))]) == [3]
    b.close()


def _journal_then_die(url: str) -> None:
    real = files_io.run
    done = [0]

    def dying(root: str, action: Any, dirty: set[str]) -> None:
        if done[0] == 1:
            os._exit(17)
        real(root, action, dirty)
        done[0] += 1

    files_io.run = dying  # type: ignore[assignment]
    turn(FilesBackend(parse(url)), 1)


def test_a_journal_damaged_after_its_commit_point_is_refused_and_reported(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    turn(b, 0)
    b.close()
    child = mp.get_context("fork").Process(target=_journal_then_die, args=(url,))
    child.start()
    child.join()
    assert child.exitcode == 17
    journal = root / ".journal"
    raw = journal.read_bytes()
    at = raw.index(b'"ticket') if b'"ticket' in raw else raw.index(b"ticket")
    journal.write_bytes(raw[:at] + b"X" + raw[at + 1 :])  # one damaged byte inside the body
    with pytest.raises(StoreError, match="damaged"):
        FilesBackend(parse(url)).get("session/s1/meta")
    assert journal.read_bytes() != b""  # kept, not discarded as torn
    b = FilesBackend(parse(url), migrate=False)
    assert any("journal" in p and "damaged" in p for p in b.integrity_check())
    assert "set a damaged batch journal aside" in b.repair()
    assert any("set aside" in p for p in b.integrity_check())
    b.close()


def test_a_journal_cut_short_is_still_discarded(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    turn(b, 0)
    before = snapshot(root)
    b.close()
    child = mp.get_context("fork").Process(target=_journal_then_die, args=(url,))
    child.start()
    child.join()
    raw = (root / ".journal").read_bytes()
    for path, data in before.items():  # the crash came before the commit point: nothing applied yet
        (root / path).write_bytes(data)
    (root / ".journal").write_bytes(raw[: len(raw.rstrip(b"\0")) // 2])  # and the journal cut short (its record)
    b = FilesBackend(parse(url))
    assert b.get("session/s1/state/ticket").data == b"0"  # type: ignore[union-attr]
    assert b.integrity_check() == []
    b.close()


# -- checksums ------------------------------------------------------------------------
def _doctor(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "statekeel"), "doctor", url],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("damage", [
    lambda d: {**d, "value": d["value"] + 1},   # one digit inside the stored value
    lambda d: {**d, "version": d["version"] + 1},
    lambda d: {**d, "codec": "tjson1"},
])
def test_a_damaged_record_raises_naming_it(url: str, root: Path, damage: Callable[[dict[str, Any]], Any]) -> None:
    b = FilesBackend(parse(url))
    b.apply([Put("k/x/a", b"41", "json"), Put("k/x/b", b"7", "json")])
    path = root / "data/k/x/a.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text())), indent=2))
    for call in (lambda: b.get("k/x/a"), lambda: b.scan("k/")):
        with pytest.raises(CorruptionError) as err:
            call()
        assert err.value.key == "k/x/a"
    assert b.get("k/x/b").data == b"7"  # type: ignore[union-attr]
    assert any("'k/x/a'" in p for p in b.integrity_check())
    b.close()
    done = _doctor(url)
    assert done.returncode == 1 and "k/x/a" in done.stdout + done.stderr
    b = FilesBackend(parse(url))
    assert b.apply([Delete("k/x/a")]) == [True]  # what the error advises: delete it (or restore it)
    assert b.get("k/x/a") is None and b.integrity_check() == []
    b.close()


def test_a_damaged_log_entry_raises_naming_log_and_seq(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    b.apply([Append("l/x/log", ((b"10", "json"), (b"20", "json"), (b"30", "json")))])
    path = root / "data/l/x/log.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"value":20}', b'"value":21}'))
    for kw in ({}, {"limit": 2, "reverse": True}, {"start": 2, "stop": 3}):
        with pytest.raises(CorruptionError) as err:
            b.read("l/x/log", **kw)
        assert (err.value.key, err.value.seq) == ("l/x/log", 2)
    with pytest.raises(CorruptionError) as err:
        b.read_values("l/x/log")  # the history fast path checks in bulk, then names the entry
    assert (err.value.key, err.value.seq) == ("l/x/log", 2)
    assert b.read("l/x/log", start=3) [0].data == b"30"
    assert any("entry 2" in p for p in b.integrity_check())
    b.close()
    done = _doctor(url)
    assert done.returncode == 1 and "l/x/log" in done.stdout + done.stderr


def test_the_history_fast_path_checks_each_line_at_its_own_seq(url: str, root: Path) -> None:
    """read_values checks all lines at once; two identical values swapped between seqs must still fail."""
    b = FilesBackend(parse(url))
    b.apply([Append("l/x/log", ((b'"same"', "json"), (b'"same"', "json"), (b'"x"', "json")))])
    assert b.read_values("l/x/log") == [(b'"same"', "json"), (b'"same"', "json"), (b'"x"', "json")]
    path = root / "data/l/x/log.jsonl"
    first, second, rest = path.read_bytes().split(b"\n", 2)
    path.write_bytes(second.replace(b'"seq":2', b'"seq":1') + b"\n" + first.replace(b'"seq":1', b'"seq":2')
                     + b"\n" + rest)  # the lines keep their places and seqs, their checksums swap
    with pytest.raises(CorruptionError) as err:
        b.read_values("l/x/log")
    assert (err.value.key, err.value.seq) == ("l/x/log", 1)
    b.close()


def test_files_written_before_checksums_read_unchecked(url: str, root: Path) -> None:
    b = FilesBackend(parse(url))
    b.apply([Put("k/x/a", b"1", "json"), Append("l/x/log", ((b"2", "json"),))])
    rec = root / "data/k/x/a.json"
    doc = json.loads(rec.read_text())
    del doc["crc"]
    rec.write_text(json.dumps(doc, indent=2))
    log = root / "data/l/x/log.jsonl"
    log.write_bytes(b'{"seq":1,"created_at":1.0,"codec":"json","value":2}\n')
    assert b.get("k/x/a").data == b"1"  # type: ignore[union-attr]
    assert [e.data for e in b.read("l/x/log")] == [b"2"]
    assert b.read_values("l/x/log") == [(b"2", "json")]
    assert b.integrity_check() == []
    b.close()


# -- D8: URL options ---------------------------------------------------------------------
@pytest.mark.parametrize("query", ["durabilty=full", "timeout=nan", "x=1"])
def test_unknown_url_options_are_refused(tmp_path: Path, query: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        statekeel.open(f"file://{tmp_path}/s?{query}")
    assert not (tmp_path / "s").exists()


# -- fuzzing the decoders ----------------------------------------------------------------
_TYPED = (CorruptionError, StoreError)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _sample_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as d:
        b = FilesBackend(parse(f"file://{d}/s"))
        b.apply([Put("k/x/a", b'{"a":[1,2.5,"t"]}', "json"), Put("k/x/b", b"\x00\xff", "raw"),
                 Append("l/x/log", ((b'{"m":"hi"}', "json"), (b"\x01", "raw")))])
        b.close()
        return {"record": Path(f"{d}/s/data/k/x/a.json").read_bytes(),
                "binary": Path(f"{d}/s/data/k/x/b.json").read_bytes(),
                "header": Path(f"{d}/s/data/l/x/log.log.json").read_bytes(),
                "lines": Path(f"{d}/s/data/l/x/log.jsonl").read_bytes()}


SAMPLES = _sample_files()


def _record_or_typed(raw: bytes, key: str = "k/x/a") -> Record | None:
    try:
        return parse_record(key, raw, "fuzz")
    except _TYPED:
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_untyped(raw: bytes) -> None:
    _record_or_typed(raw)
    try:
        parse_header(raw, "fuzz", "l/x/log")
    except _TYPED:
        pass
    line = parse_line(raw)
    if line is not None:
        try:
            line.verify("l/x/log")
        except CorruptionError:
            pass
    for read in (files_journal.legacy_body, files_journal.parse):
        try:
            read(raw)
        except _TYPED:
            pass


@FUZZ
@given(st.sampled_from(["record", "binary"]), st.data())
def test_a_flipped_bit_in_a_record_file_is_detected_or_harmless(which: str, data: st.DataObject) -> None:
    good = SAMPLES[which]
    key = "k/x/a" if which == "record" else "k/x/b"
    want = parse_record(key, good, "fuzz")
    bit = data.draw(st.integers(0, len(good) * 8 - 1))
    flipped = bytearray(good)
    flipped[bit // 8] ^= 1 << (bit % 8)
    got = _record_or_typed(bytes(flipped), key)
    if got is not None:  # readable after the flip: then the data, codec and version are untouched
        assert (got.data, got.codec, got.version) == (want.data, want.codec, want.version)


@FUZZ
@given(st.data())
def test_a_flipped_bit_in_a_log_line_is_detected_or_harmless(data: st.DataObject) -> None:
    for raw in SAMPLES["lines"].splitlines():
        want = parse_line(raw)
        assert want is not None
        bit = data.draw(st.integers(0, len(raw) * 8 - 1))
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        got = parse_line(bytes(flipped))
        if got is None:
            continue
        try:
            got.verify("l/x/log")
        except CorruptionError:
            continue
        assert (got.seq, got.data, got.codec) == (want.seq, want.data, want.codec)


@FUZZ
@given(st.data())
def test_a_flipped_bit_in_a_journal_is_refused_or_torn_never_misapplied(data: st.DataObject) -> None:
    """Two records; a flip anywhere is refused (damage), drops only the last record (torn),
    or leaves the actions exactly as written — never different actions."""
    first = [files_io.Action("write", "data/k/x/a.json", '{"v": 1}\n'), files_io.Action("append", "data/l.jsonl", "x\n", 5)]
    second = [files_io.Action("delete", "data/k/x/b.json"), files_io.Action("write", "data/k/x/a.json", "é\n")]
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 300)  # what an earlier epoch left: the records overwrite it in place
        f.flush()
        journal = files_journal.Journal("/nonexistent", f.fileno())
        journal.unfinished()
        journal.append(first)
        journal.mark_applied()
        journal.append(second)
        good = os.pread(f.fileno(), 10_000, 0)
    bit = data.draw(st.integers(0, len(good) * 8 - 1))
    flipped = bytearray(good)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        recs, _, _ = files_journal.parse(bytes(flipped))
        got = [files_journal.decode_body(rec.body) for rec in recs]
    except StoreError:
        return
    assert got in ([first, second], [first])
