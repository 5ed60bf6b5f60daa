"""Turning tamper-evident mode on: the ``Integrity`` setting and the store's integrity marker.

``statekeel.open(url, integrity="chain")`` (or ``integrity=statekeel.Integrity(...)``)
makes :class:`~statekeel.core.chained.ChainedBackend` the store's backend. The
first such open marks the store (record ``statekeel/integrity``, plain JSON with
the MAC key id); from then on opening it without ``integrity=`` is refused, so
no process writes values that would break the chain. The mode is for new stores:
one already holding data is refused with how to move it (``statekeel copy`` into
a chained store re-MACs everything it copies).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Union

from ..errors import (
    ConfigurationError,
    ConflictError,
    KeyUnavailableError,
    MigrationRequiredError,
    NotAStoreError,
    SchemaTooNewError,
)
from ..protocol import Backend, Put
from . import layout
from .chain import ChainKey
from .keyring import HOW_TO_SUPPLY, MasterKeys

__all__ = ["Integrity", "IntegritySetting", "integrity_key_id", "integrity_store_id", "prepare_chain"]


@dataclass
class Integrity:
    """Tamper-evident mode: hash-chained logs, MACed record versions, per-partition heads.

    ``key``: where the MAC key comes from — the same sources as ``Encryption.master_key``
    (``"env:NAME"``, ``"file:/path"``, key text, raw bytes, a callable); None = the
    encryption master key when the store is encrypted, else ``env:STATEKEEL_MASTER_KEY``.
    ``anchor``: where the store's root is kept outside it (:mod:`statekeel.core.anchor`):
    a path (``"file:/var/lib/agent/anchor"``), a store URL such as the keystore's, a
    ``(save, load)`` pair of callables, or an object with ``save(data: bytes)`` and
    ``load() -> bytes | None``.
    """

    key: Any = None
    anchor: Any = None


IntegritySetting = Union[Literal["chain"], Integrity, None]


def _setting(value: IntegritySetting) -> Integrity | None:
    if value is None or isinstance(value, Integrity):
        return value
    if value == "chain":
        return Integrity()
    raise ConfigurationError(f"integrity must be 'chain', statekeel.Integrity(...) or None; got {value!r}")


def _marker(backend: Backend, field: str) -> str | None:
    try:
        rec = backend.get(layout.INTEGRITY_MARKER)
    except (MigrationRequiredError, SchemaTooNewError, NotAStoreError):
        return None  # no schema to read yet: migrate first (the chain starts with the data)
    if rec is None:
        return None
    try:
        value = json.loads(rec.data).get(field)
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def integrity_key_id(backend: Backend) -> str | None:
    """The MAC key id a chained store expects (None: not chained; '' when unreadable)."""
    return _marker(backend, "key_id")


def integrity_store_id(backend: Backend) -> str:
    """The id a chained store's anchor is filed under (its marker's ``store_id``)."""
    return _marker(backend, "store_id") or "unnamed"


def _has_data(backend: Backend) -> bool:
    after = None
    while page := backend.scan("", after=after, limit=50):
        if any(not layout.stored_in_clear(r.key) and r.key != layout.ENCRYPTION_CONVERSION for r in page):
            return True
        after = page[-1].key
    return bool(backend.scan_logs("", limit=1))


def prepare_chain(
    backend: Backend, setting: IntegritySetting, default_key: Any, *, mark: bool, locked_ok: bool
) -> tuple[ChainKey | None, str | None]:
    """``(key, locked)``: the MAC key for a chained store (None when not chained), or — opened
    without ``integrity=`` with ``locked_ok`` — why its chain cannot be checked."""
    wanted = _setting(setting)
    kid = integrity_key_id(backend)
    if wanted is None:
        if kid is None:
            return None, None
        why = (f"the store {backend.url} is tamper-evident (integrity='chain', MAC key id {kid!r}): open it with "
               "integrity='chain' and its key, or writes would break its chains; " + HOW_TO_SUPPLY)
        if locked_ok:
            return None, why
        raise KeyUnavailableError(why)
    source = wanted.key if wanted.key is not None else (default_key or "env:STATEKEEL_MASTER_KEY")
    key = ChainKey(MasterKeys.from_any(source), kid or None)
    if kid is None and mark:
        if _has_data(backend):
            raise ConfigurationError(
                f"the store {backend.url} already holds data written without integrity='chain'; the chain can "
                "only start with a new store: copy this one into a new store opened with integrity='chain' "
                "(`statekeel copy SRC DST` with STATEKEEL_INTEGRITY=chain), which MACs everything it copies"
            )
        body = {"mode": "chain", "key_id": key.id, "since": time.time(), "store_id": uuid.uuid4().hex}
        try:
            backend.apply([Put(layout.INTEGRITY_MARKER, json.dumps(body).encode(), "json", None)])
        except ConflictError:
            pass  # another process marked it first
    return key, None
