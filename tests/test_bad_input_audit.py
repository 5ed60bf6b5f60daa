"""Bad input the sweep of tests/reliability/test_bad_input.py did not reach (session 28 audit).

Times given to event reads as NaN / infinity / 10**400, ints no float or str can hold inside
dict keys and sets, memory pages and batches of the wrong type, a run failed with a non-str
error, an empty step name, store URLs whose path holds NUL or a lone surrogate, and options on
``memory://`` URLs. Each is refused with a typed error and leaves the store as it was, on every
backend; a Hypothesis test throws the nasty values at those entry points in random order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeel
from statekeel.errors import (
    ConfigurationError,
    InvalidInputError,
    SerializationError,
    StatekeelError,
)
from statekeel.protocol import Backend

HUGE = 10**5000  # no str, no float
NASTY: list[Any] = [
    float("nan"), math.inf, -math.inf, 1e309, 2**63, 2**64, 10**400, HUGE, "\ud800", "a\x00b", "", "x" * 10_000,
    b"x", None, {1}, object(), -1, 0, True, 1.5, [], {},
]


def dump(backend: Backend) -> dict[str, Any]:
    """Every live record and log entry, as stored."""
    out: dict[str, Any] = {r.key: (r.data, r.codec, r.version, r.expires_at) for r in backend.scan("", limit=10_000)}
    for info in backend.scan_logs("", limit=10_000):
        out["log " + info.log] = [(e.seq, e.data) for e in backend.read(info.log, start=1, limit=10_000)]
    return out


def populated(store: statekeel.Store) -> statekeel.Store:
    s = store.session("s1", user="u1")
    s.append("hello")
    store.events("orders").append("created", {"id": 1})
    store.run("r1").step("one", lambda: 1)
    store.memory(("ns",), embedder=None).put("m1", {"a": 1}, text="hello world")
    return store


class Handles:
    """What the entry points are called on, opened before the store is compared (opening a
    session or a run writes)."""

    def __init__(self, store: statekeel.Store) -> None:
        self.store = store
        self.stream = store.events("orders")
        self.session = store.session("s1")
        self.memory = store.memory(("ns",), embedder=None)
        self.run_fail = store.run("r-fail")
        self.run_step = store.run("r-step")


ENTRY_POINTS: dict[str, Any] = {
    "events.read(since=)": lambda h, b: h.stream.read(since=b),
    "events.read(until=)": lambda h, b: h.stream.read(until=b),
    "events.iter(since=)": lambda h, b: list(h.stream.iter(since=b)),
    "events.seq_at(when)": lambda h, b: h.stream.seq_at(b),
    "events.project(at=)": lambda h, b: h.stream.project(lambda s, e: e.seq, at=b),
    "state.put({key: 1})": lambda h, b: h.store.app.put("k", {b: 1} if _hashable(b) else [b]),
    "state.put({value})": lambda h, b: h.store.app.put("k", {b} if _hashable(b) else (b,)),
    "session.append({key: 1})": lambda h, b: h.session.append({b: 1} if _hashable(b) else [b]),
    "memory.put_many(items)": lambda h, b: h.memory.put_many(b),
    "memory.items(after=)": lambda h, b: h.memory.items(after=b),
    "run.fail(error)": lambda h, b: h.run_fail.fail(b),
    "run.stepfn(name=)": lambda h, b: h.run_step.stepfn(name=b)(lambda: 1)(),
}


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(st.sampled_from(sorted(ENTRY_POINTS)), st.sampled_from(range(len(NASTY)))),
                      min_size=1, max_size=4))
def test_nasty_values_get_a_typed_error_or_work_and_a_refusal_changes_nothing(
    store: statekeel.Store, calls: list[tuple[str, int]]
) -> None:
    if not store.session_info("s1"):
        populated(store)
    handles = Handles(store)
    for label, i in calls:
        before = dump(store.backend)
        try:
            ENTRY_POINTS[label](handles, NASTY[i])
        except StatekeelError as exc:
            assert dump(store.backend) == before, f"{label} with NASTY[{i}] was refused ({exc!r}) but changed the store"
        # anything else escapes and fails the test: a raw TypeError / ValueError / OverflowError


def test_event_times_that_no_datetime_holds_are_refused(store: statekeel.Store) -> None:
    """Before: a raw ValueError (NaN) or OverflowError (infinity, 1e300, 10**400) escaped."""
    stream = populated(store).events("orders")
    for when in (float("nan"), math.inf, -math.inf, 1e300, 10**400, HUGE, 2**64):
        for call in (lambda: stream.read(since=when), lambda: stream.read(until=when), lambda: stream.seq_at(when),
                     lambda: stream.project(lambda s, e: e.seq, at=when)):
            with pytest.raises(InvalidInputError, match="epoch seconds"):
                call()
    assert [e.seq for e in stream.read(since=0)] == [1]  # ordinary times still work


def test_ints_with_no_str_in_dict_keys_and_sets_are_refused_with_their_path(store: statekeel.Store) -> None:
    """Before: the error message's repr() (dict keys) and the set ordering raised a raw ValueError."""
    s = store.session("s")
    before = dump(store.backend)
    for value in ({HUGE: 1}, {"a": {HUGE: 1}}, {HUGE}, frozenset([HUGE, 1]), [{1, HUGE}]):
        with pytest.raises(SerializationError, match=r"app\['k'\]"):
            store.app.put("k", value)
        with pytest.raises(SerializationError):
            s.state.put("k", value)
        with pytest.raises(SerializationError):
            s.append("fine", value)
    assert dump(store.backend) == before
    store.app.put("k", {3, 1, 2})
    assert store.app.get("k") == {1, 2, 3}


def test_memory_put_many_takes_a_list_of_item_dicts(store: statekeel.Store) -> None:
    """Before: a non-iterable raised a raw TypeError."""
    memory = store.memory(("ns",), embedder=None)
    memory.put("m1", 1, text="one")
    before = dump(store.backend)
    for bad in (None, 5, 1.5, object(), {"key": "k", "value": 1}, "abc", b"ab"):
        with pytest.raises(InvalidInputError):
            memory.put_many(bad)
    assert dump(store.backend) == before


def test_memory_items_after_is_a_str(store: statekeel.Store) -> None:
    """Before: ``after=5`` raised a raw TypeError deep in the scan."""
    memory = store.memory(("ns",), embedder=None)
    memory.put("m1", 1, text="one")
    for after in (5, b"k", ["k"], 1.5, object()):
        with pytest.raises(InvalidInputError, match="after="):
            memory.items(after=after)
    assert [i.key for i in memory.items(after=None)] == ["m1"]


def test_a_run_is_failed_with_a_str(store: statekeel.Store) -> None:
    """Before: any value was stored as the run's error (RunInfo.error is a str)."""
    run = store.run("r1")
    run.step("one", lambda: 1)
    before = dump(store.backend)
    for error in (None, b"boom", {"code": 1}, 7, ValueError("boom")):
        with pytest.raises(InvalidInputError, match="error must be a str"):
            run.fail(error)
    assert dump(store.backend) == before
    run.fail("boom")
    assert store.run("r1").info().error == "boom"


def test_a_new_run_failed_with_an_unstorable_error_is_not_listed(store: statekeel.Store) -> None:
    """Before: the run's index record was written before its status failed to encode."""
    for error in ("\ud800", "a\ud800b"):
        with pytest.raises(SerializationError):
            store.run("fresh").fail(error)
    assert dump(store.backend) == {}
    assert list(store.runs()) == []


def test_stepfn_refuses_an_empty_name_as_step_does(store: statekeel.Store) -> None:
    """Before: ``stepfn(name='')`` silently used the function's own name."""
    run = store.run("r1")
    with pytest.raises(InvalidInputError):
        run.step("", lambda: 1)
    with pytest.raises(InvalidInputError):
        run.stepfn(name="")
    assert run.stepfn(name="named")(lambda: 2)() == 2


@pytest.mark.parametrize("path", ["nul%00in.db", "nul\x00in.db", "lone\ud800.db"])
@pytest.mark.parametrize("scheme", ["sqlite", "file"])
def test_a_path_no_file_system_can_name_is_a_configuration_error(tmp_path: Path, scheme: str, path: str) -> None:
    """Before: a raw ValueError (embedded null byte) or UnicodeEncodeError escaped statekeel.open()."""
    slashes = "////" if scheme == "sqlite" else "///"
    url = f"{scheme}:{slashes}{str(tmp_path).lstrip('/')}/{path}"
    with pytest.raises(ConfigurationError, match="NUL|surrogate"):
        statekeel.open(url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["memory://?durabilty=full", "memory://named?x=1"])
def test_memory_urls_refuse_options_instead_of_ignoring_them(url: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        statekeel.open(url)


def test_export_and_restore_refuse_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    """Before: a raw UnicodeEncodeError (quoting the name for a URL) escaped ``statekeel export`` and
    ``statekeel restore`` given a name from bytes that are not UTF-8 (Python surrogate-escapes them)."""
    from statekeel.portability import export_store
    from statekeel.portability.backup import backup_sqlite, restore_sqlite

    url = f"sqlite:///{tmp_path}/s.db"
    with statekeel.open(url) as store:
        store.app.put("k", 1)
    backup = tmp_path / "b\udcff.db"  # the name the shell's bytes b"b\xff.db" become
    backup_sqlite(url, backup)
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        restore_sqlite(backup, f"sqlite:///{tmp_path}/restored.db")
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        export_store(url, str(tmp_path / "out\udcff"))
    assert not (tmp_path / "restored.db").exists() and not (tmp_path / "out\udcff").exists()
