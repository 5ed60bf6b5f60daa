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

__all__ = ["ChainSetup", "Integrity", "IntegritySetting", "prepare_chain", "read_marker"]


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


@dataclass(frozen=True)
class ChainSetup:
    """How a store is opened with respect to its chain (see :func:`prepare_chain`)."""

    key: ChainKey | None
    """The MAC key; None when the store is not chained, or its key is not given (``locked``)."""
    locked: str | None = None
    """Why a chained store's chain cannot be checked (opened for maintenance without its key)."""
    store_id: str = "unnamed"
    """The id its anchor is filed under (the marker's ``store_id``)."""


def read_marker(backend: Backend) -> dict[str, Any] | None:
    """The integrity marker's fields: None when the store is not chained (or has no schema to read
    yet: the chain starts with the data), {} when the marker does not parse."""
    try:
        rec = backend.get(layout.INTEGRITY_MARKER)
    except (MigrationRequiredError, SchemaTooNewError, NotAStoreError):
        return None
    if rec is None:
        return None
    try:
        body = json.loads(rec.data)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _field(marker: dict[str, Any], name: str) -> str:
    value = marker.get(name)
    return value if isinstance(value, str) else ""


def _has_data(backend: Backend) -> bool:
    after = None
    while page := backend.scan("", after=after, limit=50):
        if any(not layout.stored_in_clear(r.key) and r.key != layout.ENCRYPTION_CONVERSION for r in page):
            return True
        after = page[-1].key
    return bool(backend.scan_logs("", limit=1))


def prepare_chain(
    backend: Backend, setting: IntegritySetting, default_key: Any, marker: dict[str, Any] | None, *,
    mark: bool, locked_ok: bool,
) -> ChainSetup:
    """The MAC key for a chained store (none when not chained), or — opened without ``integrity=``
    with ``locked_ok`` — why its chain cannot be checked. ``marker``: :func:`read_marker` of it."""
    wanted = _setting(setting)
    if wanted is None:
        if marker is None:
            return ChainSetup(None)
        why = (f"the store {backend.url} is tamper-evident (integrity='chain', MAC key id "
               f"{_field(marker, 'key_id')!r}): open it with integrity='chain' and its key, or writes would "
               "break its chains; " + HOW_TO_SUPPLY)  # fmt: skip
        if locked_ok:
            return ChainSetup(None, why)
        raise KeyUnavailableError(why)
    source = wanted.key if wanted.key is not None else (default_key or "env:STATEKEEL_MASTER_KEY")
    key = ChainKey(MasterKeys.from_any(source), (marker and _field(marker, "key_id")) or None)
    if marker is None and mark:
        marker = _mark(backend, key)
    return ChainSetup(key, None, (marker and _field(marker, "store_id")) or "unnamed")


def _mark(backend: Backend, key: ChainKey) -> dict[str, Any] | None:
    """Mark a new store chained; the marker that is there afterwards (another process may have won)."""
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
        return read_marker(backend)  # another process marked it first: its id is the store's
    return body
