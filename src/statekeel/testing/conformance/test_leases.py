"""Fenced single-writer leases, liveness and status — on every backend, with real processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from typing import Any

import pytest

import statekeel
from statekeel import InvalidInputError, LeaseLostError, Store

from ._spawn import child_process


def _take_when_free(store: Store, sid: str, lease: str) -> Any:
    """Open ``sid`` with a lease, retrying while another holder has it (up to a minute)."""
    for _ in range(1200):
        try:
            return store.session(sid, lease=lease)
        except LeaseLostError:
            time.sleep(0.05)
    raise AssertionError(f"the lease of {sid!r} never became free")


def test_a_held_lease_is_refused_and_released_to_the_next_holder(store: Store, open_store: Any) -> None:
    a = store.session("s", lease="30s")
    assert a.lease_token == 1
    with pytest.raises(LeaseLostError, match="leased by another holder"):
        open_store().session("s", lease="30s")
    a.append("from a")
    a.release()
    with open_store().session("s", lease="30s") as b:
        assert b.lease_token == 2 and b.append("from b") == 2
    with store.session("s", lease="30s") as c:  # the with block released b's lease
        assert c.lease_token == 3
    assert store.session("s").history() == ["from a", "from b"]


def test_a_superseded_holder_is_fenced_off_every_write(store: Store, open_store: Any) -> None:
    a = store.session("s", lease="0.2s")
    a.append("a1", state={"owner": "a"})
    time.sleep(0.4)  # a goes silent past its lease
    b = _take_when_free(open_store(), "s", "30s")
    assert b.lease_token == 2
    b.append("b1")
    for write in (lambda: a.append("a2"), lambda: a.state.put("owner", "a"), lambda: a.heartbeat(),
                  lambda: a.notes.write("a", 1), lambda: a.checkpoint("a"), lambda: a.clear(),
                  lambda: a.pop(), lambda: a.trim(keep_last=0), lambda: a.delete()):
        with pytest.raises(LeaseLostError, match=r"took it over \(token 2\)") as err:
            write()
        assert err.value.token == 2
    with pytest.raises(LeaseLostError):
        with a.decide("refund 991"):
            pytest.fail("a superseded holder must not run a decision")
    assert b.history() == ["a1", "b1"] and b.state.get("owner") == "a" and b.checkpoints() == []
    assert b.append("b2") == 3  # the holder is untouched


def test_an_expired_lease_not_taken_over_still_lets_its_holder_write(store: Store) -> None:
    a = store.session("s", lease="0.1s")
    time.sleep(0.3)
    assert a.append("late but alone") == 1  # fenced by version, not by the clock


def test_the_decide_heartbeat_keeps_the_lease(store: Store, open_store: Any) -> None:
    a = store.session("s", lease="1.5s")
    other = open_store()
    with a.decide("slow refund") as d:
        time.sleep(3.0)  # twice the lease: only the heartbeat keeps it
        with pytest.raises(LeaseLostError):
            other.session("s", lease="1.5s")
        d.outcome("paid")
    assert [x.status for x in store.decisions(session="s")] == ["done"]


def test_bad_lease_durations_are_refused_before_anything_is_written(store: Store) -> None:
    for bad in (float("nan"), -1, 0, "soon", float("inf"), True):
        with pytest.raises(InvalidInputError):
            store.session("s", lease=bad)
    assert store.session_info("s") is None
    store.session("owned", user="u1")
    with pytest.raises(InvalidInputError, match="belongs to user"):
        store.session("owned", user="u2", lease="30s")
    assert store.backend.get("session/owned/lease") is None  # the refusal wrote no lease


def test_waiting_sessions_are_never_stale_and_the_next_write_reactivates(store: Store) -> None:
    s = store.session("s")
    s.append("question for the customer")
    assert s.wait().status == "waiting"
    time.sleep(0.2)
    assert list(store.sessions(stale_after="0.1s")) == [] and store.mark_stale_crashed("0.1s") == []
    again = store.session("s")
    assert again.info().status == "waiting"  # opening or reading changes nothing
    again.append("the customer's answer")
    assert again.info().status == "active"  # the next write: active again, in the same batch


def test_the_first_write_to_a_completed_session_reopens_it_and_records_it(store: Store) -> None:
    s = store.session("s")
    s.append("done")
    s.complete()
    again = store.session("s")
    assert again.resumed is not None and again.resumed.status == "completed"
    assert again.info().status == "completed" and again.history() == ["done"]
    again.state.put("followup", True)
    assert again.info().status == "active"
    meta = store.backend.get("session/s/meta")
    assert meta is not None and len(store.codec.decode(meta.data, meta.codec, meta.key)["reopened"]) == 1
    again.append("more")
    meta = store.backend.get("session/s/meta")
    assert meta is not None and len(store.codec.decode(meta.data, meta.codec, meta.key)["reopened"]) == 1


def test_a_leased_silent_session_is_not_stale(store: Store) -> None:
    store.session("idle", lease="30s")
    store.session("dead").append("x")
    time.sleep(0.2)
    assert [i.id for i in store.sessions(stale_after="0.1s")] == ["dead"]
    assert [i.id for i in store.mark_stale_crashed("0.1s")] == ["dead"]


# -- real processes ------------------------------------------------------------------------
def _contend(url: str, worker: int, rounds: int) -> int:
    """Take the lease, write a numbered run of messages (sometimes overstaying the lease), release."""
    lost = 0
    with statekeel.open(url) as store:
        for r in range(rounds):
            try:
                s = store.session("contended", lease="0.5s")
            except LeaseLostError:
                time.sleep(0.02)
                continue
            token = s.lease_token
            try:
                for i in range(4):
                    s.append({"w": worker, "t": token, "i": i})
                if r % 3 == worker % 3:
                    time.sleep(0.7)  # overstay: another process may take over meanwhile
                s.append({"w": worker, "t": token, "i": 4})
            except LeaseLostError:
                lost += 1
            finally:
                s.release()
    return lost


@pytest.mark.multiprocess
def test_processes_contending_for_one_lease_never_interleave(store_url: str) -> None:
    statekeel.open(store_url).close()
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        pool.starmap(_contend, [(store_url, w, 12) for w in range(3)])
    with statekeel.open(store_url) as store:
        history = store.session("contended").history()
    assert history, "no process ever held the lease"
    runs: list[tuple[int, int]] = []
    for m in history:
        if not runs or runs[-1] != (m["t"], m["w"]):
            runs.append((m["t"], m["w"]))
    tokens = [t for t, _ in runs]
    assert tokens == sorted(set(tokens)), f"writes of two holders interleaved: {runs}"
    for t in set(tokens):  # each holder's writes are one gap-free run from i=0
        assert [m["i"] for m in history if m["t"] == t] in ([0, 1, 2, 3], [0, 1, 2, 3, 4])


def _hold(url: str, ready: Any) -> None:
    with statekeel.open(url) as store:
        s = store.session("held", lease="1s")
        s.append({"token": s.lease_token})
        ready.set()
        time.sleep(120)


def _slow_decision(url: str, ready: Any, done: Any) -> None:
    with statekeel.open(url) as store:
        s = store.session("busy")
        s.append("refund please")
        with s.decide("refund 991") as d:
            ready.set()
            time.sleep(3.0)
            d.outcome("paid")
        done.set()


@pytest.mark.multiprocess
def test_a_sigkilled_holder_is_taken_over_after_expiry(store_url: str) -> None:
    with child_process(_hold, store_url, what="the holder") as (child, _):
        with statekeel.open(store_url) as store:
            with pytest.raises(LeaseLostError):
                store.session("held", lease="1s")
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            s = _take_when_free(store, "held", "30s")
            assert s.lease_token == 2 and s.append({"token": 2}) == 2


@pytest.mark.multiprocess
def test_a_live_decide_block_is_not_marked_crashed_from_another_process(store_url: str) -> None:
    with child_process(_slow_decision, store_url, events=2, what="the decision") as (child, (_, done)):
        with statekeel.open(store_url) as store:
            time.sleep(1.5)  # silent for longer than the threshold below
            assert store.mark_stale_crashed("1s") == []
            assert store.session_info("busy").status == "active"  # type: ignore[union-attr]
            assert [i.id for i in store.sessions(stale_after="1s")] == []
            child.join(60)
            assert done.is_set() and child.exitcode == 0
            assert [d.status for d in store.decisions(session="busy")] == ["done"]


def test_async_leases_heartbeat_while_a_decide_block_awaits(store_url: str) -> None:
    import asyncio

    async def main() -> None:
        async with statekeel.open_async(store_url) as store, statekeel.open_async(store_url) as other:
            s = await store.session("s", lease="1.5s")
            assert s.lease_token == 1
            async with s.decide("slow refund") as d:
                await asyncio.sleep(3.0)  # twice the lease: the heartbeat thread keeps it
                with pytest.raises(LeaseLostError):
                    await other.session("s", lease="1.5s")
                await d.outcome("paid")
            assert [x.outcome for x in await store.decisions(session="s")] == ["paid"]
            assert await s.append("after") == 1
            await s.release()
            taken = await other.session("s", lease="30s")
            assert taken.lease_token == 2 and await taken.pop() is not None and await taken.history() == []
            run = other.run("r", lease="30s")
            assert await run.step("a", lambda: 1) == 1 and run.lease_token == 1

    asyncio.run(main())
