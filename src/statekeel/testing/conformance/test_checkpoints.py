"""Checkpoints: snapshot, list, restore (history hidden, never lost), fork, diff, prune — on every backend."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import time
import uuid
from typing import Any

import pytest

import statekeel
from statekeel import Checkpoint, InvalidInputError, NotFoundError, Store
from statekeel.features.checkpoints import body_key, header_key


def _chain(store: Store, session_id: str, cp_id: int) -> list[int]:
    rec = store.backend.get(header_key(session_id, cp_id))
    assert rec is not None
    return list(store.codec.decode(rec.data, rec.codec, rec.key)["chain"])


def _body_size(store: Store, session_id: str, cp_id: int) -> int:
    rec = store.backend.get(body_key(session_id, cp_id))
    assert rec is not None
    return len(rec.data)


def test_checkpoint_and_list(store: Store) -> None:
    s = store.session("support-42")
    s.append({"role": "user", "content": "hi"})
    s.state.put("ticket", {"id": 991})
    first = s.checkpoint("before-tool")
    s.append({"role": "assistant", "content": "calling"}, state={"tool": "refund"})
    second = s.checkpoint()
    assert isinstance(first, Checkpoint) and (first.id, second.id) == (1, 2)
    assert first.label == "before-tool" and second.label is None
    assert (first.parent, second.parent) == (None, 1)
    assert (first.history_seq, second.history_seq) == (1, 2)
    assert first.full and not second.full and second.keys == 2 and second.stored_keys == 1
    assert first.created_at.tzinfo is not None and second.created_at >= first.created_at
    listed = s.checkpoints()
    assert [c.id for c in listed] == [1, 2] and listed[0] == first
    assert store.session("support-42").checkpoints() == listed  # another handle sees them


def test_checkpoint_restore_rolls_state_back_and_hides_later_history(store: Store) -> None:
    s = store.session("s")
    s.append("m1", "m2", state={"x": 1, "gone-later": "keep me"})
    cp = s.checkpoint("one")
    s.append("m3", "m4", state={"x": 2, "new": [1, 2]})
    s.state.delete("gone-later")
    restored = s.restore(cp)
    assert restored.id == cp.id
    assert s.state.to_dict() == {"x": 1, "gone-later": "keep me"}
    assert s.history() == ["m1", "m2"] and s.history(last=5) == ["m1", "m2"]
    assert s.history(include_hidden=True) == ["m1", "m2", "m3", "m4"]  # kept, not destroyed
    assert s.history(last=3, include_hidden=True) == ["m2", "m3", "m4"] and s.history(last=1) == ["m2"]
    assert [m.seq for m in s.messages(include_hidden=True)] == [1, 2, 3, 4]
    assert len(s) == 4 and s.hidden_ranges() == [(3, 4)]
    s.append("m5")
    assert s.history() == ["m1", "m2", "m5"]
    assert [m.seq for m in s.messages(last=2)] == [2, 5]
    again = store.session("s")  # what another process sees: nothing cached
    assert again.history() == ["m1", "m2", "m5"] and again.state.get("x") == 1


def test_checkpoint_restore_travels_forward_too(store: Store) -> None:
    s = store.session("s")
    s.append("a", state={"step": 1})
    one = s.checkpoint()
    s.append("b", "c", state={"step": 2})
    two = s.checkpoint()
    s.restore(one)
    s.append("d", state={"step": 3})
    assert s.history() == ["a", "d"]
    s.restore(two)  # the view as of checkpoint two: a, b, c
    assert s.history() == ["a", "b", "c"] and s.state.get("step") == 2
    assert s.history(include_hidden=True) == ["a", "b", "c", "d"]
    s.restore(one)
    assert s.history() == ["a"] and s.state.get("step") == 1
    three = s.checkpoint()  # its parent is the restored checkpoint, not the newest one
    assert three.parent == one.id and three.history_seq == 4


def test_checkpoint_last_n_across_hidden_ranges_reads_only_what_it_needs(store: Store) -> None:
    s = store.session("long")
    s.append(*range(1, 51))
    cp = s.checkpoint()
    s.append(*range(51, 101))
    s.restore(cp)  # hides 51..100
    s.append(*range(101, 111))
    assert s.history(last=15) == [*range(46, 51), *range(101, 111)]
    assert s.history(last=0) == []
    assert [m.seq for m in s.messages(start=48, stop=103)] == [48, 49, 50, 101, 102]
    assert len(s.history()) == 60 and s.history()[-1] == 110


def test_checkpoint_restore_by_label_and_id_and_bad_references(store: Store) -> None:
    s = store.session("s")
    s.state.put("v", "a")
    s.checkpoint("mark")
    s.state.put("v", "b")
    with pytest.raises(InvalidInputError, match="already has a checkpoint labelled 'mark'"):
        s.checkpoint("mark")  # labels are unique in a session
    assert len(s.checkpoints()) == 1  # the refusal wrote nothing
    s.checkpoint("mark", replace=True)  # moves the label to the new checkpoint
    assert [c.label for c in s.checkpoints()] == [None, "mark"]
    s.state.put("v", "c")
    assert s.restore("mark").id == 2 and s.state.get("v") == "b"
    assert s.restore(1).id == 1 and s.state.get("v") == "a"
    with pytest.raises(NotFoundError):
        s.restore(99)
    with pytest.raises(NotFoundError):
        s.restore("no-such-label")
    with pytest.raises(InvalidInputError):
        s.restore(2.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        s.checkpoint(label=7)  # type: ignore[arg-type]
    other = store.session("other")
    with pytest.raises(InvalidInputError, match="belongs to session"):
        other.restore(s.checkpoints()[0])


def test_typed_values_survive_checkpoint_and_restore(store: Store) -> None:
    s = store.session("typed")
    when = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.timezone.utc)
    value = {"when": when, "id": uuid.UUID(int=7), "raw": b"\x00\xff", "tags": {"a", "b"}, "pair": (1, 2)}
    s.state.put("v", value)
    s.state.put("$sk", {"$sk": "not a tag"})  # keys and values that look like codec tags
    s.state.put("flag", True)
    cp = s.checkpoint()
    s.state.put("v", {"when": when})
    s.state.put("flag", 1)  # equal to True in Python, but another value
    s.restore(cp)
    assert s.state.get("v") == value and s.state.get("$sk") == {"$sk": "not a tag"}
    assert s.state.get("flag") is True


def test_checkpoint_fork_copies_state_and_visible_history_up_to_the_point(store: Store) -> None:
    s = store.session("origin", user="u-7")
    s.append("a", "b", state={"k": 1})
    early = s.checkpoint()
    s.append("hidden-later")
    s.restore(early)
    s.append("c", state={"k": 2})
    cp = s.checkpoint("fork-here")
    s.append("after", state={"k": 3})
    fork = s.fork(cp, into="origin-b")
    assert fork.id == "origin-b" and fork.user == "u-7"
    assert fork.history() == ["a", "b", "c"]  # without the hidden one and without "after"
    assert [m.seq for m in fork.messages()] == [1, 2, 3]
    assert fork.messages()[0].created_at == s.messages()[0].created_at
    assert fork.state.to_dict() == {"k": 2}
    fork.append("fork-only")
    assert s.history() == ["a", "b", "c", "after"] and s.state.get("k") == 3
    with pytest.raises(InvalidInputError, match="already exists"):
        s.fork(cp, into="origin-b")


def test_checkpoint_diff_shows_keys_and_history_positions(store: Store) -> None:
    s = store.session("d")
    s.append("m1", state={"same": 1, "changes": "old", "removed": True})
    a = s.checkpoint()
    s.append("m2", "m3", state={"changes": "new", "added": [1]})
    s.state.delete("removed")
    b = s.checkpoint()
    d = s.diff(a, b)
    assert d.added == {"added": [1]} and d.removed == {"removed": True}
    assert d.changed == {"changes": ("old", "new")}
    assert (d.history_from, d.history_to) == (1, 3) and not d.unchanged
    assert s.diff(b, b).unchanged
    s.append("m4", state={"later": 1})
    now = s.diff(b)  # against the current state
    assert now.added == {"later": 1} and now.history_to == 4 and not now.changed


def test_checkpoint_storage_is_incremental_with_periodic_full_snapshots(store: Store) -> None:
    s = store.session("inc")
    for i in range(100):
        s.state.put(f"k{i:03d}", "x" * 1000)
    for n in range(12):
        s.state.put("k000", f"change {n}")
        s.checkpoint(full_every=5)
    cps = s.checkpoints()
    assert [c.full for c in cps] == [True, False, False, False, False] * 2 + [True, False]
    assert all(len(_chain(store, "inc", c.id)) < 5 for c in cps)  # a restore reads <= 5 bodies
    assert [c.stored_keys for c in cps[:3]] == [100, 1, 1]
    full, delta = _body_size(store, "inc", 1), _body_size(store, "inc", 2)
    assert delta * 20 < full, (delta, full)
    s.restore(cps[8])
    assert s.state.get("k000") == "change 8" and len(s.state.to_dict()) == 100


def test_compressed_checkpoints(store: Store, open_store: Any) -> None:
    s = store.session("z")
    s.state.put("text", "the same words again " * 200)
    cp = s.checkpoint(compress="zstd")
    rec = store.backend.get(body_key("z", cp.id))
    assert rec is not None and rec.codec.endswith("+zstd") and len(rec.data) < 1000
    s.state.put("text", "changed")
    s.restore(cp)
    assert s.state.get("text") == "the same words again " * 200
    compressed = open_store(compress="zlib")  # or the store's own compression
    s2 = compressed.session("z2")
    s2.state.put("text", "more words " * 200)
    cp2 = s2.checkpoint()
    rec2 = compressed.backend.get(body_key("z2", cp2.id))
    assert rec2 is not None and rec2.codec.endswith("+zlib")
    with pytest.raises(statekeel.ConfigurationError):
        s.checkpoint(compress="lz4")


def test_checkpoint_prune_keeps_what_is_kept_restorable(store: Store) -> None:
    s = store.session("p")
    expected: dict[int, dict[str, Any]] = {}
    for n in range(30):
        s.state.put(f"k{n % 7}", n)
        if n % 4 == 0:
            s.state.delete(f"k{(n + 3) % 7}")
        expected[s.checkpoint(full_every=10).id] = s.state.to_dict()
    assert s.prune_checkpoints(keep_last=5) == 25
    kept = s.checkpoints()
    assert [c.id for c in kept] == [26, 27, 28, 29, 30]
    assert kept[0].full and kept[0].parent is None  # its base was pruned: re-based in full
    assert [c.parent for c in kept[1:]] == [26, 27, 28, 29]
    for cp in reversed(kept):
        s.restore(cp)
        assert s.state.to_dict() == expected[cp.id]
    assert all(store.backend.get(body_key("p", i)) is None for i in range(1, 26))
    s.state.put("after", 1)
    assert s.checkpoint().id == 31  # ids are never reused
    assert s.prune_checkpoints(keep_last=10) == 0


def test_checkpoint_prune_by_age_and_pruning_the_head(store: Store) -> None:
    s = store.session("age")
    s.state.put("v", 0)
    s.checkpoint()
    s.state.put("v", 1)
    s.checkpoint()
    time.sleep(0.4)
    s.state.put("v", 2)
    young = s.checkpoint()
    assert s.prune_checkpoints(newer_than=0.3) == 2
    assert [c.id for c in s.checkpoints()] == [young.id] and s.checkpoints()[0].full
    assert s.prune_checkpoints(newer_than="1h", keep_last=1) == 0
    s.prune_checkpoints(keep_last=0)
    assert s.checkpoints() == []
    s.state.put("v", 3)
    after = s.checkpoint()  # the head is gone: a full snapshot again
    assert after.full and after.parent is None
    with pytest.raises(InvalidInputError):
        s.prune_checkpoints()


def test_checkpoints_expire_with_their_session(store: Store) -> None:
    s = store.session("short", ttl=60)
    s.state.put("v", 1)
    cp = s.checkpoint()
    head = store.backend.get(header_key("short", cp.id))
    body = store.backend.get(body_key("short", cp.id))
    assert head is not None and head.expires_at is not None
    assert body is not None and body.expires_at is not None


def test_empty_session_checkpoint(store: Store) -> None:
    s = store.session("empty")
    cp = s.checkpoint()
    assert cp.history_seq == 0 and cp.keys == 0
    s.append("x", state={"k": 1})
    s.restore(cp)
    assert s.history() == [] and s.state.to_dict() == {} and s.history(include_hidden=True) == ["x"]
    assert s.fork(cp, into="empty-fork").history() == []


def _checkpointer(url: str, worker: int, n: int) -> list[int]:
    with statekeel.open(url) as store:
        s = store.session("shared")
        out = []
        for i in range(n):
            s.state.put(f"w{worker}", i)
            out.append(s.checkpoint(f"w{worker}-{i}").id)
        return out


@pytest.mark.multiprocess
def test_concurrent_checkpoints_get_distinct_ids(store_url: str) -> None:
    with statekeel.open(store_url) as store:
        store.session("shared")
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        ids = pool.starmap(_checkpointer, [(store_url, w, 15) for w in range(3)])
    flat = sorted(i for part in ids for i in part)
    assert flat == list(range(1, 46))
    with statekeel.open(store_url) as store:
        s = store.session("shared")
        for cp in s.checkpoints():
            s.restore(cp)
            worker, step = cp.label.split("-")[0][1:], int(cp.label.split("-")[1])  # type: ignore[union-attr]
            assert s.state.get(f"w{worker}") == step
