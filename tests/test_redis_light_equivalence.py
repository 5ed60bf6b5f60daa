"""LIGHT against APPLY, adversarially (review of session 24's backends/redis/lua_light.py).

Two stores under two prefixes of one real ``redis-server`` are driven in lockstep: every
batch, encoded once by :func:`statekeel.backends.redis.wire.encode`, goes to APPLY on one
and LIGHT on the other, and the replies (errors included, the prefix taken out) and every
stored Redis key (DUMP and absolute expiry) must be equal after each batch. The batches are
drawn at random (fixed seed) over two partitions: Puts and Deletes with every kind of
``expect``, Appends with ``at=`` and wrong seq guesses, expiries kept, changed, dropped and
already past. Between them both stores get the same damage: a header field that is not a
number, a huge version or last seq (checksum wrap-around, beyond Lua's exact integers), a
record or log that expired by the batch clock but is still in Redis, a key of another type
where a record hash, a log header or a log list belongs. A refused batch must leave both
stores as they were. Hand-made argument blobs check the argument checks the client never
lets through. The one documented difference — an index set of another type that the batch
does not write — has its own test.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis

from conftest import running
from statekeel.backends.redis import backend as redis_backend
from statekeel.backends.redis import wire
from statekeel.protocol import ANY, KEEP, Append, Delete, Op, Put
from statekeel.testing.servers import RedisServer

FULL, LIGHT = "eqa", "eqb"  # same length: nothing but the prefix differs between the stores
PARTS = ("session/a", "session/b")
RECORDS = tuple(f"{p}/state/{k}" for p in PARTS for k in ("k1", "k2", "k3"))
LOGS = tuple(f"{p}/{n}" for p in PARTS for n in ("history", "events"))
T0 = time.time() + 10 * 86400  # the batch clock runs ahead of Redis': Redis expires nothing during the test


@pytest.fixture(scope="module")
def r() -> Iterator[redis.Redis]:
    for server in running(RedisServer()):
        client = redis.Redis.from_url(server.url)
        for script in (redis_backend._APPLY, redis_backend._LIGHT):
            client.script_load(script.source)
        yield client
        client.close()


def _stored(r: redis.Redis, prefix: str) -> dict[bytes, tuple[Any, Any]]:
    """Every Redis key of the store, without its prefix, with its DUMP and absolute expiry (ms)."""
    found = sorted(r.scan_iter(match=f"{prefix}:*", count=1000))
    pipe = r.pipeline(transaction=False)
    for k in found:
        pipe.dump(k)
        pipe.execute_command("PEXPIRETIME", k)
    got = pipe.execute()
    return {k[len(prefix) :]: (got[2 * i], got[2 * i + 1]) for i, k in enumerate(found)}


def _send(r: redis.Redis, script: Any, prefix: str, keys: Sequence[str], now: float, blob: bytes) -> str:
    """The script's reply, or its error, as text with the prefix written ``P``."""
    try:
        reply = r.evalsha(script.sha, len(keys), *keys, repr(now), blob)
    except redis.ResponseError as exc:
        return "ERROR " + str(exc).replace(prefix + ":", "P:")
    return bytes(reply).decode()


def _both(r: redis.Redis, ops: Sequence[Op], now: float, guess: dict[str, int]) -> str:
    """Run ``ops`` through APPLY and LIGHT; assert equal replies and stores; the reply."""
    assert wire.light(ops), ops
    out = _runs(r, ops, now, guess)
    assert out[0] == out[1], (ops, out)
    assert _stored(r, LIGHT) == _stored(r, FULL), (ops, out)
    return out[0]


def _on_both(r: redis.Redis, damage: Callable[[redis.Redis, str], object]) -> None:
    for prefix in (FULL, LIGHT):
        try:
            damage(r, prefix)
        except redis.ResponseError:  # an HSET on a key an earlier damage made a string: both alike
            pass


def _base(prefix: str, name: str) -> str:
    return f"{prefix}:{{{name.split('/')[0]}/{name.split('/')[1]}}}:"


def _current(r: redis.Redis, name: str, is_log: bool) -> int:
    """The record's version or the log's last seq as the APPLY store holds it (0: none or damaged)."""
    try:
        got = r.hget(_base(FULL, name) + ("logh:" if is_log else "kv:") + name, "l" if is_log else "v")
        return int(got or 0)
    except (redis.ResponseError, ValueError):
        return 0


def _expect(rng: random.Random, current: int) -> Any:
    """Mostly a precondition that holds (ANY, the current version), sometimes one that fails."""
    roll = rng.random()
    if roll < 0.45:
        return ANY
    if roll < 0.8:
        return current if current else None
    return rng.choice([None, 0, 1, 2, current + 1, 2**60, -1])


def _expiry(rng: random.Random, now: float) -> Any:
    return rng.choice([KEEP, KEEP, KEEP, None, now + rng.randint(5, 200), now + rng.randint(5000, 50000), now - 1,
                       round(now + 0.123456789, 9)])


def _op(rng: random.Random, r: redis.Redis, now: float, name: str, is_log: bool) -> Op:
    current = _current(r, name, is_log)
    if is_log:
        items = tuple((f'"m{rng.randint(0, 999)}"'.encode(), rng.choice(["json", "msg:user"]))
                      for _ in range(rng.choice([0, 1, 1, 2, 3])))  # fmt: skip
        roll = rng.random()
        at = None if roll < 0.5 else current + 1 if roll < 0.85 else rng.choice([1, 2, current + 2])
        return Append(name, items, expires_at=_expiry(rng, now), at=at)
    if rng.random() < 0.2:
        return Delete(name, expect=_expect(rng, current))
    data = f'{{"v": {rng.randint(0, 10**6)}}}'.encode()
    return Put(name, data, "json", expect=_expect(rng, current), expires_at=_expiry(rng, now))


Damage = Callable[[redis.Redis, str], object]


def _damage(rng: random.Random) -> tuple[str, Damage, Damage]:
    """One kind of damage and its repair (deleting the Redis keys it hit), applied alike to both stores."""
    rec, log = rng.choice(RECORDS), rng.choice(LOGS)

    def kv(p: str) -> str:
        return _base(p, rec) + "kv:" + rec

    def head(p: str) -> str:
        return _base(p, log) + "logh:" + log

    def data(p: str) -> str:
        return _base(p, log) + "log:" + log

    kinds: list[tuple[str, Damage, Damage]] = [
        ("record v not a number", lambda c, p: c.hset(kv(p), "v", "abc"), lambda c, p: c.delete(kv(p))),
        ("record ca nan", lambda c, p: c.hset(kv(p), mapping={"v": "1", "ca": "nan"}), lambda c, p: c.delete(kv(p))),
        ("record ea inf", lambda c, p: c.hset(kv(p), mapping={"v": "2", "ea": "inf"}), lambda c, p: c.delete(kv(p))),
        ("log l not a number", lambda c, p: c.hset(head(p), mapping={"f": "1", "l": "x"}),
         lambda c, p: c.delete(head(p), data(p))),
        ("version near 2^32", lambda c, p: c.hset(kv(p), "v", "4294967290"), lambda c, p: None),
        ("version near 2^53", lambda c, p: c.hset(kv(p), "v", str(2**53 - 2)), lambda c, p: c.delete(kv(p))),
        ("last seq near 2^32", lambda c, p: c.hset(head(p), mapping={"f": "1", "l": "4294967294"}), lambda c, p: None),
        ("record expired, still in Redis", lambda c, p: c.hset(kv(p), mapping={"v": "3", "ea": repr(T0 - 5)}),
         lambda c, p: None),
        ("log expired, still in Redis", lambda c, p: c.hset(head(p), mapping={"f": "1", "l": "2", "ea": repr(T0 - 5)}),
         lambda c, p: None),
        ("record is a string", lambda c, p: (c.delete(kv(p)), c.set(kv(p), "x")), lambda c, p: c.delete(kv(p))),
        ("log header is a list", lambda c, p: (c.delete(head(p)), c.rpush(head(p), "x")),
         lambda c, p: c.delete(head(p), data(p))),
        ("log list is a hash", lambda c, p: (c.delete(data(p)), c.hset(data(p), "a", "b")),
         lambda c, p: c.delete(head(p), data(p))),
        ("log list trimmed away", lambda c, p: c.delete(data(p)), lambda c, p: None),
    ]  # fmt: skip
    return rng.choice(kinds)


def test_light_equals_apply_on_random_batches_and_damage(r: redis.Redis) -> None:
    rng = random.Random(20261201)
    counts = {"ok": 0, "fresh": 0, "refused": 0, "error": 0}
    repair: Damage | None = None
    for i in range(800):
        now = T0 + i * 7.0
        if i % 8 == 3:
            _, damage, repair = _damage(rng)
            _on_both(r, damage)
        if i % 8 == 6 and repair is not None:
            _on_both(r, repair)
        if i % 100 == 99:  # a partition emptied: its next writes report it fresh (the client registers it)
            part = rng.choice(PARTS)
            for prefix in (FULL, LIGHT):
                for k in r.scan_iter(match=f"{prefix}:{{{part}}}:*", count=1000):
                    r.delete(k)
        names = rng.sample([(n, False) for n in RECORDS] + [(n, True) for n in LOGS], rng.randint(1, 4))
        ops = [_op(rng, r, now, n, is_log) for n, is_log in names]
        guess = {op.log: rng.randint(1, 12) for op in ops if isinstance(op, Append) and rng.random() < 0.5}
        before = _stored(r, FULL)
        reply = _both(r, ops, now, guess)
        if reply.startswith("1 "):
            counts["ok"] += 1
            counts["fresh"] += not reply.startswith("1 - ")
        else:
            counts["error" if reply.startswith("ERROR") else "refused"] += 1
            assert _stored(r, FULL) == before, (ops, reply)  # refused: nothing written
    assert counts["ok"] >= 300 and counts["refused"] >= 100 and counts["error"] >= 10, counts  # every outcome, often
    assert counts["fresh"] >= 5, counts


def _blob(*ops: Sequence[bytes | str]) -> bytes:
    fields = [f if isinstance(f, bytes) else f.encode() for op in ops for f in op]
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def _frame() -> bytes:
    return wire.frame(repr(T0), "json", b'"x"', 12345)


@pytest.mark.parametrize(
    "ops",
    [
        [("P", "B", "session/a/state/k1", b"1", "json", "abc", "-", "5")],  # expect not a number
        [("P", "B", "session/a/state/k1", b"1", "json", "*", "nan", "5")],  # expiry nan
        [("P", "B", "session/a/state/k1", b"1", "json", "*", "1e300", "5")],  # expiry beyond exact ms
        [("P", "B", "session/a/state/k1", b"1", "json", "*", "-", "4294967296")],  # checksum base too big
        [("P", "B", "session/a/state/k1", b"1", "json", "*", "-", "-1")],  # negative checksum base
        [("P", "B", "session/a/state/k1", b"1", "json", "1.5", "-", "5")],  # a version that is not whole
        [("D", "B", "session/a/state/k1", "9007199254740993")],  # beyond exact integers
        [("A", "B", "session/a/history", "-", "1", "1", b"no frame")],  # a frame without '#'
        [("A", "B", "session/a/history", "-", "=1.5", "1", _frame())],  # at= not whole
        [("A", "B", "session/a/history", "zz", "1", "1", _frame())],  # bad expiry
        [("P", "B", "session/a/state/k2", b"1", "json", "*", "-", "5"),  # a good op, then a bad one
         ("D", "B", "session/a/state/k3", "nope")],
    ],
)
def test_light_refuses_the_arguments_apply_refuses(r: redis.Redis, ops: list[tuple[Any, ...]]) -> None:
    replies = []
    for script, prefix in ((redis_backend._APPLY, FULL), (redis_backend._LIGHT, LIGHT)):
        base = _base(prefix, "session/a/x")
        blob = _blob(*[(op[0], base, *op[2:]) for op in ops])
        before = _stored(r, prefix)
        replies.append(_send(r, script, prefix, [base + "keys"], T0, blob))
        assert _stored(r, prefix) == before
    assert replies[0] == replies[1] and replies[0].startswith("2 "), replies


def test_a_foreign_index_set_the_batch_does_not_write_is_the_one_difference(r: redis.Redis) -> None:
    """APPLY type-checks a partition's three index sets on every batch; LIGHT only when the batch
    writes them (what keeps it all or nothing). So a steady turn in a partition whose ``logs`` set
    another program overwrote is refused by APPLY and written by LIGHT."""
    now = T0 + 10_000
    log, key = _fresh_partition(r, now)
    _on_both(r, lambda c, p: (c.delete(f"{p}:{{session/c}}:logs"), c.set(f"{p}:{{session/c}}:logs", "foreign")))
    steady: list[Op] = [Append(log, ((b'"b"', "json"),), expires_at=KEEP), Put(key, b"2", "json")]
    apply_reply, light_reply = _runs(r, steady, now, {log: 2})
    assert apply_reply == "ERROR WRONGTYPE P:{session/c}:logs is not a zset statekeel wrote"
    assert light_reply.startswith("1 - 2 2,"), light_reply  # appended at seq 2, record version 2


@pytest.mark.parametrize("index_set", ["keys", "logs", "exp"])
def test_a_foreign_index_set_refuses_every_light_batch_that_writes_it(r: redis.Redis, index_set: str) -> None:
    """A new record or log, a changed expiry, a delete: LIGHT refuses like APPLY, nothing written."""
    now = T0 + 20_000
    log, key = _fresh_partition(r, now)
    name = f"{{session/c}}:{index_set}"
    _on_both(r, lambda c, p: (c.delete(f"{p}:{name}"), c.set(f"{p}:{name}", "foreign")))
    writes_the_index: list[list[Op]] = [
        [Append("session/c/other", ((b'"c"', "json"),))],
        [Put(key, b"3", "json"), Append(log, ((b'"c"', "json"),), expires_at=now + 500)],
        [Put("session/c/state/new", b"1", "json")],
        [Put(key, b"3", "json", expires_at=now + 500)],
        [Append(log, (), expires_at=now + 500)],
        [Delete(key)],
        [Delete("session/c/state/none")],
    ]
    for ops in writes_the_index:
        before = {p: _stored(r, p) for p in (FULL, LIGHT)}
        want = f"ERROR WRONGTYPE P:{name} is not a zset statekeel wrote"
        assert _runs(r, ops, now, {}) == [want, want], ops
        assert {p: _stored(r, p) for p in (FULL, LIGHT)} == before, ops


def _fresh_partition(r: redis.Redis, now: float) -> tuple[str, str]:
    """Partition ``session/c`` emptied, then a log and a record written in both stores alike."""
    for prefix in (FULL, LIGHT):
        for k in r.scan_iter(match=f"{prefix}:{{session/c}}:*", count=1000):
            r.delete(k)
    log, key = "session/c/history", "session/c/state/s"
    assert _both(r, [Append(log, ((b'"a"', "json"),)), Put(key, b"1", "json")], now, {}).startswith("1 ")
    return log, key


def _runs(r: redis.Redis, ops: Sequence[Op], now: float, guess: dict[str, int]) -> list[str]:
    """The replies of APPLY (on its store) and of LIGHT (on its own)."""
    out = []
    for script, prefix in ((redis_backend._APPLY, FULL), (redis_backend._LIGHT, LIGHT)):
        b = wire.encode(wire.Layout(prefix), ops, now, lambda p, c: [], guess)  # the blob holds the prefix
        out.append(_send(r, script, prefix, b.keys, now, b.blob))
    return out


def test_partitions_written_from_empty_are_reported_alike(r: redis.Redis) -> None:
    """The reply names the ops whose partition was empty before the batch (the client registers
    those partitions): a delete there counts too, as in APPLY."""
    now = T0 + 30_000
    batches: list[list[Op]] = [
        [Delete("session/d/state/x"), Put("session/d/state/y", b"1", "json")],
        [Delete("session/d/state/x")],
        [Put("session/d/state/y", b"1", "json"), Append("session/e/history", ((b'"a"', "json"),))],
        [Append("session/e/history", ()), Delete("session/d/state/y", expect=None)],
    ]
    for ops in batches:
        for prefix in (FULL, LIGHT):
            for part in ("session/d", "session/e"):
                for k in r.scan_iter(match=f"{prefix}:{{{part}}}:*", count=1000):
                    r.delete(k)
        done, fresh = _both(r, ops, now, {}).split(" ")[:2]
        assert done == "1" and fresh != "-", ops
