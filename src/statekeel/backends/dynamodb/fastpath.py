"""One round trip for the commonest write: a single compare-and-set Put of an existing record.

``update(key, fn)`` reads a record and writes it back with ``expect=version``. The
general path would read it again (BatchGetItem) before its TransactWriteItems;
here one conditional ``UpdateItem`` does it: the condition ``v = :expect`` (and not
expired) is the compare-and-set, ``ReturnValues=ALL_NEW`` gives back what the
record keeps (created_at, a KEEP expiry). When the condition fails,
``ReturnValuesOnConditionCheckFailure=ALL_OLD`` gives back what is stored, so the
ConflictError names the version actually there without another read.
"""

from __future__ import annotations

import math
from typing import Any

from ...errors import ConflictError
from ...protocol import KEEP, Put, Record
from ...protocol.integrity import record_sum
from .errors import error_code
from .items import Item, record_key, record_of, token

__all__ = ["put_request", "fast_put"]


def put_request(table: str, op: Put, now: float) -> dict[str, Any] | None:
    """The UpdateItem call for ``op``, or None when ``op`` needs the general path."""
    if not isinstance(op.expect, int) or isinstance(op.expect, bool):
        return None
    version = op.expect + 1
    values: Item = {
        ":d": {"B": op.data}, ":c": {"S": op.codec}, ":v": {"N": str(version)}, ":e": {"N": str(op.expect)},
        ":now": {"N": repr(now)}, ":s": {"N": str(record_sum(op.key, op.codec, op.data, version))},
        ":w": {"S": token()},
    }  # fmt: skip
    update = "SET d = :d, c = :c, v = :v, ua = :now, s = :s, w = :w"
    if op.expires_at is not KEEP:
        if op.expires_at is None:
            update += " REMOVE ea, #ttl"
        else:
            update += ", ea = :ea, #ttl = :ttl"
            values[":ea"], values[":ttl"] = {"N": repr(op.expires_at)}, {"N": str(math.ceil(op.expires_at))}
    return {
        "TableName": table, "Key": record_key(op.key), "UpdateExpression": update,
        "ConditionExpression": "v = :e AND (attribute_not_exists(ea) OR ea > :now) AND attribute_not_exists(xt)",
        "ExpressionAttributeValues": values, "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ReturnValues": "ALL_NEW", "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }  # fmt: skip


def fast_put(client: Any, request: dict[str, Any], op: Put, now: float) -> Record | None:
    """Run ``request``: the new record, ConflictError naming the live version stored, or None
    when the record is tagged by a batch larger than one transaction (the general path settles it)."""
    try:
        reply = client.update_item(**request)
    except Exception as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        old = getattr(exc, "response", {}).get("Item")
        if old is not None and "xt" in old:
            return None
        stored = None if old is None else record_of(op.key, old).record
        live = stored is not None and (stored.expires_at is None or stored.expires_at > now)
        raise ConflictError(op.key, op.expect if isinstance(op.expect, int) else None,
                            stored.version if live and stored is not None else None) from None  # fmt: skip
    return record_of(op.key, reply["Attributes"]).record
