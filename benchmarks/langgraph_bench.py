"""LangGraph checkpointers on the reference chat workload, side by side in one run.

    .venv/bin/python benchmarks/langgraph_bench.py --turns 200            # a few minutes
    .venv/bin/python benchmarks/langgraph_bench.py --turns 1000           # the issue's run (LangGraph's
                                                                          # savers need ~2 GB of disk)
    .venv/bin/python benchmarks/langgraph_bench.py --turns 1000 --backends sqlite --repeat 3

A LangGraph graph with ``add_messages`` (START -> agent -> END, exactly the graph of
/work/shared/bench/peers), N turns of the reference workload (a 200-byte user message,
an 800-byte assistant message and ``turn = i`` per turn), on:

* ``statekeel-saver``: :class:`StatekeelSaver` on SQLite, PostgreSQL and Redis;
* ``SqliteSaver`` and ``PostgresSaver``: LangGraph's own savers on the same backends;
* ``statekeel-turn``: statekeel's own chat turn (``session.append``) on each backend —
  how much the LangGraph layer adds;
* ``langgraph-floor``: the same graph with a checkpointer that keeps the newest checkpoint's
  objects in memory and stores nothing — LangGraph's own runtime per turn, the floor under
  every saver.

A turn is one ``graph.invoke`` with LangGraph's default durability (``"async"``: the
checkpoint of a step is written while the next step runs; ``invoke`` returns once every
``put``/``put_writes`` of the turn has returned): one ``get_tuple``, three ``put`` and two
``put_writes``. ``--durability exit`` runs every graph (LangGraph's savers too) in LangGraph's
``"exit"`` mode instead: one ``get_tuple`` and one ``put`` per turn, checkpoints only at the
end of each invoke — a choice the user makes, reported separately. The systems of a backend run **interleaved, turn by turn** (each turn of
each system in turn, starting each turn one system further on), so a change in the machine's load hits
them alike and no system always runs right after the same one. ``--guard-pair`` adds the saver on a store
opened with ``secret_guard="off"``: the guard's per-turn cost, paired; ``--group-pair`` the SQLite saver
with group commit bypassed (each batch committed alone): what grouping saves, paired.

Per row: median and p99 ms per turn, storage (SQLite: files after a WAL checkpoint;
PostgreSQL: growth of the database; Redis: used_memory of the system's own server),
``get_state`` and ``get_state_history(limit=20)`` in the process that ran the graph (median
of 20), and ``get_state`` **cold**: a new saver on a new connection (nothing in memory:
statekeel opens the store again, SqliteSaver a new ``sqlite3`` connection, PostgresSaver a
new connection), median of ``--cold-reads`` (15), interleaved, in wall-clock time and in the
thread's CPU time (``time.thread_time``: what the read itself costs, less disturbed by other
jobs on a shared machine). ``--repeat K`` runs everything K times and
reports each run and the median of the ratios. PostgreSQL and Redis are throw-away local
servers (statekeel.testing.servers).

Then ``store.search`` (:func:`store_search`): ``StatekeelStore`` vs LangGraph's ``SqliteStore``
on ``--store-items`` items (10,000; a comma-separated list runs each size; 0 skips it) of one
namespace, both on SQLite files, interleaved: a string filter matching a tenth, a ``$gte`` filter,
and no filter, each a page of 10, and a ``put`` (a new item, then one written over).
``--store-only`` runs just these rows.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks.systems.pg_peers import db_size, fresh_database  # noqa: E402
from benchmarks.systems.lg_store import store_search  # noqa: E402
from benchmarks.systems.redis_peers import prepare  # noqa: E402
from benchmarks.workload import latency_stats, make_turns, payload_bytes, sqlite_checkpointed_bytes  # noqa: E402

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402

CONFIG = {"configurable": {"thread_id": "t1"}}
DURABILITY: list[str | None] = [None]
"""``--durability``: LangGraph's mode for every graph of the run (None: its default, "async")."""


class S(TypedDict):
    messages: Annotated[list[Any], add_messages]
    turn: int


def chat_graph(saver: Any, turns: list[tuple[str, str]]) -> Any:
    def agent(s: S) -> dict[str, Any]:
        i = s["turn"]
        return {"messages": [{"role": "assistant", "content": turns[i][1]}], "turn": i + 1}

    g = StateGraph(S)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    return g.compile(checkpointer=saver)


class FloorSaver(BaseCheckpointSaver[int]):
    """Keeps the newest checkpoint's objects in memory, serializes and stores nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.newest: dict[str, CheckpointTuple] = {}

    def get_tuple(self, config: Any) -> CheckpointTuple | None:
        return self.newest.get(config["configurable"]["thread_id"])

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        conf = config["configurable"]
        named = {"configurable": {"thread_id": conf["thread_id"], "checkpoint_ns": "", "checkpoint_id": checkpoint["id"]}}
        self.newest[conf["thread_id"]] = CheckpointTuple(named, checkpoint, metadata, None, [])
        return named

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        pass

    def list(self, config: Any, **kw: Any) -> Any:
        newest = self.get_tuple(config)
        return iter([] if newest is None else [newest])

    def get_next_version(self, current: Any, channel: Any) -> int:
        return int(current or 0) + 1


@dataclass
class System:
    """One row: how to run a turn, read the state (warm, cold), and measure storage."""

    name: str
    backend: str
    turn: Callable[[int, str], Any]
    state: Callable[[], Any]
    history20: Callable[[], Any]
    storage: Callable[[], int]
    cold: Callable[[], tuple[float, float]] | None = None
    close: Callable[[], None] = lambda: None
    lat: list[float] = field(default_factory=list)


def graph_system(name: str, backend: str, saver: Any, turns: list[tuple[str, str]], storage: Callable[[], int],
                 cold: Callable[[], tuple[float, float]] | None = None, close: Callable[[], None] = lambda: None) -> System:  # fmt: skip
    app = chat_graph(saver, turns)
    return System(
        name, backend,
        lambda i, user: app.invoke({"messages": [{"role": "user", "content": user}], "turn": i}, CONFIG,
                                   durability=DURABILITY[0]),  # fmt: skip
        lambda: app.get_state(CONFIG), lambda: list(app.get_state_history(CONFIG, limit=20)), storage, cold, close,
    )  # fmt: skip


def timed_state(make: Callable[[], Any], turns: list[tuple[str, str]],
                done: Callable[[Any], None]) -> tuple[float, float]:  # fmt: skip
    """get_state on a saver ``make`` opened just now (graph compiled outside the timing): wall and CPU seconds.

    The snapshot is held until the clocks are read: freeing its 2,000 messages is not part of the
    call (a saver that keeps the values, as statekeel's does, frees them later; one that does not
    freed them inside the timing until session 26, ~1 ms in its disfavour)."""
    saver = make()
    try:
        app = chat_graph(saver, turns)
        t, cpu = time.perf_counter(), time.thread_time()
        state = app.get_state(CONFIG)
        elapsed = time.perf_counter() - t, time.thread_time() - cpu
        del state
        return elapsed
    finally:
        done(saver)


UNGROUPED = "statekeel-saver-ungrouped"
"""``--group-pair`` (SQLite): the same saver with each batch committed alone — the backend's group commit
(:class:`statekeel.protocol.group.ThreadGroup`) bypassed — interleaved with the default one: what
committing the batches LangGraph's threads write at the same time together saves per turn."""


def _ungrouped(saver: Any) -> Any:
    """``saver`` with its SQLite backend committing every batch on its own, as before group commit."""
    from statekeel.protocol.checks import check_ops

    backend = saver.core.backend

    def apply(ops: Any, *, now: float | None = None) -> Any:
        check_ops(ops, now)
        with backend._lock:
            return backend._commit(ops, now)

    backend.apply = apply
    return saver


GUARD_OFF = "statekeel-saver-guard-off"
"""``--guard-pair``: the same saver on a store opened with ``secret_guard="off"``, interleaved with the
default (``"refuse"``) one: the per-turn cost of screening what each turn persists."""


def statekeel_saver(
    backend: str, url: str, turns: list[tuple[str, str]], storage: Callable[[], int], guard: str = "refuse"
) -> System:
    from statekeel.integrations.langgraph import StatekeelSaver

    guarded = "refuse" if guard == UNGROUPED else guard
    saver = StatekeelSaver.from_url(url, secret_guard=guarded)

    def cold() -> tuple[float, float]:
        return timed_state(lambda: StatekeelSaver.from_url(url, secret_guard=guarded), turns, lambda s: s.close())

    name = "statekeel-saver" if guard == "refuse" else GUARD_OFF
    if guard == UNGROUPED:
        saver, name = _ungrouped(saver), UNGROUPED
    return graph_system(name, backend, saver, turns, storage, cold, saver.close)


def statekeel_turn(backend: str, url: str, turns: list[tuple[str, str]], storage: Callable[[], int]) -> System:
    import statekeel

    store = statekeel.open(url)
    s = store.session("t1")

    def turn(i: int, user: str) -> None:
        s.append({"role": "user", "content": user}, {"role": "assistant", "content": turns[i][1]}, state={"turn": i})

    return System("statekeel-turn", backend, turn, lambda: s.history(), lambda: s.history(last=20), storage,
                  close=store.close)  # fmt: skip


def floor_system(turns: list[tuple[str, str]]) -> System:
    return graph_system("langgraph-floor", "-", FloorSaver(), turns, lambda: 0)


def sqlite_systems(stack: ExitStack, turns: list[tuple[str, str]]) -> list[System]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    d = stack.enter_context(tempfile.TemporaryDirectory(prefix="lgb-"))
    names = ("statekeel-saver", "SqliteSaver", "statekeel-turn", GUARD_OFF, UNGROUPED)
    for name in names:
        Path(d, name).mkdir()
    paths = {name: f"{d}/{name}/state.db" for name in names}
    size = lambda p: (lambda: sqlite_checkpointed_bytes(p, str(Path(p).parent)))  # noqa: E731
    conn = sqlite3.connect(paths["SqliteSaver"], check_same_thread=False)

    def lg_cold() -> tuple[float, float]:
        return timed_state(lambda: SqliteSaver(sqlite3.connect(paths["SqliteSaver"], check_same_thread=False)),
                           turns, lambda s: s.conn.close())  # fmt: skip

    return [
        statekeel_saver("sqlite", f"sqlite:///{paths['statekeel-saver']}", turns, size(paths["statekeel-saver"])),
        graph_system("SqliteSaver", "sqlite", SqliteSaver(conn), turns, size(paths["SqliteSaver"]), lg_cold,
                     lambda: (conn.commit(), conn.close()) and None),  # fmt: skip
        statekeel_turn("sqlite", f"sqlite:///{paths['statekeel-turn']}", turns, size(paths["statekeel-turn"])),
    ] + ([statekeel_saver("sqlite", f"sqlite:///{paths[GUARD_OFF]}", turns, size(paths[GUARD_OFF]), "off")]
         if GUARD_PAIR[0] else []) + (
        [statekeel_saver("sqlite", f"sqlite:///{paths[UNGROUPED]}", turns, size(paths[UNGROUPED]), UNGROUPED)]
        if GROUP_PAIR[0] else [])


def postgres_systems(stack: ExitStack, admin: str, turns: list[tuple[str, str]]) -> list[System]:
    from langgraph.checkpoint.postgres import PostgresSaver

    dsns = {name: fresh_database(admin, f"lgbench{n}") for n, name in enumerate(("sk", "lg", "turn", "off"))}
    base = {name: db_size(dsn) for name, dsn in dsns.items()}
    size = lambda name: (lambda: db_size(dsns[name]) - base[name])  # noqa: E731
    lg = stack.enter_context(PostgresSaver.from_conn_string(dsns["lg"]))
    lg.setup()

    def lg_cold() -> tuple[float, float]:
        with ExitStack() as own:
            return timed_state(lambda: own.enter_context(PostgresSaver.from_conn_string(dsns["lg"])), turns,
                               lambda s: None)  # fmt: skip

    return [
        statekeel_saver("postgres", dsns["sk"], turns, size("sk")),
        graph_system("PostgresSaver", "postgres", lg, turns, size("lg"), lg_cold),
        statekeel_turn("postgres", dsns["turn"], turns, size("turn")),
    ] + ([statekeel_saver("postgres", dsns["off"], turns, size("off"), "off")] if GUARD_PAIR[0] else [])


def redis_systems(stack: ExitStack, turns: list[tuple[str, str]]) -> list[System]:
    from statekeel.testing.servers import RedisServer

    systems = []
    makers: list[Callable[..., System]] = [statekeel_saver, statekeel_turn]
    for make in makers + ([lambda *a: statekeel_saver(*a, guard="off")] if GUARD_PAIR[0] else []):
        url = stack.enter_context(RedisServer()).url  # a server each: used_memory is per server
        r, m0 = prepare(url)
        systems.append(make("redis", url, turns, lambda r=r, m0=m0: r.info("memory")["used_memory"] - m0))
    return systems


COLD_READS = [15]
"""``--cold-reads``: cold get_state reads per system."""
GUARD_PAIR = [False]
"""``--guard-pair``: add the guard-off saver on each backend (see :data:`GUARD_OFF`)."""
GROUP_PAIR = [False]
"""``--group-pair``: add the saver without group commit on SQLite (see :data:`UNGROUPED`)."""


def group_ratio(rows: list[dict[str, Any]]) -> dict[str, float]:
    """SQLite: the saver's median ms per turn with group commit / without it, and the same over
    LangGraph's floor (the saver's own share), from one interleaved run."""
    by = {(r["backend"], r["system"]): r for r in rows}
    on, off = by.get(("sqlite", "statekeel-saver")), by.get(("sqlite", UNGROUPED))
    if on is None or off is None:
        return {}
    floor = by.get(("-", "langgraph-floor"), {}).get("median_ms_per_turn", 0.0)
    return {"turn": round(on["median_ms_per_turn"] / off["median_ms_per_turn"], 3),
            "saver_only": round((on["median_ms_per_turn"] - floor) / max(off["median_ms_per_turn"] - floor, 1e-6), 3)}


def guard_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per backend: the saver's median ms per turn with the secret guard on / off (same run, interleaved)."""
    by = {(r["backend"], r["system"]): r for r in rows}
    return {backend: round(on["median_ms_per_turn"] / off["median_ms_per_turn"], 3)
            for (backend, name), on in by.items() if name == "statekeel-saver"
            and (off := by.get((backend, GUARD_OFF))) is not None}  # fmt: skip


def measure(systems: list[System], turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Turns interleaved across systems in a rotating order; then warm reads (20 each) and cold reads
    (``--cold-reads``), interleaved."""
    for i, (user, _) in enumerate(turns):
        for s in systems[i % len(systems):] + systems[: i % len(systems)]:  # a rotating order: no system always follows the same one
            t = time.perf_counter()
            s.turn(i, user)
            s.lat.append(time.perf_counter() - t)
    reads: dict[tuple[str, str], list[float]] = {}
    for what, reps in (("get_state_ms", 20), ("history20_ms", 7), ("get_state_cold_ms", COLD_READS[0])):
        for _ in range(reps):
            for s in systems:
                fn = {"get_state_ms": s.state, "history20_ms": s.history20, "get_state_cold_ms": s.cold}[what]
                if fn is None:
                    continue
                if what == "get_state_cold_ms":
                    dt, cpu = fn()
                    reads.setdefault((s.name, "get_state_cold_cpu_ms"), []).append(cpu)
                else:
                    t = time.perf_counter()
                    result = fn()
                    dt = time.perf_counter() - t  # the result is freed after the clock is read
                    del result
                reads.setdefault((s.name, what), []).append(dt)
    rows = []
    for s in systems:
        s.close()
        row = {"system": s.name, "backend": s.backend, **latency_stats(s.lat), "storage_bytes": s.storage()}
        for (name, what), times in reads.items():
            if name == s.name:
                row[what] = round(statistics.median(times) * 1e3, 3)
        rows.append(row)
    return rows


PEER = {"sqlite": "SqliteSaver", "postgres": "PostgresSaver"}


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per backend: LangGraph's saver / ours (time, storage, saver-only time over the floor) and
    ours / LangGraph's (get_state warm and cold, history); ``store_search``: ours / SqliteStore."""
    by = {(r["backend"], r["system"]): r for r in rows}
    floor = by.get(("-", "langgraph-floor"), {}).get("median_ms_per_turn", 0.0)
    out = {}
    for backend, peer in PEER.items():
        ours, lg = by.get((backend, "statekeel-saver")), by.get((backend, peer))
        if ours is None or lg is None:
            continue
        out[backend] = {
            "faster": lg["median_ms_per_turn"] / ours["median_ms_per_turn"],
            "saver_only_faster": (lg["median_ms_per_turn"] - floor) / max(ours["median_ms_per_turn"] - floor, 1e-6),
            "smaller": lg["storage_bytes"] / max(ours["storage_bytes"], 1),
            "get_state": ours["get_state_ms"] / lg["get_state_ms"],
            "get_state_cold": ours["get_state_cold_ms"] / lg["get_state_cold_ms"],
            "get_state_cold_cpu": ours["get_state_cold_cpu_ms"] / lg["get_state_cold_cpu_ms"],
            "history20": ours["history20_ms"] / lg["history20_ms"],
        }
    return out


def table(rows: list[dict[str, Any]], payload: int) -> str:
    by = {(r["backend"], r["system"]): r for r in rows}
    rat = ratios(rows)
    lines = ["| backend | system | ms/turn (median) | storage MB | storage / payload | get_state ms | get_state "
             "cold ms (CPU) | history(20) ms | vs LangGraph saver: time, saver-only time, storage, get_state, cold "
             "(CPU), history | vs statekeel turn |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        own = by.get((r["backend"], "statekeel-turn"))
        x = rat.get(r["backend"]) if r["system"] == "statekeel-saver" else None
        vs_lg = "" if x is None else (f"{x['faster']:.1f}x faster, {x['saver_only_faster']:.1f}x, {x['smaller']:.0f}x "
                                      f"smaller, {x['get_state']:.2f}x, {x['get_state_cold']:.2f}x ({x['get_state_cold_cpu']:.2f}x), "
                                      f"{x['history20']:.2f}x")  # fmt: skip
        vs_own = f"{r['median_ms_per_turn'] / own['median_ms_per_turn']:.1f}x" if own and r["system"] == "statekeel-saver" else ""
        cold = f"{r['get_state_cold_ms']:.2f} ({r['get_state_cold_cpu_ms']:.2f})" if "get_state_cold_ms" in r else ""
        lines.append(f"| {r['backend']} | {r['system']} | {r['median_ms_per_turn']:.3f} | {r['storage_bytes'] / 1e6:.2f} | "
                     f"{r['storage_bytes'] / payload:.1f} | {r['get_state_ms']:.2f} | {cold} | {r['history20_ms']:.2f} | "
                     f"{vs_lg} | {vs_own} |")  # fmt: skip
    return "\n".join(lines)


def one_run(backends: list[str], turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        from statekeel.testing.servers import PostgresServer

        floor_done = False
        for backend in backends:
            if backend == "sqlite":
                systems = sqlite_systems(stack, turns)
            elif backend == "postgres":
                systems = postgres_systems(stack, stack.enter_context(PostgresServer()).url, turns)
            else:
                systems = redis_systems(stack, turns)
            if not floor_done:
                systems.append(floor_system(turns))
                floor_done = True
            rows += measure(systems, turns)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--durability", choices=["async", "sync", "exit"], default=None,
                        help="LangGraph's durability mode for every graph (default: LangGraph's, async)")
    parser.add_argument("--cold-reads", type=int, default=15, help="cold get_state reads per system (median)")
    parser.add_argument("--store-items", default="10000",
                        help="store.search: items in the namespace, comma-separated sizes (0: skip the store rows)")
    parser.add_argument("--store-only", action="store_true", help="only the store.search rows (no saver runs)")
    parser.add_argument("--guard-pair", action="store_true",
                        help="also run the saver with secret_guard='off', interleaved: the guard's per-turn cost")
    parser.add_argument("--group-pair", action="store_true",
                        help="also run the SQLite saver with group commit bypassed, interleaved: what it saves")
    args = parser.parse_args()
    GROUP_PAIR[0] = args.group_pair
    DURABILITY[0] = args.durability
    COLD_READS[0] = args.cold_reads
    GUARD_PAIR[0] = args.guard_pair
    turns = make_turns(args.turns)
    runs = []
    for run in range(args.repeat):
        rows = [] if args.store_only else one_run(args.backends.split(","), turns)
        runs.append(ratios(rows))
        for row in rows:
            print(json.dumps({"run": run, "turns": args.turns, "payload_bytes": payload_bytes(turns),
                              "durability": args.durability or "async", **row}))  # fmt: skip
        if rows:
            print(table(rows, payload_bytes(turns)), file=sys.stderr)
        if args.guard_pair:
            runs[-1]["guard_on_over_off"] = guard_ratios(rows)
            print(f"secret guard on / off, ms per turn: {json.dumps(runs[-1]['guard_on_over_off'])}", file=sys.stderr)
        if args.group_pair:
            runs[-1]["group_over_ungrouped"] = group_ratio(rows)
            print(f"group commit on / off (SQLite): {json.dumps(runs[-1]['group_over_ungrouped'])}", file=sys.stderr)
        for items in [int(n) for n in args.store_items.split(",") if int(n)]:
            searched = store_search(items)
            for row in searched:
                print(json.dumps({"run": run, **row}))
            ratio = {k: round(searched[0][k] / searched[1][k], 2) for k in searched[0] if k.endswith("_ms")}
            runs[-1][f"store_search_{items}"] = ratio
            print(f"store.search, {items} items, statekeel / SqliteStore: {json.dumps(ratio)}", file=sys.stderr)
    if args.repeat > 1:
        for backend in runs[0]:
            med = {k: round(statistics.median(r[backend][k] for r in runs), 2) for k in runs[0][backend]}
            print(f"median of {args.repeat} runs, {backend}: {json.dumps(med)}", file=sys.stderr)


if __name__ == "__main__":
    main()
