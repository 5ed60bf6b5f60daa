"""The DynamoDB backend itself: reads (:mod:`.reads`), batches planned by :mod:`.plan` and
committed with TransactWriteItems, housekeeping and migrations (:mod:`.schema`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Final

from ...errors import ConflictError, InvalidInputError, MigrationRequiredError, StatekeelError, UnavailableError
from ...protocol import (
    Append, Backend, Delete, Entry, Expire, Load, LoadEntries, LogInfo, MigrationStatus, Op, OpResult, Put,
    Record, Rewrite, Touch, Trim, op_target,
)  # fmt: skip
from ...protocol.checks import check_ops
from .._closed import Closed, closed
from .._url import ParsedURL
from . import schema
from .config import client, parse_config
from .errors import RETRYABLE, error_code
from .fastpath import fast_put, put_request
from .intents import Intents
from .tags import tag_write, tagged, write_key
from .items import TRANSACTION_BYTES, Head, Item, entry_key, entry_of, entry_prefix, head_item, head_key, head_of
from .items import listed_space, record_item, record_key, record_of
from .plan import Plan, Snapshot, plan, steps
from .reads import Table
from ...protocol.jitter import backoff

__all__ = ["DynamoDBBackend", "TRANSACTION_LIMIT"]

TRANSACTION_LIMIT: Final = 100
"""Items one TransactWriteItems may hold (a DynamoDB limit)."""
_MAX_ATTEMPTS: Final = 1000
_CACHED_HEADS: Final = 10_000
_EAGER_RETRIES: Final = 3


def _size(items: Sequence[Item]) -> int:
    """Rough byte size of items (data dominates)."""
    return sum(len(repr(item)) for item in items)


def _keys_of(op: Op) -> list[Item]:
    """The items ``op`` depends on (an Expire's are listed by prefix instead)."""
    if isinstance(op, (Put, Delete)):
        return [record_key(op.key)]
    if isinstance(op, Touch):
        return [record_key(op.key), head_key(op.key)]
    if isinstance(op, Load):
        return [record_key(op.record.key)]
    if isinstance(op, Rewrite):
        return [head_key(op.log), entry_key(op.log, op.seq)]
    if isinstance(op, (Append, Trim, LoadEntries)):
        return [head_key(op.log)]
    return []


def _current(write: Item, snap: Snapshot) -> Item | None:
    """The item a planned write replaces, as stored (None: absent) — as read, or else (a header this
    handle remembers writing) as written."""
    (body,) = write.values()
    if body["ConditionExpression"] == "attribute_not_exists(pk)":
        return None
    key = write_key(write)
    found = snap.raw.get((key["pk"]["S"], key["sk"]["S"]))
    if found is not None:
        return found
    kind, name = key["sk"]["S"][0], key["sk"]["S"][1:]
    if kind == "h" and snap.heads.get(name) is not None:
        return head_item(snap.heads[name])  # type: ignore[arg-type]
    stored = snap.records.get(name)
    assert kind == "k" and stored is not None, "a conditioned write names an item the batch read"
    return record_item(stored.record, stored.checksum or 0, stored.token)


def _fill(op: Op, snap: Snapshot, found: dict[tuple[str, str], Item]) -> None:
    """Put what was read for ``op`` into ``snap`` (None where nothing is stored)."""
    for key in _keys_of(op):
        kind, name = key["sk"]["S"][0], key["sk"]["S"][1:]
        raw = found.get((key["pk"]["S"], key["sk"]["S"]))
        if kind == "k" and name not in snap.records:
            snap.records[name] = None if raw is None else record_of(name, raw)
        elif kind == "h" and name not in snap.heads:
            snap.heads[name] = None if raw is None else head_of(name, raw)
        elif kind == "e" and isinstance(op, Rewrite):
            snap.entries[(op.log, op.seq)] = None if raw is None else entry_of(op.log, raw)


class DynamoDBBackend(Backend):
    """Records, logs and atomic batches in one DynamoDB table (see the package docstring)."""

    short_messages = True  # values are opaque binary attributes: plain chat messages take the short form

    def __init__(self, url: ParsedURL, *, migrate: bool = True) -> None:
        self.url = url.redacted
        config = parse_config(url)
        self._table = Table(client(config), config.table)
        self.limit = TRANSACTION_LIMIT
        """Items one transaction holds; a larger batch commits through an intent (:mod:`.intents`).
        Only tests lower it (moto copies the whole table once per item of a transaction)."""
        self._intents = Intents(self._table, lambda: self.limit)
        self._heads: dict[str, Head | None] = {}
        """Log headers as this handle last wrote them: an append-only batch uses them instead of
        reading (its write is conditioned on their token, so a stale one costs a retry, never data)."""
        self._layout_ok = False
        """Whether the table's layout is known current (set by migrating, or by the first check)."""
        if migrate:  # else a missing table is MigrationRequiredError at the first call (see .errors)
            self.migrate()

    # -- reads ---------------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        self._check_layout((key,))
        return self._table.get(key, time.time(), include_expired)

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        self._check_layout(keys)
        return self._table.get_many(keys, time.time())

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        self._check_layout((prefix,))
        return self._table.scan(prefix, after, limit, time.time())

    def read(self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None,
             reverse: bool = False) -> list[Entry]:  # fmt: skip
        self._check_layout((log,))
        return self._table.read(log, start, stop, limit, reverse, time.time())

    def log_info(self, log: str) -> LogInfo | None:
        self._check_layout((log,))
        head = self._table.visible_head(log, time.time())
        return None if head is None else head.info()

    def log_info_many(self, logs: Sequence[str]) -> list[LogInfo | None]:
        self._check_layout(logs)
        return self._table.visible_heads(logs, time.time())

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        self._check_layout((prefix,))
        return self._table.scan_logs(prefix, after, limit, time.time())

    def _check_layout(self, names: Sequence[str]) -> None:
        """Refuse to touch a listed namespace (:data:`.items.LISTED`) of a table still at schema
        version 1 — a handle opened with ``migrate=False`` would not find its items, which version 2
        moved — with the command that fixes it. One GetItem per handle, only if such a name comes."""
        if self._layout_ok or not any(listed_space(name) is not None for name in names):
            return
        version = schema.recorded(self._table)
        if version is not None and version < schema.SCHEMA_VERSION:
            raise MigrationRequiredError(
                f"{self.url} is at schema version {version}; this statekeel keeps the events/, memory/ and "
                f"lgstore/ namespaces in sharded item collections (version {schema.SCHEMA_VERSION}) and would "
                "not find them. Nothing was read or written: run `statekeel migrate URL` (or open with "
                "migrate=True) once, with no older statekeel writing"
            )
        self._layout_ok = True

    # -- writes --------------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        """Read what the batch depends on, plan it, commit it conditioned on what was read;
        when another writer changed an item in between, read again and re-plan."""
        check_ops(ops, now)
        steps(ops)
        if not self._layout_ok:
            self._check_layout([op_target(op) for op in ops])
        now = time.time() if now is None else now
        if len(ops) == 1 and isinstance(ops[0], Put):
            put = ops[0]
            request = put_request(self._table.name, put, now)
            if request is not None:
                done = self._table.call(lambda: fast_put(self._table.client, request, put, now))
                if done is not None:
                    return [done]
        return self._apply_planned(ops, now)

    def _apply_planned(self, ops: Sequence[Op], now: float) -> list[OpResult]:
        cached, snap = True, None
        reusable = not any(isinstance(op, (Expire, Trim, Rewrite)) for op in ops)
        for attempt in range(_MAX_ATTEMPTS):
            if snap is None or not (reusable and snap.refreshed):
                snap = self._snapshot(ops, now, cached=cached)
            snap.refreshed = False
            try:
                planned = self._plan(ops, snap, now)
            except ConflictError:
                if snap.cached:  # judged on headers this handle remembered: judge again on what is stored
                    cached = False
                    continue
                raise
            cached = True  # a lost race refreshes the remembered headers from the cancellation
            if self._commit(planned, snap):
                self._remember(planned)
                self._collect(planned.garbage)
                return planned.results
            self._back_off(attempt)
        raise UnavailableError(
            f"a batch lost {_MAX_ATTEMPTS} races in a row with other writers of the same items; "
            "nothing was written — retry, or spread the writers over more sessions"
        )

    @staticmethod
    def _back_off(attempt: int) -> None:
        """After a lost race the batch is planned on the header the cancellation returned, as fresh
        as the winner's: retry at once (a loser that sleeps while the winner writes again at once
        loses every time — starvation), and only after repeated losses wait a little, with jitter."""
        if attempt >= _EAGER_RETRIES:
            time.sleep(backoff(attempt))

    def _remember(self, planned: Plan) -> None:
        if len(self._heads) > _CACHED_HEADS:
            self._heads.clear()
        self._heads.update(planned.heads)

    def _snapshot(self, ops: Sequence[Op], now: float, cached: bool = False) -> Snapshot:
        snap = Snapshot()
        if all(isinstance(op, Append) for op in ops):
            if cached and all(self._heads.get(op.log) is not None for op in ops):  # type: ignore[union-attr]
                snap.heads.update((op.log, self._heads[op.log]) for op in ops)  # type: ignore[union-attr]
                snap.cached = True
                return snap
            for op in ops:
                self._heads.pop(op.log, None)  # type: ignore[union-attr]
        found = self._settled([key for op in ops for key in _keys_of(op)])
        snap.raw.update(found)
        for op in ops:
            if isinstance(op, Expire):
                self._list_under(op.prefix, snap)
            else:
                _fill(op, snap, found)
        for op in ops:
            if isinstance(op, Trim) and snap.heads.get(op.log) is not None:
                head = snap.heads[op.log]
                assert head is not None
                snap.seqs[op.log] = self._table.seqs(head, head.first, min(op.before, head.last + 1))
        return snap

    def _settled(self, keys: Sequence[Item]) -> dict[tuple[str, str], Item]:
        """The items of ``keys``, none of them tagged by a larger batch (:mod:`.intents`): a tagged
        one is settled first — finished, or waited for while its writer is at work — and read again."""
        while True:
            found = self._table.get_items(keys)
            if not self._intents.settle(found.values()):
                return found

    def _list_under(self, prefix: str, snap: Snapshot) -> None:
        """Every record and log header under ``prefix`` (an Expire needs them all), none tagged."""
        while True:
            raw = [*self._table.prefixed("k", prefix), *self._table.prefixed("h", prefix)]
            if not self._intents.settle(raw):
                break
        snap.raw.update(((i["pk"]["S"], i["sk"]["S"]), i) for i in raw)
        records = [record_of(i["sk"]["S"][1:], i) for i in raw if i["sk"]["S"].startswith("k")]
        heads = [head_of(i["sk"]["S"][1:], i) for i in raw if i["sk"]["S"].startswith("h")]
        snap.records.update((r.record.key, r) for r in records)
        snap.heads.update((h.log, h) for h in heads)
        snap.under[prefix] = ([r.record.key for r in records], [h.log for h in heads])

    def _plan(self, ops: Sequence[Op], snap: Snapshot, now: float) -> Plan:
        planned = plan(ops, snap, now, self._table.name, split=False)
        everything = [*planned.core, *planned.entries]
        if len(everything) <= self.limit and _size(everything) <= TRANSACTION_BYTES:
            return planned
        planned = plan(ops, snap, now, self._table.name, split=True)
        if (len(planned.core) > self.limit or _size(planned.core) > TRANSACTION_BYTES) and any(
            isinstance(op, Rewrite) for op in ops
        ):
            raise InvalidInputError(
                f"this batch rewrites log entries and writes {len(planned.core)} items in all; DynamoDB commits at "
                f"most {self.limit} items (and 4 MB) in one transaction, and a batch that rewrites entries "
                "must fit in one. Nothing was written: split it into several apply() calls"
            )
        return planned

    def _commit(self, planned: Plan, snap: Snapshot) -> bool:
        """Write the plan; False when a condition failed (another writer got there first)."""
        if len(planned.core) > self.limit or _size(planned.core) > TRANSACTION_BYTES:
            return self._commit_large(planned, snap)
        if planned.entries and len(planned.core) + len(planned.entries) > self.limit or (
            planned.entries and _size([*planned.core, *planned.entries]) > TRANSACTION_BYTES
        ):
            self._write_ahead(planned.entries)  # invisible: a new generation the header does not list yet
            return self._transact(planned.core, snap)
        return self._transact([*planned.core, *({"Put": {"TableName": self._table.name, "Item": e}}
                                                 for e in planned.entries)], snap)  # fmt: skip

    def _commit_large(self, planned: Plan, snap: Snapshot) -> bool:
        """Commit a batch too large for one transaction through an intent (:mod:`.intents`): tag
        every item it writes, then commit the intent — the one write that makes the batch visible."""
        snap.refreshed = False  # a lost race reads everything again
        if planned.entries:
            self._write_ahead(planned.entries)  # invisible: a new generation the header does not list yet
        intent = self._intents.begin([write_key(w) for w in planned.core])
        try:
            committed = self._intents.tag(intent, [tag_write(w, intent, _current(w, snap)) for w in planned.core])
            committed = committed and self._intents.commit(intent)
        except Exception:
            if self._intents.committed(intent):  # the commit went through before the error
                self._finish(intent)
                return True
            self._intents.abort(intent, own=True)
            self._intents.finish(intent)  # take the tags back, then report
            raise
        if not committed:
            self._intents.abort(intent, own=True)
            self._intents.finish(intent)
            return False
        self._finish(intent)
        return True

    def _finish(self, intent: str) -> None:
        """Untag a committed batch's items. A failure here is no failure of the batch: readers resolve
        the tags left, and the next writer of an item or ``purge_expired`` finishes them."""
        try:
            self._intents.finish(intent)
        except StatekeelError:
            pass

    def _transact(self, items: Sequence[Item], snap: Snapshot | None = None) -> bool:
        if not items:
            return True
        return self._table.call(lambda: self._try_transact(items, snap))

    def _try_transact(self, items: Sequence[Item], snap: Snapshot | None) -> bool:
        try:
            self._table.client.transact_write_items(TransactItems=list(items), ClientRequestToken=uuid.uuid4().hex)
        except Exception as exc:
            code = error_code(exc)
            if code == "TransactionConflictException":
                return False
            if code == "TransactionCanceledException":
                reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
                if {r.get("Code", "None") for r in reasons} <= RETRYABLE:
                    self._refresh(items, reasons, snap or Snapshot())
                    return False
            raise
        return True

    def _refresh(self, items: Sequence[Item], reasons: Sequence[Item], snap: Snapshot) -> None:
        """Put what a cancelled transaction found changed (it returns the stored items) into the
        remembered headers and the batch's snapshot: the retry needs no read, so a writer that
        lost a race is as quick as the one that won it (no starvation)."""
        snap.refreshed = True
        for sent, reason in zip(items, reasons):
            body = next(iter(sent.values()))
            sk = (body.get("Key") or body.get("Item") or {}).get("sk", {}).get("S", "")
            if reason.get("Code") != "ConditionalCheckFailed":
                continue
            found, name = reason.get("Item"), sk[1:]
            if tagged(found) is not None:  # locked by a larger batch: read (and settle) everything again
                self._heads.pop(name, None)
                snap.refreshed = False
                continue
            if found:
                snap.raw[(found["pk"]["S"], found["sk"]["S"])] = found
            else:
                snap.raw.pop(((body.get("Key") or body.get("Item") or {}).get("pk", {}).get("S", ""), sk), None)
            if sk.startswith("h"):
                self._heads[name] = snap.heads[name] = None if not found else head_of(name, found)
            elif sk.startswith("k"):
                snap.records[name] = None if not found else record_of(name, found)
            else:
                snap.refreshed = False  # an entry: read everything again

    def _write_ahead(self, entries: Sequence[Item]) -> None:
        """BatchWriteItem in pages of 25; unprocessed items are sent again."""
        self._table.batch_write([{"PutRequest": {"Item": e}} for e in entries])

    def _collect(self, garbage: Sequence[tuple[Item, str]]) -> None:
        """Delete trimmed entries, each only if it still carries the generation it was trimmed in."""
        for i in range(0, len(garbage), TRANSACTION_LIMIT):
            chunk = [self._delete_if(key, gen) for key, gen in garbage[i : i + TRANSACTION_LIMIT]]
            if not self._transact(chunk):
                for one in chunk:
                    self._transact([one])

    def _delete_if(self, key: Item, gen: str) -> Item:
        return {"Delete": {"TableName": self._table.name, "Key": key, "ConditionExpression": "g = :g",
                           "ExpressionAttributeValues": {":g": {"S": gen}}}}  # fmt: skip

    # -- housekeeping --------------------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        self._intents.sweep()  # a batch larger than one transaction whose writer died: finished first
        now, count = time.time(), 0
        for item in self._expired(now):
            if count >= limit:
                break
            if tagged(item) is not None:
                continue
            kind, key = item["sk"]["S"][0], {"pk": item["pk"], "sk": item["sk"]}
            if kind == "k":
                count += self._transact([self._delete_token(key, item["w"]["S"])])
            else:
                count += self._purge_log(item)
        return count

    def _expired(self, now: float) -> Iterator[Item]:
        return self._table.pages(
            "scan", FilterExpression="ea <= :now AND (begins_with(sk, :k) OR begins_with(sk, :h))",
            ExpressionAttributeValues={":now": {"N": repr(now)}, ":k": {"S": "k"}, ":h": {"S": "h"}},
        )  # fmt: skip

    def _delete_token(self, key: Item, write_token: str) -> Item:
        return {"Delete": {"TableName": self._table.name, "Key": key,
                           "ConditionExpression": "w = :w AND attribute_not_exists(xt)",
                           "ExpressionAttributeValues": {":w": {"S": write_token}}}}  # fmt: skip

    def _purge_log(self, item: Item) -> bool:
        """Delete an expired log's header (if unchanged since listed), then its entries of
        the generations it listed — never entries of a log created again meanwhile."""
        head = head_of(item["sk"]["S"][1:], item)
        prefix = entry_prefix(head.log)
        gens = {g for _, g in head.gens}
        found = self._table.between(item["pk"]["S"], prefix, prefix + "\U0010ffff", ProjectionExpression="pk, sk, g")
        doomed = [({"pk": e["pk"], "sk": e["sk"]}, e["g"]["S"]) for e in found if e.get("g", {}).get("S") in gens]
        if not self._transact([self._delete_token({"pk": item["pk"], "sk": item["sk"]}, head.token)]):
            return False
        self._collect(doomed)
        return True

    def integrity_check(self) -> list[str]:
        """Large batches (:mod:`.intents`) a stopped writer left unfinished; empty when there are none."""
        return self._intents.unfinished()

    def repair(self) -> str:
        """Finish the large batches stopped writers left (what ``purge_expired`` also does first)."""
        done = self._intents.sweep()
        return f"finished {done} large batch(es) left by stopped writers" if done else "nothing to repair"

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        status = schema.migrate(self._table, self.url, check=check)
        self._layout_ok = status.up_to_date
        return status

    def close(self) -> None:
        """Drop the client (boto3 holds pooled HTTP connections only); later calls raise
        StoreClosedError instead of quietly reconnecting. Idempotent."""
        table, self._table = self._table, closed(self.url)
        if not isinstance(table, Closed):
            table.client.close()
