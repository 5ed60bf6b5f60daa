"""Forgetting policies kept in the store, so ``statekeel gc`` applies them with no arguments.

``store.memory(ns).set_policy(max_age="90d", inactive="30d", keep=1000)`` records the policy of
``ns`` (it covers the namespaces below it, as :meth:`Memory.forget` does; ``keep`` counts per
namespace). All policies of a store live in one record, ``memory/~policies`` — one read for
gc to find them all, however many memories there are — updated by compare-and-set, so two
writers setting policies of different namespaces at once both land. The record is ordinary
data: encrypted, chained and tenant-scoped like the rest (a tenant's policies are applied by
gc run on that tenant's handle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ...core import Core, layout
from ...core.validate import check_int
from ...errors import ConflictError, CorruptionError
from ...protocol import Delete, Put
from .._duration import Duration, maybe_seconds

__all__ = ["KEY", "Policy", "check_policy", "policies", "store_policy"]

KEY: Final = layout.MEMORY_PREFIX + "~policies"
"""Not a namespace (labels are ``n…``) nor an item: scans of namespaces never see it."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What :meth:`Memory.forget` is run with by ``statekeel gc`` (None: that rule is off)."""

    max_age: float | None = None
    inactive: float | None = None
    keep: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"max_age": self.max_age, "inactive": self.inactive, "keep": self.keep}


def check_policy(max_age: Duration | None, inactive: Duration | None, keep: int | None) -> Policy | None:
    """The checked policy; None when every rule is off (the namespace's policy is removed)."""
    if keep is not None:
        check_int(keep, "keep")
    policy = Policy(maybe_seconds(max_age, "max_age"), maybe_seconds(inactive, "inactive"), keep)
    return None if policy == Policy() else policy


def policies(core: Core) -> dict[tuple[str, ...], Policy]:
    """Every namespace's policy, by namespace (sorted)."""
    rec = core.backend.get(KEY)
    return {} if rec is None else _parse(core.codec.decode(rec.data, rec.codec, rec.key))


def store_policy(core: Core, namespace: tuple[str, ...], policy: Policy | None) -> None:
    """Set (or with None remove) the policy of ``namespace``: read, change, compare-and-set."""
    for attempt in range(10):
        rec = core.backend.get(KEY)
        found = {} if rec is None else _parse(core.codec.decode(rec.data, rec.codec, rec.key))
        if policy is None:
            found.pop(namespace, None)
        else:
            found[namespace] = policy
        body = [{"ns": list(ns), **p.as_dict()} for ns, p in sorted(found.items())]
        data, codec = core.codec.encode(body, "memory policies", KEY)
        op = Delete(KEY, rec.version) if not body and rec is not None else Put(
            KEY, data, codec, None if rec is None else rec.version)
        if not body and rec is None:
            return
        try:
            core.backend.apply([op])
            return
        except ConflictError:
            if attempt == 9:
                raise


def _parse(body: Any) -> dict[tuple[str, ...], Policy]:
    if not isinstance(body, list) or not all(isinstance(p, dict) and isinstance(p.get("ns"), list) for p in body):
        raise CorruptionError(f"{KEY} does not hold a list of policies; remove it (the policies are lost) "
                              "and set them again", KEY, None)
    return {tuple(p["ns"]): Policy(p.get("max_age"), p.get("inactive"), p.get("keep")) for p in body}
