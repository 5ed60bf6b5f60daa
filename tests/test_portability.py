"""Export/import, copy between every pair of backends, verification, and SQLite backup."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import statekeel
from statekeel import ConfigurationError, InvalidInputError, NotAStoreError, SchemaTooNewError, StoreError
from statekeel.backends import open_backend
from statekeel.portability import (
    ImportConflictError,
    IncompleteExportError,
    NotAnExportError,
    Progress,
    VerificationError,
    backup_sqlite,
    copy_store,
    export_store,
    import_store,
    restore_sqlite,
    verify_stores,
)
from statekeel.protocol import Append, Backend, Entry, Load, LogInfo, Put, Record, Trim, keys
from statekeel.testing import BACKENDS, BackendContext, ServerPool

NAMES = ["memory", "sqlite", "files", "postgres", "redis"]
_n = itertools.count(1_000_000)  # apart from the plugin's store_url numbers: a shared server's schema must be fresh


@pytest.fixture
def make_url(tmp_path: Path, statekeel_servers: ServerPool) -> Callable[[str], str]:
    """A fresh, empty store URL of the named backend (skips if its server is missing)."""

    def make(name: str) -> str:
        n = next(_n)
        sub = tmp_path / f"{name}-{n}"
        sub.mkdir()
        try:
            return BACKENDS[name](BackendContext(sub, statekeel_servers, n))
        except ServerPool.Missing as exc:
            pytest.skip(str(exc))

    return make


# -- a store with everything that must survive a copy ----------------------------
HOUR = 3600.0
ODD_IDS = ["..", "a/b", "日本", "x\x00y", "%2F"]


def fill(url: str) -> None:
    b = open_backend(url)
    try:
        now = time.time()
        b.apply([Put("app/_/state/a", b'{"x":1}', "json")])
        b.apply([Put("app/_/state/a", b'{"x":2}', "json")])  # version 2, created_at < updated_at
        b.apply([Put("app/_/state/ttl", b'"soon"', "json", expires_at=now + HOUR)])
        b.apply([Load(Record("app/_/state/old", b"\x00\xffbinary", "tjson1+zlib", 7, 1000.5, 2000.25, None))])
        for odd in ODD_IDS:
            b.apply([Put(keys.join("session", odd, "state", odd), json.dumps(odd).encode(), "json")])
        log = keys.join("session", "s1", "history")
        b.apply([Append(log, tuple((json.dumps({"i": i}).encode(), "json") for i in range(5)), expires_at=now + HOUR)])
        b.apply([Trim(log, 3)])  # first_seq 3
        b.apply([Append(log, ((b'"late"', "json"),))])
        big = keys.join("events", "orders", "log")
        for chunk in range(3):
            b.apply([Append(big, tuple((json.dumps({"n": chunk * 700 + i}).encode(), "json") for i in range(700)))])
        b.apply([Append(keys.join("session", "日本", "history"), ((b'"hi"', "json"),))])
    finally:
        b.close()
    with statekeel.open(url) as store:  # and the feature layer's own keys
        s = store.session("support-42", user="u-7", ttl="2h")
        s.append({"role": "user", "content": "My order is late"}, state={"ticket": 991})
        store.user("u-7").put("pref", "dark")


def snapshot(b: Backend) -> tuple[list[Record], list[tuple[tuple[Any, ...], list[Entry]]]]:
    """Every live record and every log (bounds, expiry, entries) — what must be equal."""
    records: list[Record] = []
    after = None
    while page := b.scan("", after=after, limit=250):
        records += page
        after = page[-1].key
    logs: list[LogInfo] = []
    after = None
    while found := b.scan_logs("", after=after, limit=50):
        logs += found
        after = found[-1].log
    return records, [((i.log, i.first_seq, i.last_seq, i.expires_at), b.read(i.log)) for i in logs]


def same(a_url: str, b_url: str) -> None:
    a, b = open_backend(a_url), open_backend(b_url)
    try:
        left, right = snapshot(a), snapshot(b)
    finally:
        a.close()
        b.close()
    assert [r.key for r in left[0]] == [r.key for r in right[0]]
    assert left[0] == right[0]  # data, codec, version, created_at, updated_at, expires_at: exactly
    assert [x[0] for x in left[1]] == [x[0] for x in right[1]]
    assert left[1] == right[1]  # every entry: seq, bytes, codec, created_at


# -- copy ---------------------------------------------------------------------------
@pytest.mark.parametrize("src_name,dst_name", list(itertools.product(NAMES, NAMES)))
def test_copy_round_trips_between_backends(src_name: str, dst_name: str, make_url: Callable[[str], str]) -> None:
    src, dst = make_url(src_name), make_url(dst_name)
    if dst == src:  # one test Redis server: use its database 1 as the target
        dst = dst.rsplit("/", 1)[0] + "/1"
    fill(src)
    report = copy_store(src, dst)
    assert report.verified and report.records > 10 and report.entries == 4 + 2100 + 1 + 1
    same(src, dst)
    again = copy_store(src, dst)  # idempotent: nothing left to write
    assert again.written == 0
    with statekeel.open(dst) as store:
        s = store.session("support-42")
        assert s.history() == [{"role": "user", "content": "My order is late"}]
        assert s.state.get("ticket") == 991 and store.user("u-7").get("pref") == "dark"
        assert [i.id for i in store.sessions().items] == ["support-42"]


def test_interrupted_copy_resumes(make_url: Callable[[str], str]) -> None:
    src, dst = make_url("sqlite"), make_url("files")
    fill(src)

    class Stop(Exception):
        pass

    phases: list[str] = []

    def stop_midway(p: Progress) -> None:
        phases.append(p.phase)
        if p.phase == "logs" and p.entries >= 1000:
            raise Stop()

    with pytest.raises(Stop):
        copy_store(src, dst, stop_midway, page=100)
    with pytest.raises(VerificationError):
        verify_stores(src, dst)  # half copied
    resumed = copy_store(src, dst, page=100)
    assert resumed.verified and resumed.written < resumed.records + resumed.entries
    same(src, dst)
    assert phases[0] == "records" and phases[-1] == "logs"


@pytest.mark.parametrize("tamper", ["record", "entry", "extra", "expiry"])
def test_verification_catches_a_tampered_target(tamper: str, make_url: Callable[[str], str]) -> None:
    src, dst = make_url("sqlite"), make_url("files")
    fill(src)
    copy_store(src, dst)
    b = open_backend(dst)
    try:
        rec = b.get("app/_/state/a")
        assert rec is not None
        log = keys.join("events", "orders", "log")
        if tamper == "record":
            b.apply([Load(Record(rec.key, b'{"x":3}', rec.codec, rec.version, rec.created_at, rec.updated_at, None))])
        elif tamper == "entry":
            b.apply([Append(log, ((b'"forged"', "json"),))])
        elif tamper == "extra":
            b.apply([Put("app/_/state/intruder", b"1", "json")])
        else:
            b.apply([Load(Record(rec.key, rec.data, rec.codec, rec.version, rec.created_at, rec.updated_at, 9e9))])
    finally:
        b.close()
    with pytest.raises(VerificationError) as info:
        verify_stores(src, dst)
    assert info.value.total >= 1
    named = "app/_/state/intruder" if tamper == "extra" else ("events/orders/log" if tamper == "entry" else "app/_/state/a")
    assert named in str(info.value)


def test_copy_refuses_the_same_store(make_url: Callable[[str], str]) -> None:
    url = make_url("sqlite")
    with pytest.raises(InvalidInputError, match="same store"):
        copy_store(url, url)


# -- export / import ------------------------------------------------------------
@pytest.fixture
def exported(make_url: Callable[[str], str], tmp_path: Path) -> tuple[str, Path]:
    src = make_url("sqlite")
    fill(src)
    out = tmp_path / "export"
    report = export_store(src, out, session="support-42")
    assert report.logs == 1 and report.entries == 1 and report.records >= 3
    return src, out


def test_export_session_is_a_readable_store(exported: tuple[str, Path]) -> None:
    _, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "statekeel-export" and manifest["counts"]["entries"] == 1
    ticket = json.loads((out / "data/session/support-42/state/ticket.json").read_text())
    assert ticket["value"] == 991 and ticket["version"] == 1
    line = json.loads((out / "data/session/support-42/history.jsonl").read_text().splitlines()[0])
    # a plain message from SQLite is in its short form (statekeel.codec_msg): readable as "text"
    assert (line["codec"], line["text"]) == ("msg:user", "My order is late")
    with statekeel.open(f"file://{out}") as store:  # an export is a store
        assert [i.id for i in store.sessions().items] == ["support-42"]
        assert store.user("u-7").get("pref") is None  # not selected


def test_export_scope(make_url: Callable[[str], str], tmp_path: Path) -> None:
    src = make_url("sqlite")
    fill(src)
    report = export_store(src, tmp_path / "u", scope="user:u-7")
    assert (report.records, report.logs) == (1, 0)
    dst = make_url("memory")
    import_store(tmp_path / "u", dst)
    with statekeel.open(dst) as store:
        assert store.user("u-7").get("pref") == "dark"


def test_import_round_trip_and_is_idempotent(exported: tuple[str, Path], make_url: Callable[[str], str]) -> None:
    _, out = exported
    for name in ("sqlite", "files", "memory"):
        dst = make_url(name)
        first = import_store(out, dst)
        assert first.written == first.records + first.entries
        assert import_store(out, dst).written == 0
        same(f"file://{out}", dst)


def _conflicting_target(make_url: Callable[[str], str]) -> str:
    dst = make_url("sqlite")
    with statekeel.open(dst) as store:
        s = store.session("support-42", user="u-7")
        s.append("a different history")
        s.state.put("ticket", 1)
    return dst


def test_import_conflict_fail_writes_nothing(exported: tuple[str, Path], make_url: Callable[[str], str]) -> None:
    _, out = exported
    dst = _conflicting_target(make_url)
    before = snapshot_url(dst)
    with pytest.raises(ImportConflictError) as info:
        import_store(out, dst)
    assert info.value.total >= 3  # meta, ticket, history (the index record too)
    assert "session/support-42/state/ticket" in str(info.value)
    assert snapshot_url(dst) == before  # nothing half-imported


def test_import_conflict_skip_and_overwrite(exported: tuple[str, Path], make_url: Callable[[str], str]) -> None:
    _, out = exported
    dst = _conflicting_target(make_url)
    report = import_store(out, dst, on_conflict="skip")
    assert report.skipped >= 3
    with statekeel.open(dst) as store:
        assert store.session("support-42").history() == ["a different history"]
        assert store.session("support-42").state.get("ticket") == 1
    report = import_store(out, dst, on_conflict="overwrite")
    assert report.overwritten >= 3
    with statekeel.open(dst) as store:
        s = store.session("support-42")
        assert s.history() == [{"role": "user", "content": "My order is late"}]
        assert s.state.get("ticket") == 991
    verify_stores(f"file://{out}", dst, _export_selection(out))


def _export_selection(out: Path) -> Any:
    from statekeel.portability import selection

    return selection(session="support-42")


def snapshot_url(url: str) -> Any:
    b = open_backend(url)
    try:
        return snapshot(b)
    finally:
        b.close()


def test_import_bad_input(exported: tuple[str, Path], make_url: Callable[[str], str], tmp_path: Path) -> None:
    src, out = exported
    dst = make_url("sqlite")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAnExportError):
        import_store(tmp_path / "empty", dst)
    with pytest.raises(NotAnExportError):
        import_store(tmp_path / "missing", dst)
    with pytest.raises(InvalidInputError, match="on_conflict"):
        import_store(out, dst, on_conflict="merge")  # type: ignore[arg-type]
    manifest = (out / "manifest.json").read_text()
    ticket = out / "data/session/support-42/state/ticket.json"
    original = ticket.read_text()
    ticket.write_text(original.replace('"value": 991', '"value": 992'))
    with pytest.raises(IncompleteExportError, match="no longer matches its checksum"):
        import_store(out, dst)  # the record's own checksum catches the edit
    edited = json.loads(original.replace('"value": 991', '"value": 992'))
    del edited["crc"]  # an edit on purpose drops the record's checksum ...
    ticket.write_text(json.dumps(edited))
    with pytest.raises(IncompleteExportError, match="no longer match"):
        import_store(out, dst)  # ... and the export's manifest still tells
    import_store(out, make_url("memory"), verify=False)  # edited on purpose
    ticket.write_text(original)
    (out / "manifest.json").write_text(manifest.replace('"version": 1', '"version": 99'))
    with pytest.raises(SchemaTooNewError):
        import_store(out, dst)
    (out / "manifest.json").unlink()  # as if the export stopped before the end
    with pytest.raises(IncompleteExportError, match="interrupted"):
        import_store(out, dst)
    (out / "manifest.json").write_text(manifest)
    marker = out / "statekeel.json"
    marker.write_text(marker.read_text().replace('"layout": 1', '"layout": 99'))
    with pytest.raises(SchemaTooNewError):
        import_store(out, dst)
    assert snapshot_url(dst) == ([], [])  # none of the failures wrote anything
    with pytest.raises(InvalidInputError, match="not an empty folder"):
        export_store(src, out)


# -- SQLite backup ----------------------------------------------------------------
def test_backup_while_a_writer_appends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/live.db"
    stop = threading.Event()
    with statekeel.open(url) as store:
        s = store.session("busy")
        s.append("first", state={"count": 1})

        def writer() -> None:
            n = 1
            while not stop.is_set():
                n += 1
                s.append(f"m{n}", state={"count": n})  # message and counter in one batch

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            sizes = []
            for i in range(5):
                time.sleep(0.05)
                report = backup_sqlite(url, tmp_path / f"b{i}.db")
                with statekeel.open(f"sqlite:///{report.target}") as copy:
                    msgs = copy.session("busy").messages()
                    assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))  # no gap, no torn batch
                    assert copy.session("busy").state.get("count") == len(msgs)
                    sizes.append(len(msgs))
        finally:
            stop.set()
            thread.join()
    assert sizes == sorted(sizes) and sizes[-1] > 1
    restored = f"sqlite:///{tmp_path}/restored.db"
    restore_sqlite(tmp_path / "b4.db", restored)
    with statekeel.open(restored) as store:
        assert len(store.session("busy")) == sizes[-1]
    with pytest.raises(InvalidInputError, match="overwrite"):
        restore_sqlite(tmp_path / "b0.db", restored)
    restore_sqlite(tmp_path / "b0.db", restored, overwrite=True)
    with statekeel.open(restored) as store:
        assert len(store.session("busy")) == sizes[0]


def test_backup_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="sqlite"):
        backup_sqlite(f"file://{tmp_path}/f", tmp_path / "x.db")
    with pytest.raises(ConfigurationError, match="no SQLite store"):
        backup_sqlite(f"sqlite:///{tmp_path}/nope.db", tmp_path / "x.db")
    url = f"sqlite:///{tmp_path}/a.db"
    statekeel.open(url).close()
    backup_sqlite(url, tmp_path / "x.db")
    with pytest.raises(InvalidInputError, match="already exists"):
        backup_sqlite(url, tmp_path / "x.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises((NotAStoreError, StoreError)):
        restore_sqlite(tmp_path / "junk.db", f"sqlite:///{tmp_path}/c.db")
    assert not os.path.exists(tmp_path / "c.db") or os.path.getsize(tmp_path / "c.db") == 0


# -- the CLI ------------------------------------------------------------------------
def test_cli_commands(tmp_path: Path) -> None:
    import click

    from statekeel.cli.portability import COMMANDS, register

    group = click.Group("statekeel")
    register(group)
    runner = CliRunner()
    for command in COMMANDS:
        assert "Example:" in (command.help or "")
        assert runner.invoke(group, [command.name or "", "--help"]).exit_code == 0
    src = f"sqlite:///{tmp_path}/a.db"
    fill(src)
    out = runner.invoke(group, ["copy", src, f"file://{tmp_path}/copy", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["verified"] is True
    assert runner.invoke(group, ["export", src, str(tmp_path / "exp"), "--session", "support-42"]).exit_code == 0
    out = runner.invoke(group, ["import", str(tmp_path / "exp"), f"sqlite:///{tmp_path}/b.db", "--on-conflict", "skip"])
    assert out.exit_code == 0 and "imported" in out.output
    assert runner.invoke(group, ["backup", src, str(tmp_path / "bk.db")]).exit_code == 0
    out = runner.invoke(group, ["restore", str(tmp_path / "bk.db"), f"sqlite:///{tmp_path}/r.db", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["records"] > 0
