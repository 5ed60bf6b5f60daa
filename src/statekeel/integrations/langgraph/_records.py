"""What a LangGraph thread's records hold, and how they are encoded (pure: no I/O).

Every value LangGraph hands over goes through the saver's own serializer
(``serde.dumps_typed``), so custom types round-trip exactly as with LangGraph's
savers; the resulting ``(type, bytes)`` pair goes through statekeel's codec and backend, so
compression, encryption, checksums and tenants apply to all of it — metadata and pending
writes included.

Records of one thread (keys in :mod:`statekeel.core.layout`)::

    head/<ns>                    {"id": newest checkpoint id}      compare-and-set: fencing
    cp/<ns>/<~id>                {"c": checkpoint without values, "m": metadata, "p": parent id}
    w/<ns>/<~id>/<task>/<idx>    {"c": channel, "p": task_path, "t", "b" (, "z")}
    v/<ns>/<channel>/<version>   a full value {"t", "b" (, "z": b is compressed)}, an empty marker {"e": 1}, or a delta
                                 {"t", "b": the appended items, "base", "root", "n", "k", "cb", "rb"}

Values and pending writes are *binary records* (since session 26, :func:`frame`): codec ``raw``,
the document without ``"b"`` as one line of JSON, then the bytes as they are — no base64 to
parse and decode on a cold read. Checkpoint records, and every record written before, are JSON
documents with ``"b"`` as base64 text (:func:`pack`; earlier still the codec's tagged bytes);
:func:`read_doc` reads them all.
"""

from __future__ import annotations

import binascii
import json
import zlib
from typing import Any

from ...codec import Codec
from ...codec_transforms import inflate
from ...core import layout
from ...core.validate import short_repr
from ...errors import (
    ConfigurationError,
    ConflictError,
    CorruptionError,
    InvalidInputError,
    StatekeelError,
    StoreError,
)
from ...protocol import keys

__all__ = [
    "CheckpointForkError",
    "Typed",
    "invert_id",
    "pack",
    "pack_raw",
    "frame",
    "read_doc",
    "unpack",
    "write_key",
    "parse_write_key",
    "check_thread_id",
    "config_text",
    "configurable",
    "thread_and_ns",
    "ThreadKeys",
]

Typed = tuple[str, bytes]
"""What ``SerializerProtocol.dumps_typed`` returns: a type tag and the bytes."""

_ID_CHARS = "-0123456789abcdef"
_MIRRORED = "QPONMLKJIHGFEDCBA"  # strictly decreasing: a forward scan walks ids newest first
_TO_INVERTED = str.maketrans(_ID_CHARS, _MIRRORED)
_FROM_INVERTED = str.maketrans(_MIRRORED, _ID_CHARS)


class CheckpointForkError(ConflictError):
    """Another writer moved the thread's head past the parent this checkpoint builds on.

    Raised by ``put`` instead of silently forking the chain: the caller read
    the head, someone else wrote after it, and this write would start a branch.
    """

    def __init__(self, thread_id: str, ns: str, parent: str, head: str) -> None:
        where = f"thread {thread_id!r}" + (f" (namespace {ns!r})" if ns else "")
        StatekeelError.__init__(
            self,
            f"{where} moved on: this checkpoint builds on {parent!r}, but another writer has since "
            f"stored {head!r}; nothing was written. Re-read the thread (graph.get_state) and run "
            "again, or fork on purpose from an earlier checkpoint (graph.update_state / invoke with "
            "its checkpoint_id)",
        )
        self.key = layout.langgraph_head_key(thread_id, ns)
        self.expected = None
        self.actual = None
        self.thread_id, self.checkpoint_ns, self.parent, self.head = thread_id, ns, parent, head


def invert_id(checkpoint_id: str) -> str:
    """The key component of a checkpoint id: its characters mirrored, so newer sorts first.

    LangGraph's ids are uuid6 strings (time-ordered, lower-case hex); anything else
    would not sort, so it is refused.
    """
    if not isinstance(checkpoint_id, str) or not checkpoint_id or checkpoint_id.strip(_ID_CHARS):
        raise InvalidInputError(
            f"checkpoint ids must be LangGraph's uuid6 strings (lower-case hex and '-'), got "
            f"{short_repr(checkpoint_id)}; let LangGraph create the checkpoint ids"
        )
    return checkpoint_id.translate(_TO_INVERTED)


def revert_id(inverted: str) -> str:
    """The checkpoint id back from :func:`invert_id`'s key component."""
    return inverted.translate(_FROM_INVERTED)


def check_thread_id(value: Any) -> str:
    """LangGraph allows any thread id that prints; statekeel stores its ``str``."""
    if value is None or value == "":
        raise InvalidInputError(
            'a LangGraph config needs a thread_id: {"configurable": {"thread_id": "..."}}'
        )
    return config_text(value, "thread_id")


def config_text(value: Any, what: str) -> str:
    """``str(value)`` of a config entry LangGraph prints (a thread id, a namespace)."""
    try:
        return str(value)
    except ValueError:  # an int of over 4,300 digits has no str
        raise InvalidInputError(f"{what} {short_repr(value)} cannot be printed; use a str") from None


def thread_and_ns(conf: dict[str, Any]) -> tuple[str, str]:
    """The thread id and checkpoint namespace a config's ``configurable`` names."""
    return check_thread_id(conf.get("thread_id")), config_text(conf.get("checkpoint_ns") or "", "checkpoint_ns")


def configurable(config: Any, what: str = "config") -> dict[str, Any]:
    """``config["configurable"]`` of a LangGraph ``RunnableConfig``, InvalidInputError if it has none."""
    conf = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(conf, dict):
        raise InvalidInputError(
            f'{what} must be a LangGraph config like {{"configurable": {{"thread_id": "..."}}}}, '
            f"got {short_repr(config)}"
        )
    return conf


_COMPRESS_FROM = 256
"""Serialized values from this size up are stored compressed (``"z"``): the codec stores bytes
as base64, which its own compression cannot shrink as well as the raw bytes (a 1,000-byte
message: 777 bytes instead of ~1,000, under SQLite's overflow threshold)."""

_ZLIB, _ZSTD = 1, 2
"""``"z"`` values: zlib (written before session 24, and where zstandard is not installed), zstd."""


try:
    import zstandard
except ModuleNotFoundError:  # pragma: no cover - a dependency of statekeel[langgraph]
    zstandard = None  # type: ignore[assignment]
try:
    from isal.isal_zlib import compress as _isal_compress
except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel
    _isal_compress = None  # type: ignore[assignment]
_DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (
    zlib.error, binascii.Error, *((zstandard.ZstdError,) if zstandard is not None else ())
)  # fmt: skip

# zstandard's (de)compressors must not be used by two threads at once, and LangGraph writes from
# short-lived threads: a pool (list.pop/append are atomic) lends each object to one thread at a
# time and reuses it across threads (tests/integrations/test_langgraph_threads.py).
_compressors: list[Any] = []
_decompressors: list[Any] = []


def _zstd_compress(data: bytes) -> bytes:
    """zstd at level 1 (as small as level 3 on these values, up to twice as fast): a cold
    ``get_state`` of a 1,000-turn thread decompresses ~1.4 MB of LangGraph's msgpack — zlib
    took 7.7 ms of it, zstd 0.7 ms, at the same size."""
    try:
        c = _compressors.pop()
    except IndexError:
        c = zstandard.ZstdCompressor(level=1)
    try:
        return bytes(c.compress(data))
    finally:
        _compressors.append(c)


def _zstd_decompress(data: bytes) -> bytes:
    try:
        d = _decompressors.pop()
    except IndexError:
        d = zstandard.ZstdDecompressor()
    try:
        return bytes(d.decompress(data))
    finally:
        _decompressors.append(d)


class FastZlib:
    """The codec's ``zlib`` step, written by ISA-L (level 2: ~5x faster than zlib's level 6 at the
    same size; stateless, so thread-safe); read back by ISA-L too (about twice zlib's speed)."""

    name = "zlib"

    def encode(self, data: bytes, context: str) -> bytes:
        if _isal_compress is None:  # pragma: no cover - see the import
            return zlib.compress(data, 6)
        return bytes(_isal_compress(data, 2))

    def decode(self, data: bytes, context: str) -> bytes:
        return inflate(data)


def pack(typed: Typed) -> dict[str, Any]:
    """``{"t": type, "b": base64 of the bytes}`` for a JSON record (``"z"`` when compressed: zstd, else
    zlib): the parts of a checkpoint record (values and pending writes are binary: :func:`pack_raw`).

    The bytes go in as base64 text, not as ``bytes``: the codec stores ``bytes`` as the same base64
    in a tagged object, and reading a tagged record runs a Python hook and a validating regex over
    the whole value (~10 ms for the ~850 KB of a 1,000-turn snapshot); text makes the saver's
    records plain ``json`` and is decoded by ``binascii`` in C (~1 ms)."""
    doc = pack_raw(typed)
    doc["b"] = binascii.b2a_base64(doc["b"], newline=False).decode("ascii")
    return doc


def pack_raw(typed: Typed) -> dict[str, Any]:
    """:func:`pack` with the bytes as they are (``bytes``), for a binary record (:func:`frame`)."""
    data = bytes(typed[1])
    if len(data) >= _COMPRESS_FROM:
        if zstandard is not None:
            return {"t": typed[0], "b": _zstd_compress(data), "z": _ZSTD}
        return {"t": typed[0], "b": zlib.compress(data, 6), "z": _ZLIB}
    return {"t": typed[0], "b": data}


_HEAD_END = b"\n"
_encode_head = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def frame(doc: dict[str, Any]) -> bytes:
    """A binary record (codec ``raw``): ``doc`` without ``"b"`` as compact JSON (one line: JSON
    escapes every newline inside strings), a newline, then ``doc["b"]`` as it is. Reading it
    parses the few hundred bytes of the head, never the value (the JSON records parsed the value's
    base64, then decoded it: ~2.5 ms of a cold ``get_state`` of a 1,000-turn thread).

    This is format 1, recognised by its ``{``; a later format starts with its number as a byte
    below 0x20 (which JSON never starts with), so this version asks for an upgrade instead of
    calling the record damaged."""
    head = _encode_head({k: v for k, v in doc.items() if k != "b"}).encode("utf-8")
    return b"".join((head, _HEAD_END, doc["b"]))


def _unframe(data: bytes, key: str) -> dict[str, Any]:
    first = data[:1]
    if b"" < first < b"\x20":  # a binary record of a later format: the reader, not the data, is behind
        raise StoreError(
            f"the LangGraph record {key!r} was written in a newer binary format; upgrade the statekeel package"
        )
    end = data.find(_HEAD_END) if first == b"{" else -1
    try:
        doc = json.loads(data[:end]) if end > 0 else None
    except (ValueError, RecursionError):
        doc = None
    if type(doc) is not dict or "b" in doc:
        raise _damaged(key, "its head is not a JSON object followed by a newline")
    doc["b"] = data[end + 1 :]
    return doc


def read_doc(codec: Codec, data: bytes, codec_name: str, key: str) -> dict[str, Any]:
    """A stored record's document, whichever way it was written: a binary record (:func:`frame`)
    or a JSON document."""
    value = codec.decode(data, codec_name, key)
    if type(value) is bytes:
        return _unframe(value, key)
    if type(value) is not dict:
        raise _damaged(key, f"it holds a {type(value).__name__}, not a document")
    return value


def unpack(doc: dict[str, Any], key: str = "") -> Typed:
    """The ``(type, bytes)`` pair :func:`pack` or :func:`pack_raw` stored (``key`` names the record in
    errors): ``"b"`` is base64 text (JSON records), or ``bytes`` (binary records, and JSON records
    before session 24, which held the codec's own tagged base64)."""
    how, raw = doc.get("z"), doc.get("b")
    if how not in (None, 0, _ZLIB, _ZSTD):
        raise StoreError(
            f"the LangGraph value in {key or 'a record'!r} was compressed by a newer statekeel "
            f"(\"z\": {how!r}); upgrade the statekeel package"
        )
    typ = doc.get("t")
    if type(typ) is not str or (type(raw) is not str and type(raw) is not bytes):
        raise _damaged(key, f"its type is a {type(typ).__name__} and its bytes a {type(raw).__name__}")
    try:
        data = binascii.a2b_base64(raw, strict_mode=True) if isinstance(raw, str) else raw
        if not how:
            return typ, data
        if how == _ZSTD:
            if zstandard is None:
                raise ConfigurationError(
                    f"the LangGraph value in {key or 'a record'!r} is zstd-compressed and the zstandard "
                    "package is not installed: pip install 'statekeel[langgraph]'"
                )
            return typ, _zstd_decompress(data)
        return typ, zlib.decompress(data)
    except _DECOMPRESS_ERRORS as exc:
        raise _damaged(key, f"it does not decompress: {exc}") from None


def _damaged(key: str, why: str) -> CorruptionError:
    return CorruptionError(
        f"the LangGraph value in {key or 'a record'!r} is damaged ({why}); run "
        "`statekeel doctor` and restore it from a backup",
        key,
    )


def write_key(thread_id: str, ns: str, inverted: str, task_id: str, idx: int) -> str:
    """One pending write: unique per (checkpoint, task, idx), so a retried put_writes is idempotent."""
    return layout.langgraph_writes_prefix(thread_id, ns, inverted) + keys.escape("t" + task_id) + "/" + str(idx)


def parse_write_key(key: str) -> tuple[str, str, int]:
    """``(inverted checkpoint id, task_id, idx)`` of a pending write's key."""
    parts = keys.split(key)
    return parts[-3], parts[-2][1:], int(parts[-1])


class ThreadKeys:
    """The keys of one thread namespace, their escaped prefixes built once.

    A turn builds about twenty keys (values, checkpoints, writes, the head); escaping
    every component of each was a tenth of the saver's time. Same keys as
    :mod:`statekeel.core.layout` builds (tests compare them).
    """

    __slots__ = ("thread", "ns", "head", "checkpoints", "_writes", "_blobs")

    def __init__(self, thread: str, ns: str) -> None:
        self.thread, self.ns = thread, ns
        self.head = layout.langgraph_head_key(thread, ns)
        self.checkpoints = layout.langgraph_checkpoints_prefix(thread, ns)
        self._writes = layout.langgraph_writes_prefix(thread, ns)
        self._blobs: dict[str, str] = {}

    def checkpoint(self, inverted: str) -> str:
        """``cp/<ns>/<~id>`` (an inverted id holds only letters: nothing to escape)."""
        return self.checkpoints + inverted

    def blob(self, channel: str, version: str) -> str:
        """``v/<ns>/<channel>/<version>``."""
        prefix = self._blobs.get(channel)
        if prefix is None:
            prefix = self._blobs[channel] = layout.langgraph_blob_prefix(self.thread, self.ns, channel)
        return prefix + keys.escape(version)

    def write(self, inverted: str, task_id: str, idx: int) -> str:
        """``w/<ns>/<~id>/<task>/<idx>``, as :func:`write_key`."""
        return self._writes + inverted + "/" + keys.escape("t" + task_id) + "/" + str(idx)
