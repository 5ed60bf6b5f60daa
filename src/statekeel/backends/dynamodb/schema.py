"""The table: created by :func:`migrate` with its TTL attribute enabled, and its schema version recorded.

Migrations are an ordered list whose index is the version: 1 creates the table and
enables TTL on ``ttl``; 2 moves the items of the listed namespaces (``events/``,
``memory/``, ``lgstore/``) from their per-partition collections ``p<partition>`` into
their sharded ones ``n<namespace>#<shard>`` (:data:`.items.LISTED`), so listing them is
a Query, not a table Scan. Step 2 Scans the table once; each item moves in a transaction
with its deletion, conditioned on the old item still existing and the new one not yet, so an
interrupted migration resumes where it stopped, two migrators at once never undo each other's
moves nor later writes, and the version is recorded only when every item has moved — and only
over an older one: a newer statekeel that migrated the table meanwhile is never set back (this
one then refuses the table with SchemaTooNewError). Run it with no older statekeel writing.
A table that exists with another key schema, or holds items but no schema item, is not a
statekeel store and is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

from ...errors import NotAStoreError, SchemaTooNewError, UnavailableError
from ...protocol import MigrationStatus
from .errors import error_code
from .items import LISTED, META_KEY, SHARDS, TTL_ATTRIBUTE, Item, listed_space, shard_pk
from .reads import Table

__all__ = ["SCHEMA_VERSION", "migrate", "recorded"]

SCHEMA_VERSION: Final = 2
_KEYS: Final = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
_ATTRS: Final = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
_STEPS: Final = [
    "CreateTable {table} (pk S HASH, sk S RANGE, PAY_PER_REQUEST) if missing; "
    f"UpdateTimeToLive {{table}} AttributeName={TTL_ATTRIBUTE}; PutItem schema version 1",
    "Scan {table} for items with pk " + ", ".join(f"p[<tenant>~]{space}*" for space in LISTED)
    + f"; move each to pk n<namespace>#<crc32(partition) % {SHARDS}> (TransactWriteItems Put + Delete); "
    "PutItem schema version 2",
]
_MOVE_BATCH: Final = 25
"""Items moved per transaction (a Put and a Delete each: 50 of DynamoDB's 100)."""
_MOVE_BYTES: Final = 3_000_000
_MOVE_ATTEMPTS: Final = 20
_CANCELLED: Final = frozenset({"TransactionCanceledException", "TransactionConflictException"})


def _describe(table: Table) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = table.client.describe_table(TableName=table.name)["Table"]
        return found
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def recorded(table: Table) -> int | None:
    """The version in the schema item, errors translated (None: no table, or no schema item)."""
    return table.call(lambda: _recorded(table))


def _recorded(table: Table) -> int | None:
    """The version in the schema item: one GetItem, the whole cost of opening a current store
    (None: no table, or no schema item)."""
    try:
        meta = table.client.get_item(TableName=table.name, Key=META_KEY, ConsistentRead=True).get("Item")
    except Exception as exc:
        if error_code(exc) in ("ResourceNotFoundException", "ValidationException"):  # no table; another key schema
            return None
        raise
    return None if meta is None else int(meta["version"]["N"])


def _current(table: Table, url: str) -> int:
    """The recorded schema version (0: no table, or an empty one)."""
    found = recorded(table)
    if found is not None:
        return found
    desc = table.call(lambda: _describe(table))
    if desc is None:
        return 0
    if sorted(map(str, desc.get("KeySchema", [])), key=str) != sorted(map(str, _KEYS), key=str):
        raise NotAStoreError(
            f"the DynamoDB table {table.name!r} ({url}) has another key schema than statekeel's (pk, sk); "
            "name another table in the URL"
        )
    meta = table.get_item(META_KEY)
    if meta is not None:
        return int(meta["version"]["N"])
    if table.call(lambda: table.client.scan(TableName=table.name, Limit=1)).get("Items"):
        raise NotAStoreError(
            f"the DynamoDB table {table.name!r} ({url}) holds items statekeel did not write; "
            "name another (or a new) table in the URL"
        )
    return 0


def migrate(table: Table, url: str, *, check: bool) -> MigrationStatus:
    """Create and set up the table unless ``check``; report where the schema stands."""
    current = _current(table, url)
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the DynamoDB table {table.name!r} ({url}) has schema version {current}, newer than this "
            f"statekeel understands ({SCHEMA_VERSION}); upgrade the statekeel package"
        )
    pending = [step.format(table=table.name) for step in _STEPS[current:]]
    if check or not pending:
        return MigrationStatus(current, SCHEMA_VERSION, pending)
    if current < 1:
        table.call(lambda: _create(table))
    table.call(lambda: _move_listed(table))
    if not table.call(lambda: _record(table)) and (found := recorded(table) or 0) > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the DynamoDB table {table.name!r} ({url}) was migrated to schema version {found} by a newer "
            f"statekeel while this one ({SCHEMA_VERSION}) was migrating it; it was left at {found}: "
            "upgrade the statekeel package"
        )
    return MigrationStatus(SCHEMA_VERSION, SCHEMA_VERSION, [])


def _record(table: Table) -> bool:
    """Record :data:`SCHEMA_VERSION` over an older version only (False: the table holds it or a newer
    one already). Conditional, so a newer migrator that raced this one is never set back."""
    try:
        table.client.put_item(
            TableName=table.name,
            Item={**META_KEY, "version": {"N": str(SCHEMA_VERSION)}, "migrated_at": {"N": repr(time.time())}},
            ConditionExpression="attribute_not_exists(#v) OR #v < :v",
            ExpressionAttributeNames={"#v": "version"},  # a name, not a reserved word, whatever DynamoDB adds
            ExpressionAttributeValues={":v": {"N": str(SCHEMA_VERSION)}},
        )
    except Exception as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return False
    return True


def _create(table: Table) -> None:
    client = table.client
    if _describe(table) is None:
        try:
            client.create_table(TableName=table.name, KeySchema=_KEYS, AttributeDefinitions=_ATTRS,
                                BillingMode="PAY_PER_REQUEST")  # fmt: skip
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":  # another process created it first
                raise
        client.get_waiter("table_exists").wait(TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    ttl = client.describe_time_to_live(TableName=table.name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        client.update_time_to_live(
            TableName=table.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )


def _move_listed(table: Table) -> None:
    """Version 2: every item of a listed namespace still under ``p<partition>`` moves to its shard."""
    olds = {f":p{i}": {"S": space} for i, space in enumerate(LISTED)}  # tenants' too: acme~memory/…
    _move(table, table.pages("scan", FilterExpression=" OR ".join(f"contains(pk, {name})" for name in olds),
                             ExpressionAttributeValues=olds))  # fmt: skip


def _move(table: Table, items: Iterable[Item]) -> None:
    """Move ``items`` (those of a listed namespace under ``p<partition>``) to their shards, 25 a
    transaction. Each move is conditioned: the old item still exists and the new one does not yet.
    So a migrator whose Scan page went stale while another process moved those items, recorded
    version 2 and wrote or deleted them anew, skips them instead of putting an old copy back."""
    batch: list[Item] = []
    size = 0  # of the batch's requests (as repr), kept as items are added
    for item in items:
        moves = _move_of(table.name, item)
        batch += moves
        size += sum(len(repr(m)) for m in moves)
        if len(batch) >= 2 * _MOVE_BATCH or size > _MOVE_BYTES:
            _commit_moves(table, batch)
            batch, size = [], 0
    if batch:
        _commit_moves(table, batch)


def _move_of(name: str, item: Item) -> list[Item]:
    """The Put and the Delete moving ``item`` to its shard (none if it is not to move)."""
    old_pk = item["pk"]["S"]
    space = listed_space(old_pk[1:])
    if not old_pk.startswith("p") or space is None:
        return []
    moved = {**item, "pk": {"S": shard_pk(space, old_pk[1:])}}
    return [{"Put": {"TableName": name, "Item": moved, "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Delete": {"TableName": name, "Key": {"pk": item["pk"], "sk": item["sk"]},
                        "ConditionExpression": "attribute_exists(pk)"}}]  # fmt: skip


def _commit_moves(table: Table, batch: list[Item]) -> None:
    """One transaction; if it is cancelled (another migrator moved some of its items, or raced it),
    each move again on its own, skipping those already moved."""
    try:
        table.client.transact_write_items(TransactItems=batch)
    except Exception as exc:
        if error_code(exc) not in _CANCELLED:
            raise
        for i in range(0, len(batch), 2):
            _commit_move(table, batch[i : i + 2])


def _commit_move(table: Table, pair: list[Item]) -> None:
    for attempt in range(_MOVE_ATTEMPTS):
        try:
            table.client.transact_write_items(TransactItems=pair)
            return
        except Exception as exc:
            if error_code(exc) not in _CANCELLED:
                raise
            reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:  # moved already (its old item gone, or its new one there)
                if reasons[:1] == ["ConditionalCheckFailed"] and reasons[1:2] != ["ConditionalCheckFailed"]:
                    # the new item is there (written since) and the old copy too: drop the copy, so that
                    # nothing stale stays behind (an erasure reads only the new collections)
                    old = pair[1]["Delete"]
                    table.client.delete_item(TableName=old["TableName"], Key=old["Key"])
                return
            time.sleep(min(0.5, 0.01 * 2**attempt))  # a TransactionConflict with another migrator: again
    raise UnavailableError(
        f"moving {pair[1]['Delete']['Key']} to its version-2 item collection lost {_MOVE_ATTEMPTS} races in a "
        "row; nothing of it was lost (the migration resumes where it stopped): run `statekeel migrate URL` again"
    )
