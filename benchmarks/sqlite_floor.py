#!/usr/bin/env python3
"""Where a SQLite chat turn and a whole-history reload spend their time (issue 15 item 5).

    python benchmarks/sqlite_floor.py                 # durability=normal, 3,000 turns, 2,000-message reload
    python benchmarks/sqlite_floor.py --durability full --turns 1000

One process, everything interleaved turn by turn, medians (reload: best of N), so the
layers can be compared on a busy machine:

  per turn   raw            BEGIN, 2 INSERTs, COMMIT (benchmarks/systems/sqlite_raw.py)
             raw+state      the same plus the state upsert (raw-sqlite-wal+state)
             sql floor      statekeel's own statements, replayed from Python with nothing
                            else (BEGIN IMMEDIATE, log header SELECT, entries INSERT,
                            state upsert, COMMIT): what no Python change can go below
             backend.apply  the same batch through SQLiteBackend.apply (+ checksums, ops)
             session.append the public call (+ planning, codec, secret guard)
  reload     raw fetch      SELECT role, content of 2,000 rows (the raw baseline's reload)
             sql fetch      statekeel's history query alone
             read_values    + checksums verified (backend fast path)
             history()      + the view check and decoding into message dicts

It reaches into the backend (``store.storage``) to time the layers; the statements it
replays are the backend's own (imported, not copied), so it follows the code.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(REPO, "src"), REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

import statekeel  # noqa: E402
from benchmarks.workload import make_turns  # noqa: E402
from statekeel.backends.sqlite.verify import VALUE_COLUMNS  # noqa: E402
from statekeel.backends.sqlite.writes import _PUT_SQL  # noqa: E402
from statekeel.protocol import ANY, KEEP, Append, Put  # noqa: E402

LOG, STATE = "session/t1/history", "session/t1/state/turn"
HEADER = ("SELECT id, expires_at, (SELECT max(id) FROM sk_entries WHERE id BETWEEN sk_logs.id << 32"
          " AND (sk_logs.id << 32) + 4294967295), last_seq FROM sk_logs WHERE name = ?")


def _store(d: str, durability: str):
    return statekeel.open(f"sqlite:///{os.path.join(d, 's.db')}?durability={durability}")


def _raw(d: str, durability: str) -> sqlite3.Connection:
    c = sqlite3.connect(os.path.join(d, "raw.db"), isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={durability}")
    c.execute("create table m(sid text, seq int, role text, content text, primary key(sid,seq))")
    c.execute("create table st(sid text, k text, v text, primary key(sid,k))")
    return c


def per_turn(turns, durability: str) -> dict[str, float]:
    dirs = [tempfile.mkdtemp(prefix="skfloor-") for _ in range(4)]
    api, backend, floor = _store(dirs[0], durability), _store(dirs[1], durability), _store(dirs[2], durability)
    raw = _raw(dirs[3], durability)
    session, b = api.session("t1"), backend.storage
    floor.storage.apply([Append(LOG, ((b"x", "msg:user"),), KEEP), Put(STATE, b"0", "json", ANY, None)])
    fc = floor.storage._conn  # the floor replays the statements on statekeel's own connection
    times: dict[str, list[int]] = {k: [] for k in ("raw", "raw+state", "sql floor", "backend.apply", "session.append")}
    clock = time.perf_counter_ns
    for i, (u, a) in enumerate(turns):
        ub, ab = u.encode(), a.encode()

        def run_raw(state: bool, i: int = i, u: str = u, a: str = a) -> None:
            sid = "t2" if state else "t1"
            raw.execute("begin")
            raw.execute("insert into m values(?,?,?,?)", (sid, 2 * i, "user", u))
            raw.execute("insert into m values(?,?,?,?)", (sid, 2 * i + 1, "assistant", a))
            if state:
                raw.execute("insert or replace into st values(?,'turn',?)", (sid, str(i)))
            raw.execute("commit")

        def run_floor(ub: bytes = ub, ab: bytes = ab) -> None:
            now = time.time()
            fc.execute("BEGIN IMMEDIATE")
            log_id, _, last, trimmed = fc.execute(HEADER, (LOG,)).fetchone()
            base = (log_id << 32) + max(last & 0xFFFFFFFF, trimmed) + 1
            fc.executemany("INSERT INTO sk_entries VALUES (?, ?, ?, ?, ?)",
                           [(base, ub, "msg:user", now, 1), (base + 1, ab, "msg:assistant", now, 2)])
            fc.execute(_PUT_SQL[False, "any"], (STATE, b"1", "json", now, None, 5, 4)).fetchone()
            fc.execute("COMMIT")

        steps = {
            "raw": lambda: run_raw(False),
            "raw+state": lambda: run_raw(True),
            "sql floor": run_floor,
            "backend.apply": lambda ub=ub, ab=ab, i=i: b.apply(
                [Append(LOG, ((ub, "msg:user"), (ab, "msg:assistant")), KEEP),
                 Put(STATE, str(i).encode(), "json", ANY, None)]),
            "session.append": lambda u=u, a=a, i=i: session.append(
                {"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i}),
        }
        names = list(steps) if i % 2 else list(reversed(steps))  # alternate the order turn by turn
        for name in names:
            t = clock()
            steps[name]()
            times[name].append(clock() - t)
    for s in (api, backend, floor):
        s.close()
    raw.close()
    return {k: statistics.median(v) / 1e3 for k, v in times.items()}


def reload(turns, tries: int) -> dict[str, float]:
    d = tempfile.mkdtemp(prefix="skfloor-")
    store, raw = _store(d, "normal"), _raw(d, "NORMAL")
    s, b = store.session("t1"), store.storage
    for i, (u, a) in enumerate(turns):
        s.append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
        raw.execute("insert into m values('t1',?,?,?)", (2 * i, "user", u))
        raw.execute("insert into m values('t1',?,?,?)", (2 * i + 1, "assistant", a))
    lo, hi = 1 << 32, (1 << 32) + 2 * len(turns) + 1  # the first log of a fresh store is id 1
    ours = f"SELECT {VALUE_COLUMNS} FROM sk_entries WHERE id >= ? AND id < ? ORDER BY id ASC LIMIT -1"
    steps = {
        "raw fetch": lambda: raw.execute("select role, content from m where sid='t1' order by seq").fetchall(),
        "sql fetch": lambda: b._conn.execute(ours, (lo, hi)).fetchall(),
        "read_values": lambda: b.read_values(LOG),
        "history()": s.history,
    }
    assert len(steps["sql fetch"]()) == 2 * len(turns) == len(s.history())
    best = {k: float("inf") for k in steps}
    for _ in range(tries):
        for name, fn in steps.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    store.close()
    raw.close()
    return {k: v * 1e3 for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--durability", choices=("normal", "full"), default="normal")
    ap.add_argument("--turns", type=int, default=3000, help="turns timed per layer (default 3000)")
    ap.add_argument("--reload-turns", type=int, default=1000, help="turns in the reloaded history (default 1000)")
    ap.add_argument("--tries", type=int, default=30, help="reload: best of this many (default 30)")
    a = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, "
          f"SQLite {sqlite3.sqlite_version}, durability={a.durability}")
    turn = per_turn(make_turns(a.turns), a.durability.upper())
    print(f"per turn, median µs ({a.turns} turns, interleaved):")
    for k, v in turn.items():
        print(f"  {k:<15} {v:8.2f}  ({v / turn['raw']:.2f}× raw)")
    rel = reload(make_turns(a.reload_turns), a.tries)
    print(f"reload of {2 * a.reload_turns} messages, best of {a.tries}, ms:")
    for k, v in rel.items():
        print(f"  {k:<15} {v:8.3f}  ({v / rel['raw fetch']:.2f}× raw)")


if __name__ == "__main__":
    main()
