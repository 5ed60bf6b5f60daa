"""Batches larger than one transaction: a commit marker (the *intent*) and tagged items.

TransactWriteItems holds at most 100 items. A batch that writes more records and log
headers than that — an ``Expire`` over a long session (``delete()``, ``clear()``, the
renewal of a session opened with ``ttl=``), a ``restore()`` that changes hundreds of
keys — commits through an intent, atomically:

1. **begin** — the intent item ``pk="#tx", sk="#<id>"`` is written *pending*, with a
   deadline, and the keys it will tag (pages ``sk="#<id>/<n>"``).
2. **tag** — every item the batch writes is tagged, in transactions of at most 100, on
   the condition the one-transaction commit would have used (the write token it was read
   with, or not existing) and on carrying no other tag: ``xt`` names the intent, ``xk``
   what becomes of the item (``put``, ``del``, ``keep``), ``xn`` its new attributes (its
   data left out when unchanged), ``x0`` marks an item that did not exist (a lock only).
   The item keeps its current attributes, which every reader sees until the commit; and
   it is locked — any other writer's condition fails on a tag.
3. **commit** — one conditional UpdateItem turns the intent *committed*: the commit
   point. From then on a reader that meets a tag reads the intent and sees ``xn``.
4. **finish** — each tagged item is rewritten to its new attributes and untagged
   (conditioned on its tag), then the intent and its key pages are deleted.

A crash before the commit leaves a pending intent: readers ignore its tags; a writer that
meets one waits until its deadline — :data:`_GRACE` seconds after its writer's last sign of
life: begin sets it, and every transaction of tags moves it on (the intent item is one of the
transaction's items, on the condition it is still pending) — then *aborts* it (conditioned on it still being
pending, so a late commit fails and its batch is planned again) and untags what it needs.
A crash after the commit leaves tags that readers resolve by reading the intent; writers
finish the items they meet, and ``purge_expired`` finishes whole intents. A tag also
removes the item's ``ttl`` attribute, so DynamoDB's TTL never deletes an item whose fate
an intent decides; untagging without the new attributes puts it back.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from ...errors import CorruptionError, InvalidInputError, UnavailableError
from .errors import RETRYABLE, error_code
from .items import TRANSACTION_BYTES, Item
from .reads import Table
from .tags import INTENT_PK, intent_key, settle_write, state_of, tagged
from ...protocol.jitter import JITTER

__all__ = ["Intents"]

_PAGE_KEYS: Final = 2_000
"""Keys per key page (about 100 bytes each: well under DynamoDB's 400 KB an item)."""
_WAIT: Final = 0.02
_GRACE: Final = 10.0
"""Seconds a pending intent stays out of other writers' reach after its writer last moved it on
(it was 30 s + 10 ms an item from begin: a crashed writer of a 10,000-item batch held its items
for two minutes). A live writer slower than this loses its intent and plans its batch again."""
_SETTLE_ATTEMPTS: Final = 200


def _chunks(items: Sequence[Item], limit: int) -> Iterable[list[Item]]:
    chunk: list[Item] = []
    size = 0
    for item in items:
        weight = len(repr(item))
        if chunk and (len(chunk) >= limit or size + weight > TRANSACTION_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += weight
    if chunk:
        yield chunk


class Intents:
    """Begin, tag, commit, abort and finish intents on one table (see the module docstring)."""

    def __init__(self, table: Table, limit: Callable[[], int]) -> None:
        self._table = table
        self._limit = limit

    # -- the intent item -----------------------------------------------------------
    def state(self, intent: str) -> tuple[str, float] | None:
        """``(state, deadline)`` of an intent; None once finished (deleted)."""
        item = self._table.get_item(intent_key(intent))
        return None if item is None else state_of(item)

    def committed(self, intent: str) -> bool:
        found = self.state(intent)
        return found is not None and found[0] == "committed"

    def begin(self, keys: Sequence[Item]) -> str:
        """Write a pending intent listing ``keys``; its id."""
        intent = secrets.token_hex(8)
        pages = [keys[i : i + _PAGE_KEYS] for i in range(0, len(keys), _PAGE_KEYS)]
        deadline = time.time() + _GRACE
        self._table.call(lambda: self._table.client.put_item(
            TableName=self._table.name, ConditionExpression="attribute_not_exists(pk)",
            Item={**intent_key(intent), "xs": {"S": "pending"}, "xd": {"N": repr(deadline)}, "xc": {"N": str(len(keys))}},
        ))  # fmt: skip
        self._table.batch_write([{"PutRequest": {"Item": {**intent_key(intent, n), "ks": {"L": [{"M": k} for k in page]}}}}
                           for n, page in enumerate(pages)])  # fmt: skip
        return intent

    def _move(self, intent: str, to: str, *, stale_only: bool) -> bool:
        """pending → ``to``, only if still pending (and, for another writer's intent, past its deadline)."""
        cond = "xs = :p" + (" AND xd < :now" if stale_only else "")
        values = {":p": {"S": "pending"}, ":to": {"S": to}, **({":now": {"N": repr(time.time())}} if stale_only else {})}
        return self._try(lambda: self._table.client.update_item(
            TableName=self._table.name, Key=intent_key(intent), UpdateExpression="SET xs = :to",
            ConditionExpression=cond, ExpressionAttributeValues=values,
        ), "ConditionalCheckFailedException")  # fmt: skip

    def commit(self, intent: str) -> bool:
        """The commit point: False when another writer aborted the intent (its deadline passed)."""
        return self._move(intent, "committed", stale_only=False)

    def abort(self, intent: str, *, own: bool) -> bool:
        return self._move(intent, "aborted", stale_only=not own)

    # -- tagging -------------------------------------------------------------------
    def tag(self, intent: str, writes: Sequence[Item]) -> bool:
        """Tag every item, a transaction at a time, each moving the intent's deadline on; False when
        a condition failed (an item changed since it was read, another intent holds it, or a writer
        aborted this intent past its deadline) — the caller aborts and plans again."""
        return all(self._transact([*chunk, self._alive(intent)]) == "ok" for chunk in _chunks(writes, self._limit() - 1))

    def _alive(self, intent: str) -> Item:
        """The transaction item that moves a pending intent's deadline :data:`_GRACE` s ahead."""
        return {"Update": {
            "TableName": self._table.name, "Key": intent_key(intent), "UpdateExpression": "SET xd = :d",
            "ConditionExpression": "xs = :p",
            "ExpressionAttributeValues": {":d": {"N": repr(time.time() + _GRACE)}, ":p": {"S": "pending"}},
        }}  # fmt: skip

    # -- finishing -----------------------------------------------------------------
    def finish(self, intent: str) -> None:
        """Give every item the intent tagged its fate, then delete the intent (committed or aborted)."""
        found = self.state(intent)
        if found is None or found[0] == "pending":
            return
        pages = self._table.pages("query", KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
                                  ExpressionAttributeValues={":pk": {"S": INTENT_PK}, ":sk": {"S": f"#{intent}/"}})  # fmt: skip
        done: list[Item] = []
        for page in pages:
            keys = [k["M"] for k in page["ks"]["L"]]
            for i in range(0, len(keys), 100):  # BatchGetItem's limit
                raw = self._table.get_items(keys[i : i + 100]).values()
                self.resolve([item for item in raw if tagged(item) == intent], found[0] == "committed")
            done.append({"pk": page["pk"], "sk": page["sk"]})
        self._table.batch_write([{"DeleteRequest": {"Key": k}} for k in done])
        self._table.call(lambda: self._table.client.delete_item(TableName=self._table.name, Key=intent_key(intent)))

    def resolve(self, items: Sequence[Item], committed: bool) -> None:
        """Rewrite tagged ``items`` (all of one intent) to their fate; one a tag already left is skipped."""
        writes = [settle_write(self._table.name, item, committed) for item in items]
        for chunk in _chunks(writes, self._limit()):
            if self._transact(chunk) == "ok":
                continue
            for one in chunk:  # an item was settled by someone else meanwhile, or was busy: one by one
                for _ in range(_SETTLE_ATTEMPTS):  # never leave a tag behind while the intent is deleted
                    if self._transact([one]) != "conflict":
                        break
                    time.sleep(_WAIT * JITTER.random())
                else:
                    raise UnavailableError(
                        "an item stayed busy with other transactions while statekeel finished a large batch on it; "
                        "nothing is lost (the batch's intent stays and readers resolve it) — retry, or run "
                        "`statekeel purge` later to finish it"
                    )

    def settle(self, items: Iterable[Item | None]) -> bool:
        """What a writer does with the tagged items it read before planning: finish those of a
        committed or aborted intent, abort a pending one past its deadline, wait a little for one
        still in time. True when any item was tagged (the caller reads them again)."""
        groups: dict[str, list[Item]] = {}
        for item in items:
            intent = tagged(item)
            if intent is not None and item is not None:
                groups.setdefault(intent, []).append(item)
        for intent, group in groups.items():
            found = self.state(intent)
            if found is None:  # finished meanwhile: the items are untagged now — unless the intent was lost
                again = self._table.get_items([{"pk": i["pk"], "sk": i["sk"]} for i in group]).values()
                lost = [i["sk"]["S"][1:] for i in again if tagged(i) == intent]
                if lost:
                    raise CorruptionError(
                        f"{lost[0]!r} is tagged by a large batch whose intent item ({INTENT_PK}/{intent}) is gone "
                        "from the table, so whether that batch committed is unknown; restore the item from a "
                        "backup (or delete it) — `statekeel doctor` lists what else it touched", lost[0],
                    )  # fmt: skip
                continue
            state, deadline = found
            if state == "pending" and (deadline > time.time() or not self.abort(intent, own=False)):
                time.sleep(_WAIT)  # its writer is still at work (or just finished): read again
                continue
            self.resolve(group, committed=state == "committed")  # a pending one was just aborted
        return bool(groups)

    def unfinished(self) -> list[str]:
        """The intents a stopped writer left (committed or aborted and not finished, or pending past
        their deadline), one line each — what ``statekeel doctor`` reports."""
        out = []
        for name, item in self._headers():
            state, deadline = state_of(item)
            if state == "pending" and deadline > time.time():
                continue  # its writer is at work
            seen = {"committed": "whole", "aborted": "not at all", "pending": "not at all (it never committed)"}[state]
            out.append(
                f"a batch of {item.get('xc', {}).get('N', '?')} items was left {state} by a writer that stopped "
                f"(intent {name}); readers see it {seen} — `statekeel doctor --repair` or `statekeel purge` "
                "finishes it"
            )
        return out

    def _headers(self) -> Iterable[tuple[str, Item]]:
        for item in self._table.pages("query", KeyConditionExpression="pk = :pk",
                                      ExpressionAttributeValues={":pk": {"S": INTENT_PK}}):  # fmt: skip
            name = item["sk"]["S"][1:]
            if "/" not in name:
                yield name, item

    def sweep(self) -> int:
        """Finish every committed or aborted intent and abort those pending past their deadline
        (a writer that crashed): what ``purge_expired`` does first. Returns how many were finished."""
        count = 0
        for name, item in list(self._headers()):
            if state_of(item)[0] == "pending" and not self.abort(name, own=False):
                continue  # its writer is at work (abort holds off until the deadline)
            self.finish(name)
            count += 1
        return count

    def _transact(self, items: list[Item]) -> str:
        """One TransactWriteItems: ``"ok"``, ``"failed"`` (a condition failed) or ``"conflict"``
        (another transaction was in the way); any other cancellation reason — an item too large — raises."""

        def run() -> str:
            try:
                self._table.client.transact_write_items(TransactItems=items)
            except Exception as exc:
                code = error_code(exc)
                reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
                codes = {r.get("Code", "None") for r in reasons}
                if code == "TransactionConflictException":
                    return "conflict"
                if code == "TransactionCanceledException" and codes <= RETRYABLE:
                    return "failed" if "ConditionalCheckFailed" in codes else "conflict"
                if "ValidationError" in codes:
                    raise InvalidInputError(
                        "DynamoDB refused an item of a batch too large for one transaction: while such a batch "
                        "commits, an item holds its old and new attributes together, and a record whose old and "
                        "new data exceed 400 KB cannot (nothing was written). Change that record on its own: "
                        f"split the batch ({exc})"
                    ) from None
                raise
            return "ok"

        return self._table.call(run)

    def _try(self, fn: Callable[[], object], *codes: str) -> bool:
        """Run a client call; False when it failed with one of ``codes`` (other errors translated)."""

        def run() -> bool:
            try:
                fn()
            except Exception as exc:
                if error_code(exc) in codes:
                    return False
                raise
            return True

        return self._table.call(run)
