"""Reads: records, log headers and entries, by GetItem, BatchGetItem and Query over sort-key ranges.

Every read is strongly consistent (``ConsistentRead``), filters expired items
itself (DynamoDB's TTL deletes lazily, up to days late) and verifies checksums.
A prefix that names a whole partition (``session/S/…``, ``idx/sessions/`` — the session,
run and decision indexes are partitions of their own) is a Query inside one item collection,
and so is any prefix inside the store-level namespaces ``keys/`` and ``subjects/`` (one fixed
item collection each, :func:`.items.namespace_pk`): the keystore probe every ``open`` makes
is a Query, O(result). A prefix spanning the partitions of a listed namespace (``events/``,
``memory/``, ``lgstore/``) merges the Queries of its :data:`.items.SHARDS` collections. A
listing asks each Query page for its limit, so a page costs O(page) read capacity. Any other
shorter prefix (``session/``, ``""``) is a Scan of the table, sorted here — O(table), which
only whole-store walks (copy, export, doctor, ``session/`` by hand) pay.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ...errors import CorruptionError, translate
from ...protocol import Entry, LogInfo, Record
from ...protocol.keys import partition, prefix_end
from .errors import map_error
from .items import Head, Item, Stored, alive, entry_key, head_key, head_of, record_key, record_of, verified
from .tags import intent_key, state_of, tagged, view
from .items import entry_of, listed_space, namespace_pk, seq_of, shard_pk, shard_pks

__all__ = ["Table"]

_T = TypeVar("_T")
_BATCH_GET = 100
_BATCH_WRITE = 25
_MAX_PAGE = 1000


def _page(limit: int) -> int:
    """Items a listing asks each Query page for: its limit (the caller stops there, so no second
    request unless expired items were skipped), at most 1,000 so one page stays one request."""
    return max(1, min(limit, _MAX_PAGE))


def _pks_of_prefix(prefix: str) -> list[str] | None:
    """The item collections holding every key that starts with ``prefix``: one when it names a
    partition (or a store-level namespace), every shard of a listed namespace when it spans its
    partitions (:data:`.items.LISTED`), None when nothing bounds it (a Scan of the table)."""
    fixed = namespace_pk(prefix)
    if fixed is not None:
        return [fixed]
    part, space = partition(prefix), listed_space(prefix)
    if prefix.startswith(part + "/"):
        return ["p" + part] if space is None else [shard_pk(space, part)]
    return None if space is None else shard_pks(space)


class Table:
    """One DynamoDB table and the low-level client that talks to it."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run a client call with its errors translated."""
        with translate(map_error):
            return fn()

    # -- item pages ---------------------------------------------------------------
    def pages(self, op: str, **kwargs: Any) -> Iterator[Item]:
        """Every item of a Query or Scan, page after page (LastEvaluatedKey).

        A ``Limit`` in ``kwargs`` bounds each page: without one DynamoDB returns up to 1 MB
        a page, so a caller that wants 50 items would pay to read thousands."""
        fn = getattr(self.client, op)
        while True:
            page = self.call(lambda: fn(TableName=self.name, ConsistentRead=True, **kwargs))
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def between(self, pk: str, lo: str, hi: str, **kwargs: Any) -> Iterator[Item]:
        """Items of partition ``pk`` with ``lo <= sk <= hi``, in sort-key order."""
        return self.pages(
            "query", KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":pk": {"S": pk}, ":lo": {"S": lo}, ":hi": {"S": hi}}, **kwargs,
        )  # fmt: skip

    def prefixed(self, kind: str, prefix: str, after: str | None = None, page: int | None = None) -> Iterator[Item]:
        """Items of ``kind`` (``k`` or ``h``) whose name starts with ``prefix`` and sorts after ``after``.

        A Query is paged lazily, ``page`` items a request (DynamoDB's 1 MB when None), so a
        caller that stops at its ``limit`` reads — and pays for — about that many items."""
        lo = kind + (max(prefix, after + "\0") if after is not None else prefix)
        hi = kind + prefix_end(prefix)
        pks = _pks_of_prefix(prefix)
        if pks is not None:  # the collections' Queries merged in key order, each paged lazily
            limit = {} if page is None else {"Limit": page}
            streams = [self.between(pk, lo, hi, **limit) for pk in pks]
            return streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda item: str(item["sk"]["S"]))
        found = self.pages(
            "scan", FilterExpression="sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":lo": {"S": lo}, ":hi": {"S": hi}},
        )  # fmt: skip
        return iter(sorted(found, key=lambda item: item["sk"]["S"]))

    def batch_write(self, requests: Sequence[Item]) -> None:
        """BatchWriteItem (``PutRequest``/``DeleteRequest`` elements) in pages of 25; unprocessed ones are sent again."""
        for i in range(0, len(requests), _BATCH_WRITE):
            todo: dict[str, Any] = {self.name: list(requests[i : i + _BATCH_WRITE])}
            while todo:
                page = self.call(lambda: self.client.batch_write_item(RequestItems=todo))
                todo = page.get("UnprocessedItems") or {}

    def get_item(self, key: Item) -> Item | None:
        found: Item | None = self.call(
            lambda: self.client.get_item(TableName=self.name, Key=key, ConsistentRead=True)
        ).get("Item")
        return found

    def get_items(self, keys: Sequence[Item]) -> dict[tuple[str, str], Item]:
        """BatchGetItem, 100 keys a request; unprocessed keys are asked again."""
        out: dict[tuple[str, str], Item] = {}
        unique = list({(k["pk"]["S"], k["sk"]["S"]): k for k in keys}.values())
        for i in range(0, len(unique), _BATCH_GET):
            todo: dict[str, Any] = {self.name: {"Keys": unique[i : i + _BATCH_GET], "ConsistentRead": True}}
            while todo:
                page = self.call(lambda: self.client.batch_get_item(RequestItems=todo))
                for item in page.get("Responses", {}).get(self.name, []):
                    out[(item["pk"]["S"], item["sk"]["S"])] = item
                todo = page.get("UnprocessedKeys") or {}
        return out

    def get_each(self, keys: Sequence[Item]) -> list[Item | None]:
        """:meth:`get_items`, the items in the order of ``keys`` (None for one not stored)."""
        found = self.get_items(keys)
        return [found.get((k["pk"]["S"], k["sk"]["S"])) for k in keys]

    def seen(self, item: Item | None, states: dict[str, bool | None]) -> Item | None:
        """What a reader sees of a stored item: itself or — tagged by a batch larger than one
        transaction (:mod:`.intents`) — its attributes before or after that batch, as the batch's
        intent says (``states``: the intents this read looked up, committed or not)."""
        while True:
            intent = tagged(item)
            if intent is None or item is None:
                return item
            if intent not in states:
                found = self.get_item(intent_key(intent))
                states[intent] = None if found is None else state_of(found)[0] == "committed"
            committed = states[intent]
            if committed is not None:
                return view(item, committed)
            del states[intent]  # finished since the item was read: it is untagged now, read it again
            again = self.get_item({"pk": item["pk"], "sk": item["sk"]})
            if again is not None and tagged(again) == intent:
                name = item["sk"]["S"][1:]
                raise CorruptionError(
                    f"{name!r} is tagged by a large batch whose intent item ({intent}) is gone from the table, "
                    "so whether that batch committed is unknown; restore the item from a backup (or delete it)",
                    name,
                )
            item = again

    # -- records ------------------------------------------------------------------
    def stored(self, key: str) -> Stored | None:
        item = self.seen(self.get_item(record_key(key)), {})
        return None if item is None else record_of(key, item)

    def get(self, key: str, now: float, include_expired: bool) -> Record | None:
        found = self.stored(key)
        if found is None or not (include_expired or alive(found.record.expires_at, now)):
            return None
        return verified(found)

    def get_many(self, keys: Sequence[str], now: float) -> list[Record | None]:
        out: list[Record | None] = []
        states: dict[str, bool | None] = {}
        for key, raw in zip(keys, self.get_each([record_key(k) for k in keys])):
            item = self.seen(raw, states)
            found = None if item is None else record_of(key, item)
            out.append(verified(found) if found is not None and alive(found.record.expires_at, now) else None)
        return out

    def scan(self, prefix: str, after: str | None, limit: int, now: float) -> list[Record]:
        out: list[Record] = []
        if limit <= 0:
            return out
        states: dict[str, bool | None] = {}
        for raw in self.prefixed("k", prefix, after, _page(limit)):
            item = self.seen(raw, states)
            if item is None:
                continue
            found = record_of(item["sk"]["S"][1:], item)
            if alive(found.record.expires_at, now):
                out.append(verified(found))
                if len(out) >= limit:
                    break
        return out

    # -- logs ---------------------------------------------------------------------
    def head(self, log: str) -> Head | None:
        item = self.seen(self.get_item(head_key(log)), {})
        return None if item is None else head_of(log, item)

    def visible_heads(self, logs: Sequence[str], now: float) -> list[LogInfo | None]:
        """:meth:`visible_head` of each of ``logs`` (as LogInfo), by BatchGetItem: one request
        per 100 logs instead of one each — what a page of a session listing reads."""
        out: list[LogInfo | None] = []
        states: dict[str, bool | None] = {}
        for log, raw in zip(logs, self.get_each([head_key(log) for log in logs])):
            item = self.seen(raw, states)
            head = None if item is None else head_of(log, item)
            visible = head is not None and alive(head.expires_at, now) and head.last >= head.first
            out.append(head.info() if visible and head is not None else None)
        return out

    def visible_head(self, log: str, now: float) -> Head | None:
        head = self.head(log)
        if head is None or not alive(head.expires_at, now) or head.last < head.first:
            return None
        return head

    def entries(self, head: Head, lo: int, hi: int) -> list[Entry]:
        """Visible entries with ``lo <= seq < hi``, ascending."""
        if hi <= lo:
            return []
        pk = entry_key(head.log, lo)["pk"]["S"]
        found = self.between(pk, entry_key(head.log, lo)["sk"]["S"], entry_key(head.log, hi - 1)["sk"]["S"])
        out = []
        for item in found:
            entry, gen = entry_of(head.log, item)
            if gen == head.gen_at(entry.seq):
                out.append(entry)
        return out

    def seqs(self, head: Head, lo: int, hi: int) -> list[int]:
        """Seqs of the visible entries with ``lo <= seq < hi`` (keys and generations only)."""
        if hi <= lo:
            return []
        pk = entry_key(head.log, lo)["pk"]["S"]
        found = self.between(pk, entry_key(head.log, lo)["sk"]["S"], entry_key(head.log, hi - 1)["sk"]["S"],
                             ProjectionExpression="sk, g")  # fmt: skip
        seqs = ((seq_of(item["sk"]["S"]), item["g"]["S"]) for item in found)
        return [seq for seq, gen in seqs if gen == head.gen_at(seq)]

    def read(self, log: str, start: int, stop: int | None, limit: int | None, reverse: bool, now: float) -> list[Entry]:
        head = self.visible_head(log, now)
        if head is None:
            return []
        lo = max(start, head.first)
        hi = head.last + 1 if stop is None else min(stop, head.last + 1)
        if limit is not None:
            lo, hi = (max(lo, hi - limit), hi) if reverse else (lo, min(hi, lo + limit))
        return self.entries(head, lo, hi)

    def scan_logs(self, prefix: str, after: str | None, limit: int, now: float) -> list[LogInfo]:
        out: list[LogInfo] = []
        if limit <= 0:
            return out
        states: dict[str, bool | None] = {}
        for raw in self.prefixed("h", prefix, after, _page(limit)):
            item = self.seen(raw, states)
            if item is None:
                continue
            head = head_of(item["sk"]["S"][1:], item)
            if alive(head.expires_at, now) and head.last >= head.first:
                out.append(head.info())
                if len(out) >= limit:
                    break
        return out
