#!/usr/bin/env python3
"""Growth table: do the everyday reads stay flat as a store grows? (issue 15 item 6)

    python benchmarks/run.py --growth                          # 10^3..10^5, every backend it can start
    python benchmarks/growth.py --backends sqlite --max 1000000 # by hand: 10^6 messages, 10^5 sessions
    python benchmarks/growth.py --backends dynamodb --max 10000 --dynamodb-bulk --calls 20  # moto, started here

For each backend one store per size N = 10^3, 10^4, ... ``--max`` is built: one
session ("big") holds N messages and the store holds min(N, ``--max-sessions``)
sessions. Then three calls are timed on every store, the stores taken in turn
call by call so that the machine's drift falls on every size alike (median of
``--calls`` rounds, plus the very first call after reopening):

* ``history(last=20)`` on the big session,
* ``store.sessions()`` — the first page (50) of the session listing,
* ``store.session_info(id)`` of a session in the middle of the id range.

The sizes are built quickly and without the per-turn cost: a template session is
written once through the public API, then its records and log entries are copied
under new ids with ``Load``/``LoadEntries`` batches through ``store.backend.apply``
(the same path ``statekeel copy`` uses), so every stored byte is what the API writes.
Flat means the 10^6 (or largest) figure is within noise of the 10^3 one
(``*_vs_first`` in the output). CI runs none of the benchmarks.

DynamoDB runs against moto's local server (started here; not in the default list). moto
deep-copies the whole table on every TransactWriteItems (its rollback) and answers every
Query by walking the whole table in Python, so building through ``apply`` is quadratic — at
10^4 sessions the server grew past 19 GB — and its milliseconds grow with the table whatever
statekeel asks. So the DynamoDB rows are built with ``--dynamodb-bulk`` (the same items,
written by BatchWriteItem) or at 10^2..10^3 through ``apply``, and also report what DynamoDB
bills — requests per call and items read (the ``Count`` of each reply) — which is what
stays flat when a call costs O(page).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(REPO, "src"), REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

BACKENDS = ("sqlite", "files", "postgres", "redis", "dynamodb")
TEMPLATE = "tpl"
MESSAGE_CHUNK = 5_000   # entries per LoadEntries batch
SESSION_CHUNK = 250     # cloned sessions per batch
DYNAMODB_SESSION_CHUNK = 15  # DynamoDB commits at most 100 records and headers per transaction


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,files,postgres,redis", help="comma list (default: all four)")
    ap.add_argument("--max", type=int, default=100_000, help="largest message count (default 10^5; 10^6 by hand)")
    ap.add_argument("--min", type=int, default=1_000, help="smallest size (default 10^3; dynamodb on moto: 100)")
    ap.add_argument("--max-sessions", type=int, default=100_000, help="cap on the session count (default 10^5)")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per figure (median; default 200)")
    ap.add_argument("--dynamodb-bulk", action="store_true",
                    help="build DynamoDB's sessions with BatchWriteItem of the planned items (see dynamodb_bulk_load)")
    ap.add_argument("--out", help="also write the rows as JSON to this file")
    return ap.parse_args(argv)


def sizes(largest: int, smallest: int = 1_000) -> list[int]:
    out, n = [], smallest
    while n <= largest:
        out.append(n)
        n *= 10
    return out


# -- building -----------------------------------------------------------------
def template(store) -> tuple[list, list]:
    """Write the template session through the API; return its records and history entries."""
    from statekeel.core import layout
    from benchmarks.workload import make_turns

    s = store.session(TEMPLATE)
    for i, (u, a) in enumerate(make_turns(50)):
        s.append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
    b = store.backend
    records = b.scan(layout.session_prefix(TEMPLATE), limit=1000) + [b.get(layout.session_index_key(TEMPLATE))]
    entries = b.read(layout.history_log(TEMPLATE))
    return [r for r in records if r is not None], entries


def grow_messages(store, entries: list, have: int, want: int) -> None:
    """Append template entries to the big session's history until it holds ``want`` messages."""
    from statekeel.core import layout
    from statekeel.protocol import Entry, LoadEntries

    log = layout.history_log("big")
    seq = have + 1
    while seq <= want:
        n = min(MESSAGE_CHUNK, want - seq + 1)
        batch = tuple(
            Entry(log, seq + i, entries[(seq + i) % len(entries)].data, entries[(seq + i) % len(entries)].codec,
                  time.time())
            for i in range(n)
        )
        store.backend.apply([LoadEntries(log, batch)])
        seq += n


def session_id(i: int) -> str:
    return f"s{i:07d}"


def grow_sessions(store, records: list, entries: list, have: int, want: int, chunk: int = SESSION_CHUNK,
                  bulk: bool = False) -> None:
    """Clone the template session (its records and two messages) as sessions ``have..want-1``."""
    from dataclasses import replace

    from statekeel.core import layout
    from statekeel.protocol import Entry, Load, LoadEntries

    src_prefix, src_index = layout.session_prefix(TEMPLATE), layout.session_index_key(TEMPLATE)
    for lo in range(have, want, chunk):
        ops: list = []
        for i in range(lo, min(lo + chunk, want)):
            sid = session_id(i)
            for r in records:
                key = layout.session_index_key(sid) if r.key == src_index else \
                    layout.session_prefix(sid) + r.key[len(src_prefix):]
                ops.append(Load(replace(r, key=key)))
            log = layout.history_log(sid)
            ops.append(LoadEntries(log, tuple(Entry(log, e.seq, e.data, e.codec, e.created_at) for e in entries[:2])))
        if bulk:
            dynamodb_bulk_load(store, ops)
        else:
            store.backend.apply(ops)


def dynamodb_bulk_load(store, ops: list) -> None:
    """``--dynamodb-bulk``: the items ``store.backend.apply(ops)`` would write to an empty
    table — planned by the backend's own planner, so the stored bytes are identical — written
    with BatchWriteItem instead of one TransactWriteItems (moto deep-copies the whole table for
    every item of a transaction, so building 10^4 sessions through ``apply`` is quadratic)."""
    from statekeel.backends.dynamodb.plan import Snapshot, plan

    table = store.storage._table
    planned = plan(ops, Snapshot(), time.time(), table.name, split=False)
    items = [w["Put"]["Item"] for w in planned.core if "Put" in w] + planned.entries
    for i in range(0, len(items), 25):
        todo = {table.name: [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]}
        while todo:
            todo = table.client.batch_write_item(RequestItems=todo).get("UnprocessedItems") or {}


# -- timing -------------------------------------------------------------------
CALLS = ("history_last20", "sessions_first_page", "session_info")


def calls_of(store, n_sessions: int) -> dict:
    """The three timed calls on one grown store (checked once: they return what was built)."""
    big = store.find_session("big")
    middle = session_id(n_sessions // 2)
    assert big is not None and len(big.history(last=20)) == 20
    assert len(store.sessions().items) == 50 and store.session_info(middle) is not None, middle
    return {
        "history_last20": lambda: big.history(last=20),
        "sessions_first_page": lambda: store.sessions(),
        "session_info": lambda: store.session_info(middle),
    }


def measure(stores: dict, calls: int) -> dict:
    """Median ms of each call on each store, the stores taken in turn call by call, so that the
    machine's drift (other work, CPU frequency) falls on every size alike; plus each first call."""
    first = {(n, name): _ms(fn) for n, fns in stores.items() for name, fn in fns.items()}
    lat: dict = {key: [] for key in first}
    for _ in range(calls):
        for n, fns in stores.items():
            for name, fn in fns.items():
                lat[(n, name)].append(_ms(fn))
    return {key: (statistics.median(v), first[key]) for key, v in lat.items()}


def wire_counts(store, fns: dict) -> dict:
    """DynamoDB: the requests each call sends and the items their replies carry (``Count``;
    BatchGetItem: the items returned) — what DynamoDB bills, counted on the real client."""
    seen: list = []
    events = store.storage._table.client.meta.events

    def reply(model, parsed, **_):
        count = parsed.get("Count")
        if count is None:
            count = sum(len(v) for v in parsed.get("Responses", {}).values()) + (1 if parsed.get("Item") else 0)
        seen.append(int(count))

    events.register("after-call.dynamodb", reply)
    out = {}
    for name, fn in fns.items():
        seen.clear()
        fn()
        out[name] = (len(seen), sum(seen))
    events.unregister("after-call.dynamodb", reply)
    return out


def _ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


# -- one backend --------------------------------------------------------------
def build(url: str, n: int, n_sessions: int, bulk: bool = False) -> float:
    """A store at ``url`` with a template, a ``big`` session of ``n`` messages and ``n_sessions``
    sessions; returns the seconds it took."""
    import statekeel

    t = time.perf_counter()
    store = statekeel.open(url)
    try:
        records, entries = template(store)
        store.session("big")
        grow_messages(store, entries, 0, n)
        chunk = DYNAMODB_SESSION_CHUNK if url.startswith("dynamodb:") else SESSION_CHUNK
        grow_sessions(store, records, entries, 0, n_sessions, chunk, bulk)
    finally:
        store.close()
    return time.perf_counter() - t


def run_backend(urls: dict, max_sessions: int, calls: int, backend: str, bulk: bool = False) -> list[dict]:
    """Build one store per size (``urls``: size -> URL), then time them side by side."""
    import statekeel

    built = {n: build(url, n, min(n, max_sessions), bulk and backend == "dynamodb") for n, url in urls.items()}
    opened = {n: statekeel.open(url) for n, url in urls.items()}  # reopened: nothing cached from the build
    try:
        fns = {n: calls_of(st, min(n, max_sessions)) for n, st in opened.items()}
        found = measure(fns, calls)
        billed = {n: wire_counts(opened[n], fns[n]) for n in urls} if backend == "dynamodb" else {}
    finally:
        for st in opened.values():
            st.close()
    rows = []
    for n in urls:
        row = {"backend": backend, "messages": n, "sessions": min(n, max_sessions), "build_s": round(built[n], 1)}
        for name in CALLS:
            median, first = found[(n, name)]
            row[f"{name}_ms"], row[f"{name}_first_ms"] = round(median, 4), round(first, 3)
            if n in billed:
                row[f"{name}_requests"], row[f"{name}_items_read"] = billed[n][name]
        rows.append(row)
        print(json.dumps(row), flush=True)
    smallest = rows[0]
    for row in rows:
        for name in CALLS:
            row[f"{name}_vs_first"] = round(row[f"{name}_ms"] / smallest[f"{name}_ms"], 2)
    return rows


def store_urls(backend: str, steps: list[int], servers: dict, stack) -> dict:
    """A new, empty store of ``backend`` per size (temp dirs, PostgreSQL schemas, Redis prefixes)."""
    if backend in ("sqlite", "files"):
        d = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"skg-{backend}-"))
        return {n: f"sqlite:///{d}/growth{n}.db" if backend == "sqlite" else f"file://{d}/store{n}" for n in steps}
    if backend == "postgres":
        import psycopg

        with psycopg.connect(servers["postgres"], autocommit=True) as c:
            for n in steps:
                c.execute(f"DROP SCHEMA IF EXISTS skg_{n} CASCADE")
        sep = "&" if "?" in servers["postgres"] else "?"
        return {n: f"{servers['postgres']}{sep}schema=skg_{n}" for n in steps}
    if backend == "dynamodb":
        return {n: servers["dynamodb"].url(f"skg{n}") for n in steps}  # moto copies the table per transaction
    from benchmarks.systems.redis_peers import prepare

    prepare(servers["redis"])
    sep = "&" if "?" in servers["redis"] else "?"
    return {n: f"{servers['redis']}{sep}prefix=skg{n}" for n in steps}


def table(rows: list[dict]) -> str:
    head = ("| backend | messages | sessions | history(last=20) ms | sessions() page ms | session_info ms | build s |\n"
            "|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['messages']:,} | {r['sessions']:,} | {r['history_last20_ms']:.3f}"
            f" ({r['history_last20_vs_first']:.2f}×) | {r['sessions_first_page_ms']:.3f}"
            f" ({r['sessions_first_page_vs_first']:.2f}×) | {r['session_info_ms']:.3f}"
            f" ({r['session_info_vs_first']:.2f}×) | {r['build_s']} |"
        )
        if "history_last20_requests" in r:
            lines.append("| ↳ requests / items read | | | " + " | ".join(
                f"{r[f'{name}_requests']} / {r[f'{name}_items_read']}" for name in CALLS) + " | |")
    return "\n".join(lines)


def main(argv=None, servers: dict | None = None) -> list[dict]:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise SystemExit(f"unknown backend(s) {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    steps = sizes(args.max, args.min)
    rows: list[dict] = []
    with contextlib.ExitStack() as stack:
        if servers is None:
            from benchmarks.run import start_servers

            servers, errors = start_servers(backends, stack)
            for b, err in errors.items():
                print(f"# skipped {b}: {err}", file=sys.stderr)
        if "dynamodb" in backends and "dynamodb" not in servers:
            from statekeel.testing.servers.dynamodb import DynamoDBServer

            servers = {**servers, "dynamodb": stack.enter_context(DynamoDBServer())}
        for backend in backends:
            if backend in ("postgres", "redis") and backend not in servers:
                continue
            urls = store_urls(backend, steps, servers, stack)
            rows += run_backend(urls, args.max_sessions, args.calls, backend, args.dynamodb_bulk)
    print(table(rows), file=sys.stderr)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"rows": rows, "argv": sys.argv, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                      fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
