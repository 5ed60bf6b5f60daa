"""What the parent checks after each kill, one class per workload of ``_child.py``.

Each checker reads the lines a killed child printed (``absorb``), then ``check(store)``
returns the problems found in the store as the crash left it: an acknowledged write that
is missing, doubled, out of order or half there, a session nobody lists, a decision that
recovery would not see, a memoised step that ran again. ``finish`` runs once at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import statekeel
from statekeel import StatekeelError
from statekeel.cli.admin import diagnose
from statekeel.protocol import keys

from ._crash_harness import child_tag


def every(listing: Callable[..., Any], **filters: Any) -> Iterator[Any]:
    """All items of a paged listing (``store.sessions``, ``store.decisions``)."""
    after = None
    while True:
        page = listing(after=after, limit=500, **filters)
        yield from page.items
        if page.next is None:
            return
        after = page.next


def doctor_problems(url: str) -> list[str]:
    """What ``statekeel doctor URL`` would list (empty when healthy)."""
    report = diagnose(url)
    return [f"doctor: {p}" for p in report.as_dict()["problems"]]


class Checker(Protocol):
    acked: int
    """Acknowledged writes seen so far."""

    def absorb(self, lines: list[str]) -> list[str]: ...
    def check(self, store: statekeel.Store) -> list[str]: ...
    def finish(self, store: statekeel.Store) -> list[str]: ...


class Appends:
    """Batches of three messages numbered n = 0, 1, 2 …, with ``state["last"] = n``."""

    def __init__(self) -> None:
        self.acked = 0
        self.ack_times: dict[int, float] = {}
        self.verified = 0
        """Whole batches stored and checked so far."""

    def absorb(self, lines: list[str]) -> list[str]:
        for line in lines:
            if not line.startswith("ack"):
                continue
            _, n, _, at = line.split()
            self.ack_times[int(n)] = float(at)
        self.acked = len(self.ack_times)
        return []

    def stored_batches(self, store: statekeel.Store, first: int = 0) -> tuple[int, list[str]]:
        """How many whole batches are stored, in order from 0, and what is wrong (from batch ``first`` on)."""
        s = store.find_session("crash")
        messages = [] if s is None else s.messages(start=3 * first + 1)
        problems = []
        for idx in range(0, len(messages), 3):
            n = first + idx // 3
            shape = [(m.seq, m.value["n"], m.value["part"]) for m in messages[idx : idx + 3]]
            if shape != [(3 * n + p + 1, n, p) for p in range(3)]:
                problems.append(f"batch {n}: found (seq, n, part) {shape}: half written, doubled or out of order")
        stored = first + len(messages) // 3
        last = -1 if s is None else s.state.get("last", -1)
        if last != stored - 1:
            problems.append(f"state last={last} but {stored} batches are stored (not written atomically)")
        return stored, problems

    def _check_from(self, store: statekeel.Store, first: int) -> list[str]:
        stored, problems = self.stored_batches(store, first)
        lost = sorted(n for n in self.ack_times if n >= stored)
        if lost:
            problems.append(f"{len(lost)} acknowledged batches lost: {lost[:10]}")
        self.verified = stored
        return problems

    def check(self, store: statekeel.Store) -> list[str]:
        """From the last batch checked on: history is append-only, so the cost stays O(new batches)."""
        return self._check_from(store, max(self.verified - 1, 0))

    def finish(self, store: statekeel.Store) -> list[str]:
        return self._check_from(store, 0)


class Sessions:
    """Every session a child acknowledged creating is listed; no session exists unlisted (D2)."""

    def __init__(self) -> None:
        self.created: set[str] = set()
        self.acked = 0
        self.children = 0

    def absorb(self, lines: list[str]) -> list[str]:
        self.created |= {line.split()[1] for line in lines}
        self.acked = len(self.created)
        self.children += 1
        return []

    @staticmethod
    def existing(store: statekeel.Store, prefix: str = "") -> set[str]:
        """Sessions (ids starting with ``prefix``) that have a metadata record, found by scanning the backend."""
        found = set()
        after = None
        while page := store.backend.scan(f"session/{prefix}", after=after, limit=1000):
            found |= {parts[1] for r in page if (parts := keys.split(r.key))[2:] == ["meta"]}
            after = page[-1].key
        return found

    @staticmethod
    def listed(store: statekeel.Store, prefix: str, **filters: Any) -> set[str]:
        """Ids starting with ``prefix`` that ``store.sessions(**filters)`` lists (a range: listings go in id order)."""
        found, after = set(), prefix or None
        while True:
            page = store.sessions(after=after, limit=500, **filters)
            ids = [info.id for info in page.items]
            found |= {i for i in ids if i.startswith(prefix)}
            if page.next is None or (ids and not ids[-1].startswith(prefix)):
                return found
            after = page.next

    def _check(self, store: statekeel.Store, prefix: str) -> list[str]:
        created = {sid for sid in self.created if sid.startswith(prefix)}
        listed = self.listed(store, prefix)
        stale = self.listed(store, prefix, stale_after=1e-6)
        problems = [f"acknowledged session {sid!r} is not listed by store.sessions()"
                    for sid in sorted(created - listed)]  # fmt: skip
        problems += [f"session {sid!r} exists but store.sessions() does not list it"
                     for sid in sorted(self.existing(store, prefix) - listed)]  # fmt: skip
        problems += [f"session {sid!r} is missing from sessions(stale_after=1e-6)" for sid in sorted(created - stale)]
        return problems

    def check(self, store: statekeel.Store) -> list[str]:
        """The sessions of the child just killed (its ids are one range: cost O(its sessions))."""
        return self._check(store, child_tag(self.children - 1) + "-")

    def finish(self, store: statekeel.Store) -> list[str]:
        problems = self._check(store, "")
        crashed = {info.id for info in store.mark_stale_crashed(1e-6)}
        return problems + [f"mark_stale_crashed does not see session {sid!r}"
                           for sid in sorted(self.existing(store) - crashed)]  # fmt: skip


class FirstOpen:
    """Each store a child began to create opens afterwards, is healthy and keeps what was acked."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.acked = 0
        self.opened = 0
        self._pending: list[tuple[str, bool]] = []

    def absorb(self, lines: list[str]) -> list[str]:
        acked = {line.split()[1] for line in lines if line.startswith("ack")}
        started = [line.split()[1] for line in lines if line.startswith("opening")]
        self._pending = [(name, name in acked) for name in started]
        self.acked += len(acked)
        self.opened += len(started)
        return []

    def check(self, store: statekeel.Store) -> list[str]:
        return []  # there is no one store: see check_stores

    def check_stores(self) -> list[str]:
        """Open each store the last child began to create, then run doctor on it."""
        problems = []
        for name, acked in self._pending:
            url = self.template.format(i=name)
            try:
                with statekeel.open(url) as fresh:
                    if acked and fresh.app.get("opened") != name:
                        problems.append(f"store {name}: the acknowledged first write is missing")
            except StatekeelError as exc:
                problems.append(f"store {name}, killed during its first open, does not open: {exc!r}")
                continue
            problems += [f"store {name}: {p}" for p in doctor_problems(url)]
        return problems

    def finish(self, store: statekeel.Store) -> list[str]:
        return []


class Decide:
    """Acknowledged decisions are stored with their outcome; a pending one is listed for recovery."""

    def __init__(self) -> None:
        self.entered: set[str] = set()
        self.done: dict[str, int] = {}
        self.resolved: set[str] = set()
        self.acked = 0
        self.children = 0
        self._touched: set[str] = set()

    def absorb(self, lines: list[str]) -> list[str]:
        self._touched = {f"decide-{child_tag(self.children)}"}
        self.children += 1
        for line in lines:
            _, what, did, *i = line.split()
            {"entered": self.entered, "resolved": self.resolved}.get(what, set()).add(did)
            if what == "done":
                self.done[did] = int(i[0])
            self._touched.add(did.rsplit(":", 1)[0])  # the decision's session
        self.acked = len(self.entered) + len(self.done) + len(self.resolved)
        return []

    def _check(self, store: statekeel.Store, sessions: set[str] | None) -> list[str]:
        found = every(store.decisions) if sessions is None else (
            d for sid in sorted(sessions) for d in every(store.decisions, session=sid))
        stored = {d.id: d for d in found}
        listed = {d.id for d in every(store.decisions, incomplete=True)}
        pending = {i for i, d in stored.items() if d.incomplete}

        def mine(did: str) -> bool:
            return sessions is None or did.rsplit(":", 1)[0] in sessions

        problems = [f"acknowledged decision {i} is missing" for i in sorted(self.entered - stored.keys()) if mine(i)]
        for did, i in self.done.items():
            d = stored.get(did)
            if mine(did) and (d is None or (d.status, d.outcome) != ("done", {"i": i})):
                problems.append(f"decision {did}: outcome {{'i': {i}}} acknowledged, stored {d!r}")
        problems += [f"decision {i} was resolved, stored {stored[i].status}"
                     for i in self.resolved if i in stored and stored[i].status != "resolved"]  # fmt: skip
        if not pending <= listed or (sessions is None and pending != listed):
            problems.append(f"pending decisions {sorted(pending)} but decisions(incomplete=True) lists {sorted(listed)}")
        if len(listed) > 1:
            problems.append(f"{len(listed)} decisions pending after one kill: {sorted(listed)}")
        return problems

    def check(self, store: statekeel.Store) -> list[str]:
        """The sessions the child just killed wrote to: its own, and those it recovered."""
        return self._check(store, self._touched)

    def finish(self, store: statekeel.Store) -> list[str]:
        return self._check(store, None)


class _NeverRun(Exception):
    pass


def _never_run() -> Any:
    raise _NeverRun


_never_run.__step_version__ = "replay-check"  # type: ignore[attr-defined]  # another function on purpose: the stored result stands


class Runs:
    """Acknowledged steps keep their result and never execute again; completed runs stay so."""

    def __init__(self) -> None:
        self.steps: set[tuple[int, int]] = set()
        self.completed: set[int] = set()
        self.executions: Counter[tuple[int, int]] = Counter()
        self.acked = 0
        self._touched: set[int] = set()

    def absorb(self, lines: list[str]) -> list[str]:
        problems, self._touched = [], set()
        for line in lines:
            kind, *rest = line.split()
            if rest[0] == "complete":
                self.completed.add(int(rest[1]))
                continue
            step = (int(rest[0]), int(rest[1]))
            self._touched.add(step[0])
            if kind == "exec":
                self.executions[step] += 1
                if step in self.steps:
                    problems.append(f"run-{step[0]} step s{step[1]} executed again after it was acknowledged")
            else:
                self.steps.add(step)
        self.acked = len(self.steps) + len(self.completed)
        return problems

    def _check(self, store: statekeel.Store, runs: set[int]) -> list[str]:
        problems = []
        for j in sorted(runs):
            run = store.run(f"run-{j}")
            for k in sorted(k for jj, k in self.steps if jj == j):
                try:
                    result: Any = run.step(f"s{k}", _never_run)
                except _NeverRun:
                    result = "(no stored result)"
                if result != {"j": j, "k": k}:
                    problems.append(f"run-{j} step s{k}: acknowledged, stored result {result!r}")
            if j in self.completed and run.info().status != "completed":
                problems.append(f"run-{j} was acknowledged completed, stored status {run.info().status}")
        return problems

    def check(self, store: statekeel.Store) -> list[str]:
        """The runs the child just killed worked on."""
        return self._check(store, self._touched)

    def finish(self, store: statekeel.Store) -> list[str]:
        return self._check(store, {j for j, _ in self.steps} | self.completed)
