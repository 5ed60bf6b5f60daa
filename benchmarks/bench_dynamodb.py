"""Per-turn cost of statekeel's dynamodb:// backend against raw boto3 doing the same writes (issue 17).

Both write the reference turns (benchmarks/workload.py: a ~200-byte user and a
~800-byte assistant message) to the same local DynamoDB-API server (moto, started
here), each to its own table, *interleaved* turn by turn in alternating order so
server and CPU noise fall on both alike.

* statekeel: ``session.append(user, assistant)`` — ordered seqs, checksums, expiry
  fields, atomic with the log header.
* raw boto3: what a careful hand-written store needs for the same guarantee — one
  ``TransactWriteItems`` putting the two messages and moving the session's seq
  counter conditioned on the value it last wrote (the client keeps it).

Reported: median ms per turn for each, the median of per-turn ratios, round trips
and bytes on the wire (request + response bodies) per turn, and stored bytes per
turn (sum of item sizes as DynamoDB counts them: attribute names + values).

    python benchmarks/bench_dynamodb.py --turns 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3  # noqa: E402

import statekeel  # noqa: E402
from statekeel.testing.servers.dynamodb import DynamoDBServer  # noqa: E402
from workload import make_turns  # noqa: E402


class Wire:
    """Counts round trips and body bytes of one boto3 client."""

    def __init__(self, client: Any) -> None:
        self.calls = 0
        self.sent = 0
        self.received = 0
        client.meta.events.register("before-send.dynamodb.*", self._send)
        client.meta.events.register("after-call.dynamodb.*", self._reply)

    def _send(self, request: Any, **_: Any) -> None:
        self.calls += 1
        self.sent += len(request.body or b"")

    def _reply(self, http_response: Any, **_: Any) -> None:
        self.received += len(http_response.content or b"")


class RawStore:
    """The hand-written baseline: messages under pk=session, sk=m<seq>, a counter item."""

    def __init__(self, endpoint: str, table: str) -> None:
        self.client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
        self.table = table
        self.client.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
        )  # fmt: skip
        self.last = 0

    def append(self, session: str, *messages: dict[str, str]) -> None:
        now = repr(time.time())
        puts = [{"Put": {"TableName": self.table, "Item": {
            "pk": {"S": session}, "sk": {"S": f"m{self.last + 1 + i:020d}"},
            "body": {"S": json.dumps(m)}, "ts": {"N": now}}}} for i, m in enumerate(messages)]  # fmt: skip
        counter = {"Update": {
            "TableName": self.table, "Key": {"pk": {"S": session}, "sk": {"S": "#seq"}},
            "UpdateExpression": "SET n = :n",
            "ConditionExpression": "attribute_not_exists(n) OR n = :prev",
            "ExpressionAttributeValues": {":n": {"N": str(self.last + len(messages))}, ":prev": {"N": str(self.last)}},
        }}  # fmt: skip
        self.client.transact_write_items(TransactItems=[*puts, counter])
        self.last += len(messages)


def _item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute name lengths plus value sizes."""
    size = 0
    for name, value in item.items():
        (kind, v), = value.items()
        size += len(name) + (len(v) if kind in ("S", "B") else len(str(v)) // 2 + 1)
    return size


def _stored(client: Any, table: str) -> int:
    pages = client.get_paginator("scan").paginate(TableName=table)
    return sum(_item_bytes(i) for page in pages for i in page["Items"])


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(turns: int) -> dict[str, Any]:
    with DynamoDBServer() as server:
        store = statekeel.open(server.url("bench_statekeel"))
        raw = RawStore(server.endpoint, "bench_raw")
        session = store.session("bench")
        sk_client = store.storage._table.client  # type: ignore[attr-defined]
        wires = {"statekeel": Wire(sk_client), "raw boto3": Wire(raw.client)}
        lat: dict[str, list[float]] = {"statekeel": [], "raw boto3": []}
        for i, (user, assistant) in enumerate(make_turns(turns)):
            msgs = ({"role": "user", "content": user}, {"role": "assistant", "content": assistant})
            runs = {"statekeel": lambda: session.append(*msgs), "raw boto3": lambda: raw.append("bench", *msgs)}
            for name in (list(runs) if i % 2 else list(runs)[::-1]):
                lat[name].append(_timed(runs[name]))
        stored = {"statekeel": _stored(sk_client, "bench_statekeel"), "raw boto3": _stored(raw.client, "bench_raw")}
        store.close()
    out: dict[str, Any] = {"turns": turns, "load_avg_1m": round(os.getloadavg()[0], 1)}
    for name, values in lat.items():
        w = wires[name]
        out[name] = {
            "median_ms_per_turn": round(statistics.median(values) * 1e3, 2),
            "round_trips_per_turn": round(w.calls / turns, 2),
            "wire_bytes_per_turn": round((w.sent + w.received) / turns),
            "stored_bytes_per_turn": round(stored[name] / turns),
        }
    out["ratio_median_per_turn"] = round(statistics.median(a / b for a, b in zip(lat["statekeel"], lat["raw boto3"])), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    result = run(args.turns)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
