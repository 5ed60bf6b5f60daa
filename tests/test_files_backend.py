"""The files backend beyond the conformance suite: its on-disk layout, crash
recovery (torn lines, the batch journal), safe names, and exact agreement with
the memory reference on random operation sequences."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeel
from statekeel import InvalidInputError, MigrationRequiredError, NotAStoreError, SchemaTooNewError
from statekeel.backends import open_backend
from statekeel.backends.files.names import decode, encode
from statekeel.backends.files import FilesBackend
from statekeel.backends.files.journal import journal_batches
from statekeel.protocol import (
    KEEP,
    Append,
    Backend,
    Delete,
    Entry,
    Expire,
    Load,
    LoadEntries,
    Op,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
    keys,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def url(root: Path) -> str:
    return f"file://{root}"


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- layout ---------------------------------------------------------------------------
def test_layout_is_readable_json(url: str, root: Path) -> None:
    with statekeel.open(url) as store:
        s = store.session("support-42", user="u-7")
        s.append({"role": "user", "content": "My order is late"}, {"role": "assistant", "content": "Sorry!"})
        s.state.put("ticket", {"id": 991, "status": "open"})
        store.app.put("Config.yaml", "x")
    assert json.loads((root / "statekeel.json").read_text()) == {
        "about": "a statekeel store; see docs/files-backend.md", "format": "statekeel-files", "layout": 1,
    }
    assert {
        "data/session/support-42/meta.json",
        "data/session/support-42/history.jsonl",
        "data/session/support-42/history.log.json",
        "data/session/support-42/state/ticket.json",
        "data/idx/sessions/support-42.json",
        "data/app/_/state/^config~2eyaml.json",
    } <= set(files(root))
    text = (root / "data/session/support-42/state/ticket.json").read_text()
    doc = json.loads(text)
    assert list(doc) == sorted(doc) and doc["value"] == {"id": 991, "status": "open"}
    assert doc["key"] == "session/support-42/state/ticket" and doc["version"] == 1 and doc["codec"] == "json"
    assert text.startswith("{\n  ") and text.endswith("}\n")  # pretty: one field a line, diffs stay small
    lines = (root / "data/session/support-42/history.jsonl").read_text().splitlines()
    assert [json.loads(ln)["value"]["role"] for ln in lines] == ["user", "assistant"]
    assert [json.loads(ln)["seq"] for ln in lines] == [1, 2]
    head = json.loads((root / "data/session/support-42/history.log.json").read_text())
    assert (head["first_seq"], head["log"]) == (1, "session/support-42/history")


def test_appends_never_rewrite_the_log(url: str, root: Path) -> None:
    with statekeel.open(url) as store:
        s = store.session("s")
        s.append("one")
        path = root / "data/session/s/history.jsonl"
        inode, first = path.stat().st_ino, path.read_bytes()
        s.append("two", "three")
        assert path.stat().st_ino == inode and path.read_bytes().startswith(first)


def test_non_json_bytes_are_base64_and_exact(url: str, root: Path) -> None:
    with statekeel.open(url, compress="zlib") as store:
        store.app.put("big", "compressible " * 500)
        store.app.put("float", 1e300)
    doc = json.loads((root / "data/app/_/state/big.json").read_text())
    assert "data_base64" in doc and doc["codec"] == "json+zlib"
    with statekeel.open(url) as store:
        assert store.app.get("big") == "compressible " * 500 and store.app.get("float") == 1e300
    b = open_backend(url)
    odd = [b"1e5", b'{"a":1, "b":2}', b'{"a":1,"a":2}', b"\xff\xfe", b"NaN", b'"\\ud800"']
    b.apply([Put(f"k/x/{i}", data, "json") for i, data in enumerate(odd)])
    assert [b.get(f"k/x/{i}").data for i in range(len(odd))] == odd  # type: ignore[union-attr]
    b.close()


# -- names ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "component",
    ["", ".", "..", "...", ".hidden", "a.b", "../../etc/passwd", "con", "NUL", "Ticket", "ticket",
     "日本", "x\x00y", "a:b", "a\\b", "~", "^", "~~", " ", "\ud800", "x" * 500, "%2F", "LPT1.txt"],
)
def test_names_are_portable_and_reversible(component: str) -> None:
    stem = encode(component)
    assert stem and len(stem) <= 120 and stem == stem.lower() and stem.isascii()
    assert not stem.startswith(".") and "." not in stem and "/" not in stem and "\\" not in stem
    assert stem not in {"con", "prn", "aux", "nul"} and ":" not in stem
    if not stem.startswith("~~"):
        assert decode(stem) == component


ADVERSARIAL = ["..", ".", "../..", "/", "a/../../b", "x\x00y", "日本語", "..\\..", "CON", "con", "Con",
               ".git", "-rf", "~", "x" * 300, "é", "e\u0301", "\U0001f600"]
SURROGATES = "\ud83d\ude00"
"""Two lone surrogates (not the emoji they would pair into): not storable as UTF-8, so refused."""


def test_adversarial_ids_stay_inside_the_store(url: str, root: Path, tmp_path: Path) -> None:
    with statekeel.open(url) as store:
        for i, raw in enumerate(ADVERSARIAL):
            s = store.session(raw)
            s.append({"i": i})
            s.state.put(raw, i)
            store.user(raw).put(raw, i)
        files = sorted(root.rglob("*"))
        for call in (lambda: store.session(SURROGATES).append({"i": -1}),
                     lambda: store.session(ADVERSARIAL[0]).state.put(SURROGATES, -1),
                     lambda: store.user(SURROGATES).put("k", -1)):
            with pytest.raises(InvalidInputError, match="surrogate"):
                call()
        assert sorted(root.rglob("*")) == files  # refused before anything was written
    real = os.path.realpath(root)
    for path in root.rglob("*"):
        assert os.path.realpath(path).startswith(real + os.sep) and not path.is_symlink(), path
    assert list(tmp_path.iterdir()) == [root]  # nothing was written beside the store
    for p in (root / "data").rglob("*"):
        assert p.name == p.name.lower() and p.name.isascii()  # no case or Unicode-normalisation collisions
    with statekeel.open(url) as store:
        for i, raw in enumerate(ADVERSARIAL):
            assert store.session(raw).history() == [{"i": i}]
            assert store.session(raw).state.get(raw) == i and store.user(raw).get(raw) == i
        listed = {info.id for info in store.sessions(limit=100).items}
        assert listed == set(ADVERSARIAL)


def test_scan_order_matches_memory_with_tricky_components(tmp_path: Path) -> None:
    comps = ["a", "a-b", "a/b", "ab", "a.b", "A", "", "a0", "日", "~", "%"]
    mem = open_backend("memory://")
    fb = open_backend(f"file://{tmp_path}/s")
    esc = [keys.escape(c) if c else "" for c in comps]  # "" : an empty component, "p//x"
    ops: list[Op] = [Put(f"p/{c}/x", b"1", "json") for c in esc]
    ops += [Put(f"p/{c}", b"2", "json") for c in esc]
    ops += [Put(f"p/{c}/deep/er", b"3", "json") for c in esc]
    for b in (mem, fb):
        b.apply(ops)
    for prefix in ["", "p/", "p/a", "p/a/", "p/a%2Fb", "q"]:
        assert [r.key for r in fb.scan(prefix, limit=1000)] == [r.key for r in mem.scan(prefix, limit=1000)]
        got, after = [], None
        while page := fb.scan(prefix, after=after, limit=3):
            got += [r.key for r in page]
            after = page[-1].key
        assert got == [r.key for r in mem.scan(prefix, limit=1000)]
    fb.close()


# -- opening ------------------------------------------------------------------------
def test_refuses_foreign_and_newer_folders(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(NotAStoreError, match="notes.txt"):
        statekeel.open(f"file://{foreign}")
    assert sorted(os.listdir(foreign)) == ["notes.txt"]  # untouched
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotAStoreError):
        statekeel.open(f"file://{tmp_path}/afile")
    newer = tmp_path / "newer"
    statekeel.open(f"file://{newer}").close()
    (newer / "statekeel.json").write_text(json.dumps({"format": "statekeel-files", "layout": 2}))
    with pytest.raises(SchemaTooNewError, match="upgrade"):
        statekeel.open(f"file://{newer}")
    (newer / "statekeel.json").write_text("{not json")
    with pytest.raises(NotAStoreError):
        statekeel.open(f"file://{newer}")


def test_migrate_false_and_check(url: str, root: Path) -> None:
    store = statekeel.open(url, migrate=False)
    status = store.backend.migrate(check=True)
    assert (status.current, status.target, len(status.pending)) == (0, 1, 1)
    with pytest.raises(MigrationRequiredError, match="migrate"):
        store.app.get("x")
    assert not root.exists()  # a check writes nothing
    store.backend.migrate()
    store.app.put("x", 1)
    assert store.app.get("x") == 1
    store.close()


# -- crashes ------------------------------------------------------------------------
def test_torn_last_line_is_ignored_then_repaired(url: str, root: Path) -> None:
    b = FilesBackend(statekeel.backends.parse(url))
    log = "l/x/log"
    b.apply([Append(log, ((b"1", "json"), (b"2", "json")))])
    path = root / "data/l/x/log.jsonl"
    good = path.read_bytes()
    with open(path, "ab") as f:  # a crash in the middle of writing entry 3
        f.write(b'{"seq":3,"created_at":1.0,"codec":"json","val')
    assert [e.seq for e in b.read(log)] == [1, 2]
    assert b.log_info(log).last_seq == 2  # type: ignore[union-attr]
    assert [e.seq for e in b.read(log, limit=5, reverse=True)] == [1, 2]
    problems = b.integrity_check()
    assert len(problems) == 1 and "torn" in problems[0]
    said = b.repair()
    assert "dropped" in said and path.read_bytes() == good
    assert b.integrity_check() == [] and b.repair() == "nothing to repair"
    assert b.apply([Append(log, ((b"3", "json"),))]) == [3]
    b.close()


def test_unfinished_multi_entry_append_is_invisible(url: str, root: Path) -> None:
    b = FilesBackend(statekeel.backends.parse(url))
    log = "l/x/log"
    b.apply([Append(log, ((b"1", "json"),))])
    path = root / "data/l/x/log.jsonl"
    # entries 2 and 3 were one append; the crash came after the first of its lines
    with open(path, "ab") as f:
        f.write(b'{"seq":2,"created_at":1.0,"codec":"json","more":1,"value":2}\n')
    assert [e.seq for e in b.read(log)] == [1]
    assert b.apply([Append(log, ((b"x", "json"), (b"y", "json")))]) == [2]  # the writer cuts it off first
    assert [e.data for e in b.read(log)] == [b"1", b"x", b"y"]
    b.close()


def _crash_mid_batch(url: str, after_actions: int) -> None:
    """Child process: apply a 3-file batch but die after ``after_actions`` file changes."""
    from statekeel.backends.files import io as files_io

    real = files_io.run
    done = [0]

    def dying_run(root: str, action: Any, dirty: set[str]) -> None:
        if done[0] == after_actions:
            os._exit(17)  # like kill -9: no cleanup, no flush of anything
        real(root, action, dirty)
        done[0] += 1

    files_io.run = dying_run  # type: ignore[assignment]  # commit() and Journal.recover() call it
    b = open_backend(url)
    b.apply([Put("k/x/a", b"2", "json"), Put("k/x/b", b"2", "json"), Append("k/x/log", ((b"2", "json"),))])


@pytest.mark.parametrize("after_actions", [0, 1, 2])
def test_a_crash_mid_batch_is_finished_on_open(url: str, root: Path, after_actions: int) -> None:
    b = open_backend(url)
    b.apply([Put("k/x/a", b"1", "json"), Put("k/x/b", b"1", "json"), Append("k/x/log", ((b"1", "json"),))])
    b.close()
    child = mp.get_context("spawn").Process(target=_crash_mid_batch, args=(url, after_actions))
    child.start()
    child.join()
    assert child.exitcode == 17
    assert journal_batches(root) > 0  # the committed batch is waiting
    b = open_backend(url)
    assert [b.get(k).data for k in ("k/x/a", "k/x/b")] == [b"2", b"2"]  # type: ignore[union-attr]
    assert [e.data for e in b.read("k/x/log")] == [b"1", b"2"]
    assert journal_batches(root) == 0  # replayed and checkpointed
    b.close()


def test_a_torn_journal_is_discarded(url: str, root: Path) -> None:
    b = open_backend(url)
    b.apply([Put("k/x/a", b"1", "json")])
    b.close()
    (root / ".journal").write_bytes(b"statekeel-journal 1 9999 abc\n[{\"kind\": \"wri")  # crashed while journalling
    b = open_backend(url)
    assert b.get("k/x/a").data == b"1"  # type: ignore[union-attr]
    assert (root / ".journal").stat().st_size == 0
    b.close()


def test_stray_temp_files_are_ignored_and_removed(url: str, root: Path) -> None:
    b = FilesBackend(statekeel.backends.parse(url))
    b.apply([Put("k/x/a", b"1", "json")])
    (root / "data/k/x/.a.json.1234.tmp").write_text('{"half')
    assert [r.key for r in b.scan("")] == ["k/x/a"]
    assert "temp file" in b.integrity_check()[0]
    assert "temp" in b.repair() and b.integrity_check() == []
    b.close()


def _batches(url: str, n: int) -> None:
    b = open_backend(url)
    for i in range(n):
        v = str(i).encode()
        b.apply([Put("k/x/a", v, "json"), Put("k/x/b", v, "json")])
    b.close()


@pytest.mark.slow
def test_readers_never_see_half_a_batch(url: str) -> None:
    open_backend(url).close()
    writer = mp.get_context("spawn").Process(target=_batches, args=(url, 300))
    writer.start()
    b = open_backend(url)
    seen = 0
    while writer.is_alive() or seen == 0:
        pair = b.get_many(["k/x/a", "k/x/b"])
        if pair[0] is not None and pair[1] is not None:
            scanned = b.scan("k/x/")
            assert len({r.data for r in scanned}) == 1, scanned
            seen += 1
    writer.join()
    assert writer.exitcode == 0 and seen > 0
    b.close()


# -- bigger logs ----------------------------------------------------------------
def test_long_logs_trim_compacts_and_seeks(url: str, root: Path) -> None:
    b = FilesBackend(statekeel.backends.parse(url))
    log = "l/x/log"
    for chunk in range(20):
        b.apply([Append(log, tuple((json.dumps({"n": chunk * 500 + i, "pad": "x" * 50}).encode(), "json") for i in range(500)))])
    assert [json.loads(e.data)["n"] for e in b.read(log, start=7777, limit=3)] == [7776, 7777, 7778]
    assert [e.seq for e in b.read(log, limit=2, reverse=True)] == [9999, 10000]
    size = (root / "data/l/x/log.jsonl").stat().st_size
    assert b.apply([Trim(log, 9001)]) == [9000]
    assert (root / "data/l/x/log.jsonl").stat().st_size < size / 5  # compacted
    assert [e.seq for e in b.read(log, limit=2)] == [9001, 9002]
    assert b.apply([Append(log, ((b"1", "json"),))]) == [10001]
    b.close()


def test_long_key_components_use_a_hashed_name(url: str, root: Path) -> None:
    long = "k" * 400
    with statekeel.open(url) as store:
        store.session(long).state.put(long, 1)
    with statekeel.open(url) as store:
        assert store.session(long).state.get(long) == 1
        assert [i.id for i in store.sessions().items] == [long]
    assert all(len(p.name) < 200 for p in root.rglob("*"))
    assert any(p.name.endswith(".name") for p in root.rglob("*"))


# -- exactly like memory ------------------------------------------------------------
KEYS = st.sampled_from(["a/x/1", "a/x/2", "a/y/1", "a/x", "b/x/1"])
DATA = st.sampled_from([b"1", b'"s"', b"\x00raw", b'{"k":[1,2]}'])
EXP = st.sampled_from([None, 0.0, 9e9, KEEP])


def _op(kind: str, key: str, data: bytes, exp: Any, n: int) -> Op:
    fixed = None if exp is KEEP else exp
    return {
        "put": lambda: Put(key, data, "json", expires_at=exp),
        "cas": lambda: Put(key, data, "json", expect=n % 3 or None),
        "delete": lambda: Delete(key),
        "append": lambda: Append(key, ((data, "json"),) * (n % 3 + 1), expires_at=exp),
        "touch": lambda: Touch(key, expires_at=exp),
        "expire": lambda: Expire(key[:3], fixed),
        "trim": lambda: Trim(key, n),
        "load": lambda: Load(Record(key, data, "tjson1", n + 1, 10.5, 20.25, fixed)),
        "load_entries": lambda: LoadEntries(key, tuple(Entry(key, s, data, "json", 5.0 + s) for s in (n, n + 1, n + 3)), fixed),
        "rewrite": lambda: Rewrite(key, n, data, "tjson1"),
    }[kind]()


OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "cas", "delete", "append", "touch", "expire", "trim", "load", "load_entries", "rewrite"]),
        KEYS, DATA, EXP, st.integers(1, 6),
    ).map(lambda t: _op(*t)),
    min_size=1, max_size=4,
)


def _observe(b: Backend) -> Any:
    """Everything observable, with the batch clock's timestamps blanked out."""
    def rec(r: Record | None) -> Any:
        return None if r is None else (r.key, r.data, r.codec, r.version, r.expires_at)

    logs = [(i.log, i.first_seq, i.last_seq, i.expires_at) for i in b.scan_logs("", limit=100)]
    entries = {i[0]: [(e.seq, e.data, e.codec) for e in b.read(i[0])] for i in logs}
    return [rec(r) for r in b.scan("", limit=100)], logs, entries


def _result(r: Any) -> Any:
    return (r.key, r.data, r.version, r.expires_at) if isinstance(r, Record) else r


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(OPS, min_size=1, max_size=8))
def test_random_batches_match_the_memory_backend(tmp_path: Path, batches: list[list[Op]]) -> None:
    mem = open_backend("memory://")
    path = tmp_path / f"m{time.monotonic_ns()}"
    fb = open_backend(f"file://{path}")
    try:
        for ops in batches:
            outcome = []
            for b in (mem, fb):
                try:
                    outcome.append(("ok", [_result(r) for r in b.apply(ops)]))
                except statekeel.ConflictError as exc:
                    outcome.append(("conflict", (exc.key, exc.expected, exc.actual)))
            assert outcome[0] == outcome[1], ops
            assert _observe(mem) == _observe(fb), ops
    finally:
        fb.close()


def _put_one(url: str, key: str) -> None:
    b = open_backend(url)
    b.apply([Put(key, b"1", "json")])
    b.close()


def test_cached_folder_listings_see_other_processes(url: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from statekeel.backends.files import tree

    monkeypatch.setattr(tree, "RACY_NS", 20_000_000)  # 20 ms instead of 2 s, to keep the test short
    b = FilesBackend(statekeel.backends.parse(url))
    b.apply([Put(f"k/x/{i:03d}", b"1", "json") for i in range(50)])
    time.sleep(0.05)
    assert len(b.scan("k/x/", limit=100)) == 50
    assert "data/k/x" in b.tree._cache  # a quiet folder: its listing is cached
    assert len(b.scan("k/x/", after="k/x/010", limit=100)) == 39
    child = mp.get_context("spawn").Process(target=_put_one, args=(url, "k/x/new"))
    child.start()
    child.join()
    assert [r.key for r in b.scan("k/x/", after="k/x/049")] == ["k/x/new"]  # another process wrote
    time.sleep(0.05)
    b.scan("k/x/")
    b.apply([Delete("k/x/new")])
    assert [r.key for r in b.scan("k/x/", after="k/x/049")] == []
    old = time.time() - 10
    os.utime(root / "data/k/x", (old, old))  # mtime set back by hand: ctime still tells
    assert [r.key for r in b.scan("k/x/", after="k/x/049")] == []
    b.close()
