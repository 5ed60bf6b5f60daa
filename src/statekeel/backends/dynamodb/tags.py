"""The tags a batch larger than one transaction puts on the items it writes, and what readers see
of a tagged item — pure functions on DynamoDB's wire form (the protocol: :mod:`.intents`).

A tagged item keeps its current attributes and adds ``xt`` (the intent), ``xk`` (what becomes of
it: ``put``, ``del``, ``keep``), ``xn`` (its new attributes, data left out when unchanged) and
``x0`` (it did not exist: a lock only).
"""

from __future__ import annotations

import math
from typing import Final

from .items import Item

__all__ = ["INTENT_PK", "intent_key", "state_of", "tagged", "view", "write_key", "tag_write", "settle_write"]

INTENT_PK: Final = "#tx"
_TAGS: Final = ("xt", "xk", "xn", "x0")
_OPTIONAL: Final = ("ea", "ttl")
"""Attributes an item may lack: a committed ``put`` removes the ones its new attributes lack."""


def intent_key(intent: str, page: int | None = None) -> Item:
    return {"pk": {"S": INTENT_PK}, "sk": {"S": f"#{intent}" + ("" if page is None else f"/{page}")}}


def state_of(intent: Item) -> tuple[str, float]:
    """``(state, deadline)`` of an intent item: ``pending``, ``committed`` or ``aborted``, and the time
    after which another writer may abort it while pending."""
    return intent["xs"]["S"], float(intent["xd"]["N"])


def tagged(item: Item | None) -> str | None:
    """The intent ``item`` is tagged by, if any."""
    if item is None or "xt" not in item:
        return None
    found: str = item["xt"]["S"]
    return found


def _key(item: Item) -> Item:
    return {"pk": item["pk"], "sk": item["sk"]}


def _strip(item: Item) -> Item:
    return {k: v for k, v in item.items() if k not in _TAGS}


def view(item: Item, committed: bool) -> Item | None:
    """What a reader sees of a tagged item: its current attributes until its intent commits,
    its new ones after (None: the item does not exist)."""
    kind, created = item["xk"]["S"], "x0" in item
    if not committed:
        return None if created else _strip(item)
    if kind == "del" or (kind == "keep" and created):
        return None
    if kind == "keep":
        return _strip(item)
    return {**{k: v for k, v in item.items() if k not in _TAGS and k not in _OPTIONAL}, **item["xn"]["M"]}


def write_key(write: Item) -> Item:
    """The key of the item one write of a planned batch (Put, Delete or ConditionCheck) writes."""
    (body,) = write.values()
    return dict(body["Key"]) if "Key" in body else _key(body["Item"])


def tag_write(write: Item, intent: str, current: Item | None) -> Item:
    """The tagging Put of one write of a planned batch (Put, Delete or ConditionCheck): the item as
    stored now (``current``, None if absent) with the tag added and its ``ttl`` taken off, on the
    write's own condition — which names the write token ``current`` carries, so it is exactly what
    is stored — and on the item carrying no other tag."""
    ((kind, body),) = write.items()
    key = write_key(write)
    item: Item = {**key, "xt": {"S": intent}, "xk": {"S": {"Put": "put", "Delete": "del"}.get(kind, "keep")}}
    if current is None:
        item["x0"] = {"BOOL": True}
    else:
        item.update((k, v) for k, v in current.items() if k not in ("ttl", *_TAGS))
    if kind == "Put":
        same = current is not None and current.get("d") == body["Item"].get("d")
        item["xn"] = {"M": {k: v for k, v in body["Item"].items() if k not in ("pk", "sk") and not (same and k == "d")}}
    condition = {k: body[k] for k in ("ConditionExpression", "ExpressionAttributeValues") if k in body}
    return {"Put": {"TableName": body["TableName"], "Item": item, **condition}}


def settle_write(table: str, item: Item, committed: bool) -> Item:
    """The write that gives a tagged item its fate — its new attributes (committed) or its old ones
    (aborted), untagged — conditioned on still carrying the tag."""
    cond: Item = {"TableName": table, "ConditionExpression": "xt = :xt", "ExpressionAttributeValues": {":xt": item["xt"]}}
    final = view(item, committed)
    if final is None:
        return {"Delete": {**cond, "Key": _key(item)}}
    if "ttl" not in final and "ea" in final and final["sk"]["S"].startswith("k"):
        final["ttl"] = {"N": str(math.ceil(float(final["ea"]["N"])))}  # the tag took it off
    return {"Put": {**cond, "Item": final}}
