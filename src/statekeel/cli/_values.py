"""Showing values whose class this process cannot import.

An agent stores a dataclass from its own module (``myagent.models:Ticket``); the
``statekeel`` command runs elsewhere, where that module does not import, and the
codec refuses to build the object (a :class:`StoreError`, rightly: the library
must not hand back a half-read value). Inspection should still show it: the CLI
reads such a record again as its stored JSON and shows it as :class:`Unimportable`
— the class path and the stored fields — instead of failing the whole listing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from statekeel import Item, Page, StateView, StoreError, Store
from statekeel.codec import _TAG  # the codec's tag key: {"$sk": "dataclass", "cls": …, "v": …}
from statekeel.core import layout
from statekeel.models import to_datetime
from statekeel.protocol import Record, keys

__all__ = ["Unimportable", "decode_lenient", "is_unimportable_class", "lenient_item", "lenient_items"]

_CLASS_TAGS = ("dataclass", "pydantic", "enum")


@dataclass(frozen=True)
class Unimportable:
    """A stored object whose class cannot be imported here: its class path and stored JSON."""

    type: str
    stored: Any

    def __str__(self) -> str:
        return f"{self.type} {json.dumps(self.stored, default=str, ensure_ascii=False)}"


def is_unimportable_class(exc: BaseException) -> bool:
    """Whether ``exc`` is the codec's "class … cannot be imported here" (a code problem, not damage)."""
    return isinstance(exc, StoreError) and "cannot be imported here" in str(exc)


def _lenient(store: Store, node: Any, key: str) -> Any:
    """``node`` (stored JSON) decoded, with each object of an unimportable class as :class:`Unimportable`."""
    try:
        return store.codec.decode(json.dumps(node).encode(), "tjson1", key)
    except StoreError as exc:
        if not is_unimportable_class(exc):
            raise
    if isinstance(node, list):
        return [_lenient(store, x, key) for x in node]
    if not isinstance(node, dict):
        return node
    if node.get(_TAG) in _CLASS_TAGS:
        return Unimportable(str(node.get("cls")), _lenient(store, node.get("v"), key))
    if _TAG in node:  # a tuple, set or dict holding one: show what it holds
        return _lenient(store, node.get("v"), key)
    return {k: _lenient(store, v, key) for k, v in node.items()}


def decode_lenient(store: Store, data: bytes, codec: str, key: str) -> Any:
    """``store.codec.decode``, except that objects of classes not importable here are shown, not refused."""
    try:
        return store.codec.decode(data, codec, key)
    except StoreError as exc:
        if not (is_unimportable_class(exc) and codec.startswith("tjson1")):
            raise
    tree = store.codec.decode(data, "json" + codec.removeprefix("tjson1"), key)  # no tags read
    return _lenient(store, tree, key)


def _item(store: Store, prefix: str, rec: Record) -> Item:
    return Item(
        keys.unescape(rec.key[len(prefix):]), decode_lenient(store, rec.data, rec.codec, rec.key), rec.version,
        to_datetime(rec.created_at), to_datetime(rec.updated_at), to_datetime(rec.expires_at),  # type: ignore[arg-type]
    )


def lenient_items(store: Store, view: StateView, prefix: str, after: str | None, limit: int) -> Page[Item]:
    """``view.items(...)``; when a value's class cannot be imported, the page read again leniently."""
    try:
        return view.items(prefix, after=after, limit=limit)
    except StoreError as exc:
        if not is_unimportable_class(exc):
            raise
    base = layout.scope_state_prefix(view.scope.kind, view.scope.id)
    recs = store.backend.scan(base + keys.escape(prefix) if prefix else base,
                              after=base + keys.escape(after) if after else None, limit=limit)
    found = [_item(store, base, r) for r in recs]
    return Page(found, found[-1].key if len(found) == limit else None)


def lenient_item(store: Store, view: StateView, key: str) -> Item:
    """``view.require(key)``; a value whose class cannot be imported is read again leniently."""
    try:
        return view.require(key)
    except StoreError as exc:
        if not is_unimportable_class(exc):
            raise
    rec = store.backend.get(layout.state_key(view.scope.kind, view.scope.id, key))
    if rec is None or (rec.expires_at is not None and rec.expires_at <= time.time()):
        return view.require(key)  # gone meanwhile: the library's own error
    return _item(store, layout.scope_state_prefix(view.scope.kind, view.scope.id), rec)
