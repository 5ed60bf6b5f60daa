"""Batches larger than one DynamoDB transaction commit atomically through an intent (a commit marker).

TransactWriteItems holds at most 100 items; ``backends/dynamodb/intents.py`` tags every item of a
larger batch, then commits one intent item. These tests, on moto's server:

* the features that write one item per record of a session — ``delete()``, ``clear()``, the
  renewal of a session opened with ``ttl=``, ``restore()`` of a checkpoint that changes hundreds of
  keys, a batch of hundreds of state keys — work on sessions past the limit (they were refused);
* a writer that dies after tagging but before the commit leaves nothing visible: readers see the
  old values, a writer that meets a tag waits for the intent's deadline, then aborts it, and
  ``purge_expired`` untags the rest and gives DynamoDB back each record's ``ttl``;
* a writer that dies after the commit leaves the batch whole: every read path (get, get_many,
  scan, log_info, scan_logs) returns the new values, a later writer finishes the items it meets
  and ``purge_expired`` the rest, leaving no tag and no intent behind;
* a writer that meets an intent still in progress waits for it, then writes on its result (both
  the planned path and the one-request compare-and-set path).

Most tests lower the backend's transaction limit to 10 and use sessions of a dozen records (moto
answers each item of a transaction in Python): the same protocol, the same code paths. One test runs past the real
limit of 100.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import statekeel
from dynamodb_server import raw, server, table_name, url  # noqa: F401 - fixtures
from statekeel.backends.dynamodb import DynamoDBBackend
from statekeel.backends.dynamodb import intents as intents_module
from statekeel.backends.dynamodb.backend import _current
from statekeel.backends.dynamodb.tags import intent_key, tag_write, write_key
from statekeel.protocol import Append, Expire, Op, Put

_N = 12
_LIMIT = 10


@pytest.fixture
def store(url: str) -> Iterator[statekeel.Store]:  # noqa: F811
    """A store whose DynamoDB transactions hold at most 10 items (see the module docstring)."""
    with statekeel.open(url) as st:
        assert isinstance(st.storage, DynamoDBBackend)
        st.storage.limit = _LIMIT
        yield st


@pytest.fixture
def seeded(store: statekeel.Store) -> DynamoDBBackend:
    """The store's backend (limit 10), holding :func:`_seed`'s records and log."""
    b = store.storage
    assert isinstance(b, DynamoDBBackend)
    _seed(b)
    return b


def _items(raw: Any, url: str) -> list[dict[str, Any]]:  # noqa: F811
    return list(raw.scan(TableName=table_name(url), ConsistentRead=True)["Items"])


def _leftovers(raw: Any, url: str) -> tuple[int, int]:  # noqa: F811
    """(tagged items, intent items) in the table."""
    items = _items(raw, url)
    return sum("xt" in i for i in items), sum(i["pk"]["S"] == "#tx" for i in items)


def _stage(b: DynamoDBBackend, ops: list[Op], *, commit: bool) -> str:
    """What a writer that dies does: plan a large batch, begin its intent, tag every item, and
    (``commit``) commit it — and stop there."""
    now = time.time()
    snap = b._snapshot(ops, now)
    planned = b._plan(ops, snap, now)
    assert len(planned.core) > b.limit
    intent = b._intents.begin([write_key(w) for w in planned.core])
    assert b._intents.tag(intent, [tag_write(w, intent, _current(w, snap)) for w in planned.core])
    if commit:
        assert b._intents.commit(intent)
    return intent


def _seed(b: DynamoDBBackend) -> None:
    b.apply([Put(f"s/x/{i:03d}", b"1", "json") for i in range(_N)] + [Append("s/x/log", ((b"1", "json"),))])


# -- what was refused now works ----------------------------------------------------------------
def test_a_session_past_the_limit_is_written_cleared_restored_and_deleted(store: statekeel.Store, raw: Any,
                                                                          url: str) -> None:  # noqa: F811
    s = store.session("big")
    s.append({"role": "user", "content": "hi"}, state={f"k{i}": i for i in range(_N)})  # one batch, 14 items
    assert s.state.to_dict() == {f"k{i}": i for i in range(_N)}
    cp = s.checkpoint("before")
    s.append({"role": "user", "content": "again"}, state={f"k{i}": -i for i in range(_N)})
    s.restore(cp)  # changes every key at once
    assert s.state.to_dict() == {f"k{i}": i for i in range(_N)}
    s.clear()
    assert s.messages() == [] and s.state.to_dict() == {}
    s.append({"role": "user", "content": "after"}, state={f"j{i}": i for i in range(_N)})
    s.delete()
    assert "big" not in [info.id for info in store.sessions()]
    assert store.storage.scan("session/big/", limit=1000) == [] and store.storage.scan_logs("session/big/") == []
    assert _leftovers(raw, url) == (0, 0)


def test_a_session_with_a_ttl_renews_every_record_past_the_limit(store: statekeel.Store) -> None:
    s = store.session("short", ttl=20)
    s.append({"role": "user", "content": "hi"}, state={f"k{i}": i for i in range(_N)})
    (before,) = [r for r in store.storage.scan("session/short/", limit=1000) if r.key.endswith("/k7")]
    assert before.expires_at is not None
    time.sleep(2.1)  # a tenth of the TTL: the next write renews the whole session
    s.append({"role": "user", "content": "later"})
    after = store.storage.get(before.key)
    assert after is not None and after.expires_at is not None and after.expires_at > before.expires_at + 2
    assert after.data == before.data and after.version == before.version
    assert s.state.get(f"k{_N - 1}") == _N - 1 and len(s.messages()) == 2


def test_an_expire_past_the_real_limit_sets_every_expiry_in_one_step(url: str) -> None:  # noqa: F811
    with statekeel.open(url) as st:
        _expire_past_the_limit(st.storage)


def _expire_past_the_limit(b: Any) -> None:
    assert isinstance(b, DynamoDBBackend) and b.limit == 100
    n = 110
    b.apply([Put(f"s/x/{i:03d}", b"1", "json") for i in range(n)] + [Append("s/x/log", ((b"1", "json"),))])
    at = time.time() + 1000
    assert b.apply([Expire("s/x/", at), Put("s/x/new", b"2", "json")]) == [n + 1, b.get("s/x/new")]
    assert {r.expires_at for r in b.scan("s/x/", limit=1000) if r.key != "s/x/new"} == {at}
    assert b.log_info("s/x/log").expires_at == at  # type: ignore[union-attr]
    b.apply([Expire("s/x/", time.time() - 1)])
    assert b.scan("s/x/", limit=1000) == [] and b.log_info("s/x/log") is None


# -- a writer that dies ------------------------------------------------------------------------
def test_a_batch_whose_writer_died_before_the_commit_never_shows(seeded: DynamoDBBackend, raw: Any,
                                                                  url: str) -> None:  # noqa: F811
    b = seeded
    intent = _stage(b, [Expire("s/x/", time.time() - 1)], commit=False)
    assert len(b.scan("s/x/", limit=1000)) == _N and b.get("s/x/005") is not None
    assert b.log_info("s/x/log") is not None and len(b.get_many(["s/x/001", "s/x/002"])) == 2
    raw.update_item(TableName=table_name(url), Key=intent_key(intent), UpdateExpression="SET xd = :d",
                    ExpressionAttributeValues={":d": {"N": "1"}})  # its deadline passes  # fmt: skip
    assert b.apply([Put("s/x/005", b"5", "json")])[0].version == 2  # aborts the intent, then writes
    b.purge_expired()  # untags the rest
    assert _leftovers(raw, url) == (0, 0)
    assert len(b.scan("s/x/", limit=1000)) == _N and b.get("s/x/005").data == b"5"  # type: ignore[union-attr]
    ttl = [i for i in _items(raw, url) if i["sk"]["S"] == "ks/x/007"]
    assert ttl and "ttl" not in ttl[0]  # never had one: none given back
    b.apply([Expire("s/x/", time.time() + 500)])
    exp = b._table.get_item({"pk": {"S": "ps/x"}, "sk": {"S": "ks/x/009"}})
    assert exp is not None and "ttl" in exp and "xt" not in exp


def test_a_pending_intents_deadline_follows_its_writer_and_an_abort_stops_it(seeded: DynamoDBBackend) -> None:
    """The deadline is a grace period after the writer's last transaction of tags, not a fixed
    time from begin (30 s + 10 ms an item: two minutes for a crashed 10,000-item batch). Another
    writer aborting the intent past it stops the writer at its next transaction of tags."""
    b = seeded
    now = time.time()
    snap = b._snapshot([Expire("s/x/", now + 100)], now)
    planned = b._plan([Expire("s/x/", now + 100)], snap, now)
    intent = b._intents.begin([write_key(w) for w in planned.core])
    writes = [tag_write(w, intent, _current(w, snap)) for w in planned.core]
    found = b._intents.state(intent)
    assert found is not None and found[1] <= time.time() + intents_module._GRACE
    begun = found[1]
    time.sleep(0.05)
    assert b._intents.tag(intent, writes[: b.limit - 1])  # one transaction: the deadline moves on
    found = b._intents.state(intent)
    assert found is not None and found[0] == "pending" and found[1] > begun
    assert b._intents.abort(intent, own=True)  # as another writer does once the deadline passed
    assert not b._intents.tag(intent, writes[b.limit - 1 :])  # the writer stops: its batch is planned again
    b._intents.finish(intent)
    assert b.apply([Put("s/x/001", b"2", "json", expect=1)])[0].version == 2  # nothing left locked


def test_a_batch_whose_writer_died_after_the_commit_is_whole(seeded: DynamoDBBackend, raw: Any,
                                                              url: str) -> None:  # noqa: F811
    b = seeded
    at = time.time() + 900
    _stage(b, [Expire("s/x/", at), Put("s/x/000", b"0", "json")], commit=True)
    assert _leftovers(raw, url)[0] > _N  # tags left behind
    assert b.get("s/x/000").data == b"0" and b.get("s/x/000").version == 2  # type: ignore[union-attr]
    assert {r.expires_at for r in b.get_many(["s/x/003", "s/x/004"])} == {at}  # type: ignore[union-attr]
    found = b.scan("s/x/", limit=1000)
    assert {r.expires_at for r in found if r.key != "s/x/000"} == {at} and len(found) == _N
    assert b.log_info("s/x/log").expires_at == at and b.scan_logs("s/x/")[0].expires_at == at  # type: ignore[union-attr]
    assert b.apply([Put("s/x/003", b"3", "json", expect=1)])[0].version == 2  # finishes the item it meets
    assert b.apply([Append("s/x/log", ((b"2", "json"),))]) == [2]
    b.purge_expired()
    assert _leftovers(raw, url) == (0, 0)
    assert {r.expires_at for r in b.scan("s/x/", limit=1000) if r.key not in ("s/x/000", "s/x/003")} == {at}
    assert [e.data for e in b.read("s/x/log")] == [b"1", b"2"]


def test_a_writer_waits_for_a_batch_in_progress_then_writes_on_its_result(url: str) -> None:  # noqa: F811
    with statekeel.open(url) as st:
        b = st.storage
        assert isinstance(b, DynamoDBBackend)
        b.limit = _LIMIT
        _seed(b)
        ops: list[Op] = [Put(f"s/x/{i:03d}", b"9", "json") for i in range(_N)]
        now = time.time()
        snap = b._snapshot(ops, now)
        planned = b._plan(ops, snap, now)
        intent = b._intents.begin([write_key(w) for w in planned.core])
        assert b._intents.tag(intent, [tag_write(w, intent, _current(w, snap)) for w in planned.core])
        results: list[Any] = []

        def writer() -> None:
            with statekeel.open(url) as other:
                results.append(other.storage.apply([Put("s/x/001", b"7", "json", expect=2)]))  # one-request path
                results.append(other.storage.apply([Put("s/x/002", b"8", "json"), Put("s/y/1", b"1", "json")]))

        t = threading.Thread(target=writer)
        t.start()
        t.join(0.3)
        assert t.is_alive()  # waiting on the tag (its expect=2 only holds after the commit)
        assert b._intents.commit(intent)
        b._intents.finish(intent)
        t.join(30)
        assert not t.is_alive()
        assert results[0][0].version == 3 and b.get("s/x/001").data == b"7"  # type: ignore[union-attr]
        assert b.get("s/x/002").version == 3 and b.get("s/x/010").data == b"9"  # type: ignore[union-attr]


def test_a_record_too_large_to_hold_old_and_new_data_is_refused_with_nothing_written(
    seeded: DynamoDBBackend, raw: Any, url: str  # noqa: F811
) -> None:
    b = seeded
    b.apply([Put("s/x/big", b"a" * 250_000, "json")])
    ops: list[Op] = [Put(f"s/x/{i:03d}", b"2", "json") for i in range(_N)] + [Put("s/x/big", b"b" * 250_000, "json")]
    with pytest.raises(statekeel.InvalidInputError, match="400 KB"):
        b.apply(ops)
    assert {r.data for r in b.scan("s/x/", limit=1000) if r.key != "s/x/big"} == {b"1"}
    assert b.get("s/x/big").data == b"a" * 250_000  # type: ignore[union-attr]
    assert _leftovers(raw, url) == (0, 0)


def test_large_batches_and_small_writers_racing_lose_no_update(url: str, raw: Any) -> None:  # noqa: F811
    """Two writers increment counters (compare-and-set, both write paths) while a third renews the
    expiry of the whole prefix again and again through intents: every increment survives and no tag
    is left."""
    with statekeel.open(url) as st:
        b = st.storage
        assert isinstance(b, DynamoDBBackend)
        b.limit = _LIMIT
        _seed(b)
        done: list[int] = []
        errors: list[BaseException] = []

        def renew() -> None:
            with statekeel.open(url) as other:
                ob = other.storage
                assert isinstance(ob, DynamoDBBackend)
                ob.limit = _LIMIT
                for _ in range(6):
                    ob.apply([Expire("s/x/", time.time() + 600)])

        def bump(name: str, path: str) -> None:
            with statekeel.open(url) as other:
                for i in range(8):
                    key = f"s/x/{(i * 5) % _N:03d}"
                    while True:
                        cur = other.storage.get(key)
                        assert cur is not None
                        op = Put(key, str(int(cur.data) + 1).encode(), "json", expect=cur.version,
                                 expires_at=cur.expires_at)  # fmt: skip
                        batch: list[Op] = [op] if path == "fast" else [op, Put(f"s/y/{name}", b"1", "json")]
                        try:
                            other.storage.apply(batch)
                            break
                        except statekeel.ConflictError:
                            continue
                    done.append(1)

        def run(fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=a) for a in ((renew,), (bump, "a", "fast"), (bump, "b", "plan"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors and not any(t.is_alive() for t in threads)
        total = sum(int(r.data) for r in b.scan("s/x/", limit=1000))
        assert total == _N + len(done) == _N + 16
        b.purge_expired()
        assert _leftovers(raw, url) == (0, 0)


def test_a_tag_whose_intent_was_deleted_behind_statekeels_back_is_reported_not_guessed(
    seeded: DynamoDBBackend, raw: Any, url: str  # noqa: F811
) -> None:
    b = seeded
    intent = _stage(b, [Expire("s/x/", time.time() - 1)], commit=True)
    raw.delete_item(TableName=table_name(url), Key=intent_key(intent))  # damage: the commit marker is gone
    with pytest.raises(statekeel.CorruptionError, match="whether that batch committed is unknown"):
        b.get("s/x/004")
    with pytest.raises(statekeel.CorruptionError, match="whether that batch committed is unknown"):
        b.apply([Put("s/x/004", b"4", "json")])


def test_doctor_reports_a_batch_a_stopped_writer_left_and_repair_finishes_it(
    seeded: DynamoDBBackend, raw: Any, url: str  # noqa: F811
) -> None:
    from click.testing import CliRunner

    from statekeel.cli import main

    b = seeded
    intent = _stage(b, [Expire("s/x/", time.time() + 100)], commit=True)
    doctor = CliRunner().invoke(main, ["doctor", url])
    assert doctor.exit_code == 1, doctor.output
    assert f"a batch of {_N + 1} items was left committed by a writer that stopped (intent {intent})" in doctor.output
    repaired = CliRunner().invoke(main, ["doctor", "--repair", url])
    assert "finished 1 large batch(es) left by stopped writers" in repaired.output, repaired.output
    assert repaired.exit_code == 0, repaired.output
    assert _leftovers(raw, url) == (0, 0)
    assert CliRunner().invoke(main, ["doctor", url]).exit_code == 0


_CHILD = """
import sys, statekeel
from statekeel.protocol import Put
url, start = sys.argv[1], int(sys.argv[2])
with statekeel.open(url) as st:
    st.storage.limit = 10
    for i in range(start, start + 1000):
        st.storage.apply([Put(f"s/k/{j:02d}", str(i).encode(), "json") for j in range(15)])
        print(i, flush=True)
"""


def test_a_writer_killed_anywhere_in_large_batches_leaves_each_whole_or_absent(url: str, raw: Any) -> None:  # noqa: F811
    """SIGKILL a process writing batches of 15 records (past its limit of 10: every batch goes
    through an intent) at random moments: after each kill every record holds the same batch's
    value, never older than the last one acknowledged; another writer carries on (once the dead
    writer's pending intent is past its deadline, which the test moves instead of waiting 30 s)."""
    import random
    import subprocess
    import sys

    rng = random.Random(29)
    with statekeel.open(url) as st:
        b = st.storage
        assert isinstance(b, DynamoDBBackend)
        start, acked, left = 1, 0, []
        for _ in range(6):
            child = subprocess.Popen([sys.executable, "-c", _CHILD, url, str(start)], stdout=subprocess.PIPE, text=True)
            assert child.stdout is not None
            first = child.stdout.readline()  # its first batch is acknowledged (opening takes seconds under load) ...
            assert first, "the writer died before its first batch"
            time.sleep(rng.uniform(0.0, 1.0))  # ... then a batch every ~0.3 s: the kill lands anywhere
            child.kill()
            out, _ = child.communicate()
            acked = max([acked, *(int(line) for line in (first + out).split())])
            left.append(sum(i["pk"]["S"] == "#tx" and "xs" in i for i in _items(raw, url)))  # intents unfinished
            for item in _items(raw, url):  # time passes: a dead writer's pending intent is past its deadline
                if item["pk"]["S"] == "#tx" and "xd" in item:
                    raw.update_item(TableName=table_name(url), Key={"pk": item["pk"], "sk": item["sk"]},
                                    UpdateExpression="SET xd = :d", ExpressionAttributeValues={":d": {"N": "1"}})  # fmt: skip
            values = {r.data for r in b.scan("s/k/", limit=100)}
            assert len(values) <= 1, f"a batch shows half-written: {values}"
            seen = int(values.pop()) if values else 0
            assert seen >= acked and seen <= acked + 1, (seen, acked)
            start = seen + 1
        b.repair()
        assert _leftovers(raw, url) == (0, 0)
        assert len({r.data for r in b.scan("s/k/", limit=100)}) == 1
        assert any(left) and acked >= 6  # kills landed inside batches (their intents stayed), work went on
