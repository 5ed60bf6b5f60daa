"""SQLite (and memory) reliability: checksums, a damaged WAL, racing openers, bad URLs and inputs.

Damage is done the way it happens at rest — bytes changed beneath the API, with
a plain ``sqlite3`` connection or by flipping a byte in the file — and every
test checks both that the damage is reported, typed and named, and that
nothing stored was changed by the failed call.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import statekeel
from statekeel.backends import open_backend
from statekeel.backends.sqlite import MIGRATIONS
from statekeel.cli import main
from statekeel.errors import ConfigurationError, ConflictError, CorruptionError, InvalidInputError
from statekeel.protocol import Append, Entry, Load, LoadEntries, Put, Record, Rewrite
from statekeel.protocol.integrity import entry_sum, record_sum


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{query}"


def raw(path: Path, sql: str, *args: Any) -> list[Any]:
    """Run ``sql`` beneath the API (how damage at rest looks to the store)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def doctor(url: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["doctor", url, "--json"])
    report: dict[str, Any] = json.loads(result.stdout)
    report["exit_code"] = result.exit_code
    return report


def _filled(path: Path) -> None:
    with statekeel.open(url_of(path)) as store:
        store.app.put("ticket", {"id": 991, "note": "late by 12 days"})
        store.app.put("ticket", {"id": 991, "note": "late by 13 days"})
        store.app.put("other", {"id": 5})
        store.session("s1").append({"role": "user", "content": "order 4711 is late"}, {"role": "assistant"})


def _key(path: Path, suffix: str) -> str:
    return str(raw(path, "SELECT key FROM sk_kv WHERE key LIKE ?", f"%{suffix}")[0][0])


# -- checksums: every write stores one, every read checks it ---------------------
def test_every_write_path_stores_the_checksum_of_what_it_wrote(db: Path) -> None:
    backend = open_backend(url_of(db))
    try:
        backend.apply([Put("k/a", b'{"v":1}', "json")])
        backend.apply([Put("k/a", b'{"v":2}', "json", expect=1), Put("k/b", b"x", "raw", expect=None)])
        backend.apply([Append("l/x", ((b"1", "json"), (b"2", "json")))])
        backend.apply([Rewrite("l/x", 2, b"22", "json")])
        backend.apply([Load(Record("k/c", b"c", "json", 7, 1.0, 2.0, None))])
        backend.apply([LoadEntries("l/y", (Entry("l/y", 5, b"five", "json", 1.0),))])
    finally:
        backend.close()
    for key, data, codec, version, stored in raw(db, "SELECT key, data, codec, version, checksum FROM sk_kv"):
        assert stored == record_sum(key, codec, data, version), key
    rows = raw(db, "SELECT l.name, e.id & 4294967295, e.codec, e.data, e.checksum FROM sk_entries e"
                   " JOIN sk_logs l ON l.id = e.id >> 32")
    assert len(rows) == 3
    for log, seq, codec, data, stored in rows:
        assert stored == entry_sum(log, codec, data, seq), (log, seq)


@pytest.mark.parametrize("damage", [
    "UPDATE sk_kv SET data = CAST(replace(data, '991', '992') AS BLOB) WHERE key = :key",
    "UPDATE sk_kv SET data = CAST(data AS TEXT) WHERE key = :key",
    "UPDATE sk_kv SET version = version + 1 WHERE key = :key",
    "UPDATE sk_kv SET codec = 'raw' WHERE key = :key",
])
def test_a_damaged_record_raises_on_every_read_and_doctor_lists_it(db: Path, damage: str) -> None:
    _filled(db)
    key = _key(db, "ticket")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(damage, {"key": key})
    conn.close()
    before = raw(db, "SELECT * FROM sk_kv ORDER BY key")
    with statekeel.open(url_of(db)) as store:
        for read in (lambda: store.backend.get(key), lambda: store.backend.get_many([key]),
                     lambda: store.backend.scan(""), lambda: store.app.get("ticket")):
            with pytest.raises(CorruptionError) as err:
                read()
            assert err.value.key == key and "doctor" in str(err.value)
        assert store.app.get("other") == {"id": 5}  # the rest stays readable
    assert raw(db, "SELECT * FROM sk_kv ORDER BY key") == before
    report = doctor(url_of(db))
    assert report["exit_code"] == 1
    assert any(key in p and ("checksum" in p or "damaged" in p) for p in report["problems"]), report["problems"]


def test_a_damaged_log_entry_raises_on_read_and_history_and_doctor_lists_it(db: Path) -> None:
    _filled(db)
    raw(db, "UPDATE sk_entries SET data = CAST(replace(data, '4711', '4712') AS BLOB)")
    with statekeel.open(url_of(db)) as store:
        log = store.backend.scan_logs("")[0].log
        for read in (lambda: store.backend.read(log), lambda: store.backend.read_values(log),
                     lambda: store.session("s1").history(), lambda: store.session("s1").history(last=2)):
            with pytest.raises(CorruptionError) as err:
                read()
            assert (err.value.key, err.value.seq) == (log, 1)
        assert store.backend.read(log, start=2)[0].seq == 2  # the undamaged entry still reads
    report = doctor(url_of(db))
    assert report["exit_code"] == 1
    assert any(f"entry 1 of log {log!r}" in p for p in report["problems"]), report["problems"]


def _version_1_store(path: Path) -> None:
    """A store as statekeel wrote it before checksums (schema version 1)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in MIGRATIONS[0]:
        conn.execute(sql)
    conn.execute("INSERT INTO statekeel_schema VALUES (1, 0)")
    conn.execute("INSERT INTO sk_kv VALUES ('k/a', CAST('{\"v\":1}' AS BLOB), 'json', 3, 1, 1, NULL)")
    conn.execute("INSERT INTO sk_logs VALUES (1, 'l/x', 1, 0, 1, 1, NULL)")
    conn.execute("INSERT INTO sk_entries VALUES ((1 << 32) | 1, CAST('\"m\"' AS BLOB), 'json', 1)")
    conn.close()


def test_an_old_store_migrates_and_its_rows_get_checksums(db: Path) -> None:
    _version_1_store(db)
    backend = open_backend(url_of(db))
    try:
        assert backend.get("k/a") is not None and backend.read("l/x")[0].data == b'"m"'
    finally:
        backend.close()
    assert raw(db, "SELECT checksum FROM sk_kv") == [(record_sum("k/a", "json", b'{"v":1}', 3),)]
    assert raw(db, "SELECT checksum FROM sk_entries") == [(entry_sum("l/x", "json", b'"m"', 1),)]
    raw(db, "UPDATE sk_kv SET data = CAST('{\"v\":2}' AS BLOB)")
    with statekeel.open(url_of(db)) as store, pytest.raises(CorruptionError):
        store.backend.get("k/a")


def test_rows_without_a_checksum_are_read_unchecked(db: Path) -> None:
    _filled(db)
    raw(db, "UPDATE sk_kv SET checksum = NULL, data = CAST('{\"id\":1}' AS BLOB) WHERE key LIKE '%ticket'")
    with statekeel.open(url_of(db)) as store:
        assert store.app.get("ticket") == {"id": 1}


def test_memory_keeps_and_checks_checksums_like_every_backend() -> None:
    backend: Any = open_backend("memory://")
    backend.apply([Put("k/a", b"1", "json"), Append("l/x", ((b"1", "json"),))])
    assert backend.get("k/a").version == 1 and backend.read("l/x")[0].seq == 1
    # the API cannot damage memory:// bytes, so change them beneath it, as a disk would
    backend._records["k/a"] = Record("k/a", b"2", "json", 1, 0.0, 0.0, None)
    backend._logs["l/x"].entries[1] = Entry("l/x", 1, b"2", "json", 0.0)
    with pytest.raises(CorruptionError):
        backend.get("k/a")
    with pytest.raises(CorruptionError):
        backend.scan("k/")
    with pytest.raises(CorruptionError):
        backend.read_values("l/x")


# -- a damaged WAL must not lose committed data silently --------------------------
WAL_HEADER, FRAME_HEADER = 32, 24


def _damaged_wal_copy(db: Path, target: Path, frame: int) -> None:
    """Commit rows one transaction each, copy the db and its WAL while the store is still
    open (so nothing was checkpointed), and flip one byte inside ``frame``'s page
    (``frame=0``: inside the WAL header, in its checkpoint sequence number)."""
    with statekeel.open(url_of(db)) as store:
        for i in range(12):
            store.app.put(f"k{i}", {"i": i, "pad": "x" * 200})
        shutil.copy(db, target)
        shutil.copy(f"{db}-wal", f"{target}-wal")
    page = int.from_bytes(Path(f"{target}-wal").read_bytes()[8:12], "big")
    at = 13 if frame == 0 else WAL_HEADER + (frame - 1) * (FRAME_HEADER + page) + FRAME_HEADER + page // 2
    with open(f"{target}-wal", "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))


def test_without_the_check_sqlite_drops_the_commits_after_a_damaged_frame(tmp_path: Path) -> None:
    """What the check guards against: plain SQLite reads the damaged copy without any error."""
    copy = tmp_path / "copy.db"
    _damaged_wal_copy(tmp_path / "live.db", copy, frame=3)
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        # frame 3 is inside the first transactions: the tables themselves are gone, silently
        assert "sk_kv" not in tables or conn.execute("SELECT count(*) FROM sk_kv").fetchone()[0] < 12
    finally:
        conn.close()


@pytest.mark.parametrize("frame", [0, 1, 3])
def test_doctor_and_open_report_committed_data_after_a_damaged_wal_frame(tmp_path: Path, frame: int) -> None:
    copy = tmp_path / "copy.db"
    _damaged_wal_copy(tmp_path / "live.db", copy, frame=frame)
    wal_before = Path(f"{copy}-wal").read_bytes()
    report = doctor(url_of(copy))
    assert report["exit_code"] == 1
    assert any("fails its checksum" in p and "committed transaction" in p for p in report["problems"]), report
    with pytest.raises(CorruptionError) as err:
        statekeel.open(url_of(copy))
    assert "doctor" in str(err.value) and "restore" in str(err.value)
    # neither doctor nor the refused open checkpointed or reset the WAL: the evidence is intact
    assert Path(f"{copy}-wal").read_bytes() == wal_before


def test_an_intact_wal_and_a_torn_last_frame_are_not_reported(tmp_path: Path) -> None:
    intact, torn = tmp_path / "intact.db", tmp_path / "torn.db"
    with statekeel.open(url_of(tmp_path / "live.db")) as store:
        for i in range(5):
            store.app.put(f"k{i}", i)
        shutil.copy(tmp_path / "live.db", intact)
        shutil.copy(f"{tmp_path}/live.db-wal", f"{intact}-wal")
    shutil.copy(intact, torn)
    wal = Path(f"{intact}-wal").read_bytes()
    Path(f"{torn}-wal").write_bytes(wal[:-100])  # the last commit was being written when power went
    for path in (intact, torn):
        assert doctor(url_of(path))["exit_code"] == 0, path
        with statekeel.open(url_of(path)) as store:
            assert store.app.get("k3") == 3


def test_frames_of_a_rolled_back_transaction_are_not_reported(tmp_path: Path) -> None:
    db = tmp_path / "rb.db"
    statekeel.open(url_of(db)).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA cache_size = 2")  # spill the big transaction's pages into the WAL
    conn.execute("BEGIN")
    for i in range(300):
        conn.execute("INSERT INTO sk_kv VALUES (?, zeroblob(2000), 'json', 1, 0, 0, NULL, NULL)", (f"big/{i}",))
    conn.execute("ROLLBACK")
    conn.execute("INSERT INTO sk_kv VALUES ('small', CAST('1' AS BLOB), 'json', 1, 0, 0, NULL, NULL)")
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    shutil.copy(f"{db}-wal", f"{copy}-wal")
    conn.close()
    assert doctor(url_of(copy))["exit_code"] == 0


def _keep_writing(url: str, until: Any) -> None:
    """A live writer: multi-page transactions (so frames are written before they commit)."""
    with statekeel.open(url) as store:
        i = 0
        while not until.is_set():
            store.app.put(f"big{i % 50}", {"pad": "y" * 9000, "i": i})
            i += 1


def test_a_live_writer_is_never_mistaken_for_wal_damage(tmp_path: Path) -> None:
    url = url_of(tmp_path / "busy.db")
    statekeel.open(url).close()
    ctx = multiprocessing.get_context("fork")
    until = ctx.Event()
    writer = ctx.Process(target=_keep_writing, args=(url, until))
    writer.start()
    try:
        for _ in range(40):
            with statekeel.open(url) as store:  # the open-time check runs each time
                assert store.backend.integrity_check() == []  # type: ignore[attr-defined]
    finally:
        until.set()
        writer.join(60)
    assert writer.exitcode == 0


# -- D12: many processes opening a new file at once -------------------------------
RACE_TRIALS = 250
"""Before the fix about 1 in 20 trials had an opener fail at once with "database is locked"."""


def _open_new_files(folder: str, barrier: Any, errors: Any) -> None:
    """One of 8 long-lived openers: per trial, wait for the others, then all open the same new file."""
    for trial in range(RACE_TRIALS):
        barrier.wait()
        try:
            statekeel.open(f"sqlite:///{folder}/race{trial}.db").close()
        except Exception as exc:  # reported to the parent, which asserts on them
            errors.put(f"trial {trial}: {type(exc).__name__}: {exc}")


def test_eight_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    errors, barrier = ctx.Queue(), ctx.Barrier(8)
    procs = [ctx.Process(target=_open_new_files, args=(str(tmp_path), barrier, errors)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [], f"{len(found)} failed opens in {RACE_TRIALS} trials: {found[:3]}"
    assert [p.exitcode for p in procs] == [0] * 8
    with statekeel.open(url_of(tmp_path / f"race{RACE_TRIALS - 1}.db")) as store:
        assert store.backend.migrate(check=True).up_to_date


# -- D8: URL options -------------------------------------------------------------
@pytest.mark.parametrize("query, expected", [
    ("?encrypt=1", "unknown option ?encrypt="),
    ("?durabilty=full", "did you mean ?durability="),
    ("?timeout=nan", "finite"),
    ("?timeout=inf", "finite"),
    ("?timeout=-1", "0 to 86,400 seconds"),
    ("?durability=fast", "'full'"),
])
def test_unknown_or_bad_url_options_are_refused_before_anything_is_written(
    db: Path, query: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected.replace("?", r"\?")):
        statekeel.open(url_of(db, query))
    assert not db.exists()


def test_known_url_options_still_work(db: Path) -> None:
    with statekeel.open(url_of(db, "?durability=normal&timeout=5")) as store:
        store.app.put("k", 1)
        assert store.app.get("k") == 1


# -- D9: bad paths and inputs reaching the backend --------------------------------
def test_a_path_whose_parent_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for path in (tmp_path / "afile" / "x.db", tmp_path / "afile" / "deeper" / "x.db"):
        with pytest.raises(ConfigurationError, match="is a file, not a folder"):
            statekeel.open(url_of(path))


@pytest.fixture
def backend(db: Path) -> Iterator[Any]:
    b = open_backend(url_of(db))
    b.apply([Put("k/a", b"1", "json"), Append("l/x", ((b"1", "json"), (b"2", "json")))])
    yield b
    b.close()


def test_integers_beyond_64_bits_give_typed_errors_or_the_nearest_bound(backend: Any, db: Path) -> None:
    before = raw(db, "SELECT * FROM sk_kv")
    with pytest.raises(ConflictError):
        backend.apply([Put("k/a", b"2", "json", expect=10**30)])
    with pytest.raises(ConflictError):
        backend.apply([Put("k/a", b"2", "json", expect=-(10**30))])
    assert raw(db, "SELECT * FROM sk_kv") == before
    assert [e.seq for e in backend.read("l/x", stop=10**30)] == [1, 2]
    assert backend.read("l/x", start=10**30) == [] and backend.read("l/x", stop=-(10**30)) == []
    assert [e.seq for e in backend.read("l/x", limit=10**30, reverse=True)] == [1, 2]
    assert len(backend.read_values("l/x", limit=10**30, reverse=True)) == 2
    assert len(backend.scan("k/", limit=10**30)) == 1
    assert backend.apply([Rewrite("l/x", 10**30, b"x", "json")]) == [False]
    with pytest.raises(InvalidInputError):
        backend.apply([LoadEntries("l/y", (Entry("l/y", 10**30, b"x", "json", 0.0),))])
    with pytest.raises(InvalidInputError):
        backend.apply([Load(Record("k/z", b"x", "json", 10**30, 0.0, 0.0, None))])


def test_lone_surrogates_in_keys_are_invalid_input(backend: Any, db: Path) -> None:
    before = raw(db, "SELECT * FROM sk_kv")
    for call in (lambda: backend.apply([Put("k/\ud800", b"1", "json")]),
                 lambda: backend.apply([Put("k/b", b"1", "json"), Append("l/\udfff", ((b"1", "json"),))]),
                 lambda: backend.get("k/\ud800"), lambda: backend.read("l/\ud800"),
                 lambda: backend.scan("k/\ud800")):
        with pytest.raises(InvalidInputError, match="surrogate"):
            call()
    assert raw(db, "SELECT * FROM sk_kv") == before
