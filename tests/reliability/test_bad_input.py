"""Bad input at the API boundary (issue 10, suite part 5): a table-driven sweep.

Every public entry point of Store, Session, StateView, decisions, runs,
checkpoints, events, notes and ``statekeel.open`` gets wrong types, empty and
huge values, NaN / infinity, lone surrogates and hostile ids. Each call must
raise a typed :class:`InvalidInputError` / :class:`ConfigurationError` (never a
raw exception) and leave the store byte-identical: a full dump of every record
and log entry, taken through the backend, is compared before and after, on
every backend of the conformance plugin.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel.backends import open_backend
from statekeel.errors import ConfigurationError, InvalidInputError, SerializationError
from statekeel.protocol import Backend

TYPED = (InvalidInputError, ConfigurationError)

# -- hostile input ---------------------------------------------------------------------------
SURROGATE = "a\ud800b"
HUGE_ID = "x" * 10_000
BAD_IDS: list[Any] = [None, 1, 1.5, b"id", ["id"], "", HUGE_ID, SURROGATE, "\udfff"]
LEGAL_HOSTILE_IDS = ["..", "/", "a/b", "\x00", "nul\x00in", "%2F", "{tag}", "😀" * 50, "x" * 1024]
BAD_INTS: list[Any] = ["5", True, 1.5, -1, 2**64, float("nan"), None]
BAD_LIMITS: list[Any] = [*BAD_INTS, 0]
BAD_EXPECTS: list[Any] = [True, False, "abc", 1.0, -1, 10**30]
BAD_DURATIONS: list[Any] = [
    float("nan"), float("inf"), -float("inf"), 1e300, -1, 0, True, "abc", "1e300s",
    "99999999999999999999d", dt.timedelta(days=10**6), 10**400, [],
]


@dataclasses.dataclass
class InMain:
    x: int = 1


InMain.__module__ = "__main__"  # as if defined in the script run as `python agent.py`
InMain.__qualname__ = "InMainOnlyHere"


@dataclasses.dataclass
class Unimportable:
    x: int = 1


Unimportable.__module__ = "statekeel_no_such_module_anywhere"


class Shadowed:
    """Defined twice under one name: the path resolves to the other class."""


_first_shadowed = Shadowed


class Shadowed:  # type: ignore[no-redef]  # noqa: F811
    """The second definition; instances of the first cannot be read back."""


BAD_VALUES: list[Any] = [
    10**5000, SURROGATE, {"k": "\udfff"}, {"\ud800": 1}, [1, [2, SURROGATE]], object(), {1: 2},
    InMain(), Unimportable(), _first_shadowed(),
]


def _noop(*_: Any) -> None:
    return None


# -- the dump: everything a backend stores --------------------------------------------------
def dump(backend: Backend) -> dict[str, Any]:
    """Every live record and log entry, as stored (bytes, codec, version, times)."""
    out: dict[str, Any] = {}
    after: str | None = None
    while page := backend.scan("", after=after, limit=500):
        for r in page:
            out[f"rec {r.key}"] = (r.data, r.codec, r.version, r.created_at, r.updated_at, r.expires_at)
        after = page[-1].key
    after = None
    while logs := backend.scan_logs("", after=after, limit=500):
        for info in logs:
            out[f"log {info.log}"] = [
                (e.seq, e.data, e.codec, e.created_at) for e in backend.read(info.log, start=1, limit=10**6)
            ]
        after = logs[-1].log
    return out


# -- the populated store ---------------------------------------------------------------------
@dataclasses.dataclass
class World:
    store: statekeel.Store
    session: Any
    run: Any
    stream: Any
    cp: Any


def populate(store: statekeel.Store) -> World:
    s = store.session("s1", user="u1", ttl="1h")
    s.append({"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"})
    s.state.put("ticket", {"id": 991})
    s.notes.write("observer", {"issues": []})
    with s.decide("refund 991", rationale="late", action="refund(991)"):
        pass
    cp = s.checkpoint("before")
    store.app.put("config", {"a": 1})
    store.user("u1").put("pref", "dark")
    run = store.run("r1")
    run.step("one", lambda: 1)
    stream = store.events("orders")
    stream.append("created", {"id": "T1"})
    stream.consumer("c1").ack(1)
    return World(store, s, run, stream, cp)


Case = tuple[str, Callable[[World, Any], Any], list[Any]]


def _cases() -> list[Case]:
    """(label, call(world, bad), bad arguments): each call must raise a typed error."""
    st = lambda w: w.store  # noqa: E731
    return [
        # Store
        ("store.session(id)", lambda w, b: st(w).session(b), BAD_IDS),
        ("store.session(user=)", lambda w, b: st(w).session("new", user=b), [1, "", HUGE_ID, SURROGATE]),
        ("store.session(ttl=)", lambda w, b: st(w).session("new", ttl=b), BAD_DURATIONS),
        ("store.session(existing, ttl=)", lambda w, b: st(w).session("s1", ttl=b), BAD_DURATIONS),
        ("store.sessions(limit=)", lambda w, b: st(w).sessions(limit=b), BAD_LIMITS),
        ("store.sessions(stale_after=)", lambda w, b: st(w).sessions(stale_after=b), BAD_DURATIONS),
        ("store.sessions(after=)", lambda w, b: st(w).sessions(after=b), [1, "", HUGE_ID, SURROGATE]),
        ("store.sessions(status=)", lambda w, b: st(w).sessions(status=b), ["done", 1, ""]),
        ("store.sessions(user=)", lambda w, b: st(w).sessions(user=b), [1, HUGE_ID, SURROGATE]),
        ("store.session_info(id)", lambda w, b: st(w).session_info(b), BAD_IDS),
        ("store.find_session(id)", lambda w, b: st(w).find_session(b), BAD_IDS),
        ("store.mark_stale_crashed(after)", lambda w, b: st(w).mark_stale_crashed(b), BAD_DURATIONS),
        ("store.scope(scope)", lambda w, b: st(w).scope(b), [1, "", "nope", "user:", f"user:{HUGE_ID}", f"user:{SURROGATE}"]),
        ("store.user(id)", lambda w, b: st(w).user(b), BAD_IDS),
        ("store.decisions(limit=)", lambda w, b: st(w).decisions(limit=b), BAD_LIMITS),
        ("store.decisions(session=)", lambda w, b: st(w).decisions(session=b), [1, "", HUGE_ID, SURROGATE]),
        ("store.decisions(after=)", lambda w, b: st(w).decisions(after=b), [1, "", "s1:zz", HUGE_ID, SURROGATE]),
        ("store.resolve_decision(id)", lambda w, b: st(w).resolve_decision(b, "ok"), [*BAD_IDS, "s1:nothex"]),
        ("store.run(id)", lambda w, b: st(w).run(b), BAD_IDS),
        ("store.run(max_attempts=)", lambda w, b: st(w).run("r2", max_attempts=b), BAD_LIMITS),
        ("store.runs(limit=)", lambda w, b: st(w).runs(limit=b), BAD_LIMITS),
        ("store.runs(status=)", lambda w, b: st(w).runs(status=b), ["nope", 1]),
        ("store.runs(after=)", lambda w, b: st(w).runs(after=b), [1, "", HUGE_ID, SURROGATE]),
        ("store.resume_run(id)", lambda w, b: st(w).resume_run(b, "x", 1), BAD_IDS),
        ("store.resume_run(name)", lambda w, b: st(w).resume_run("r1", b, 1), [1, "", HUGE_ID, SURROGATE]),
        ("store.resume_run(value)", lambda w, b: st(w).resume_run("r1", "wait", b), BAD_VALUES),
        ("store.cancel_run(id)", lambda w, b: st(w).cancel_run(b), BAD_IDS),
        ("store.cancel_run(reason=)", lambda w, b: st(w).cancel_run("r1", reason=b), [1, b"x"]),
        ("store.events(stream)", lambda w, b: st(w).events(b), BAD_IDS),
        ("store.tenant(name)", lambda w, b: st(w).tenant(b), BAD_IDS),
        ("store.erase(subject)", lambda w, b: st(w).erase(b), BAD_IDS),
        ("store.purge_expired(batch=)", lambda w, b: st(w).purge_expired(batch=b), BAD_LIMITS),
        # Session
        ("session.append(value)", lambda w, b: w.session.append(b), BAD_VALUES),
        ("session.append(ok, value)", lambda w, b: w.session.append("fine", b), BAD_VALUES),
        ("session.append(state=)", lambda w, b: w.session.append("m", state=b), ["str", 1, [("k", 1)]]),
        ("session.append(state key)", lambda w, b: w.session.append("m", state={b: 1}), [1, "", HUGE_ID, SURROGATE]),
        ("session.append(state value)", lambda w, b: w.session.append("m", state={"k": b}), BAD_VALUES),
        ("session.messages(last=)", lambda w, b: w.session.messages(b), [*BAD_INTS[:-1], 10**19]),
        ("session.messages(start=)", lambda w, b: w.session.messages(start=b), ["a", True, -1, 2**64]),
        ("session.messages(stop=)", lambda w, b: w.session.messages(stop=b), ["a", True, -1, 2**64]),
        ("session.history(last=)", lambda w, b: w.session.history(last=b), [*BAD_INTS[:-1], 10**19]),
        ("session.is_stale(after)", lambda w, b: w.session.is_stale(b), BAD_DURATIONS),
        ("session.set_status(status)", lambda w, b: w.session.set_status(b), ["done", 1, "", None]),
        ("session.decide(decision)", lambda w, b: w.session.decide(b), [None, 1, "", "   "]),
        ("session.decide(rationale=)", lambda w, b: w.session.decide("d", rationale=b), [1, b"x"]),
        ("session.decide(action=) enter", lambda w, b: w.session.decide("d", action=b).__enter__(), BAD_VALUES),
        ("session.notes.write(author)", lambda w, b: w.session.notes.write(b, 1), BAD_IDS),
        ("session.notes.write(value)", lambda w, b: w.session.notes.write("observer", b), BAD_VALUES),
        ("session.notes.read(author)", lambda w, b: w.session.notes.read(b), BAD_IDS),
        ("session.notes.read(max_age=)", lambda w, b: w.session.notes.read("observer", max_age=b), BAD_DURATIONS),
        ("session.notes.delete(author)", lambda w, b: w.session.notes.delete(b), BAD_IDS),
        ("session.checkpoint(label)", lambda w, b: w.session.checkpoint(b), [1, "", HUGE_ID, SURROGATE]),
        ("session.checkpoint(full_every=)", lambda w, b: w.session.checkpoint(full_every=b), BAD_LIMITS),
        ("session.checkpoint(compress=)", lambda w, b: w.session.checkpoint(compress=b), ["lz4", 1]),
        ("session.restore(cp)", lambda w, b: w.session.restore(b), [None, 0, -1, True, 2**64, 1.5, "", HUGE_ID, SURROGATE]),
        ("session.fork(into=)", lambda w, b: w.session.fork(w.cp, into=b), [*BAD_IDS, "s1"]),
        ("session.diff(a)", lambda w, b: w.session.diff(b), [None, 0, True, 2**64, HUGE_ID, SURROGATE]),
        ("session.prune_checkpoints(keep_last=)", lambda w, b: w.session.prune_checkpoints(keep_last=b), ["5", True, -1, 2**64]),
        ("session.prune_checkpoints(newer_than=)", lambda w, b: w.session.prune_checkpoints(newer_than=b), BAD_DURATIONS),
        ("session.batch() put", lambda w, b: _batch(w, lambda x: x.put("k", b)), BAD_VALUES),
        ("session.batch() put key", lambda w, b: _batch(w, lambda x: x.put(b, 1)), [1, "", HUGE_ID, SURROGATE]),
        ("session.batch() put expect", lambda w, b: _batch(w, lambda x: x.put("k", 1, expect=b)), BAD_EXPECTS),
        ("session.batch() put ttl", lambda w, b: _batch(w, lambda x: x.put("k", 1, ttl=b)), BAD_DURATIONS),
        ("session.batch() append", lambda w, b: _batch(w, lambda x: x.append("ok", b)), BAD_VALUES),
        # StateView: session, app and user scopes
        *[
            case
            for name, view in (("session.state", lambda w: w.session.state), ("store.app", lambda w: w.store.app),
                               ("store.user('u1')", lambda w: w.store.user("u1")))
            for case in _state_cases(name, view)
        ],
        # Runs
        ("run.step(name)", lambda w, b: w.run.step(b, _noop), [1, "", HUGE_ID, SURROGATE]),
        ("run.wait_for(name)", lambda w, b: w.run.wait_for(b), [1, "", HUGE_ID, SURROGATE]),
        ("run.wait_for(prompt=)", lambda w, b: w.run.wait_for("w", prompt=b), [1, b"x"]),
        # Events
        ("events.append(type)", lambda w, b: w.stream.append(b, {}), [*BAD_IDS, "t" * 1_000_000]),
        ("events.append(data)", lambda w, b: w.stream.append("t", b), BAD_VALUES),
        ("events.append(agent=)", lambda w, b: w.stream.append("t", 1, agent=b), [1, b"x"]),
        ("events.append_many(pairs)", lambda w, b: w.stream.append_many([("ok", 1), ("t", b)]), BAD_VALUES),
        ("events.append_many([])", lambda w, b: w.stream.append_many(b), [[]]),
        ("events.get(seq)", lambda w, b: w.stream.get(b), ["1", True, -1, 2**64, None]),
        ("events.read(start)", lambda w, b: w.stream.read(b), ["1", True, -1, 2**64]),
        ("events.read(stop=)", lambda w, b: w.stream.read(1, b), ["1", True, -1, 2**64]),
        ("events.read(limit=)", lambda w, b: w.stream.read(limit=b), ["1", True, -1, 2**64]),
        ("events.read(last=)", lambda w, b: w.stream.read(last=b), ["1", True, -1, 2**64]),
        ("events.read(type=)", lambda w, b: w.stream.read(type=b), [1, [1], [""], [SURROGATE]]),
        ("events.read(since=)", lambda w, b: w.stream.read(since=b), ["yesterday", dt.datetime(2020, 1, 1), True]),
        ("events.seq_at(when)", lambda w, b: w.stream.seq_at(b), ["now", None, dt.datetime(2020, 1, 1)]),
        ("events.project(fn)", lambda w, b: w.stream.project(b), [None, 1]),
        ("events.project(snapshot_every=)", lambda w, b: w.stream.project(_noop, snapshot_every=b), ["5", True, 0, -1]),
        ("events.project(version=)", lambda w, b: w.stream.project(_noop, name="p", version=b), ["1", True, 0, 2**64]),
        ("events.project(as_of=)", lambda w, b: w.stream.project(_noop, as_of=b), ["1", True, -1, 2**64]),
        ("events.project(name=)", lambda w, b: w.stream.project(_noop, name=b), ["", 1, HUGE_ID, SURROGATE]),
        ("events.project(keep_snapshots=)", lambda w, b: w.stream.project(_noop, keep_snapshots=b), ["1", True, 0]),
        ("events.consumer(name)", lambda w, b: w.stream.consumer(b), BAD_IDS),
        ("consumer.poll(limit)", lambda w, b: w.stream.consumer("c1").poll(b), BAD_LIMITS),
        ("consumer.ack(seq)", lambda w, b: w.stream.consumer("c1").ack(b), ["1", True, -1, 2**64, 1.5]),
        ("consumer.seek(seq)", lambda w, b: w.stream.consumer("c1").seek(b), ["1", True, -1, 2**64, None]),
    ]


def _state_cases(name: str, view: Callable[[World], Any]) -> list[Case]:
    return [
        (f"{name}.put(key)", lambda w, b: view(w).put(b, 1), [1, "", HUGE_ID, SURROGATE, None]),
        (f"{name}.put(value)", lambda w, b: view(w).put("k", b), BAD_VALUES),
        (f"{name}.put(expect=)", lambda w, b: view(w).put("k", 1, expect=b), BAD_EXPECTS),
        (f"{name}.put(ttl=)", lambda w, b: view(w).put("k", 1, ttl=b), BAD_DURATIONS),
        (f"{name}.get(key)", lambda w, b: view(w).get(b), [1, "", HUGE_ID, SURROGATE]),
        (f"{name}.require(key)", lambda w, b: view(w).require(b), [1, "", HUGE_ID, SURROGATE]),
        (f"{name}.delete(key)", lambda w, b: view(w).delete(b), [1, "", HUGE_ID, SURROGATE]),
        (f"{name}.delete(expect=)", lambda w, b: view(w).delete("ticket", expect=b), BAD_EXPECTS),
        (f"{name}.items(limit=)", lambda w, b: view(w).items(limit=b), BAD_LIMITS),
        (f"{name}.items(prefix)", lambda w, b: view(w).items(b), [1, HUGE_ID, SURROGATE]),
        (f"{name}.items(after=)", lambda w, b: view(w).items(after=b), [1, HUGE_ID, SURROGATE]),
        (f"{name}.update(fn)", lambda w, b: view(w).update("ticket", b), [None, 1]),
        (f"{name}.update(value)", lambda w, b: view(w).update("ticket", lambda _: b, default=0), BAD_VALUES),
        (f"{name}.update(max_attempts=)", lambda w, b: view(w).update("ticket", _noop, max_attempts=b), BAD_LIMITS),
        (f"{name}.update(ttl=)", lambda w, b: view(w).update("ticket", _noop, ttl=b), BAD_DURATIONS),
    ]


def _batch(w: World, body: Callable[[Any], None]) -> None:
    with w.session.batch() as b:
        b.append("before the bad call")
        body(b)


def _describe(bad: Any) -> str:
    try:
        text = repr(bad)
    except ValueError:
        return f"<int of {bad.bit_length()} bits>"
    return text if len(text) <= 40 else text[:30] + f"…({len(text)} chars)"


# -- the sweep ---------------------------------------------------------------------------------
def test_every_entry_point_refuses_bad_input_and_leaves_the_store_unchanged(
    store: statekeel.Store, backend_name: str, reliability_report: Any
) -> None:
    world = populate(store)
    before = dump(store.backend)
    problems: list[str] = []
    calls = 0
    for label, call, bads in _cases():
        for bad in bads:
            calls += 1
            try:
                result = call(world, bad)
            except TYPED:
                continue
            except BaseException as exc:  # noqa: BLE001 - the sweep reports every raw exception
                problems.append(f"{label} with {_describe(bad)}: raw {type(exc).__name__}: {str(exc)[:120]}")
            else:
                problems.append(f"{label} with {_describe(bad)}: accepted, returned {_describe(result)}")
    after = dump(store.backend)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    reliability_report("bad input", backend_name, bad_calls=calls, entry_points=len(_cases()),
                       stored_items_compared=len(before), found=[*problems, *(f"changed {k}" for k in changed)])
    assert not problems, f"{len(problems)} of {calls} bad calls on {backend_name}:\n" + "\n".join(problems)
    assert not changed, f"bad calls changed stored data on {backend_name}: {changed}"


def test_hostile_but_legal_ids_round_trip(store: statekeel.Store) -> None:
    """'..', '/', NUL, emoji and 1,024 characters are ids like any other: stored and read back."""
    for i, ident in enumerate(LEGAL_HOSTILE_IDS):
        s = store.session(ident, user=ident)
        s.append(ident)
        s.state.put(ident, i)
        s.notes.write(ident, i)
        store.events(ident).append(ident, i)
        store.run(ident).step(ident, lambda: i)
        assert store.session(ident).history() == [ident]
        assert store.session(ident).state.get(ident) == i
        assert store.session(ident).notes.read(ident).value == i
        assert [e.type for e in store.events(ident).read()] == [ident]
        assert store.session_info(ident) is not None
    listed = {info.id for info in store.sessions(limit=100)}
    assert set(LEGAL_HOSTILE_IDS) <= listed


def test_a_refused_value_does_not_break_later_writes_of_the_session(store: statekeel.Store) -> None:
    """Before: a lone-surrogate key or an un-importable class was written, then every checkpoint failed."""
    s = store.session("later")
    for bad in ({"\ud800": 1}, InMain(), Unimportable()):
        with pytest.raises(SerializationError):
            s.state.put("k", bad)
    with pytest.raises(InvalidInputError):
        s.state.put("\ud800", 1)
    s.state.put("fine", 1)
    assert s.checkpoint("after").keys == 1


# -- statekeel.open and open_backend -----------------------------------------------------------
def test_open_refuses_bad_arguments_without_creating_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATEKEEL_URL", raising=False)
    url = f"sqlite:///{tmp_path}/s.db"
    bad_calls: list[tuple[str, Callable[[], Any]]] = [
        ("empty url", lambda: statekeel.open("")),
        ("unknown keyword", lambda: statekeel.open(url, migrat=False)),
        ("unknown keyword memory", lambda: statekeel.open("memory://", foo=1)),
        ("max_record_bytes='abc'", lambda: statekeel.open(url, max_record_bytes="abc")),
        ("max_record_bytes=0", lambda: statekeel.open(url, max_record_bytes=0)),
        ("max_record_bytes=True", lambda: statekeel.open(url, max_record_bytes=True)),
        ("compress='lz4'", lambda: statekeel.open(url, compress="lz4")),
        ("url=1", lambda: statekeel.open(1)),  # type: ignore[arg-type]
        ("no scheme", lambda: statekeel.open("state.db")),
        ("open_backend unknown keyword", lambda: open_backend("memory://", nope=1)),
    ]
    problems = []
    for label, call in bad_calls:
        try:
            opened = call()
        except ConfigurationError:
            continue
        except BaseException as exc:  # noqa: BLE001
            problems.append(f"{label}: raw {type(exc).__name__}: {exc}")
        else:
            opened.close()
            problems.append(f"{label}: accepted")
    assert not problems, "\n".join(problems)
    assert list(tmp_path.iterdir()) == [], "a refused open() left files behind"


def test_unknown_keyword_error_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="migrate") as info:
        statekeel.open("memory://", migrat=False)
    assert "max_record_bytes" in str(info.value) and "'migrat'" in str(info.value)


# -- durations: NaN / inf stored by older versions ---------------------------------------------
@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
@pytest.mark.parametrize("expiry", [math.inf, 1e300, math.nan])
def test_a_stored_non_finite_expiry_does_not_break_listings(
    tmp_path: Path, scheme: str, expiry: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older versions stored ttl=inf and its expiry; sessions() then raised OverflowError for every session."""
    from statekeel.core import layout
    from statekeel.protocol import ANY, Put

    # the protocol refuses a non-finite expiry now (protocol.checks): plant one as an older version did
    monkeypatch.setattr(f"statekeel.backends.{scheme}{'.backend' if scheme == 'sqlite' else ''}.check_ops",
                        lambda ops, now=None: None)  # fmt: skip
    store = statekeel.open("memory://" if scheme == "memory" else f"sqlite:///{tmp_path}/s.db")
    try:
        store.session("fine").append("x")
        meta, index = layout.session_meta_key("old"), layout.session_index_key("old")
        body, codec = store.codec.encode({"user": None, "status": "active", "ttl": float(expiry)})
        idx, idx_codec = store.codec.encode({})
        store.backend.apply([Put(meta, body, codec, ANY, expiry), Put(index, idx, idx_codec, ANY, expiry)])
        listed = store.sessions()
        assert [i.id for i in listed] in (["fine", "old"], ["fine"])
        for info in listed:
            assert info.ttl is None or math.isfinite(info.ttl)
        if store.session_info("old") is not None:
            store.session("old").append("still writable")
    finally:
        store.close()


def test_the_cli_duration_parser_refuses_non_finite_values() -> None:
    from statekeel.features._duration import seconds

    for bad in ("nan", "inf", "1e300", float("nan"), float("inf"), 1e300):
        with pytest.raises(InvalidInputError):
            seconds(bad)  # type: ignore[arg-type]
    assert seconds("1s") == 1.0 and seconds(dt.timedelta(days=36500)) == 36500 * 86400


def test_limits_are_documented_in_the_module_docstring() -> None:
    from statekeel.core import validate

    doc = validate.__doc__ or ""
    assert "1,024" in doc and "2**63 - 1" in doc and "100 years" in doc
    assert sys.modules["statekeel.core.validate"].MAX_NAME_CHARS == 1024
