"""Hypothesis stateful tests: a model of sessions against the real store, with crashes and reopens.

The model holds, per session, the appended messages, the state (value and version of each key),
the checkpoint labels and the decisions with their status. Rules append (with and without
state), put and delete state with and without ``expect=`` (a wrong ``expect`` must raise
``ConflictError`` and change nothing), take checkpoints and restore them, and make decisions
whose block succeeds or fails. Two rules crash the store:

* ``reopen`` — a new handle is opened on the store and checked against the model *before* the
  old one is closed: nothing depends on a clean shutdown (every backend);
* ``crash_image`` — the files of an embedded store (SQLite with its WAL, or the files backend's
  folder) are copied while the store is open, as a power cut would leave them, and the copy is
  opened and used from then on (SQLite and files).

After every step the store must match the model exactly. The short mode (CI, every ``pytest`` run)
runs ``SHORT_EXAMPLES`` per backend, every rule on every backend; the long mode
(``STATEKEEL_RELIABILITY=long``, by hand: ``python scripts/reliability.py --long``) runs 10,000.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import statekeel
from statekeel import ANY, ConflictError
from statekeel.testing import ServerPool

from .conftest import Reporter, scale

SHORT_EXAMPLES = {"memory": 150, "sqlite": 60, "files": 40, "postgres": 25, "redis": 60}
"""Examples per backend in the short mode (≲ 1 minute for the file on an idle machine; half what it ran
until session 32, when it was 13 % of CI's test time); the long mode runs 10,000 each."""
STEPS = scale(20, 40)
EMBEDDED = ("sqlite", "files")

SIDS = st.sampled_from(["s1", "s2"])
KEYS = st.sampled_from(["plan", "cart", "note"])
VALUES = st.one_of(
    st.integers(-(2**53), 2**53),
    st.text(max_size=20),
    st.lists(st.integers(0, 9), max_size=4),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 9), max_size=3),
)
MESSAGES = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=30)})
EXPECT = st.sampled_from(["any", "current", "wrong", "absent"])

_examples = itertools.count()


class Boom(Exception):
    """The failure inside a decision block."""


@dataclass
class SessionModel:
    """What one session must hold."""

    messages: list[Any] = field(default_factory=list)
    state: dict[str, tuple[Any, int]] = field(default_factory=dict)
    """key -> (value, version)."""
    checkpoints: list[str] = field(default_factory=list)
    snapshots: dict[str, tuple[dict[str, Any], list[Any]]] = field(default_factory=dict)
    """checkpoint label -> (state values, visible messages) when it was taken."""
    decisions: dict[str, str] = field(default_factory=dict)
    """decision id -> status."""


@dataclass
class Counts:
    """What the machines of one test did (for the report)."""

    examples: int = 0
    steps: int = 0
    reopens: int = 0
    images: int = 0
    conflicts: int = 0


def _expect(mode: str, current: int | None) -> Any:
    """The ``expect=`` for ``mode`` given the version the model holds."""
    if mode == "any":
        return ANY
    if mode == "absent":
        return None
    if mode == "current":
        return current
    return (current or 0) + 7  # a version the record does not have


def _restored_version(current: tuple[Any, int] | None, value: Any) -> int:
    """A restore rewrites only the keys whose value differs: +1, or 1 for a key it recreates."""
    if current is None:
        return 1
    same = type(current[0]) is type(value) and current[0] == value
    return current[1] if same else current[1] + 1


def _matches(expect: Any, current: int | None) -> bool:
    return expect is ANY or expect == current


class SessionsMachine(RuleBasedStateMachine):
    """The model against a real store; subclassed per backend by :func:`machine_for`."""

    backend = "memory"
    new_url: Callable[[int], str] = staticmethod(lambda n: f"memory://stateful-{n}")
    counts = Counts()
    workdir = Path(".")

    def __init__(self) -> None:
        super().__init__()
        self.n = next(_examples)
        self.url = self.new_url(self.n)
        self.store = statekeel.open(self.url)
        self.model: dict[str, SessionModel] = {"s1": SessionModel(), "s2": SessionModel()}
        self.counts.examples += 1

    def teardown(self) -> None:
        self.store.close()

    # -- writes ---------------------------------------------------------------------
    @rule(sid=SIDS, messages=st.lists(MESSAGES, min_size=1, max_size=3),
          state=st.dictionaries(KEYS, VALUES, max_size=2))  # fmt: skip
    def append(self, sid: str, messages: list[Any], state: dict[str, Any]) -> None:
        self.store.session(sid).append(*messages, state=state or None)
        m = self.model[sid]
        m.messages += messages
        for key, value in state.items():
            m.state[key] = (value, m.state.get(key, (None, 0))[1] + 1)
        self._step()

    @rule(sid=SIDS, key=KEYS, value=VALUES, mode=EXPECT)
    def put(self, sid: str, key: str, value: Any, mode: str) -> None:
        m = self.model[sid]
        current = m.state[key][1] if key in m.state else None
        expect = _expect(mode, current)
        try:
            item = self.store.session(sid).state.put(key, value, expect=expect)
        except ConflictError:
            assert not _matches(expect, current), f"put {key!r} expect={expect!r} conflicted at version {current}"
            self.counts.conflicts += 1
        else:
            assert _matches(expect, current), f"put {key!r} expect={expect!r} succeeded at version {current}"
            m.state[key] = (value, (current or 0) + 1)
            assert item.version == m.state[key][1]
        self._step()

    @rule(sid=SIDS, key=KEYS, mode=st.sampled_from(["any", "current", "wrong"]))
    def delete(self, sid: str, key: str, mode: str) -> None:
        m = self.model[sid]
        current = m.state[key][1] if key in m.state else None
        expect = _expect(mode, current)
        try:
            existed = self.store.session(sid).state.delete(key, expect=expect)
        except ConflictError:
            assert not _matches(expect, current), f"delete {key!r} expect={expect!r} conflicted at {current}"
            self.counts.conflicts += 1
        else:
            assert _matches(expect, current), f"delete {key!r} expect={expect!r} succeeded at {current}"
            assert existed == (current is not None)
            m.state.pop(key, None)
        self._step()

    @rule(sid=SIDS)
    def checkpoint(self, sid: str) -> None:
        m = self.model[sid]
        label = f"cp{len(m.checkpoints)}"
        self.store.session(sid).checkpoint(label)
        m.checkpoints.append(label)
        m.snapshots[label] = ({k: v for k, (v, _) in m.state.items()}, list(m.messages))
        self._step()

    @precondition(lambda self: any(m.checkpoints for m in self.model.values()))
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        """State back to the checkpoint's (changed keys get a new version); later history hidden."""
        sid = data.draw(st.sampled_from([k for k, m in self.model.items() if m.checkpoints]))
        m = self.model[sid]
        label = data.draw(st.sampled_from(m.checkpoints))
        self.store.session(sid).restore(label)
        target, messages = m.snapshots[label]
        m.state = {k: (v, _restored_version(m.state.get(k), v)) for k, v in target.items()}
        m.messages = list(messages)
        self._step()

    @rule(sid=SIDS, fails=st.booleans(), outcome=VALUES)
    def decide(self, sid: str, fails: bool, outcome: Any) -> None:
        d = self.store.session(sid).decide("refund order", rationale="late", action={"refund": 1})
        try:
            with d:
                d.outcome(outcome)
                if fails:
                    raise Boom("the action failed")
        except Boom:
            pass
        self.model[sid].decisions[d.id] = "failed" if fails else "done"
        self._step()

    # -- crashes ----------------------------------------------------------------------
    @rule()
    def reopen(self) -> None:
        """A new handle must see everything before the old one is closed (no clean shutdown needed)."""
        fresh = statekeel.open(self.url)
        old, self.store = self.store, fresh
        try:
            self.matches_model()
        finally:
            old.close()
        self.counts.reopens += 1
        self._step()

    @precondition(lambda self: self.backend in EMBEDDED)
    @rule()
    def crash_image(self) -> None:
        """Copy the store's files while it is open — what a power cut leaves — and go on with the copy."""
        image_url = crash_image(self.backend, self.url, self.workdir / f"image{self.n}-{self.counts.images}")
        old, self.store = self.store, statekeel.open(image_url)
        old.close()
        self.url = image_url
        self.counts.images += 1
        self._step()

    # -- the check --------------------------------------------------------------------
    @invariant()
    def matches_model(self) -> None:
        for sid, m in self.model.items():
            s = self.store.session(sid)
            assert s.history() == m.messages, f"history of {sid}"
            stored = {i.key: (i.value, i.version) for i in s.state.items(limit=100)}
            assert stored == m.state, f"state of {sid}"
            assert [cp.label for cp in s.checkpoints()] == m.checkpoints, f"checkpoints of {sid}"
            decided = {d.id: d.status for d in self.store.decisions(session=sid, limit=200)}
            assert decided == m.decisions, f"decisions of {sid}"

    def _step(self) -> None:
        self.counts.steps += 1


def crash_image(backend: str, url: str, target: Path) -> str:
    """Copy the files of an open embedded store to ``target``; the URL of the copy."""
    target.mkdir(parents=True)
    if backend == "sqlite":
        path = Path(url.removeprefix("sqlite:///").partition("?")[0])
        for suffix in ("", "-wal"):  # the -shm index is rebuilt from the WAL on open
            if Path(f"{path}{suffix}").exists():
                shutil.copyfile(f"{path}{suffix}", target / f"store.db{suffix}")
        return f"sqlite:///{target}/store.db"
    folder = Path(url.removeprefix("file://"))
    shutil.copytree(folder, target / "files-store")
    return f"file://{target}/files-store"


def _url_factory(backend: str, tmp_path: Path, servers: ServerPool) -> Callable[[int], str]:
    try:
        if backend == "postgres":
            base = servers.postgres().url
            return lambda n: f"{base}?schema=sk_stateful_{n}"
        if backend == "redis":
            base = servers.redis().url
            return lambda n: f"{base}?prefix=stateful{n}"
    except ServerPool.Missing as exc:
        pytest.skip(str(exc))
    if backend == "sqlite":
        return lambda n: f"sqlite:///{tmp_path}/ex{n}/store.db"
    if backend == "files":
        return lambda n: f"file://{tmp_path}/ex{n}/files-store"
    return lambda n: f"memory://stateful-{time.time_ns()}-{n}"


def test_sessions_survive_crashes(
    backend_name: str, tmp_path: Path, statekeel_servers: ServerPool, reliability_report: Reporter
) -> None:
    counts = Counts()
    machine = type(f"Sessions_{backend_name}", (SessionsMachine,), {
        "backend": backend_name, "new_url": staticmethod(_url_factory(backend_name, tmp_path, statekeel_servers)),
        "counts": counts, "workdir": tmp_path,
    })  # fmt: skip
    t0 = time.perf_counter()
    found: list[str] = []
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=scale(SHORT_EXAMPLES.get(backend_name, 15), 10_000), stateful_step_count=STEPS,
            deadline=None, database=None, suppress_health_check=list(HealthCheck),
        ))  # fmt: skip
    except Exception as exc:
        found.append(f"{type(exc).__name__}: {str(exc)[:500]}")
        raise
    finally:
        reliability_report("stateful", backend_name, examples=counts.examples, steps=counts.steps,
                           reopens=counts.reopens, crash_images=counts.images, conflicts=counts.conflicts,
                           seconds=round(time.perf_counter() - t0, 2), found=found)  # fmt: skip
