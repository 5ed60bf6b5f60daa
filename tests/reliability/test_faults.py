"""Fault injection: the n-th driver call fails (n = 1…N), once or from then on, on every backend.

Each representative operation — a session append with state, a checkpoint, a decision, a run
step, creating a store — runs again and again on a real store while the n-th call into the
driver fails (see ``_faults.py`` for what fails on each backend), until it runs through without
reaching an n-th call. After every fault:

* the call raised a typed statekeel error, or succeeded (a retry absorbed the fault);
* every batch that failed left the store unchanged, or — only if its error says the write may
  have been applied — exactly applied (full dumps before and after, see ``BatchWatch``);
* every acknowledged write is still there, read through the same store and a new handle;
* the next call on the same store works once the fault stops.

A full disk is real where we may mount a 2 MB tmpfs (SQLite and files), else SQLite's
``max_page_count`` / an injected ENOSPC stand in. Problems are collected, reported through
``reliability_report`` and then asserted empty.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import StatekeelError
from statekeel.backends import open_backend
from statekeel.testing import BACKENDS, BackendContext, ServerPool
from statekeel.testing.plugin import selected_backends

from ._faults import INJECTABLE, BatchWatch, Fault, dump, install, small_disk
from .conftest import Reporter, scale

MAX_CALLS = 400
"""A representative operation makes far fewer driver calls; more means it never finishes."""

EMBEDDED = ("sqlite", "files")
"""The backends whose disk can be filled from here."""
PAD = "lorem ipsum dolor sit amet " * 600
"""~16 KB per message: a 2 MB disk fills after about a hundred appends."""

BALLAST = 512 * 1024
"""Bytes of filler on the small disk; deleting it is how space is freed."""

_urls = itertools.count()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for arg, kinds in (("faulty", INJECTABLE), ("embedded", EMBEDDED)):
        if arg in metafunc.fixturenames:
            metafunc.parametrize(arg, [n for n in selected_backends(metafunc.config) if n in kinds])


def fresh_url(backend: str, tmp_path: Path, servers: ServerPool) -> str:
    """The URL of a new, empty store; server stores are kept apart by schema or prefix."""
    n = next(_urls)
    try:
        if backend == "postgres":
            return f"{servers.postgres().url}?schema=sk_fault_{n}"
        if backend == "redis":
            return f"{servers.redis().url}?prefix=fault{n}"
    except ServerPool.Missing as exc:
        pytest.skip(str(exc))
    url = BACKENDS[backend](BackendContext(tmp_path=tmp_path / f"store{n}", servers=servers, n=n))
    return f"{url}?timeout=2" if backend == "sqlite" else url  # a lock left behind costs 2 s, not 30


@pytest.fixture
def fault(faulty: str, monkeypatch: pytest.MonkeyPatch, statekeel_servers: ServerPool) -> Iterator[Fault]:
    """Driver calls of ``faulty`` fail when the fault is armed."""
    f = Fault()
    try:
        server = statekeel_servers.postgres().url if faulty == "postgres" else ""
    except ServerPool.Missing as exc:
        pytest.skip(str(exc))
    cleanup = install(faulty, monkeypatch, f, server)
    yield f
    cleanup()


# -- what was acknowledged, and the operations ------------------------------------------------
@dataclass
class Acked:
    """Writes whose call returned: they must survive every later fault."""

    messages: list[str] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    """Messages of calls that failed: present only if their batch was (allowed to be) applied."""
    turns: set[int] = field(default_factory=lambda: {0})
    """The values state 'turn' may hold: the last acknowledged one, or one tried since then."""
    checkpoints: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)


def op_append(store: statekeel.Store, i: int, acked: Acked, pad: str = "") -> None:
    text = f"m{i}"
    acked.tried.add(text)
    acked.turns.add(i)
    message = {"role": "user", "content": text, **({"pad": pad} if pad else {})}
    store.session("chat").append(message, state={"turn": i})
    acked.messages.append(text)
    acked.turns = {i}


def op_checkpoint(store: statekeel.Store, i: int, acked: Acked) -> None:
    store.session("chat").checkpoint(f"cp{i}")
    acked.checkpoints.append(f"cp{i}")


def op_decision(store: statekeel.Store, i: int, acked: Acked) -> None:
    with store.session("chat").decide(f"refund order {i}", rationale="late", action=f"refund({i})") as d:
        d.outcome({"refunded": i})
    acked.decisions.append(d.id)


def op_run_step(store: statekeel.Store, i: int, acked: Acked) -> None:
    assert store.run(f"job{i}").step("fetch", lambda: {"rows": i}) == {"rows": i}
    acked.runs[f"job{i}"] = i


OPS: dict[str, Callable[[statekeel.Store, int, Acked], None]] = {
    "append": op_append, "checkpoint": op_checkpoint, "decision": op_decision, "run_step": op_run_step,
}  # fmt: skip


def seed(store: statekeel.Store, acked: Acked) -> None:
    """One of everything, so each operation also meets existing data."""
    for i in range(3):
        op_append(store, -i - 1, acked)
    op_checkpoint(store, 0, acked)
    op_decision(store, 0, acked)
    op_run_step(store, 0, acked)


def _never(*_: Any) -> Any:
    raise AssertionError("a completed step ran again")


_never.__step_version__ = "replay-check"  # type: ignore[attr-defined]  # another function on purpose: the stored result stands


def check_acked(store: statekeel.Store, acked: Acked) -> list[str]:
    """What is missing or extra compared with the acknowledged writes (empty: all well)."""
    s = store.session("chat")
    history = [m["content"] for m in s.history()]
    problems: list[str] = []
    if [m for m in history if m in acked.messages] != acked.messages:
        problems.append(f"acknowledged messages lost or reordered: have {history}, acked {acked.messages}")
    if not set(history) <= set(acked.messages) | acked.tried:
        problems.append(f"messages nobody appended: {sorted(set(history) - set(acked.messages) - acked.tried)}")
    if (turn := s.state.get("turn")) not in acked.turns:
        problems.append(f"state 'turn' is {turn!r}, neither the last acknowledged value nor one tried since: {acked.turns}")
    labels = {cp.label for cp in s.checkpoints()}
    if missing := [c for c in acked.checkpoints if c not in labels]:
        problems.append(f"acknowledged checkpoints lost: {missing}")
    problems += _check_decisions(store, acked)
    for run_id, i in acked.runs.items():
        if store.run(run_id).step("fetch", _never) != {"rows": i}:
            problems.append(f"the stored result of {run_id}/fetch changed")
    return problems


def _check_decisions(store: statekeel.Store, acked: Acked) -> list[str]:
    status: dict[str, str] = {}
    after: str | None = None
    while True:
        page = store.decisions(session="chat", after=after, limit=200)
        status.update((d.id, d.status) for d in page.items)
        if page.next is None:
            break
        after = page.next
    bad = [d for d in acked.decisions if status.get(d) != "done"]
    return [f"acknowledged decisions lost or reopened: {bad}"] if bad else []


# -- the n = 1…N loop ---------------------------------------------------------------------
@dataclass
class Tally:
    """What one fault series ran into."""

    calls: int = 0
    faults: int = 0
    recovered: int = 0
    failed_batches: int = 0
    maybe_applied: int = 0
    were_applied: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    sites: Counter[str] = field(default_factory=Counter)
    found: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"driver_calls": self.calls, "faults": self.faults, "recovered_by_retry": self.recovered,
                "failed_batches": self.failed_batches, "maybe_applied": self.maybe_applied,
                "were_applied": self.were_applied,
                "errors": dict(self.errors), "sites": dict(self.sites), "found": self.found}  # fmt: skip

    def add_watch(self, watch: BatchWatch) -> None:
        self.found += watch.found
        self.failed_batches, self.maybe_applied, self.were_applied = watch.failed, watch.maybe_applied, watch.were_applied


def attempt(call: Callable[[], Any], fault: Fault, tally: Tally, what: str) -> bool:
    """Run ``call`` with the fault armed; True if it succeeded. Untyped errors are findings."""
    try:
        call()
        return True
    except StatekeelError as exc:
        tally.errors[type(exc).__name__] += 1
        return False
    except Exception as exc:  # noqa: BLE001 - the point: nothing untyped may escape
        tally.found.append(f"{what} at call {fault.fail_at}: untyped {type(exc).__name__}: {exc}")
        return False
    finally:
        fault.disarm()
        tally.sites.update(fault.sites)


def after_fault(store: statekeel.Store, url: str, acked: Acked, tally: Tally, where: str) -> None:
    """Acknowledged writes survive, on this handle and a new one, and the next call works."""
    for name, handle in (("the same store", store), ("a new handle", None)):
        try:
            opened = handle or statekeel.open(url)
            try:
                tally.found += [f"{where}, {name}: {p}" for p in check_acked(opened, acked)]
            finally:
                if handle is None:
                    opened.close()
        except Exception as exc:  # noqa: BLE001 - a finding, not a crash of the test
            tally.found.append(f"{where}: reading {name} after the fault stopped failed: {type(exc).__name__}: {exc}")
    try:
        op_append(store, 100_000 + tally.faults, acked)
    except Exception as exc:  # noqa: BLE001
        tally.found.append(f"{where}: the next call on the same store failed: {type(exc).__name__}: {exc}")


def fault_series(store: statekeel.Store, url: str, op: str, fault: Fault, persistent: bool) -> Tally:
    """Fail the n-th driver call of ``op`` for n = 1, 2, … until ``op`` runs without an n-th call."""
    acked, tally = Acked(), Tally()
    seed(store, acked)
    reader = open_backend(url, migrate=False)
    watch = BatchWatch(store.backend, lambda: dump(reader), fault)
    try:
        for n in range(1, MAX_CALLS + 1):
            fault.arm(n, persistent=persistent)
            ok = attempt(lambda: OPS[op](store, n, acked), fault, tally, op)
            if fault.fired == 0:
                tally.calls = n - 1
                break
            tally.faults += 1
            tally.recovered += ok
            after_fault(store, url, acked, tally, f"{op}, call {n} failing{' and after' if persistent else ''}")
        else:
            tally.found.append(f"{op} still reached call {MAX_CALLS}: it never finishes")
    finally:
        fault.disarm()
        reader.close()
    tally.add_watch(watch)
    return tally


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("op", list(OPS))
def test_nth_call_fails(
    faulty: str, op: str, persistent: bool, fault: Fault, tmp_path: Path, statekeel_servers: ServerPool,
    reliability_report: Reporter,
) -> None:
    url = fresh_url(faulty, tmp_path, statekeel_servers)
    store = statekeel.open(url)
    t0 = time.perf_counter()
    try:
        tally = fault_series(store, url, op, fault, persistent)
    finally:
        store.close()
    reliability_report("faults", faulty, operation=op, persistent=persistent,
                       seconds=round(time.perf_counter() - t0, 2), **tally.figures())  # fmt: skip
    assert tally.calls > 0, f"{op} made no driver call that could fail: the injection does not reach {faulty}"
    assert not tally.found, "\n".join(tally.found)


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
def test_store_creation_fails_at_nth_call(
    faulty: str, persistent: bool, fault: Fault, tmp_path: Path, statekeel_servers: ServerPool,
    reliability_report: Reporter,
) -> None:
    """Creating a store (migrations) that fails at any call leaves a store that opens and works."""
    tally = Tally()
    t0 = time.perf_counter()
    for n in range(1, MAX_CALLS + 1):
        url = fresh_url(faulty, tmp_path, statekeel_servers)
        fault.arm(n, persistent=persistent)
        opened: list[statekeel.Store] = []
        attempt(lambda: opened.append(statekeel.open(url)), fault, tally, "open")
        for s in opened:
            s.close()
        if fault.fired == 0:
            tally.calls = n - 1
            break
        tally.faults += 1
        tally.recovered += bool(opened)
        _created_after_fault(url, tally, n)
    else:
        tally.found.append(f"opening still reached call {MAX_CALLS}")
    reliability_report("faults", faulty, operation="create_store", persistent=persistent,
                       seconds=round(time.perf_counter() - t0, 2), **tally.figures())  # fmt: skip
    assert tally.calls > 0
    assert not tally.found, "\n".join(tally.found)


def _created_after_fault(url: str, tally: Tally, n: int) -> None:
    try:
        with statekeel.open(url) as store:
            acked = Acked()
            seed(store, acked)
        with statekeel.open(url) as store:
            tally.found += [f"create, call {n} failing: {p}" for p in check_acked(store, acked)]
    except Exception as exc:  # noqa: BLE001 - a finding
        tally.found.append(f"create, call {n} failing: the store did not open and work afterwards: "
                           f"{type(exc).__name__}: {exc}")  # fmt: skip


# -- a full disk ------------------------------------------------------------------------------
def _fill(store: statekeel.Store, acked: Acked, tally: Tally) -> int:
    """Append until the disk is full; the number of acknowledged appends."""
    for i in range(1, scale(2000, 4000)):
        try:
            op_append(store, i, acked, PAD)
        except StatekeelError as exc:
            tally.errors[type(exc).__name__] += 1
            return i - 1
    tally.found.append("the disk never filled up")
    return 0


def _while_full(store: statekeel.Store, url: str, acked: Acked, tally: Tally) -> None:
    """Acknowledged writes stay readable while the disk is full; a write still fails cleanly."""
    openers: list[tuple[str, Callable[[], statekeel.Store]]] = [
        ("the same store", lambda: store), ("a new handle", lambda: statekeel.open(url)),
    ]
    for name, opener in openers:
        try:
            handle = opener()
            tally.found += [f"while the disk is full, {name}: {p}" for p in check_acked(handle, acked)]
            if handle is not store:
                handle.close()
        except Exception as exc:  # noqa: BLE001 - a finding
            tally.found.append(f"while the disk is full, reading {name} failed: {type(exc).__name__}: {exc}")
    try:  # larger than the whole disk: space a store gives back (the files journal at close) cannot hold it
        op_append(store, 0, acked, PAD * 160)
        tally.found.append("a write succeeded while the disk was still full")
    except StatekeelError as exc:
        tally.errors[type(exc).__name__] += 1
    except Exception as exc:  # noqa: BLE001
        tally.found.append(f"a write on the full disk raised untyped {type(exc).__name__}: {exc}")


def test_disk_full(embedded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   reliability_report: Reporter) -> None:  # fmt: skip
    """Fill a real 2 MB disk: typed error, nothing half-written, reads go on, writes resume once freed."""
    tally, acked, t0 = Tally(), Acked(), time.perf_counter()
    with small_disk(str(tmp_path / "disk")) as mounted:
        disk = tmp_path / "disk"
        url = f"sqlite:///{disk}/store.db?timeout=2" if embedded == "sqlite" else f"file://{disk}/files-store"
        ballast, fault = disk / "ballast", Fault()
        if mounted:
            ballast.write_bytes(b"\0" * BALLAST)
        elif embedded == "files":  # no tmpfs here: the disk "fills" at the 400th write call
            install("files", monkeypatch, fault)
        store = statekeel.open(url)
        if not mounted and embedded == "sqlite":
            store.backend._conn.execute("PRAGMA max_page_count = 400")  # type: ignore[attr-defined]
        fault.arm(400, persistent=True)
        reader = open_backend(url, migrate=False)
        watch = BatchWatch(store.backend, lambda: dump(reader), fault)
        try:
            appended = _fill(store, acked, tally)
            _while_full(store, url, acked, tally)
            ballast.unlink(missing_ok=True)
            fault.disarm()
            if not mounted and embedded == "sqlite":
                store.backend._conn.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[attr-defined]
            after_fault(store, url, acked, tally, "after space was freed")
        finally:
            store.close()
            reader.close()
    tally.add_watch(watch)
    reliability_report("disk_full", embedded, real_disk=mounted, appends_before_full=appended,
                       seconds=round(time.perf_counter() - t0, 2), **tally.figures())  # fmt: skip
    assert appended > 0
    assert not tally.found, "\n".join(tally.found)
