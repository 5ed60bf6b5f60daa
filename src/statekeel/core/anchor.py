"""Where a tamper-evident store's heads are kept outside it, so a whole-store rollback shows.

Every head is in the store, next to its data: someone who restores an older copy
of the whole store (data and heads together) leaves a store that is consistent
with itself. An *anchor* is a copy of every head's version and tag, MACed,
kept elsewhere: ``statekeel verify --anchor`` (or ``store.anchor()``) writes it;
``statekeel verify`` then finds any head older than its anchored version (or
gone while it had not expired) and names the partition.

Where it goes (``Integrity(anchor=...)``, CLI ``STATEKEEL_ANCHOR``):

* ``"file:/path"`` — a file, replaced atomically (write, fsync, rename);
* a store URL (``"sqlite:///keys.db"``, the keystore's URL) — a record
  ``statekeel/anchors/<store id>`` in that store;
* an object with ``save(data: bytes)`` and ``load() -> bytes | None``, or a
  ``(save, load)`` pair of callables — anywhere else (an object store with
  versioning, a transparency log, a KMS-signed blob).

What it guarantees is bounded by when it was written: writes after the last
anchor can still be rolled back without notice, so anchor regularly (a cron
job, or on each deploy) and after anything that matters.
"""

from __future__ import annotations

import hmac
import json
import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigurationError, IntegrityError
from ..protocol import ANY, Put, keys
from .chain import ChainKey

__all__ = ["Anchor", "CallableAnchor", "FileAnchor", "StoreAnchor", "anchor_from", "decode_anchor", "encode_anchor", "read_anchor"]


@runtime_checkable
class Anchor(Protocol):
    """Somewhere outside the store to keep its anchor."""

    def save(self, data: bytes) -> None: ...

    def load(self) -> bytes | None: ...


class FileAnchor:
    """The anchor in a file, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def save(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".anchor-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None


class StoreAnchor:
    """The anchor as a record of another store (the keystore, say), named by the anchored store's id."""

    def __init__(self, url: str, store_id: str) -> None:
        self.url = url
        self.key = keys.join("statekeel", "anchors", store_id)

    def save(self, data: bytes) -> None:
        from ..backends import open_backend

        backend = open_backend(self.url)
        try:
            backend.apply([Put(self.key, data, "json", ANY)])
        finally:
            backend.close()

    def load(self) -> bytes | None:
        from ..backends import open_backend

        backend = open_backend(self.url)
        try:
            rec = backend.get(self.key)
        finally:
            backend.close()
        return None if rec is None else rec.data


class CallableAnchor:
    """The anchor kept by two callables: ``save(data)`` and ``load() -> bytes | None``."""

    def __init__(self, save: Callable[[bytes], object], load: Callable[[], bytes | None]) -> None:
        self._save, self._load = save, load

    def save(self, data: bytes) -> None:
        self._save(data)

    def load(self) -> bytes | None:
        return self._load()


def anchor_from(setting: Any, store_id: str) -> Anchor | None:
    """The anchor a setting names (None: no anchor)."""
    if setting is None or setting == "":
        return None
    if isinstance(setting, Anchor):
        return setting
    if isinstance(setting, tuple) and len(setting) == 2 and all(callable(f) for f in setting):
        return CallableAnchor(setting[0], setting[1])
    if isinstance(setting, (str, Path)):
        text = str(setting)
        if text.startswith("file:") and not text.startswith("file://"):
            return FileAnchor(text[len("file:"):])
        if "://" in text:
            return StoreAnchor(text, store_id)
        return FileAnchor(text)
    raise ConfigurationError(
        f"cannot anchor to a {type(setting).__name__}: give 'file:/path', a store URL, a (save, load) pair "
        "of callables, or an object with save(data) and load()"
    )


def encode_anchor(body: dict[str, Any], key: ChainKey) -> bytes:
    """The anchor document: the body and its MAC under the store's chain key."""
    mac = key.root_tag(json.dumps(body, sort_keys=True).encode())
    return json.dumps({"anchor": body, "mac": mac.hex()}, sort_keys=True).encode()


def decode_anchor(data: bytes, key: ChainKey) -> dict[str, Any]:
    """The body of an anchor document, its MAC checked (IntegrityError otherwise)."""
    try:
        doc = json.loads(data)
        body, mac = doc["anchor"], bytes.fromhex(doc["mac"])
        good = hmac.compare_digest(mac, key.root_tag(json.dumps(body, sort_keys=True).encode()))
    except (ValueError, KeyError, TypeError):
        good, body = False, {}
    if not good or not isinstance(body.get("heads"), dict):
        raise IntegrityError("the store's anchor does not verify: it was not written with this store's key, "
                             "or it was edited")  # fmt: skip
    return dict(body)


def read_anchor(key: ChainKey, anchor: Anchor) -> dict[str, tuple[int, float | None]]:
    """Each anchored partition's head version and expiry ({} when nothing was anchored yet)."""
    data = anchor.load()
    if data is None:
        return {}
    heads = decode_anchor(data, key)["heads"]
    return {str(p): (int(v[0]), None if v[1] is None else float(v[1])) for p, v in heads.items()}
