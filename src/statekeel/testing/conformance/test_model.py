"""A hypothesis state machine drives a store and a plain-Python model side by side."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import statekeel
from statekeel import ConflictError

from .. import BACKENDS, BackendContext, ServerPool

KEYS = st.sampled_from(["a", "b", "c", "a/b", "%", "日"])
SESSIONS = st.sampled_from(["s1", "s2"])
VALUES = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))


def make_machine(url_factory: Any) -> type[RuleBasedStateMachine]:
    class StoreVsModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store = statekeel.open(url_factory())
            self.kv: dict[str, tuple[Any, int]] = {}
            self.logs: dict[str, list[Any]] = {"s1": [], "s2": []}

        @rule(key=KEYS, value=VALUES)
        def put(self, key: str, value: Any) -> None:
            item = self.store.app.put(key, value)
            self.kv[key] = (value, self.kv.get(key, (None, 0))[1] + 1)
            assert item.version == self.kv[key][1]

        @rule(key=KEYS, value=VALUES, stale=st.booleans())
        def compare_and_set(self, key: str, value: Any, stale: bool) -> None:
            current = self.kv.get(key, (None, 0))[1]
            expect = (current - 1 if current else 5) if stale else (current or None)
            try:
                self.store.app.put(key, value, expect=expect)
            except ConflictError:
                assert stale
                return
            assert not stale
            self.kv[key] = (value, current + 1)

        @rule(key=KEYS)
        def delete(self, key: str) -> None:
            assert self.store.app.delete(key) == (key in self.kv)
            self.kv.pop(key, None)

        @rule(key=KEYS)
        def increment(self, key: str) -> None:
            old, version = self.kv.get(key, (0, 0))
            if not isinstance(old, int):
                return
            self.store.app.update(key, lambda v: v + 1, default=0)
            self.kv[key] = (old + 1, version + 1)

        @rule(session=SESSIONS, values=st.lists(VALUES, min_size=1, max_size=3))
        def append(self, session: str, values: list[Any]) -> None:
            first = self.store.session(session).append(*values)
            assert first == len(self.logs[session]) + 1
            self.logs[session].extend(values)

        @rule(session=SESSIONS, last=st.integers(min_value=0, max_value=6))
        def history_tail(self, session: str, last: int) -> None:
            want = self.logs[session][-last:] if last else []
            assert self.store.session(session).history(last=last) == want

        @invariant()
        def same_contents(self) -> None:
            assert self.store.app.to_dict() == {k: v for k, (v, _) in self.kv.items()}

        def teardown(self) -> None:
            self.store.close()

    return StoreVsModel


def test_store_matches_model(backend_name: str, tmp_path: Any, statekeel_servers: ServerPool) -> None:
    counter = iter(range(10**6))

    def fresh_url() -> str:
        n = next(counter)
        sub = tmp_path / f"run{n}"
        sub.mkdir()
        return BACKENDS[backend_name](BackendContext(sub, statekeel_servers, 10_000 + n))

    machine = make_machine(fresh_url)
    run_state_machine_as_test(machine, settings=settings(max_examples=15, stateful_step_count=25, deadline=None))
