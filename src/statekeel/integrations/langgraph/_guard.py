"""The store's secret guard over what the LangGraph saver newly persists (pure: no I/O).

The saver hands statekeel's codec LangGraph's serialized bytes, which the codec's guard does
not look into, so the saver screens the objects itself, with the same guard and mode
(``statekeel.open(url, secret_guard=...)``): each new channel value — for a list that only
grew, the items it appends, not the history again — the checkpoint's metadata, and every
pending write. As in the codec, one linear-time scan of the serialized bytes decides (msgpack
and JSON hold every string as it is); only when it fires are the objects walked and the exact
detectors applied. ``refuse`` raises :class:`~statekeel.errors.SecretDetectedError` before
anything of the checkpoint (or the task's writes) is written; ``redact`` stores the masked copy,
and the saver remembers that copy, so a later read restores exactly what was stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from ...security.guard import SecretGuard
from ._records import Typed
from .deltas import MISSING, Planned

__all__ = ["active", "clean", "screen", "screen_values"]

_PLAIN: Final = frozenset({"msgpack", "json"})
"""Serializer types whose bytes hold every string as it is: a scan of them finds what a walk would."""
_OPAQUE: Final = frozenset({"bytes", "bytearray", "null", "empty"})
"""Values the guard never looks into (bytes are opaque to it everywhere)."""


def active(guard: SecretGuard | None) -> SecretGuard | None:
    """``guard`` unless it is absent or ``off``."""
    return guard if guard is not None and guard.mode != "off" else None


def clean(guard: SecretGuard, pieces: Iterable[Typed]) -> bool:
    """True when none of the serialized ``pieces`` can hold a secret: one scan over all of them
    (the scanner lets other threads run while it scans, and LangGraph has several: one call per
    checkpoint costs less waiting than one per value). False sends each piece to :func:`screen`."""
    texts = []
    for kind, data in pieces:
        if kind in _PLAIN:
            texts.append(data)
        elif kind not in _OPAQUE:
            return False
    return not guard.suspicious(b"\n".join(texts))


def screen(guard: SecretGuard, value: Any, typed: Typed, path: str) -> Any:
    """``value`` itself when clean; its redacted copy in redact mode; raises in refuse mode.
    ``typed`` is ``value`` serialized; other serializers' bytes (encrypted, pickled) are walked."""
    kind, data = typed
    if kind in _OPAQUE or (kind in _PLAIN and not guard.suspicious(data)):
        return value
    return guard.check(value, path)


def _screen_items(guard: SecretGuard, items: list[Any], typed: Typed, path: str, offset: int) -> list[Any]:
    """The items a delta appends (from index ``offset``), each named by its index in the whole list."""
    kind, data = typed
    if kind in _PLAIN and not guard.suspicious(data):
        return items
    cleaned = [guard.check(item, f"{path}[{offset + i}]") for i, item in enumerate(items)]
    return items if all(a is b for a, b in zip(cleaned, items)) else cleaned


def screen_values(
    guard: SecretGuard,
    planned: dict[tuple[str, Any], Planned],
    values: dict[str, Any],
    where: str,
    replan: Callable[[str, Any, Any], Planned],
) -> dict[str, Any]:
    """Screen what each planned channel record newly stores; a redacted value is planned again
    (``replan(channel, version, value)`` replaces its record). Returns the redacted values by channel."""
    changed: dict[str, Any] = {}
    for (channel, version), plan in planned.items():
        if plan.fresh is MISSING:
            continue
        path = f"{where} channel {channel!r}"
        if plan.offset is not None:
            items = _screen_items(guard, plan.fresh, plan.fresh_typed, path, plan.offset)
            cleaned = plan.fresh if items is plan.fresh else values[channel][: plan.offset] + items
        else:
            cleaned = screen(guard, plan.fresh, plan.fresh_typed, path)
        if cleaned is not plan.fresh:
            planned[(channel, version)] = replan(channel, version, cleaned)
            changed[channel] = cleaned
    return changed
