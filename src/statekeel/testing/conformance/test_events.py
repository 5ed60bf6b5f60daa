"""The event store: typed appends, reads by range/time/type, projections with snapshots, consumers."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import time
from typing import Any

import pytest

import statekeel
from statekeel import Event, InvalidInputError, SerializationError, Store
from statekeel.protocol import Append, keys


statekeel.register_upcaster("conf_evt_renamed", 1, lambda d: {"full_name": d["name"]})


def _empty() -> dict[str, Any]:
    return {}


def _count(state: dict[str, Any], event: Event) -> dict[str, Any]:
    state[event.type] = state.get(event.type, 0) + 1
    return state


def _tasks(state: dict[str, Any], event: Event) -> dict[str, Any]:
    if event.type == "task_created":
        state[event.data["task_id"]] = "open"
    elif event.type == "task_done":
        state[event.data["task_id"]] = "done"
    return state


def test_event_append_and_read(store: Store) -> None:
    orders = store.events("orders")
    e = orders.append("task_created", {"task_id": "T1"}, agent="planner")
    assert (e.seq, e.type, e.data, e.agent, e.stream) == (1, "task_created", {"task_id": "T1"}, "planner", "orders")
    assert e.time.tzinfo is not None
    more = orders.append_many([("task_created", {"task_id": "T2"}), ("task_done", {"task_id": "T1"})])
    assert [x.seq for x in more] == [2, 3] and more[1].agent is None
    assert orders.last_seq == 3 and len(orders) == 3
    assert orders.get(2) == more[0] and orders.get(9) is None
    assert [e, *more] == orders.read()  # what append returns is what a read gives, time included
    assert [x.seq for x in orders.read()] == [1, 2, 3]
    assert [x.seq for x in orders.read(2)] == [2, 3]
    assert [x.seq for x in orders.read(1, 3)] == [1, 2]
    assert [x.seq for x in orders.read(limit=2)] == [1, 2]
    assert [x.seq for x in orders.read(last=2)] == [2, 3]
    assert store.events("orders").read() == orders.read()  # another handle, same events
    assert store.events("other").read() == [] and store.events("other").last_seq == 0


def test_event_read_by_type(store: Store) -> None:
    s = store.events("typed")
    s.append_many([("a", i) if i % 3 else ("b", i) for i in range(1, 301)])
    bs = s.read(type="b")
    assert [e.data for e in bs] == list(range(3, 301, 3))
    assert [e.data for e in s.read(type=["a", "b"], limit=4)] == [1, 2, 3, 4]
    assert [e.data for e in s.read(type="b", last=2)] == [297, 300]
    assert [e.data for e in s.read(50, 60, type="b")] == [51, 54, 57]
    assert s.read(type="nope") == []


def test_event_read_by_time(store: Store) -> None:
    s = store.events("clock")
    s.append("early", 1)
    time.sleep(0.02)
    middle = s.append_many([("mid", 2), ("mid", 3)])
    time.sleep(0.02)
    late = s.append("late", 4)
    assert [e.data for e in s.read(since=middle[0].time)] == [2, 3, 4]
    assert [e.data for e in s.read(until=late.time)] == [1, 2, 3]
    assert [e.data for e in s.read(since=middle[0].time, until=late.time)] == [2, 3]
    assert s.seq_at(late.time) == 4 and s.seq_at(late.time + dt.timedelta(seconds=1)) == 5
    assert s.seq_at(middle[0].time.timestamp()) == 2
    with pytest.raises(InvalidInputError, match="timezone"):
        s.read(since=dt.datetime(2026, 1, 1))


def test_event_projection_replays_only_after_the_snapshot(store: Store) -> None:
    s = store.events("proj")
    s.append_many([("task_created", {"task_id": f"T{i}"}) for i in range(250)])
    s.append_many([("task_done", {"task_id": f"T{i}"}) for i in range(0, 250, 2)])
    initial: dict[str, Any] = {}
    first = s.projection(_tasks, initial, snapshot_every=100)
    assert initial == {}  # never mutated
    assert (first.seq, first.snapshot_seq, first.replayed) == (375, 0, 375)
    assert sum(v == "done" for v in first.state.values()) == 125 and len(first.state) == 250
    s.append("task_done", {"task_id": "T1"})
    again = s.projection(_tasks, _empty(), snapshot_every=100)
    assert (again.snapshot_seq, again.replayed) == (300, 76)  # from the newest snapshot only
    assert again.state == {**first.state, "T1": "done"}
    assert store.events("proj").project(_tasks, _empty(), snapshot_every=100) == again.state  # another handle
    fresh = s.projection(_tasks, _empty(), snapshot_every=100, version=2)  # new fn version: old snapshots ignored
    assert fresh.snapshot_seq == 0 and fresh.state == again.state
    anonymous = s.projection(lambda st, e: st + 1, 0, snapshot_every=100)  # no name: no snapshots
    assert (anonymous.state, anonymous.snapshot_seq) == (376, 0)
    assert s.projection(lambda st, e: st - 1, 0, snapshot_every=100).state == -376


def test_event_projection_as_of_seq_and_time(store: Store) -> None:
    s = store.events("asof")
    for i in range(30):
        s.append("tick" if i % 2 else "tock", i)
    full = s.projection(_count, _empty(), snapshot_every=10, name="counts")
    assert full.state == {"tock": 15, "tick": 15}
    at_15 = s.projection(_count, _empty(), snapshot_every=10, name="counts", as_of=15)
    assert at_15.state == {"tock": 8, "tick": 7} and at_15.seq == 15 and at_15.snapshot_seq == 10
    assert s.project(_count, _empty(), name="counts", as_of=0) == {}
    time.sleep(0.02)
    cut = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.02)
    s.append("tick", 99)
    assert s.project(_count, _empty(), name="counts", at=cut) == {"tock": 15, "tick": 15}
    assert s.project(_count, _empty(), name="counts") == {"tock": 15, "tick": 16}
    tenth = s.get(10)
    assert tenth is not None and s.projection(_count, _empty(), name="counts", at=tenth.time).seq >= 10
    with pytest.raises(InvalidInputError):
        s.project(_count, _empty(), as_of=3, at=cut)


def test_event_projection_keeps_only_the_newest_snapshots(store: Store) -> None:
    s = store.events("keep")
    s.append_many([("x", i) for i in range(100)])
    s.project(_count, _empty(), snapshot_every=10, keep_snapshots=2, name="k")
    prefix = keys.join("events", "keep", "snap", "k", "v1") + "/"
    stored = store.backend.scan(prefix)
    assert len(stored) == 2
    bodies = [store.codec.decode(r.data, r.codec, r.key)["seq"] for r in stored]
    assert bodies == [100, 90]
    with pytest.raises(InvalidInputError):
        s.project(_count, _empty(), snapshot_every=0)


def test_event_consumers_track_their_own_positions(store: Store, open_store: Any) -> None:
    s = store.events("work")
    s.append_many([("job", i) for i in range(1, 8)])
    billing, audit = s.consumer("billing"), s.consumer("audit")
    assert [e.data for e in billing.poll(3)] == [1, 2, 3]
    assert [e.data for e in billing.poll(3)] == [4, 5, 6]  # polled, not yet acknowledged
    assert billing.position == 0 and billing.lag == 7
    assert billing.ack(3) == 3 and billing.position == 3
    assert [e.data for e in audit.poll(100)] == list(range(1, 8))
    audit.ack()
    assert audit.position == 7 and audit.lag == 0 and audit.poll() == []
    again = open_store().events("work").consumer("billing")  # a restart: resumes at the ack
    assert [e.data for e in again.poll(10)] == [4, 5, 6, 7]
    assert billing.ack(2) == 3  # never moves back
    assert again.seek(1) == 1 and [e.data for e in again.poll(2)] == [2, 3]
    s.append("job", 8)
    assert [e.data for e in audit.poll()] == [8]
    with pytest.raises(InvalidInputError):
        billing.poll(0)
    with pytest.raises(InvalidInputError):
        s.consumer("")


def test_event_bad_input_writes_nothing(store: Store) -> None:
    s = store.events("bad")
    with pytest.raises(InvalidInputError):
        s.append("", {})
    with pytest.raises(InvalidInputError):
        s.append("t", {}, agent=7)  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="data"):
        s.append_many([("ok", 1), ("bad", object())])
    with pytest.raises(InvalidInputError):
        s.append_many([])
    assert s.last_seq == 0
    with pytest.raises(InvalidInputError):
        store.events("")


def test_event_streams_are_isolated_by_name(store: Store) -> None:
    names = ["a", "a/b", "a%2Fb", "{x}", "a b"]
    for n in names:
        store.events(n).append("only", n)
    for n in names:
        assert [e.data for e in store.events(n).read()] == [n]


def test_event_old_payloads_are_upcast_on_read(store: Store) -> None:
    s = store.events("legacy")
    log = keys.join("events", "legacy", "log")
    old = store.codec.encode({"t": "conf_evt_renamed", "d": {"name": "ada"}}, "old event", log)
    store.backend.apply([Append(log, (old,))])  # written before the type had a schema version
    new = s.append("conf_evt_renamed", {"full_name": "grace"})
    assert [e.data for e in s.read()] == [{"full_name": "ada"}, {"full_name": "grace"}]
    assert new.data == {"full_name": "grace"}


def _appender(url: str, worker: int, n: int) -> None:
    with statekeel.open(url) as store:
        s = store.events("shared")
        for i in range(n):
            s.append("step", {"worker": worker, "i": i, "pad": "x" * 200}, agent=f"w{worker}")


def _consume(url: str, name: str) -> int:
    with statekeel.open(url) as store:
        c = store.events("shared").consumer(name)
        events = c.poll(50)
        c.ack()
        return events[-1].seq


@pytest.mark.multiprocess
def test_event_appends_from_many_processes_never_gap_or_interleave(store_url: str) -> None:
    statekeel.open(store_url).close()
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.starmap(_appender, [(store_url, w, 100) for w in range(4)])
        positions = pool.starmap(_consume, [(store_url, "c1"), (store_url, "c2")])
    assert positions == [50, 50]
    with statekeel.open(store_url) as store:
        s = store.events("shared")
        events = s.read()
        assert [e.seq for e in events] == list(range(1, 401))
        for w in range(4):
            mine = [e for e in events if e.data["worker"] == w]
            assert [e.data["i"] for e in mine] == list(range(100))
            assert all(e.agent == f"w{w}" and e.data["pad"] == "x" * 200 for e in mine)
        assert s.consumer("c1").position == 50 and [e.seq for e in s.consumer("c2").poll(1)] == [51]
