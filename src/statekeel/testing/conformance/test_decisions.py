"""The decision write-ahead log: written before the action, closed once, never lost."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import statekeel
from statekeel import (
    DecisionClosedError,
    InvalidInputError,
    NotFoundError,
    SerializationError,
    Store,
)
from statekeel.features import decisions as decisions_module
from statekeel.features.decisions import iter_decisions
from statekeel.protocol import Append, Delete, Op, keys


class _Crash(BaseException):
    """Stands for the process dying at one exact point between two writes."""


def _crash_when(monkeypatch: pytest.MonkeyPatch, store: Store, hit: Callable[[Sequence[Op]], bool]) -> None:
    """Make the first batch matching ``hit`` die before it is applied (fault injection, real backend)."""
    real = store.backend.apply

    def apply(ops: Sequence[Op]) -> Any:
        if hit(ops):
            monkeypatch.setattr(store.backend, "apply", real)
            raise _Crash()
        return real(ops)

    monkeypatch.setattr(store.backend, "apply", apply)


def test_decision_is_durable_before_the_block_runs(store: Store, open_store: Any) -> None:
    s = store.session("support-42")
    other = open_store()
    with s.decide("refund order 991", rationale="late > 7 days", action="payments.refund(991)") as d:
        seen = other.decisions(incomplete=True)  # another handle, as recovery would be
        assert [x.id for x in seen] == [d.id]
        assert seen.items[0].status == "pending" and seen.items[0].incomplete
        d.outcome({"refund": "R-17"})
    assert list(other.decisions(incomplete=True)) == []
    done = other.decisions(session="support-42").items
    assert len(done) == 1 and done[0].status == "done" and done[0].outcome == {"refund": "R-17"}
    assert done[0].rationale == "late > 7 days" and done[0].action == "payments.refund(991)"
    assert done[0].resolved_at is not None and done[0].resolved_at >= done[0].created_at
    assert d.result == done[0]


def test_decision_default_outcome_is_done(store: Store) -> None:
    with store.session("s").decide("greet") as d:
        pass
    assert d.result is not None and (d.result.status, d.result.outcome) == ("done", "done")


def test_decision_failed_block_records_the_error_and_propagates(store: Store) -> None:
    s = store.session("s")
    with pytest.raises(ZeroDivisionError):
        with s.decide("divide", action={"tool": "calc", "args": [1, 0]}):
            1 / 0  # noqa: B018
    (d,) = store.decisions(session="s").items
    assert d.status == "failed" and d.error == "ZeroDivisionError: division by zero"
    assert d.action == {"tool": "calc", "args": [1, 0]} and d.outcome is None
    assert list(store.decisions(incomplete=True)) == []


def test_decision_resolve_later_records_who_and_when(store: Store, open_store: Any) -> None:
    s = store.session("s")
    ctx = s.decide("call the API", action="api.charge()")
    ctx.__enter__()  # the process "dies" inside the block: no __exit__
    (pending,) = store.decisions(incomplete=True).items
    resolved = open_store().resolve_decision(pending.id, {"checked": "charged once"}, by="ops@alice")
    assert (resolved.status, resolved.resolved_by, resolved.outcome) == (
        "resolved", "ops@alice", {"checked": "charged once"},
    )
    assert list(store.decisions(incomplete=True)) == []
    assert store.decisions(session="s").items == [resolved]
    with pytest.raises(DecisionClosedError, match="already closed"):
        store.resolve_decision(pending.id, "again")
    with pytest.raises(DecisionClosedError):  # the block "finishes" late: told, not recorded twice
        ctx.__exit__(None, None, None)
    assert store.decisions(session="s").items == [resolved]


def test_decision_closing_twice_is_refused(store: Store) -> None:
    with store.session("s").decide("x") as d:
        pass
    with pytest.raises(DecisionClosedError) as info:
        store.resolve_decision(d.id, "late")
    assert info.value.decision.status == "done"


def test_decision_bad_ids_and_unknown_decisions(store: Store) -> None:
    for bad in ["", "nope", "s:123", 42, None]:
        with pytest.raises(InvalidInputError, match="decision id"):
            store.resolve_decision(bad, "x")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no decision"):
        store.resolve_decision("s:0000000000000abcdef", "x")


def test_decision_bad_input_writes_nothing(store: Store) -> None:
    s = store.session("s")
    with pytest.raises(InvalidInputError):
        s.decide("")
    with pytest.raises(InvalidInputError):
        s.decide("x", rationale=3)  # type: ignore[arg-type]
    with pytest.raises(SerializationError):
        with s.decide("x", action=object()):
            pytest.fail("the block must not run when the decision cannot be stored")
    assert list(store.decisions()) == []
    with s.decide("ok") as d:
        with pytest.raises(SerializationError):
            d.outcome(object())
    assert d.result is not None and d.result.outcome == "done"


def test_decision_log_is_append_only(store: Store) -> None:
    s = store.session("s")
    with s.decide("a"):
        pass
    ctx = s.decide("b")
    ctx.__enter__()
    log = keys.join("session", "s", "decisions")
    before = [(e.seq, e.data) for e in store.backend.read(log)]
    store.resolve_decision(ctx.id, "fixed", by="ops")
    after = [(e.seq, e.data) for e in store.backend.read(log)]
    assert after[: len(before)] == before and len(after) == len(before) + 1 == 4


def test_decision_listing_pages_and_filters(store: Store) -> None:
    opened = []
    for sid in ["a", "b", "a/x"]:
        s = store.session(sid)
        for i in range(3):
            with s.decide(f"{sid}-{i}"):
                pass
        ctx = s.decide(f"{sid}-open")
        ctx.__enter__()
        opened.append(ctx.id)
    everything = list(iter_decisions(store, incomplete=False, session=None))
    assert len(everything) == 12 and len({d.id for d in everything}) == 12
    pages, after = [], None
    while True:
        page = store.decisions(limit=5, after=after)
        pages.append([d.id for d in page])
        if page.next is None:
            break
        after = page.next
    assert [len(p) for p in pages] == [5, 5, 2] and sum(pages, []) == [d.id for d in everything]
    assert [d.decision for d in store.decisions(session="a")] == ["a-0", "a-1", "a-2", "a-open"]
    assert [d.decision for d in store.decisions(session="a/x")] == ["a/x-0", "a/x-1", "a/x-2", "a/x-open"]
    assert sorted(d.id for d in store.decisions(incomplete=True)) == sorted(opened)
    assert [d.decision for d in store.decisions(incomplete=True, session="b")] == ["b-open"]
    first = store.decisions(incomplete=True, limit=2)
    rest = store.decisions(incomplete=True, after=first.next)
    assert [d.id for d in [*first, *rest]] == [d.id for d in store.decisions(incomplete=True)]
    with pytest.raises(InvalidInputError):
        store.decisions(limit=0)


def test_decision_crash_before_it_is_logged_leaves_nothing_to_recover(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store.session("s")
    _crash_when(monkeypatch, store, lambda ops: any(isinstance(op, Append) for op in ops))
    ctx = s.decide("wire money", action="bank.send(5)")
    with pytest.raises(_Crash):
        with ctx:
            pytest.fail("the block must not run before the decision is logged")
    # never acknowledged, never acted on: not listed, not resolvable; the index pointer waits
    assert list(store.decisions(incomplete=True)) == [] and list(store.decisions()) == []
    with pytest.raises(NotFoundError):
        store.resolve_decision(ctx.id, "?")
    assert len(store.backend.scan("idx/decisions/")) == 1  # may still be in flight: kept for now
    monkeypatch.setattr(decisions_module, "ORPHAN_AFTER", 0.0)
    assert list(store.decisions(incomplete=True)) == []
    assert store.backend.scan("idx/decisions/") == []  # an old orphan is cleaned up


def test_decision_crash_before_the_index_delete_does_not_reopen_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store.session("s")
    _crash_when(monkeypatch, store, lambda ops: any(isinstance(op, Delete) for op in ops))
    with pytest.raises(_Crash):
        with s.decide("send email"):
            pass
    assert list(store.decisions(incomplete=True)) == []  # its record says it is closed
    assert store.backend.scan("idx/decisions/") == []  # ... and the listing cleaned up
    (d,) = store.decisions(session="s").items
    assert d.status == "done"


def test_decisions_expire_with_their_session(store: Store) -> None:
    s = store.session("short", ttl="1h")
    with s.decide("x"):
        pass
    info = store.backend.log_info(keys.join("session", "short", "decisions"))
    assert info is not None and info.expires_at is not None


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import statekeel
    url, n = sys.argv[1], int(sys.argv[2])
    with statekeel.open(url) as store:
        s = store.session("agent-1")
        for i in range(n):
            with s.decide(f"step {i}", rationale="test", action={"i": i}) as d:
                d.outcome(i)
        with s.decide("the fatal one", action="rm -rf /tmp/x") as d:
            print(d.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.multiprocess
def test_decision_sigkill_inside_the_block_leaves_exactly_that_decision_incomplete(store_url: str) -> None:
    statekeel.open(store_url).close()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, store_url, "5"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed_id = proc.stdout.strip()
    with statekeel.open(store_url) as store:
        (pending,) = store.decisions(incomplete=True).items
        assert pending.id == killed_id and pending.decision == "the fatal one"
        assert pending.action == "rm -rf /tmp/x"
        every = store.decisions(session="agent-1").items
        assert [d.decision for d in every] == [f"step {i}" for i in range(5)] + ["the fatal one"]
        assert [d.status for d in every] == ["done"] * 5 + ["pending"]
        assert [d.outcome for d in every[:5]] == list(range(5))
        store.resolve_decision(killed_id, "checked by hand", by="recovery")
        assert list(store.decisions(incomplete=True)) == []


@pytest.mark.multiprocess
def test_decision_parent_kills_the_child_inside_the_block(store_url: str) -> None:
    statekeel.open(store_url).close()
    child = textwrap.dedent(
        """
        import sys, time
        import statekeel
        with statekeel.open(sys.argv[1]) as store:
            with store.session("worker").decide("long action") as d:
                print(d.id, flush=True)
                time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child, store_url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        decision_id = proc.stdout.readline().strip()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
    with statekeel.open(store_url) as store:
        assert [d.id for d in store.decisions(incomplete=True)] == [decision_id]


def test_decision_on_an_encrypted_store_keeps_no_plaintext(store_url: str) -> None:
    pytest.importorskip("cryptography")
    key = base64.b64encode(b"D" * 32).decode()
    with statekeel.open(store_url, encryption=statekeel.Encryption(master_key=key)) as store:
        s = store.session("enc")
        with s.decide("canary-decision", rationale="canary-why", action="canary-action") as d:
            d.outcome("canary-outcome")
        s.decide("canary-open").__enter__()
        raw = [r.data for r in store.storage.scan("session/enc/")] + [
            e.data for e in store.storage.read(keys.join("session", "enc", "decisions"))
        ] + [r.data for r in store.storage.scan("idx/decisions/")]
        assert raw and not any(b"canary" in data for data in raw)
    with statekeel.open(store_url, encryption=statekeel.Encryption(master_key=key)) as again:
        (pending,) = again.decisions(incomplete=True).items
        assert pending.decision == "canary-open"
        assert again.resolve_decision(pending.id, "canary-fixed").outcome == "canary-fixed"
        assert [d.outcome for d in again.decisions(session="enc")] == ["canary-outcome", "canary-fixed"]
