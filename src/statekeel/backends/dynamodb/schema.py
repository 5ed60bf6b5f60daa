"""The table: created by :func:`migrate` with its TTL attribute enabled, and its schema version recorded.

Migrations are an ordered list whose index is the version (here one step:
create the table, enable TTL on ``ttl``, record version 1 in the schema item).
A table that exists with another key schema, or holds items but no schema
item, is not a statekeel store and is refused.
"""

from __future__ import annotations

import time
from typing import Any, Final

from ...errors import NotAStoreError, SchemaTooNewError
from ...protocol import MigrationStatus
from .errors import error_code
from .items import META_KEY, TTL_ATTRIBUTE
from .reads import Table

__all__ = ["SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION: Final = 1
_KEYS: Final = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
_ATTRS: Final = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
_STEPS: Final = [
    "CreateTable {table} (pk S HASH, sk S RANGE, PAY_PER_REQUEST) if missing; "
    f"UpdateTimeToLive {{table}} AttributeName={TTL_ATTRIBUTE}; PutItem schema version 1",
]


def _describe(table: Table) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = table.client.describe_table(TableName=table.name)["Table"]
        return found
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


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
    recorded = table.call(lambda: _recorded(table))
    if recorded is not None:
        return recorded
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
    table.call(lambda: _create(table))
    return MigrationStatus(SCHEMA_VERSION, SCHEMA_VERSION, [])


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
    client.put_item(TableName=table.name, Item={**META_KEY, "version": {"N": str(SCHEMA_VERSION)},
                                                "migrated_at": {"N": repr(time.time())}})  # fmt: skip
