"""Master keys and the per-partition data keys they wrap (envelope encryption).

* A **master key** (32 bytes) comes from an environment variable, a key file
  or a callable (so a KMS can plug in). Several may be configured while
  rotating: ``"new-id:BASE64,old-id:BASE64"`` — the first one wraps, all unwrap.
* A **data key** (AES-256) exists per partition (``session/<id>``,
  ``user/<id>``, ``app/_`` …), in numbered versions, each stored wrapped by a
  master key in the *keystore*: the record ``keys/<partition>``. A partition
  may be bound to a data **subject** (a user id) so that erasing the subject
  destroys its keys (crypto-shredding).
* The keystore is the data store itself unless ``keystore_url`` names another
  one. Keep it apart from the data (another file or server) when erasure must
  also reach backups of the data: a backup then holds only ciphertext whose
  keys are gone.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, ErasedError, KeyUnavailableError
from ..protocol import ANY, Backend, Put, keys
from . import layout

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "HOW_TO_SUPPLY",
    "NO_IO",
    "DataKey",
    "InvalidTag",
    "KeyLookup",
    "Keyring",
    "MasterKeys",
    "aesgcm",
    "key_id",
    "names_under",
    "plain_subject_digest",
]

_CACHE_SECONDS = 30.0


class _NotLoaded(Exception):
    """Stands for cryptography's ``InvalidTag`` until :func:`aesgcm` first runs (never raised)."""


InvalidTag: type[Exception] = _NotLoaded
"""cryptography's ``InvalidTag`` once :func:`aesgcm` has run — which it has before anything could
raise it: every AES-GCM object comes from there. Catch it as ``keyring.InvalidTag``."""


def aesgcm(raw: bytes) -> AESGCM:
    """AES-GCM under ``raw``. cryptography is imported at the first call (~30 ms of a process's
    start), so a process whose stores are not encrypted never loads it."""
    global InvalidTag
    from cryptography.exceptions import InvalidTag as loaded
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    InvalidTag = loaded
    return AESGCM(raw)

NO_IO: contextvars.ContextVar[bool] = contextvars.ContextVar("statekeel_keyring_no_io", default=False)
"""Set (around code that must not block: an event loop's) to make a data key lookup that would read
the keystore raise :class:`KeyLookup` instead (the caller looks it up elsewhere, then tries again)."""


class KeyLookup(Exception):
    """A data key lookup needs the keystore while :data:`NO_IO` is set: run :meth:`Keyring.fetch`
    (on a thread), then do again what raised it. Internal to the asyncio path; never reaches users."""

    def __init__(self, partition: str, version: int | None) -> None:
        super().__init__(partition, version)
        self.partition = partition
        self.version = version
        """The version asked for; None: the current one."""


HOW_TO_SUPPLY = (
    "give it as encryption=statekeel.Encryption(master_key=...) — \"env:NAME\", \"file:/path\", the base64 "
    "key text, 32 raw bytes or a callable — or, for the CLI, in $STATEKEEL_MASTER_KEY; several keys while "
    "rotating: \"NEW,OLD\" (each a bare base64 key or id:BASE64). `statekeel keys id` prints a key's id"
)
"""How to supply a master key: every KeyUnavailableError ends with it."""

NEW_KEY_COMMAND = "python -c \"import os,base64;print(base64.b64encode(os.urandom(32)).decode())\""


def key_id(raw: bytes) -> str:
    """The id of a master key, derived from the key itself: what the keystore records as the
    key that wrapped a data key, so the same key is found however it is labelled."""
    return hashlib.sha256(raw).hexdigest()[:12]


def _decode_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise KeyUnavailableError(
            f"the master key in {where} must be 32 bytes, base64-encoded (make one with: {NEW_KEY_COMMAND}); "
            + HOW_TO_SUPPLY
        )
    return raw


@dataclass(frozen=True)
class MasterKeys:
    """Master keys by label; ``current`` wraps new data keys, all of them unwrap.

    A key's label is the ``id`` of ``id:BASE64``, or its derived :func:`key_id` when given
    bare. Data keys record the derived id of the key that wrapped them, and a key is found
    by its label or its derived id, so ``k1:KEY`` and a bare ``KEY`` are the same key.
    """

    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str, where: str) -> MasterKeys:
        """``BASE64`` or ``id:BASE64[,id:BASE64…]``, ids optional (first = current)."""
        pairs = [p.strip() for p in text.split(",") if p.strip()]
        if not pairs:
            raise KeyUnavailableError(f"{where} holds no master key; " + HOW_TO_SUPPLY)
        parsed: dict[str, bytes] = {}
        for pair in pairs:
            kid, sep, b64 = pair.partition(":")
            if not sep:
                kid, b64 = key_id(_decode_key(pair, where)), pair
            parsed[kid] = _decode_key(b64, where)
        return cls(parsed, next(iter(parsed)))

    @classmethod
    def from_env(cls, name: str = "STATEKEEL_MASTER_KEY") -> MasterKeys:
        value = os.environ.get(name)
        if not value:
            raise KeyUnavailableError(
                f"encryption is on but the environment variable {name} is not set; set it to the master "
                f"key (base64 of 32 bytes), or {HOW_TO_SUPPLY}"
            )
        return cls.parse(value, f"${name}")

    @classmethod
    def from_file(cls, path: str) -> MasterKeys:
        try:
            with open(path, encoding="ascii") as fh:
                return cls.parse(fh.read(), path)
        except OSError as exc:
            raise KeyUnavailableError(
                f"cannot read the master key file {path}: {exc.strerror}; " + HOW_TO_SUPPLY
            ) from None

    @classmethod
    def from_any(cls, source: Any) -> MasterKeys:
        """bytes, ``env:NAME``, ``file:PATH``, key text, a callable returning any of those, or MasterKeys."""
        if isinstance(source, MasterKeys):
            return source
        if callable(source):
            return cls.from_any(source())
        if isinstance(source, bytes):
            if len(source) != 32:
                raise KeyUnavailableError(
                    f"a master key given as bytes must be exactly 32 bytes, got {len(source)}; " + HOW_TO_SUPPLY
                )
            return cls({key_id(source): source}, key_id(source))
        if isinstance(source, str) and source.startswith("env:"):
            return cls.from_env(source[4:])
        if isinstance(source, str) and source.startswith("file:"):
            return cls.from_file(source[5:])
        if isinstance(source, str):
            return cls.parse(source, "the master_key argument")
        raise KeyUnavailableError(f"cannot use a {type(source).__name__} as a master key source; " + HOW_TO_SUPPLY)

    @property
    def current_id(self) -> str:
        """The derived id of the key that wraps new data keys."""
        return key_id(self.keys[self.current])

    def ids(self) -> list[str]:
        """``label (id)`` of every configured key, for messages."""
        return [kid if kid == key_id(raw) else f"{kid} (id {key_id(raw)})" for kid, raw in self.keys.items()]

    def find(self, kid: str) -> bytes | None:
        """The configured key labelled or derived as ``kid``."""
        return self.keys.get(kid) or next((raw for raw in self.keys.values() if key_id(raw) == kid), None)

    def wraps_with_current(self, kid: str) -> bool:
        """Whether a data key recorded as wrapped by ``kid`` is already under the current key."""
        return self.find(kid) == self.keys[self.current]

    def wrap(self, data_key: bytes, aad: bytes) -> dict[str, str]:
        nonce = os.urandom(12)
        sealed = aesgcm(self.keys[self.current]).encrypt(nonce, data_key, aad)
        return {"master": self.current_id, "wrapped": base64.b64encode(nonce + sealed).decode("ascii")}

    def unwrap(self, entry: dict[str, str], aad: bytes) -> bytes:
        kid = entry["master"]
        raw = self.find(kid)
        if raw is None:
            raise KeyUnavailableError(
                f"data is encrypted under master key id {kid!r}, which is not configured "
                f"(configured: {', '.join(self.ids())}); add that key after the current one: " + HOW_TO_SUPPLY
            )
        blob = base64.b64decode(entry["wrapped"])
        try:
            return aesgcm(raw).decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise KeyUnavailableError(
                f"master key {kid!r} is configured with the wrong value: it cannot unwrap the data keys, "
                f"which expect master key id {kid!r}; nothing was changed. Supply the right key: " + HOW_TO_SUPPLY
            ) from None


@dataclass(frozen=True)
class DataKey:
    """One version of a partition's data key, ready to use."""

    partition: str
    version: int
    aead: AESGCM


_record_key = layout.keystore_key
_subject_key = layout.subject_key


def names_under(backend: Backend, prefix: str) -> list[str]:
    """The last key component of every record under ``prefix`` (the keystore names partitions so)."""
    out: list[str] = []
    after = None
    while page := backend.scan(prefix, after=after, limit=500):
        out += [keys.split(r.key)[-1] for r in page]
        after = page[-1].key
    return out


def plain_subject_digest(subject: str) -> str:
    """The digest naming a data subject in a store without encryption (no keystore to key it with;
    its user ids are stored in clear anyway): erasure records and ``bind_subject`` tags."""
    return hashlib.sha256(b"statekeel-subject\x00" + subject.encode()).hexdigest()[:32]


class Keyring:
    """Finds, creates, rotates and destroys data keys in the keystore."""

    def __init__(self, master: MasterKeys, keystore: Backend) -> None:
        self.master = master
        self.keystore = keystore
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._aeads: dict[tuple[str, int], AESGCM] = {}
        self._currents: dict[str, tuple[dict[str, Any], DataKey]] = {}
        """partition -> (the keystore body it was read from, its current key): every batch asks."""
        self._subject_secret: bytes | None = None

    # -- records ---------------------------------------------------------------
    def _load(self, partition: str, version: int | None = None) -> dict[str, Any] | None:
        hit = self._cache.get(partition)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        if NO_IO.get():
            raise KeyLookup(partition, version)
        rec = self.keystore.get(_record_key(partition))
        body = json.loads(rec.data) if rec else None
        if body is not None:
            body["_version"] = rec.version  # type: ignore[union-attr]
            with self._lock:
                self._cache[partition] = (time.monotonic() + _CACHE_SECONDS, body)
        return body

    def _save(self, partition: str, body: dict[str, Any], expect: int | None) -> None:
        clean = {k: v for k, v in body.items() if not k.startswith("_")}
        data = json.dumps(clean, sort_keys=True).encode()
        self.keystore.apply([Put(_record_key(partition), data, "json", expect)])
        with self._lock:
            self._cache.pop(partition, None)

    def _aad(self, partition: str, version: int) -> bytes:
        return f"statekeel-data-key\x00{partition}\x00{version}".encode()

    def _aead(self, partition: str, body: dict[str, Any], version: int) -> AESGCM:
        cached = self._aeads.get((partition, version))
        if cached is not None:
            return cached
        entry = body["versions"].get(str(version))
        if entry is None:
            raise KeyUnavailableError(
                f"data key version {version} of {partition!r} does not exist in the keystore {self.keystore.url}; "
                "is this the keystore the data was written with? Name it with Encryption(keystore_url=...) "
                "(CLI: $STATEKEEL_KEYSTORE_URL)"
            )
        aead = aesgcm(self.master.unwrap(entry, self._aad(partition, version)))
        self._aeads[(partition, version)] = aead
        return aead

    # -- use -------------------------------------------------------------------
    def current(self, partition: str) -> DataKey:
        """The key new data of ``partition`` is encrypted with (created on first use)."""
        body = self._load(partition)
        known = self._currents.get(partition)
        if known is not None and known[0] is body:
            return known[1]  # the body is cached and unchanged: so is its current key
        if body is None or body.get("erased"):
            body = self._create(partition, subject=None) if body is None else body
        if body.get("erased"):
            raise ErasedError(
                f"{partition!r} belonged to an erased data subject; its key is destroyed and it takes no new data"
            )
        version = int(body["current"])
        key = DataKey(partition, version, self._aead(partition, body, version))
        if len(self._currents) >= 4096:
            self._currents.clear()
        self._currents[partition] = (body, key)
        return key

    def get(self, partition: str, version: int) -> DataKey:
        """The key that encrypted data of ``partition`` at ``version``."""
        body = self._load(partition, version)
        if body is None or body.get("erased") or str(version) not in body.get("versions", {}):
            body = self._load_fresh(partition, version)
        if body is None:
            raise KeyUnavailableError(
                f"no data key for {partition!r} in the keystore {self.keystore.url}; is this the keystore "
                "the data was written with? Name it with Encryption(keystore_url=...) (CLI: $STATEKEEL_KEYSTORE_URL)"
            )
        if body.get("erased"):
            raise ErasedError(f"data of {partition!r} was erased at the subject's request and cannot be read")
        return DataKey(partition, version, self._aead(partition, body, version))

    def _load_fresh(self, partition: str, version: int | None = None) -> dict[str, Any] | None:
        if NO_IO.get():
            raise KeyLookup(partition, version)
        with self._lock:
            self._cache.pop(partition, None)
        return self._load(partition)

    def fetch(self, partition: str, version: int | None) -> None:
        """What :class:`KeyLookup` asks for: the key read from the keystore into the cache (the
        current one created on first use), or its error raised (erased, missing)."""
        if version is None:
            self.current(partition)
        else:
            self.get(partition, version)

    def _create(self, partition: str, subject: str | None, key: bytes | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"current": 1, "subject": subject, "versions": {}}
        body["versions"]["1"] = self.master.wrap(key or os.urandom(32), self._aad(partition, 1))
        try:
            self._save(partition, body, expect=None)
        except ConflictError:  # another process created it first: use theirs
            pass
        found = self._load_fresh(partition)
        assert found is not None
        return found

    # -- subjects and erasure --------------------------------------------------
    def subject_digest(self, subject: str) -> str:
        """A keyed hash of a subject id: lets erasure find it without storing the id."""
        return hmac.new(self._subjects_secret(), subject.encode(), hashlib.sha256).hexdigest()[:32]

    def _subjects_secret(self) -> bytes:
        """The key of the subject digests, kept in the keystore wrapped by the master key (so a master
        rotation re-wraps it and every digest stays the same). Created on first use with the value
        earlier versions derived from the master key, so digests they wrote are still found."""
        if self._subject_secret is None:
            name = layout.SUBJECT_SECRET_PARTITION
            body = self._load(name)
            if body is None:
                legacy = hashlib.sha256(b"statekeel-subject\x00" + self.master.keys[self.master.current]).digest()
                body = self._create(name, None, legacy)
            self._subject_secret = self.master.unwrap(body["versions"]["1"], self._aad(name, 1))
        return self._subject_secret

    def bind(self, partition: str, subject: str) -> None:
        """Tag ``partition``'s data key with a data subject (before its first write). A key prefix
        inside a partition (a memory namespace: its partition's key is shared) is tagged alone."""
        digest = self.subject_digest(subject)
        if keys.partition(partition) == partition:
            body = self._load(partition) or self._create(partition, digest)  # the digest, never the id
            if body.get("subject") != digest and not body.get("erased"):
                body = dict(body, subject=digest)
                self._save(partition, body, expect=body["_version"])
        self.keystore.apply([Put(_subject_key(digest, partition), b"{}", "json", ANY)])

    def subject_partitions(self, subject: str) -> list[str]:
        return names_under(self.keystore, layout.subject_prefix(self.subject_digest(subject)))

    def destroy(self, partition: str, erasure_id: str) -> None:
        """Crypto-shred: replace the wrapped keys with a tombstone."""
        body = self._load_fresh(partition)
        tomb = {"erased": True, "erasure": erasure_id, "at": time.time(), "current": 0, "versions": {}}
        self._save(partition, tomb, expect=body["_version"] if body else None)
        self._aeads = {k: v for k, v in self._aeads.items() if k[0] != partition}

    # -- rotation ----------------------------------------------------------------
    def partitions(self) -> Sequence[str]:
        return names_under(self.keystore, "keys/")

    def rewrap(self, partition: str) -> bool:
        """Re-wrap every version of ``partition``'s key under the current master key."""
        body = self._load_fresh(partition)
        if body is None or body.get("erased"):
            return False
        versions = body["versions"]
        if all(self.master.wraps_with_current(v["master"]) for v in versions.values()):
            return False
        for ver, entry in list(versions.items()):
            aad = self._aad(partition, int(ver))
            versions[ver] = self.master.wrap(self.master.unwrap(entry, aad), aad)
        self._save(partition, body, expect=body["_version"])
        return True

    def new_version(self, partition: str) -> int:
        """Add a fresh data key version and make it current; old ones stay for reading."""
        body = self._load_fresh(partition) or self._create(partition, None)
        version = max(int(v) for v in body["versions"]) + 1
        body["versions"][str(version)] = self.master.wrap(os.urandom(32), self._aad(partition, version))
        body["current"] = version
        self._save(partition, body, expect=body["_version"])
        return version

    def begin_reencrypt(self, partition: str) -> int:
        """The version re-encryption moves ``partition`` to (created once; a rerun resumes)."""
        body = self._load_fresh(partition)
        if body is None or body.get("erased") or partition == layout.SUBJECT_SECRET_PARTITION:
            return 0  # (the subjects' key encrypts no data: a new version would only change every digest)
        if body.get("reencrypt_to"):
            return int(body["reencrypt_to"])
        version = self.new_version(partition)
        body = self._load_fresh(partition)
        assert body is not None
        self._save(partition, dict(body, reencrypt_to=version), expect=body["_version"])
        return version

    def end_reencrypt(self, partition: str) -> None:
        body = self._load_fresh(partition)
        if body is not None and body.get("reencrypt_to"):
            clean = {k: v for k, v in body.items() if k != "reencrypt_to"}
            self._save(partition, clean, expect=body["_version"])

    def forget_cache(self) -> None:
        with self._lock:
            self._cache.clear()
